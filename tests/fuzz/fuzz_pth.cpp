// The .pth reader (zip container + restricted unpickler + tensor views). An input starting with
// "PK" is the whole file; any other input is a data.pkl, zipped here (with correct CRC-32s) next
// to two storage records, so that mutations reach the unpickler instead of failing the CRC.
// Any input either loads or is a setdet::Error, in load_pth_state_dict and in the checks made
// before LibTorch reads a setdet checkpoint.
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "fuzz_util.h"
#include "setdet/core/error.h"
#include "setdet/core/io/zip_archive.h"
#include "setdet/io/pth.h"

namespace {

void put(std::string& s, uint64_t v, int n) {
  for (int k = 0; k < n; ++k) s += static_cast<char>((v >> (8 * k)) & 0xFF);
}

// Stored records, as torch.save lays them out (without its alignment padding).
std::string zip(const std::vector<std::pair<std::string, std::string>>& records) {
  std::string out, cd;
  for (const auto& [name, data] : records) {
    const uint32_t crc = setdet::crc32(data.data(), data.size());
    const uint64_t offset = out.size();
    put(out, 0x04034b50, 4), put(out, 20, 2), put(out, 0, 2), put(out, 0, 2), put(out, 0, 4);
    put(out, crc, 4), put(out, data.size(), 4), put(out, data.size(), 4);
    put(out, name.size(), 2), put(out, 0, 2);
    out += name + data;
    put(cd, 0x02014b50, 4), put(cd, 20, 2), put(cd, 20, 2), put(cd, 0, 2), put(cd, 0, 2);
    put(cd, 0, 4), put(cd, crc, 4), put(cd, data.size(), 4), put(cd, data.size(), 4);
    put(cd, name.size(), 2), put(cd, 0, 2), put(cd, 0, 2), put(cd, 0, 2), put(cd, 0, 2);
    put(cd, 0, 4), put(cd, offset, 4);
    cd += name;
  }
  const uint64_t cd_offset = out.size();
  out += cd;
  put(out, 0x06054b50, 4), put(out, 0, 4), put(out, records.size(), 2);
  put(out, records.size(), 2), put(out, cd.size(), 4), put(out, cd_offset, 4), put(out, 0, 2);
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string input(reinterpret_cast<const char*>(data), size);
  std::string file = input;
  if (input.rfind("PK", 0) != 0) {
    std::string floats(64, '\0');
    for (size_t k = 0; k < floats.size(); ++k) floats[k] = static_cast<char>(k * 7);
    file = zip({{"archive/data.pkl", input},
                {"archive/byteorder", "little"},
                {"archive/data/0", floats},
                {"archive/data/1", floats.substr(0, 16)}});
  }
  const std::string path = setdet::fuzz::write_scratch("model.pth", file);
  try {
    for (const auto& [name, tensor] : setdet::load_pth_state_dict(path)) {
      (void)setdet::tensor_crc32(tensor);
    }
  } catch (const setdet::Error&) {
  }
  try {
    setdet::check_torchscript_archive(path);
  } catch (const setdet::Error&) {
  }
  (void)setdet::is_torchscript_archive(path);
  return 0;
}
