#include "setdet/layers/onednn_conv.h"

#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <c10/core/GradMode.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <memory>
#include <oneapi/dnnl/dnnl.hpp>
#include <string>
#include <unordered_map>
#include <utility>

namespace setdet {
namespace {

using dnnl::memory;
using Tag = memory::format_tag;
using Type = memory::data_type;

// Winograd only pays on maps with enough output pixels: its tile transforms and the copies to
// and from its blocked layout weigh more as the map shrinks. Measured on an AVX512 EPYC (2
// threads, 256 channels, copies included): 13x19 (247 px) direct 0.68 ms vs Winograd 0.78 ms;
// 25x38 (950 px) 2.96 vs 1.79 ms; 50x76 12.2 vs 6.4 ms; 100x152 41.7 vs 19.5 ms.
constexpr int64_t kWinogradMinPixels = 512;

// Plans kept per convolution (one per input shape, dtype, layout and post-op).
constexpr size_t kMaxPlans = 32;

std::atomic<bool> winograd_enabled{true};

const dnnl::engine& cpu_engine() {
  static const dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

dnnl::stream& thread_stream() {
  thread_local dnnl::stream stream(cpu_engine());
  return stream;
}

// Per-thread buffers for oneDNN's scratchpad and the Winograd layout copies, kept between calls:
// fresh allocations of this size (tens of MB for an 800x1216 image) come back from glibc as new
// pages, and faulting them in on every call cost more than Winograd saves.
class Workspace {
 public:
  void* get(size_t bytes) {
    if (bytes > capacity_) {
      data_.reset(static_cast<char*>(std::aligned_alloc(kAlign, round_up(bytes))));
      TORCH_CHECK(data_ != nullptr, "OneDnnConv2d: out of memory for a ", bytes,
                  "-byte workspace");
      capacity_ = round_up(bytes);
    }
    return data_.get();
  }

 private:
  static constexpr size_t kAlign = 64;
  static size_t round_up(size_t n) { return (n + kAlign - 1) / kAlign * kAlign; }
  struct Free {
    void operator()(char* p) const { std::free(p); }
  };
  std::unique_ptr<char, Free> data_;
  size_t capacity_ = 0;
};

enum WorkspaceSlot { kScratch, kSource, kDestination, kNumSlots };

void* workspace(WorkspaceSlot slot, size_t bytes) {
  thread_local Workspace spaces[kNumSlots];
  return spaces[slot].get(std::max<size_t>(bytes, 1));
}

memory::dims dims(c10::IntArrayRef v) { return memory::dims(v.begin(), v.end()); }

bool compute_in_bfloat16(const at::Tensor& x) {
  if (x.scalar_type() == at::kBFloat16) return true;
  return at::autocast::is_cpu_enabled() &&
         at::autocast::get_autocast_cpu_dtype() == at::kBFloat16;
}

struct Key {
  int64_t n, c, h, w;
  bool bf16, nhwc, relu, residual, winograd;
  bool operator==(const Key& o) const {
    return n == o.n && c == o.c && h == o.h && w == o.w && bf16 == o.bf16 && nhwc == o.nhwc &&
           relu == o.relu && residual == o.residual && winograd == o.winograd;
  }
};

struct Plan {
  dnnl::convolution_forward::primitive_desc pd;
  dnnl::convolution_forward conv;
  std::shared_ptr<memory> weights;  // packed in pd.weights_desc()
  memory::desc src_user, dst_user;  // the ATen layouts
  bool reorder_src = false, reorder_dst = false;
  dnnl::reorder to_src, from_dst, residual_to_dst;
  std::vector<int64_t> out_sizes;
};

}  // namespace

struct OneDnnConv2d::State {
  at::Tensor weight, bias;  // float32, contiguous
  std::vector<int64_t> stride, padding, dilation;
  int64_t groups = 1;
  std::mutex mutex;
  std::vector<std::pair<Key, std::shared_ptr<const Plan>>> plans;
  std::vector<std::shared_ptr<memory>> packed;  // one per distinct packed layout

