#!/usr/bin/env bash
# The main job on a fresh machine: set up, render an example and deploy it. With no cloud
# configured (no OS_CLOUD, no OS_AUTH_URL, no HEATGEN_CLOUD) it brings up the built-in sandbox
# and deploys there. Usage: bash scripts/demo.sh [SITE.yaml]
set -euo pipefail
cd "$(dirname "$0")/.."
site=${1:-examples/thesis.yaml}
bash scripts/setup.sh
heatgen=.venv/bin/heatgen

cloud_args=()
if [ -n "${HEATGEN_CLOUD:-}" ]; then
  cloud_args=(--os-cloud "$HEATGEN_CLOUD")
elif [ -z "${OS_CLOUD:-}" ] && [ -z "${OS_AUTH_URL:-}" ]; then
  echo "demo: no cloud configured; using the built-in sandbox" >&2
  "$heatgen" sandbox up
fi

"$heatgen" render "$site" -o out/
"$heatgen" deploy "$site" "${cloud_args[@]}"
"$heatgen" status "$site" "${cloud_args[@]}"
