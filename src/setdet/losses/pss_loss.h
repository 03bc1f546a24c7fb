// The PSS classification loss of FCOS_PSS (Zhou et al., "Object Detection Made Simpler by
// Eliminating Heuristic NMS", Sec. 3.1.1): the focal loss (Lin et al. 2017) of the product score
// sigma(pss) * sigma(s) * sigma(ctr) (Eq. (4)) against the one-to-one C-way targets.
#pragma once

#include <ATen/ATen.h>

namespace setdet {

// Focal loss of a probability given by its logarithm: with p = exp(log_prob) and targets t in
// [0, 1], ce = -(t log p + (1 - t) log(1 - p)), p_t = p t + (1 - p)(1 - t), and per element
// alpha_t * (1 - p_t)^gamma * ce, alpha_t = alpha t + (1 - alpha)(1 - t) (alpha < 0: 1), i.e.
// torchvision.ops.sigmoid_focal_loss with the sigmoid replaced by p. Taking log p (a sum of
// log-sigmoids) keeps log p finite where the product underflows; log(1 - p) is
// log(-expm1(log p)) with log p clamped to <= -1e-12. Reduction "none".
at::Tensor focal_loss_from_log_prob(const at::Tensor& log_prob, const at::Tensor& targets,
                                    double alpha = 0.25, double gamma = 2.0);

}  // namespace setdet
