#!/usr/bin/env bash
# The whole test suite on a fresh machine: set up, lint and type-check, then run pytest with
# the sandbox integration tests (plain `pytest` runs only the fast lane).
#
# Without arguments (CI) three lanes run side by side, every test of each exactly as
# `pytest -m ""` would run it: the sandbox lane (`-m "sandbox and not pool"`: the session's
# Keystone + Heat, mostly waiting on Heat, then the tests that start a sandbox of their own,
# PostgreSQL's and the autoscaling loop's with Gnocchi + Aodh) in the foreground; the pool lane
# (`-m pool`: real HTCondor daemons in the pool sandbox, mostly waiting on boots and jobs, the
# longest) and ruff, mypy and the fast lane (CPU only, no sandbox) in the background, their
# output shown when they end. The status is non-zero if any lane failed. With arguments:
# ruff, mypy, then one `pytest -m "" ARGS`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

if [ "$#" -gt 0 ]; then
  .venv/bin/ruff check heatgen tests bench
  .venv/bin/mypy
  exec .venv/bin/python -m pytest -m "" "$@"  # every lane: unit, sandbox, pool
fi

# A background job of a script starts with SIGINT ignored, and Python then never turns SIGINT
# into KeyboardInterrupt: the pool lane restores it, so that an interrupted run still stops
# its sandbox with every host, mount and bridge (pytest's teardown). Both background lanes
# are sessions of their own (setsid): a Ctrl-C reaches them once, from stop_lanes, never a
# second time in the middle of that teardown.
pytest_lane=(.venv/bin/python -c
  'import signal, sys, pytest; signal.signal(signal.SIGINT, signal.default_int_handler); sys.exit(pytest.main(sys.argv[1:]))')
logs=$(mktemp -d "${TMPDIR:-/tmp}/heatgen-test-lanes.XXXXXX")

# The background lanes keep out of .pytest_cache, which the sandbox lane writes, and run
# niced: the sandbox lane is the longest, and its timings the tightest (signals at moments of
# a deploy).
setsid nice -n 10 bash -c '.venv/bin/ruff check heatgen tests bench && .venv/bin/mypy && exec "$@"' \
  fast-lane "${pytest_lane[@]}" -p no:cacheprovider >"$logs/fast.log" 2>&1 &
fast_pid=$!
setsid nice -n 5 "${pytest_lane[@]}" -p no:cacheprovider -m pool >"$logs/pool.log" 2>&1 &
pool_pid=$!

stop_lanes() {
  # Only what this script started, by PID: the pool lane is interrupted once (its teardown
  # stops the pool sandbox), the fast lane's process group (ruff, mypy or pytest; no
  # sandbox) terminated.
  if kill -0 "$pool_pid" 2>/dev/null; then
    kill -INT "$pool_pid" 2>/dev/null || true
  fi
  if kill -0 "$fast_pid" 2>/dev/null; then
    kill -TERM -- "-$fast_pid" 2>/dev/null || true
  fi
  wait "$pool_pid" "$fast_pid" 2>/dev/null || true
  show_lanes
}
show_lanes() {
  echo
  echo "===== pool lane (pytest -m pool) ====="
  cat "$logs/pool.log"
  echo
  echo "===== ruff, mypy, fast lane (pytest) ====="
  cat "$logs/fast.log"
  rm -rf "$logs"
}
trap stop_lanes EXIT
trap 'exit 130' INT TERM

sandbox_status=0
.venv/bin/python -m pytest -m "sandbox and not pool" || sandbox_status=$?
pool_status=0
wait "$pool_pid" || pool_status=$?
fast_status=0
wait "$fast_pid" || fast_status=$?
trap - EXIT
show_lanes
echo
echo "lanes: sandbox exit $sandbox_status, pool exit $pool_status, ruff + mypy + fast exit" \
     "$fast_status"
[ "$sandbox_status" = 0 ] && [ "$pool_status" = 0 ] && [ "$fast_status" = 0 ]
