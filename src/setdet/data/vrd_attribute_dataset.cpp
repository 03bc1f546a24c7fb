#include "setdet/data/vrd_attribute_dataset.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <set>

#include "setdet/core/error.h"
#include "setdet/data/coco_dataset.h"

namespace setdet {
namespace {

std::string box_text(const VrdBox& b) {
  return "[" + std::to_string(b.xmin) + ", " + std::to_string(b.ymin) + ", " +
         std::to_string(b.xmax) + ", " + std::to_string(b.ymax) + "]";
}

bool same_box(const CocoAnnotation& a, const CocoImage& image, const VrdBox& b) {
  constexpr double kTolerance = 1e-4;
  const double w = static_cast<double>(image.width), h = static_cast<double>(image.height);
  return std::abs(a.bbox[0] / w - b.xmin) <= kTolerance &&
         std::abs(a.bbox[1] / h - b.ymin) <= kTolerance &&
         std::abs((a.bbox[0] + a.bbox[2]) / w - b.xmax) <= kTolerance &&
         std::abs((a.bbox[1] + a.bbox[3]) / h - b.ymax) <= kTolerance;
}

}  // namespace

CocoDataset vrd_attribute_instances(const CocoDataset& objects, const VrdData& vrd,
                                    const std::string& origin, VrdAttributeClasses classes) {
  const int32_t is = vrd.predicates.find("is");
  if (classes.attributes.empty()) {
    std::set<std::string> seen;
    for (const auto& r : vrd.ground_truth) {
      if (r.predicate == is) seen.insert(vrd.classes.name(r.object));
    }
    classes.attributes.assign(seen.begin(), seen.end());
  }
  std::map<std::string, int64_t> attribute_slot;  // 0 = plain
  for (size_t a = 0; a < classes.attributes.size(); ++a) {
    SETDET_CHECK(attribute_slot.emplace(classes.attributes[a], static_cast<int64_t>(a) + 1).second,
                 origin, ": attribute '", classes.attributes[a], "' is listed twice");
  }
  SETDET_CHECK(!attribute_slot.count(classes.plain), origin, ": the plain name '", classes.plain,
               "' is also an attribute");
  const auto slots = static_cast<int64_t>(classes.attributes.size()) + 1;

  CocoDataset out;
  out.path = objects.path;
  out.images = objects.images;
  std::vector<CocoCategory> categories = objects.categories;
  std::sort(categories.begin(), categories.end(),
            [](const CocoCategory& a, const CocoCategory& b) { return a.id < b.id; });
  std::map<int64_t, int64_t> first_id;  // object category id -> id of its plain variant
  for (const auto& c : categories) {
    first_id[c.id] = static_cast<int64_t>(out.categories.size()) + 1;
    for (int64_t s = 0; s < slots; ++s) {
      const std::string& suffix =
          s == 0 ? classes.plain : classes.attributes[static_cast<size_t>(s - 1)];
      out.categories.push_back({static_cast<int64_t>(out.categories.size()) + 1,
                                c.name + classes.separator + suffix, c.name});
    }
  }

  // annotations of each image by file stem
  std::map<std::string, size_t> image_by_stem;
  for (size_t i = 0; i < objects.images.size(); ++i) {
    image_by_stem[std::filesystem::path(objects.images[i].file_name).stem().string()] = i;
  }
  std::vector<std::vector<size_t>> annotations_of(objects.images.size());
  for (size_t k = 0; k < objects.annotations.size(); ++k) {
    const auto it = objects.image_index.find(objects.annotations[k].image_id);
    SETDET_CHECK(it != objects.image_index.end(), objects.path, ": annotation ",
                 objects.annotations[k].id, " refers to image ", objects.annotations[k].image_id,
                 " which is not listed");
    annotations_of[it->second].push_back(k);
  }
  std::map<int64_t, std::string> category_name;
  for (const auto& c : objects.categories) category_name[c.id] = c.name;

  std::vector<int64_t> slot(objects.annotations.size(), 0);
  for (size_t row = 0; row < vrd.ground_truth.size(); ++row) {
    const VrdRelation& r = vrd.ground_truth[row];
    if (r.predicate != is) continue;
    const std::string& image = vrd.images.name(r.image);
    const std::string& cls = vrd.classes.name(r.subject);
    const std::string& attribute = vrd.classes.name(r.object);
    const std::string where = origin + ": 'is' row " + std::to_string(row + 1) + " (" + image +
                              ", " + cls + " is " + attribute + ", box " + box_text(r.subject_box) +
                              ")";
    const auto a = attribute_slot.find(attribute);
    SETDET_CHECK(
        a != attribute_slot.end(), where, ": attribute '", attribute,
        "' is not among the attributes (",
        [&] {
          std::string s;
          for (const auto& x : classes.attributes) s += (s.empty() ? "" : ", ") + x;
          return s;
        }(),
        ")");
    const auto im = image_by_stem.find(image);
    SETDET_CHECK(im != image_by_stem.end(), where, ": no image of ", objects.path,
                 " has the file name stem '", image, "'");
    int64_t match = -1;
    for (size_t k : annotations_of[im->second]) {
      const CocoAnnotation& ann = objects.annotations[k];
      if (category_name[ann.category_id] == cls &&
          same_box(ann, objects.images[im->second], r.subject_box)) {
        match = static_cast<int64_t>(k);
        break;
      }
    }
    SETDET_CHECK(match >= 0, where, ": matches no ", cls, " of ", objects.path);
    int64_t& s = slot[static_cast<size_t>(match)];
    SETDET_CHECK(s == 0 || s == a->second, where, ": the object already has the attribute '",
                 classes.attributes[static_cast<size_t>(s - 1)], "' (one attribute per object)");
    s = a->second;
  }
  out.annotations = objects.annotations;
  for (size_t k = 0; k < out.annotations.size(); ++k) {
    out.annotations[k].category_id = first_id.at(out.annotations[k].category_id) + slot[k];
  }
  out.index();
  return out;
}

namespace {

SETDET_REGISTER(DatasetRegistry, "VrdAttributeDataset", [](const Config& cfg) {
  cfg.check_keys({"type", "ann_file", "vrd_file", "img_dir", "data_root", "pipeline",
                  "filter_empty", "attributes", "plain", "separator"});
  const auto root = cfg.get<std::string>("data_root", "");
  CocoDetectionDatasetOptions options = coco_dataset_options(cfg);
  VrdAttributeClasses classes;
  classes.attributes = cfg.get<std::vector<std::string>>("attributes", {});
  classes.plain = cfg.get<std::string>("plain", classes.plain);
  classes.separator = cfg.get<std::string>("separator", classes.separator);
  CocoDataset objects = load_coco_instances(options.ann_file);
  objects.index();
  VrdData vrd;
  const std::string vrd_file = path_under_root(root, cfg.get<std::string>("vrd_file"));
  read_vrd_ground_truth(vrd_file, vrd);
  options.instances = std::make_shared<const CocoDataset>(
      vrd_attribute_instances(objects, vrd, vrd_file, std::move(classes)));
  return std::shared_ptr<Dataset>(std::make_shared<CocoDetectionDataset>(std::move(options)));
});

}  // namespace
}  // namespace setdet
