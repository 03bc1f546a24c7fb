// Errors raised by setdet_core for bad user input. Messages name the argument / file / key,
// what was expected and what was found.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace setdet {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

namespace detail {
template <typename... Args>
std::string concat(Args&&... args) {
  std::ostringstream os;
  (os << ... << std::forward<Args>(args));
  return os.str();
}
}  // namespace detail

// SETDET_CHECK(cond, "boxes must be [N, 4], got ", n, " columns") throws setdet::Error.
#define SETDET_CHECK(cond, ...)                                    \
  do {                                                             \
    if (!(cond)) throw ::setdet::Error(::setdet::detail::concat(__VA_ARGS__)); \
  } while (0)

}  // namespace setdet
