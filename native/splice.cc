// See splice.h. Per direction the state is: bytes sitting in the pipe, EOF
// read, write side shut down. EAGAIN is never ambiguous because of two
// invariants (as in Go's splice_linux.go): we only splice socket->pipe when
// the pipe is empty (so EAGAIN = socket has no data), and pipe->socket with
// exactly the bytes in the pipe (so EAGAIN = destination not writable).
#include "splice.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include <climits>
#include <cmath>
#include <cstdint>
#include <string>

#include "netns_socket.h"
#include "poller.h"

namespace ambit {
namespace {

constexpr int kPipeSize = 1 << 20;        // F_SETPIPE_SZ; the kernel may cap it (pipe-max-size)
constexpr int kMaxStepsPerWakeup = 64;    // fairness between connections

enum class Need { kNothing, kRead, kWrite, kDone };

struct Direction {
  int in = -1;
  int out = -1;
  int pipe_r = -1;
  int pipe_w = -1;
  size_t pipe_cap = 65536;
  size_t in_pipe = 0;
  bool read_eof = false;
  bool shut = false;
  double bytes = 0;
  std::string prefix;
  size_t prefix_off = 0;
};

class Pump {
 public:
  Pump(Napi::Env env, int a, int b, Napi::Function cb) : env_(env), a_(a), b_(b) {
    ab_.in = a;
    ab_.out = b;
    ba_.in = b;
    ba_.out = a;
    callback_ = Napi::Persistent(cb);
    async_ = new Napi::AsyncContext(env, "AmbitSplice");
  }

  ~Pump() { delete async_; }

  // Returns errno on failure (then nothing is owned yet besides the fds).
  int Init(uv_loop_t* loop, std::string pre_ab, std::string pre_ba) {
    ab_.prefix = std::move(pre_ab);
    ba_.prefix = std::move(pre_ba);
    for (Direction* d : {&ab_, &ba_}) {
      int p[2];
      if (pipe2(p, O_NONBLOCK | O_CLOEXEC) != 0) return errno;
      d->pipe_r = p[0];
      d->pipe_w = p[1];
      int got = fcntl(d->pipe_w, F_SETPIPE_SZ, kPipeSize);
      if (got < 0) got = fcntl(d->pipe_w, F_GETPIPE_SZ);
      if (got < 0) return errno;  // no pipe sizing: treat splice as unavailable
      d->pipe_cap = static_cast<size_t>(got);
    }
    pa_ = new uv_poll_t;
    pb_ = new uv_poll_t;
    int rc = uv_poll_init(loop, pa_, a_);
    if (rc != 0) {
      delete pa_;
      delete pb_;
      pa_ = pb_ = nullptr;
      return -rc;
    }
    rc = uv_poll_init(loop, pb_, b_);
    if (rc != 0) {
      delete pb_;
      pb_ = nullptr;
      return -rc;
    }
    pa_->data = this;
    pb_->data = this;
    napi_add_env_cleanup_hook(env_, &Pump::OnEnvCleanup, this);
    hooked_ = true;
    return 0;
  }

  void DisownFdsForFailedInit() { a_ = b_ = -1; }

  // Closes everything it owns; used on Init failure and at the end.
  void Release() {
    for (uv_poll_t** h : {&pa_, &pb_}) {
      if (*h != nullptr) {
        (*h)->data = nullptr;
        uv_poll_stop(*h);
        uv_close(reinterpret_cast<uv_handle_t*>(*h), [](uv_handle_t* x) { delete reinterpret_cast<uv_poll_t*>(x); });
        *h = nullptr;
      }
    }
    for (Direction* d : {&ab_, &ba_}) {
      if (d->pipe_r >= 0) close(d->pipe_r);
      if (d->pipe_w >= 0) close(d->pipe_w);
      d->pipe_r = d->pipe_w = -1;
    }
    if (a_ >= 0) close(a_);
    if (b_ >= 0) close(b_);
    a_ = b_ = -1;
    if (hooked_) {
      napi_remove_env_cleanup_hook(env_, &Pump::OnEnvCleanup, this);
      hooked_ = false;
    }
  }

  void Run() {
    if (done_) return;
    Need nab = Step(&ab_);
    Need nba = done_ ? Need::kDone : Step(&ba_);
    if (done_) return;
    if (nab == Need::kDone && nba == Need::kDone) {
      Finish(0, "");
      return;
    }
    int ma = (nab == Need::kRead ? UV_READABLE : 0) | (nba == Need::kWrite ? UV_WRITABLE : 0);
    int mb = (nba == Need::kRead ? UV_READABLE : 0) | (nab == Need::kWrite ? UV_WRITABLE : 0);
    // kNothing means "more work right now" (step budget used up): poll both ways so we come back.
    if (nab == Need::kNothing) {
      ma |= UV_READABLE;
      mb |= UV_WRITABLE;
    }
    if (nba == Need::kNothing) {
      mb |= UV_READABLE;
      ma |= UV_WRITABLE;
    }
    Arm(pa_, ma);
    Arm(pb_, mb);
  }

