#!/usr/bin/env bash
# build-envtest.sh — the OLDEST supported control plane (Kubernetes 1.20.2) for the test suite:
# kube-apiserver, kube-controller-manager, kube-scheduler, etcd and kwok. The newest one is hack/build-k8s.sh;
# jobtrigger/envtest/ calls the script of the version $JOBTRIGGER_K8S_VERSION selects.
#
# Kubernetes ships no prebuilt binaries through the registries this project may use, so we build v1.20.2
# offline from Debian bookworm's `kubernetes` source package (the orig tarball includes vendor/) with Debian's Go
# 1.19, take etcd from Debian's `etcd-server` (3.4) and kwok from hack/build-kwok.sh (Go modules, machine's Go).
# Four traps are handled here (see docs/testing.md and docs/testing-envtest-notes.md):
#   1. build in GOPATH mode via `make WHAT=...` (module mode with -mod=vendor fails on Go 1.19);
#   2. `make generated_files` needs rsync (else a 0-byte generator and "Permission denied");
#   3. vendored modern-go/reflect2 v1.0.1 segfaults the whole apiserver under Go >= 1.18 on pretty/YAML output:
#      swap in reflect2 1.0.2 from Debian's -dev package;
#   4. vendored kube-openapi's type validator treats "" as null under Go >= 1.16 (CRs with `spec.x: ""` and CRDs
#      with `default: ""` are rejected with 'must be of type string: "null"'): patch it as upstream kube-openapi#230.
#
# Result: $JOBTRIGGER_ENVTEST_DIR/bin/{kube-apiserver,kube-controller-manager,kube-scheduler,etcd,kwok}
# (default ~/.cache/jobtrigger/envtest/1.20.2) and bin/.patches, the list of source fixes built in.
# A second run finds them and returns at once; binaries whose .patches lacks one of $FIXES are rebuilt.
# If KUBEBUILDER_ASSETS names a folder that already holds kube-apiserver and etcd, nothing is built.
set -euo pipefail
HACK=$(cd "$(dirname "$0")" && pwd)

KVER=1.20.5+really1.20.2-1.1+deb12u1
DEST=${JOBTRIGGER_ENVTEST_DIR:-$HOME/.cache/jobtrigger/envtest/1.20.2}
BUILD=${JOBTRIGGER_ENVTEST_BUILD_DIR:-$HOME/.cache/jobtrigger/envtest-build}
SRC=$BUILD/kubernetes-1.20.2
# Source fixes the binaries must contain; written to $DEST/bin/.patches after a build (one id a line).
FIXES=(reflect2-1.0.2 kube-openapi-empty-string-not-null)
export DEBIAN_FRONTEND=noninteractive

log() { printf '[build-envtest] %s\n' "$*" >&2; }

missing_fixes() {  # prints the ids in FIXES that $DEST/bin/.patches does not list
  local f
  for f in "${FIXES[@]}"; do
    if [ ! -f "$DEST/bin/.patches" ] || ! grep -qxF "$f" "$DEST/bin/.patches"; then printf '%s ' "$f"; fi
  done
}

