#include "setdet/core/io/zip_archive.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <limits>

#include "setdet/core/error.h"

namespace setdet {
namespace {

constexpr uint32_t kLocalHeader = 0x04034b50;
constexpr uint32_t kCentralHeader = 0x02014b50;
constexpr uint32_t kEndOfCentralDirectory = 0x06054b50;
constexpr uint32_t kZip64EndOfCentralDirectory = 0x06064b50;
constexpr uint32_t kZip64Locator = 0x07064b50;
constexpr size_t kEocdSize = 22;
constexpr size_t kMaxComment = 0xFFFF;
constexpr size_t kCentralHeaderSize = 46;
constexpr size_t kLocalHeaderSize = 30;
// Deflate emits at least one bit per 258 bytes of a repeated run: a stream inflates to at most
// ~1032 times its size (zlib's "maximum compression factor").
constexpr uint64_t kMaxDeflateRatio = 1032;

uint64_t le(const char* p, int n) {
  uint64_t v = 0;
  for (int k = n; k-- > 0;) v = (v << 8) | static_cast<uint8_t>(p[k]);
  return v;
}

std::string hex32(uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof(buf), "0x%08x", v);
  return buf;
}

}  // namespace

uint32_t crc32(const void* data, size_t size, uint32_t crc) {
  const auto* p = static_cast<const Bytef*>(data);
  uLong c = crc;
  while (size > 0) {  // zlib takes a uInt length
    const auto n = static_cast<uInt>(std::min<size_t>(size, std::numeric_limits<uInt>::max()));
    c = ::crc32(c, p, n);
    p += n;
    size -= n;
  }
  return static_cast<uint32_t>(c);
}

