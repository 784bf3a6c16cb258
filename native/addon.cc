// N-API glue: validates JS arguments (TypeError), calls netns_socket.cc and
// turns a failed SysStatus into an Error carrying code/errno/syscall. It keeps
// no global state, so the addon may be loaded in several contexts (workers).
#include <napi.h>
#include <sched.h>

#include <climits>
#include <cmath>
#include <string>
#include <vector>

#include "netns_socket.h"
#include "poller.h"
#include "seqpacket.h"
#include "splice.h"

namespace ambit {
namespace {

[[noreturn]] void ThrowType(Napi::Env env, const std::string& msg) { throw Napi::TypeError::New(env, msg); }

[[noreturn]] void ThrowSys(Napi::Env env, const SysStatus& st) {
  const char* name = ErrnoName(st.errnum);
  std::string what = st.syscall;
  if (st.detail != nullptr) what += std::string(" ") + st.detail;
  Napi::Error err = Napi::Error::New(env, what + " failed: " + name);
  Napi::Object obj = err.Value();
  obj.Set("code", name);
  obj.Set("errno", st.errnum);
  obj.Set("syscall", st.syscall);
  if (st.detail != nullptr) obj.Set("detail", st.detail);
  throw err;
}

double ToInteger(Napi::Env env, const Napi::Value& v, const char* name, double min, double max) {
  if (!v.IsNumber()) ThrowType(env, std::string(name) + " must be a number");
  double d = v.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(d) || std::floor(d) != d || d < min || d > max) {
    ThrowType(env, std::string(name) + " must be an integer in [" + std::to_string(static_cast<long long>(min)) +
                       ", " + std::to_string(static_cast<long long>(max)) + "]");
  }
  return d;
}

int ToFd(Napi::Env env, const Napi::Value& v, const char* name = "fd") {
  return static_cast<int>(ToInteger(env, v, name, 0, INT_MAX));
}

// Options objects may be omitted; individual keys may be undefined.
Napi::Object OptionsArg(const Napi::CallbackInfo& info, size_t i) {
  Napi::Env env = info.Env();
  if (info.Length() <= i || info[i].IsUndefined()) return Napi::Object::New(env);
  if (!info[i].IsObject()) ThrowType(env, "options must be an object");
  return info[i].As<Napi::Object>();
}

bool OptBool(const Napi::Object& o, const char* key) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined()) return false;
  if (!v.IsBoolean()) ThrowType(o.Env(), std::string(key) + " must be a boolean");
  return v.As<Napi::Boolean>().Value();
}

bool OptMark(const Napi::Object& o, uint32_t* mark) {
  Napi::Value v = o.Get("mark");
  if (v.IsUndefined()) return false;
  *mark = static_cast<uint32_t>(ToInteger(o.Env(), v, "mark", 0, UINT32_MAX));
  return true;
}

// `storage` keeps the path alive while NetnsRef points into it.
NetnsRef NetnsArg(Napi::Env env, const Napi::Value& v, std::string* storage) {
  NetnsRef ref;
  if (v.IsString()) {
    *storage = v.As<Napi::String>().Utf8Value();
    if (storage->empty() || storage->find('\0') != std::string::npos) {
      ThrowType(env, "netns path must be a non-empty string without NUL bytes");
    }
    ref.path = storage->c_str();
  } else if (v.IsNumber()) {
    ref.fd = ToFd(env, v, "netns fd");
  } else {
    ThrowType(env, "netns must be a path string or an fd number");
  }
  return ref;
}

SockAddr AddressArg(Napi::Env env, const Napi::Value& addr, uint16_t port, const char* name) {
  if (!addr.IsString()) ThrowType(env, std::string(name) + " must be a string");
  SockAddr out;
  if (!ParseAddress(addr.As<Napi::String>().Utf8Value(), port, &out)) {
    ThrowType(env, std::string(name) + " must be an IPv4 or IPv6 literal");
  }
  return out;
}

Napi::Object AddressObject(Napi::Env env, const sockaddr_storage& ss) {
  std::string address;
  uint16_t port = 0;
  int family = 0;
  FormatAddress(ss, &address, &port, &family);
  Napi::Object o = Napi::Object::New(env);
  o.Set("address", address);
  o.Set("port", port);
  o.Set("family", family);
  return o;
}

std::string PathArg(Napi::Env env, const Napi::Value& v, const char* name) {
  if (!v.IsString()) ThrowType(env, std::string(name) + " must be a string");
  std::string s = v.As<Napi::String>().Utf8Value();
  if (s.empty() || s.find('\0') != std::string::npos) ThrowType(env, std::string(name) + " must be non-empty without NUL bytes");
  return s;
}

// Largest datagram seqpacketRecv will take in one call.
constexpr double kMaxRecvBytes = 64 * 1024 * 1024;

}  // namespace

