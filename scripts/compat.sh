#!/usr/bin/env bash
# The compatibility suite: snapshot -> restore -> initializer on the release lines the core suite
# does not run (it runs on 3.6 when built). test/etcd/etcd-versions.e2e.test.ts already backs up and
# restores on every line; this runs the initializer's scenarios (seed 003 bootstrap, seed 004 time
# travel, a lost data dir, every data dir lost) on etcd 3.4 (the etcd in PATH) and 3.5 (.peers/), each
# as the tests' etcd (EBS_TEST_ETCD_DIR, see test/helpers/etcd-release.ts). A line this machine
# lacks is skipped and named.
set -euo pipefail
cd "$(dirname "$0")/.."

lines=()
if etcd_in_path="$(command -v etcd)" && [[ "$(etcd --version 2>&1)" == *"etcd Version: 3.4."* ]]; then
  lines+=("$(dirname "$etcd_in_path")")
else
  echo "compat: skipping etcd 3.4: the etcd in PATH is not 3.4 (bash scripts/setup.sh installs it)" >&2
fi
if [ -x .peers/etcd-v3.5/etcd ]; then
  lines+=("$PWD/.peers/etcd-v3.5")
else
  echo "compat: skipping etcd 3.5: no .peers/etcd-v3.5 (npm run peers builds it)" >&2
fi

for dir in "${lines[@]}"; do
  echo "compat: $("$dir/etcd" --version | head -n 1) from $dir"
  # The scenarios the issue names for every line (one bootstrap run; the core suite runs three on 3.6).
  EBS_TEST_ETCD_DIR="$dir" EBS_BOOTSTRAP_RUNS=1 node --import tsx --test --test-force-exit --test-timeout=300000 \
    --test-name-pattern='bootstrap 0|run 1:|brings the cluster up|seed 004|data dir lost|every data dir lost' test/initializer/initializer.e2e.test.ts
done
