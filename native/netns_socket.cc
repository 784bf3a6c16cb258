// Syscall side of the addon. See netns_socket.h for why it is N-API free.
#include "netns_socket.h"
#include "unique_fd.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/nsfs.h>
#include <sched.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>

namespace ambit {
namespace {

// From <linux/netfilter_ipv4.h> and <linux/netfilter_ipv6/ip6_tables.h>; those
// headers clash with glibc's <netinet/in.h>, and the ABI value is fixed (80 for both).
constexpr int kSoOriginalDst = 80;
constexpr int kIp6tSoOriginalDst = 80;

// Must be evaluated before any cleanup, which may clobber errno.
SysStatus Fail(const char* syscall, const char* detail = nullptr) {
  SysStatus st;
  st.errnum = errno != 0 ? errno : EIO;
  st.syscall = syscall;
  st.detail = detail;
  return st;
}

SysStatus SetInt(int fd, int level, int name, int value, const char* option) {
  if (setsockopt(fd, level, name, &value, sizeof value) != 0) return Fail("setsockopt", option);
  return {};
}

// Runs `fn` with the calling thread in the target netns and always moves the
// thread back. Only this thread moves (setns is per thread), which is why the
// original is taken from /proc/thread-self, not /proc/self (the main thread's).
// If the way back fails we abort: a thread stuck in a pod netns would silently
// resolve DNS and open every later socket inside the pod.
template <typename Fn>
SysStatus InNetns(const NetnsRef& ns, Fn&& fn) {
  static_assert(noexcept(fn()), "an exception inside the target netns would skip the setns back");
  static const char kSelf[] = "/proc/thread-self/ns/net";
  UniqueFd self(open(kSelf, O_RDONLY | O_CLOEXEC));
  if (self.get() < 0) return Fail("open", kSelf);
  UniqueFd owned;
  int target = ns.fd;
  if (ns.path != nullptr) {
    owned.reset(open(ns.path, O_RDONLY | O_CLOEXEC));
    if (owned.get() < 0) return Fail("open");
    target = owned.get();
  }
  if (setns(target, CLONE_NEWNET) != 0) return Fail("setns");
  SysStatus st = fn();
  if (setns(self.get(), CLONE_NEWNET) != 0) {
    fprintf(stderr, "ambit_native: FATAL: cannot return thread to its network namespace: %s\n", strerror(errno));
    abort();
  }
  return st;
}

SysStatus SetMarkRaw(int fd, uint32_t mark) {
  if (setsockopt(fd, SOL_SOCKET, SO_MARK, &mark, sizeof mark) != 0) return Fail("setsockopt", "SO_MARK");
  return {};
}

SysStatus SetTransparent(int fd, int family) {
  return family == AF_INET6 ? SetInt(fd, SOL_IPV6, IPV6_TRANSPARENT, 1, "IPV6_TRANSPARENT")
                            : SetInt(fd, SOL_IP, IP_TRANSPARENT, 1, "IP_TRANSPARENT");
}

bool IsV4Mapped(const sockaddr_storage& ss) {
  if (ss.ss_family != AF_INET6) return false;
  const auto* sin6 = reinterpret_cast<const sockaddr_in6*>(&ss);
  return IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr);
}

}  // namespace

bool ParseAddress(const std::string& text, uint16_t port, SockAddr* out) {
  *out = SockAddr{};
  auto* sin = reinterpret_cast<sockaddr_in*>(&out->ss);
  if (inet_pton(AF_INET, text.c_str(), &sin->sin_addr) == 1) {
    sin->sin_family = AF_INET;
    sin->sin_port = htons(port);
    out->len = sizeof(sockaddr_in);
    out->family = AF_INET;
    return true;
  }
  *out = SockAddr{};
  auto* sin6 = reinterpret_cast<sockaddr_in6*>(&out->ss);
  if (inet_pton(AF_INET6, text.c_str(), &sin6->sin6_addr) == 1) {
    sin6->sin6_family = AF_INET6;
    sin6->sin6_port = htons(port);
    out->len = sizeof(sockaddr_in6);
    out->family = AF_INET6;
    return true;
  }
  return false;
}

void FormatAddress(const sockaddr_storage& ss, std::string* address, uint16_t* port, int* family) {
  char buf[INET6_ADDRSTRLEN] = {0};
  if (ss.ss_family == AF_INET) {
    const auto* sin = reinterpret_cast<const sockaddr_in*>(&ss);
    inet_ntop(AF_INET, &sin->sin_addr, buf, sizeof buf);
    *port = ntohs(sin->sin_port);
    *family = 4;
  } else if (IsV4Mapped(ss)) {
    // Callers compare with workload IPs, which are plain dotted quads.
    const auto* sin6 = reinterpret_cast<const sockaddr_in6*>(&ss);
    inet_ntop(AF_INET, &sin6->sin6_addr.s6_addr[12], buf, sizeof buf);
    *port = ntohs(sin6->sin6_port);
    *family = 4;
  } else {
    const auto* sin6 = reinterpret_cast<const sockaddr_in6*>(&ss);
    inet_ntop(AF_INET6, &sin6->sin6_addr, buf, sizeof buf);
    *port = ntohs(sin6->sin6_port);
    *family = 6;
  }
  *address = buf;
}

