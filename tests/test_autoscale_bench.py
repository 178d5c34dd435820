"""The figures of bench/autoscale_pool.py from samples and job records (no sandbox)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

from autoscale_pool import (  # noqa: E402
    JobRecord,
    Sample,
    busy_share,
    cpu_percent,
    figures,
    scaling_factor,
    site_text,
    submit_text,
    table,
    time_to_full,
    verdict,
    work_and_wall,
)


def _samples(*sizes: int, step: float = 10.0) -> list[Sample]:
    return [Sample(t=i * step, size=n, running=0, idle=0, done=0) for i, n in enumerate(sizes)]


def test_the_scaling_factor_is_work_time_over_wall_time() -> None:
    assert scaling_factor(7 * 600.0, 600.0) == pytest.approx(7.0)
    assert scaling_factor(100.0, None) is None
    assert scaling_factor(100.0, 0.0) is None


def test_time_to_full_size_is_the_first_sample_at_full_size() -> None:
    samples = _samples(1, 1, 3, 7, 6, 7)
    assert time_to_full(samples, 7) == 30.0
    assert time_to_full(samples, 3) == 20.0
    assert time_to_full(_samples(1, 2, 2), 7) is None


def test_work_counts_each_jobs_completed_run_and_wall_ends_at_the_last_job() -> None:
    submitted = 1000.0
    jobs = [JobRecord(started=1005.0, completed=1125.0, starts=1),
            JobRecord(started=1130.0, completed=1250.0, starts=2)]  # an earlier run was lost
    work, wall = work_and_wall(jobs, submitted)
    assert work == 240.0 and wall == 250.0
    assert work_and_wall([], submitted) == (0.0, None)


def test_figures_of_a_mode_count_restarts_and_need_the_whole_queue_done() -> None:
    samples = _samples(1, 4, 7, 7)
    jobs = [JobRecord(0.0 + i, 120.0 + i, 1) for i in range(6)] + [JobRecord(10.0, 130.0, 3)]
    done = figures("cpu", 7, 7, 0.0, samples, jobs, restart_events=2, busy_removed=1,
                   members_removed=2)
    assert done.work_seconds == 7 * 120.0 and done.wall_seconds == 130.0
    assert done.scaling_factor == pytest.approx(840.0 / 130.0)
    assert done.time_to_full == 20.0 and done.peak_size == 7
    assert done.jobs_restarted == 1 and done.lost == 1 and done.busy_removed == 1
    partial = figures("cpu", 8, 7, 0.0, samples, jobs, 0, 0, 0)
    # one job restarted, one never finished
    assert partial.scaling_factor is None and partial.lost == 2
    assert "never" not in table([done]) and "6.46 of 7" in table([done])


def test_the_verdict_compares_the_modes_and_counts_lost_jobs() -> None:
    samples = _samples(1, 7)
    fast = figures("queue", 2, 7, 0.0, samples, [JobRecord(0, 100, 1)] * 2, 0, 0, 0)
    slow = figures("cpu", 2, 7, 0.0, samples, [JobRecord(0, 100, 1), JobRecord(100, 200, 1)],
                   0, 0, 0)
    assert "2.00" in (verdict([fast, slow]) or "") and "target met" in (verdict([fast, slow])
                                                                         or "")
    lossy = figures("queue", 2, 7, 0.0, samples, [JobRecord(0, 100, 2)] * 2, 0, 0, 0)
    assert "NOT met" in (verdict([lossy, slow]) or "")
    assert verdict([fast]) is None


def test_a_member_reports_cpu_for_the_share_of_a_bucket_its_slots_ran_a_job() -> None:
    assert cpu_percent(60.0, 60.0) == 100.0
    assert cpu_percent(0.0, 60.0) == 2.0
    assert cpu_percent(30.0, 60.0) == pytest.approx(51.0)
    assert cpu_percent(90.0, 60.0) == 100.0 and cpu_percent(5.0, 0.0) == 2.0
    assert busy_share(2, 2) == 1.0 and busy_share(1, 2) == 0.5 and busy_share(4, 2) == 1.0


def test_the_sites_and_the_jobs_of_the_two_modes() -> None:
    queue = site_text("queue", "abench-queue", 7, 15)
    assert "mode: queue" in queue and "telemetry: none" in queue and "interval: 15" in queue
    assert "cpu_high" not in queue and "site: abench-queue" in queue
    cpu = site_text("cpu", "abench-cpu", 5, 15)
    assert "cpu_high: 50" in cpu and "mode: queue" not in cpu and "  max: 5\n" in cpu
    assert "NEGOTIATOR_INTERVAL = 5" in cpu and "NEGOTIATOR_INTERVAL = 5" in queue
    job = submit_text(28, 120, 2, 120)
    assert "request_cpus = 2" in job and "queue 28" in job and "arguments = 120" in job
    assert "job_lease_duration = 120" in job
