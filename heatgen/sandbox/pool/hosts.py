"""Sandbox hosts: one per server Heat creates, each in namespaces of its own.

A host is a process tree in new network, mount, UTS and PID namespaces (``unshare``): its
first process mounts an overlay over the cached base root (its writes land in the host's
own upper directory), takes one end of a veth pair whose other end is on the sandbox bridge,
and then runs the root's init, which boots the host with cloud-init from a NoCloud seed.
Deleting the host kills that first process: the kernel ends every process of the PID
namespace at once (a VM vanishing), and with the last of them the mounts and the network
namespace (and so the veth) go too. The sandbox never makes named network namespaces, so
nothing of a host outlives its processes but its directory, which is removed with it.

Addresses: the bridge holds the first address of the private subnet and of the floating
subnet; hosts get their private address and any floating ones on ``eth0``, no default route.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from heatgen.errors import SandboxError

LAUNCH_TIMEOUT = 10.0
# What every host has on top of the base, from heatgen.sandbox.pool's root/: a systemctl for
# a root without systemd (over Debian's, which needs systemd running), the host's init, and a
# cloud-init config that reads the NoCloud seed and leaves network and disk alone.
STAND_INS = (
    ("usr/bin/systemctl", "systemctl", 0o755),
    ("usr/local/sbin/heatgen-sandbox-init", "heatgen-sandbox-init", 0o755),
    ("etc/cloud/cloud.cfg.d/90-heatgen-sandbox.cfg", "cloud.cfg", 0o644),
)


@dataclass(frozen=True)
class Network:
    """The sandbox's bridge and its two subnets (private and "floating")."""

    bridge: str
    private: ipaddress.IPv4Network
    floating: ipaddress.IPv4Network

    @property
    def gateway(self) -> str:
        """The host's own address on the private subnet (what the hosts can reach)."""
        return str(next(self.private.hosts()))

    @property
    def floating_gateway(self) -> str:
        return str(next(self.floating.hosts()))

    def as_dict(self) -> dict[str, str]:
        return {"bridge": self.bridge, "private": str(self.private),
                "floating": str(self.floating)}

    @classmethod
    def from_dict(cls, data: Mapping[str, str]) -> Network:
        return cls(data["bridge"], ipaddress.IPv4Network(data["private"]),
                   ipaddress.IPv4Network(data["floating"]))


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        raise SandboxError(f"ip {' '.join(args)} failed: {done.stderr.strip()}")
    return done


def _routed_networks() -> list[ipaddress.IPv4Network]:
    shown = _ip("-j", "route", "show", "table", "all", check=False)
    try:
        routes = json.loads(shown.stdout or "[]")
    except ValueError:
        return []
    found = []
    for route in routes:
        destination = route.get("dst", "")
        if destination in ("default", "") or ":" in destination:
            continue
        try:
            found.append(ipaddress.IPv4Network(destination, strict=False))
        except ValueError:
            continue
    return found


def choose_network(tag: str) -> Network:
    """A bridge name from the sandbox's tag and two /24s no route of this machine covers."""
    taken = _routed_networks()
    free = []
    for third in range(0, 250):
        candidate = ipaddress.IPv4Network(f"10.77.{third}.0/24")
        floating = ipaddress.IPv4Network(f"10.78.{third}.0/24")
        if not any(candidate.overlaps(n) or floating.overlaps(n) for n in taken):
            free.append((candidate, floating))
            break
    if not free:
        raise SandboxError("no free 10.77.x.0/24 for the sandbox's pool network")
    private, floating = free[0]
    return Network(f"hgb{tag}", private, floating)


def bridge_up(network: Network) -> None:
    """Create the bridge with the host's addresses on both subnets (idempotent)."""
    if _ip("link", "show", network.bridge, check=False).returncode != 0:
        _ip("link", "add", network.bridge, "type", "bridge")
    for address, subnet in ((network.gateway, network.private),
                            (network.floating_gateway, network.floating)):
        cidr = f"{address}/{subnet.prefixlen}"
        if cidr not in _ip("-o", "addr", "show", "dev", network.bridge).stdout:
            _ip("addr", "add", cidr, "dev", network.bridge)
    _ip("link", "set", network.bridge, "up")


