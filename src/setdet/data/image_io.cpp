#include "setdet/data/image_io.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <opencv2/imgcodecs.hpp>
#include <vector>

#include "setdet/core/error.h"
#include "setdet/core/io/atomic_file.h"

namespace setdet {
namespace {

// A compressed image is far smaller than its pixels; no legitimate file is bigger than this.
constexpr uint64_t kMaxImageFileBytes = uint64_t{1} << 30;

// Bounds-checked reads of a header; errors name the file and the format.
class HeaderBytes {
 public:
  HeaderBytes(std::string_view bytes, const std::string& path, const char* format)
      : b_(bytes), path_(path), format_(format) {}

  void need(size_t pos, size_t n) const {
    if (pos > b_.size() || n > b_.size() - pos) {
      throw Error(path_ + ": cannot decode image: truncated " + format_ + " header (" +
                  std::to_string(b_.size()) + " bytes)");
    }
  }
  [[noreturn]] void fail(const std::string& what) const {
    throw Error(path_ + ": cannot decode image: malformed " + format_ + " header: " + what);
  }
  uint8_t u8(size_t pos) const {
    need(pos, 1);
    return static_cast<uint8_t>(b_[pos]);
  }
  uint64_t be(size_t pos, int n) const {
    need(pos, static_cast<size_t>(n));
    uint64_t v = 0;
    for (int k = 0; k < n; ++k) v = (v << 8) | static_cast<uint8_t>(b_[pos + k]);
    return v;
  }
  uint64_t le(size_t pos, int n) const {
    need(pos, static_cast<size_t>(n));
    uint64_t v = 0;
    for (int k = n; k-- > 0;) v = (v << 8) | static_cast<uint8_t>(b_[pos + k]);
    return v;
  }
  size_t size() const { return b_.size(); }
  ImageHeader header(int64_t width, int64_t height) const { return {format_, width, height}; }

