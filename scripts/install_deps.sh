#!/usr/bin/env bash
# Installs the Debian 12 packages setdet needs; apt-get runs only for what is missing.
set -euo pipefail

packages=(
  build-essential cmake ninja-build ccache pkg-config
  clang libclang-rt-14-dev  # libFuzzer, ASan and UBSan for `make fuzz`
  # Debian's LibTorch calls libblas.so.3 for float32 matmuls; without this the alternative is the
  # reference BLAS (fc6 of Faster R-CNN, 1000x12544 @ 12544x1024: 16.9 s vs 0.09 s with OpenBLAS,
  # 2 threads; DETA demo training 5.4 -> 9.1 images/s). The OpenMP build shares LibTorch's libgomp
  # threads, so --threads and the ThreadGovernorHook govern it too.
  libopenblas0-openmp
  # oneDNN's headers, for inference convolutions on the libdnnl LibTorch itself links: prepacked
  # weights, fused ReLU / residual, Winograd (FCOS R50-FPN network 1.13x -> 0.65x ONNX Runtime,
  # docs/benchmarks.md)
  libdnnl-dev
  libtorch-dev libgloo-dev libopencv-dev libsimdjson-dev zlib1g-dev nlohmann-json3-dev libyaml-cpp-dev
  libcli11-dev libspdlog-dev libfmt-dev libgtest-dev libgmock-dev libbenchmark-dev
  libxgboost-dev  # XGBoost 1.7 C API: the VRD pipeline's gradient-boosted models
  python3-torch python3-torchvision python3-scipy python3-numpy python3-pil
  darknet  # real photos (/usr/share/darknet/data) for the torchvision parity test
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

echo "install_deps: installing ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
