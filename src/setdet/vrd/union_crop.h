// The visual model's input (Open Images 2019 VRD winner, Sec. 2.2, Fig. 3): the union of the two
// boxes cropped from the image, every pixel outside the pair blacked out, resized to a square.
//
// Output pixel (u, v) of a size x size crop stands for the image point
//   p = (U.x0 + (u + 0.5) U.w / size, U.y0 + (v + 0.5) U.h / size)
// (U = the union box, pixels, continuous coordinates: pixel column i covers [i, i + 1)); its colour
// is the image bilinearly sampled at p (cv::warpAffine, INTER_LINEAR, border replicated). p is kept
// when it lies in the subject's or the object's box (mask kBoxes, the paper's) or in the convex
// hull of the two boxes (kHull: also the space between them, where marks joining the two objects
// are drawn), and is black otherwise. Boxes are closed intervals [x0, x1] x [y0, y1].
//
// Channels, CHW float32: R, G, B normalised as (value - mean) / std (so black is -mean / std), then
// the subject's box mask and the object's box mask (1 inside, 0 outside, same point rule), which
// tell the network which object is which.
#pragma once

#include <array>
#include <opencv2/core.hpp>
#include <string>

namespace setdet {

enum class CropMask { kBoxes, kHull };

// "boxes" | "hull"; `where` names the setting in errors.
CropMask parse_crop_mask(const std::string& value, const std::string& where);

struct UnionCropOptions {
  int size = 112;
  CropMask mask = CropMask::kHull;
  std::array<float, 3> mean{123.675f, 116.28f, 103.53f};  // RGB, as the detectors' Normalize
  std::array<float, 3> std{58.395f, 57.12f, 57.375f};
};

constexpr int kUnionCropChannels = 5;

// Writes the crop of `image` (CV_8UC3 BGR) for the boxes (xyxy, pixels of `image`) to
// out[kUnionCropChannels * size * size].
void masked_union_crop(const cv::Mat& image, const std::array<float, 4>& subject,
                       const std::array<float, 4>& object, const UnionCropOptions& options,
                       float* out);

}  // namespace setdet