# Fix 4: vendored kube-openapi v0.0.0-20201113171705 decides "is this value null?" with
#   reflect.DeepEqual(reflect.Zero(reflect.TypeOf(data)), reflect.ValueOf(data))
# i.e. it compares the two reflect.Value headers (type, data pointer, flags), not the values. Up to Go 1.15
# reflect.Zero pointed at a fresh allocation, so this never matched a real value. Since Go 1.16 reflect.Zero
# of a small type points at the runtime's shared zeroVal buffer, and boxing "" into an interface (convTstring)
# points at the same buffer, so an empty string is reported as null. Upstream fix (kube-openapi#230, shipped
# in Kubernetes 1.21): check `data == nil` only. Idempotent; fails loudly if the file is not as expected.
patch_kube_openapi_type_nil_check() {  # $1 = kubernetes source tree
  local f=vendor/k8s.io/kube-openapi/pkg/validation/validate/type.go
  local fixdiff
  fixdiff=$(cat <<'EOF'
--- a/vendor/k8s.io/kube-openapi/pkg/validation/validate/type.go
+++ b/vendor/k8s.io/kube-openapi/pkg/validation/validate/type.go
@@ -132,7 +132,7 @@
 func (t *typeValidator) Validate(data interface{}) *Result {
 	result := new(Result)
 	result.Inc()
-	if data == nil || reflect.DeepEqual(reflect.Zero(reflect.TypeOf(data)), reflect.ValueOf(data)) {
+	if data == nil {
 		// nil or zero value for the passed structure require Type: null
 		if len(t.Type) > 0 && !t.Type.Contains(nullType) && !t.Nullable { // TODO: if a property is not required it also passes this
 			return errorHelp.sErr(errors.InvalidType(t.Path, t.In, strings.Join(t.Type, ","), nullType))
EOF
)
  if printf '%s\n' "$fixdiff" | patch -d "$1" -p1 -R --dry-run --silent >/dev/null 2>&1; then
    log "kube-openapi type.go nil-check fix already applied"; return 0
  fi
  log "patching $f: empty string is not null (Go >= 1.16 reflect.Zero fix)"
  printf '%s\n' "$fixdiff" | patch -d "$1" -p1 --forward --no-backup-if-mismatch --reject-file=- >&2 \
    || { log "ERROR: could not patch $1/$f"; exit 1; }
  if grep -F 'reflect.DeepEqual(reflect.Zero(reflect.TypeOf(data)), reflect.ValueOf(data))' "$1/$f" >/dev/null \
     || ! grep -qxF $'\tif data == nil {' "$1/$f"; then
    log "ERROR: $1/$f not patched as expected"; exit 1
  fi
}

if [ -n "${KUBEBUILDER_ASSETS:-}" ] && [ -x "$KUBEBUILDER_ASSETS/kube-apiserver" ] && [ -x "$KUBEBUILDER_ASSETS/etcd" ]; then
  log "using KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS"; exit 0
fi
mkdir -p "$DEST/bin"
# one build at a time (make, a test session and a demo may all start one); the second finds the first's result
exec 9>"$DEST/.script.lock"
flock 9
bash "$HACK/build-kwok.sh"
ln -sf "${JOBTRIGGER_KWOK_DIR:-$HOME/.cache/jobtrigger/kwok/${JOBTRIGGER_KWOK_VERSION:-0.8.0}}/kwok" "$DEST/bin/kwok"
if [ -x "$DEST/bin/kube-apiserver" ] && [ -x "$DEST/bin/kube-controller-manager" ] \
   && [ -x "$DEST/bin/kube-scheduler" ] && [ -x "$DEST/bin/etcd" ]; then
  missing=$(missing_fixes)
  if [ -z "$missing" ]; then log "binaries cached in $DEST/bin"; exit 0; fi
  log "cached binaries in $DEST/bin lack fix(es): $missing(see $DEST/bin/.patches); rebuilding"
fi

# Debian's Go 1.19, by its full path: the machine's newer Go (1.26) refuses the //go:linkname uses of the old
# vendored code (reflect2 and friends), and Go >= 1.21 rewrites the toolchain line of 1.20's go.mod.
GO119=/usr/lib/go-1.19/bin
need_apt=()
[ -x "$GO119/go" ] || need_apt+=(golang-1.19-go)
command -v etcd >/dev/null || need_apt+=(etcd-server)
command -v rsync >/dev/null || need_apt+=(rsync)
command -v make >/dev/null || need_apt+=(make)
command -v openssl >/dev/null || need_apt+=(openssl)
command -v dpkg-source >/dev/null || need_apt+=(dpkg-dev)
command -v patch >/dev/null || need_apt+=(patch)
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
  patch_kube_openapi_type_nil_check "$SRC.tmp"
  mv "$SRC.tmp" "$SRC"
else
  # a tree kept from an earlier run (JOBTRIGGER_KEEP_BUILD) may predate a fix
  test -f "$SRC/vendor/github.com/modern-go/reflect2/go_above_118.go" \
    || { log "ERROR: $SRC lacks the reflect2 1.0.2 swap; remove $SRC and run again"; exit 1; }
  patch_kube_openapi_type_nil_check "$SRC"
fi

cd "$SRC"
log "building kube-apiserver, kube-controller-manager, kube-scheduler with $("$GO119/go" version) (~8 min on 2 cores)"
t0=$(date +%s)
env PATH="$GO119:$PATH" GOROOT= GOCACHE="$BUILD/gocache" GOPROXY=off GOFLAGS= GOTOOLCHAIN=local CGO_ENABLED=0 \
  GOLDFLAGS="-s -w" make WHAT="cmd/kube-apiserver cmd/kube-controller-manager cmd/kube-scheduler" >"$BUILD/make.log" 2>&1 \
  || { tail -40 "$BUILD/make.log" >&2; exit 1; }
# Install atomically (copy to a temp name in the same folder, then rename): other sessions may be running the
# old binaries or starting them right now.
for b in kube-apiserver kube-controller-manager kube-scheduler; do
  cp -f "_output/bin/$b" "$DEST/bin/.$b.tmp.$$"
  mv -f "$DEST/bin/.$b.tmp.$$" "$DEST/bin/$b"
done
printf '%s\n' "${FIXES[@]}" > "$DEST/bin/.patches.tmp.$$"
mv -f "$DEST/bin/.patches.tmp.$$" "$DEST/bin/.patches"
log "built in $(( $(date +%s) - t0 ))s into $DEST/bin (fixes: ${FIXES[*]})"
if [ -z "${JOBTRIGGER_KEEP_BUILD:-}" ]; then rm -rf "$BUILD"; fi
ls -l "$DEST/bin" >&2
