#include "setdet/core/io/coco.h"

#include <simdjson.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <utility>

#include "setdet/core/error.h"
#include "setdet/core/io/atomic_file.h"
#include "setdet/core/io/json_text.h"

namespace setdet {
namespace {

namespace od = simdjson::ondemand;

// Shortest text that reads back to the same double ("-3", "0.1", "1e+300").
std::string number_text(double v) {
  char buf[64];
  const auto res = std::to_chars(buf, buf + sizeof(buf), v);
  return std::string(buf, res.ptr);
}

// Where a value sits in a COCO file, rendered only when an error is raised:
// "annotations[12].bbox[2]" in an instances file, "[17].score" in a results file.
struct JsonPath {
  std::string_view array;  // key of the top-level array ("" when the root is the array)
  int64_t index = -1;      // element of that array, -1 for the array itself
  std::string_view key;    // field of the element, "" for the element itself
  int64_t sub = -1;        // element of that field (bbox[2]), -1 for the field itself

  JsonPath field(std::string_view k) const { return {array, index, k, -1}; }
  JsonPath item(int64_t i) const { return {array, index, key, i}; }

  std::string str() const {
    std::string s(array);
    if (index >= 0) s += "[" + std::to_string(index) + "]";
    if (!key.empty()) {
      if (!s.empty()) s += ".";
      s += key;
    }
    if (sub >= 0) s += "[" + std::to_string(sub) + "]";
    return s.empty() ? "top level" : s;
  }
};

const char* type_name(od::json_type t) {
  switch (t) {
    case od::json_type::array:
      return "an array";
    case od::json_type::object:
      return "an object";
    case od::json_type::number:
      return "a number";
    case od::json_type::string:
      return "a string";
    case od::json_type::boolean:
      return "a boolean";
    case od::json_type::null:
      return "null";
  }
  return "an unknown JSON value";
}

std::string_view trimmed(std::string_view s) {
  while (!s.empty() &&
         (s.back() == ' ' || s.back() == '\n' || s.back() == '\r' || s.back() == '\t' ||
          s.back() == ',' || s.back() == ']' || s.back() == '}')) {
    s.remove_suffix(1);
  }
  if (s.size() > 40) s = s.substr(0, 40);
  return s;
}

bool is_non_finite_token(std::string_view tok) {
  if (!tok.empty() && (tok[0] == '-' || tok[0] == '+')) tok.remove_prefix(1);
  return tok == "NaN" || tok == "Infinity" || tok == "inf" || tok == "nan";
}

// One COCO JSON file being read: owns the bytes and the simdjson parser, and turns every problem
// into a setdet::Error "<file>: <json path>: <problem>".
class CocoJsonReader {
 public:
  explicit CocoJsonReader(std::string file) : file_(std::move(file)) {}

  [[noreturn]] void fail(const JsonPath& path, const std::string& what) const {
    throw Error(file_ + ": " + path.str() + ": " + what);
  }
  [[noreturn]] void fail_json(const JsonPath& path, simdjson::error_code e) const {
    fail(path, std::string("invalid JSON (") + simdjson::error_message(e) + ")");
  }

  od::document& open() {
    const auto load_error = simdjson::padded_string::load(file_).get(json_);
    if (load_error) {
      throw Error(file_ + ": cannot read file (" + simdjson::error_message(load_error) + ")");
    }
    const auto e = parser_.iterate(json_).get(doc_);
    if (e) fail_json(JsonPath{}, e);
    return doc_;
  }

  // After the top value has been iterated, any location still in bounds is trailing content.
  void expect_end() {
    const char* loc = nullptr;
    if (!doc_.current_location().get(loc)) {
      fail(JsonPath{}, "invalid JSON (unexpected content after the top value)");
    }
  }

  od::json_type type_of(od::value& v, const JsonPath& p) {
    od::json_type t;
    const auto e = v.type().get(t);
    if (e) {
      const std::string_view tok = trimmed(v.raw_json_token());
      if (is_non_finite_token(tok)) fail(p, "expected a finite number, got " + std::string(tok));
      fail_json(p, e);
    }
    return t;
  }

  void expect_type(od::value& v, const JsonPath& p, od::json_type want, const char* what) {
    const od::json_type t = type_of(v, p);
    if (t != want) fail(p, std::string("expected ") + what + ", got " + type_name(t));
  }

  double number(od::value& v, const JsonPath& p) {
    double d = 0.0;
    if (!v.get_double().get(d) && std::isfinite(d)) return d;
    return number_error(v, p);
  }

