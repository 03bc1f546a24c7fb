// COCO instances JSON (ground truth) through load_coco_instances: any input either loads or is a
// setdet::Error; a loaded dataset is indexed and written back.
#include <cstddef>
#include <cstdint>

#include "fuzz_util.h"
#include "setdet/core/error.h"
#include "setdet/core/io/coco.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace setdet;
  const std::string path =
      fuzz::write_scratch("gt.json", {reinterpret_cast<const char*>(data), size});
  try {
    const CocoDataset gt = load_coco_instances(path);
    write_coco_instances(fuzz::write_scratch("gt_out.json", ""), gt);
  } catch (const Error&) {
  }
  return 0;
}
