// ZipArchive on archives written byte by byte (APPNOTE 6.3 layouts), then damaged one field at a
// time: every declared size is checked against the file and every record's CRC-32 on reading.
#include <gtest/gtest.h>
#include <unistd.h>
#include <zlib.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "setdet/core/error.h"
#include "setdet/core/io/zip_archive.h"

namespace setdet {
namespace {

namespace fs = std::filesystem;

struct Entry {
  std::string name;
  std::string data;   // as stored (deflated bytes for method 8)
  uint64_t size = 0;  // uncompressed
  uint32_t crc = 0;
  uint16_t method = 0;
  uint16_t flags = 0;
};

Entry stored(const std::string& name, const std::string& data) {
  return {name, data, data.size(), crc32(data.data(), data.size()), 0, 0};
}

Entry deflated(const std::string& name, const std::string& data) {
  z_stream z{};
  deflateInit2(&z, 9, Z_DEFLATED, -MAX_WBITS, 8, Z_DEFAULT_STRATEGY);
  std::string out(deflateBound(&z, data.size()), '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  z.avail_in = static_cast<uInt>(data.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  deflate(&z, Z_FINISH);
  out.resize(z.total_out);
  deflateEnd(&z);
  return {name, out, data.size(), crc32(data.data(), data.size()), 8, 0};
}

void put(std::string& s, uint64_t v, int n) {
  for (int k = 0; k < n; ++k) s += static_cast<char>((v >> (8 * k)) & 0xFF);
}

// Local headers and data, the central directory, the end record (the classic 32-bit layout).
std::string zip_bytes(const std::vector<Entry>& entries) {
  std::string out, cd;
  for (const Entry& e : entries) {
    const uint64_t offset = out.size();
    put(out, 0x04034b50, 4);
    put(out, 20, 2);
    put(out, e.flags, 2);
    put(out, e.method, 2);
    put(out, 0, 4);  // time, date
    put(out, e.crc, 4);
    put(out, e.data.size(), 4);
    put(out, e.size, 4);
    put(out, e.name.size(), 2);
    put(out, 0, 2);
    out += e.name + e.data;
    put(cd, 0x02014b50, 4);
    put(cd, 20, 2);
    put(cd, 20, 2);
    put(cd, e.flags, 2);
    put(cd, e.method, 2);
    put(cd, 0, 4);
    put(cd, e.crc, 4);
    put(cd, e.data.size(), 4);
    put(cd, e.size, 4);
    put(cd, e.name.size(), 2);
    put(cd, 0, 2);  // extra
    put(cd, 0, 2);  // comment
    put(cd, 0, 2);  // disk
    put(cd, 0, 2);  // internal attributes
    put(cd, 0, 4);  // external attributes
    put(cd, offset, 4);
    cd += e.name;
  }
  const uint64_t cd_offset = out.size();
  out += cd;
  put(out, 0x06054b50, 4);
  put(out, 0, 4);
  put(out, entries.size(), 2);
  put(out, entries.size(), 2);
  put(out, cd.size(), 4);
  put(out, cd_offset, 4);
  put(out, 0, 2);
  return out;
}

class ZipArchiveTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("setdet_zip_" + std::to_string(::getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string write(const std::string& name, const std::string& bytes) {
    const std::string path = (dir_ / name).string();
    std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
    return path;
  }
  static std::string error_of(const std::string& path, bool read_all) {
    try {
      ZipArchive zip(path);
      if (read_all) {
        for (const auto& r : zip.records()) zip.read(r);
      }
    } catch (const Error& e) {
      return e.what();
    }
    return "";
  }
  fs::path dir_;
};

TEST_F(ZipArchiveTest, ReadsStoredAndDeflatedRecords) {
  const std::string text(5000, 'x');
  const std::string path =
      write("ok.zip", zip_bytes({stored("a/data.pkl", "hello"), deflated("a/data/0", text),
                                 stored("a/empty", "")}));
  ZipArchive zip(path);
  ASSERT_EQ(zip.records().size(), 3u);
  EXPECT_EQ(zip.read(*zip.find("a/data.pkl")), "hello");
  EXPECT_EQ(zip.read(*zip.find("a/data/0")), text);
  EXPECT_EQ(zip.read(*zip.find("a/empty")), "");
  EXPECT_EQ(zip.find("a/missing"), nullptr);
  EXPECT_EQ(crc32("123456789", 9), 0xCBF43926u);  // the CRC-32 check value
}

TEST_F(ZipArchiveTest, CrcMismatchNamesTheRecord) {
  Entry e = stored("a/data/0", "payload");
  e.crc ^= 1;
  const std::string path = write("crc.zip", zip_bytes({e}));
  const std::string err = error_of(path, true);
  EXPECT_NE(err.find(path + ": record 'a/data/0' is corrupt: its bytes have CRC-32 0x"),
            std::string::npos)
      << err;
  Entry d = deflated("a/d", std::string(100, 'y'));
  d.crc ^= 1;
  EXPECT_NE(error_of(write("crc8.zip", zip_bytes({d})), true).find("record 'a/d' is corrupt"),
            std::string::npos);
}

TEST_F(ZipArchiveTest, DeclaredSizesAreCheckedAgainstTheFile) {
  const std::string good = zip_bytes({stored("a/x", "0123456789")});
  // Not a zip, too short, truncated.
  EXPECT_NE(error_of(write("text.zip", std::string(100, 't')), false)
                .find("not a zip archive (no end-of-central-directory record)"),
            std::string::npos);
  EXPECT_NE(error_of(write("short.zip", "PK"), false).find("shorter than an end-of-central"),
            std::string::npos);
  EXPECT_NE(error_of(write("cut.zip", good.substr(0, good.size() - 30)), false)
                .find("truncated zip archive"),
            std::string::npos);

  // A record claiming 2^32 - 2 bytes in a file of ~100: refused when the archive is opened.
  std::string big = good;
  const size_t cd = big.find("PK\x01\x02");
  for (int k = 0; k < 4; ++k) big[cd + 20 + k] = big[cd + 24 + k] = static_cast<char>(0xFF);
  big[cd + 20] = big[cd + 24] = static_cast<char>(0xFE);
  std::string err = error_of(write("big.zip", big), false);
  EXPECT_NE(err.find("record 'a/x' declares 4294967294 bytes at byte 0, beyond the"),
            std::string::npos)
      << err;

  // Stored size and compressed size disagree.
  std::string sizes = good;
  sizes[cd + 24] = 11;
  err = error_of(write("sizes.zip", sizes), false);
  EXPECT_NE(err.find("stored record 'a/x' declares 11 bytes but 10 compressed bytes"),
            std::string::npos)
      << err;

  // A deflated record claiming more than deflate can encode.
  Entry bomb = deflated("a/bomb", std::string(1000, 'z'));
  bomb.size = 1ull << 31;
  err = error_of(write("bomb.zip", zip_bytes({bomb})), false);
  EXPECT_NE(err.find("record 'a/bomb' declares 2147483648 bytes inflated from"), std::string::npos)
      << err;

  // More records than the central directory can hold; a central directory past the end.
  std::string count = good;
  const size_t eocd = count.rfind("PK\x05\x06");
  count[eocd + 10] = 50;
  err = error_of(write("count.zip", count), false);
  EXPECT_NE(err.find("the archive declares 50 records"), std::string::npos) << err;
  std::string offset = good;
  offset[eocd + 16] = 100;
  err = error_of(write("offset.zip", offset), false);
  EXPECT_NE(err.find("does not fit in the file"), std::string::npos) << err;
}

TEST_F(ZipArchiveTest, UnsupportedRecordsAreNamed) {
  std::vector<Entry> twice = {stored("a/x", "1"), stored("a/x", "2")};
  EXPECT_NE(
      error_of(write("twice.zip", zip_bytes(twice)), false).find("record 'a/x' appears twice"),
      std::string::npos);
  Entry locked = stored("a/locked", "secret");
  locked.flags = 1;
  EXPECT_NE(error_of(write("locked.zip", zip_bytes({locked})), false)
                .find("record 'a/locked' is encrypted"),
            std::string::npos);
  Entry bz = stored("a/bz", "data");
  bz.method = 12;
  EXPECT_NE(error_of(write("bz.zip", zip_bytes({bz})), false)
                .find("record 'a/bz' uses compression method 12"),
            std::string::npos);
  Entry garbage = deflated("a/g", "abc");
  garbage.data = "\xff\xff\xff\xff";
  const std::string err = error_of(write("garbage.zip", zip_bytes({garbage})), true);
  EXPECT_NE(err.find("record 'a/g' is not valid deflate data"), std::string::npos) << err;
}

}  // namespace
}  // namespace setdet
