#pragma once
// One error type for the whole library: every failure a user can cause (bad file, bad option,
// out of memory, CUDA fault) is thrown as kuiper::Error with a message that names the problem.
// demo/ catches it, prints one line and exits non-zero.
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace kuiper {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

template <class... Args>
std::string str_cat(Args&&... args) {
  std::ostringstream os;
  (os << ... << std::forward<Args>(args));
  return os.str();
}

template <class... Args>
[[noreturn]] void fail(Args&&... args) {
  throw Error(str_cat(std::forward<Args>(args)...));
}

}  // namespace kuiper

#define KUIPER_CHECK(cond, ...)                         \
  do {                                                  \
    if (!(cond)) ::kuiper::fail(__VA_ARGS__);           \
  } while (0)