  [[noreturn]] double number_error(od::value& v, const JsonPath& p) {
    expect_type(v, p, od::json_type::number, "a number");
    double d = 0.0;
    const auto e = v.get_double().get(d);
    const std::string tok(trimmed(v.raw_json_token()));
    if (e == simdjson::NUMBER_ERROR || e == simdjson::SUCCESS || is_non_finite_token(tok)) {
      fail(p, "expected a finite number, got " + tok);
    }
    fail_json(p, e);
  }

  // Integer ids: JSON integers in int64 range, or numbers with an integral value (pycocotools
  // compares ids by Python equality, so 7.0 and 7 are the same id).
  int64_t integer(od::value& v, const JsonPath& p) {
    int64_t i = 0;
    if (!v.get_int64().get(i)) return i;
    return integer_slow(v, p);
  }

  int64_t integer_slow(od::value& v, const JsonPath& p) {
    expect_type(v, p, od::json_type::number, "an integer");
    od::number_type nt;
    auto e = v.get_number_type().get(nt);
    if (!e && nt == od::number_type::signed_integer) {
      int64_t i = 0;
      if (!v.get_int64().get(i)) return i;
    }
    const std::string tok(trimmed(v.raw_json_token()));
    if (!e && nt == od::number_type::floating_point_number) {
      double d = 0.0;
      e = v.get_double().get(d);
      if (!e && std::isfinite(d) && d == std::floor(d) && std::fabs(d) <= 9007199254740992.0) {
        return static_cast<int64_t>(d);
      }
      if (!e && std::isfinite(d)) fail(p, "expected an integer, got " + tok);
    }
    if (is_non_finite_token(tok) || e == simdjson::NUMBER_ERROR) {
      fail(p, "expected an integer, got " + tok);
    }
    fail(p, "expected an integer in the int64 range, got " + tok);
  }

  std::string string(od::value& v, const JsonPath& p) {
    expect_type(v, p, od::json_type::string, "a string");
    std::string_view s;
    const auto e = v.get_string().get(s);
    if (e) fail_json(p, e);
    return std::string(s);
  }

  // pycocotools treats iscrowd as a flag (int(iscrowd) for the IoU, truthiness for ignore).
  bool flag01(od::value& v, const JsonPath& p) {
    const od::json_type t = type_of(v, p);
    if (t == od::json_type::boolean) {
      bool b = false;
      const auto e = v.get_bool().get(b);
      if (e) fail_json(p, e);
      return b;
    }
    if (t != od::json_type::number) fail(p, std::string("expected 0 or 1, got ") + type_name(t));
    const double d = number(v, p);
    if (d != 0.0 && d != 1.0) fail(p, "expected 0 or 1, got " + number_text(d));
    return d == 1.0;
  }

  std::array<double, 4> bbox(od::value& v, const JsonPath& p) {
    od::array arr;
    auto e = v.get_array().get(arr);
    if (e) {
      expect_type(v, p, od::json_type::array, "an array [x, y, w, h]");
      fail_json(p, e);
    }
    std::array<double, 4> box{};
    int64_t n = 0;
    for (auto item : arr) {
      od::value iv;
      e = item.get(iv);
      if (e) fail_json(p.item(n), e);
      if (n < 4) box[static_cast<size_t>(n)] = number(iv, p.item(n));
      ++n;
    }
    if (n != 4) fail(p, "expected 4 numbers [x, y, w, h], got " + std::to_string(n));
    if (box[2] < 0.0) fail(p.item(2), "width must be >= 0, got " + number_text(box[2]));
    if (box[3] < 0.0) fail(p.item(3), "height must be >= 0, got " + number_text(box[3]));
    return box;
  }

  // Calls fn(value, path) for each element of the array `v` at `p`.
  template <typename Fn>
  void for_each_element(od::value& v, const JsonPath& p, const char* what, Fn&& fn) {
    expect_type(v, p, od::json_type::array, what);
    od::array arr;
    auto e = v.get_array().get(arr);
    if (e) fail_json(p, e);
    int64_t i = 0;
    for (auto item : arr) {
      const JsonPath ip{p.key.empty() ? p.array : p.key, i, {}, -1};
      od::value iv;
      e = item.get(iv);
      if (e) fail_json(ip, e);
      fn(iv, ip);
      ++i;
    }
  }

