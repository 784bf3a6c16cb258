// Syscall side of the seqpacket transport. See seqpacket.h.
#include "seqpacket.h"
#include "unique_fd.h"

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

namespace ambit {
namespace {

SysStatus Fail(const char* syscall, const char* detail = nullptr) {
  SysStatus st;
  st.errnum = errno != 0 ? errno : EIO;
  st.syscall = syscall;
  st.detail = detail;
  return st;
}

SysStatus Errno(int errnum, const char* syscall, const char* detail = nullptr) {
  errno = errnum;
  return Fail(syscall, detail);
}

bool UnixAddr(const char* path, sockaddr_un* addr, socklen_t* len) {
  size_t n = strlen(path);
  if (n == 0 || n >= sizeof addr->sun_path) return false;
  memset(addr, 0, sizeof *addr);
  addr->sun_family = AF_UNIX;
  memcpy(addr->sun_path, path, n);
  *len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + n + 1);
  return true;
}

}  // namespace

SysStatus SeqpacketListen(const char* path, int backlog, int* fd_out) {
  sockaddr_un addr;
  socklen_t len = 0;
  if (!UnixAddr(path, &addr, &len)) return Errno(ENAMETOOLONG, "bind", path);
  // Like istio-cni: a socket file left by a previous run would make bind fail
  // with EADDRINUSE. Only sockets are removed, never a regular file.
  struct stat sb;
  if (lstat(path, &sb) == 0) {
    if (!S_ISSOCK(sb.st_mode)) return Errno(EEXIST, "unlink", path);
    if (unlink(path) != 0 && errno != ENOENT) return Fail("unlink", path);
  } else if (errno != ENOENT) {
    return Fail("stat", path);
  }
  UniqueFd sock(socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (sock.get() < 0) return Fail("socket");
  if (bind(sock.get(), reinterpret_cast<const sockaddr*>(&addr), len) != 0) return Fail("bind", path);
  if (listen(sock.get(), backlog) != 0) return Fail("listen", path);
  *fd_out = sock.release();
  return {};
}

SysStatus SeqpacketConnect(const char* path, int* fd_out) {
  sockaddr_un addr;
  socklen_t len = 0;
  if (!UnixAddr(path, &addr, &len)) return Errno(ENAMETOOLONG, "connect", path);
  UniqueFd sock(socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (sock.get() < 0) return Fail("socket");
  int rc;
  do {
    rc = connect(sock.get(), reinterpret_cast<const sockaddr*>(&addr), len);
  } while (rc != 0 && errno == EINTR);
  if (rc != 0) return Fail("connect", path);
  *fd_out = sock.release();
  return {};
}

SysStatus SeqpacketAccept(int fd, int* fd_out) {
  for (;;) {
    int c = accept4(fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (c >= 0) {
      *fd_out = c;
      return {};
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ECONNABORTED) {
      *fd_out = -1;
      return {};
    }
    return Fail("accept4");
  }
}

SysStatus SeqpacketSend(int fd, const void* data, size_t len, int pass_fd, ssize_t* sent) {
  iovec iov;
  iov.iov_base = const_cast<void*>(data);
  iov.iov_len = len;
  msghdr msg;
  memset(&msg, 0, sizeof msg);
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))];
  if (pass_fd >= 0) {
    memset(control, 0, sizeof control);
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &pass_fd, sizeof(int));
  }
  for (;;) {
    ssize_t n = sendmsg(fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n >= 0) {
      *sent = n;
      return {};
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      *sent = -1;
      return {};
    }
    return Fail("sendmsg");
  }
}

SysStatus SeqpacketRecv(int fd, void* buf, size_t cap, SeqpacketMessage* out, bool* would_block) {
  *would_block = false;
  iovec iov;
  iov.iov_base = buf;
  iov.iov_len = cap;
  msghdr msg;
  memset(&msg, 0, sizeof msg);
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxRecvFds)];
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  ssize_t n;
  for (;;) {
    n = recvmsg(fd, &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
    if (n >= 0) break;
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      *would_block = true;
      return {};
    }
    return Fail("recvmsg");
  }
  out->bytes = static_cast<size_t>(n);
  out->truncated = (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) != 0;
  out->fds.clear();
  if (msg.msg_controllen > 0) {
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
      size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      const unsigned char* p = CMSG_DATA(c);
      for (size_t i = 0; i < count; i++) {
        int rfd;
        memcpy(&rfd, p + i * sizeof(int), sizeof(int));
        out->fds.push_back(rfd);
      }
    }
  }
  // recvmsg returns 0 both at EOF and for an empty datagram. A hung-up socket
  // (the peer closed: the kernel sets RCV_SHUTDOWN, reported as POLLRDHUP) is EOF.
  out->eof = false;
  if (n == 0 && out->fds.empty() && !out->truncated) {
    pollfd p;
    p.fd = fd;
    p.events = POLLIN | POLLRDHUP;
    p.revents = 0;
    if (poll(&p, 1, 0) < 0 || (p.revents & (POLLRDHUP | POLLHUP)) != 0) out->eof = true;
  }
  return {};
}

}  // namespace ambit
