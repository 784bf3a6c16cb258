# Builds build/Release/ambit_native.node (see native/). Run via scripts/build-native.mjs,
# which points node-gyp at local Node headers because CI machines have no internet.
{
  'targets': [
    {
      'target_name': 'ambit_native',
      'sources': ['native/addon.cc', 'native/netns_socket.cc', 'native/seqpacket.cc', 'native/poller.cc', 'native/splice.cc'],
      # C++ exceptions: lets argument validation throw from helpers (see addon.cc).
      'dependencies': ["<!(node -p \"require('node-addon-api').targets\"):node_addon_api_except"],
      # SWALLOW_UNTHROWABLE: a worker being terminated cannot take a JS exception;
      # without it node-addon-api rethrows in C++ and std::terminate()s the process.
      'defines': ['NAPI_VERSION=8', 'NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS'],
      # gyp's make backend passes 'cflags' to C++ compiles as well.
      'cflags': ['-Wall', '-Wextra', '-fstack-protector-strong'],
      'ldflags': ['-Wl,-z,relro', '-Wl,-z,now', '-Wl,-z,noexecstack'],
      'configurations': {
        # _FORTIFY_SOURCE only works with optimisation, so Debug builds go without it.
        'Release': {
          'cflags': ['-U_FORTIFY_SOURCE', '-D_FORTIFY_SOURCE=2'],
        },
      },
    },
  ],
}
