#!/usr/bin/env bash
# build-kwok.sh — build KWOK (sigs.k8s.io/kwok, "Kubernetes WithOut Kubelet") from the Go module proxy.
#
# KWOK plays the kubelet of fake Nodes: with the Stage objects in jobtrigger/envtest_stages/kwok.yaml it moves pods
# that kube-scheduler placed on its Node through Running/Ready and Job pods to Succeeded/Failed. The same binary is
# used against every Kubernetes version the tests run (hack/build-k8s.sh and hack/build-envtest.sh call this script
# and link the result into their bin/ folder). It needs the machine's Go (>= 1.26 for kwok 0.8.0).
#
# Result: $JOBTRIGGER_KWOK_DIR/kwok (default ~/.cache/jobtrigger/kwok/$KWOK_VERSION/kwok) and a .stamp next to it.
# A second run finds them and builds nothing.
set -euo pipefail

KWOK_VERSION=${JOBTRIGGER_KWOK_VERSION:-0.8.0}
DEST=${JOBTRIGGER_KWOK_DIR:-$HOME/.cache/jobtrigger/kwok/$KWOK_VERSION}
BUILD=${JOBTRIGGER_KWOK_BUILD_DIR:-$HOME/.cache/jobtrigger/kwok-build}

log() { printf '[build-kwok] %s\n' "$*" >&2; }

mkdir -p "$DEST"
exec 9>"$DEST/.script.lock"  # one build at a time
flock 9
if [ -x "$DEST/kwok" ] && [ "$(cat "$DEST/.stamp" 2>/dev/null)" = "kwok=$KWOK_VERSION" ]; then
  log "kwok cached in $DEST"; exit 0
fi
GO=$(command -v go || true)
[ -n "$GO" ] || { [ -x /usr/local/go/bin/go ] && GO=/usr/local/go/bin/go; }
[ -n "$GO" ] || { log "ERROR: no go on PATH (kwok $KWOK_VERSION needs Go >= 1.26)"; exit 1; }

mkdir -p "$DEST" "$BUILD"
t0=$(date +%s)
log "building kwok v$KWOK_VERSION with $("$GO" version)"
# `go install pkg@version` ignores any go.mod around it; GOFLAGS must not carry -mod.
# JOBTRIGGER_KWOK_GOCACHE: build-k8s.sh passes its warm Go build cache (kwok shares many dependencies with it)
env GOFLAGS= GOTOOLCHAIN=local CGO_ENABLED=0 GOCACHE="${JOBTRIGGER_KWOK_GOCACHE:-$BUILD/gocache}" GOBIN="$BUILD/out" \
  "$GO" install -trimpath -ldflags "-s -w" \
  "sigs.k8s.io/kwok/cmd/kwok@v$KWOK_VERSION" >"$BUILD/kwok.log" 2>&1 || { tail -40 "$BUILD/kwok.log" >&2; exit 1; }
cp -f "$BUILD/out/kwok" "$DEST/.kwok.tmp.$$" && mv -f "$DEST/.kwok.tmp.$$" "$DEST/kwok"
echo "kwok=$KWOK_VERSION" > "$DEST/.stamp"
log "built in $(( $(date +%s) - t0 ))s: $DEST/kwok"
if [ -z "${JOBTRIGGER_KEEP_BUILD:-}" ]; then rm -rf "$BUILD"; fi