ZipArchive::ZipArchive(const std::string& path) : path_(path) {
  fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  SETDET_CHECK(fd_ >= 0, path, ": cannot open (", std::strerror(errno), ")");
  try {
    struct stat st {};
    SETDET_CHECK(::fstat(fd_, &st) == 0 && S_ISREG(st.st_mode), path, ": not a regular file");
    file_size_ = static_cast<uint64_t>(st.st_size);
    SETDET_CHECK(file_size_ >= kEocdSize, path, ": not a zip archive (", file_size_,
                 " bytes, shorter than an end-of-central-directory record)");

    // The end-of-central-directory record: the last 22 bytes plus at most a 64 KiB comment.
    const uint64_t tail_size = std::min<uint64_t>(file_size_, kEocdSize + kMaxComment);
    std::string tail(tail_size, '\0');
    pread_exact(tail.data(), tail_size, file_size_ - tail_size, "the end of the file");
    int64_t found = -1;
    for (int64_t p = static_cast<int64_t>(tail_size - kEocdSize); p >= 0; --p) {
      const char* e = tail.data() + p;
      if (le(e, 4) == kEndOfCentralDirectory &&
          static_cast<uint64_t>(p) + kEocdSize + le(e + 20, 2) <= tail_size) {
        found = p;
        break;
      }
    }
    if (found < 0) {
      char magic[4] = {};
      pread_exact(magic, 4, 0, "the first bytes");
      SETDET_CHECK(le(magic, 4) != kLocalHeader, path,
                   ": truncated zip archive (it starts like one but has no end-of-central-"
                   "directory record)");
      throw Error(path + ": not a zip archive (no end-of-central-directory record)");
    }
    const uint64_t eocd_offset = file_size_ - tail_size + static_cast<uint64_t>(found);
    const char* e = tail.data() + found;
    SETDET_CHECK(le(e + 4, 2) == 0 && le(e + 6, 2) == 0, path,
                 ": multi-disk zip archives are not supported");
    uint64_t count = le(e + 10, 2);
    uint64_t cd_size = le(e + 12, 4);
    uint64_t cd_offset = le(e + 16, 4);
    uint64_t cd_end_limit = eocd_offset;
    if (count == 0xFFFF || cd_size == 0xFFFFFFFF || cd_offset == 0xFFFFFFFF) {
      SETDET_CHECK(eocd_offset >= 20, path, ": truncated ZIP64 archive (no ZIP64 locator)");
      char locator[20];
      pread_exact(locator, 20, eocd_offset - 20, "the ZIP64 locator");
      SETDET_CHECK(le(locator, 4) == kZip64Locator, path,
                   ": the end-of-central-directory record asks for ZIP64 but no ZIP64 locator "
                   "precedes it");
      const uint64_t z64 = le(locator + 8, 8);
      SETDET_CHECK(z64 <= eocd_offset - 20 && eocd_offset - 20 - z64 >= 56, path,
                   ": the ZIP64 end-of-central-directory record at byte ", z64,
                   " lies outside the file");
      char rec[56];
      pread_exact(rec, 56, z64, "the ZIP64 end-of-central-directory record");
      SETDET_CHECK(le(rec, 4) == kZip64EndOfCentralDirectory, path,
                   ": no ZIP64 end-of-central-directory record at byte ", z64);
      count = le(rec + 32, 8);
      cd_size = le(rec + 40, 8);
      cd_offset = le(rec + 48, 8);
      cd_end_limit = z64;
    }
    SETDET_CHECK(cd_offset <= cd_end_limit && cd_size <= cd_end_limit - cd_offset, path,
                 ": the central directory (", cd_size, " bytes at byte ", cd_offset,
                 ") does not fit in the file of ", file_size_,
                 " bytes (truncated or not a zip archive)");
    SETDET_CHECK(count <= cd_size / kCentralHeaderSize, path, ": the archive declares ", count,
                 " records, its central directory of ", cd_size, " bytes holds at most ",
                 cd_size / kCentralHeaderSize);
    central_directory_offset_ = cd_offset;

    std::string cd(cd_size, '\0');
    pread_exact(cd.data(), cd_size, cd_offset, "the central directory");
    records_.reserve(count);
    size_t p = 0;
    for (uint64_t k = 0; k < count; ++k) {
      SETDET_CHECK(cd_size - p >= kCentralHeaderSize && le(cd.data() + p, 4) == kCentralHeader,
                   path, ": central directory entry ", k, " at byte ", cd_offset + p,
                   " is malformed");
      const char* h = cd.data() + p;
      const uint64_t name_len = le(h + 28, 2), extra_len = le(h + 30, 2),
                     comment_len = le(h + 32, 2);
      SETDET_CHECK(cd_size - p - kCentralHeaderSize >= name_len + extra_len + comment_len, path,
                   ": central directory entry ", k, " runs past the central directory");
      Record r;
      r.name.assign(h + kCentralHeaderSize, name_len);
      const uint64_t flags = le(h + 8, 2);
      r.method = static_cast<uint16_t>(le(h + 10, 2));
      r.crc32 = static_cast<uint32_t>(le(h + 16, 4));
      r.compressed_size = le(h + 20, 4);
      r.size = le(h + 24, 4);
      r.header_offset = le(h + 42, 4);
      // ZIP64 extended information (header id 1): the 8-byte values of the fields set to ~0.
      const char* x = h + kCentralHeaderSize + name_len;
      for (uint64_t q = 0; q + 4 <= extra_len;) {
        const uint64_t id = le(x + q, 2), len = le(x + q + 2, 2);
        SETDET_CHECK(q + 4 + len <= extra_len, path, ": record '", r.name,
                     "' has a malformed extra field");
        if (id == 1) {
          uint64_t at = q + 4;
          for (uint64_t* field : {&r.size, &r.compressed_size, &r.header_offset}) {
            if (*field != 0xFFFFFFFF) continue;
            SETDET_CHECK(at + 8 <= q + 4 + len, path, ": record '", r.name,
                         "' has a truncated ZIP64 extra field");
            *field = le(x + at, 8);
            at += 8;
          }
        }
        q += 4 + len;
      }
      SETDET_CHECK((flags & 1) == 0, path, ": record '", r.name, "' is encrypted");
      SETDET_CHECK(r.method == 0 || r.method == 8, path, ": record '", r.name,
                   "' uses compression method ", r.method,
                   " (only stored and deflated records "
                   "are supported)");
      SETDET_CHECK(r.method != 0 || r.size == r.compressed_size, path, ": stored record '", r.name,
                   "' declares ", r.size, " bytes but ", r.compressed_size, " compressed bytes");
      SETDET_CHECK(r.method != 8 || r.size / kMaxDeflateRatio <= r.compressed_size + 1, path,
                   ": record '", r.name, "' declares ", r.size, " bytes inflated from ",
                   r.compressed_size, " (more than deflate can encode)");
      SETDET_CHECK(r.header_offset <= cd_offset &&
                       cd_offset - r.header_offset >= kLocalHeaderSize &&
                       r.compressed_size <= cd_offset - r.header_offset - kLocalHeaderSize,
                   path, ": record '", r.name, "' declares ", r.compressed_size, " bytes at byte ",
                   r.header_offset, ", beyond the ", cd_offset,
                   " bytes of record data in the file (truncated?)");
      SETDET_CHECK(index_.emplace(r.name, records_.size()).second, path, ": record '", r.name,
                   "' appears twice");
      records_.push_back(std::move(r));
      p += kCentralHeaderSize + name_len + extra_len + comment_len;
    }
  } catch (...) {
    ::close(fd_);
    throw;
  }
}

ZipArchive::~ZipArchive() {
  if (fd_ >= 0) ::close(fd_);
}

const ZipArchive::Record* ZipArchive::find(const std::string& name) const {
  const auto it = index_.find(name);
  return it == index_.end() ? nullptr : &records_[it->second];
}

