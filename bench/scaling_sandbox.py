"""The thesis's automatic-scaling experiment in miniature, for real, in a telemetry sandbox.

The grid is deployed from the site file (renamed, ``workers.max`` = ``--max``) into a sandbox
running Keystone, Heat, Gnocchi and Aodh (``heatgen sandbox up --telemetry``). A queue of
``--jobs`` CPU-bound jobs of ``--job-seconds`` each is worked off by the group's members as
Heat creates and removes them: a member runs jobs ``--boot-seconds`` after it appears, one at
a time with ``--between-seconds`` between jobs (HTCondor's fetch-and-upload gap), and its
measured CPU (100 % while a job runs, 2 % idle) goes to Gnocchi as Ceilometer would send it,
one cumulative sample per bucket. The grid's own Aodh alarms and Heat scaling policies do the
rest. A member Heat removes while it runs a job loses that job, which goes back to the queue.

Reported: the thesis's scaling factor (work time / wall time; 2017: 6.0 and 6.587 of 7), the
group size over time, jobs lost to scale-in, and what ``bench/scaling_factor.py``'s model
predicts for the same settings. Change ``autoscaling`` (steps, cooldown, thresholds,
evaluation periods) in the site file and compare, without cloud hours.

    python bench/scaling_sandbox.py [SITE.yaml] [--jobs 42 --job-seconds 120] [--until-min]
    python bench/scaling_sandbox.py --state-dir DIR   # a running `sandbox up --telemetry`

Needs the sandbox's telemetry extras and PostgreSQL (see README); takes about
20 minutes with the defaults (the sandbox's archive policy has 60 s buckets).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from scaling_factor import IDLE_CPU, only_group, simulate  # noqa: E402

from heatgen.config import ScaleIn, load_site  # noqa: E402

PUSH_OFFSET = 2.0  # seconds into a bucket the samples are sent (as in `sandbox load`)
MEMBER_POLL = 5.0  # seconds between reads of the group's members
TICK = 1.0


@dataclass
class Member:
    server_id: str
    ready_at: float
    job_started: float | None = None
    free_at: float = 0.0
    busy: float = 0.0  # seconds of job time since the last sample
    since: float = 0.0  # when the current sample period started for this member


@dataclass
class Queue:
    """The work queue and the members working it off; times are wall-clock seconds."""

    jobs: int
    job_seconds: float
    boot_seconds: float
    between_seconds: float
    members: dict[str, Member] = field(default_factory=dict)
    completed: int = 0
    killed: int = 0
    lost_seconds: float = 0.0
    last: float | None = None

    @property
    def waiting(self) -> int:
        return self.jobs - self.completed - self.running

    @property
    def running(self) -> int:
        return sum(m.job_started is not None for m in self.members.values())

    @property
    def done(self) -> bool:
        return self.completed >= self.jobs

    def sync(self, server_ids: list[str], now: float) -> None:
        """Members Heat added start booting; members it removed lose their running job."""
        current = set(server_ids)
        for gone in sorted(set(self.members) - current):
            member = self.members.pop(gone)
            if member.job_started is not None:
                self.killed += 1
                self.lost_seconds += now - member.job_started
        for new in sorted(current - set(self.members)):
            ready = now + self.boot_seconds
            self.members[new] = Member(new, ready_at=ready, free_at=ready, since=ready)

    def advance(self, now: float) -> None:
        """Finish the jobs whose time is up and hand out waiting ones."""
        last = now if self.last is None else self.last
        for member in self.members.values():
            if member.job_started is not None:
                end = member.job_started + self.job_seconds
                member.busy += max(0.0, min(now, end) - max(last, member.job_started))
                if now >= end:
                    self.completed += 1
                    member.job_started = None
                    member.free_at = end + self.between_seconds
            if member.job_started is None and now >= member.free_at and self.waiting > 0:
                member.job_started = now
        self.last = now

    def ready(self, now: float) -> list[str]:
        """Members that have booted (a booting server sends no samples yet)."""
        return sorted(m.server_id for m in self.members.values() if m.ready_at <= now)

    def sample(self, server_id: str, now: float) -> float:
        """CPU percent of one member since its last sample; starts a new period."""
        member = self.members[server_id]
        span = now - member.since
        share = min(1.0, member.busy / span) if span > 0 else 0.0
        member.busy, member.since = 0.0, now
        return 100.0 * share + IDLE_CPU * (1.0 - share)


def bench_site(source: Path, work: Path, max_size: int) -> Path:
    data = yaml.safe_load(source.read_text())
    data["site"] = "scaling-bench"
    data["workers"]["max"] = max_size
    data["workers"]["desired"] = data["workers"]["min"]
    path = work / "scaling-bench.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def start_sandbox(work: Path) -> Any:
    from heatgen.sandbox import control
    from heatgen.sandbox.settings import on_free_ports

    state = work / "sandbox"
    state.mkdir()
    work.chmod(0o711)  # as root PostgreSQL runs as its own user and must reach its cluster
    state.chmod(0o711)
    config = on_free_ports(state, telemetry=True, start_timeout=300)
    started = control.up(config)
    print(f"telemetry sandbox up in {started.startup_seconds:.0f} s", flush=True)
    return config


def run(args: argparse.Namespace, work: Path, config: Any) -> int:
    from heatgen.cli import main as cli
    from heatgen.sandbox import loadgen

    os.environ["HEATGEN_SANDBOX_DIR"] = str(config.state_dir)
    for name in ("OS_CLOUD", "OS_AUTH_URL"):
        os.environ.pop(name, None)
    site_path = bench_site(args.site, work, args.max)
    site = load_site(site_path)
    scaling = site.autoscaling
    print(f"site {args.site.name}: step +{scaling.scale_up_step}/-{scaling.scale_down_step}, "
          f"cooldown {scaling.cooldown} s, {scaling.granularity} s x "
          f"{scaling.evaluation_periods} buckets, thresholds {scaling.cpu_high:g}/"
          f"{scaling.cpu_low:g} %, workers {site.groups[0].min}..{args.max}", flush=True)
    print(f"queue: {args.jobs} jobs x {args.job_seconds:g} s "
          f"({args.jobs * args.job_seconds / 60:.0f} worker-minutes), boot "
          f"{args.boot_seconds:g} s, {args.between_seconds:g} s between jobs", flush=True)
    if quietly(cli, ["deploy", str(site_path)]) != 0:
        return 1
    try:
        return experiment(args, site, site_path, config, loadgen)
    finally:
        quietly(cli, ["delete", str(site_path), "--yes"])


def quietly(cli: Any, argv: list[str]) -> int:
    """Run a heatgen command showing only its last line, or all of it when it fails."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        code = int(cli(argv))
    lines = out.getvalue().splitlines()
    shown = lines if code else [line for line in lines if line.startswith("stack ")][-1:]
    print("\n".join(f"heatgen {argv[0]}: {line}" for line in shown), flush=True)
    return code


