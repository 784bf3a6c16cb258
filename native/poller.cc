// See poller.h.
#include "poller.h"

#include <sys/socket.h>

#include <climits>
#include <cmath>
#include <string>

namespace ambit {

static_assert(UV_READABLE == 1 && UV_WRITABLE == 2 && UV_DISCONNECT == 4, "src/native/binding.ts hard-codes these");

Napi::Function Poller::Define(Napi::Env env) {
  return DefineClass(env, "Poller",
                     {
                         InstanceMethod("start", &Poller::Start),
                         InstanceMethod("stop", &Poller::Stop),
                         InstanceMethod("close", &Poller::Close),
                         InstanceAccessor("fd", &Poller::Fd, nullptr),
                     });
}

Poller::Poller(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Poller>(info), env_(info.Env()), fd_(-1) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsNumber() || !info[1].IsFunction()) {
    throw Napi::TypeError::New(env, "new Poller(fd, callback) needs an fd number and a function");
  }
  double d = info[0].As<Napi::Number>().DoubleValue();
  if (!std::isfinite(d) || std::floor(d) != d || d < 0 || d > INT_MAX) {
    throw Napi::TypeError::New(env, "fd must be an integer in [0, 2147483647]");
  }
  fd_ = static_cast<int>(d);
  uv_loop_t* loop = nullptr;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok || loop == nullptr) {
    throw Napi::Error::New(env, "Poller: no libuv loop for this environment");
  }
  auto* handle = new uv_poll_t;
  int rc = uv_poll_init(loop, handle, fd_);
  if (rc != 0) {
    delete handle;  // never initialised as a handle, so no uv_close needed
    Napi::Error err = Napi::Error::New(env, std::string("uv_poll_init failed: ") + uv_err_name(rc));
    err.Value().Set("code", uv_err_name(rc));
    err.Value().Set("errno", -rc);
    err.Value().Set("syscall", "uv_poll_init");
    throw err;
  }
  handle->data = this;
  handle_ = handle;
  callback_ = Napi::Persistent(info[1].As<Napi::Function>());
  async_ = new Napi::AsyncContext(env, "AmbitPoller");
  napi_add_env_cleanup_hook(env, &Poller::OnEnvCleanup, this);
  hooked_ = true;
}

Poller::~Poller() {
  CloseHandle();
  if (hooked_) napi_remove_env_cleanup_hook(env_, &Poller::OnEnvCleanup, this);
  delete async_;
}

void Poller::OnClosed(uv_handle_t* handle) { delete reinterpret_cast<uv_poll_t*>(handle); }

// Safe to call repeatedly. uv_close also stops the poll and drops the fd from
// epoll at once, so the caller may close the fd right after this returns.
void Poller::CloseHandle() {
  if (handle_ == nullptr) return;
  handle_->data = nullptr;
  uv_poll_stop(handle_);
  uv_close(reinterpret_cast<uv_handle_t*>(handle_), &Poller::OnClosed);
  handle_ = nullptr;
}

void Poller::Unpin() {
  if (pinned_) {
    pinned_ = false;
    Unref();
  }
}

void Poller::OnEnvCleanup(void* arg) {
  auto* self = static_cast<Poller*>(arg);
  self->hooked_ = false;  // hooks are removed by running them
  self->CloseHandle();
}

void CallFromLoop(napi_env env, napi_ref fn, napi_async_context ctx, size_t argc, const napi_value* argv) {
  napi_value func = nullptr;
  napi_value global = nullptr;
  napi_value result = nullptr;
  if (napi_get_reference_value(env, fn, &func) != napi_ok || func == nullptr) return;
  if (napi_get_global(env, &global) != napi_ok) return;
  napi_status st = napi_make_callback(env, ctx, global, func, argc, argv, &result);
  if (st == napi_pending_exception) {
    napi_value exc = nullptr;
    if (napi_get_and_clear_last_exception(env, &exc) == napi_ok && exc != nullptr) napi_fatal_exception(env, exc);
  }
}

void Poller::OnPoll(uv_poll_t* handle, int status, int events) {
  auto* self = static_cast<Poller*>(handle->data);
  if (self == nullptr || self->handle_ == nullptr) return;
  if (status == UV_EBADF) {
    // libuv reports POLLERR as UV_EBADF; a socket's pending error is the real cause (e.g. ECONNRESET).
    int soerr = 0;
    socklen_t len = sizeof soerr;
    if (getsockopt(self->fd_, SOL_SOCKET, SO_ERROR, &soerr, &len) == 0 && soerr != 0) status = -soerr;
  }
  // A failed poll (status < 0) leaves the handle stopped in libuv's eyes; the
  // JS side decides what to do (usually close the socket).
  napi_env env = self->env_;
  napi_handle_scope scope = nullptr;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return;
  napi_value argv[2];
  if (napi_create_int32(env, status, &argv[0]) == napi_ok && napi_create_int32(env, events, &argv[1]) == napi_ok) {
    CallFromLoop(env, self->callback_, *self->async_, 2, argv);
  }
  napi_close_handle_scope(env, scope);
}

Napi::Value Poller::Start(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (handle_ == nullptr) throw Napi::Error::New(env, "Poller is closed");
  if (info.Length() < 1 || !info[0].IsNumber()) throw Napi::TypeError::New(env, "events must be a number");
  int events = info[0].As<Napi::Number>().Int32Value();
  if (events <= 0 || (events & ~(UV_READABLE | UV_WRITABLE | UV_DISCONNECT)) != 0) {
    throw Napi::TypeError::New(env, "events must be a non-empty mask of READABLE(1), WRITABLE(2), DISCONNECT(4)");
  }
  int rc = uv_poll_start(handle_, events, &Poller::OnPoll);
  if (rc != 0) {
    Napi::Error err = Napi::Error::New(env, std::string("uv_poll_start failed: ") + uv_err_name(rc));
    err.Value().Set("code", uv_err_name(rc));
    err.Value().Set("errno", -rc);
    err.Value().Set("syscall", "uv_poll_start");
    throw err;
  }
  if (!pinned_) {
    pinned_ = true;
    Ref();
  }
  return env.Undefined();
}

Napi::Value Poller::Stop(const Napi::CallbackInfo& info) {
  if (handle_ != nullptr) uv_poll_stop(handle_);
  Unpin();
  return info.Env().Undefined();
}

Napi::Value Poller::Close(const Napi::CallbackInfo& info) {
  CloseHandle();
  Unpin();
  if (hooked_) {
    napi_remove_env_cleanup_hook(env_, &Poller::OnEnvCleanup, this);
    hooked_ = false;
  }
  return info.Env().Undefined();
}

Napi::Value Poller::Fd(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), fd_); }

}  // namespace ambit
