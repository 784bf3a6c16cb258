// An owned file descriptor: closed when it goes out of scope, so every early
// return in a syscall wrapper closes its temporaries.
#ifndef AMBIT_NATIVE_UNIQUE_FD_H_
#define AMBIT_NATIVE_UNIQUE_FD_H_

#include <unistd.h>

namespace ambit {

class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd() {
    if (fd_ >= 0) close(fd_);
  }
  void reset(int fd) {
    if (fd_ >= 0) close(fd_);
    fd_ = fd;
  }
  int get() const { return fd_; }
  // Hands the fd to the caller, who closes it from now on.
  int release() {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }

 private:
  int fd_ = -1;
};

}  // namespace ambit

#endif  // AMBIT_NATIVE_UNIQUE_FD_H_