void ZipArchive::pread_exact(void* out, uint64_t size, uint64_t offset,
                             const std::string& what) const {
  auto* dst = static_cast<char*>(out);
  while (size > 0) {
    const size_t chunk = static_cast<size_t>(std::min<uint64_t>(size, uint64_t{1} << 30));
    const ssize_t n = ::pread(fd_, dst, chunk, static_cast<off_t>(offset));
    if (n < 0 && errno == EINTR) continue;
    SETDET_CHECK(n > 0, path_, ": cannot read ", what, " (",
                 n < 0 ? std::strerror(errno) : "unexpected end of file", ")");
    dst += n;
    size -= static_cast<uint64_t>(n);
    offset += static_cast<uint64_t>(n);
  }
}

uint64_t ZipArchive::data_offset(const Record& r) const {
  char h[kLocalHeaderSize];
  pread_exact(h, kLocalHeaderSize, r.header_offset, "the local header of record '" + r.name + "'");
  SETDET_CHECK(le(h, 4) == kLocalHeader, path_, ": record '", r.name,
               "' has no local header at byte ", r.header_offset);
  const uint64_t start = r.header_offset + kLocalHeaderSize + le(h + 26, 2) + le(h + 28, 2);
  SETDET_CHECK(
      start <= central_directory_offset_ && r.compressed_size <= central_directory_offset_ - start,
      path_, ": record '", r.name, "' (", r.compressed_size, " bytes at byte ", start,
      ") runs into the central directory at byte ", central_directory_offset_);
  return start;
}

void ZipArchive::read(const Record& r, void* out) const {
  const uint64_t start = data_offset(r);
  if (r.method == 0) {
    pread_exact(out, r.size, start, "record '" + r.name + "'");
  } else {
    z_stream z{};
    SETDET_CHECK(inflateInit2(&z, -MAX_WBITS) == Z_OK, path_, ": cannot start inflating '", r.name,
                 "'");
    std::string in(static_cast<size_t>(std::min<uint64_t>(r.compressed_size, 1 << 20)), '\0');
    uint64_t consumed = 0;
    auto* dst = static_cast<Bytef*>(out);
    uint64_t produced = 0;
    int status = Z_OK;
    try {
      while (status != Z_STREAM_END) {
        if (z.avail_in == 0) {
          SETDET_CHECK(consumed < r.compressed_size, path_, ": record '", r.name,
                       "' ends before its deflate stream does");
          const uint64_t n = std::min<uint64_t>(in.size(), r.compressed_size - consumed);
          pread_exact(in.data(), n, start + consumed, "record '" + r.name + "'");
          consumed += n;
          z.next_in = reinterpret_cast<Bytef*>(in.data());
          z.avail_in = static_cast<uInt>(n);
        }
        char overflow = 0;  // a full output buffer: one more byte shows whether the data goes on
        const bool full = produced == r.size;
        z.next_out = full ? reinterpret_cast<Bytef*>(&overflow) : dst + produced;
        z.avail_out =
            full ? 1u : static_cast<uInt>(std::min<uint64_t>(r.size - produced, 1u << 30));
        const uInt before = z.avail_out;
        status = inflate(&z, Z_NO_FLUSH);
        SETDET_CHECK(status == Z_OK || status == Z_STREAM_END || status == Z_BUF_ERROR, path_,
                     ": record '", r.name, "' is not valid deflate data (",
                     z.msg != nullptr ? z.msg : "zlib error", ")");
        SETDET_CHECK(!full || z.avail_out == 1, path_, ": record '", r.name,
                     "' inflates to more than the ", r.size, " bytes it declares");
        produced += before - z.avail_out;
        SETDET_CHECK(status != Z_BUF_ERROR || z.avail_in == 0, path_, ": record '", r.name,
                     "' is not valid deflate data");
      }
      SETDET_CHECK(produced == r.size, path_, ": record '", r.name, "' inflates to ", produced,
                   " bytes, it declares ", r.size);
    } catch (...) {
      inflateEnd(&z);
      throw;
    }
    inflateEnd(&z);
  }
  check_crc(r, crc32(out, static_cast<size_t>(r.size)));
}

std::string ZipArchive::read(const Record& r) const {
  std::string out(static_cast<size_t>(r.size), '\0');
  read(r, out.data());
  return out;
}

void ZipArchive::verify_all() const {
  std::string buffer;
  for (const Record& r : records_) {
    if (r.method != 0) {
      read(r);
      continue;
    }
    const uint64_t start = data_offset(r);
    buffer.resize(static_cast<size_t>(std::min<uint64_t>(r.size, 1 << 20)));
    uint32_t crc = 0;
    for (uint64_t done = 0; done < r.size;) {
      const uint64_t n = std::min<uint64_t>(buffer.size(), r.size - done);
      pread_exact(buffer.data(), n, start + done, "record '" + r.name + "'");
      crc = crc32(buffer.data(), static_cast<size_t>(n), crc);
      done += n;
    }
    check_crc(r, crc);
  }
}

void ZipArchive::check_crc(const Record& r, uint32_t crc) const {
  SETDET_CHECK(crc == r.crc32, path_, ": record '", r.name, "' is corrupt: its bytes have CRC-32 ",
               hex32(crc), ", the archive declares ", hex32(r.crc32));
}

}  // namespace setdet
