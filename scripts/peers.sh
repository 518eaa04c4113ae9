#!/usr/bin/env bash
# Builds the test peers the compatibility tests run against into .peers/ (git-ignored):
#   .peers/etcd-v3.5/{etcd,etcdctl,etcdutl}, .peers/etcd-v3.6/{etcd,etcdctl,etcdutl}, .peers/etcdbrctl/etcdbrctl,
#   .peers/fake-gcs-server/fake-gcs-server, .peers/minio/minio
# MinIO is AGPL-3.0 licensed. It is a test peer only: built here from source, run by the tests on
# loopback, never copied into the image, the npm package or anything else this project ships.
# Switches: PEERS_SKIP_ETCDBR=1, PEERS_SKIP_FAKE_GCS=1, PEERS_SKIP_MINIO=1 leave that peer out.
# A peer whose binaries already print the wanted version is kept, so a second run costs seconds.
# Tests that need a peer this script could not build skip and name it.
#
# Versions: the newest patch releases the Go module proxy served when this was written; find newer
# ones with `go list -m -versions go.etcd.io/etcd/server/v3` and override with the variables below.
set -euo pipefail
cd "$(dirname "$0")/.."

ETCD_35="${PEERS_ETCD_35:-v3.5.36}"
ETCD_36="${PEERS_ETCD_36:-v3.6.17}"
ETCDBR="${PEERS_ETCDBR:-v0.43.0}"
FAKE_GCS="${PEERS_FAKE_GCS:-v1.56.1}"
# MinIO's release tags (RELEASE.<date>) are not semantic versions, so Go pins a commit by its
# pseudo-version: this one is what `go list -m github.com/minio/minio@latest` answered on 2026-12-04.
MINIO="${PEERS_MINIO:-v0.0.0-20260212201848-7aac2a2c5b7c}"
PEERS_DIR="$PWD/.peers"

say() { echo "peers: $*"; }

# Go's download chatter goes to a log shown only when a step fails.
quiet() {
  local log="$1"
  shift
  "$@" >>"$log" 2>&1 || { tail -n 40 "$log" >&2; return 1; }
}

if ! command -v go >/dev/null 2>&1; then
  say "skipping: no Go toolchain (the etcd 3.5/3.6, etcdbrctl, fake-gcs-server and MinIO tests will skip)"
  exit 0
fi

# The local toolchain only: a go.mod asking for a newer one must fail here, not download a compiler.
export GOTOOLCHAIN=local
# Static binaries that run on any Linux the tests run on.
export CGO_ENABLED=0
export GOFLAGS="-mod=mod"

mkdir -p "$PEERS_DIR"

# A failed build leaves no half-made wrapper module behind.
TEMPS=()
trap 'rm -rf "${TEMPS[@]}"' EXIT

# `bin --version`-style output contains the wanted text.
# The output is read whole first: `grep -q` quitting early would SIGPIPE the program and, under
# pipefail, fail the check.
prints() {
  local bin="$1" want="$2" out
  shift 2
  [ -x "$bin" ] || return 1
  out="$("$bin" "$@" 2>&1)" || return 1
  [[ "$out" == *"$want"* ]]
}

# etcd's modules carry `replace` directives, so `go install pkg@version` refuses them: a throwaway
# module that requires the release and calls each program's entry point builds them instead. Only
# the main module's replaces apply, so the release's own go.mod requirements pick every dependency.
build_etcd() {
  local version="$1" minor
  minor="$(echo "$version" | cut -d. -f1-2)"
  local dest="$PEERS_DIR/etcd-$minor" plain="${version#v}"
  if prints "$dest/etcd" "etcd Version: $plain" --version \
    && prints "$dest/etcdctl" "etcdctl version: $plain" version \
    && prints "$dest/etcdutl" "etcdutl version: $plain" version; then
    say "etcd $plain (cached) in ${dest#"$PWD"/}"
    return
  fi
  say "building etcd $plain into ${dest#"$PWD"/}"
  local t0=$SECONDS work
  work="$(mktemp -d)"
  TEMPS+=("$work")
  mkdir -p "$work/etcd" "$work/etcdctl" "$work/etcdutl"
  cat >"$work/go.mod" <<EOF
module peers.invalid/etcd

go 1.26.0
EOF
  cat >"$work/etcd/main.go" <<'EOF'
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
EOF
  # ETCDCTL_API is only a selector between v2 and v3; left set, v3's env-to-flag parsing warns about it.
  cat >"$work/etcdctl/main.go" <<'EOF'
package main

import (
	"os"

	"go.etcd.io/etcd/etcdctl/v3/ctlv3"
)

func main() {
	os.Unsetenv("ETCDCTL_API")
	ctlv3.MustStart()
}
EOF
  # etcdutl's root command lives in its main package, which cannot be imported: the wrapper builds
  # its own root from the exported subcommands each release line has.
  local subcommands
  case "$minor" in
    v3.5) subcommands="etcdutl.NewBackupCommand(), etcdutl.NewDefragCommand(), etcdutl.NewSnapshotCommand(), etcdutl.NewVersionCommand(), etcdutl.NewCheckCommand()" ;;
    *) subcommands="etcdutl.NewDefragCommand(), etcdutl.NewSnapshotCommand(), etcdutl.NewHashKVCommand(), etcdutl.NewVersionCommand(), etcdutl.NewMigrateCommand()" ;;
  esac
  cat >"$work/etcdutl/main.go" <<EOF