class AmbitNative : public Napi::Addon<AmbitNative> {
 public:
  AmbitNative(Napi::Env env, Napi::Object exports) {
    DefineAddon(exports, {
                             InstanceMethod("listenTcpInNetns", &AmbitNative::ListenTcpInNetns),
                             InstanceMethod("socketTcpInNetns", &AmbitNative::SocketTcpInNetns),
                             InstanceMethod("getOriginalDst", &AmbitNative::GetOriginalDst),
                             InstanceMethod("setMark", &AmbitNative::SetMark),
                             InstanceMethod("getMark", &AmbitNative::GetMark),
                             InstanceMethod("setLinger", &AmbitNative::SetLinger),
                             InstanceMethod("getLinger", &AmbitNative::GetLinger),
                             InstanceMethod("nsType", &AmbitNative::NsType),
                             InstanceMethod("closeFd", &AmbitNative::CloseFd),
                             InstanceMethod("seqpacketListen", &AmbitNative::SeqpacketListen),
                             InstanceMethod("seqpacketConnect", &AmbitNative::SeqpacketConnect),
                             InstanceMethod("seqpacketAccept", &AmbitNative::SeqpacketAccept),
                             InstanceMethod("seqpacketSend", &AmbitNative::SeqpacketSend),
                             InstanceMethod("seqpacketRecv", &AmbitNative::SeqpacketRecv),
                             InstanceMethod("spliceStart", &AmbitNative::SpliceStartM),
                             InstanceMethod("dupFd", &AmbitNative::DupFdM),
                             InstanceValue("Poller", Poller::Define(env), napi_enumerable),
                             InstanceValue("CLONE_NEWNET", Napi::Number::New(env, CLONE_NEWNET), napi_enumerable),
                         });
  }

 private:
  std::vector<uint8_t> recv_buf_;

  // (netns, address, port, opts?) -> fd
  Napi::Value ListenTcpInNetns(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    std::string path;
    NetnsRef ns = NetnsArg(env, info[0], &path);
    auto port = static_cast<uint16_t>(ToInteger(env, info[2], "port", 0, 65535));
    SockAddr addr = AddressArg(env, info[1], port, "address");
    Napi::Object o = OptionsArg(info, 3);
    ListenOptions opts;
    if (!o.Get("backlog").IsUndefined()) opts.backlog = static_cast<int>(ToInteger(env, o.Get("backlog"), "backlog", 1, INT_MAX));
    opts.reuse_port = OptBool(o, "reusePort");
    opts.transparent = OptBool(o, "transparent");
    opts.has_mark = OptMark(o, &opts.mark);
    int fd = -1;
    SysStatus st = ambit::ListenTcpInNetns(ns, addr, opts, &fd);
    if (!st.ok()) ThrowSys(env, st);
    return Napi::Number::New(env, fd);
  }

  // (netns, family, opts?) -> fd
  Napi::Value SocketTcpInNetns(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    std::string path;
    NetnsRef ns = NetnsArg(env, info[0], &path);
    int family = static_cast<int>(ToInteger(env, info[1], "family", 4, 6));
    if (family == 5) ThrowType(env, "family must be 4 or 6");
    Napi::Object o = OptionsArg(info, 2);
    SocketOptions opts;
    opts.family = family == 6 ? AF_INET6 : AF_INET;
    opts.transparent = OptBool(o, "transparent");
    opts.freebind = OptBool(o, "freebind");
    opts.has_mark = OptMark(o, &opts.mark);
    Napi::Value bind_addr = o.Get("bindAddress");
    Napi::Value bind_port = o.Get("bindPort");
    if (!bind_addr.IsUndefined() || !bind_port.IsUndefined()) {
      uint16_t port = bind_port.IsUndefined() ? 0 : static_cast<uint16_t>(ToInteger(env, bind_port, "bindPort", 0, 65535));
      Napi::Value text = bind_addr.IsUndefined() ? Napi::String::New(env, family == 6 ? "::" : "0.0.0.0") : bind_addr;
      opts.bind = AddressArg(env, text, port, "bindAddress");
      if (opts.bind.family != opts.family) ThrowType(env, "bindAddress does not match family");
      opts.has_bind = true;
    }
    int fd = -1;
    SysStatus st = ambit::SocketTcpInNetns(ns, opts, &fd);
    if (!st.ok()) ThrowSys(env, st);
    return Napi::Number::New(env, fd);
  }

  Napi::Value GetOriginalDst(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    sockaddr_storage ss{};
    SysStatus st = ambit::GetOriginalDst(ToFd(env, info[0]), &ss);
    if (!st.ok()) ThrowSys(env, st);
    return AddressObject(env, ss);
  }

  Napi::Value SetMark(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    int fd = ToFd(env, info[0]);
    auto mark = static_cast<uint32_t>(ToInteger(env, info[1], "mark", 0, UINT32_MAX));
    SysStatus st = ambit::SetMark(fd, mark);
    if (!st.ok()) ThrowSys(env, st);
    return env.Undefined();
  }

  Napi::Value GetMark(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    uint32_t mark = 0;
    SysStatus st = ambit::GetMark(ToFd(env, info[0]), &mark);
    if (!st.ok()) ThrowSys(env, st);
    return Napi::Number::New(env, mark);
  }