  std::shared_ptr<const Plan> plan(const Key& key);
  std::shared_ptr<memory> pack(const memory::desc& desc);
  // oneDNN's weight dims: [out, in / groups, kh, kw], with groups in front when there are several
  memory::dims weight_dims() const {
    memory::dims d = dims(weight.sizes());
    if (groups > 1) {
      d.insert(d.begin(), groups);
      d[1] = weight.size(0) / groups;
    }
    return d;
  }
};

std::shared_ptr<memory> OneDnnConv2d::State::pack(const memory::desc& desc) {
  for (const auto& p : packed) {
    if (p->get_desc() == desc) return p;
  }
  memory user({weight_dims(), Type::f32, groups > 1 ? Tag::goihw : Tag::oihw}, cpu_engine(),
              weight.data_ptr());
  auto result = std::make_shared<memory>(desc, cpu_engine());
  dnnl::reorder(user, *result).execute(thread_stream(), user, *result);
  thread_stream().wait();
  packed.push_back(result);
  return result;
}

std::shared_ptr<const Plan> OneDnnConv2d::State::plan(const Key& key) {
  std::lock_guard<std::mutex> lock(mutex);
  for (const auto& [k, p] : plans) {
    if (k == key) return p;
  }
  const int64_t out = weight.size(0), kh = weight.size(2), kw = weight.size(3);
  const int64_t oh = (key.h + 2 * padding[0] - dilation[0] * (kh - 1) - 1) / stride[0] + 1;
  const int64_t ow = (key.w + 2 * padding[1] - dilation[1] * (kw - 1) - 1) / stride[1] + 1;
  TORCH_CHECK(oh > 0 && ow > 0, "OneDnnConv2d: input ", key.h, "x", key.w,
              " is smaller than the kernel");
  const Type type = key.bf16 ? Type::bf16 : Type::f32;
  const Tag tag = key.nhwc ? Tag::nhwc : Tag::nchw;
  auto plan = std::make_shared<Plan>();
  plan->out_sizes = {key.n, out, oh, ow};
  plan->src_user = memory::desc({key.n, key.c, key.h, key.w}, type, tag);
  plan->dst_user = memory::desc(dims(plan->out_sizes), type, tag);

  const memory::desc weights_any(weight_dims(), type, Tag::any);
  const memory::desc bias_md = bias.defined() ? memory::desc({out}, Type::f32, Tag::x)
                                              : memory::desc();
  const memory::dims strides = dims(stride), pad_l = dims(padding);
  memory::dims dil = dims(dilation), pad_r = dims(padding);
  for (auto& d : dil) d -= 1;  // oneDNN counts the gaps: 0 is a dense kernel
  pad_r[0] = (oh - 1) * stride[0] + dilation[0] * (kh - 1) + 1 - key.h - padding[0];
  pad_r[1] = (ow - 1) * stride[1] + dilation[1] * (kw - 1) + 1 - key.w - padding[1];

  dnnl::post_ops ops;
  if (key.residual) ops.append_sum(1.f);
  if (key.relu) ops.append_eltwise(1.f, dnnl::algorithm::eltwise_relu, 0.f, 0.f);
  dnnl::primitive_attr attr;
  attr.set_post_ops(ops);
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);

