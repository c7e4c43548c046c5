#!/usr/bin/env bash
# Put Debian's `prometheus` and `promtool` (2.42) into DEST (default .tools/bin, git-ignored) for the tests:
# promtool checks and unit-tests the chart's alert rules (tests/unit/test_alerts.py), prometheus scrapes a real
# controller in tests/integration/test_prometheus.py.
#
# The .deb is fetched with `apt-get download` and unpacked with `dpkg-deb -x`: nothing is installed system-wide,
# no maintainer script runs, so no prometheus service is started and no port is bound. Idempotent: nothing is
# fetched when both binaries are already in DEST.
#
#   bash hack/get-prometheus.sh [DEST]
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DEST="${1:-$ROOT/.tools/bin}"
if [[ -x "$DEST/prometheus" && -x "$DEST/promtool" ]]; then
  exit 0
fi
mkdir -p "$DEST"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
if ! apt-get download prometheus >/dev/null 2>&1; then
  apt-get update -qq >/dev/null
  apt-get download prometheus >/dev/null
fi
dpkg-deb -x prometheus_*.deb root
install -m 0755 root/usr/bin/prometheus root/usr/bin/promtool "$DEST/"
"$DEST/promtool" --version 2>&1 | head -1
