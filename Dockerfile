# Ambit image: one image for the agent, the CNI node component, the control
# plane and the operator CLI (`ambit <command>`).
#
#   docker build -t ghcr.io/ambit-mesh/ambit:0.1.0 .
#
# Stage 1 compiles the native addon (node-gyp, C++) and the TypeScript; stage 2
# carries only what runs: dist/, the addon, production node_modules, proto/,
# deploy/ (for `ambit install --dry-run`), plus the tools the CNI node
# component runs in pod namespaces (nft, iptables fallback, ip, nsenter).
# Runs as a non-root user by default (control plane, waypoints, CLI); the node
# DaemonSet sets runAsUser: 0 with only NET_ADMIN, SYS_ADMIN and NET_RAW.

FROM node:20-bookworm-slim AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY package.json package-lock.json binding.gyp ./
COPY scripts ./scripts
COPY native ./native
# The install hook builds build/Release/ambit_native.node against this node's headers.
RUN npm ci --ignore-scripts && node scripts/build-native.mjs
COPY tsconfig.json ./
COPY src ./src
COPY proto ./proto
COPY bin ./bin
RUN npx tsc -p tsconfig.json \
 && npm prune --omit=dev

FROM node:20-bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends nftables iptables iproute2 util-linux ca-certificates \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/ambit
COPY --from=build /src/package.json ./
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/dist/src ./dist/src
COPY --from=build /src/build/Release/ambit_native.node ./build/Release/ambit_native.node
COPY --from=build /src/proto ./proto
COPY --from=build /src/bin ./bin
COPY deploy ./deploy
# node:20 images ship user `node` (uid 1000); the Deployments also ask for 1337.
USER 1337:1337
ENTRYPOINT ["node", "/opt/ambit/bin/ambit.js"]
CMD ["--help"]
