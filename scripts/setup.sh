#!/usr/bin/env bash
# Installs what the demo and the tests need on a fresh machine: the npm packages, and etcd/etcdctl
# from Debian when they are missing. Safe to run again: it skips what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v etcd >/dev/null 2>&1 || ! command -v etcdctl >/dev/null 2>&1; then
  echo "setup: installing etcd-server and etcd-client from Debian" >&2
  SUDO=""
  if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq etcd-server etcd-client >/dev/null
  # Debian's package starts a system etcd on 127.0.0.1:2379; the demo and tests start their own.
  if command -v systemctl >/dev/null 2>&1; then $SUDO systemctl disable --now etcd >/dev/null 2>&1 || true; fi
fi

# faketime: the tests run sidecars with skewed clocks (libfaketime preloaded into node).
if ! compgen -G '/usr/lib/*/faketime/libfaketime*.so.1' >/dev/null && ! compgen -G '/usr/lib/faketime/libfaketime*.so.1' >/dev/null; then
  echo "setup: installing faketime from Debian" >&2
  SUDO=""
  if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
  ($SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq faketime >/dev/null) || echo "setup: faketime not installed; the clock-skew tests will be skipped" >&2
fi

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "setup: installing npm packages" >&2
  npm ci --no-fund --no-audit --loglevel=error
fi
