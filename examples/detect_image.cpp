// detect_image CONFIG CHECKPOINT IMAGE [SCORE_THRESHOLD]: runs a setdet detector on one photo and
// prints one line per detection: class name, score, box x1 y1 x2 y2 (image pixels), label.
#include <setdet/setdet.h>

#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <opencv2/imgcodecs.hpp>

int main(int argc, char** argv) {
  if (argc < 4 || argc > 5) {
    std::cerr << "usage: " << argv[0] << " CONFIG CHECKPOINT IMAGE [SCORE_THRESHOLD]\n";
    return 2;
  }
  setdet::keep_freed_memory_for_reuse();  // large images: reuse freed tensors (glibc)
  try {
    setdet::DetectorOptions options;
    if (argc == 5) options.detect.score_threshold = std::atof(argv[4]);
    const setdet::Detector detector(argv[1], argv[2], options);

    const cv::Mat image = cv::imread(argv[3], cv::IMREAD_COLOR);
    if (image.empty()) {
      std::cerr << argv[3] << ": cannot read the image\n";
      return 1;
    }
    for (const setdet::Detection& d : detector.detect(image)) {
      std::printf("%s %.9g %.9g %.9g %.9g %.9g %lld\n", d.class_name.c_str(), d.score, d.x1, d.y1,
                  d.x2, d.y2, static_cast<long long>(d.label));
    }
  } catch (const setdet::Error& e) {
    std::cerr << "detect_image: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