SysStatus ListenTcpInNetns(const NetnsRef& ns, const SockAddr& addr, const ListenOptions& opts, int* fd_out) {
  return InNetns(ns, [&]() noexcept -> SysStatus {
    UniqueFd sock(socket(addr.family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP));
    if (sock.get() < 0) return Fail("socket");
    // Same as libuv: lets the agent restart while old connections sit in TIME_WAIT.
    SysStatus st = SetInt(sock.get(), SOL_SOCKET, SO_REUSEADDR, 1, "SO_REUSEADDR");
    if (!st.ok()) return st;
    if (opts.reuse_port && !(st = SetInt(sock.get(), SOL_SOCKET, SO_REUSEPORT, 1, "SO_REUSEPORT")).ok()) return st;
    if (opts.transparent && !(st = SetTransparent(sock.get(), addr.family)).ok()) return st;
    if (opts.has_mark && !(st = SetMarkRaw(sock.get(), opts.mark)).ok()) return st;
    if (bind(sock.get(), reinterpret_cast<const sockaddr*>(&addr.ss), addr.len) != 0) return Fail("bind");
    if (listen(sock.get(), opts.backlog) != 0) return Fail("listen");
    *fd_out = sock.release();
    return {};
  });
}

SysStatus SocketTcpInNetns(const NetnsRef& ns, const SocketOptions& opts, int* fd_out) {
  return InNetns(ns, [&]() noexcept -> SysStatus {
    UniqueFd sock(socket(opts.family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP));
    if (sock.get() < 0) return Fail("socket");
    SysStatus st;
    if (opts.transparent && !(st = SetTransparent(sock.get(), opts.family)).ok()) return st;
    if (opts.freebind) {
      st = opts.family == AF_INET6 ? SetInt(sock.get(), SOL_IPV6, IPV6_FREEBIND, 1, "IPV6_FREEBIND")
                                   : SetInt(sock.get(), SOL_IP, IP_FREEBIND, 1, "IP_FREEBIND");
      if (!st.ok()) return st;
    }
    if (opts.has_mark && !(st = SetMarkRaw(sock.get(), opts.mark)).ok()) return st;
    if (opts.has_bind) {
      // Source-IP binds with port 0 would otherwise reserve an ephemeral port
      // per address without knowing the destination and exhaust the range.
      // (SOL_IP options also apply to AF_INET6 TCP sockets.)
      const auto* sin = reinterpret_cast<const sockaddr_in*>(&opts.bind.ss);
      const auto* sin6 = reinterpret_cast<const sockaddr_in6*>(&opts.bind.ss);
      in_port_t port = opts.bind.family == AF_INET ? sin->sin_port : sin6->sin6_port;
      if (port == 0 &&
          !(st = SetInt(sock.get(), SOL_IP, IP_BIND_ADDRESS_NO_PORT, 1, "IP_BIND_ADDRESS_NO_PORT")).ok()) {
        return st;
      }
      if (bind(sock.get(), reinterpret_cast<const sockaddr*>(&opts.bind.ss), opts.bind.len) != 0) return Fail("bind");
    }
    *fd_out = sock.release();
    return {};
  });
}

SysStatus GetOriginalDst(int fd, sockaddr_storage* out) {
  sockaddr_storage local{};
  socklen_t len = sizeof local;
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&local), &len) != 0) return Fail("getsockname");
  if (local.ss_family != AF_INET && local.ss_family != AF_INET6) {
    errno = EAFNOSUPPORT;
    return Fail("getsockname");
  }
  sockaddr_storage orig{};
  int rc;
  if (local.ss_family == AF_INET) {
    len = sizeof(sockaddr_in);
    rc = getsockopt(fd, SOL_IP, kSoOriginalDst, &orig, &len);
  } else {
    len = sizeof(sockaddr_in6);
    rc = getsockopt(fd, SOL_IPV6, kIp6tSoOriginalDst, &orig, &len);
    // A dual-stack listener's v4 client is tracked by IPv4 conntrack.
    if (rc != 0 && IsV4Mapped(local)) {
      len = sizeof(sockaddr_in);
      orig = sockaddr_storage{};
      rc = getsockopt(fd, SOL_IP, kSoOriginalDst, &orig, &len);
    }
  }
  if (rc == 0) {
    *out = orig;
    return {};
  }
  // No conntrack NAT entry (or no conntrack at all): not redirected, or TPROXY,
  // where the local address already is the original destination.
  if (errno == ENOENT || errno == ENOPROTOOPT) {
    *out = local;
    return {};
  }
  return Fail("getsockopt", "SO_ORIGINAL_DST");
}

SysStatus SetMark(int fd, uint32_t mark) { return SetMarkRaw(fd, mark); }

SysStatus GetMark(int fd, uint32_t* mark) {
  socklen_t len = sizeof *mark;
  if (getsockopt(fd, SOL_SOCKET, SO_MARK, mark, &len) != 0) return Fail("getsockopt", "SO_MARK");
  return {};
}

SysStatus SetLinger(int fd, bool on, int seconds) {
  linger l{};
  l.l_onoff = on ? 1 : 0;
  l.l_linger = on ? seconds : 0;
  if (setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l) != 0) return Fail("setsockopt", "SO_LINGER");
  return {};
}

SysStatus GetLinger(int fd, bool* on, int* seconds) {
  linger l{};
  socklen_t len = sizeof l;
  if (getsockopt(fd, SOL_SOCKET, SO_LINGER, &l, &len) != 0) return Fail("getsockopt", "SO_LINGER");
  *on = l.l_onoff != 0;
  *seconds = l.l_linger;
  return {};
}

SysStatus NsType(int fd, int* type) {
  int rc = ioctl(fd, NS_GET_NSTYPE);
  if (rc < 0) return Fail("ioctl", "NS_GET_NSTYPE");
  *type = rc;
  return {};
}

SysStatus CloseFd(int fd) {
  // On Linux the fd is released even when close() reports EINTR; retrying
  // could close an fd another thread just got.
  if (close(fd) != 0 && errno != EINTR) return Fail("close");
  return {};
}

const char* ErrnoName(int errnum) {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 32))
  const char* name = strerrorname_np(errnum);
  if (name != nullptr) return name;
#endif
  return "UNKNOWN";
}

}  // namespace ambit
