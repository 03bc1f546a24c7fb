#include "setdet/vrd/vrd_split.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <numeric>
#include <set>

#include "setdet/core/error.h"
#include "setdet/core/eval/vrd_eval.h"
#include "setdet/core/io/coco.h"

namespace setdet {
namespace {

constexpr float kBoxTolerance = 1e-4f;

bool same_box(const std::array<float, 4>& a, const VrdBox& b) {
  return std::abs(a[0] - b.xmin) <= kBoxTolerance && std::abs(a[1] - b.ymin) <= kBoxTolerance &&
         std::abs(a[2] - b.xmax) <= kBoxTolerance && std::abs(a[3] - b.ymax) <= kBoxTolerance;
}

std::string box_text(const VrdBox& b) {
  char buf[96];
  std::snprintf(buf, sizeof(buf), "[%.6g, %.6g, %.6g, %.6g]", b.xmin, b.ymin, b.xmax, b.ymax);
  return buf;
}

}  // namespace

VrdSplit read_vrd_split(const VrdSplitFiles& files, const std::vector<std::string>& predicates) {
  const CocoDataset coco = load_coco_instances(files.instances);
  VrdSplit split;
  std::vector<CocoCategory> categories = coco.categories;
  std::sort(categories.begin(), categories.end(),
            [](const CocoCategory& a, const CocoCategory& b) { return a.id < b.id; });
  std::map<int64_t, int32_t> label_of;
  for (const auto& c : categories) {
    label_of[c.id] = static_cast<int32_t>(split.classes.size());
    split.classes.push_back(c.name);
  }
  std::map<std::string, size_t> image_by_id;
  for (const auto& im : coco.images) {
    VrdImageRecord r;
    r.id = std::filesystem::path(im.file_name).stem().string();
    r.path = (std::filesystem::path(files.images) / im.file_name).string();
    r.width = im.width;
    r.height = im.height;
    SETDET_CHECK(r.width > 0 && r.height > 0, files.instances, ": image ", im.id,
                 " has no size (width ", r.width, ", height ", r.height, ")");
    SETDET_CHECK(image_by_id.emplace(r.id, split.images.size()).second, files.instances,
                 ": two images have the file name stem '", r.id, "'");
    split.images.push_back(std::move(r));
  }
  for (const auto& ann : coco.annotations) {
    if (ann.iscrowd) continue;
    VrdImageRecord& r = split.images[coco.image_index.at(ann.image_id)];
    const float w = static_cast<float>(r.width), h = static_cast<float>(r.height);
    VrdObject o;
    o.label = label_of.at(ann.category_id);
    o.box = {static_cast<float>(ann.bbox[0]) / w, static_cast<float>(ann.bbox[1]) / h,
             static_cast<float>(ann.bbox[0] + ann.bbox[2]) / w,
             static_cast<float>(ann.bbox[1] + ann.bbox[3]) / h};
    r.objects.push_back(o);
  }
  if (files.relationships.empty()) {
    split.predicates = predicates;
    return split;
  }

  VrdData vrd;
  read_vrd_ground_truth(files.relationships, vrd);
  if (predicates.empty()) {
    std::set<std::string> names;
    for (size_t p = 0; p < vrd.predicates.size(); ++p) {
      if (vrd.predicates.name(static_cast<int32_t>(p)) != "is") {
        names.insert(vrd.predicates.name(static_cast<int32_t>(p)));
      }
    }
    split.predicates.assign(names.begin(), names.end());
  } else {
    split.predicates = predicates;
  }
  const auto index_in = [](const std::vector<std::string>& names, const std::string& name) {
    const auto it = std::find(names.begin(), names.end(), name);
    return it == names.end() ? -1 : static_cast<int32_t>(it - names.begin());
  };
  const auto find_object = [&](const VrdImageRecord& r, int32_t label, const VrdBox& box) {
    for (size_t k = 0; k < r.objects.size(); ++k) {
      if (r.objects[k].label == label && same_box(r.objects[k].box, box)) {
        return static_cast<int32_t>(k);
      }
    }
    return -1;
  };
  for (size_t row = 0; row < vrd.ground_truth.size(); ++row) {
    const VrdRelation& rel = vrd.ground_truth[row];
    const std::string& image = vrd.images.name(rel.image);
    const std::string& predicate = vrd.predicates.name(rel.predicate);
    const std::string where = files.relationships + ": relationship " + std::to_string(row + 1) +
                              " (" + image + ", " + vrd.classes.name(rel.subject) + " " +
                              predicate + " " + vrd.classes.name(rel.object) + ")";
    const auto im = image_by_id.find(image);
    SETDET_CHECK(im != image_by_id.end(), where, ": image '", image, "' is not in ",
                 files.instances);
    VrdImageRecord& r = split.images[im->second];
    const int32_t subject_label = index_in(split.classes, vrd.classes.name(rel.subject));
    SETDET_CHECK(subject_label >= 0, where, ": class '", vrd.classes.name(rel.subject),
                 "' is not a category of ", files.instances);
    const int32_t subject = find_object(r, subject_label, rel.subject_box);
    SETDET_CHECK(subject >= 0, where, ": no ", vrd.classes.name(rel.subject), " of ",
                 files.instances, " has the box ", box_text(rel.subject_box));
    if (predicate == "is") {
      r.attributes.push_back({subject, vrd.classes.name(rel.object)});
      continue;
    }
    const int32_t p = index_in(split.predicates, predicate);
    SETDET_CHECK(p >= 0, where, ": predicate '", predicate,
                 "' is not one of the pipeline's predicates (those of the training split)");
    const int32_t object_label = index_in(split.classes, vrd.classes.name(rel.object));
    SETDET_CHECK(object_label >= 0, where, ": class '", vrd.classes.name(rel.object),
                 "' is not a category of ", files.instances);
    const int32_t object = find_object(r, object_label, rel.object_box);
    SETDET_CHECK(object >= 0, where, ": no ", vrd.classes.name(rel.object), " of ", files.instances,
                 " has the box ", box_text(rel.object_box));
    r.relations.push_back({subject, object, p});
  }
  return split;
}

std::vector<std::array<int32_t, 2>> candidate_pairs(const std::vector<VrdObject>& objects,
                                                    float min_score, int32_t max_objects) {
  std::vector<int32_t> kept(objects.size());
  std::iota(kept.begin(), kept.end(), 0);
  std::stable_sort(kept.begin(), kept.end(),
                   [&](int32_t a, int32_t b) { return objects[a].score > objects[b].score; });
  while (!kept.empty() && (objects[kept.back()].score < min_score ||
                           static_cast<int32_t>(kept.size()) > max_objects)) {
    kept.pop_back();
  }
  std::sort(kept.begin(), kept.end());
  std::vector<std::array<int32_t, 2>> pairs;
  for (int32_t s : kept) {
    for (int32_t o : kept) {
      if (s != o) pairs.push_back({s, o});
    }
  }
  return pairs;
}

float box_iou(const std::array<float, 4>& a, const std::array<float, 4>& b) {
  const float iw = std::max(0.0f, std::min(a[2], b[2]) - std::max(a[0], b[0]));
  const float ih = std::max(0.0f, std::min(a[3], b[3]) - std::max(a[1], b[1]));
  const float inter = iw * ih;
  const float uni = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter;
  return uni > 0.0f ? inter / uni : 0.0f;
}

std::vector<std::vector<int32_t>> match_to_ground_truth(const std::vector<VrdObject>& objects,
                                                        const VrdImageRecord& image,
                                                        float iou_threshold) {
  std::vector<std::vector<int32_t>> out(objects.size());
  for (size_t i = 0; i < objects.size(); ++i) {
    for (size_t g = 0; g < image.objects.size(); ++g) {
      if (objects[i].label == image.objects[g].label &&
          box_iou(objects[i].box, image.objects[g].box) >= iou_threshold) {
        out[i].push_back(static_cast<int32_t>(g));
      }
    }
  }
  return out;
}

std::vector<uint8_t> pair_labels(const VrdImageRecord& image,
                                 const std::vector<std::array<int32_t, 2>>& pairs,
                                 const std::vector<std::vector<int32_t>>& matches,
                                 int64_t num_predicates) {
  // ground-truth predicates of each (subject, object) of the image
  std::map<std::pair<int32_t, int32_t>, std::vector<int32_t>> truth;
  for (const auto& r : image.relations) truth[{r.subject, r.object}].push_back(r.predicate);
  std::vector<uint8_t> labels(pairs.size() * static_cast<size_t>(num_predicates), 0);
  for (size_t k = 0; k < pairs.size(); ++k) {
    const auto [s, o] = pairs[k];
    const auto mark = [&](int32_t gs, int32_t go) {
      const auto it = truth.find({gs, go});
      if (it == truth.end()) return;
      for (int32_t p : it->second) labels[k * static_cast<size_t>(num_predicates) + p] = 1;
    };
    if (matches.empty()) {
      mark(s, o);
      continue;
    }
    for (int32_t gs : matches[static_cast<size_t>(s)]) {
      for (int32_t go : matches[static_cast<size_t>(o)]) {
        if (gs != go) mark(gs, go);
      }
    }
  }
  return labels;
}

}  // namespace setdet