 private:
  std::string_view b_;
  const std::string& path_;
  const char* format_;
};

bool starts_with(std::string_view bytes, std::string_view prefix) {
  return bytes.substr(0, prefix.size()) == prefix;
}

ImageHeader jpeg_header(const HeaderBytes& h) {
  size_t p = 2;
  for (;;) {
    if (h.u8(p) != 0xFF) h.fail("no marker at byte " + std::to_string(p));
    while (h.u8(p) == 0xFF) ++p;
    const uint8_t m = h.u8(p++);
    if (m == 0xD8 || m == 0x01 || (m >= 0xD0 && m <= 0xD7)) continue;  // no length field
    if (m == 0xD9 || m == 0xDA) h.fail("no frame header before the image data");
    const uint64_t length = h.be(p, 2);
    if (length < 2)
      h.fail("segment length " + std::to_string(length) + " at byte " + std::to_string(p));
    // SOF0-SOF15 except DHT (C4), JPG (C8), DAC (CC): length, precision, height, width.
    if (m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC) {
      return h.header(static_cast<int64_t>(h.be(p + 5, 2)), static_cast<int64_t>(h.be(p + 3, 2)));
    }
    p += length;
  }
}

ImageHeader bmp_header(const HeaderBytes& h) {
  const uint64_t dib = h.le(14, 4);
  if (dib == 12) {  // OS/2 BITMAPCOREHEADER: 16-bit sizes
    return h.header(static_cast<int64_t>(h.le(18, 2)), static_cast<int64_t>(h.le(20, 2)));
  }
  const auto width = static_cast<int64_t>(static_cast<int32_t>(h.le(18, 4)));
  const auto height = static_cast<int64_t>(static_cast<int32_t>(h.le(22, 4)));
  if (width < 0) h.fail("negative width " + std::to_string(width));
  return h.header(width, height < 0 ? -height : height);  // negative height: top-down rows
}

// P1-P6: magic, width, height as decimal text between whitespace and # comments.
ImageHeader pnm_header(std::string_view b, const HeaderBytes& h) {
  size_t p = 2;
  auto token = [&]() {
    for (;;) {
      while (p < b.size() && std::isspace(static_cast<unsigned char>(b[p]))) ++p;
      if (p < b.size() && b[p] == '#') {
        while (p < b.size() && b[p] != '\n') ++p;
        continue;
      }
      break;
    }
    const size_t start = p;
    while (p < b.size() && !std::isspace(static_cast<unsigned char>(b[p])) && b[p] != '#') ++p;
    if (start == p) h.need(b.size(), 1);  // ran out of bytes: truncated
    return b.substr(start, p - start);
  };
  auto number = [&](std::string_view t) {
    if (t.empty() || t.size() > 12 ||
        !std::all_of(t.begin(), t.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      h.fail("expected a size, found '" + std::string(t.substr(0, 20)) + "'");
    }
    return std::stoll(std::string(t));
  };
  const int64_t width = number(token());
  return h.header(width, number(token()));
}

ImageHeader webp_header(std::string_view b, const HeaderBytes& h) {
  h.need(12, 4);
  const std::string_view chunk = b.substr(12, 4);
  if (chunk == "VP8 ") {  // lossy: frame tag, start code 9d 01 2a, 14-bit sizes
    if (h.be(23, 3) != 0x9d012a) h.fail("no VP8 start code");
    return h.header(static_cast<int64_t>(h.le(26, 2) & 0x3fff),
                    static_cast<int64_t>(h.le(28, 2) & 0x3fff));
  }
  if (chunk == "VP8L") {  // lossless: signature 0x2f, then (width - 1, height - 1) in 14 bits each
    if (h.u8(20) != 0x2f) h.fail("no VP8L signature");
    const uint64_t bits = h.le(21, 4);
    return h.header(static_cast<int64_t>((bits & 0x3fff) + 1),
                    static_cast<int64_t>(((bits >> 14) & 0x3fff) + 1));
  }
  if (chunk == "VP8X") {  // extended: canvas (width - 1, height - 1) in 24 bits each
    return h.header(static_cast<int64_t>(h.le(24, 3) + 1), static_cast<int64_t>(h.le(27, 3) + 1));
  }
  h.fail("unknown first chunk '" + std::string(chunk) + "'");
}

// The ImageWidth (256) and ImageLength (257) entries of the first image file directory.
ImageHeader tiff_header(const HeaderBytes& h, bool big_endian) {
  auto read = [&](size_t pos, int n) { return big_endian ? h.be(pos, n) : h.le(pos, n); };
  const uint64_t ifd = read(4, 4);
  const uint64_t count = read(ifd, 2);
  h.need(ifd + 2, count * 12);
  int64_t width = -1, height = -1;
  for (uint64_t k = 0; k < count; ++k) {
    const size_t e = ifd + 2 + 12 * k;
    const uint64_t tag = read(e, 2), type = read(e + 2, 2);
    if (tag != 256 && tag != 257) continue;
    if (type != 3 && type != 4) h.fail("size entry of type " + std::to_string(type));
    const auto value = static_cast<int64_t>(type == 3 ? read(e + 8, 2) : read(e + 8, 4));
    (tag == 256 ? width : height) = value;
  }
  if (width < 0 || height < 0) h.fail("no ImageWidth / ImageLength entry");
  return h.header(width, height);
}

std::string first_bytes_hex(std::string_view bytes) {
  std::string out;
  for (size_t k = 0; k < std::min<size_t>(bytes.size(), 8); ++k) {
    char buf[4];
    std::snprintf(buf, sizeof(buf), "%s%02x", k ? " " : "", static_cast<uint8_t>(bytes[k]));
    out += buf;
  }
  return out.empty() ? "no bytes: the file is empty" : "bytes " + out;
}

}  // namespace

std::optional<ImageHeader> read_image_header(std::string_view b, const std::string& path) {
  if (starts_with(b, "\xff\xd8\xff")) return jpeg_header(HeaderBytes(b, path, "JPEG"));
  if (starts_with(b, "\x89PNG\r\n\x1a\n")) {
    const HeaderBytes h(b, path, "PNG");
    h.need(12, 4);
    if (b.substr(12, 4) != "IHDR") h.fail("the first chunk is not IHDR");
    return h.header(static_cast<int64_t>(h.be(16, 4)), static_cast<int64_t>(h.be(20, 4)));
  }
  if (starts_with(b, "BM")) return bmp_header(HeaderBytes(b, path, "BMP"));
  // Only formats whose OpenCV decoder comes before every other one that could claim the same
  // bytes: imdecode takes the first decoder whose signature matches, and PAM (P7) is tried after
  // DICOM, whose signature ("DICM" at byte 128) a PAM file can carry (found by fuzz_image: GDCM
  // then aborts on the rest of the file).
  if (b.size() >= 2 && b[0] == 'P' && b[1] >= '1' && b[1] <= '6') {
    return pnm_header(b, HeaderBytes(b, path, "PNM"));
  }
  if (starts_with(b, "RIFF") && b.size() >= 12 && b.substr(8, 4) == "WEBP") {
    return webp_header(b, HeaderBytes(b, path, "WebP"));
  }
  if (starts_with(b, std::string_view("II*\0", 4)))
    return tiff_header(HeaderBytes(b, path, "TIFF"), false);
  if (starts_with(b, std::string_view("MM\0*", 4)))
    return tiff_header(HeaderBytes(b, path, "TIFF"), true);
  return std::nullopt;
}

cv::Mat decode_image(std::string_view bytes, const std::string& path) {
  const auto header = read_image_header(bytes, path);
  SETDET_CHECK(header, path,
               ": cannot decode image: not a JPEG, PNG, BMP, PNM, WebP or TIFF file (",
               first_bytes_hex(bytes), ")");
  const int64_t w = header->width, h = header->height;
  SETDET_CHECK(w > 0 && h > 0, path, ": cannot decode image: the ", header->format,
               " header declares an empty image of ", w, " x ", h, " px");
  SETDET_CHECK(w <= kMaxImageSide && h <= kMaxImageSide && w * h <= kMaxImagePixels, path, ": the ",
               header->format, " header declares ", w, " x ", h,
               " px; setdet decodes images of at most ", kMaxImageSide, " px a side and ",
               kMaxImagePixels, " pixels");
  cv::Mat image;
  try {
    const cv::Mat buffer(1, static_cast<int>(bytes.size()), CV_8U, const_cast<char*>(bytes.data()));
    image = cv::imdecode(buffer, cv::IMREAD_COLOR);
  } catch (const cv::Exception& e) {
    throw Error(path + ": cannot decode image: OpenCV: " + e.err);
  }
  SETDET_CHECK(!image.empty(), path, ": cannot decode image: the ", header->format,
               " data is corrupt or truncated");
  return image;
}

cv::Mat read_image(const std::string& path) {
  std::error_code ec;
  SETDET_CHECK(std::filesystem::is_regular_file(path, ec), path, ": no such file");
  const uint64_t size = std::filesystem::file_size(path, ec);
  SETDET_CHECK(!ec, path, ": cannot read (", ec.message(), ")");
  SETDET_CHECK(size <= kMaxImageFileBytes, path, ": cannot decode image: the file has ", size,
               " bytes, more than the ", kMaxImageFileBytes, " an image may have");
  std::ifstream in(path, std::ios::binary);
  std::string bytes(static_cast<size_t>(size), '\0');
  in.read(bytes.data(), static_cast<std::streamsize>(size));
  SETDET_CHECK(in.gcount() == static_cast<std::streamsize>(size), path, ": cannot read (",
               std::strerror(errno), ")");
  return decode_image(bytes, path);
}

void write_image(const std::string& path, const cv::Mat& image, int jpeg_quality) {
  std::string ext = std::filesystem::path(path).extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(),
                 [](unsigned char c) { return std::tolower(c); });
  std::vector<int> params;
  if (ext == ".jpg" || ext == ".jpeg") {
    params = {cv::IMWRITE_JPEG_QUALITY, jpeg_quality};
  } else {
    SETDET_CHECK(ext == ".png", path, ": unsupported image extension '", ext,
                 "' (expected .jpg, .jpeg or .png)");
  }
  std::vector<uchar> bytes;
  SETDET_CHECK(cv::imencode(ext, image, bytes, params), path, ": cannot encode image");
  write_file_atomic(path,
                    std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()));
}

ScopedOpenCvSerial::ScopedOpenCvSerial() : previous_(cv::getNumThreads()) { cv::setNumThreads(0); }

ScopedOpenCvSerial::~ScopedOpenCvSerial() { cv::setNumThreads(previous_); }

}  // namespace setdet
