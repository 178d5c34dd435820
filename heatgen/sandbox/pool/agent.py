"""The pool agent: what Nova and Neutron would do, for the sandbox's stand-in templates.

Heat creates a nested stack for every ``OS::Nova::Server``, ``OS::Neutron::Port`` and
``OS::Neutron::FloatingIP`` of a grid (``environments/sandbox-pool*.yaml``); each waits on a
wait condition. The agent lists stacks about twice a second, and for each stand-in it has not
served yet it does the work and signals the handle with the result:

- a port gets the next free address of the private subnet;
- a floating IP the next free address of the floating subnet, put on the host of its port
  (now, or when that host boots);
- a server boots a host with the user data Heat resolved for it, its port's address, the
  floating addresses of that port and the public key of its ``key_name``.

A stand-in whose stack is being deleted, or gone, is undone: its host is killed at once, its
addresses are free again. What the agent holds is kept in ``agent.json`` so that a restarted
agent carries on.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from heatgen.errors import SandboxError
from heatgen.sandbox.master import build_master_signal, send_signal
from heatgen.sandbox.pool.hosts import Hosts, HostSpec, free_addresses

LOG = logging.getLogger("heatgen.sandbox.pool")
KIND_PREFIX = "heatgen sandbox stand-in: "
POLL = 0.5
HANDLES = {"server": "boot_handle", "port": "address_handle", "floating_ip": "address_handle"}
GONE = ("DELETE_IN_PROGRESS", "DELETE_COMPLETE", "DELETE_FAILED")


def stand_in_kind(description: str) -> str | None:
    """``server``, ``port`` or ``floating_ip`` for a stand-in stack's description."""
    text = " ".join((description or "").split())
    if not text.startswith(KIND_PREFIX):
        return None
    kind = text[len(KIND_PREFIX):].split(".", 1)[0].strip()
    return kind if kind in HANDLES else None


@dataclass
class AgentState:
    """What the agent holds: addresses by port, floating addresses, servers' hosts."""

    ports: dict[str, str] = field(default_factory=dict)  # port stack id -> address
    floating: dict[str, dict[str, str]] = field(default_factory=dict)  # fip -> address, port
    servers: dict[str, str] = field(default_factory=dict)  # server stack id -> port id

    @classmethod
    def load(cls, path: Path) -> AgentState:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return cls()
        return cls(dict(data.get("ports", {})), dict(data.get("floating", {})),
                   dict(data.get("servers", {})))

    def save(self, path: Path) -> None:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps({"ports": self.ports, "floating": self.floating,
                                   "servers": self.servers}, indent=1) + "\n")
        os.replace(tmp, path)


