// Image headers are read before decoding: the size every supported format declares, and setdet's
// own errors (naming the file) for a huge declared size, a cut-short header or an unknown format.
#include <gtest/gtest.h>

#include <opencv2/imgcodecs.hpp>
#include <string>
#include <vector>

#include "setdet/config/config.h"
#include "setdet/data/image_io.h"
#include "setdet/data/transforms.h"
#include "testing.h"

namespace setdet {
namespace {

using test_util::error_of;

std::string encode(const std::string& ext, int width, int height) {
  cv::Mat image(height, width, CV_8UC3, cv::Scalar(10, 200, 30));
  std::vector<uchar> bytes;
  EXPECT_TRUE(cv::imencode(ext, image, bytes)) << ext;
  return std::string(bytes.begin(), bytes.end());
}

void put_be(std::string& s, size_t pos, uint64_t v, int n) {
  for (int k = n; k-- > 0; v >>= 8) s[pos + k] = static_cast<char>(v & 0xFF);
}
void put_le(std::string& s, size_t pos, uint64_t v, int n) {
  for (int k = 0; k < n; ++k, v >>= 8) s[pos + k] = static_cast<char>(v & 0xFF);
}

// Each format's encoding of a 37 x 21 image, and the same bytes with the header's size patched
// to 100000 x 100000 (the pixel data is never reached).
struct Case {
  std::string ext;
  std::string format;
  std::function<void(std::string&)> enlarge;
};

std::vector<Case> cases() {
  return {
      {".png", "PNG", [](std::string& b) { put_be(b, 16, 100000, 4), put_be(b, 20, 100000, 4); }},
      {".jpg", "JPEG",
       [](std::string& b) {
         const size_t sof = b.find("\xff\xc0");
         put_be(b, sof + 5, 65000, 2), put_be(b, sof + 7, 65000, 2);
       }},
      {".bmp", "BMP", [](std::string& b) { put_le(b, 18, 100000, 4), put_le(b, 22, 100000, 4); }},
      {".ppm", "PNM",
       [](std::string& b) { b = "P6\n100000 100000\n255\n" + b.substr(b.find("255\n") + 4); }},
      {".tiff", "TIFF",
       [](std::string& b) {
         // II: the first IFD's ImageWidth / ImageLength entries (SHORT or LONG values)
         const size_t ifd = static_cast<uint8_t>(b[4]) | static_cast<uint8_t>(b[5]) << 8 |
                            static_cast<uint8_t>(b[6]) << 16 |
                            static_cast<size_t>(static_cast<uint8_t>(b[7])) << 24;
         const size_t n = static_cast<uint8_t>(b[ifd]) | static_cast<uint8_t>(b[ifd + 1]) << 8;
         for (size_t k = 0; k < n; ++k) {
           const size_t e = ifd + 2 + 12 * k;
           const int tag = static_cast<uint8_t>(b[e]) | static_cast<uint8_t>(b[e + 1]) << 8;
           if (tag == 256 || tag == 257) put_le(b, e + 2, 4, 2), put_le(b, e + 8, 100000, 4);
         }
       }},
      {".webp", "WebP", nullptr},
  };
}

TEST(ImageIo, HeadersDeclareTheEncodedSize) {
  for (const Case& c : cases()) {
    const std::string bytes = encode(c.ext, 37, 21);
    const auto h = read_image_header(bytes, "img" + c.ext);
    ASSERT_TRUE(h) << c.ext;
    EXPECT_EQ(std::string(h->format), c.format);
    EXPECT_EQ(h->width, 37) << c.ext;
    EXPECT_EQ(h->height, 21) << c.ext;
    const cv::Mat image = decode_image(bytes, "img" + c.ext);
    EXPECT_EQ(image.cols, 37);
    EXPECT_EQ(image.rows, 21);
  }
}

TEST(ImageIo, HugeDeclaredSizeIsRefusedBeforeDecoding) {
  for (const Case& c : cases()) {
    if (!c.enlarge) continue;
    std::string bytes = encode(c.ext, 37, 21);
    c.enlarge(bytes);
    const std::string name = "/data/huge" + c.ext;
    const std::string e = error_of([&] { decode_image(bytes, name); });
    const std::string size = c.ext == ".jpg" ? "65000 x 65000" : "100000 x 100000";
    EXPECT_NE(e.find(name + ": the " + c.format + " header declares " + size +
                     " px; setdet decodes images of at most 32768 px a side and 268435456 pixels"),
              std::string::npos)
        << e;
  }
  // Within the side limit but over the pixel limit.
  std::string png = encode(".png", 37, 21);
  put_be(png, 16, 30000, 4), put_be(png, 20, 30000, 4);
  EXPECT_NE(error_of([&] { decode_image(png, "big.png"); }).find("declares 30000 x 30000 px"),
            std::string::npos);
}

TEST(ImageIo, BrokenHeadersNameTheFile) {
  const std::string png = encode(".png", 8, 8);
  std::string e = error_of([&] { decode_image(png.substr(0, 18), "cut.png"); });
  EXPECT_NE(e.find("cut.png: cannot decode image: truncated PNG header (18 bytes)"),
            std::string::npos)
      << e;
  e = error_of([&] { decode_image("<html>hello</html>", "page.jpg"); });
  EXPECT_NE(e.find("page.jpg: cannot decode image: not a JPEG, PNG, BMP, PNM, WebP or TIFF file "
                   "(bytes 3c 68 74 6d 6c 3e 68 65)"),
            std::string::npos)
      << e;
  e = error_of([&] { decode_image("", "empty.jpg"); });
  EXPECT_NE(e.find("empty.jpg: cannot decode image: not a JPEG, PNG, BMP, PNM, WebP or TIFF file "
                   "(no bytes: the file is empty)"),
            std::string::npos)
      << e;
  std::string zero = png;
  put_be(zero, 16, 0, 4);
  e = error_of([&] { decode_image(zero, "zero.png"); });
  EXPECT_NE(
      e.find("zero.png: cannot decode image: the PNG header declares an empty image of 0 x 8"),
      std::string::npos)
      << e;
  std::string body = png;
  for (size_t k = 40; k < body.size(); ++k) body[k] = 0;
  e = error_of([&] { decode_image(body, "body.png"); });
  EXPECT_NE(e.find("body.png: cannot decode image: the PNG data is corrupt or truncated"),
            std::string::npos)
      << e;
  e = error_of([&] { decode_image("\xff\xd8\xff\xda\x00\x02", "nosof.jpg"); });
  EXPECT_NE(e.find("nosof.jpg: cannot decode image: malformed JPEG header: no frame header"),
            std::string::npos)
      << e;
  e = error_of([&] { decode_image("P6 12 # no height\n", "cut.ppm"); });
  EXPECT_NE(e.find("cut.ppm: cannot decode image: truncated PNM header"), std::string::npos) << e;
}

// Found by fuzz_image: a PAM header followed by "DICM" at byte 128 made OpenCV hand the bytes to
// its DICOM decoder (GDCM), which aborted. PAM is not among the formats setdet decodes.
TEST(ImageIo, PamWithADicomSignatureIsRefusedNotDecoded) {
  std::string bytes = "P7\nWIDTH 2727\nHEIGHT 6\nDEPTH 3\nMAXVAL 255\nENDHDR\n";
  bytes.resize(128, '\0');
  bytes += "DICM\n";
  const std::string e = error_of([&] { decode_image(bytes, "scan.pam"); });
  EXPECT_NE(e.find("scan.pam: cannot decode image: not a JPEG, PNG, BMP, PNM, WebP or TIFF file"),
            std::string::npos)
      << e;
}

TEST(ImageIo, ResizeBeyondTheImageLimitIsAConfigError) {
  const Config cfg = Config::parse(
      "pipeline: [{type: Resize, scale: [100000, 100000], keep_ratio: true}]", "big.yaml");
  const std::string e = error_of([&] { build_pipeline(cfg["pipeline"]); });
  EXPECT_NE(e.find("big.yaml: pipeline[0].scale: expected sizes of at most 32768 px and "
                   "268435456 pixels (setdet's image limits), got '[100000, 100000]'"),
            std::string::npos)
      << e;
  const Config tv =
      Config::parse("pipeline: [{type: TorchvisionResize, min_size: 100000}]", "tv.yaml");
  EXPECT_NE(error_of([&] {
              build_pipeline(tv["pipeline"]);
            }).find("tv.yaml: pipeline[0].min_size: expected sizes in [1, 32768] px, got 100000"),
            std::string::npos);
}

}  // namespace
}  // namespace setdet
