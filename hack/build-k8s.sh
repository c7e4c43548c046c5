#!/usr/bin/env bash
# build-k8s.sh — build the NEWEST supported Kubernetes control plane (kube-apiserver, kube-controller-manager,
# kube-scheduler, and kubectl for the docs' checks), etcd and KWOK from Go modules, offline but for the Go module
# proxy. The oldest supported version (1.20) is hack/build-envtest.sh; jobtrigger/envtest/ calls the script of
# the version $JOBTRIGGER_K8S_VERSION selects.
#
# k8s.io/kubernetes cannot be `go install`ed: its go.mod requires every staging module (k8s.io/api, ...) at
# v0.0.0 and replaces it with ./staging/src/..., and a dependency's replace directives are ignored. So we write a
# small wrapper module that requires k8s.io/kubernetes vX.Y.Z and replaces each staging module with the
# published k8s.io/<x> v0.Y.Z (the list is read from k8s.io/kubernetes's own go.mod), then `go build` the
# commands from it. etcd's `main` (module go.etcd.io/etcd/server/v3) gets the same treatment for its sibling
# modules; KWOK has no replaces and installs as it is (hack/build-kwok.sh, shared with the 1.20 build).
#
# Result: $DEST/bin/{kube-apiserver,kube-controller-manager,kube-scheduler,kubectl,etcd,kwok} and $DEST/bin/.stamp
# (default ~/.cache/jobtrigger/envtest/$K8S_VERSION). A second run finds the stamp and builds nothing.
set -euo pipefail
HACK=$(cd "$(dirname "$0")" && pwd)

