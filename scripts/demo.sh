#!/usr/bin/env bash
# The main job on a fresh machine: set up, render an example and deploy it. With no cloud
# configured (no OS_CLOUD, no OS_AUTH_URL, no HEATGEN_CLOUD) it brings up the built-in sandbox
# with its pool (every server boots as a host with real HTCondor daemons) and deploys
# examples/debian13.yaml there, ending with the pool as HTCondor sees it; where network
# namespaces cannot be made (not root, no debootstrap) it uses the plain sandbox and
# examples/thesis.yaml, and says why. Usage: bash scripts/demo.sh [SITE.yaml]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
heatgen=.venv/bin/heatgen
site=${1:-}

cloud_args=()
pool=0
if [ -n "${HEATGEN_CLOUD:-}" ]; then
  cloud_args=(--os-cloud "$HEATGEN_CLOUD")
elif [ -z "${OS_CLOUD:-}" ] && [ -z "${OS_AUTH_URL:-}" ]; then
  why=""
  if [ "$(id -u)" != 0 ]; then
    why="not root"
  elif ! command -v debootstrap >/dev/null 2>&1 && [ ! -x /usr/sbin/debootstrap ]; then
    why="debootstrap is not installed"
  elif ! unshare --net --mount --uts --pid --fork true 2>/dev/null; then
    why="this machine cannot make network, mount and PID namespaces"
  fi
  if [ -z "${why}" ]; then
    echo "demo: no cloud configured; using the built-in sandbox with its pool" >&2
    "$heatgen" sandbox up --pool
    pool=1
    site=${site:-examples/debian13.yaml}
  else
    echo "demo: no cloud configured; using the plain built-in sandbox (no pool: ${why})" >&2
    "$heatgen" sandbox up --no-pool
  fi
fi
site=${site:-examples/thesis.yaml}

"$heatgen" render "$site" -o out/
"$heatgen" deploy "$site" "${cloud_args[@]}"
"$heatgen" status "$site" "${cloud_args[@]}"
if [ "${pool}" = 1 ]; then
  "$heatgen" pool "$site"
fi
