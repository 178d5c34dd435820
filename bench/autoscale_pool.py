"""The thesis's scaling-factor experiment on the sandbox's real pool,
queue mode (`heatgen autoscale`) against CPU-alarm mode (Aodh + Heat's policies), in one run.

    sudo HEATGEN_POOL_BASE_DIR=... python bench/autoscale_pool.py [--jobs 28 --job-seconds 120]
        [--max 7] [--interval 15] [--modes queue,cpu] [--out DIR] [--state-dir DIR]

It starts one sandbox with both `--pool` and `--telemetry` (a real Keystone, Heat, Gnocchi and
Aodh, and a pool agent booting every Nova server as a namespace host running HTCondor), and
for each mode, one after the other: deploys examples/debian13.yaml (workers min 1, max
``--max``, 2 vCPUs; a 5 s negotiation cycle in both modes), waits for the first worker to join,
submits ``--jobs`` real HTCondor jobs of ``--job-seconds`` each with ``request_cpus`` = the
worker's CPUs (one job keeps one worker busy; the queue needs ``--max`` workers for a while),
and samples the group size and the running and idle jobs until the last job is done.

- queue mode: `autoscaling.mode: queue` (no CPU alarms); `heatgen autoscale SITE` runs as a
  subprocess and decides from the job queue.
- CPU mode: the thesis's alarms (`cpu_high` 50 %, `cpu_low` 10 %, 60 s buckets, one period,
  cooldown 60 s, steps of 1, `scale_in: alarm`: Heat removes the oldest member, busy or not).
  The sandbox has no Ceilometer: nothing reports the hosts' CPU to Gnocchi, and the namespace
  hosts share the machine's cores (a sleeping job shows ~0 % CPU; seven CPU-burning hosts on a
  2-core machine would each show well under the 50 % threshold). So this bench plays
  Ceilometer: **the CPU a member reports follows its claimed slots** (the CPUs its running
  jobs requested, 100 % while they run, 2 % idle), what a CPU-bound job shows on a real VM. A
  member reports from the moment the collector lists it, one cumulative sample per bucket.

Reported per mode: the scaling factor (work time of the completed jobs / wall time from the
submit to the last job done), the time from the submit to full size (``--max`` members in
Heat's group), jobs restarted (`NumJobStarts` > 1; the job log's evictions, aborts and failed
reconnections), and busy workers removed (a member that left the group, or whose host died,
while a job ran on it). A table on stdout, the samples as JSON and a PNG of group size, running
and idle jobs over time (needs matplotlib: `pip install -e '.[bench]'`) in ``--out``.

A removed busy worker's job comes back only when its shadow gives up reconnecting, after the
job lease (HTCondor's default is 40 minutes): the jobs are submitted with
``job_lease_duration = --job-lease`` (default 120 s) so that a run with losses still ends.

Everything it starts (the sandbox's processes, hosts and bridge, in a temporary state dir, on
free loopback ports; the `heatgen autoscale` subprocess) is stopped by PID and name at the end,
also on failure, Ctrl-C or SIGTERM. With ``--state-dir`` it uses a running sandbox started with
`--pool --telemetry` instead and only deletes the stacks it made. Figures only, no pass/fail.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
HEATGEN = [sys.executable, "-m", "heatgen"]
MODES = ("queue", "cpu")
IDLE_CPU = 2.0  # percent a member reports with no job (as in bench/scaling_sandbox.py)
PUSH_OFFSET = 2.0  # seconds into a bucket the CPU samples are sent
FAST_NEGOTIATOR = '  extra_config: ["NEGOTIATOR_INTERVAL = 5", "NEGOTIATOR_CYCLE_DELAY = 5"]\n'
USER = "bench"
RESTART_EVENTS = ("Job was evicted", "Job was aborted", "Job reconnection failed")


# --- the pure part: figures from samples (tests/test_autoscale_bench.py) --------------------


@dataclass(frozen=True)
class Sample:
    """One look at a grid, ``t`` seconds after the jobs were submitted."""

    t: float
    size: int  # members of Heat's group
    running: int
    idle: int
    done: int
    busy_members: int = 0  # members a job runs on


@dataclass(frozen=True)
class JobRecord:
    """One finished job, from its history ad (times in seconds since the epoch)."""

    started: float  # JobCurrentStartDate: the start of its last (completed) run
    completed: float
    starts: int  # NumJobStarts


@dataclass
class Figures:
    mode: str
    jobs: int
    jobs_done: int
    work_seconds: float
    wall_seconds: float | None
    scaling_factor: float | None
    full_size: int
    time_to_full: float | None
    peak_size: int
    jobs_restarted: int
    restart_events: int
    busy_removed: int
    members_removed: int

    @property
    def lost(self) -> int:
        """Jobs that lost a run (restarted) or never finished."""
        return self.jobs_restarted + (self.jobs - self.jobs_done)


def scaling_factor(work_seconds: float, wall_seconds: float | None) -> float | None:
    """The thesis's figure: work time / wall time (7 for 7 workers busy from the start)."""
    if wall_seconds is None or wall_seconds <= 0:
        return None
    return work_seconds / wall_seconds


