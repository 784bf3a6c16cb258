// SOCK_SEQPACKET unix sockets with SCM_RIGHTS, as thin nonblocking syscalls
// (the ZDS transport between istio-cni and ztunnel). No N-API here, like
// netns_socket.h: the glue in addon.cc turns SysStatus into JS errors.
// Readiness is the caller's business (a uv_poll_t Poller, see poller.h);
// nothing here ever blocks.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <vector>

#include "netns_socket.h"

namespace ambit {

// Linux's SCM_MAX_FD: the most fds one message can carry. Receiving with room
// for all of them means a peer that sends too many is seen, not truncated.
constexpr int kMaxRecvFds = 253;

struct SeqpacketMessage {
  size_t bytes = 0;         // bytes copied into the caller's buffer
  std::vector<int> fds;     // received fds (close-on-exec); the caller owns them
  bool truncated = false;   // MSG_TRUNC or MSG_CTRUNC
  bool eof = false;         // the peer closed (recvmsg returned 0 and the socket is hung up)
};

// Unlinks a stale socket file at `path` (only if it is a socket), then
// socket/bind/listen; the fd is nonblocking and close-on-exec.
SysStatus SeqpacketListen(const char* path, int backlog, int* fd_out);
// Nonblocking connect; unix sockets connect at once or fail (EAGAIN = backlog full).
SysStatus SeqpacketConnect(const char* path, int* fd_out);
// *fd_out = -1 when nothing is pending (EAGAIN, ECONNABORTED).
SysStatus SeqpacketAccept(int fd, int* fd_out);
// One datagram, with `pass_fd` attached when >= 0. *sent = -1 on EAGAIN.
SysStatus SeqpacketSend(int fd, const void* data, size_t len, int pass_fd, ssize_t* sent);
// One datagram into buf[0..cap). *would_block = true on EAGAIN.
SysStatus SeqpacketRecv(int fd, void* buf, size_t cap, SeqpacketMessage* msg, bool* would_block);

}  // namespace ambit
