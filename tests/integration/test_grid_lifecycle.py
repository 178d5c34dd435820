"""The grid's life on a real Heat (the sandbox): deploy, scale, plan, fail, delete.

Runs the `heatgen` command in-process against the session's sandbox; nothing here is mocked.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import REPO, Sandbox, heatgen_runner

pytestmark = pytest.mark.sandbox

THESIS = REPO / "examples" / "thesis.yaml"


@pytest.fixture
def cli(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> Any:
    """Run `heatgen ...` against the sandbox; return (exit code, stdout, stderr)."""
    monkeypatch.setenv("HEATGEN_SANDBOX_DIR", str(sandbox.config.state_dir))
    for name in ("OS_CLOUD", "OS_AUTH_URL"):
        monkeypatch.delenv(name, raising=False)
    return heatgen_runner(capsys)


def _site(tmp_path: Path, name: str, variant: str = "", **replace: str) -> Path:
    text = THESIS.read_text().replace("site: bergen-grid", f"site: {name}")
    for old, new in replace.items():
        assert old in text
        text = text.replace(old, new)
    path = tmp_path / f"{name}{variant}.yaml"
    path.write_text(text)
    return path


def _members(sandbox: Sandbox, stack: str) -> list[Any]:
    return [r for r in sandbox.heat.resources.list(stack, nested_depth=1)
            if getattr(r, "parent_resource", None) == "workers"]


def _physical_id(sandbox: Sandbox, stack: str, resource: str) -> str:
    return str(sandbox.heat.resources.get(stack, resource).physical_resource_id)


def _stack_names(sandbox: Sandbox) -> list[str]:
    return [s.stack_name for s in sandbox.heat.stacks.list()]


def _gone(sandbox: Sandbox, name: str) -> bool:
    """Heat lists a stack for a moment after DELETE_COMPLETE, until its row is soft-deleted."""
    for _ in range(20):
        if name not in _stack_names(sandbox):
            return True
        time.sleep(0.5)
    return False


@pytest.fixture
def thesis_site(tmp_path: Path, sandbox: Sandbox, cli: Any) -> Iterator[Path]:
    site = _site(tmp_path, "thesis-grid")
    yield site
    if "thesis-grid" in _stack_names(sandbox):
        cli("delete", str(site), "--yes")


def test_thesis_grid_deploy_scale_plan_delete(
    sandbox: Sandbox, cli: Any, thesis_site: Path, tmp_path: Path
) -> None:
    code, out, err = cli("deploy", str(thesis_site))
    assert code == 0, err
    assert "stack thesis-grid CREATE_COMPLETE" in out
    assert "heatgen sent the master's ready signal" in err
    assert "master_wait_handle       SIGNAL_COMPLETE" in err
    assert 'ready:    {"master": "sandbox"}' in out
    assert "workers:  1 (CREATE_COMPLETE 1)" in out
    assert "master:   none (sandbox: no network)" in out
    assert "scale_up_url: http://127.0.0.1:" in out
    assert "Signature=" not in out
    code, out, err = cli("outputs", str(thesis_site))
    assert "?<redacted>" in out and "Signature=" not in out
    master = _physical_id(sandbox, "thesis-grid", "master")
    assert len(_members(sandbox, "thesis-grid")) == 1

    code, out, err = cli("scale", str(thesis_site), "--workers", "3")
    assert code == 0, err
    assert out.rstrip().endswith("workers: 3")
    assert len(_members(sandbox, "thesis-grid")) == 3
    assert _physical_id(sandbox, "thesis-grid", "master") == master

    events_before = len(sandbox.heat.events.list("thesis-grid"))
    code, out, err = cli("scale", str(thesis_site), "--workers", "8")
    assert code == 2
    assert err == "heatgen: error: --workers 8 is above the maximum 7 (the stack's " \
                  f"worker_max); raise it with `heatgen scale {thesis_site} --workers 8 " \
                  "--max 8` (or raise workers.max and deploy)\n"
    assert len(sandbox.heat.events.list("thesis-grid")) == events_before

    hotter = _site(tmp_path, "thesis-grid", "-hotter", **{"cpu_high: 50": "cpu_high: 60"})
    code, out, err = cli("deploy", str(hotter), "--dry-run", "--check")
    assert code == 1, err
    lines = {line.split(":")[0].strip(): line.split(":", 1)[1].strip()
             for line in out.splitlines()[1:6]}
    assert lines == {"added": "-", "updated": "cpu_alarm_high", "replaced": "-", "deleted": "-",
                     "unchanged": lines["unchanged"]}
    assert "master" in lines["unchanged"].split(", ")
    assert "parameter: cpu_high_threshold 60000000000 -> 72000000000" in out
    assert "  workers: 3 now, 3 after the update" in out
    assert len(_members(sandbox, "thesis-grid")) == 3

    code, out, err = cli("deploy", str(thesis_site))
    assert code == 0, err
    assert "stack thesis-grid is up to date" in out
    assert len(_members(sandbox, "thesis-grid")) == 3  # a re-deploy keeps the scaled size

    code, out, err = cli("deploy", str(hotter))
    assert code == 0, err
    assert len(_members(sandbox, "thesis-grid")) == 3
    assert _physical_id(sandbox, "thesis-grid", "master") == master

    code, out, err = cli("status", str(thesis_site), "--format", "json")
    assert code == 0, err
    assert '"count": 3' in out and "UPDATE_COMPLETE" in out

    code, out, err = cli("delete", str(thesis_site), "--yes")
    assert code == 0, err
    assert out == "stack thesis-grid DELETE_COMPLETE\n"
    assert _gone(sandbox, "thesis-grid")


def test_master_that_never_signals_fails_fast_and_names_the_wait_condition(
    sandbox: Sandbox, cli: Any, tmp_path: Path
) -> None:
    site = _site(tmp_path, "silent-grid", **{"wait_timeout: 1800": "wait_timeout: 3"})
    try:
        code, out, err = cli("deploy", str(site), "--sandbox-no-master-signal")
        assert code == 4
        assert "heatgen: error: stack silent-grid is CREATE_FAILED" in err
        assert "  master_wait (OS::Heat::WaitCondition) CREATE_FAILED: WaitConditionTimeout" in err
        assert "Traceback" not in err
    finally:
        code, out, err = cli("delete", str(site), "--yes")
    assert code == 0, err
    assert _gone(sandbox, "silent-grid")


def _event_ids(sandbox: Sandbox, stack: str) -> set[str]:
    return {e.id for e in sandbox.heat.events.list(stack, nested_depth=2)}


def _new_events(sandbox: Sandbox, stack: str, before: set[str]) -> list[Any]:
    return [e for e in sandbox.heat.events.list(stack, nested_depth=2) if e.id not in before]


def test_a_deploy_never_shrinks_the_group_and_zero_parks_it(
    sandbox: Sandbox, cli: Any, tmp_path: Path
) -> None:
    site = _site(tmp_path, "park-grid")
    lowered = _site(tmp_path, "park-grid", "-max3", **{"max: 7": "max: 3"})
    try:
        assert cli("deploy", str(site))[0] == 0
        assert cli("scale", str(site), "--workers", "5")[0] == 0
        assert len(_members(sandbox, "park-grid")) == 5

        code, out, err = cli("deploy", str(lowered), "--dry-run")
        assert code == 0, err
        assert "parameter: worker_max 7 -> 5" in out
        assert "  workers: 5 now, 5 after the update" in out
        before = _event_ids(sandbox, "park-grid")
        code, out, err = cli("deploy", str(lowered))
        assert code == 0, err
        assert "keeps the maximum at 5" in err
        assert f"`heatgen scale {lowered} --workers 3 --max 3`" in err
        assert len(_members(sandbox, "park-grid")) == 5
        assert not [e for e in _new_events(sandbox, "park-grid", before)
                    if e.resource_status.startswith("DELETE")]

        code, out, err = cli("scale", str(lowered), "--workers", "6")
        assert code == 2
        assert "--workers 6 is above the maximum 5 (the stack's worker_max)" in err

        code, out, err = cli("scale", str(lowered), "--workers", "0", "--min", "0", "--force")
        assert code == 0, err
        assert out.rstrip().endswith("workers: 0")
        assert _members(sandbox, "park-grid") == []
        assert _outputs(sandbox, "park-grid")["worker_count"] == 0

        code, out, err = cli("scale", str(lowered), "--workers", "2")
        assert code == 0, err
        assert len(_members(sandbox, "park-grid")) == 2
    finally:
        cli("delete", str(site), "--yes")
    assert _gone(sandbox, "park-grid")


def _outputs(sandbox: Sandbox, stack: str) -> dict[str, Any]:
    shown = sandbox.heat.stacks.get(stack)
    return {o["output_key"]: o.get("output_value") for o in shown.outputs or []}


def test_the_sandbox_name_works_as_os_cloud_and_no_wait_still_signals_the_master(
    sandbox: Sandbox, cli: Any, tmp_path: Path
) -> None:
    site = _site(tmp_path, "nowait-grid")
    try:
        code, out, err = cli("deploy", str(site), "--no-wait", "--os-cloud", "heatgen-sandbox")
        assert code == 0, err
        assert "Heat accepted the change" in out
        assert "heatgen sent the master's ready signal" in err
        deadline = time.monotonic() + 120
        while sandbox.heat.stacks.get("nowait-grid").stack_status != "CREATE_COMPLETE":
            assert time.monotonic() < deadline, "the create never finished"
            time.sleep(1)
    finally:
        cli("delete", str(site), "--yes")
    assert _gone(sandbox, "nowait-grid")


def test_an_engine_restart_mid_create_is_noticed_and_resume_finishes_it(
    sandbox: Sandbox, cli: Any, tmp_path: Path
) -> None:
    from heatgen.sandbox import control

    # Long enough that the wait condition cannot time out before the engine is gone.
    site = _site(tmp_path, "stalled-grid", **{"wait_timeout: 1800": "wait_timeout: 10"})
    try:
        code, out, err = cli("deploy", str(site), "--no-wait", "--sandbox-no-master-signal")
        assert code == 0, err
        deadline = time.monotonic() + 60
        while sandbox.heat.resources.get("stalled-grid", "master_wait").resource_status \
                != "CREATE_IN_PROGRESS":
            assert time.monotonic() < deadline
            time.sleep(0.5)
        # The engine dies in the middle of the create (SIGKILL: nothing is cleaned up), and
        # the sandbox comes back up with a new one.
        heat_pid = int(sandbox.config.pid_file("heat").read_text().split()[0])
        os.kill(heat_pid, signal.SIGKILL)
        control.up(sandbox.config)
        started = time.monotonic()
        code, out, err = cli("deploy", str(site), "--stall-timeout", "5")
        assert code == 5, err
        assert "attaching to it" in err
        assert "has shown no progress" in err
        assert f"run `heatgen deploy {site} --resume`" in err
        assert time.monotonic() - started < 10 + 30 + 30  # the wait condition's own timeout
        assert sandbox.heat.stacks.get("stalled-grid").stack_status == "CREATE_IN_PROGRESS"

        code, out, err = cli("deploy", str(site), "--resume")
        assert code == 0, err
        assert "stack stalled-grid UPDATE_COMPLETE" in out
        assert len(_members(sandbox, "stalled-grid")) == 1
    finally:
        cli("delete", str(site), "--yes")
    assert _gone(sandbox, "stalled-grid")
