"""The thesis's automatic-scaling experiment in miniature, as a model: no cloud needed.

A queue of CPU-bound jobs that would keep 7 workers busy starts on ``workers.min`` workers
(max 7). Every ``--evaluation-interval`` seconds the CPU alarms look at the last
``evaluation_periods`` Gnocchi buckets of the workers' mean CPU (``rate:mean``, one
``granularity`` bucket each) and, with ``repeat_actions``, signal the scaling policies; a
policy outside its cooldown changes the group by its step (Heat's cooldown starts when the
scaling finishes). New workers take ``--boot-seconds`` before they run jobs; a removed
worker's running job goes back to the queue (Heat removes the oldest member). The result is
the thesis's scaling factor: work time / wall time (the thesis measured 6.0 and 6.587 of 7).

    python bench/scaling_factor.py examples/thesis.yaml [--jobs 72 --job-minutes 10]

Tune ``autoscaling`` in the site file (steps, cooldown, thresholds, granularity) and compare.
This is a model of the loop the sandbox runs for real (``tests/integration/test_telemetry.py``
measures the real reaction times); it does not replace a run on a cloud.
"""

from __future__ import annotations

import argparse
import sys
from collections import deque
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from heatgen.config import Group, ScaleIn, Site, load_site

IDLE_CPU = 2.0  # percent an idle HTCondor worker burns


@dataclass
class Worker:
    ready_at: float
    job_left: float = 0.0  # seconds of work left in the running job, 0 = idle
    free_at: float = 0.0  # idle until then after a job (HTCondor's fetch-and-upload gap)

    def cpu(self, now: float) -> float:
        if now < self.ready_at:
            return 0.0  # booting: no samples yet (no Gnocchi resource)
        return 100.0 if self.job_left > 0 else IDLE_CPU


@dataclass(frozen=True)
class Result:
    wall_seconds: float
    work_seconds: float
    peak_workers: int
    scale_ups: int
    scale_downs: int
    lost_seconds: float

    @property
    def factor(self) -> float:
        return self.work_seconds / self.wall_seconds


def simulate(*, jobs: int, job_seconds: float, min_size: int, max_size: int, desired: int,
             cpu_high: float, cpu_low: float, granularity: int, evaluation_periods: int,
             cooldown: int, up_step: int, down_step: int, low_alarm: bool,
             evaluation_interval: int, boot_seconds: float, update_seconds: float,
             between_seconds: float = 0.0, limit_seconds: float = 7 * 24 * 3600) -> Result:
    queue: deque[float] = deque([job_seconds] * jobs)
    workers = [Worker(ready_at=0.0) for _ in range(desired)]
    buckets: list[float] = []
    bucket_sum = 0.0
    bucket_n = 0
    cooldown_until = 0.0
    pending: list[tuple[float, int]] = []  # (time the update finishes, adjustment)
    ups = downs = 0
    lost = 0.0
    peak = len(workers)
    now = 0.0
    step = 1.0
    while (queue or any(w.job_left > 0 for w in workers)) and now < limit_seconds:
        for worker in workers:
            if worker.ready_at <= now and worker.job_left <= 0 and worker.free_at <= now \
                    and queue:
                worker.job_left = queue.popleft()
        ready = [w for w in workers if w.ready_at <= now]
        if ready:
            bucket_sum += sum(w.cpu(now) for w in ready) / len(ready)
            bucket_n += 1
        if int(now + step) // granularity != int(now) // granularity:
            buckets.append(bucket_sum / bucket_n if bucket_n else float("nan"))
            bucket_sum, bucket_n = 0.0, 0
        if int(now) % evaluation_interval == 0 and len(buckets) >= evaluation_periods:
            recent = buckets[-evaluation_periods:]
            adjustment = 0
            if all(v > cpu_high for v in recent):
                adjustment = up_step
            elif low_alarm and all(v < cpu_low for v in recent):
                adjustment = -down_step
            if adjustment and now >= cooldown_until and not pending:
                pending.append((now + update_seconds, adjustment))
        for when, adjustment in list(pending):
            if when <= now:
                pending.remove((when, adjustment))
                target = max(min_size, min(max_size, len(workers) + adjustment))
                while len(workers) < target:
                    workers.append(Worker(ready_at=now + boot_seconds))
                    ups += 1
                while len(workers) > target:
                    gone = workers.pop(0)  # Heat removes the oldest member
                    if gone.job_left > 0:
                        lost += job_seconds - gone.job_left
                        queue.appendleft(job_seconds)
                    downs += 1
                cooldown_until = now + cooldown
        peak = max(peak, len(workers))
        for worker in workers:
            if worker.ready_at <= now and worker.job_left > 0:
                worker.job_left -= step
                if worker.job_left <= 0:
                    worker.free_at = now + step + between_seconds
        now += step
    return Result(now, jobs * job_seconds, peak, ups, downs, lost)


