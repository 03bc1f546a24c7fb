// A synthetic visual-relationship dataset ("setdet relations"): textured shapes whose
// relationships are true by construction, written in the Open Images VRD CSV format plus COCO
// JSON for the objects. It makes the Open Images 2019 winner's point testable: some predicates
// are decidable from boxes and classes alone, others only from pixels.
//
// Objects: 6 classes (circle, square, triangle, star, hexagon, cross), 2-8 per image, placed in
// groups (a single object, a pair stacked "on", a pair "under", a small object inside a large one,
// a pair side by side) that never touch each other. Each object is plain (one colour) or has
// an attribute texture in two colours: striped, dotted or checkered. Colours of different
// objects differ (except for same_texture_as partners); the background has no strokes, so every
// line in an image is a drawn relationship mark.
//
// Predicates. Boxes are pixel boxes [x0, x1) x [y0, y1) (w = x1 - x0, cx = (x0 + x1) / 2), u =
// size / 128 (2 px at 256 px). The GROUND TRUTH of the geometric predicates is computed from the
// final boxes for every ordered pair, so it is complete:
//   inside_of(A, B): A.x0 >= B.x0 + u, A.y0 >= B.y0 + u, A.x1 <= B.x1 - u, A.y1 <= B.y1 - u.
//   on(A, B):        B.x0 <= cx(A) <= B.x1, A.w < B.w, B.y0 - u <= A.y1 <= B.y0 + B.h / 4 and
//                    A.y0 < B.y0 (A rests on B's top).
//   under(A, B):     B.x0 <= cx(A) <= B.x1 and 2u <= A.y0 - B.y1 <= 0.6 B.h (A hangs below B).
//   next_to(A, B):   u <= B.x0 - A.x1 <= min(A.w, B.w) / 2 and |cy(A) - cy(B)| <= max(A.h, B.h) / 5
//                    (A is the left one).
// Pixel predicates, decided by marks and textures that boxes do not show; each is drawn for some
// pairs among many pairs of the same kind of geometry, so the geometry of a pair says nothing:
//   connected_to(A, B):    a line (2 px, ink colour) joins the outlines of A and B; it crosses no
//                          other object. Symmetric: A is the pair's left one (smaller cx, then
//                          smaller cy). Distractors: dangling lines from one object into empty
//                          space.
//   pointing_at(A, B):     an arrow (shaft + filled head) starts at A's outline and points at B:
//                          the ray from its tip hits B's box first, B's box spans at least +-10
//                          degrees around it, and no other box lies within +-15 degrees before B.
//                          Distractors: arrows whose +-15 degree cone hits no box.
//   same_texture_as(A, B): A and B have the identical texture (kind, orientation, period, both
//                          colours); no other object shares a colour with them. Symmetric, as
//                          connected_to. Only pairs whose boxes do not intersect.
//   is(A, attribute):      A's texture is striped / dotted / checkered (plain objects have no "is"
//                          row); the row's LabelName2 is the attribute and box 2 = box 1, as in
//                          Open Images.
//
// Files (DIR = --out; SPLIT = train, val (held apart for stage 3), test):
//   DIR/SPLIT/<ImageID>.jpg|png, ImageID = SPLIT_NNNNNN
//   DIR/annotations/instances_SPLIT.json   COCO objects (category id = class position + 1; bbox
//                                          amodal, area = visible pixels)
//   DIR/annotations/vrd_SPLIT.csv          Open Images VRD ground truth: ImageID, LabelName1,
//                                          LabelName2, XMin1, XMax1, YMin1, YMax1, XMin2, XMax2,
//                                          YMin2, YMax2, RelationshipLabel (coordinates / size)
//   DIR/annotations/labels_SPLIT.csv       image-level labels: ImageID, LabelName, Confidence,
//   every
//                                          class and attribute (1 present, 0 verified absent)
//   DIR/annotations/class_descriptions.csv LabelName, DisplayName of the classes and attributes
// Each image is a pure function of (seed, split, index, size); images are rendered in parallel.
#pragma once

#include <cstdint>
#include <opencv2/core.hpp>
#include <string>
#include <vector>

#include "setdet/data/synthetic.h"

namespace setdet {

const std::vector<std::string>& synthetic_vrd_class_names();
const std::vector<std::string>& synthetic_vrd_attribute_names();
// on, under, inside_of, next_to, connected_to, pointing_at, same_texture_as, is.
const std::vector<std::string>& synthetic_vrd_predicate_names();
// Whether a predicate is decided by the boxes alone (on, under, inside_of, next_to).
bool synthetic_vrd_predicate_is_geometric(const std::string& predicate);

struct SyntheticVrdObject {
  int class_index = 0;  // synthetic_vrd_class_names()
  int attribute = -1;   // synthetic_vrd_attribute_names(), -1 for plain
  cv::Rect box;         // amodal pixel box
  int64_t full_pixels = 0, visible_pixels = 0;
  cv::Vec3b colour_a, colour_b;  // BGR; colour_b == colour_a for plain objects
};

// A drawn line or arrow, on top of the objects, starting at object `object`'s outline (where the
// line between the two objects' centres leaves it): lines end at the other object's outline (or
// in empty space for a dangling line), arrows at their tip.
struct SyntheticVrdMark {
  bool arrow = false;
  cv::Point2d from, to;
  int object = -1;  // the object it starts at
};

struct SyntheticVrdRelation {
  int subject = 0, object = 0;  // objects; for "is", object = subject
  int predicate = 0;            // synthetic_vrd_predicate_names()
  int attribute = -1;           // for "is"
};

struct SyntheticVrdImage {
  cv::Mat image;  // [size, size] BGR, CV_8UC3, with noise and lighting
  cv::Mat clean;  // the same before noise and lighting (textures in their exact colours)
  cv::Mat owner;  // CV_16SC1: index of the object on top, -1 elsewhere
  cv::Mat ink;    // CV_16SC1: index of the visible mark, -1 elsewhere
  std::vector<SyntheticVrdObject> objects;
  std::vector<SyntheticVrdMark> marks;
  std::vector<SyntheticVrdRelation> relations;  // subject-major, then predicate order
};

enum class SyntheticVrdSplit : uint64_t { kTrain = 0, kVal = 1, kTest = 2 };

// Renders one image, size x size pixels (size >= 128).
SyntheticVrdImage render_synthetic_vrd_image(uint64_t seed, SyntheticVrdSplit split, int64_t index,
                                             int size);

struct SyntheticVrdOptions {
  std::string out_dir;
  int64_t num_train = 3000;
  int64_t num_val = 600;  // held apart for the stage-3 model
  int64_t num_test = 600;
  uint64_t seed = 0;
  int size = 256;
  std::string format = "jpg";  // "jpg" or "png"
  int jpeg_quality = 95;
};

struct SyntheticVrdSummary {
  int64_t images = 0, objects = 0, relations = 0;
  std::vector<int64_t> per_predicate;  // relations per predicate
  double seconds = 0.0;
};

// Writes the dataset described above (every file atomically).
SyntheticVrdSummary generate_synthetic_vrd_dataset(const SyntheticVrdOptions& options);

}  // namespace setdet