def time_to_full(samples: Sequence[Sample], full: int) -> float | None:
    """Seconds from the submit to the first sample with ``full`` members; None if never."""
    return next((s.t for s in samples if s.size >= full), None)


def work_and_wall(jobs: Sequence[JobRecord], submitted: float) -> tuple[float, float | None]:
    """Useful work (the completed run of each job) and the wall time from the submit to the
    last job done."""
    work = sum(max(0.0, j.completed - j.started) for j in jobs)
    wall = max(j.completed for j in jobs) - submitted if jobs else None
    return work, wall


def figures(mode: str, jobs: int, full: int, submitted: float, samples: Sequence[Sample],
            finished: Sequence[JobRecord], restart_events: int, busy_removed: int,
            members_removed: int) -> Figures:
    work, wall = work_and_wall(finished, submitted)
    if len(finished) < jobs:
        wall = None  # the queue was not worked off: no wall time to divide by
    return Figures(
        mode=mode, jobs=jobs, jobs_done=len(finished), work_seconds=work, wall_seconds=wall,
        scaling_factor=scaling_factor(work, wall), full_size=full,
        time_to_full=time_to_full(samples, full),
        peak_size=max((s.size for s in samples), default=0),
        jobs_restarted=sum(1 for j in finished if j.starts > 1),
        restart_events=restart_events, busy_removed=busy_removed,
        members_removed=members_removed,
    )


def busy_share(running_cpus: float, cpus: int) -> float:
    return max(0.0, min(1.0, running_cpus / cpus)) if cpus > 0 else 0.0


def cpu_percent(busy_seconds: float, span: float) -> float:
    """What a member reports for a bucket: 100 % for the share of it a job ran, else idle."""
    share = max(0.0, min(1.0, busy_seconds / span)) if span > 0 else 0.0
    return 100.0 * share + IDLE_CPU * (1.0 - share)


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} s"


def table(results: Sequence[Figures]) -> str:
    rows = [("mode", "scaling factor", "work / wall", "time to full size", "peak",
             "jobs done", "jobs restarted (events)", "busy workers removed", "members removed")]
    for f in results:
        rows.append((
            f.mode,
            "-" if f.scaling_factor is None else f"{f.scaling_factor:.2f} of {f.full_size}",
            f"{f.work_seconds / 60:.0f} min / "
            + ("-" if f.wall_seconds is None else f"{f.wall_seconds / 60:.1f} min"),
            _seconds(f.time_to_full) if f.time_to_full is not None or f.peak_size >= f.full_size
            else f"never (peak {f.peak_size})",
            str(f.peak_size), f"{f.jobs_done}/{f.jobs}",
            f"{f.jobs_restarted} ({f.restart_events})", str(f.busy_removed),
            str(f.members_removed),
        ))
    lines = ["| " + " | ".join(row) + " |" for row in rows]
    lines.insert(1, "| " + " | ".join("---" for _ in rows[0]) + " |")
    return "\n".join(lines)