  auto make = [&](dnnl::algorithm algorithm, const memory::desc& src, const memory::desc& dst) {
    const dnnl::convolution_forward::desc d(dnnl::prop_kind::forward_inference, algorithm, src,
                                            weights_any, bias_md, dst, strides, dil, pad_l,
                                            pad_r);
    return dnnl::convolution_forward::primitive_desc(d, attr, cpu_engine(),
                                                     /*allow_empty=*/true);
  };
  const bool winograd = key.winograd && !key.bf16 && kh == 3 && kw == 3 && stride[0] == 1 &&
                        stride[1] == 1 && dilation[0] == 1 && dilation[1] == 1 && groups == 1 &&
                        key.c % 16 == 0 && out % 16 == 0 && oh * ow >= kWinogradMinPixels;
  const memory::desc src_any({key.n, key.c, key.h, key.w}, type, Tag::any);
  const memory::desc dst_any(dims(plan->out_sizes), type, Tag::any);
  if (winograd) plan->pd = make(dnnl::algorithm::convolution_winograd, src_any, dst_any);
  // the direct kernel on ATen's own layout; oneDNN has one for channels-last, for NCHW it may
  // want a blocked layout instead
  if (!plan->pd) plan->pd = make(dnnl::algorithm::convolution_direct, plan->src_user,
                                 plan->dst_user);
  if (!plan->pd) plan->pd = make(dnnl::algorithm::convolution_direct, src_any, dst_any);
  TORCH_CHECK(static_cast<bool>(plan->pd), "OneDnnConv2d: oneDNN has no convolution for input ",
              key.n, "x", key.c, "x", key.h, "x", key.w, key.bf16 ? " in bfloat16" : "");
  plan->conv = dnnl::convolution_forward(plan->pd);
  plan->weights = pack(plan->pd.weights_desc());
  plan->reorder_src = plan->pd.src_desc() != plan->src_user;
  plan->reorder_dst = plan->pd.dst_desc() != plan->dst_user;
  const auto& engine = cpu_engine();
  if (plan->reorder_src) {
    plan->to_src = dnnl::reorder(
        dnnl::reorder::primitive_desc(engine, plan->src_user, engine, plan->pd.src_desc()));
  }
  if (plan->reorder_dst) {
    plan->from_dst = dnnl::reorder(
        dnnl::reorder::primitive_desc(engine, plan->pd.dst_desc(), engine, plan->dst_user));
    if (key.residual) {
      plan->residual_to_dst = dnnl::reorder(
          dnnl::reorder::primitive_desc(engine, plan->dst_user, engine, plan->pd.dst_desc()));
    }
  }
  // input shapes vary from image to image: keep the most recent plans (remaking one is cheap,
  // oneDNN caches its kernels; the packed weights stay)
  if (plans.size() >= kMaxPlans) plans.erase(plans.begin());
  plans.emplace_back(key, plan);
  return plan;
}

OneDnnConv2d::OneDnnConv2d(const at::Tensor& weight, const at::Tensor& bias,
                           c10::IntArrayRef stride, c10::IntArrayRef padding,
                           c10::IntArrayRef dilation, int64_t groups)
    : state_(std::make_shared<State>()) {
  TORCH_CHECK(weight.dim() == 4, "OneDnnConv2d: weight must be [out, in / groups, kh, kw], got ",
              weight.sizes());
  TORCH_CHECK(groups > 0 && weight.size(0) % groups == 0, "OneDnnConv2d: groups (", groups,
              ") must divide the ", weight.size(0), " output channels");
  TORCH_CHECK(!bias.defined() || (bias.dim() == 1 && bias.size(0) == weight.size(0)),
              "OneDnnConv2d: bias must be [", weight.size(0), "], got ", bias.sizes());
  auto expand = [](c10::IntArrayRef v, const char* what) {
    TORCH_CHECK(v.size() == 1 || v.size() == 2, "OneDnnConv2d: ", what,
                " needs 1 or 2 values, got ", v.size());
    return std::vector<int64_t>{v.front(), v.back()};
  };
  at::NoGradGuard no_grad;
  auto& s = *state_;
  // no copy when already contiguous CPU float32: the owner re-creates this object when its
  // weights change (their version counter moves)
  s.weight = weight.detach().to(at::kCPU, at::kFloat).contiguous();
  if (bias.defined()) s.bias = bias.detach().to(at::kCPU, at::kFloat).contiguous();
  s.stride = expand(stride, "stride");
  s.padding = expand(padding, "padding");
  s.dilation = expand(dilation, "dilation");
  s.groups = groups;
}

bool OneDnnConv2d::applicable(const at::Tensor& x) {
  if (!x.defined() || x.dim() != 4 || !x.device().is_cpu() || x.layout() != at::kStrided) {
    return false;
  }
  if (x.scalar_type() != at::kFloat && x.scalar_type() != at::kBFloat16) return false;
  if (at::GradMode::is_enabled() && x.requires_grad()) return false;
  if (compute_in_bfloat16(x)) {
    static const bool bf16 = dnnl::get_effective_cpu_isa() >= dnnl::cpu_isa::avx512_core;
    return bf16;
  }
  return true;
}

namespace {

at::MemoryFormat format_of(const at::Tensor& x) {
  return x.suggest_memory_format() == at::MemoryFormat::ChannelsLast
             ? at::MemoryFormat::ChannelsLast
             : at::MemoryFormat::Contiguous;
}

// The plan a call on x (4-D) takes.
Key key_of(const at::Tensor& x, bool relu, bool residual) {
  return Key{x.size(0), x.size(1), x.size(2), x.size(3), compute_in_bfloat16(x),
             format_of(x) == at::MemoryFormat::ChannelsLast, relu, residual,
             winograd_enabled.load()};
}

}  // namespace

at::Tensor OneDnnConv2d::operator()(const at::Tensor& x, bool relu,
                                    const at::Tensor& residual) const {
  TORCH_CHECK(defined(), "OneDnnConv2d: used before construction");
  TORCH_CHECK(applicable(x), "OneDnnConv2d: expected a 4-D CPU float32 / bfloat16 tensor "
              "without gradient recording, got ", x.sizes(), " ", x.scalar_type());
  TORCH_CHECK(x.size(1) == state_->weight.size(1) * state_->groups, "OneDnnConv2d: expected ",
              state_->weight.size(1) * state_->groups, " input channels, got ", x.size(1));
  const Key key = key_of(x, relu, residual.defined());
  const at::MemoryFormat format = format_of(x);
  const at::Tensor in = x.to(key.bf16 ? at::kBFloat16 : at::kFloat).contiguous(format);
  const auto plan = state_->plan(key);
  at::Tensor out = at::empty(plan->out_sizes, in.options().memory_format(format));
  TORCH_CHECK(!residual.defined() || residual.sizes() == out.sizes(),
              "OneDnnConv2d: residual must be ", out.sizes(), ", got ", residual.sizes());
  const auto& engine = cpu_engine();
  auto& stream = thread_stream();
  memory src(plan->src_user, engine, in.data_ptr());
  memory dst(plan->dst_user, engine, out.data_ptr());
  memory conv_src = src, conv_dst = dst;
  if (plan->reorder_src) {
    conv_src = memory(plan->pd.src_desc(), engine,
                      workspace(kSource, plan->pd.src_desc().get_size()));
    plan->to_src.execute(stream, src, conv_src);
  }
  if (plan->reorder_dst) {
    conv_dst = memory(plan->pd.dst_desc(), engine,
                      workspace(kDestination, plan->pd.dst_desc().get_size()));
  }
  if (residual.defined()) {  // the sum post-op adds what the destination holds
    out.copy_(residual);
    if (plan->reorder_dst) plan->residual_to_dst.execute(stream, dst, conv_dst);
  }
  std::unordered_map<int, memory> args{
      {DNNL_ARG_SRC, conv_src},
      {DNNL_ARG_WEIGHTS, *plan->weights},
      {DNNL_ARG_DST, conv_dst},
      {DNNL_ARG_SCRATCHPAD,
       memory(plan->pd.scratchpad_desc(), engine,
              workspace(kScratch, plan->pd.scratchpad_desc().get_size()))}};
  if (state_->bias.defined()) {
    args.emplace(DNNL_ARG_BIAS, memory(plan->pd.bias_desc(), engine, state_->bias.data_ptr()));
  }
  plan->conv.execute(stream, args);
  if (plan->reorder_dst) plan->from_dst.execute(stream, conv_dst, dst);
  stream.wait();
  return out;
}

std::string OneDnnConv2d::implementation(const at::Tensor& x, bool relu, bool residual) const {
  TORCH_CHECK(defined(), "OneDnnConv2d: used before construction");
  TORCH_CHECK(x.dim() == 4, "OneDnnConv2d: expected a 4-D input, got ", x.sizes());
  return state_->plan(key_of(x, relu, residual))->pd.impl_info_str();
}

void set_onednn_winograd(bool enabled) { winograd_enabled = enabled; }
bool onednn_winograd() { return winograd_enabled.load(); }

}  // namespace setdet