 private:
  void Arm(uv_poll_t* h, int mask) {
    if (h == nullptr) return;
    int rc = mask == 0 ? uv_poll_stop(h) : uv_poll_start(h, mask, &Pump::OnPoll);
    if (rc != 0) Finish(-rc, "uv_poll_start");
  }

  Need Step(Direction* d) {
    for (int i = 0; i < kMaxStepsPerWakeup; i++) {
      if (d->prefix_off < d->prefix.size()) {
        ssize_t n = send(d->out, d->prefix.data() + d->prefix_off, d->prefix.size() - d->prefix_off, MSG_NOSIGNAL);
        if (n < 0) {
          if (errno == EINTR) continue;
          if (errno == EAGAIN || errno == EWOULDBLOCK) return Need::kWrite;
          Finish(errno, "send");
          return Need::kDone;
        }
        d->prefix_off += static_cast<size_t>(n);
        d->bytes += static_cast<double>(n);
        continue;
      }
      if (d->in_pipe > 0) {
        ssize_t n = splice(d->pipe_r, nullptr, d->out, nullptr, d->in_pipe, SPLICE_F_NONBLOCK);
        if (n < 0) {
          if (errno == EINTR) continue;
          if (errno == EAGAIN) return Need::kWrite;  // the pipe holds data, so the socket is full
          Finish(errno, "splice");
          return Need::kDone;
        }
        d->in_pipe -= static_cast<size_t>(n);
        d->bytes += static_cast<double>(n);
        continue;
      }
      if (d->read_eof) {
        if (!d->shut) {
          d->shut = true;
          // A clean EOF: from here on closing `out` must be graceful, so drop
          // the abortive SO_LINGER {on, 0} the relay may have armed (an unsent
          // tail would otherwise be discarded with an RST at close).
          linger off{0, 0};
          setsockopt(d->out, SOL_SOCKET, SO_LINGER, &off, sizeof off);
          // Half-close: the peer gets FIN, the other direction keeps flowing.
          if (shutdown(d->out, SHUT_WR) != 0 && errno != ENOTCONN) {
            Finish(errno, "shutdown");
            return Need::kDone;
          }
        }
        return Need::kDone;
      }
      ssize_t n = splice(d->in, nullptr, d->pipe_w, nullptr, d->pipe_cap, SPLICE_F_NONBLOCK);
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN) return Need::kRead;  // the pipe is empty, so the socket has no data
        Finish(errno, "splice");
        return Need::kDone;
      }
      if (n == 0) {
        d->read_eof = true;
        continue;
      }
      d->in_pipe = static_cast<size_t>(n);
    }
    return Need::kNothing;
  }

  // Records the first failure; Complete() (called by whoever entered Run) reports it.
  void Finish(int errnum, const char* syscall) {
    if (done_) return;
    done_ = true;
    errnum_ = errnum;
    syscall_ = syscall;
  }

 public:
  bool done() const { return done_; }

