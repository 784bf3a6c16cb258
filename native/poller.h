// Poller: a JS object around one uv_poll_t on Node's own event loop, so
// addon-owned fds (seqpacket sockets) get readiness callbacks without any
// thread or threadpool work. libuv's rules, enforced here or by the caller:
// - one poll handle per fd (the caller never makes two for one fd);
// - spurious wakeups happen: callers treat EAGAIN as "wait again";
// - close() (uv_close) before the fd is closed; the handle memory is freed in
//   the close callback, never earlier;
// - an env cleanup hook closes handles still alive at teardown (workers).
#pragma once

#include <napi.h>
#include <uv.h>

namespace ambit {

// Calls `fn(...argv)` from a libuv callback (no JS on the stack) with the C
// API only: while a worker terminates any N-API call may fail, and
// node-addon-api would turn such a failure into a fatal error. Failures are
// ignored then; a JS exception thrown by `fn` becomes an uncaught exception.
void CallFromLoop(napi_env env, napi_ref fn, napi_async_context ctx, size_t argc, const napi_value* argv);

class Poller : public Napi::ObjectWrap<Poller> {
 public:
  static Napi::Function Define(Napi::Env env);
  explicit Poller(const Napi::CallbackInfo& info);
  ~Poller() override;

 private:
  Napi::Value Start(const Napi::CallbackInfo& info);
  Napi::Value Stop(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);
  Napi::Value Fd(const Napi::CallbackInfo& info);

  static void OnPoll(uv_poll_t* handle, int status, int events);
  static void OnClosed(uv_handle_t* handle);
  static void OnEnvCleanup(void* arg);
  void CloseHandle();
  void Unpin();

  Napi::Env env_;
  int fd_;
  uv_poll_t* handle_ = nullptr;  // null once closed
  Napi::FunctionReference callback_;
  Napi::AsyncContext* async_ = nullptr;
  bool pinned_ = false;  // a strong ref keeps the JS object alive while polling
  bool hooked_ = false;
};

}  // namespace ambit