package main

import (
	"os"

	"github.com/spf13/cobra"
	"go.etcd.io/etcd/etcdutl/v3/etcdutl"
)

func main() {
	root := &cobra.Command{Use: "etcdutl", Short: "etcd's offline administration tool (test peer build)"}
	root.PersistentFlags().StringVarP(&etcdutl.OutputFormat, "write-out", "w", "simple", "output format (fields, json, protobuf, simple, table)")
	root.AddCommand($subcommands)
	if err := root.Execute(); err != nil {
		os.Exit(1)
	}
}
EOF
  (
    cd "$work"
    quiet build.log go get "go.etcd.io/etcd/server/v3@$version" "go.etcd.io/etcd/etcdctl/v3@$version" "go.etcd.io/etcd/etcdutl/v3@$version"
    quiet build.log go mod tidy
    mkdir -p out
    quiet build.log go build -trimpath -ldflags "-s -w" -o out/ ./etcd ./etcdctl ./etcdutl
  )
  mkdir -p "$dest"
  for b in etcd etcdctl etcdutl; do mv -f "$work/out/$b" "$dest/$b"; done
  rm -rf "$work"
  prints "$dest/etcd" "etcd Version: $plain" --version || { say "built etcd does not print version $plain"; exit 1; }
  say "etcd $plain built in ${dest#"$PWD"/} ($((SECONDS - t0))s)"
}

# gardener's etcd-backup-restore: the same technique around its cobra root; the one `replace` its
# go.mod carries (a gRPC instrumentation pin) is copied, since a dependency's replaces do not apply.
build_etcdbrctl() {
  local version="$1" dest="$PEERS_DIR/etcdbrctl"
  if prints "$dest/etcdbrctl" "etcd-backup-restore Version: $version" --version; then
    say "etcdbrctl $version (cached) in ${dest#"$PWD"/}"
    return
  fi
  say "building etcdbrctl $version into ${dest#"$PWD"/}"
  local t0=$SECONDS work
  work="$(mktemp -d)"
  TEMPS+=("$work")
  local modinfo
  if ! modinfo="$(go mod download -json "github.com/gardener/etcd-backup-restore@$version" 2>&1)"; then
    say "skipping etcdbrctl: the module proxy did not serve github.com/gardener/etcd-backup-restore@$version"
    rm -rf "$work"
    return
  fi
  local gomod
  gomod="$(echo "$modinfo" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')"
  {
    echo "module peers.invalid/etcdbrctl"
    echo
    echo "go 1.26.0"
    echo
    # Single-line and block forms alike.
    awk '/^replace \(/{b=1; print; next} b{print; if ($0 ~ /^\)/) b=0; next} /^replace /{print}' "$gomod"
  } >"$work/go.mod"
  cat >"$work/main.go" <<'EOF'
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/gardener/etcd-backup-restore/cmd"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := cmd.NewBackupRestoreCommand(ctx).Execute(); err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
}
EOF
  (
    cd "$work"
    quiet build.log go get "github.com/gardener/etcd-backup-restore@$version"
    quiet build.log go mod tidy
    quiet build.log go build -trimpath -ldflags "-s -w -X github.com/gardener/etcd-backup-restore/pkg/version.Version=$version" -o etcdbrctl .
  )
  mkdir -p "$dest"
  mv -f "$work/etcdbrctl" "$dest/etcdbrctl"
  rm -rf "$work"
  say "etcdbrctl $version built in ${dest#"$PWD"/} ($((SECONDS - t0))s)"
}

