"""bench/bench_sandbox.py: which sandbox a bench runs against, and what it leaves behind."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

from bench_sandbox import bench_sandbox  # noqa: E402

from heatgen.sandbox import control  # noqa: E402


def _record(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Path]]:
    calls: list[tuple[str, Path]] = []
    monkeypatch.setattr(control, "up", lambda config, **kw: calls.append(("up", config.state_dir)))
    monkeypatch.setattr(control, "down",
                        lambda config, **kw: calls.append(("down", config.state_dir)))
    return calls


def test_its_own_sandbox_is_stopped_and_removed_also_on_failure(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    calls = _record(monkeypatch)
    seen: list[Any] = []
    with pytest.raises(RuntimeError, match="bench failed"):
        with bench_sandbox(None, "heatgen-test-", announce=True) as (config, work):
            seen = [config.state_dir, work]
            assert config.state_dir == work / "sandbox"
            raise RuntimeError("bench failed")
    assert calls == [("up", seen[0]), ("down", seen[0])]
    assert not seen[1].exists()
    assert capsys.readouterr().out == f"starting a sandbox in {seen[0]}\n"


def test_a_running_sandbox_is_used_and_left_running(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    calls = _record(monkeypatch)
    with bench_sandbox(tmp_path, "heatgen-test-") as (config, work):
        assert config.state_dir == tmp_path
        assert work.is_dir() and work != tmp_path
    assert calls == []
    assert not work.exists()
    assert tmp_path.exists()
    assert capsys.readouterr().out == ""