def experiment(args: argparse.Namespace, site: Any, site_path: Path, config: Any,
               loadgen: Any) -> int:
    queue = Queue(args.jobs, args.job_seconds, args.boot_seconds, args.between_seconds)
    generator = loadgen.for_sandbox(site_path, 0.0, state_dir=config.state_dir)
    members_of = generator.workers
    clock = time.time
    generator.workers = lambda: queue.ready(clock())
    generator.percent_of = lambda server_id: queue.sample(server_id, clock())
    start = clock()
    sizes: list[tuple[float, int]] = []
    next_poll = start
    next_push = start
    finished: float | None = None
    back_at_min: float | None = None
    while True:
        now = clock()
        if now >= next_poll:
            members = members_of()
            queue.sync(members, now)
            if not sizes or sizes[-1][1] != len(members):
                sizes.append((now - start, len(members)))
                print(f"  t+{now - start:5.0f} s: {len(members)} workers, "
                      f"{queue.completed}/{args.jobs} jobs done, {queue.running} running",
                      flush=True)
            next_poll = now + MEMBER_POLL
        queue.advance(now)
        if finished is None and queue.done:
            finished = now
            print(f"  t+{now - start:5.0f} s: queue empty", flush=True)
            if not args.until_min:
                break
        if finished is not None and sizes[-1][1] <= site.workers.min:
            back_at_min = now
            break
        if now >= next_push:
            generator.sync_members()
            generator.push(datetime.fromtimestamp(now, UTC))
            next_push = loadgen.next_bucket(now, site.autoscaling.granularity, PUSH_OFFSET)
        if now - start > args.timeout:
            print(f"timed out after {args.timeout:.0f} s with {queue.completed}/{args.jobs} "
                  "jobs done", file=sys.stderr)
            return 1
        time.sleep(max(0.0, min(TICK, next_push - clock(), next_poll - clock())))
    assert finished is not None
    report(args, site, queue, sizes, finished - start,
           None if back_at_min is None else back_at_min - finished)
    return 0


