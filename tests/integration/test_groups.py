"""Worker groups on the real-pool sandbox: two groups side by side, each resized on its own,
a third added by re-deploy, and jobs that pick a group by its HeatGenGroup.

Every server boots its group's rendered user data as a sandbox host with Debian's HTCondor;
scale-in asks the real pool. Nothing here is recorded or stubbed but compute and network.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import REPO, Sandbox, heatgen_runner
from .test_pool import FAST_NEGOTIATOR, _hosts, _jobs, _on_master, _outputs, _pool, _until

pytestmark = [pytest.mark.sandbox, pytest.mark.pool]

STACK = "groups-grid"


def _group(name: str, low: int, high: int, desired: int, extra: str = "") -> str:
    return (f"  - name: {name}\n    image: Debian-13\n    os: debian13\n    flavor: m1.small\n"
            f"    vcpus: 2\n    memory_mb: 2048\n    min: {low}\n    max: {high}\n"
            f"    desired: {desired}\n{extra}")


def _site(directory: Path, groups: str, name: str = "groups") -> Path:
    text = (REPO / "examples" / "debian13.yaml").read_text()
    text = text.replace("site: debian13-grid", f"site: {STACK}")
    text = text.replace('  version: "23.9"\n', '  version: "23.9"\n' + FAST_NEGOTIATOR)
    workers = text[text.index("workers:\n"):text.index("autoscaling:\n")]
    text = text.replace(workers, "worker_groups:\n" + groups)
    path = directory / f"{name}.yaml"
    path.write_text(text)
    return path


TWO = _group("a", 1, 3, 1) + _group("b", 0, 2, 1)


@pytest.fixture
def cli(pool_sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> Any:
    monkeypatch.setenv("HEATGEN_SANDBOX_DIR", str(pool_sandbox.config.state_dir))
    return heatgen_runner(capsys)


@pytest.fixture
def grid(pool_sandbox: Sandbox, cli: Any, tmp_path: Path) -> Iterator[Path]:
    site = _site(tmp_path, TWO)
    try:
        yield site
    finally:
        if STACK in [s.stack_name for s in pool_sandbox.heat.stacks.list()]:
            cli("delete", str(site), "--yes")
        _until("hosts gone", lambda: _hosts(pool_sandbox).server_ids() == [], 60)


def _members(sandbox: Sandbox) -> dict[str, dict[str, str]]:
    """Each group's members as Heat lists them: member name -> Nova server id."""
    outputs = _outputs(sandbox, STACK)
    return {key.removeprefix("worker_server_ids_"): dict(value or {})
            for key, value in outputs.items() if key.startswith("worker_server_ids_")}


def _advertised(sandbox: Sandbox) -> dict[str, str]:
    """What the collector lists: HeatGenServerId -> HeatGenGroup of every startd."""
    text = _on_master(sandbox, STACK, "condor_status", "-json", "-attributes",
                      "HeatGenServerId,HeatGenGroup,Machine")
    return {ad["HeatGenServerId"]: ad["HeatGenGroup"] for ad in json.loads(text or "[]")}


def _in_pool(cli: Any, site: Path, group: str) -> int:
    return sum(m["in_pool"] for m in _pool(cli, site)["members"] if m["group"] == group)


