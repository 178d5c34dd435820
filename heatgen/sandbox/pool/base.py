"""The Debian 13 root every sandbox host boots from: built once with debootstrap, then cached.

The root holds Debian's own ``condor`` package (HTCondor 23.9), cloud-init, sshd and the few
tools the boot payloads call, as Debian ships them; what a host needs on top (a ``systemctl``
for a root without systemd, its init, a cloud-init config for the NoCloud seed) is written into
each host's own layer (:mod:`heatgen.sandbox.pool.hosts`). It is built from the Debian mirror
apt is configured with, in a directory keyed by its recipe, and reused by every sandbox on the
machine until the recipe changes.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from heatgen.errors import SandboxError

SUITE = "trixie"  # Debian 13
PACKAGES = (
    "condor", "cloud-init", "openssh-server", "procps", "nftables", "curl", "iproute2",
    "ca-certificates",
)
RECIPE_VERSION = 1
RECIPE_FILE = "heatgen-base.json"
Progress = Callable[[str], None]


def recipe() -> dict[str, object]:
    """What decides the root's content; its hash names the cache entry."""
    return {
        "version": RECIPE_VERSION,
        "suite": SUITE,
        "variant": "minbase",
        "packages": list(PACKAGES),
    }


def recipe_key() -> str:
    text = json.dumps(recipe(), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def cache_dir(environ: dict[str, str] | None = None) -> Path:
    """``$HEATGEN_POOL_BASE_DIR``, else ``$XDG_CACHE_HOME/heatgen/pool-base``."""
    environ = dict(os.environ) if environ is None else environ
    explicit = environ.get("HEATGEN_POOL_BASE_DIR", "").strip()
    if explicit:
        return Path(explicit)
    cache_home = environ.get("XDG_CACHE_HOME", "").strip()
    base = Path(cache_home) if cache_home else Path.home() / ".cache"
    return base / "heatgen" / "pool-base"


@dataclass(frozen=True)
class Base:
    """A built root: ``path`` is the lower directory of every host's overlay."""

    path: Path
    key: str
    built_seconds: float | None = None  # set when this call built it
    size_bytes: int | None = None


def debian_mirror(sources: Path = Path("/etc/apt")) -> str:
    """The Debian archive apt is configured with (never a hard-coded host)."""
    found: list[str] = []
    for path in sorted((sources / "sources.list.d").glob("*.sources")):
        for stanza in path.read_text(encoding="utf-8", errors="replace").split("\n\n"):
            fields = dict(
                (key.strip().lower(), value.strip())
                for key, _, value in (line.partition(":") for line in stanza.splitlines()
                                      if line and not line.startswith((" ", "#")))
            )
            suites = fields.get("suites", "").split()
            if "deb" in fields.get("types", "").split() and any(
                    not s.endswith(("-security", "-updates", "-backports")) for s in suites):
                found += fields.get("uris", "").split()
    lists = [sources / "sources.list", *sorted((sources / "sources.list.d").glob("*.list"))]
    for path in lists:
        if not path.is_file():
            continue
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            match = re.match(r"^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)", line.strip())
            if match and not match.group(2).endswith(("-security", "-updates", "-backports")):
                found.append(match.group(1))
    for uri in found:
        if "debian" in uri and "security" not in uri:
            return uri.rstrip("/")
    raise SandboxError(
        "no Debian archive is configured in /etc/apt (sources.list or sources.list.d): the "
        "pool's Debian 13 base is built from the mirror apt uses"
    )


def _directory_size(path: Path) -> int:
    total = 0
    for entry in path.rglob("*"):
        try:
            if entry.is_file() and not entry.is_symlink():
                total += entry.stat().st_size
        except OSError:
            continue
    return total


def find(cache: Path | None = None) -> Base | None:
    """The cached root for the current recipe, if it was built."""
    key = recipe_key()
    entry = (cache or cache_dir()) / key
    if (entry / RECIPE_FILE).is_file() and (entry / "root" / "usr/sbin/condor_master").exists():
        return Base(entry / "root", key)
    return None


def _run(argv: list[str], what: str, log: Path, timeout: float) -> None:
    with open(log, "ab") as out:
        out.write(f"\n$ {' '.join(argv)}\n".encode())
        out.flush()
        try:
            done = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=out,
                                  stderr=subprocess.STDOUT, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            raise SandboxError(f"{what} did not finish within {timeout:.0f} s; see {log}"
                               ) from None
    if done.returncode != 0:
        raise SandboxError(f"{what} failed (exit {done.returncode}); see {log}")


def ensure(cache: Path | None = None, progress: Progress | None = None,
           mirror: str | None = None) -> Base:
    """The cached root, built first if needed (root only; about a minute and 0.4 GB)."""
    found = find(cache)
    if found is not None:
        return found
    if os.geteuid() != 0:
        raise SandboxError("building the pool's Debian 13 base needs root (debootstrap, chroot)")
    if shutil.which("debootstrap") is None:
        raise SandboxError(
            "building the pool's base needs debootstrap: apt-get install debootstrap")
    key = recipe_key()
    directory = cache or cache_dir()
    directory.mkdir(parents=True, exist_ok=True)
    building = directory / f".{key}.build-{os.getpid()}"
    shutil.rmtree(building, ignore_errors=True)
    root = building / "root"
    root.mkdir(parents=True)
    log = directory / f"{key}.build.log"
    log.write_text("", encoding="utf-8")
    source = mirror or debian_mirror()
    say = progress or (lambda message: None)
    started = time.monotonic()
    try:
        say(f"building the pool's Debian 13 base (first use) from {source}; log in {log}")
        _run(["debootstrap", "--variant=minbase", "--include=ca-certificates", SUITE, str(root),
              source], "debootstrap", log, 900)
        say(f"debootstrap done in {time.monotonic() - started:.0f} s; installing "
            f"{', '.join(PACKAGES)}")
        policy = root / "usr/sbin/policy-rc.d"
        policy.write_text("#!/bin/sh\n# no service starts while the base is built\nexit 101\n")
        policy.chmod(0o755)
        # In a mount namespace of its own: /proc for the install goes away with it.
        install = (
            f"mount -t proc proc {root}/proc && "
            f"chroot {root} /usr/bin/env DEBIAN_FRONTEND=noninteractive "
            f"apt-get install -y -q --no-install-recommends {' '.join(PACKAGES)} && "
            f"chroot {root} apt-get clean"
        )
        _run(["unshare", "--mount", "--propagation", "private", "--fork", "sh", "-c", install],
             "installing HTCondor and cloud-init into the base", log, 900)
        (root / "etc/resolv.conf").unlink(missing_ok=True)
        (root / "etc/resolv.conf").write_text("# sandbox hosts have no DNS\n")
        for unused in ("var/cache/apt/archives", "usr/share/doc", "usr/share/man"):
            shutil.rmtree(root / unused, ignore_errors=True)
        elapsed = time.monotonic() - started
        size = _directory_size(root)
        (building / RECIPE_FILE).write_text(
            json.dumps({**recipe(), "mirror": source, "built_seconds": round(elapsed, 1),
                        "size_bytes": size}, indent=2) + "\n", encoding="utf-8")
        final = directory / key
        shutil.rmtree(final, ignore_errors=True)
        building.rename(final)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    say(f"base built in {elapsed:.0f} s ({size / 2**20:.0f} MiB), cached in {final}")
    return Base(final / "root", key, elapsed, size)