def report(args: argparse.Namespace, site: Any, queue: Queue, sizes: list[tuple[float, int]],
           wall: float, to_min: float | None) -> None:
    from heatgen.sandbox import telemetry

    scaling = site.autoscaling
    work = args.jobs * args.job_seconds
    peak = max(size for _, size in sizes)
    reached = next((t for t, size in sizes if size >= peak), 0.0)
    model = simulate(
        jobs=args.jobs, job_seconds=args.job_seconds, min_size=site.workers.min,
        max_size=args.max, desired=site.workers.min, cpu_high=scaling.cpu_high,
        cpu_low=scaling.cpu_low, granularity=scaling.granularity,
        evaluation_periods=scaling.evaluation_periods, cooldown=scaling.cooldown,
        up_step=scaling.scale_up_step, down_step=scaling.scale_down_step,
        low_alarm=scaling.scale_in is ScaleIn.ALARM,
        evaluation_interval=telemetry.EVALUATION_INTERVAL, boot_seconds=args.boot_seconds,
        update_seconds=10.0, between_seconds=args.between_seconds,
    )
    print("\ngroup size over time: " + ", ".join(f"{t:.0f} s: {n}" for t, n in sizes))
    print(f"work {work / 60:.0f} min in {wall / 60:.1f} min of wall time; peak {peak} workers "
          f"(reached after {reached:.0f} s); {queue.killed} running jobs killed by scale-in "
          f"({queue.lost_seconds / 60:.1f} min of work lost)")
    if to_min is not None:
        print(f"back at min ({site.workers.min}) {to_min:.0f} s after the queue emptied "
              "(thesis: 19 min)")
    print(f"scaling factor {work / wall:.3f} of {args.max} (thesis: 6.0 and 6.587 of 7); "
          f"bench/scaling_factor.py's model predicts {model.factor:.3f} for the same run")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("site", type=Path, nargs="?", default=REPO / "examples" / "thesis.yaml")
    parser.add_argument("--jobs", type=int, default=42, help="jobs in the queue (default 42)")
    parser.add_argument("--job-seconds", type=float, default=120.0,
                        help="CPU seconds per job (default 120: 42 jobs keep 7 workers busy "
                        "for 12 min)")
    parser.add_argument("--max", type=int, default=7, help="workers.max for the run (default 7)")
    parser.add_argument("--boot-seconds", type=float, default=30.0,
                        help="a new member's time to its first job (default 30)")
    parser.add_argument("--between-seconds", type=float, default=5.0,
                        help="gap between two jobs on a member (default 5)")
    parser.add_argument("--until-min", action="store_true",
                        help="after the queue empties, wait until the group is back at min")
    parser.add_argument("--timeout", type=float, default=3 * 3600,
                        help="give up after this many seconds (default 3 h)")
    parser.add_argument("--state-dir", type=Path,
                        help="a running sandbox started with --telemetry to use")
    args = parser.parse_args(argv)

    from heatgen.errors import HeatgenError
    from heatgen.sandbox import telemetry

    try:
        site = load_site(args.site)
    except HeatgenError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    group = only_group(site, args.site)
    if group is None:
        return 2
    scaling = site.autoscaling
    if scaling.telemetry != "gnocchi" or scaling.granularity != telemetry.GRANULARITY:
        print(f"error: {args.site}: autoscaling: the sandbox measures with Gnocchi in "
              f"{telemetry.GRANULARITY} s buckets (got telemetry {scaling.telemetry.value}, "
              f"granularity {scaling.granularity})", file=sys.stderr)
        return 2
    if not group.min <= args.max:
        print(f"error: --max {args.max} is below {group.where}.min {group.min}",
              file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="heatgen-scaling-"))
    config = None
    owned = args.state_dir is None
    try:
        if owned:
            config = start_sandbox(work)
        else:
            from heatgen.sandbox.settings import resolve_config

            config = resolve_config(str(args.state_dir))
        return run(args, work, config)
    except HeatgenError as error:
        print(f"error: {error}", file=sys.stderr)
        return 3
    finally:
        if owned and config is not None:
            from heatgen.sandbox import control

            control.down(config)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
