# etcd-backup-sidecar: one image for the sidecar container and the init container of an etcd pod.
#
#   docker build -t etcd-backup-sidecar .
#   docker run --rm etcd-backup-sidecar serve --help

# ---- build: compile TypeScript, then keep only the runtime dependencies ----------------------------
# Same Node major and Debian release as the runtime, so native bits in node_modules (esbuild's binary,
# anything with a prebuilt addon) match the image they end up in.
FROM node:20-bookworm-slim AS build
WORKDIR /src

# Manifests first: the `npm ci` layer stays cached until the dependencies change.
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund

COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build \
 && npm prune --omit=dev --no-audit --no-fund

# ---- runtime ---------------------------------------------------------------------------------------
# The Node base rather than plain debian:bookworm-slim: it brings a supported node binary, and the
# apt step below adds only etcd on top of the same Debian release.
FROM node:20-bookworm-slim

# The restore path builds a data dir with `etcdctl snapshot restore` and checks it with a temporary
# `etcd`, so both must be in the image. Debian's 3.4 packages are the versions the tests run against.
# The server package is installed only for its binary: nothing starts a service in a container.
# npm and corepack are not used at run time (the init container's script runs on plain node);
# dropping them makes the image smaller and leaves no package manager to misuse.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends etcd-server etcd-client \
 && rm -rf /var/lib/apt/lists/* \
 && etcd --version && etcdctl version \
 && rm -rf /usr/local/lib/node_modules/npm /usr/local/lib/node_modules/corepack /usr/local/bin/npm /usr/local/bin/npx /usr/local/bin/corepack

# A fixed, numeric non-root identity (65532, the distroless "nonroot" convention): Kubernetes'
# runAsNonRoot can verify a numeric USER, and the pod's fsGroup makes the shared etcd data volume
# writable for it.
RUN groupadd --system --gid 65532 ebs \
 && useradd --system --uid 65532 --gid ebs --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin ebs

WORKDIR /app
ENV NODE_ENV=production
# Owned by root: the service user can read its code but never change it.
# The entrypoint runs the compiled dist/ with plain node; tsx and the other dev tools were pruned.
COPY --from=build /src/package.json ./package.json
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/dist ./dist
COPY bin ./bin
COPY openapi ./openapi

USER 65532:65532

# The API's default port. The default --listen is 127.0.0.1:8080, which the other containers of the
# pod (etcd, the init container) reach; kubelet probes and Prometheus come from outside the pod's
# loopback, so a deployment that wants them sets --listen 0.0.0.0:8080 (or EBS_LISTEN).
EXPOSE 8080

# No HEALTHCHECK: in Kubernetes the liveness and readiness probes call /healthz and /readyz.
# Node runs as PID 1 and the CLI handles SIGTERM itself (closes the API and the etcd client); run
# with `docker run --init` or add tini if restore ever leaves orphaned grandchildren to reap.
ENTRYPOINT ["node", "/app/dist/cli.js"]
CMD ["serve"]
