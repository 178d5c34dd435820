#!/usr/bin/env bash
# Prepare a fresh machine: the Debian packages the tests use, and a virtualenv in .venv
# holding heatgen with its sandbox and test extras. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck, cloud-init and nftables check the boot payloads; PostgreSQL serves the sandbox's
# `--backend postgres` and `--telemetry` (Gnocchi's indexer needs it); debootstrap builds the
# Debian 13 root of the sandbox's pool hosts (`--pool`), ssh reaches them.
apt_packages=(shellcheck cloud-init nftables postgresql debootstrap openssh-client)
missing=()
command -v shellcheck >/dev/null 2>&1 || missing+=(shellcheck)
command -v cloud-init >/dev/null 2>&1 || missing+=(cloud-init)
command -v nft >/dev/null 2>&1 || [ -x /usr/sbin/nft ] || missing+=(nftables)
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || command -v initdb >/dev/null 2>&1 \
  || missing+=(postgresql)
command -v debootstrap >/dev/null 2>&1 || [ -x /usr/sbin/debootstrap ] || missing+=(debootstrap)
command -v ssh >/dev/null 2>&1 || missing+=(openssh-client)
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing ${missing[*]} from Debian" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "setup: please install ${apt_packages[*]} (apt-get install ${missing[*]}); the tests that need them are skipped" >&2
  fi
fi

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[sandbox,test,autoscale]'
