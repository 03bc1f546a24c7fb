#!/usr/bin/env bash
# Runs every libFuzzer target of BUILD_DIR (default build-fuzz) for FUZZ_SECONDS (default 60)
# each, one process each (-jobs=1 equivalent), starting from the committed seeds in
# tests/fuzz/corpus/<target>/ plus the corpus grown by earlier runs in BUILD_DIR/corpus/<target>/.
# Crashes, leaks, timeouts and sanitizer reports are saved to BUILD_DIR/artifacts/<target>/ and
# make the script fail. Prints one line per target: seconds, executions, corpus size, result.
set -uo pipefail

build_dir="${1:-build-fuzz}"
seconds="${2:-${FUZZ_SECONDS:-60}}"
root="$(cd "$(dirname "$0")/.." && pwd)"
failed=0
summary=()
for bin in "$build_dir"/bin/fuzz_*; do
  target="$(basename "$bin")"
  corpus="$build_dir/corpus/$target"
  artifacts="$build_dir/artifacts/$target"
  log="$build_dir/logs/$target.log"
  mkdir -p "$corpus" "$artifacts" "$(dirname "$log")"
  echo "fuzz: $target for ${seconds} s"
  start=$(date +%s)
  "$bin" "$corpus" "$root/tests/fuzz/corpus/$target" -max_total_time="$seconds" \
    -timeout=20 -rss_limit_mb=4096 -print_final_stats=1 -artifact_prefix="$artifacts/" \
    >"$log" 2>&1
  status=$?
  elapsed=$(( $(date +%s) - start ))
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  units=$(ls "$corpus" | wc -l)
  if [ "$status" -eq 0 ]; then
    result="ok"
  else
    result="FAILED (exit $status, see $log and $artifacts)"
    failed=1
    grep -m 5 -E "ERROR|SUMMARY|runtime error" "$log"
  fi
  summary+=("$(printf '%-20s %6s s %12s execs %6s corpus  %s' "$target" "$elapsed" "${execs:-?}" "$units" "$result")")
done
echo
printf '%s\n' "${summary[@]}"
exit $failed