K8S_VERSION=${JOBTRIGGER_K8S_VERSION:-1.37.2}
ETCD_VERSION=${JOBTRIGGER_ETCD_VERSION:-3.7.3}
KWOK_VERSION=${JOBTRIGGER_KWOK_VERSION:-0.8.0}
DEST=${JOBTRIGGER_ENVTEST_DIR:-$HOME/.cache/jobtrigger/envtest/$K8S_VERSION}
BUILD=${JOBTRIGGER_K8S_BUILD_DIR:-$HOME/.cache/jobtrigger/k8s-build}
STAMP="k8s=$K8S_VERSION(+kubectl) etcd=$ETCD_VERSION kwok=$KWOK_VERSION"
MINOR=${K8S_VERSION#*.}; MINOR=${MINOR%%.*}

log() { printf '[build-k8s] %s\n' "$*" >&2; }

mkdir -p "$DEST/bin"
# one build at a time (make, a test session and a demo may all start one); the second finds the first's result
exec 9>"$DEST/.script.lock"
flock 9
if [ -f "$DEST/bin/.stamp" ] && [ "$(cat "$DEST/bin/.stamp")" = "$STAMP" ]; then
  log "binaries cached in $DEST/bin ($STAMP)"; exit 0
fi
if ! command -v go >/dev/null && [ -x /usr/local/go/bin/go ]; then PATH=/usr/local/go/bin:$PATH; fi
command -v go >/dev/null || { log "ERROR: no go on PATH (Go >= 1.26 is needed for Kubernetes 1.$MINOR)"; exit 1; }
command -v openssl >/dev/null || { apt-get update -q >/dev/null; DEBIAN_FRONTEND=noninteractive apt-get install -y -q openssl >/dev/null; }

mkdir -p "$DEST/bin" "$BUILD"
export GOFLAGS=-mod=mod CGO_ENABLED=0 GOTOOLCHAIN=local
export GOCACHE=$BUILD/gocache
t0=$(date +%s)

# ---- Kubernetes --------------------------------------------------------------------------------------------
mod=$BUILD/kubernetes-$K8S_VERSION
mkdir -p "$mod"
log "downloading k8s.io/kubernetes@v$K8S_VERSION"
kdir=$(cd "$mod" && go mod download -json "k8s.io/kubernetes@v$K8S_VERSION" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
test -f "$kdir/go.mod"
{
  echo "module jobtrigger.dev/k8s-build"
  echo
  grep -E '^go [0-9]' "$kdir/go.mod"
  grep -E '^godebug ' "$kdir/go.mod" || true
  echo
  echo "require k8s.io/kubernetes v$K8S_VERSION"
  echo
  # every `k8s.io/<x> => ./staging/src/k8s.io/<x>` of the kubernetes go.mod becomes `=> k8s.io/<x> v0.Y.Z`
  sed -n 's#^[[:space:]]*\(k8s\.io/[a-z0-9-]*\) => \./staging/src/.*#replace \1 => \1 v0.'"${K8S_VERSION#*.}"'#p' "$kdir/go.mod"
} > "$mod/go.mod"
n=$(grep -c '^replace ' "$mod/go.mod")
[ "$n" -ge 20 ] || { log "ERROR: only $n staging replaces found in $kdir/go.mod"; exit 1; }
ver="-X k8s.io/component-base/version.gitVersion=v$K8S_VERSION -X k8s.io/component-base/version.gitMajor=1"
ver="$ver -X k8s.io/component-base/version.gitMinor=$MINOR -X k8s.io/component-base/version.gitTreeState=clean"
ver="$ver -X k8s.io/client-go/pkg/version.gitVersion=v$K8S_VERSION -X k8s.io/client-go/pkg/version.gitMajor=1"
ver="$ver -X k8s.io/client-go/pkg/version.gitMinor=$MINOR"
log "building kube-apiserver, kube-controller-manager, kube-scheduler, kubectl v$K8S_VERSION ($n staging modules pinned)"
(cd "$mod" && go get "k8s.io/kubernetes@v$K8S_VERSION" >/dev/null 2>&1 || true
 go build -trimpath -ldflags "-s -w $ver" -o "$BUILD/out/" \
   k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
   k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl) >"$BUILD/k8s.log" 2>&1 \
   || { tail -40 "$BUILD/k8s.log" >&2; exit 1; }
log "kubernetes built after $(( $(date +%s) - t0 ))s"

# ---- etcd --------------------------------------------------------------------------------------------------
emod=$BUILD/etcd-$ETCD_VERSION
mkdir -p "$emod"
edir=$(cd "$emod" && go mod download -json "go.etcd.io/etcd/server/v3@v$ETCD_VERSION" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
{
  echo "module jobtrigger.dev/etcd-build"
  echo
  grep -E '^go [0-9]' "$edir/go.mod"
  echo
  echo "require go.etcd.io/etcd/server/v3 v$ETCD_VERSION"
  echo
  sed -n 's#^[[:space:]]*\(go\.etcd\.io/etcd/[a-z0-9/]*\) => \.\./.*#replace \1 => \1 v'"$ETCD_VERSION"'#p' "$edir/go.mod"
} > "$emod/go.mod"
log "building etcd v$ETCD_VERSION"
(cd "$emod" && go get "go.etcd.io/etcd/server/v3@v$ETCD_VERSION" >/dev/null 2>&1 || true
 go build -trimpath -ldflags "-s -w" -o "$BUILD/out/etcd" go.etcd.io/etcd/server/v3) \
   >"$BUILD/etcd.log" 2>&1 || { tail -40 "$BUILD/etcd.log" >&2; exit 1; }

# ---- KWOK --------------------------------------------------------------------------------------------------
JOBTRIGGER_KWOK_VERSION=$KWOK_VERSION JOBTRIGGER_KWOK_GOCACHE=$GOCACHE bash "$HACK/build-kwok.sh"

# Install atomically: other sessions may be running the old binaries right now.
for b in kube-apiserver kube-controller-manager kube-scheduler kubectl etcd; do
  cp -f "$BUILD/out/$b" "$DEST/bin/.$b.tmp.$$" && mv -f "$DEST/bin/.$b.tmp.$$" "$DEST/bin/$b"
done
ln -sfn "${JOBTRIGGER_KWOK_DIR:-$HOME/.cache/jobtrigger/kwok/$KWOK_VERSION}/kwok" "$DEST/bin/kwok"
echo "$STAMP" > "$DEST/bin/.stamp"
log "built in $(( $(date +%s) - t0 ))s into $DEST/bin ($STAMP)"
"$DEST/bin/kube-apiserver" --version >&2
if [ -z "${JOBTRIGGER_KEEP_BUILD:-}" ]; then rm -rf "$BUILD/gocache" "$BUILD/out"; fi
