#!/usr/bin/env bash
# build-image.sh — build the controller image offline and smoke-test it (no container registry is reachable).
#
# A registry base image cannot be pulled here, so the base is made with debootstrap (Debian bookworm minbase with
# python3, the same Python 3.11 as python:3.11-slim-bookworm) and the Python dependencies come from a wheelhouse
# downloaded on the host (PyPI). buildah builds the repository's Dockerfile with --isolation=chroot (the default
# OCI isolation does not work in this sandbox), then runs `jobtrigger --help` and `jobtrigger crd` in the image.
#
#   hack/build-image.sh [tag]       (default localhost/jobtrigger:dev; writes dist/jobtrigger-image.tar)
set -euo pipefail
cd "$(dirname "$0")/.."
TAG=${1:-localhost/jobtrigger:dev}
CACHE=${JOBTRIGGER_IMAGE_CACHE:-$HOME/.cache/jobtrigger/image}
BASE=localhost/jobtrigger-base:bookworm
PY=${PYTHON:-.venv/bin/python}
log() { printf '[build-image] %s\n' "$*" >&2; }
export DEBIAN_FRONTEND=noninteractive

if ! command -v buildah >/dev/null || ! command -v debootstrap >/dev/null; then
  log "apt-get install buildah debootstrap"
  apt-get update -q >/dev/null && apt-get install -y -q buildah debootstrap >/dev/null
fi
mkdir -p "$CACHE" dist

if ! buildah images -q "$BASE" 2>/dev/null | grep -q .; then
  if [ ! -f "$CACHE/rootfs.tar" ]; then
    log "debootstrap bookworm minbase + python3 (about a minute)"
    rm -rf "$CACHE/rootfs"
    debootstrap --variant=minbase --include=python3,python3-venv bookworm "$CACHE/rootfs" \
      http://deb.debian.org/debian >"$CACHE/debootstrap.log" 2>&1 || { tail -20 "$CACHE/debootstrap.log" >&2; exit 1; }
    rm -rf "$CACHE/rootfs/var/cache/apt/archives/"*.deb
    tar -C "$CACHE/rootfs" -cf "$CACHE/rootfs.tar" .
    rm -rf "$CACHE/rootfs"
  fi
  c=$(buildah from scratch)
  buildah add "$c" "$CACHE/rootfs.tar" / >/dev/null
  buildah commit -q "$c" "$BASE" >/dev/null
  buildah rm "$c" >/dev/null
fi

log "wheelhouse for cp311 manylinux x86_64 (host-side download: the build needs no network)"
rm -f wheelhouse/*.whl
"$PY" -m pip wheel -q --no-deps -w wheelhouse . >/dev/null
"$PY" -m pip download -q -d wheelhouse --only-binary=:all: --python-version 3.11 \
  --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
  -r <("$PY" -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml","rb"))["project"]["dependencies"]))') \
  setuptools wheel >/dev/null

log "buildah bud $TAG"
buildah bud -q --isolation=chroot --build-arg PYTHON_IMAGE="$BASE" --build-arg PIP_ARGS=--no-index \
  -t "$TAG" -f Dockerfile . >/dev/null

log "smoke test in the image"
c=$(buildah from "$TAG")
trap 'buildah rm "$c" >/dev/null 2>&1 || true' EXIT
buildah run --isolation=chroot "$c" -- jobtrigger --help >/dev/null
buildah run --isolation=chroot "$c" -- jobtrigger crd | cmp - crds/jobtrigger.dev_jobtriggers.yaml
user=$(buildah inspect --format '{{.OCIv1.Config.User}}' "$TAG")
[ "$user" = "65532:65532" ] || { echo "image user is '$user', want 65532:65532" >&2; exit 1; }
buildah push -q "$TAG" "oci-archive:dist/jobtrigger-image.tar:$TAG" >/dev/null
log "ok: $TAG ($(du -h dist/jobtrigger-image.tar | cut -f1) oci-archive in dist/), runs as $user"
