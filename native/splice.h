// Zero-copy TCP relay: socket -> pipe -> socket with splice(2), both
// directions, driven by one uv_poll_t per fd on Node's loop (no threads).
#pragma once

#include <napi.h>

namespace ambit {

// spliceStart(fdA, fdB, callback, prefixAtoB?, prefixBtoA?): takes ownership of
// both fds (closes them when done), writes the prefixes first (bytes Node had
// already read), then splices until both directions saw EOF. The callback gets
// (error | null, aToB, bToA) exactly once.
Napi::Value SpliceStart(const Napi::CallbackInfo& info);
// fcntl(F_DUPFD_CLOEXEC).
Napi::Value DupFd(const Napi::CallbackInfo& info);

}  // namespace ambit