def bridge_down(network: Network) -> bool:
    """Remove the bridge if it exists; True if it did."""
    if _ip("link", "show", network.bridge, check=False).returncode != 0:
        return False
    _ip("link", "del", network.bridge)
    return True


@dataclass(frozen=True)
class HostSpec:
    """What a host boots as: its server's id and name, addresses, user data and keys."""

    server_id: str
    name: str
    address: str
    user_data: str
    floating: tuple[str, ...] = ()
    public_keys: tuple[str, ...] = ()
    peers: Mapping[str, str] = field(default_factory=dict)  # other names for /etc/hosts


@dataclass(frozen=True)
class HostState:
    server_id: str
    name: str
    address: str
    floating: tuple[str, ...]
    pid: int | None
    alive: bool
    booted: str | None  # "ok in 6.1 s", "failed (exit 1)" or None while booting
    rss_bytes: int | None


def hostname_of(name: str) -> str:
    """A valid host name (RFC 1123 label) for a server name."""
    label = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")[:63].strip("-")
    return label or "host"


def _launcher() -> str:
    return str(resources.files("heatgen.sandbox.pool").joinpath("scripts", "launch-host"))


def _start_time(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


class Hosts:
    """The hosts of one sandbox, kept under ``directory`` (one subdirectory each)."""

    def __init__(self, directory: Path, network: Network, lower: Path) -> None:
        self.directory = directory
        self.network = network
        self.lower = lower

    def _dir(self, server_id: str) -> Path:
        return self.directory / server_id

    def _veths(self, index: int) -> tuple[str, str]:
        tag = self.network.bridge.removeprefix("hgb")
        return f"hg{tag}h{index}", f"hg{tag}p{index}"

    def _next_index(self) -> int:
        used = set()
        for entry in self.directory.glob("*/host.json"):
            try:
                used.add(int(json.loads(entry.read_text())["index"]))
            except (OSError, ValueError, KeyError):
                continue
        index = 0
        while index in used:
            index += 1
        return index

    def start(self, spec: HostSpec) -> int:
        """Boot a host for ``spec``; returns the PID that holds it (its ``unshare``)."""
        home = self._dir(spec.server_id)
        if (home / "host.json").exists() and self.alive(spec.server_id):
            return self._pid(spec.server_id) or 0
        shutil.rmtree(home, ignore_errors=True)
        upper, work, merged = home / "upper", home / "work", home / "merged"
        for directory in (upper, work, merged):
            directory.mkdir(parents=True)
        self._seed(upper, spec)
        index = self._next_index()
        outside, inside = self._veths(index)
        _ip("link", "del", outside, check=False)
        _ip("link", "add", outside, "type", "veth", "peer", "name", inside)
        _ip("link", "set", outside, "master", self.network.bridge, "up")
        prefix = self.network.private.prefixlen
        env = {
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "HEATGEN_HOST_LOWER": str(self.lower), "HEATGEN_HOST_UPPER": str(upper),
            "HEATGEN_HOST_WORK": str(work), "HEATGEN_HOST_MERGED": str(merged),
            "HEATGEN_HOST_NAME": hostname_of(spec.name), "HEATGEN_HOST_VETH": inside,
            "HEATGEN_HOST_ADDRESS": f"{spec.address}/{prefix}",
            "HEATGEN_HOST_FLOATING": " ".join(
                f"{a}/{self.network.floating.prefixlen}" for a in spec.floating),
        }
        log = open(home / "console.log", "ab")
        try:
            process = subprocess.Popen(
                ["unshare", "--net", "--mount", "--uts", "--pid", "--fork", "--kill-child",
                 "--propagation", "private", "bash", _launcher()],
                stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT, env=env,
                start_new_session=True, close_fds=True,
            )
        finally:
            log.close()
        (home / "host.json").write_text(json.dumps({
            "server_id": spec.server_id, "name": spec.name, "address": spec.address,
            "floating": list(spec.floating), "index": index, "pid": process.pid,
            "start_time": _start_time(process.pid), "started_at": time.time(),
        }) + "\n")
        try:
            self._hand_over(process, inside)
        except BaseException:
            self.stop(spec.server_id)
            raise
        return process.pid

    def _hand_over(self, process: subprocess.Popen[bytes], inside: str) -> None:
        """Move the veth into the host's network namespace once ``unshare`` made it."""
        ours = os.readlink("/proc/self/ns/net")
        deadline = time.monotonic() + LAUNCH_TIMEOUT
        while True:
            try:
                theirs = os.readlink(f"/proc/{process.pid}/ns/net")
            except OSError:
                theirs = ours
            if theirs != ours:
                break
            if process.poll() is not None or time.monotonic() > deadline:
                raise SandboxError(f"the sandbox host (pid {process.pid}) did not start")
            time.sleep(0.01)
        _ip("link", "set", inside, "netns", str(process.pid))
        assert process.stdin is not None
        process.stdin.write(b"go\n")
        process.stdin.close()

    def _seed(self, upper: Path, spec: HostSpec) -> None:
        """The NoCloud seed and the files a cloud's image would hold for this server."""
        for path, name, mode in STAND_INS:
            target = upper / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(
                resources.files("heatgen.sandbox.pool").joinpath("root", name).read_bytes())
            target.chmod(mode)
        seed = upper / "var/lib/cloud/seed/nocloud"
        seed.mkdir(parents=True)
        meta = {"instance-id": spec.server_id, "local-hostname": hostname_of(spec.name)}
        lines = [f"{key}: {json.dumps(value)}" for key, value in meta.items()]
        if spec.public_keys:
            lines.append("public-keys:")
            lines += [f"  - {json.dumps(key)}" for key in spec.public_keys]
        (seed / "meta-data").write_text("\n".join(lines) + "\n")
        (seed / "user-data").write_text(spec.user_data)
        os.chmod(seed / "user-data", 0o600)
        etc = upper / "etc"
        etc.mkdir(exist_ok=True)
        names = {hostname_of(spec.name): spec.address, **spec.peers}
        hosts = ["127.0.0.1 localhost", "::1 localhost ip6-localhost ip6-loopback"]
        hosts += [f"{address} {name}" for name, address in names.items()]
        (etc / "hosts").write_text("\n".join(hosts) + "\n")
        (etc / "hostname").write_text(hostname_of(spec.name) + "\n")

    def _record(self, server_id: str) -> dict[str, object] | None:
        try:
            data = json.loads((self._dir(server_id) / "host.json").read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def _pid(self, server_id: str) -> int | None:
        record = self._record(server_id)
        if record is None:
            return None
        pid = record.get("pid")
        if not isinstance(pid, int):
            return None
        if _start_time(pid) != record.get("start_time"):
            return None  # gone, or the PID belongs to another process now
        return pid

    def alive(self, server_id: str) -> bool:
        pid = self._pid(server_id)
        if pid is None:
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"

    def init_pid(self, server_id: str) -> int | None:
        """The host's first process inside its namespaces (``unshare``'s child)."""
        pid = self._pid(server_id)
        if pid is None:
            return None
        try:
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:
            return None
        return int(children[0]) if children else None

    def add_floating(self, server_id: str, address: str) -> None:
        """Give a running host one more (floating) address."""
        init = self.init_pid(server_id)
        if init is None:
            raise SandboxError(f"sandbox host {server_id} is not running")
        record = self._record(server_id) or {}
        floating = [str(a) for a in record.get("floating") or []]  # type: ignore[attr-defined]
        if address in floating:
            return
        cidr = f"{address}/{self.network.floating.prefixlen}"
        done = subprocess.run(["nsenter", "-t", str(init), "-n", "ip", "addr", "add", cidr,
                               "dev", "eth0"], capture_output=True, text=True, check=False)
        if done.returncode != 0 and "already assigned" not in done.stderr \
                and "File exists" not in done.stderr:
            raise SandboxError(f"cannot add {address} to host {server_id}: {done.stderr}")
        record["floating"] = [*floating, address]
        (self._dir(server_id) / "host.json").write_text(json.dumps(record) + "\n")

    def stop(self, server_id: str) -> bool:
        """Delete the host: kill it at once, then remove its directory. True if it ran."""
        pid = self._pid(server_id)
        ran = False
        if pid is not None:
            ran = True
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            except PermissionError:
                os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 10
            while _start_time(pid) is not None and time.monotonic() < deadline:
                try:
                    if os.waitpid(pid, os.WNOHANG)[0] == pid:
                        break
                except ChildProcessError:
                    pass
                time.sleep(0.02)
        record = self._record(server_id) or {}
        index = record.get("index")
        if isinstance(index, int):
            outside, _ = self._veths(index)
            _ip("link", "del", outside, check=False)
        shutil.rmtree(self._dir(server_id), ignore_errors=True)
        return ran

    def server_ids(self) -> list[str]:
        return sorted(p.parent.name for p in self.directory.glob("*/host.json"))

    def stop_all(self) -> list[str]:
        return [server_id for server_id in self.server_ids() if self.stop(server_id)]

    def state(self, server_id: str) -> HostState | None:
        record = self._record(server_id)
        if record is None:
            return None
        init = self.init_pid(server_id)
        return HostState(
            server_id=server_id, name=str(record.get("name", "")),
            address=str(record.get("address", "")),
            floating=tuple(record.get("floating") or ()),  # type: ignore[arg-type]
            pid=self._pid(server_id), alive=self.alive(server_id),
            booted=self._booted(server_id), rss_bytes=_namespace_rss(init) if init else None,
        )

    def _booted(self, server_id: str) -> str | None:
        marker = self._dir(server_id) / "upper/run/heatgen-sandbox-booted"
        init = self.init_pid(server_id)
        text = None
        if init is not None:
            try:
                text = Path(f"/proc/{init}/root/run/heatgen-sandbox-booted").read_text()
            except OSError:
                text = None
        if text is None and marker.exists():
            text = marker.read_text()
        if not text:
            return None
        rc, started, ended = (text.split() + ["0", "0", "0"])[:3]
        seconds = float(ended) - float(started)
        return f"ok in {seconds:.1f} s" if rc == "0" else f"failed (exit {rc})"

    def run(self, server_id: str, command: Sequence[str], *, input_text: str | None = None,
            timeout: float = 60.0, tty: bool = False) -> subprocess.CompletedProcess[str]:
        """Run ``command`` inside the host (all its namespaces, its root)."""
        init = self.init_pid(server_id)
        if init is None:
            raise SandboxError(f"sandbox host {server_id} is not running")
        argv = ["nsenter", "-t", str(init), "-a", "-r", "-w", *command]
        env = host_environment(os.environ.get("TERM", "dumb") if tty else "dumb")
        if tty:
            return subprocess.run(argv, check=False, text=True, env=env)
        return subprocess.run(argv, input=input_text, capture_output=True, text=True,
                              timeout=timeout, check=False, env=env)


def host_environment(term: str) -> dict[str, str]:
    """The environment of a root login on a host: nothing of the caller's (its OpenStack
    credentials, its ``CONDOR_CONFIG``) reaches a host, as nothing would reach a cloud's VM."""
    return {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": "/root", "USER": "root", "LOGNAME": "root", "SHELL": "/bin/bash",
            "LANG": "C.UTF-8", "TERM": term}


def _namespace_rss(init: int) -> int | None:
    """Resident memory of every process in the PID namespace of ``init``."""
    try:
        target = os.readlink(f"/proc/{init}/ns/pid")
    except OSError:
        return None
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.readlink(entry / "ns/pid") != target:
                continue
            for line in (entry / "status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except (OSError, ValueError):
            continue
    return total


def free_addresses(subnet: ipaddress.IPv4Network, taken: Iterable[str]) -> Iterable[str]:
    """Addresses of ``subnet`` from .10 on that nobody holds."""
    used = set(taken)
    for address in subnet.hosts():
        if int(address) - int(subnet.network_address) < 10:
            continue
        if str(address) not in used:
            yield str(address)