def test_two_groups_join_take_their_jobs_and_resize_alone(
    pool_sandbox: Sandbox, cli: Any, grid: Path, tmp_path: Path
) -> None:
    code, out, err = cli("deploy", str(grid))
    assert code == 0, err
    first = _members(pool_sandbox)
    assert {group: len(ids) for group, ids in first.items()} == {"a": 1, "b": 1}
    _until("both groups' workers in the pool",
           lambda: _in_pool(cli, grid, "a") == 1 and _in_pool(cli, grid, "b") == 1)
    # Each startd advertises the group Heat made it a member of.
    advertised = _advertised(pool_sandbox)
    for group, ids in first.items():
        for server_id in ids.values():
            assert advertised[server_id] == group, advertised
    code, out, err = cli("status", str(grid))
    assert code == 0, err
    assert "  group a: 1 (CREATE_COMPLETE 1)" in out and "  group b: 1 (" in out

    # A job that asks for group b runs only there, though group a's worker is idle.
    _on_master(pool_sandbox, STACK, "sh", "-c", "id bob >/dev/null 2>&1 || useradd -m bob")
    submit = ('executable = /bin/sleep\narguments = 3\nrequirements = HeatGenGroup == "b"\n'
              "request_cpus = 1\nrequest_memory = 32\nrequest_disk = 1024\n"
              "transfer_executable = false\nshould_transfer_files = YES\n"
              "when_to_transfer_output = ON_EXIT\nqueue 3\n")
    _on_master(pool_sandbox, STACK, "su", "-s", "/bin/sh", "bob", "-c",
               "cd /home/bob && cat > job.sub && condor_submit job.sub", input_text=submit)
    _until("the group-b jobs done",
           lambda: [j.get("JobStatus") for j in _jobs(pool_sandbox, STACK)] == [4, 4, 4], 180,
           lambda: _on_master(pool_sandbox, STACK, "sh", "-c",
                              "condor_q -allusers -better-analyze; condor_status"))
    machines = json.loads(_on_master(pool_sandbox, STACK, "condor_status", "-json",
                                     "-attributes", "Machine,HeatGenGroup"))
    group_of = {ad["Machine"]: ad["HeatGenGroup"] for ad in machines}
    ran_on = {str(j["LastRemoteHost"]).split("@", 1)[1] for j in _jobs(pool_sandbox, STACK)}
    assert {group_of[machine] for machine in ran_on} == {"b"}, (ran_on, group_of)

    # Group a grows and shrinks (idle workers only, asked of the pool); b's member stays.
    code, out, err = cli("scale", str(grid), "--group", "a", "--workers", "2")
    assert code == 0, err
    grown = _members(pool_sandbox)
    assert len(grown["a"]) == 2 and grown["b"] == first["b"]
    _until("group a's second worker in the pool", lambda: _in_pool(cli, grid, "a") == 2)
    code, out, err = cli("scale", str(grid), "--group", "a", "--workers", "1")
    assert code == 0, err
    shrunk = _members(pool_sandbox)
    assert len(shrunk["a"]) == 1 and shrunk["b"] == first["b"]
    assert _in_pool(cli, grid, "b") == 1

    # Without --group the site's groups are named, and nothing is sent.
    code, out, err = cli("scale", str(grid), "--workers", "2")
    assert code == 2
    assert "has 2 worker groups (a, b): name the one to resize with --group" in err

    # A third group and a change to group a's cooldown: group b is untouched, by the plan and
    # by its member; a keeps its scaled size.
    three = _site(tmp_path, _group("a", 1, 3, 1, "    autoscaling: {cooldown: 90}\n")
                  + _group("b", 0, 2, 1) + _group("c", 0, 1, 1), "three")
    code, out, err = cli("deploy", str(three), "--dry-run")
    assert code == 0, err
    plan = {line.split(":")[0].strip(): line.split(":", 1)[1].strip().split(", ")
            for line in out.splitlines()[1:6]}
    assert "workers_c" in plan["added"]
    assert "workers_b" in plan["unchanged"] and "scale_up_policy_b" in plan["unchanged"]
    assert "workers_a" in plan["updated"]
    assert "workers_b" not in plan["updated"] + plan["replaced"] + plan["deleted"]
    code, out, err = cli("deploy", str(three))
    assert code == 0, err
    after = _members(pool_sandbox)
    assert after["a"] == shrunk["a"] and after["b"] == first["b"] and len(after["c"]) == 1
    _until("group c's worker in the pool", lambda: _in_pool(cli, three, "c") == 1)
    assert _advertised(pool_sandbox)[next(iter(after["c"].values()))] == "c"

    # Removing group b from the config while it has a worker is refused, nothing changed.
    code, out, err = cli("deploy", str(_site(tmp_path, _group("a", 1, 3, 1)
                                             + _group("c", 0, 1, 1), "b-gone")))
    assert code == 2, err
    assert "removes worker group workers_b: all 1 workers would be removed" in err
    assert _members(pool_sandbox)["b"] == first["b"]
    # Drained to 0 (its worker is idle), group b goes by re-deploy; a and c stay as they are.
    code, out, err = cli("scale", str(three), "--group", "b", "--workers", "0", "--min", "0")
    assert code == 0, err
    no_b = _site(tmp_path, _group("a", 1, 3, 1, "    autoscaling: {cooldown: 90}\n")
                 + _group("c", 0, 1, 1), "no-b")
    code, out, err = cli("deploy", str(no_b))
    assert code == 0, err
    final = _members(pool_sandbox)
    assert final == {"a": after["a"], "c": after["c"]}, final
    assert "worker_count_b" not in _outputs(pool_sandbox, STACK)

    code, out, err = cli("delete", str(no_b), "--yes")
    assert code == 0, err
    assert STACK not in [s.stack_name for s in pool_sandbox.heat.stacks.list()] or \
        pool_sandbox.heat.stacks.get(STACK).stack_status == "DELETE_COMPLETE"
    _until("every group's hosts gone", lambda: _hosts(pool_sandbox).server_ids() == [], 60)