def verdict(results: Sequence[Figures], target: float = 1.2) -> str | None:
    by_mode = {f.mode: f for f in results}
    queue, cpu = by_mode.get("queue"), by_mode.get("cpu")
    if queue is None or cpu is None:
        return None
    if queue.scaling_factor is None or cpu.scaling_factor is None:
        return "target not measurable: a mode did not work off its queue"
    ratio = queue.scaling_factor / cpu.scaling_factor
    met = ratio >= target and queue.lost == 0
    return (f"queue / CPU scaling factor {ratio:.2f} (target >= {target}); jobs lost: queue "
            f"{queue.lost}, CPU {cpu.lost}: target {'met' if met else 'NOT met'}")


# --- the grid ---------------------------------------------------------------------------------


def site_text(mode: str, name: str, max_size: int, interval: int) -> str:
    text = (REPO / "examples" / "debian13.yaml").read_text()
    text = text.replace("site: debian13-grid", f"site: {name}")
    text = text.replace('  version: "23.9"\n', '  version: "23.9"\n' + FAST_NEGOTIATOR)
    text = text.replace("  max: 7\n", f"  max: {max_size}\n")
    if mode == "queue":
        scaling = text[text.index("autoscaling:\n"):text.index("condor:\n")]
        text = text.replace(scaling, f"autoscaling:\n  mode: queue\n  telemetry: none\n"
                                     f"  interval: {interval}\n  idle_timeout: 60\n"
                                     "  join_timeout: 300\n  max_scale_in: 2\n")
    return text


def submit_text(jobs: int, job_seconds: float, cpus: int, lease: int) -> str:
    return (f"executable = /bin/sleep\narguments = {job_seconds:g}\nrequest_cpus = {cpus}\n"
            "request_memory = 32\nrequest_disk = 1024\ntransfer_executable = false\n"
            "should_transfer_files = YES\nwhen_to_transfer_output = ON_EXIT\n"
            f"job_lease_duration = {lease}\nlog = /home/{USER}/jobs.log\nqueue {jobs}\n")


