"""The pool of one sandbox: its network (chosen once, kept in the state dir), its hosts and
the base root they boot from; what ``up``, ``down`` and ``status`` do with them."""

from __future__ import annotations

import json
from collections.abc import Callable

from heatgen.errors import SandboxError
from heatgen.sandbox.pool import base
from heatgen.sandbox.pool.hosts import Hosts, HostState, Network, bridge_down, bridge_up
from heatgen.sandbox.pool.hosts import choose_network as _choose
from heatgen.sandbox.settings import SandboxConfig

NETWORK_FILE = "network.json"
BASE_FILE = "base.json"
Progress = Callable[[str], None]


def network_of(config: SandboxConfig) -> Network | None:
    try:
        return Network.from_dict(json.loads((config.pool_dir / NETWORK_FILE).read_text()))
    except (OSError, ValueError, KeyError):
        return None


def hosts_of(config: SandboxConfig) -> Hosts:
    network = network_of(config)
    if network is None:
        raise SandboxError(f"the sandbox in {config.state_dir} has no pool network")
    try:
        lower = json.loads((config.pool_dir / BASE_FILE).read_text())["path"]
    except (OSError, ValueError, KeyError):
        raise SandboxError(f"the sandbox in {config.state_dir} has no pool base") from None
    from pathlib import Path

    return Hosts(config.pool_dir / "hosts", network, Path(lower))


def prepare(config: SandboxConfig, progress: Progress | None = None) -> Network:
    """Before Heat starts: the base root (built on first use), the network, the bridge."""
    import os

    if os.geteuid() != 0:
        raise SandboxError("`heatgen sandbox up --pool` needs root: its hosts are network, "
                           "mount and PID namespaces")
    found = base.ensure(progress=progress)
    config.pool_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    (config.pool_dir / BASE_FILE).write_text(json.dumps({"path": str(found.path),
                                                         "key": found.key}) + "\n")
    network = network_of(config) or _choose(config.tag)
    (config.pool_dir / NETWORK_FILE).write_text(json.dumps(network.as_dict()) + "\n")
    bridge_up(network)
    return network


def teardown(config: SandboxConfig) -> list[str]:
    """Kill every host, remove the bridge; notes of what was done."""
    notes: list[str] = []
    network = network_of(config)
    if network is None:
        return notes
    try:
        stopped = hosts_of(config).stop_all()
    except SandboxError:
        stopped = []
    if stopped:
        notes.append(f"stopped {len(stopped)} pool host{'s' if len(stopped) != 1 else ''}")
    if bridge_down(network):
        notes.append(f"removed bridge {network.bridge}")
    return notes


def host_states(config: SandboxConfig) -> list[HostState]:
    if network_of(config) is None:
        return []
    try:
        hosts = hosts_of(config)
    except SandboxError:
        return []
    return [state for server_id in hosts.server_ids()
            if (state := hosts.state(server_id)) is not None]
