#!/usr/bin/env bash
# build-envtest.sh — obtain kube-apiserver, kube-controller-manager and etcd for the test suite and the demo.
#
# Kubernetes ships no prebuilt binaries through the registries this project may use, so we build v1.20.2
# offline from Debian bookworm's `kubernetes` source package (the orig tarball includes vendor/) with Debian's Go,
# and take etcd from Debian's `etcd-server`. Three traps are handled here (see docs/testing.md):
#   1. build in GOPATH mode via `make WHAT=...` (module mode with -mod=vendor fails on Go 1.19);
#   2. `make generated_files` needs rsync (else a 0-byte generator and "Permission denied");
#   3. vendored modern-go/reflect2 v1.0.1 segfaults the whole apiserver under Go >= 1.18 on pretty/YAML output:
#      swap in reflect2 1.0.2 from Debian's -dev package.
#
# Result: $JOBTRIGGER_ENVTEST_DIR/bin/{kube-apiserver,kube-controller-manager,etcd}
# (default ~/.cache/jobtrigger/envtest/1.20.2). A second run finds them and returns at once.
# If KUBEBUILDER_ASSETS names a folder that already holds kube-apiserver and etcd, nothing is built.
set -euo pipefail

KVER=1.20.5+really1.20.2-1.1+deb12u1
DEST=${JOBTRIGGER_ENVTEST_DIR:-$HOME/.cache/jobtrigger/envtest/1.20.2}
BUILD=${JOBTRIGGER_ENVTEST_BUILD_DIR:-$HOME/.cache/jobtrigger/envtest-build}
SRC=$BUILD/kubernetes-1.20.2
export DEBIAN_FRONTEND=noninteractive

log() { printf '[build-envtest] %s\n' "$*" >&2; }

if [ -n "${KUBEBUILDER_ASSETS:-}" ] && [ -x "$KUBEBUILDER_ASSETS/kube-apiserver" ] && [ -x "$KUBEBUILDER_ASSETS/etcd" ]; then
  log "using KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS"; exit 0
fi
if [ -x "$DEST/bin/kube-apiserver" ] && [ -x "$DEST/bin/kube-controller-manager" ] && [ -x "$DEST/bin/etcd" ]; then
  log "binaries cached in $DEST/bin"; exit 0
fi

need_apt=()
command -v go >/dev/null || need_apt+=(golang-go)
command -v etcd >/dev/null || need_apt+=(etcd-server)
command -v rsync >/dev/null || need_apt+=(rsync)
command -v make >/dev/null || need_apt+=(make)
command -v openssl >/dev/null || need_apt+=(openssl)
command -v dpkg-source >/dev/null || need_apt+=(dpkg-dev)
if [ ${#need_apt[@]} -gt 0 ]; then
  log "apt-get install ${need_apt[*]}"
  apt-get update -q >/dev/null
  apt-get install -y -q "${need_apt[@]}" >/dev/null
fi

mkdir -p "$DEST/bin" "$BUILD"
ln -sf "$(command -v etcd)" "$DEST/bin/etcd"

if [ ! -d "$SRC" ]; then
  cd "$BUILD"
  if ! ls kubernetes_1.20.5+really1.20.2.orig.tar.gz >/dev/null 2>&1; then
    # no `grep -q` under pipefail: it closes the pipe early and fails the test spuriously
    if ! apt-cache showsrc kubernetes 2>/dev/null | grep 'really1.20.2' >/dev/null; then
      log "adding deb-src for bookworm"
      printf 'Types: deb-src\nURIs: http://deb.debian.org/debian\nSuites: bookworm bookworm-updates\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\nTypes: deb-src\nURIs: http://deb.debian.org/debian-security\nSuites: bookworm-security\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
        > /etc/apt/sources.list.d/jobtrigger-bookworm-src.sources
      apt-get update -q >/dev/null
    fi
    log "downloading kubernetes source $KVER"
    apt-get source --download-only "kubernetes=$KVER" >/dev/null
  fi
  rm -rf "$SRC.tmp" && mkdir -p "$SRC.tmp"
  tar xzf kubernetes_1.20.5+really1.20.2.orig.tar.gz -C "$SRC.tmp" --strip-components=1
  log "swapping vendored reflect2 1.0.1 for Debian's 1.0.2 (Go >= 1.18 crash fix)"
  rm -f golang-github-modern-go-reflect2-dev_*_all.deb
  apt-get download golang-github-modern-go-reflect2-dev >/dev/null
  rm -rf reflect2-deb && dpkg -x golang-github-modern-go-reflect2-dev_*_all.deb reflect2-deb
  test -f reflect2-deb/usr/share/gocode/src/github.com/modern-go/reflect2/go_above_118.go
  rm -rf "$SRC.tmp/vendor/github.com/modern-go/reflect2"
  cp -r reflect2-deb/usr/share/gocode/src/github.com/modern-go/reflect2 "$SRC.tmp/vendor/github.com/modern-go/reflect2"
  rm -f "$SRC.tmp/vendor/github.com/modern-go/reflect2/go.mod"
  mv "$SRC.tmp" "$SRC"
fi

cd "$SRC"
log "building kube-apiserver and kube-controller-manager (about 4 minutes on 2 cores)"
t0=$(date +%s)
env GOCACHE="$BUILD/gocache" GOPROXY=off GOFLAGS= GOTOOLCHAIN=local CGO_ENABLED=0 \
  GOLDFLAGS="-s -w" make WHAT="cmd/kube-apiserver cmd/kube-controller-manager" >"$BUILD/make.log" 2>&1 \
  || { tail -40 "$BUILD/make.log" >&2; exit 1; }
cp -f _output/bin/kube-apiserver _output/bin/kube-controller-manager "$DEST/bin/"
log "built in $(( $(date +%s) - t0 ))s into $DEST/bin"
if [ -z "${JOBTRIGGER_KEEP_BUILD:-}" ]; then rm -rf "$BUILD"; fi
ls -l "$DEST/bin" >&2