# Servers whose modules carry no replace directives, so plain `go install module@version` builds
# them. Neither prints a version worth checking (MinIO says DEVELOPMENT.GOGET when built this way):
# the module version Go stamps into the binary serves instead.
build_go_install() {
  local name="$1" module="$2" version="$3" dest="$PEERS_DIR/$1"
  if [ -x "$dest/$name" ] && go version -m "$dest/$name" 2>/dev/null | grep -q "^[[:space:]]*mod[[:space:]]*$module[[:space:]]*$version[[:space:]]"; then
    say "$name $version (cached) in ${dest#"$PWD"/}"
    return
  fi
  say "building $name $version into ${dest#"$PWD"/}"
  local t0=$SECONDS log
  log="$(mktemp)"
  TEMPS+=("$log")
  mkdir -p "$dest"
  GOBIN="$dest" quiet "$log" go install -trimpath -ldflags "-s -w" "$module@$version"
  say "$name $version built in ${dest#"$PWD"/} ($((SECONDS - t0))s)"
}

# Runs a build whose failure is reported, not fatal. Not as `build || say`: bash ignores set -e
# inside anything on the left of ||, and a failed step would then be followed by the next.
optional() {
  local name="$1" rc
  shift
  set +e
  (
    set -e
    trap 'rm -rf "${TEMPS[@]}"' EXIT
    "$@"
  )
  rc=$?
  set -e
  if [ "$rc" != 0 ]; then say "$name failed to build; its tests will skip"; fi
}

start=$SECONDS
build_etcd "$ETCD_35"
build_etcd "$ETCD_36"

# promrules (.peers/promrules/promrules): Prometheus' own rule-file check (scripts/promrules/main.go,
# the same checks as `promtool check rules`) for the PrometheusRule in deploy/monitoring/; a wrapper
# module around model/rulefmt instead of all of promtool. Cold build here: about 1.5 minutes.
PROMETHEUS="${PEERS_PROMETHEUS:-v0.316.0}"
build_promrules() {
  local version="$1" dest="$PEERS_DIR/promrules" src="$PWD/scripts/promrules/main.go" digest
  # A build context holding only this script (an image's etcd stage) has no wrapper to build.
  if [ ! -f "$src" ]; then
    say "skipping promrules: ${src#"$PWD"/} is not here"
    return
  fi
  digest="$(sha256sum "$src" | cut -c1-12)"
  if prints "$dest/promrules" "promrules: prometheus $version, wrapper $digest" --version; then
    say "promrules (prometheus $version) (cached) in ${dest#"$PWD"/}"
    return
  fi
  say "building promrules (prometheus $version) into ${dest#"$PWD"/}"
  local t0=$SECONDS work
  work="$(mktemp -d)"
  TEMPS+=("$work")
  printf 'module peers.invalid/promrules\n\ngo 1.26.0\n' >"$work/go.mod"
  cp "$src" "$work/main.go"
  (
    cd "$work"
    quiet build.log go get "github.com/prometheus/prometheus@$version"
    quiet build.log go mod tidy
    quiet build.log go build -trimpath -ldflags "-s -w -X main.wrapper=$digest" -o promrules .
  )
  mkdir -p "$dest"
  mv -f "$work/promrules" "$dest/promrules"
  rm -rf "$work"
  say "$("$dest/promrules" --version) built in ${dest#"$PWD"/} ($((SECONDS - t0))s)"
}
if [ "${PEERS_SKIP_PROMRULES:-}" = "1" ]; then
  say "skipping promrules: PEERS_SKIP_PROMRULES=1"
else
  optional promrules build_promrules "$PROMETHEUS"
fi
if [ "${PEERS_SKIP_ETCDBR:-}" = "1" ]; then
  say "skipping etcdbrctl: PEERS_SKIP_ETCDBR=1"
else
  # gardener's tool and the object store serve the interop and contract tests only: a failure here
  # costs those tests (they skip), not the etcd peers above.
  optional etcdbrctl build_etcdbrctl "$ETCDBR"
fi
if [ "${PEERS_SKIP_FAKE_GCS:-}" = "1" ]; then
  say "skipping fake-gcs-server: PEERS_SKIP_FAKE_GCS=1"
else
  # It binds 0.0.0.0 unless told `-host 127.0.0.1`.
  optional fake-gcs-server build_go_install fake-gcs-server github.com/fsouza/fake-gcs-server "$FAKE_GCS"
fi
if [ "${PEERS_SKIP_MINIO:-}" = "1" ]; then
  say "skipping MinIO: PEERS_SKIP_MINIO=1"
else
  optional minio build_go_install minio github.com/minio/minio "$MINIO"
fi
say "done in $((SECONDS - start))s"