class Grid:
    """One deployed stack of the bench in the sandbox: Heat's view and commands on its master."""

    def __init__(self, config: Any, name: str) -> None:
        from heatclient import client as heat_client

        from heatgen.sandbox import control
        from heatgen.sandbox.pool import network

        self.name = name
        self.heat = heat_client.Client("1", session=control.session(config))
        self.hosts = network.hosts_of(config)
        self._master: str | None = None

    def outputs(self) -> dict[str, Any]:
        shown = self.heat.stacks.get(self.name)
        return {o["output_key"]: o.get("output_value") for o in shown.outputs or []}

    def members(self) -> list[str]:
        return [str(s) for s in (self.outputs().get("worker_server_ids") or {}).values()]

    @property
    def master(self) -> str:
        if self._master is None:
            self._master = str(self.outputs()["master_id"])
        return self._master

    def run(self, *command: str, input_text: str | None = None, check: bool = True) -> str:
        done = self.hosts.run(self.master, list(command), input_text=input_text, timeout=120)
        if check and done.returncode != 0:
            raise RuntimeError(f"{command[0]} on the master failed: {done.stderr.strip()[-500:]}")
        return done.stdout

    def look(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The collector's startd ads and the schedd's queue, in one command on the master."""
        out = self.run("sh", "-c", (
            "condor_status -json -attributes Machine,HeatGenServerId,TotalCpus; echo '@@'; "
            "condor_q -allusers -json -attributes ClusterId,ProcId,JobStatus,RemoteHost,"
            "RequestCpus"))
        machines, _, queue = out.partition("@@")
        return json.loads(machines.strip() or "[]"), json.loads(queue.strip() or "[]")


# --- one mode ---------------------------------------------------------------------------------


@dataclass
class Run:
    mode: str
    samples: list[Sample] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    figures: Figures | None = None
    cpu_note: str | None = None


def _env(config: Any) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    env["HEATGEN_SANDBOX_DIR"] = str(config.state_dir)
    return env


def heatgen(config: Any, work: Path, *argv: str, timeout: float = 1200) -> None:
    log = work / f"heatgen-{argv[0]}.log"
    with open(log, "a") as out:
        done = subprocess.run([*HEATGEN, *argv], env=_env(config), stdout=out,
                              stderr=subprocess.STDOUT, timeout=timeout, check=False)
    lines = log.read_text().splitlines()
    if done.returncode != 0:
        raise RuntimeError(f"heatgen {' '.join(argv[:1])} failed (exit {done.returncode}):\n"
                           + "\n".join(lines[-15:]))


def _until(what: str, check: Any, timeout: float, poll: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not happen within {timeout:.0f} s")
        time.sleep(poll)


class CpuReporter:
    """Ceilometer's part for the CPU mode: per member, the share of each bucket its claimed
    slots ran a job, as cumulative `cpu` measures in Gnocchi (heatgen.sandbox.loadgen)."""

    def __init__(self, site_path: Path, config: Any, granularity: int, vcpus: int) -> None:
        from heatgen.sandbox import loadgen

        self.loadgen = loadgen
        self.granularity = granularity
        self.vcpus = vcpus
        self.reporting: list[str] = []
        self.busy: dict[str, float] = {}
        self.since: dict[str, float] = {}
        self.generator = loadgen.for_sandbox(site_path, 0.0, state_dir=config.state_dir)
        self.generator.workers = lambda: list(self.reporting)
        self.generator.percent_of = self._percent
        self.next_push = time.time()
        self.last: float | None = None
        self.pushed: list[tuple[float, float]] = []  # (time, the group's mean percent)

    def _percent(self, server_id: str) -> float:
        now = time.time()
        since = self.since.get(server_id, now - self.granularity)
        percent = cpu_percent(self.busy.pop(server_id, 0.0), now - since)
        self.since[server_id] = now
        return percent

    def observe(self, now: float, joined: list[str], running_cpus: dict[str, float]) -> None:
        """Members the collector lists report; each accrues the time its slots were busy."""
        if self.last is not None:
            for server_id in self.reporting:
                share = busy_share(running_cpus.get(server_id, 0.0), self.vcpus)
                self.busy[server_id] = self.busy.get(server_id, 0.0) + share * (now - self.last)
        for server_id in joined:
            self.since.setdefault(server_id, now)
        self.reporting = sorted(joined)
        self.last = now
        if now >= self.next_push:
            self.generator.sync_members()
            before = dict(self.generator.counters)
            self.generator.push(datetime.fromtimestamp(now, UTC))
            step = self.loadgen.increment(100.0, self.granularity, self.vcpus)
            grown = [(self.generator.counters[s] - before[s]) / step * 100.0
                     for s in before if s in self.generator.counters]
            if grown:
                self.pushed.append((now, sum(grown) / len(grown)))
            self.next_push = self.loadgen.next_bucket(now, self.granularity, PUSH_OFFSET)

    def stop(self) -> None:
        self.reporting = []
        with contextlib.suppress(Exception):
            self.generator.sync_members()  # ends the members' resources


@contextlib.contextmanager
def autoscaler(config: Any, work: Path, site_path: Path, interval: int) -> Iterator[Path]:
    """`heatgen autoscale SITE` as a subprocess, stopped by its PID (SIGTERM) at the end."""
    records = work / "autoscale.jsonl"
    with open(records, "w") as out, open(work / "autoscale.err", "w") as err:
        loop = subprocess.Popen(
            [*HEATGEN, "autoscale", str(site_path), "--format", "json", "--interval",
             str(interval)], env=_env(config), stdout=out, stderr=err, start_new_session=True)
        try:
            yield records
        finally:
            if loop.poll() is None:
                loop.send_signal(signal.SIGTERM)
                try:
                    loop.wait(timeout=300)
                except subprocess.TimeoutExpired:
                    loop.kill()
                    loop.wait()


def run_mode(args: argparse.Namespace, config: Any, work: Path, mode: str) -> Run:
    name = f"abench-{mode}"
    site_path = work / f"{name}.yaml"
    site_path.write_text(site_text(mode, name, args.max, args.interval))
    result = Run(mode)

    def say(message: str) -> None:
        print(f"[{mode}] {message}", flush=True)

    say(f"deploying {name} (workers 1..{args.max})")
    started = time.monotonic()
    heatgen(config, work, "deploy", str(site_path))
    try:
        grid = Grid(config, name)
        say(f"deployed in {time.monotonic() - started:.0f} s; waiting for the first worker")
        def workers() -> list[dict[str, Any]]:
            return [ad for ad in grid.look()[0] if ad.get("HeatGenServerId")]

        _until("the first worker in the pool", lambda: bool(workers()), 300)
        cpus = int(workers()[0].get("TotalCpus") or 1)
        grid.run("sh", "-c", f"id {USER} >/dev/null 2>&1 || useradd -m {USER}")
        measure(args, config, work, grid, site_path, mode, cpus, result, say)
    except (KeyboardInterrupt, Stop):
        if not args.state_dir:
            raise  # the sandbox goes down with every host: no need to wait for a delete
        say("interrupted; deleting the stack")
        heatgen(config, work, "delete", str(site_path), "--yes")
        raise
    except BaseException:
        with contextlib.suppress(Exception):
            heatgen(config, work, "delete", str(site_path), "--yes")
        raise
    say("deleting the stack")
    heatgen(config, work, "delete", str(site_path), "--yes")
    return result


def measure(args: argparse.Namespace, config: Any, work: Path, grid: Grid, site_path: Path,
            mode: str, cpus: int, result: Run, say: Any) -> None:
    from heatgen.config import load_site

    site = load_site(site_path)
    reporter = None
    if mode == "cpu":
        reporter = CpuReporter(site_path, config, site.autoscaling.granularity,
                               site.groups[0].vcpus)
        result.cpu_note = ("the CPU each member reports follows its claimed slots (100 % while "
                           "a job runs on them, 2 % idle); the bench plays Ceilometer")
        say(result.cpu_note)
    submit = submit_text(args.jobs, args.job_seconds, cpus, args.job_lease)
    grid.run("su", "-s", "/bin/sh", USER, "-c",
             f"cd /home/{USER} && cat > job.sub && condor_submit job.sub", input_text=submit)
    submitted = time.time()
    say(f"submitted {args.jobs} jobs x {args.job_seconds:g} s (request_cpus {cpus})")
    machine_of: dict[str, str] = {}  # Machine -> server id
    busy_before: set[str] = set()
    alive_before: set[str] = set()
    gone: set[str] = set()
    busy_removed = 0
    with contextlib.ExitStack() as stack:
        if mode == "queue":
            stack.enter_context(autoscaler(config, work, site_path, args.interval))
        if reporter is not None:
            stack.callback(reporter.stop)
        last_line = ""
        while True:
            now = time.time()
            t = now - submitted
            members = grid.members()
            alive = {s for s in members if grid.hosts.alive(s)}
            machines, queue = grid.look()
            for ad in machines:
                if ad.get("HeatGenServerId") and ad.get("Machine"):
                    machine_of[str(ad["Machine"])] = str(ad["HeatGenServerId"])
            listed = {str(ad.get("HeatGenServerId")) for ad in machines}
            running_cpus: dict[str, float] = {}
            for job in queue:
                if job.get("JobStatus") == 2 and job.get("RemoteHost"):
                    server = machine_of.get(str(job["RemoteHost"]).split("@")[-1])
                    if server is not None:
                        running_cpus[server] = running_cpus.get(server, 0.0) + float(
                            job.get("RequestCpus") or cpus)
            busy = {s for s in running_cpus if s in alive}
            # A member counts from the moment its host runs (Heat lists it before it boots).
            for server in sorted(alive_before - alive - gone):
                gone.add(server)
                if server in busy_before:
                    busy_removed += 1
                    result.events.append(f"t+{t:.0f} s: busy worker {server} removed")
                    say(result.events[-1])
            alive_before |= alive
            busy_before = busy
            running = sum(1 for j in queue if j.get("JobStatus") == 2)
            idle = sum(1 for j in queue if j.get("JobStatus") == 1)
            done = args.jobs - sum(1 for j in queue if j.get("JobStatus") != 4)
            sample = Sample(round(t, 1), len(members), running, idle, done, len(busy))
            result.samples.append(sample)
            if reporter is not None:
                reporter.observe(now, sorted(alive & listed), running_cpus)
            line = f"{len(members)} members, {running} running, {idle} idle, {done} done"
            if line != last_line:
                say(f"t+{t:5.0f} s: {line}")
                last_line = line
            if done >= args.jobs:
                break
            if t > args.timeout:
                say(f"timed out after {args.timeout:.0f} s")
                break
            time.sleep(max(0.0, args.sample - (time.time() - now)))
    finished, restart_events = history(grid)
    result.figures = figures(mode, args.jobs, args.max, submitted, result.samples, finished,
                             restart_events, busy_removed, len(gone))
    if reporter is not None and reporter.pushed:
        means = ", ".join(f"{p[0] - submitted:.0f} s: {p[1]:.0f} %" for p in reporter.pushed)
        result.events.append(f"group mean CPU reported per bucket: {means}")
    if mode == "queue":
        result.events.extend(autoscale_actions(work / "autoscale.jsonl", submitted))


def history(grid: Grid) -> tuple[list[JobRecord], int]:
    out = grid.run("condor_history", "-json", "-attributes",
                   "ClusterId,ProcId,JobStatus,NumJobStarts,JobCurrentStartDate,CompletionDate")
    ads = json.loads(out.strip() or "[]")
    finished = [JobRecord(float(a["JobCurrentStartDate"]), float(a["CompletionDate"]),
                          int(a.get("NumJobStarts") or 1))
                for a in ads if a.get("JobStatus") == 4 and a.get("CompletionDate")]
    log = grid.run("cat", f"/home/{USER}/jobs.log", check=False)
    return finished, sum(log.count(event) for event in RESTART_EVENTS)


def autoscale_actions(records: Path, submitted: float) -> list[str]:
    """What `heatgen autoscale` did, one line per decision that acted."""
    lines = []
    with contextlib.suppress(OSError):
        for line in records.read_text().splitlines():
            if not line.startswith("{"):
                continue
            record = json.loads(line)
            if record.get("actions"):
                stamp = record.get("time")
                when = (float(stamp) if isinstance(stamp, int | float) else
                        datetime.fromisoformat(str(stamp)).timestamp()) - submitted
                lines.append(f"autoscale t+{when:.0f} s: " + "; ".join(record["actions"]))
    return lines


# --- output -----------------------------------------------------------------------------------


def plot(runs: Sequence[Run], path: Path, title: str) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("no matplotlib: no plot (pip install -e '.[bench]')", file=sys.stderr)
        return False
    shown = [r for r in runs if r.samples]
    fig, axes = plt.subplots(1, len(shown), figsize=(5.2 * len(shown), 3.4), sharey=True,
                             squeeze=False)
    for axis, run in zip(axes[0], shown, strict=True):
        minutes = [s.t / 60 for s in run.samples]
        axis.step(minutes, [s.size for s in run.samples], where="post", label="group size",
                  color="black", linewidth=1.8)
        axis.plot(minutes, [s.running for s in run.samples], label="running jobs",
                  color="tab:green")
        axis.plot(minutes, [s.idle for s in run.samples], label="idle jobs", color="tab:orange")
        f = run.figures
        factor = "" if f is None or f.scaling_factor is None else (
            f": scaling factor {f.scaling_factor:.2f}")
        axis.set_title(f"{run.mode} mode{factor}", fontsize=10)
        axis.set_xlabel("minutes since submit")
        axis.grid(alpha=0.3)
    axes[0][0].set_ylabel("workers / jobs")
    axes[0][0].legend(fontsize=8, loc="upper right")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=72)
    plt.close(fig)
    return True


def write_json(runs: Sequence[Run], args: argparse.Namespace, path: Path) -> None:
    document = {
        "settings": {"jobs": args.jobs, "job_seconds": args.job_seconds, "max": args.max,
                     "interval": args.interval, "sample": args.sample,
                     "job_lease": args.job_lease, "cpus": os.cpu_count()},
        "runs": [{"mode": r.mode, "figures": None if r.figures is None else asdict(r.figures),
                  "cpu_note": r.cpu_note, "events": r.events,
                  "samples": [asdict(s) for s in r.samples]} for r in runs],
    }
    path.write_text(json.dumps(document, indent=1) + "\n")


# --- the sandbox ------------------------------------------------------------------------------


class Stop(Exception):
    """SIGTERM: end like Ctrl-C, through every cleanup."""


def _on_term(signum: int, frame: Any) -> None:
    raise Stop(f"signal {signum}")


def start_sandbox(work: Path) -> Any:
    from heatgen.sandbox import control
    from heatgen.sandbox.settings import on_free_ports

    state = work / "sandbox"
    state.mkdir()
    work.chmod(0o711)  # as root PostgreSQL runs as its own user and must reach its cluster
    state.chmod(0o711)
    config = replace(on_free_ports(state, telemetry=True, start_timeout=300), pool=True)
    started = control.up(config, progress=lambda m: print(f"sandbox: {m}", flush=True))
    print(f"sandbox (--pool --telemetry) up in {started.startup_seconds:.0f} s", flush=True)
    return config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=28, help="jobs in the queue (default 28)")
    parser.add_argument("--job-seconds", type=float, default=120.0,
                        help="duration of each job (default 120: 28 jobs keep 7 workers busy "
                        "for 8 minutes)")
    parser.add_argument("--max", type=int, default=7, help="workers.max (default 7)")
    parser.add_argument("--interval", type=int, default=15,
                        help="queue mode's decision interval in s (default 15)")
    parser.add_argument("--sample", type=float, default=5.0,
                        help="seconds between samples (default 5)")
    parser.add_argument("--job-lease", type=int, default=120,
                        help="job_lease_duration of the jobs in s (default 120)")
    parser.add_argument("--modes", default=",".join(MODES),
                        help="modes to run, in order (default queue,cpu)")
    parser.add_argument("--timeout", type=float, default=3600.0,
                        help="give up on a mode this many seconds after its submit")
    parser.add_argument("--out", type=Path, default=Path("autoscale-pool"),
                        help="directory for autoscale_pool.json and autoscale_pool.png")
    parser.add_argument("--state-dir", type=Path,
                        help="a running sandbox started with --pool --telemetry to use")
    args = parser.parse_args(argv)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not modes or any(m not in MODES for m in modes):
        parser.error(f"--modes: choose from {', '.join(MODES)}")
    if args.jobs < 1 or args.max < 1 or args.job_seconds <= 0:
        parser.error("--jobs, --max and --job-seconds must be positive")
    if os.geteuid() != 0:
        print("error: the sandbox's pool needs root (its hosts are namespaces)", file=sys.stderr)
        return 2

    from heatgen.sandbox import control

    previous = signal.signal(signal.SIGTERM, _on_term)
    work = Path(tempfile.mkdtemp(prefix="heatgen-autoscale-bench-"))
    config = None
    owned = args.state_dir is None
    runs: list[Run] = []
    began = time.monotonic()
    try:
        if owned:
            config = start_sandbox(work)
        else:
            from heatgen.sandbox.settings import resolve_config

            config = resolve_config(str(args.state_dir))
            if not (config.pool and config.telemetry):
                print("error: --state-dir: needs a sandbox started with --pool --telemetry",
                      file=sys.stderr)
                return 2
        for mode in modes:
            runs.append(run_mode(args, config, work, mode))
    except (KeyboardInterrupt, Stop) as reason:
        print(f"\ninterrupted ({reason or 'Ctrl-C'}); stopping what the bench started",
              file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not skip this
        if owned and config is not None:
            control.down(config)
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        shutil.rmtree(work, ignore_errors=True)
    print(f"\nboth modes in {(time.monotonic() - began) / 60:.1f} min; {args.jobs} jobs x "
          f"{args.job_seconds:g} s, max {args.max}, {os.cpu_count()} cores\n")
    for run in runs:
        for event in run.events:
            print(f"[{run.mode}] {event}")
    results = [r.figures for r in runs if r.figures is not None]
    print()
    print(table(results))
    for run in runs:
        if run.cpu_note:
            print(f"{run.mode} mode: {run.cpu_note}")
    judged = verdict(results)
    if judged:
        print(judged)
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(runs, args, args.out / "autoscale_pool.json")
    title = (f"{args.jobs} jobs x {args.job_seconds:g} s, workers 1..{args.max}, real HTCondor "
             "on the sandbox's pool")
    if plot(runs, args.out / "autoscale_pool.png", title):
        print(f"wrote {args.out / 'autoscale_pool.png'} and {args.out / 'autoscale_pool.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
