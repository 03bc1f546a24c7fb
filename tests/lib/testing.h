// Helpers shared by the LibTorch library's tests.
#pragma once

#include <exception>
#include <functional>
#include <string>

namespace setdet::test_util {

// The message of the exception `fn` throws (setdet::Error, c10::Error, ...); "" if none.
inline std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

}  // namespace setdet::test_util
