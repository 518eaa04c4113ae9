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

# ---- etcd: the 3.5 and 3.6 tools, built by the script the tests build them with ----------------------
# scripts/peers.sh builds etcd, etcdctl and etcdutl of each line from the released Go modules through
# small wrapper modules (etcd's modules carry `replace` directives, so `go install` refuses them), and
# checks that each binary prints the wanted version. One script for the image and the tests: the
# image ships exactly the releases the compatibility tests ran. Its Go must be the one the wrapper
# modules name (GOTOOLCHAIN=local: no compiler is downloaded behind the build's back).
FROM golang:1.26-bookworm AS etcd
WORKDIR /src
COPY scripts/peers.sh ./scripts/peers.sh
RUN PEERS_SKIP_ETCDBR=1 PEERS_SKIP_FAKE_GCS=1 bash scripts/peers.sh \
 && .peers/etcd-v3.5/etcd --version && .peers/etcd-v3.6/etcd --version

# ---- runtime ---------------------------------------------------------------------------------------
# The Node base rather than plain debian:bookworm-slim: it brings a supported node binary, and the
# apt step below adds only etcd on top of the same Debian release.
FROM node:20-bookworm-slim

# One folder per etcd minor version, side by side as etcd-manager ships them: a restore and its
# temporary etcd must run the release of the data they handle (3.5 cannot open a data dir 3.6 wrote
# without `etcdutl migrate`). --etcd-bin-dir names the parent folder (EBS_ETCD_BIN_DIR below); the
# sidecar takes the folder of the minor it needs, or the newest (see src/etcd/tools.ts). 3.4 is past
# its end of life and not shipped: 3.5's etcdutl restores its snapshots. The newest release is also
# in PATH, for the etcd container's command and `etcdctl` at a shell.
# npm and corepack are not used at run time (the init container's script runs on plain node);
# dropping them makes the image smaller and leaves no package manager to misuse.
COPY --from=etcd /src/.peers/etcd-v3.5 /usr/local/lib/etcd/v3.5
COPY --from=etcd /src/.peers/etcd-v3.6 /usr/local/lib/etcd/v3.6
RUN for tool in etcd etcdctl etcdutl; do ln -s "/usr/local/lib/etcd/v3.6/$tool" "/usr/local/bin/$tool"; done \
 && /usr/local/lib/etcd/v3.5/etcd --version && /usr/local/lib/etcd/v3.5/etcdutl version \
 && /usr/local/lib/etcd/v3.6/etcd --version && /usr/local/lib/etcd/v3.6/etcdutl version \
 && etcdctl version \
 && rm -rf /usr/local/lib/node_modules/npm /usr/local/lib/node_modules/corepack /usr/local/bin/npm /usr/local/bin/npx /usr/local/bin/corepack
ENV EBS_ETCD_BIN_DIR=/usr/local/lib/etcd

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
# V8 flags: src/launcher/node-flags.ts says why (a small young generation; the test checks both agree).
ENTRYPOINT ["node", "--max-semi-space-size=2", "/app/dist/cli.js"]
CMD ["serve"]
