"""The grid's life on a real Heat (the sandbox): deploy, scale, plan, fail, delete.

Runs the `heatgen` command in-process against the session's sandbox; nothing here is mocked.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from heatgen.cli import main

from .conftest import REPO, Sandbox

pytestmark = pytest.mark.sandbox

THESIS = REPO / "examples" / "thesis.yaml"


@pytest.fixture
def cli(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> Any:
    """Run `heatgen ...` against the sandbox; return (exit code, stdout, stderr)."""
    monkeypatch.setenv("HEATGEN_SANDBOX_DIR", str(sandbox.config.state_dir))
    for name in ("OS_CLOUD", "OS_AUTH_URL"):
        monkeypatch.delenv(name, raising=False)

    def run(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = main(list(args))
        out, err = capsys.readouterr()
        return code, out, err

    return run


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
    assert 'wait_condition_data: {"master": "sandbox"}' in out
    assert "worker_count: 1" in out
    assert "scale_up_url: http://127.0.0.1:" in out
    assert "?<redacted>" in out and "Signature=" not in out
    master = _physical_id(sandbox, "thesis-grid", "master")
    assert len(_members(sandbox, "thesis-grid")) == 1

    code, out, err = cli("scale", str(thesis_site), "--workers", "3")
    assert code == 0, err
    assert "workers: 3" in out
    assert len(_members(sandbox, "thesis-grid")) == 3
    assert _physical_id(sandbox, "thesis-grid", "master") == master

    events_before = len(sandbox.heat.events.list("thesis-grid"))
    code, out, err = cli("scale", str(thesis_site), "--workers", "8")
    assert code == 2
    assert err == "heatgen: error: --workers 8 is outside min..max 1..7; change the bounds " \
                  "with --min/--max\n"
    assert len(sandbox.heat.events.list("thesis-grid")) == events_before

    hotter = _site(tmp_path, "thesis-grid", "-hotter", **{"cpu_high: 50": "cpu_high: 60"})
    code, out, err = cli("deploy", str(hotter), "--dry-run", "--check")
    assert code == 1, err
    lines = {line.split(":")[0].strip(): line.split(":", 1)[1].strip()
             for line in out.splitlines()[1:6]}
    assert lines == {"added": "-", "updated": "cpu_alarm_high", "replaced": "-", "deleted": "-",
                     "unchanged": lines["unchanged"]}
    assert "master" in lines["unchanged"].split(", ")
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
