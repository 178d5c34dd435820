"""The sandbox pool's pieces that need no namespaces: the agent over a fake Heat and fake
hosts, address allocation, the base root's recipe and mirror, host names. (The real pool:
tests/integration/test_pool.py.)"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from heatgen.errors import SandboxError
from heatgen.sandbox.pool import base
from heatgen.sandbox.pool.agent import Agent, AgentState, _first_port, stand_in_kind
from heatgen.sandbox.pool.hosts import HostSpec, Network, free_addresses, hostname_of

NETWORK = Network("hgbtest", ipaddress.IPv4Network("10.77.3.0/24"),
                  ipaddress.IPv4Network("10.78.3.0/24"))


class FakeHosts:
    def __init__(self) -> None:
        self.network = NETWORK
        self.started: dict[str, HostSpec] = {}
        self.floating: list[tuple[str, str]] = []

    def start(self, spec: HostSpec) -> int:
        self.started[spec.server_id] = spec
        return 1

    def alive(self, server_id: str) -> bool:
        return server_id in self.started

    def add_floating(self, server_id: str, address: str) -> None:
        self.floating.append((server_id, address))

    def stop(self, server_id: str) -> bool:
        return self.started.pop(server_id, None) is not None

    def server_ids(self) -> list[str]:
        return sorted(self.started)

    def state(self, server_id: str) -> None:
        return None


class FakeHeat:
    """Stacks with descriptions and parameters; handles with endpoints."""

    def __init__(self) -> None:
        self.stacks_by_id: dict[str, dict[str, Any]] = {}
        outer = self

        class Stacks:
            def list(self, **kwargs: Any) -> list[Any]:
                return [SimpleNamespace(id=i, stack_status=s["status"])
                        for i, s in outer.stacks_by_id.items()]

            def get(self, stack_id: str, **kwargs: Any) -> Any:
                s = outer.stacks_by_id[stack_id]
                return SimpleNamespace(description=s["description"], parameters=s["params"])

        class Resources:
            def get(self, stack_id: str, name: str) -> Any:
                return SimpleNamespace(attributes={"endpoint": f"http://heat/{stack_id}/{name}",
                                                   "token": "tok"})

        self.stacks = Stacks()
        self.resources = Resources()

    def add(self, stack_id: str, kind: str, **params: Any) -> None:
        self.stacks_by_id[stack_id] = {
            "status": "CREATE_IN_PROGRESS", "params": params,
            "description": f"heatgen sandbox stand-in: {kind}. The sandbox's pool agent ..."}


def test_the_agent_serves_port_floating_ip_and_server_in_order(tmp_path: Path) -> None:
    heat, hosts, signals = FakeHeat(), FakeHosts(), []
    heat.add("server-1", "server", name="grid-master", key_name="", user_data="#cloud-config\n",
             networks=".member.0.port=port-1")
    heat.add("fip-1", "floating_ip", port_id="port-1", floating_network="ext")
    heat.add("port-1", "port", network="net")
    heat.stacks_by_id["grid"] = {"status": "CREATE_IN_PROGRESS", "params": {},
                                 "description": "Elastic HTCondor grid"}
    agent = Agent(heat, hosts, tmp_path,  # type: ignore[arg-type]
                  signal=lambda endpoint, token, body: signals.append((endpoint, body["data"])))
    agent.tick()
    assert signals == [("http://heat/port-1/address_handle", "10.77.3.10"),
                       ("http://heat/fip-1/address_handle", "10.78.3.10"),
                       ("http://heat/server-1/boot_handle", "10.77.3.10")]
    spec = hosts.started["server-1"]
    assert (spec.address, spec.floating, spec.user_data) == ("10.77.3.10", ("10.78.3.10",),
                                                             "#cloud-config\n")
    agent.tick()  # served once only
    assert len(signals) == 3
    assert AgentState.load(tmp_path / "agent.json").ports == {"port-1": "10.77.3.10"}
    # Deleting the server's stack kills its host and frees its addresses.
    for gone in ("server-1", "port-1", "fip-1"):
        heat.stacks_by_id[gone]["status"] = "DELETE_IN_PROGRESS"
    agent.tick()
    assert hosts.started == {}
    assert AgentState.load(tmp_path / "agent.json") == AgentState()


def test_a_server_whose_port_has_no_address_waits_and_is_retried(tmp_path: Path) -> None:
    heat, hosts = FakeHeat(), FakeHosts()
    heat.add("server-1", "server", name="w", networks=".member.0.port=port-9")
    agent = Agent(heat, hosts, tmp_path, signal=lambda *args: None)  # type: ignore[arg-type]
    agent.tick()
    assert hosts.started == {} and "port-9" in agent.failed["server-1"]
    heat.add("port-9", "port", network="net")
    agent.tick()
    agent.tick()
    assert "server-1" in hosts.started


def test_stand_in_kinds_and_flattened_networks() -> None:
    assert stand_in_kind("heatgen sandbox stand-in: server. The agent boots") == "server"
    assert stand_in_kind("heatgen  sandbox stand-in:\nfloating_ip. more") == "floating_ip"
    assert stand_in_kind("Elastic HTCondor grid") is None
    assert stand_in_kind("heatgen sandbox stand-in: router.") is None
    assert _first_port(".member.0.port=abc,.member.0.fixed_ip=10.0.0.1") == "abc"
    assert _first_port([{"port": "def"}]) == "def"
    assert _first_port("") == ""


def test_addresses_start_at_ten_and_skip_the_taken() -> None:
    subnet = ipaddress.IPv4Network("10.77.3.0/24")
    free = free_addresses(subnet, {"10.77.3.10", "10.77.3.12"})
    assert [next(iter(free)) for _ in range(1)] == ["10.77.3.11"]
    assert list(free_addresses(ipaddress.IPv4Network("10.0.0.0/28"), set())) == [
        "10.0.0.10", "10.0.0.11", "10.0.0.12", "10.0.0.13", "10.0.0.14"]


def test_host_names_are_valid_labels() -> None:
    assert hostname_of("Grid_Master 1") == "grid-master-1"
    assert len(hostname_of("w" * 100)) == 63
    assert hostname_of("___") == "host"


def test_the_mirror_is_the_one_apt_uses(tmp_path: Path) -> None:
    apt = tmp_path / "apt"
    (apt / "sources.list.d").mkdir(parents=True)
    (apt / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\n"
        "Components: main\n\nTypes: deb\nURIs: http://mirror.example/debian-security\n"
        "Suites: bookworm-security\nComponents: main\n")
    assert base.debian_mirror(apt) == "http://mirror.example/debian"
    (apt / "sources.list.d" / "debian.sources").unlink()
    (apt / "sources.list").write_text("deb [arch=amd64] http://other.example/debian/ trixie main\n")
    assert base.debian_mirror(apt) == "http://other.example/debian"
    (apt / "sources.list").write_text("# nothing\n")
    with pytest.raises(SandboxError, match="no Debian archive is configured"):
        base.debian_mirror(apt)


def test_the_base_is_keyed_by_its_recipe_and_found_only_when_complete(tmp_path: Path) -> None:
    key = base.recipe_key()
    assert key == base.recipe_key() and len(key) == 16
    assert base.find(tmp_path) is None
    root = tmp_path / key / "root"
    (root / "usr/sbin").mkdir(parents=True)
    (root / "usr/sbin/condor_master").write_text("")
    assert base.find(tmp_path) is None  # no recipe file: an interrupted build
    (tmp_path / key / base.RECIPE_FILE).write_text("{}")
    found = base.find(tmp_path)
    assert found is not None and found.path == root


def test_a_pool_sandbox_refuses_sites_its_hosts_cannot_boot(tmp_path: Path) -> None:
    from heatgen.config import load_site
    from heatgen.sandbox.hooks import check_site_boots
    from heatgen.sandbox.settings import SandboxConfig

    from .conftest import EXAMPLES

    pool = SandboxConfig(state_dir=tmp_path, pool=True)
    with pytest.raises(SandboxError) as refused:
        check_site_boots(load_site(EXAMPLES / "thesis.yaml"), pool)
    assert "set master.os and workers.os to debian13" in str(refused.value)
    check_site_boots(load_site(EXAMPLES / "debian13.yaml"), pool)
    check_site_boots(load_site(EXAMPLES / "thesis.yaml"), SandboxConfig(state_dir=tmp_path))


def test_commands_on_a_host_get_a_hosts_environment_not_the_callers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from heatgen.sandbox.pool import hosts as hosts_module

    seen: dict[str, Any] = {}

    def fake_run(argv: list[str], **kwargs: Any) -> Any:
        seen.update(argv=argv, env=kwargs.get("env"))
        return SimpleNamespace(returncode=0, stdout="", stderr="")

    monkeypatch.setenv("OS_PASSWORD", "caller-secret")
    monkeypatch.setenv("CONDOR_CONFIG", "/dev/null")
    monkeypatch.setattr(hosts_module.subprocess, "run", fake_run)
    network = Network.from_dict({"bridge": "hgbt", "private": "10.77.9.0/24",
                                 "floating": "10.78.9.0/24"})
    hosts = hosts_module.Hosts(tmp_path, network, tmp_path)
    monkeypatch.setattr(hosts, "init_pid", lambda server_id: 4242)
    for tty in (False, True):
        hosts.run("server-1", ["condor_status"], tty=tty)
        assert seen["argv"][:3] == ["nsenter", "-t", "4242"]
        env = seen["env"]
        assert env is not None and env["HOME"] == "/root" and "/usr/sbin" in env["PATH"]
        assert "OS_PASSWORD" not in env and "CONDOR_CONFIG" not in env
