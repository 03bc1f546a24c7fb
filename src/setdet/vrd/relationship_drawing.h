// A PNG of images with predicted relationships drawn on them: per relationship, both boxes and an
// arrow from the subject's centre to the object's in one colour, numbered; under each image the
// numbered list "subject predicate object score" ("is" rows: "object is attribute score").
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace setdet {

struct DrawnRelationship {
  int32_t image = 0;  // index into the image paths
  std::string label1, label2, predicate;
  std::array<float, 4> box1{}, box2{};  // xyxy normalised
  float score = 0.0f;
};

// Draws the images side by side, each scaled to 512 px on its long side, with at most `per_image`
// relationships each (the best pair relationships, then up to 3 "is" rows), and writes the PNG
// atomically.
void draw_relationships(const std::vector<std::string>& image_paths,
                        const std::vector<DrawnRelationship>& relationships, const std::string& png,
                        int per_image = 10);

}  // namespace setdet
