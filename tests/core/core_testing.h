// Helpers shared by the setdet_core unit tests.
#pragma once

#include <string>

#include "setdet/core/error.h"

namespace setdet::testing {

// The message of the setdet::Error thrown by fn(), or "" if it throws none.
template <typename Fn>
std::string error_of(Fn&& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace setdet::testing
