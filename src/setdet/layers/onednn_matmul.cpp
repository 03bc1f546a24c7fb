#include "setdet/layers/onednn_matmul.h"

#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <c10/core/GradMode.h>
#include <c10/core/impl/LocalDispatchKeySet.h>

#include <vector>

namespace setdet {
namespace {

// CPU autocast applies unless the caller excluded its dispatch key (float32 islands such as the
// relation module's geometric term run inside an autocast region).
bool autocast_applies() {
  return at::autocast::is_cpu_enabled() &&
         !c10::impl::tls_is_dispatch_key_excluded(c10::DispatchKey::AutocastCPU);
}

bool use_onednn(const at::Tensor& x, const at::Tensor& w) {
  return at::hasMKLDNN() && x.device().is_cpu() && x.scalar_type() == at::kFloat &&
         w.scalar_type() == at::kFloat && !autocast_applies() && x.numel() > 0;
}

}  // namespace

at::Tensor linear(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias) {
  if (!use_onednn(x, weight) || x.dim() < 1) return at::linear(x, weight, bias);
  const int64_t in = x.size(-1);
  auto out_shape = x.sizes().vec();
  out_shape.back() = weight.size(0);
  const at::Tensor x2 = x.reshape({-1, in}).contiguous().to_mkldnn();
  const c10::optional<at::Tensor> b =
      bias.defined() ? c10::optional<at::Tensor>(bias) : c10::nullopt;
  return at::mkldnn_linear(x2, weight.contiguous(), b).to_dense().view(out_shape);
}

at::Tensor batched_matmul(const at::Tensor& a, const at::Tensor& b) {
  TORCH_CHECK(a.dim() == 3 && b.dim() == 3 && a.size(0) == b.size(0) && a.size(2) == b.size(1),
              "batched_matmul: expected [B, n, k] and [B, k, m], got ", a.sizes(), " and ",
              b.sizes());
  if (c10::GradMode::is_enabled() || !use_onednn(a, b)) return at::bmm(a, b);
  std::vector<at::Tensor> out;
  out.reserve(static_cast<size_t>(a.size(0)));
  for (int64_t i = 0; i < a.size(0); ++i) {
    // mkldnn_linear(x, W) = x W^T, so W = b[i]^T
    out.push_back(
        at::mkldnn_linear(a[i].contiguous().to_mkldnn(), b[i].t().contiguous()).to_dense());
  }
  return at::stack(out);
}

}  // namespace setdet
