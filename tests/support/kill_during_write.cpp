// LD_PRELOAD shim for the interrupted-run tests: kills the process with SIGKILL in the middle of
// writing a file, as a power cut or `kill -9` would.
//   SETDET_KILL_FILE=latest.pt   the file's base name
//   SETDET_KILL_AT=2             on its 2nd write (default 1)
//   SETDET_KILL_MODE=write       after writing half of a buffer to "latest.pt.tmp.*" (setdet's
//                                temporary file; a file written in place is never matched)
//                  =rename       just before the temporary file is renamed to latest.pt
#include <dlfcn.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

namespace {

const char* basename_of(const char* path) {
  const char* slash = strrchr(path, '/');
  return slash ? slash + 1 : path;
}

bool mode_is(const char* mode) {
  const char* m = getenv("SETDET_KILL_MODE");
  return m != nullptr && strcmp(m, mode) == 0;
}

// Counts the matching events; true on the SETDET_KILL_AT-th.
bool nth_event() {
  static int seen = 0;
  const char* at = getenv("SETDET_KILL_AT");
  return ++seen == (at ? atoi(at) : 1);
}

// "<file>.tmp.<pid>.<n>", the temporary file write_file_atomic creates next to <file>.
bool is_temporary_of_target(int fd) {
  const char* target = getenv("SETDET_KILL_FILE");
  if (target == nullptr) return false;
  char link[64], path[4096];
  snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
  const ssize_t n = readlink(link, path, sizeof(path) - 1);
  if (n <= 0) return false;
  path[n] = '\0';
  const char* base = basename_of(path);
  const size_t len = strlen(target);
  return strncmp(base, target, len) == 0 && strncmp(base + len, ".tmp.", 5) == 0;
}

}  // namespace

extern "C" ssize_t write(int fd, const void* buf, size_t count) {
  using Write = ssize_t (*)(int, const void*, size_t);
  static const Write real = reinterpret_cast<Write>(dlsym(RTLD_NEXT, "write"));
  if (mode_is("write") && count > 1 && is_temporary_of_target(fd) && nth_event()) {
    real(fd, buf, count / 2);
    raise(SIGKILL);
  }
  return real(fd, buf, count);
}

extern "C" int rename(const char* from, const char* to) {
  using Rename = int (*)(const char*, const char*);
  static const Rename real = reinterpret_cast<Rename>(dlsym(RTLD_NEXT, "rename"));
  const char* target = getenv("SETDET_KILL_FILE");
  if (mode_is("rename") && target != nullptr && strcmp(basename_of(to), target) == 0 &&
      nth_event()) {
    raise(SIGKILL);
  }
  return real(from, to);
}