  // Releases everything, calls back once and deletes the pump.
  void Complete() {
    if (errnum_ != 0) {
      // Propagate a reset: close both sides with RST instead of FIN.
      linger l{1, 0};
      if (a_ >= 0) setsockopt(a_, SOL_SOCKET, SO_LINGER, &l, sizeof l);
      if (b_ >= 0) setsockopt(b_, SOL_SOCKET, SO_LINGER, &l, sizeof l);
    }
    Release();
    // C API only, see CallFromLoop (poller.h).
    napi_env env = env_;
    napi_handle_scope scope = nullptr;
    if (napi_open_handle_scope(env, &scope) == napi_ok) {
      napi_value argv[3] = {nullptr, nullptr, nullptr};
      bool ok = true;
      if (errnum_ != 0) {
        const char* name = ErrnoName(errnum_);
        std::string text = std::string(syscall_) + " failed: " + name;
        napi_value code = nullptr, msg = nullptr, errno_v = nullptr, sys = nullptr;
        ok = napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &code) == napi_ok &&
             napi_create_string_utf8(env, text.c_str(), text.size(), &msg) == napi_ok &&
             napi_create_error(env, code, msg, &argv[0]) == napi_ok &&
             napi_create_int32(env, errnum_, &errno_v) == napi_ok &&
             napi_set_named_property(env, argv[0], "errno", errno_v) == napi_ok &&
             napi_create_string_utf8(env, syscall_, NAPI_AUTO_LENGTH, &sys) == napi_ok &&
             napi_set_named_property(env, argv[0], "syscall", sys) == napi_ok;
      } else {
        ok = napi_get_null(env, &argv[0]) == napi_ok;
      }
      ok = ok && napi_create_double(env, ab_.bytes, &argv[1]) == napi_ok &&
           napi_create_double(env, ba_.bytes, &argv[2]) == napi_ok;
      if (ok) CallFromLoop(env, callback_, *async_, 3, argv);
      napi_close_handle_scope(env, scope);
    }
    delete this;
  }

 private:
  static void OnPoll(uv_poll_t* h, int status, int /*events*/) {
    auto* self = static_cast<Pump*>(h->data);
    if (self == nullptr) return;
    if (status < 0) {
      // libuv reports POLLERR as UV_EBADF; the socket's pending error says what happened (e.g. ECONNRESET).
      int errnum = -status;
      for (int fd : {self->a_, self->b_}) {
        int soerr = 0;
        socklen_t len = sizeof soerr;
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) == 0 && soerr != 0) {
          errnum = soerr;
          break;
        }
      }
      self->Finish(errnum, errnum == -status ? "poll" : "recv");
      self->Complete();
      return;
    }
    self->Run();  // spurious wakeups are fine: every step tolerates EAGAIN
    if (self->done()) self->Complete();
  }

  static void OnEnvCleanup(void* arg) {
    auto* self = static_cast<Pump*>(arg);
    self->hooked_ = false;
    self->done_ = true;
    self->Release();
    // The callback cannot run any more; leak the small Pump rather than touch a dying env.
  }

  Napi::Env env_;
  int a_;
  int b_;
  Direction ab_;
  Direction ba_;
  uv_poll_t* pa_ = nullptr;
  uv_poll_t* pb_ = nullptr;
  Napi::FunctionReference callback_;
  Napi::AsyncContext* async_ = nullptr;
  bool done_ = false;
  bool hooked_ = false;
  int errnum_ = 0;
  const char* syscall_ = "";
};

int FdArg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  Napi::Env env = info.Env();
  if (info.Length() <= i || !info[i].IsNumber()) throw Napi::TypeError::New(env, std::string(name) + " must be a number");
  double d = info[i].As<Napi::Number>().DoubleValue();
  if (!std::isfinite(d) || std::floor(d) != d || d < 0 || d > INT_MAX) {
    throw Napi::TypeError::New(env, std::string(name) + " must be an integer in [0, 2147483647]");
  }
  return static_cast<int>(d);
}

std::string PrefixArg(const Napi::CallbackInfo& info, size_t i) {
  if (info.Length() <= i || info[i].IsUndefined() || info[i].IsNull()) return {};
  if (!info[i].IsBuffer()) throw Napi::TypeError::New(info.Env(), "prefix must be a Buffer");
  auto b = info[i].As<Napi::Buffer<char>>();
  return std::string(b.Data(), b.Length());
}

[[noreturn]] void ThrowErrno(Napi::Env env, int errnum, const char* syscall) {
  const char* name = ErrnoName(errnum);
  Napi::Error e = Napi::Error::New(env, std::string(syscall) + " failed: " + name);
  e.Value().Set("code", name);
  e.Value().Set("errno", errnum);
  e.Value().Set("syscall", syscall);
  throw e;
}

}  // namespace

Napi::Value SpliceStart(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int a = FdArg(info, 0, "fdA");
  int b = FdArg(info, 1, "fdB");
  if (a == b) throw Napi::TypeError::New(env, "fdA and fdB must differ");
  if (info.Length() < 3 || !info[2].IsFunction()) throw Napi::TypeError::New(env, "callback must be a function");
  std::string pre_ab = PrefixArg(info, 3);
  std::string pre_ba = PrefixArg(info, 4);
  uv_loop_t* loop = nullptr;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok || loop == nullptr) {
    throw Napi::Error::New(env, "spliceStart: no libuv loop for this environment");
  }
  auto* pump = new Pump(env, a, b, info[2].As<Napi::Function>());
  int err = pump->Init(loop, std::move(pre_ab), std::move(pre_ba));
  if (err != 0) {
    // Nothing started: hand the fds back untouched (the caller still owns them).
    pump->DisownFdsForFailedInit();
    pump->Release();
    delete pump;
    ThrowErrno(env, err, "spliceStart");
  }
  pump->Run();
  if (pump->done()) pump->Complete();
  return env.Undefined();
}

Napi::Value DupFd(const Napi::CallbackInfo& info) {
  int fd = FdArg(info, 0, "fd");
  int d = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (d < 0) ThrowErrno(info.Env(), errno, "fcntl");
  return Napi::Number::New(info.Env(), d);
}

}  // namespace ambit
