// Plain Linux syscall wrappers behind the addon. Nothing here touches N-API so
// that every netns switch, socket and fd is handled by code that cannot throw
// or re-enter JS between setns(target) and setns(back).
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <string>

namespace ambit {

// errnum == 0 means success. `syscall` and `detail` (socket option, ioctl or
// file) name the failing step so the JS side can tell "no privilege" from
// "no such netns".
struct SysStatus {
  int errnum = 0;
  const char* syscall = nullptr;
  const char* detail = nullptr;
  bool ok() const { return errnum == 0; }
};

struct SockAddr {
  sockaddr_storage ss{};
  socklen_t len = 0;
  int family = 0;  // AF_INET or AF_INET6
};

// Either a path to open (/var/run/netns/x, /proc/<pid>/ns/net) or an fd the
// caller owns. A borrowed fd is never closed here.
struct NetnsRef {
  const char* path = nullptr;
  int fd = -1;
};

struct ListenOptions {
  int backlog = 511;
  bool reuse_port = false;
  bool transparent = false;
  bool has_mark = false;
  uint32_t mark = 0;
};

struct SocketOptions {
  int family = AF_INET;
  bool transparent = false;
  bool freebind = false;
  bool has_mark = false;
  uint32_t mark = 0;
  bool has_bind = false;
  SockAddr bind;
};

// Parses an IP literal (no hostnames, no scope ids). Returns false if invalid.
bool ParseAddress(const std::string& text, uint16_t port, SockAddr* out);
// Renders a sockaddr; IPv4-mapped IPv6 addresses come back as family 4.
void FormatAddress(const sockaddr_storage& ss, std::string* address, uint16_t* port, int* family);

SysStatus ListenTcpInNetns(const NetnsRef& ns, const SockAddr& addr, const ListenOptions& opts, int* fd_out);
SysStatus SocketTcpInNetns(const NetnsRef& ns, const SocketOptions& opts, int* fd_out);
SysStatus GetOriginalDst(int fd, sockaddr_storage* out);
SysStatus SetMark(int fd, uint32_t mark);
SysStatus GetMark(int fd, uint32_t* mark);
// SO_LINGER. {on, 0} makes close() (including the kernel's close when the
// process dies) send RST instead of FIN; off restores the graceful close.
SysStatus SetLinger(int fd, bool on, int seconds);
SysStatus GetLinger(int fd, bool* on, int* seconds);
SysStatus NsType(int fd, int* type);
SysStatus CloseFd(int fd);

// "EPERM", "ENOENT", ...; "UNKNOWN" where libc cannot name it (JS maps it then).
const char* ErrnoName(int errnum);

}  // namespace ambit
