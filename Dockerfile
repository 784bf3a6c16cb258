# Ambit image: one image for the agent, the CNI node component, the control
# plane, waypoints and the operator CLI (`ambit <command>`).
#
#   docker build -t ghcr.io/ambit-mesh/ambit:0.1.0 .
#
# NOT BUILT HERE: the machines this was written on have no container runtime;
# test/unit/dockerfile.test.ts checks it statically (stages, that every COPY
# source exists, the entrypoint, the Node major against package.json engines,
# the runtime assets the code resolves next to dist/).
#
# Stage 1 compiles the native addon (node-gyp against the image's own Node
# headers, C++) and the TypeScript, then drops dev dependencies. Stage 2
# carries only what runs: dist/src, the addon, production node_modules,
# proto/ (loaded at run time), deploy/ (for `ambit install --dry-run` and
# `ambit waypoint apply`), bin/, package.json (version, package root), plus
# the tools the CNI node component uses in pod namespaces (nft, the iptables
# fallback, ip, nsenter). It runs as the non-root user ambit (uid 1337, the
# uid the Deployments ask for: control plane, waypoints, CLI); only the node
# DaemonSet overrides it with runAsUser: 0 and just NET_ADMIN, SYS_ADMIN and
# NET_RAW.

ARG NODE_IMAGE=node:20-bookworm-slim

FROM ${NODE_IMAGE} AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY package.json package-lock.json binding.gyp ./
COPY scripts/build-native.mjs ./scripts/build-native.mjs
COPY native ./native
# --ignore-scripts: the install hook (addon) runs explicitly below, and the
# prepare hook (tsc) would run before the sources are here.
RUN npm ci --ignore-scripts \
 && node scripts/build-native.mjs \
 && test -f build/Release/ambit_native.node
COPY tsconfig.json ./
COPY src ./src
COPY proto ./proto
COPY bin ./bin
RUN npx tsc -p tsconfig.json \
 && test -f dist/src/cli/main.js \
 && npm prune --omit=dev

FROM ${NODE_IMAGE} AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends nftables iptables iproute2 util-linux ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 1337 ambit \
 && useradd --system --uid 1337 --gid 1337 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin ambit
ENV NODE_ENV=production
WORKDIR /opt/ambit
COPY --from=build /src/package.json ./package.json
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/dist/src ./dist/src
COPY --from=build /src/build/Release/ambit_native.node ./build/Release/ambit_native.node
COPY --from=build /src/proto ./proto
COPY --from=build /src/bin ./bin
COPY deploy ./deploy
USER 1337:1337
ENTRYPOINT ["node", "/opt/ambit/bin/ambit.js"]
CMD ["--help"]