  // Calls fn(key, value, path_of_value) for each field of the object `v` at `p`.
  template <typename Fn>
  void for_each_field(od::value& v, const JsonPath& p, Fn&& fn) {
    od::object obj;
    auto e = v.get_object().get(obj);
    if (e) {
      expect_type(v, p, od::json_type::object, "an object");
      fail_json(p, e);
    }
    for (auto field : obj) {
      std::string_view key;
      e = field.unescaped_key().get(key);
      if (e) fail_json(p, e);
      od::value fv;
      e = field.value().get(fv);
      if (e) fail_json(p.field(key), e);
      fn(key, fv, p.field(key));
    }
  }

  const std::string& file() const { return file_; }
  size_t bytes() const { return json_.size(); }

 private:
  std::string file_;
  simdjson::padded_string json_;
  od::parser parser_;
  od::document doc_;
};

void require(const CocoJsonReader& r, bool present, const JsonPath& p, const char* field) {
  if (!present) r.fail(p, std::string("missing field \"") + field + "\"");
}

void parse_images(CocoJsonReader& r, od::value& v, std::vector<CocoImage>& out) {
  r.for_each_element(v, JsonPath{"images", -1, {}, -1}, "an array of images",
                     [&](od::value& iv, const JsonPath& p) {
                       CocoImage img;
                       bool has_id = false;
                       r.for_each_field(
                           iv, p, [&](std::string_view key, od::value& fv, const JsonPath& fp) {
                             if (key == "id") {
                               img.id = r.integer(fv, fp);
                               has_id = true;
                             } else if (key == "file_name") {
                               img.file_name = r.string(fv, fp);
                             } else if (key == "width") {
                               img.width = r.integer(fv, fp);
                             } else if (key == "height") {
                               img.height = r.integer(fv, fp);
                             }
                           });
                       require(r, has_id, p, "id");
                       out.push_back(std::move(img));
                     });
}

void parse_categories(CocoJsonReader& r, od::value& v, std::vector<CocoCategory>& out) {
  r.for_each_element(v, JsonPath{"categories", -1, {}, -1}, "an array of categories",
                     [&](od::value& iv, const JsonPath& p) {
                       CocoCategory cat;
                       bool has_id = false;
                       r.for_each_field(
                           iv, p, [&](std::string_view key, od::value& fv, const JsonPath& fp) {
                             if (key == "id") {
                               cat.id = r.integer(fv, fp);
                               has_id = true;
                             } else if (key == "name") {
                               cat.name = r.string(fv, fp);
                             } else if (key == "supercategory") {
                               cat.supercategory = r.string(fv, fp);
                             }
                           });
                       require(r, has_id, p, "id");
                       out.push_back(std::move(cat));
                     });
}

void parse_annotations(CocoJsonReader& r, od::value& v, std::vector<CocoAnnotation>& out) {
  r.for_each_element(
      v, JsonPath{"annotations", -1, {}, -1}, "an array of annotations",
      [&](od::value& iv, const JsonPath& p) {
        CocoAnnotation ann;
        bool has_id = false, has_image = false, has_cat = false, has_bbox = false, has_area = false;
        r.for_each_field(iv, p, [&](std::string_view key, od::value& fv, const JsonPath& fp) {
          if (key == "id") {
            ann.id = r.integer(fv, fp);
            has_id = true;
          } else if (key == "image_id") {
            ann.image_id = r.integer(fv, fp);
            has_image = true;
          } else if (key == "category_id") {
            ann.category_id = r.integer(fv, fp);
            has_cat = true;
          } else if (key == "bbox") {
            ann.bbox = r.bbox(fv, fp);
            has_bbox = true;
          } else if (key == "area") {
            ann.area = r.number(fv, fp);
            if (ann.area < 0.0) r.fail(fp, "area must be >= 0, got " + number_text(ann.area));
            has_area = true;
          } else if (key == "iscrowd") {
            ann.iscrowd = r.flag01(fv, fp);
          }
        });
        require(r, has_id, p, "id");
        require(r, has_image, p, "image_id");
        require(r, has_cat, p, "category_id");
        require(r, has_bbox, p, "bbox");
        // pycocotools compares the annotation's own area with the area ranges.
        require(r, has_area, p, "area");
        out.push_back(ann);
      });
}

// Throws on the first id that occurs twice among items[i].id, naming both positions.
template <typename T>
void check_unique_ids(const std::string& file, const char* array, const std::vector<T>& items) {
  std::vector<std::pair<int64_t, size_t>> ids(items.size());
  for (size_t i = 0; i < items.size(); ++i) ids[i] = {items[i].id, i};
  std::sort(ids.begin(), ids.end());
  for (size_t i = 1; i < ids.size(); ++i) {
    if (ids[i].first == ids[i - 1].first) {
      throw Error(detail::concat(file.empty() ? std::string("<memory>") : file, ": ", array, "[",
                                 ids[i].second, "].id: duplicate id ", ids[i].first, " (also ",
                                 array, "[", ids[i - 1].second, "].id)"));
    }
  }
}

void append_int(std::string& out, int64_t v) {
  char buf[24];
  const auto res = std::to_chars(buf, buf + sizeof(buf), v);
  out.append(buf, res.ptr);
}

void append_double(std::string& out, double v, const std::string& path, const char* what) {
  SETDET_CHECK(std::isfinite(v), path, ": cannot write ", what, " ", v,
               " (JSON has no non-finite numbers)");
  char buf[64];
  const auto res = std::to_chars(buf, buf + sizeof(buf), v);
  out.append(buf, res.ptr);
}

void append_bbox(std::string& out, const std::array<double, 4>& b, const std::string& path) {
  out += '[';
  for (size_t j = 0; j < 4; ++j) {
    if (j) out += ", ";
    append_double(out, b[j], path, "bbox value");
  }
  out += ']';
}

}  // namespace

void CocoDataset::index() {
  check_unique_ids(path, "images", images);
  check_unique_ids(path, "categories", categories);
  check_unique_ids(path, "annotations", annotations);
  image_index.clear();
  category_index.clear();
  image_index.reserve(images.size());
  category_index.reserve(categories.size());
  for (size_t i = 0; i < images.size(); ++i) image_index.emplace(images[i].id, i);
  for (size_t i = 0; i < categories.size(); ++i) category_index.emplace(categories[i].id, i);
  const std::string file = path.empty() ? std::string("<memory>") : path;
  for (size_t i = 0; i < annotations.size(); ++i) {
    const CocoAnnotation& a = annotations[i];
    SETDET_CHECK(image_index.count(a.image_id), file, ": annotations[", i, "].image_id: image ",
                 a.image_id, " is not in \"images\"");
    SETDET_CHECK(category_index.count(a.category_id), file, ": annotations[", i,
                 "].category_id: category ", a.category_id, " is not in \"categories\"");
  }
}

CocoDataset load_coco_instances(const std::string& path) {
  CocoJsonReader r(path);
  od::document& doc = r.open();
  od::json_type root_type;
  auto e = doc.type().get(root_type);
  if (e) r.fail_json(JsonPath{}, e);
  if (root_type != od::json_type::object) {
    r.fail(JsonPath{}, std::string("expected an object with \"images\", \"annotations\" and "
                                   "\"categories\", got ") +
                           type_name(root_type));
  }
  od::object root;
  e = doc.get_object().get(root);
  if (e) r.fail_json(JsonPath{}, e);
  CocoDataset ds;
  ds.path = path;
  bool has_images = false, has_annotations = false, has_categories = false;
  for (auto field : root) {
    std::string_view key;
    e = field.unescaped_key().get(key);
    if (e) r.fail_json(JsonPath{}, e);
    od::value v;
    e = field.value().get(v);
    if (e) r.fail_json(JsonPath{key, -1, {}, -1}, e);
    if (key == "images") {
      parse_images(r, v, ds.images);
      has_images = true;
    } else if (key == "annotations") {
      parse_annotations(r, v, ds.annotations);
      has_annotations = true;
    } else if (key == "categories") {
      parse_categories(r, v, ds.categories);
      has_categories = true;
    }
  }
  r.expect_end();
  require(r, has_images, JsonPath{}, "images");
  require(r, has_annotations, JsonPath{}, "annotations");
  require(r, has_categories, JsonPath{}, "categories");
  ds.index();
  return ds;
}

std::vector<CocoDetection> load_coco_results(const std::string& path, const CocoDataset* gt) {
  CocoJsonReader r(path);
  od::document& doc = r.open();
  od::json_type root_type;
  auto e = doc.type().get(root_type);
  if (e) r.fail_json(JsonPath{}, e);
  if (root_type != od::json_type::array) {
    r.fail(JsonPath{}, std::string("expected an array of results {image_id, category_id, bbox, "
                                   "score}, got ") +
                           type_name(root_type));
  }
  od::array arr;
  e = doc.get_array().get(arr);
  if (e) r.fail_json(JsonPath{}, e);
  std::vector<CocoDetection> dets;
  // A result takes at least ~60 bytes of JSON: reserve once instead of growing repeatedly.
  dets.reserve(r.bytes() / 64);
  const std::string gt_name = gt && !gt->path.empty() ? gt->path : std::string("<memory>");
  int64_t i = 0;
  for (auto item : arr) {
    const JsonPath p{{}, i, {}, -1};
    od::value v;
    e = item.get(v);
    if (e) r.fail_json(p, e);
    CocoDetection det;
    bool has_image = false, has_cat = false, has_bbox = false, has_score = false;
    r.for_each_field(v, p, [&](std::string_view key, od::value& fv, const JsonPath& fp) {
      if (key == "image_id") {
        det.image_id = r.integer(fv, fp);
        has_image = true;
      } else if (key == "category_id") {
        det.category_id = r.integer(fv, fp);
        has_cat = true;
      } else if (key == "bbox") {
        det.bbox = r.bbox(fv, fp);
        has_bbox = true;
      } else if (key == "score") {
        det.score = r.number(fv, fp);
        has_score = true;
      }
    });
    require(r, has_image, p, "image_id");
    require(r, has_cat, p, "category_id");
    require(r, has_bbox, p, "bbox");
    require(r, has_score, p, "score");
    if (gt) {
      if (!gt->image_index.count(det.image_id)) {
        r.fail(p.field("image_id"),
               detail::concat("image ", det.image_id, " is not in the ground truth ", gt_name,
                              " (pycocotools: Results do not correspond to current coco set)"));
      }
      if (!gt->category_index.count(det.category_id)) {
        r.fail(p.field("category_id"), detail::concat("category ", det.category_id,
                                                      " is not in the ground truth ", gt_name));
      }
    }
    dets.push_back(det);
    ++i;
  }
  r.expect_end();
  dets.shrink_to_fit();
  return dets;
}

void write_coco_results(const std::string& path, const std::vector<CocoDetection>& dets) {
  std::string out;
  out.reserve(dets.size() * 110 + 4);
  out += "[";
  for (size_t i = 0; i < dets.size(); ++i) {
    const CocoDetection& d = dets[i];
    const std::string where = path + ": [" + std::to_string(i) + "]";
    out += i ? ",\n" : "\n";
    out += "{\"image_id\": ";
    append_int(out, d.image_id);
    out += ", \"category_id\": ";
    append_int(out, d.category_id);
    out += ", \"bbox\": ";
    append_bbox(out, d.bbox, where);
    out += ", \"score\": ";
    append_double(out, d.score, where, "score");
    out += "}";
  }
  out += "\n]\n";
  write_file_atomic(path, out);
}

void write_coco_instances(const std::string& path, const CocoDataset& dataset) {
  std::string out;
  out.reserve(dataset.annotations.size() * 160 + dataset.images.size() * 100 + 64);
  out += "{\"images\": [";
  for (size_t i = 0; i < dataset.images.size(); ++i) {
    const CocoImage& img = dataset.images[i];
    out += i ? ",\n" : "\n";
    out += "{\"id\": ";
    append_int(out, img.id);
    out += ", \"file_name\": ";
    append_json_string(out, img.file_name);
    out += ", \"width\": ";
    append_int(out, img.width);
    out += ", \"height\": ";
    append_int(out, img.height);
    out += "}";
  }
  out += "\n],\n\"annotations\": [";
  for (size_t i = 0; i < dataset.annotations.size(); ++i) {
    const CocoAnnotation& a = dataset.annotations[i];
    const std::string where = path + ": annotations[" + std::to_string(i) + "]";
    out += i ? ",\n" : "\n";
    out += "{\"id\": ";
    append_int(out, a.id);
    out += ", \"image_id\": ";
    append_int(out, a.image_id);
    out += ", \"category_id\": ";
    append_int(out, a.category_id);
    out += ", \"bbox\": ";
    append_bbox(out, a.bbox, where);
    out += ", \"area\": ";
    append_double(out, a.area, where, "area");
    out += ", \"iscrowd\": ";
    out += a.iscrowd ? "1" : "0";
    out += "}";
  }
  out += "\n],\n\"categories\": [";
  for (size_t i = 0; i < dataset.categories.size(); ++i) {
    const CocoCategory& c = dataset.categories[i];
    out += i ? ",\n" : "\n";
    out += "{\"id\": ";
    append_int(out, c.id);
    out += ", \"name\": ";
    append_json_string(out, c.name);
    out += ", \"supercategory\": ";
    append_json_string(out, c.supercategory);
    out += "}";
  }
  out += "\n]}\n";
  write_file_atomic(path, out);
}

}  // namespace setdet