  // (fd, on: boolean, seconds?) -> undefined
  Napi::Value SetLinger(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    int fd = ToFd(env, info[0]);
    if (!info[1].IsBoolean()) ThrowType(env, "on must be a boolean");
    bool on = info[1].As<Napi::Boolean>().Value();
    int seconds = 0;
    if (info.Length() > 2 && !info[2].IsUndefined()) seconds = static_cast<int>(ToInteger(env, info[2], "seconds", 0, 3600));
    SysStatus st = ambit::SetLinger(fd, on, seconds);
    if (!st.ok()) ThrowSys(env, st);
    return env.Undefined();
  }

  // (fd) -> {on, seconds}
  Napi::Value GetLinger(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    bool on = false;
    int seconds = 0;
    SysStatus st = ambit::GetLinger(ToFd(env, info[0]), &on, &seconds);
    if (!st.ok()) ThrowSys(env, st);
    Napi::Object o = Napi::Object::New(env);
    o.Set("on", on);
    o.Set("seconds", seconds);
    return o;
  }

  Napi::Value NsType(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    int type = 0;
    SysStatus st = ambit::NsType(ToFd(env, info[0]), &type);
    if (!st.ok()) ThrowSys(env, st);
    return Napi::Number::New(env, type);
  }

  // (path, backlog) -> fd
  Napi::Value SeqpacketListen(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    std::string path = PathArg(env, info[0], "path");
    int backlog = static_cast<int>(ToInteger(env, info[1], "backlog", 1, INT_MAX));
    int fd = -1;
    SysStatus st = ambit::SeqpacketListen(path.c_str(), backlog, &fd);
    if (!st.ok()) ThrowSys(env, st);
    return Napi::Number::New(env, fd);
  }

  // (path) -> fd
  Napi::Value SeqpacketConnect(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    std::string path = PathArg(env, info[0], "path");
    int fd = -1;
    SysStatus st = ambit::SeqpacketConnect(path.c_str(), &fd);
    if (!st.ok()) ThrowSys(env, st);
    return Napi::Number::New(env, fd);
  }

  // (listenFd) -> fd | -1
  Napi::Value SeqpacketAccept(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    int fd = -1;
    SysStatus st = ambit::SeqpacketAccept(ToFd(env, info[0]), &fd);
    if (!st.ok()) ThrowSys(env, st);
    return Napi::Number::New(env, fd);
  }

  // (fd, data: Buffer, passFd?) -> bytes | -1
  Napi::Value SeqpacketSend(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    int fd = ToFd(env, info[0]);
    if (!info[1].IsBuffer()) ThrowType(env, "data must be a Buffer");
    auto data = info[1].As<Napi::Buffer<uint8_t>>();
    int pass = -1;
    if (info.Length() > 2 && !info[2].IsUndefined()) pass = ToFd(env, info[2], "passFd");
    ssize_t sent = 0;
    SysStatus st = ambit::SeqpacketSend(fd, data.Data(), data.Length(), pass, &sent);
    if (!st.ok()) ThrowSys(env, st);
    return Napi::Number::New(env, static_cast<double>(sent));
  }

  // (fd, maxBytes) -> {data, fds, truncated} | {eof: true} | null
  Napi::Value SeqpacketRecv(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    int fd = ToFd(env, info[0]);
    auto cap = static_cast<size_t>(ToInteger(env, info[1], "maxBytes", 1, kMaxRecvBytes));
    // One receive buffer per addon instance (per env), grown on demand, not zeroed per call.
    if (recv_buf_.size() < cap) recv_buf_.resize(cap);
    uint8_t* buf = recv_buf_.data();
    SeqpacketMessage msg;
    bool would_block = false;
    SysStatus st = ambit::SeqpacketRecv(fd, buf, cap, &msg, &would_block);
    if (!st.ok()) ThrowSys(env, st);
    if (would_block) return env.Null();
    Napi::Object o = Napi::Object::New(env);
    if (msg.eof) {
      o.Set("eof", true);
      return o;
    }
    Napi::Array fds = Napi::Array::New(env, msg.fds.size());
    for (size_t i = 0; i < msg.fds.size(); i++) fds.Set(static_cast<uint32_t>(i), msg.fds[i]);
    o.Set("data", Napi::Buffer<uint8_t>::Copy(env, buf, msg.bytes));
    o.Set("fds", fds);
    o.Set("truncated", msg.truncated);
    return o;
  }

  Napi::Value SpliceStartM(const Napi::CallbackInfo& info) { return ambit::SpliceStart(info); }
  Napi::Value DupFdM(const Napi::CallbackInfo& info) { return ambit::DupFd(info); }

  Napi::Value CloseFd(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    SysStatus st = ambit::CloseFd(ToFd(env, info[0]));
    if (!st.ok()) ThrowSys(env, st);
    return env.Undefined();
  }
};

}  // namespace ambit

// The macro pastes the class name into identifiers, so it needs an unqualified name.
using AmbitNative = ambit::AmbitNative;
NODE_API_ADDON(AmbitNative)
