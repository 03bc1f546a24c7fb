// Reading zip archives (PKWARE APPNOTE 6.3: central directory, ZIP64, stored and deflated records)
// as torch.save and TorchScript write them, with every size the archive declares checked against
// the bytes present and the CRC-32 of every record verified when it is read. Errors (setdet::Error)
// name the file and the record.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

namespace setdet {

// CRC-32 (IEEE 802.3, as zlib.crc32), continuing from `crc` (0 to start).
uint32_t crc32(const void* data, size_t size, uint32_t crc = 0);

class ZipArchive {
 public:
  struct Record {
    std::string name;
    uint16_t method = 0;  // 0 stored, 8 deflated
    uint32_t crc32 = 0;   // as the central directory declares it
    uint64_t compressed_size = 0;
    uint64_t size = 0;  // uncompressed bytes
    uint64_t header_offset = 0;
  };

  // Opens `path` and reads its central directory. Throws naming `path` when it is not a zip
  // archive (no end-of-central-directory record), is truncated, or declares records that do not
  // fit in the file, overlap the central directory, use another compression method, are
  // encrypted, or appear twice.
  explicit ZipArchive(const std::string& path);
  ~ZipArchive();
  ZipArchive(const ZipArchive&) = delete;
  ZipArchive& operator=(const ZipArchive&) = delete;

  const std::string& path() const { return path_; }
  uint64_t file_size() const { return file_size_; }
  const std::vector<Record>& records() const { return records_; }
  const Record* find(const std::string& name) const;  // nullptr if absent

  // Reads the record's `record.size` uncompressed bytes into `out`, verifying the CRC-32.
  void read(const Record& record, void* out) const;
  std::string read(const Record& record) const;
  // Reads every record once (a stored one in 1 MiB pieces) and checks its CRC-32.
  void verify_all() const;

 private:
  void pread_exact(void* out, uint64_t size, uint64_t offset, const std::string& what) const;
  uint64_t data_offset(const Record& record) const;
  void check_crc(const Record& record, uint32_t crc) const;

  std::string path_;
  int fd_ = -1;
  uint64_t file_size_ = 0;
  uint64_t central_directory_offset_ = 0;
  std::vector<Record> records_;
  std::unordered_map<std::string, size_t> index_;
};

}  // namespace setdet