def only_group(site: Site, path: Path) -> Group | None:
    """The site's one worker group; None, said on stderr, for a site of several."""
    group = site.group(None)
    if group is None:
        print(f"error: {path}: the bench takes a site of one worker group "
              f"(got {len(site.groups)})", file=sys.stderr)
    return group


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("site", type=Path, nargs="?",
                        default=Path(__file__).resolve().parents[1] / "examples" / "thesis.yaml")
    parser.add_argument("--jobs", type=int, default=72,
                        help="jobs in the queue (default 72, as in the thesis)")
    parser.add_argument("--job-minutes", type=float, default=10.0,
                        help="CPU minutes per job (default 10: 72 jobs keep 7 workers busy "
                        "for ~100 min)")
    parser.add_argument("--max", type=int, default=7, help="workers.max for the run (default 7)")
    parser.add_argument("--evaluation-interval", type=int, default=60,
                        help="Aodh evaluation interval in s (default 60, Aodh's default)")
    parser.add_argument("--boot-seconds", type=float, default=180.0,
                        help="new worker to running jobs (default 180)")
    parser.add_argument("--update-seconds", type=float, default=10.0,
                        help="Heat's group update after a signal (default 10)")
    parser.add_argument("--between-seconds", type=float, default=20.0,
                        help="gap between two jobs on a worker (default 20, the thesis's "
                        "measured fetch-and-upload overhead)")
    args = parser.parse_args(argv)
    site = load_site(args.site)
    group = only_group(site, args.site)
    if group is None:
        return 2
    scaling = group.autoscaling
    result = simulate(
        jobs=args.jobs, job_seconds=args.job_minutes * 60, min_size=group.min,
        max_size=args.max, desired=group.desired, cpu_high=scaling.cpu_high,
        cpu_low=scaling.cpu_low, granularity=scaling.granularity,
        evaluation_periods=scaling.evaluation_periods, cooldown=scaling.cooldown,
        up_step=scaling.scale_up_step, down_step=scaling.scale_down_step,
        low_alarm=scaling.scale_in is ScaleIn.ALARM,
        evaluation_interval=args.evaluation_interval, boot_seconds=args.boot_seconds,
        update_seconds=args.update_seconds, between_seconds=args.between_seconds,
    )
    print(f"site {site.site}: step +{scaling.scale_up_step}/-{scaling.scale_down_step}, "
          f"cooldown {scaling.cooldown} s, granularity {scaling.granularity} s x "
          f"{scaling.evaluation_periods}, thresholds {scaling.cpu_high:g}/{scaling.cpu_low:g} %")
    print(f"work {result.work_seconds / 3600:.2f} h, wall {result.wall_seconds / 3600:.2f} h, "
          f"peak {result.peak_workers} workers, {result.scale_ups} added, "
          f"{result.scale_downs} removed, {result.lost_seconds / 60:.0f} min of work lost")
    print(f"scaling factor {result.factor:.3f} of {args.max} "
          f"(thesis: 6.0 and 6.587 of 7)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