def ensure_key(keys: Path, name: str) -> str:
    """The public half of the sandbox's key pair ``name`` (made on first use, 0600)."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "default"
    private = keys / safe
    if not private.exists():
        keys.mkdir(parents=True, exist_ok=True, mode=0o700)
        done = subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C",
                               f"heatgen-sandbox-{safe}", "-f", str(private)],
                              capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise SandboxError(f"ssh-keygen failed for key pair {name}: {done.stderr.strip()}")
    return (keys / f"{safe}.pub").read_text().strip()


def key_file(keys: Path, name: str) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "default"
    return keys / safe


class Agent:
    """One pass of :meth:`tick` serves every stand-in that waits, and undoes the gone ones."""

    def __init__(self, heat: Any, hosts: Hosts, directory: Path,
                 signal: Callable[[str, str, Mapping[str, Any]], None] | None = None) -> None:
        self.heat = heat
        self.hosts = hosts
        self.directory = directory
        self.state_file = directory / "agent.json"
        self.keys = directory / "keys"
        self.state = AgentState.load(self.state_file)
        self.served: set[str] = set()
        self.failed: dict[str, str] = {}
        # stack id -> stand-in kind (None: another stack); a stack list has no descriptions,
        # so each stack is read once
        self.kinds: dict[str, str | None] = {}
        self._signal = signal or _post_signal

    def tick(self) -> None:
        # The sandbox's stacks all belong to its admin project (Heat's policy keeps the
        # global index to system scope).
        listed = list(self.heat.stacks.list(show_nested=True))
        alive: dict[str, tuple[str, str]] = {}
        for stack in listed:
            status = str(stack.stack_status)
            if status in GONE:
                continue
            kind = self._kind(stack.id)
            if kind is not None:
                alive[stack.id] = (kind, status)
        for gone in set(self.kinds) - {stack.id for stack in listed}:
            del self.kinds[gone]
        for stack_id, (kind, status) in sorted(alive.items(), key=_order):
            if stack_id in self.served or status != "CREATE_IN_PROGRESS":
                continue
            try:
                self._serve(stack_id, kind)
                self.served.add(stack_id)
            except Exception as error:  # noqa: BLE001 - one stand-in must not stop the rest
                if self.failed.get(stack_id) != str(error):
                    LOG.warning("stand-in %s %s: %s", kind, stack_id, error)
                self.failed[stack_id] = str(error)
        self._undo_gone(set(alive))
        self.state.save(self.state_file)

    def _kind(self, stack_id: str) -> str | None:
        if stack_id not in self.kinds:
            shown = self.heat.stacks.get(stack_id, resolve_outputs=False)
            self.kinds[stack_id] = stand_in_kind(str(getattr(shown, "description", "") or ""))
        return self.kinds[stack_id]

    def _serve(self, stack_id: str, kind: str) -> None:
        parameters = dict(getattr(self.heat.stacks.get(stack_id), "parameters", {}) or {})
        if kind == "port":
            address = self.state.ports.get(stack_id) or self._free_private()
            self.state.ports[stack_id] = address
            self._signal_handle(stack_id, kind, address)
        elif kind == "floating_ip":
            current = self.state.floating.get(stack_id, {})
            address = current.get("address") or self._free_floating()
            port = str(parameters.get("port_id") or "")
            self.state.floating[stack_id] = {"address": address, "port": port}
            for server, server_port in self.state.servers.items():
                if server_port == port and self.hosts.alive(server):
                    self.hosts.add_floating(server, address)
            self._signal_handle(stack_id, kind, address)
        else:
            port = _first_port(parameters.get("networks"))
            found = self.state.ports.get(port)
            if found is None:
                raise SandboxError(f"server {stack_id}: its port {port or '(none)'} has no "
                                   "address (networks must name a port of the sandbox)")
            address = found
            key_name = str(parameters.get("key_name") or "")
            spec = HostSpec(
                server_id=stack_id, name=str(parameters.get("name") or stack_id),
                address=address, user_data=str(parameters.get("user_data") or ""),
                floating=tuple(f["address"] for f in self.state.floating.values()
                               if f.get("port") == port),
                public_keys=(ensure_key(self.keys, key_name),) if key_name else (),
            )
            self.state.servers[stack_id] = port
            self.hosts.start(spec)
            self._signal_handle(stack_id, kind, address)

    def _signal_handle(self, stack_id: str, kind: str, data: str) -> None:
        handle = self.heat.resources.get(stack_id, HANDLES[kind])
        attributes = getattr(handle, "attributes", {}) or {}
        endpoint, token = attributes.get("endpoint"), attributes.get("token")
        if not endpoint or not token:
            raise SandboxError(f"{kind} {stack_id}: its wait handle has no endpoint yet")
        self._signal(str(endpoint), str(token), {"status": "SUCCESS", "id": "1",
                                                 "reason": f"sandbox {kind} ready",
                                                 "data": data})

    def _forget_host_keys(self, server: str) -> None:
        """A deleted host's addresses come back with other hosts (and other host keys):
        ssh would refuse them as changed keys, so their entries go with the host."""
        state = self.hosts.state(server)
        known = self.directory / "known_hosts"
        if state is None or not known.exists():
            return
        for address in (state.address, *state.floating):
            subprocess.run(["ssh-keygen", "-q", "-R", address, "-f", str(known)],
                           capture_output=True, check=False)

    def _undo_gone(self, alive: set[str]) -> None:
        for server in [s for s in self.state.servers if s not in alive]:
            self._forget_host_keys(server)
            if self.hosts.stop(server):
                LOG.info("host %s deleted", server)
            del self.state.servers[server]
            self.served.discard(server)
        for server in self.hosts.server_ids():
            if server not in alive and server not in self.state.servers:
                self._forget_host_keys(server)
                self.hosts.stop(server)
        for port in [p for p in self.state.ports if p not in alive]:
            del self.state.ports[port]
            self.served.discard(port)
        for fip in [f for f in self.state.floating if f not in alive]:
            del self.state.floating[fip]
            self.served.discard(fip)

    def _taken(self) -> set[str]:
        return {*self.state.ports.values(),
                *(f["address"] for f in self.state.floating.values())}

    def _free_private(self) -> str:
        for address in free_addresses(self.hosts.network.private, self._taken()):
            return address
        raise SandboxError("the sandbox's private subnet is full")

    def _free_floating(self) -> str:
        for address in free_addresses(self.hosts.network.floating, self._taken()):
            return address
        raise SandboxError("the sandbox's floating subnet is full")

    def run(self, stop: Callable[[], bool]) -> None:
        last = ""
        while not stop():
            started = time.monotonic()
            try:
                self.tick()
                last = ""
            except Exception as error:  # noqa: BLE001 - Heat restarting, a lost connection
                text = f"{type(error).__name__}: {error}"
                if text != last:
                    LOG.warning("pool agent: %s", text)
                last = text
            time.sleep(max(0.0, POLL - (time.monotonic() - started)))


def _order(item: tuple[str, tuple[str, str]]) -> int:
    """Ports before floating IPs before servers: a server needs its port's address."""
    return {"port": 0, "floating_ip": 1, "server": 2}[item[1][0]]


def _first_port(networks: Any) -> str:
    """The port of a server's first network. Heat passes the list of maps to a provider
    template flattened (``.member.0.port=<id>,...``), as a list or a comma-joined string."""
    items = networks.split(",") if isinstance(networks, str) else list(networks or [])
    for item in items:
        if isinstance(item, Mapping) and item.get("port"):
            return str(item["port"])
        key, _, value = str(item).partition("=")
        if key.endswith(".port") and value:
            return value
    return ""


def _post_signal(endpoint: str, token: str, body: Mapping[str, Any]) -> None:
    request = build_master_signal(endpoint, token, status=str(body["status"]),
                                  signal_id=str(body["id"]), reason=str(body["reason"]),
                                  data=str(body["data"]))
    send_signal(request)
