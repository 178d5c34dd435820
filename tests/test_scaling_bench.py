"""The work queue of bench/scaling_sandbox.py: what the members of a real group do."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

from scaling_factor import simulate  # noqa: E402
from scaling_sandbox import Queue, main, quietly  # noqa: E402


def test_members_boot_then_work_off_the_queue_with_a_gap_between_jobs() -> None:
    queue = Queue(jobs=3, job_seconds=10, boot_seconds=5, between_seconds=2)
    queue.sync(["a"], now=0)
    queue.advance(0)
    assert queue.running == 0 and queue.ready(4) == []  # still booting
    queue.advance(5)
    assert queue.running == 1 and queue.ready(5) == ["a"]
    queue.advance(15)
    assert queue.completed == 1 and queue.running == 0  # the gap before the next job
    queue.advance(17)
    assert queue.running == 1 and queue.waiting == 1
    queue.sync(["a", "b"], now=17)
    queue.advance(22)
    assert queue.running == 2 and queue.waiting == 0
    queue.advance(40)
    assert queue.done and queue.completed == 3


def test_a_member_removed_while_busy_loses_its_job_to_the_queue() -> None:
    queue = Queue(jobs=2, job_seconds=100, boot_seconds=0, between_seconds=0)
    queue.sync(["a", "b"], now=0)
    queue.advance(0)
    queue.advance(30)
    queue.sync(["b"], now=30)
    assert queue.killed == 1 and queue.lost_seconds == 30
    assert queue.waiting == 1 and queue.running == 1
    queue.advance(100)
    assert queue.completed == 1 and queue.running == 1  # b took the lost job again
    queue.advance(200)
    assert queue.done


def test_samples_are_the_busy_share_of_the_period_over_an_idle_floor() -> None:
    queue = Queue(jobs=1, job_seconds=30, boot_seconds=0, between_seconds=0)
    queue.sync(["a"], now=0)
    queue.advance(0)
    queue.advance(30)
    queue.advance(60)
    assert queue.sample("a", 60) == pytest.approx(50 + 2 * 0.5)
    queue.advance(120)
    assert queue.sample("a", 120) == pytest.approx(2.0)  # idle


def test_a_site_the_sandbox_cannot_measure_is_refused(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    source = Path(__file__).resolve().parents[1] / "examples" / "thesis.yaml"
    site = tmp_path / "slow.yaml"
    site.write_text(source.read_text().replace("granularity: 60", "granularity: 300"))
    assert main([str(site)]) == 2
    err = capsys.readouterr().err
    assert "slow.yaml: autoscaling" in err and "granularity 300" in err


def _model(**changes: float) -> float:
    settings = dict(jobs=20, job_seconds=600, min_size=1, max_size=7, desired=1, cpu_high=50,
                    cpu_low=10, granularity=60, evaluation_periods=1, cooldown=60, up_step=1,
                    down_step=1, low_alarm=True, evaluation_interval=60, boot_seconds=180,
                    update_seconds=10)
    settings.update(changes)
    return simulate(**settings).factor  # type: ignore[arg-type]


def test_the_model_without_scaling_is_one_worker_minus_the_gaps() -> None:
    assert _model(max_size=1) == pytest.approx(1.0, abs=0.01)
    assert _model(max_size=1, between_seconds=60) == pytest.approx(600 / 660, abs=0.01)


def test_the_model_scales_up_and_bigger_steps_scale_faster() -> None:
    one = _model()
    assert 1.5 < one < 7
    assert _model(up_step=3) > one
    assert _model(cooldown=600) < one


def test_heatgen_commands_in_the_bench_show_one_line_unless_they_fail(
        capsys: pytest.CaptureFixture[str]) -> None:
    def cli(argv: list[str]) -> int:
        print("  2026-01-01 00:00:00  master  CREATE_COMPLETE", file=sys.stderr)
        print("stack scaling-bench CREATE_COMPLETE in 9.5 s")
        print("worker_count: 1")
        return 0 if argv[0] == "deploy" else 4

    assert quietly(cli, ["deploy"]) == 0
    shown = capsys.readouterr().out
    assert shown == "heatgen deploy: stack scaling-bench CREATE_COMPLETE in 9.5 s\n"
    assert quietly(cli, ["delete"]) == 4
    assert capsys.readouterr().out.count("heatgen delete: ") == 3
