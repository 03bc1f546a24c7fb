// COCO results JSON through load_coco_results, with and without a ground truth to check ids
// against (the first input byte chooses); any input either loads or is a setdet::Error.
#include <cstddef>
#include <cstdint>

#include "fuzz_util.h"
#include "setdet/core/error.h"
#include "setdet/core/io/coco.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace setdet;
  static const CocoDataset gt = [] {
    CocoDataset d;
    d.images = {{1, "a.jpg", 64, 48}, {2, "b.jpg", 32, 32}};
    d.categories = {{1, "a", ""}, {3, "c", ""}};
    d.annotations = {{1, 1, 1, {1, 2, 3, 4}, 12, false}};
    d.index();
    return d;
  }();
  if (size == 0) return 0;
  const std::string path =
      fuzz::write_scratch("dt.json", {reinterpret_cast<const char*>(data) + 1, size - 1});
  try {
    const auto dets = load_coco_results(path, (data[0] & 1) ? &gt : nullptr);
    write_coco_results(fuzz::write_scratch("dt_out.json", ""), dets);
  } catch (const Error&) {
  }
  return 0;
}
