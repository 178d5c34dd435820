"""Issue #17's "killed at any moment" proof on the real pool: `heatgen scale` (the guarded
scale-in) and `heatgen autoscale --once` (a decision that removes a drained idle member)
SIGKILLed between marking a member for removal and the PATCH. Heat replaces a marked member at
the next update of any kind, busy or not; so after each kill the marked member is made busy (a
job lands on it) and the next decision runs (`heatgen autoscale --once`, a `heatgen scale` to
the same size, or a `heatgen deploy`): no member may be left marked, no busy member removed,
no job restarted, and the stack not left FAILED.

The kill lands in the window on purpose: the test watches the members' Heat status in a tight
loop and SIGKILLs the process when heatgen's mark (CHECK_FAILED with MARK_REASON) appears, after
a random extra delay (seeded) in the first quarter of the mark -> PATCH window. That window is
the one pool query heatgen makes between the two (the re-check that unmarks a member claimed
meanwhile); the test times the same query against the same master before the kills.

HEATGEN_KILLS=20 is the full case; CI runs HEATGEN_KILLS' default.
"""

from __future__ import annotations

import json
import math
import os
import random
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from .conftest import Sandbox
from .test_autoscale import HEATGEN, Heat, deployed, queue_site, submitter
from .test_pool import _jobs, _on_master, _outputs, _until

pytestmark = [pytest.mark.sandbox, pytest.mark.pool]

STACK = "kill-grid"
KILLS = int(os.environ.get("HEATGEN_KILLS", "4"))
SEED = os.environ.get("HEATGEN_KILLS_SEED", "mark-then-patch")
WORKERS = 4  # the group's size in every round: BUSY of them run a long job, the rest idle
BUSY = 2
USER = "dave"
# idle_timeout 0: an idle member is drained at the next decision; one member per decision
SCALING = "  interval: 10\n  idle_timeout: 0\n  max_scale_in: 1\n  join_timeout: 600\n"
NEXT = ("autoscale", "scale", "deploy")  # the next decisions, in turn


@pytest.fixture
def grid(pool_sandbox: Sandbox, env: dict[str, str], tmp_path: Path) -> Iterator[Path]:
    site = queue_site(tmp_path, STACK, maximum=WORKERS + 1, desired=WORKERS, scaling=SCALING)
    with deployed(pool_sandbox, env, site):
        yield site


@dataclass
class Processes:
    """Every heatgen this test starts, each in a session of its own: killed by its process
    group (it and the ssh it runs), and any still running is killed at the end."""

    started: list[subprocess.Popen[str]] = field(default_factory=list)

    def start(self, args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
        process = subprocess.Popen([*HEATGEN, *args], env=env, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True, start_new_session=True)
        self.started.append(process)
        return process

    def run(self, args: list[str], env: dict[str, str], timeout: float = 600,
            ) -> tuple[int, str, str]:
        process = self.start(args, env)
        try:
            out, err = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill(process)
            out, err = process.communicate()
            command = " ".join(args)
            raise AssertionError(f"heatgen {command} ran for {timeout:.0f} s:\n{err}") from None
        return process.returncode, out, err

    @staticmethod
    def kill(process: subprocess.Popen[str]) -> None:
        if process.poll() is None:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        process.wait()

    def stop_all(self) -> None:
        for process in self.started:
            self.kill(process)
            for stream in (process.stdout, process.stderr):
                if stream is not None:
                    stream.close()


@pytest.fixture
def processes() -> Iterator[Processes]:
    started = Processes()
    try:
        yield started
    finally:
        started.stop_all()


def _servers(sandbox: Sandbox) -> dict[str, str]:
    """The group's members by name: their server ids, from the stack's outputs."""
    return dict(_outputs(sandbox, STACK)["worker_server_ids"])


@dataclass(frozen=True)
class Machine:
    name: str  # the Machine attribute
    startd: str  # the partitionable slot's Name, which condor_drain finds it by
    draining: bool


def _machines(sandbox: Sandbox) -> dict[str, Machine]:
    """The pool's workers by server id."""
    listed = _on_master(sandbox, STACK, "condor_status", "-constraint", "PartitionableSlot",
                        "-af", "HeatGenServerId", "Machine", "Name", "Draining")
    machines = {}
    for line in listed.splitlines():
        server_id, machine, name, draining = line.split()
        machines[server_id] = Machine(machine, name, draining.lower() == "true")
    return machines


def _cancel_drain(sandbox: Sandbox, machine: Machine) -> None:
    _on_master(sandbox, STACK, "condor_drain", "-cancel", machine.startd)


def _submit(sandbox: Sandbox, name: str, seconds: int, cpus: int, count: int = 1,
            server_id: str | None = None) -> int:
    """Jobs of USER that take a whole worker (on ``server_id`` only, if given); the cluster."""
    where = f'requirements = TARGET.HeatGenServerId == "{server_id}"\n' if server_id else ""
    submit = (f"executable = /bin/sleep\narguments = {seconds}\nrequest_cpus = {cpus}\n"
              "request_memory = 32\nrequest_disk = 1024\ntransfer_executable = false\n"
              "should_transfer_files = YES\nwhen_to_transfer_output = ON_EXIT\n"
              f"{where}log = /home/{USER}/{name}.log\nqueue {count}\n")
    said = _on_master(sandbox, STACK, "su", "-s", "/bin/sh", USER, "-c",
                      f"cd /home/{USER} && cat > {name}.sub && condor_submit {name}.sub",
                      input_text=submit)
    return int(said.rsplit("cluster", 1)[1].strip(" .\n"))


def _running(sandbox: Sandbox) -> dict[tuple[int, int], tuple[str, int]]:
    """Running jobs: (cluster, proc) -> (the worker's machine, start date)."""
    return {(j["ClusterId"], j["ProcId"]): (str(j["RemoteHost"]).split("@")[-1],
                                            j["JobCurrentStartDate"])
            for j in _jobs(sandbox, STACK)
            if j.get("JobStatus") == 2 and j.get("JobCurrentStartDate")}


@dataclass
class Watched:
    """What the tight loop saw of one heatgen run."""

    mark_at: float | None = None  # monotonic time the mark was first seen
    marked: tuple[str, ...] = ()
    killed_at: float | None = None


def _kill_at_mark(heat: Heat, process: subprocess.Popen[str], delay: float) -> Watched:
    """Poll the group's members until heatgen's mark appears; SIGKILL the process ``delay``
    seconds later."""
    seen = Watched()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        marks = heat.marks()
        if marks:
            seen.mark_at, seen.marked = time.monotonic(), tuple(sorted(marks))
            break
    if seen.mark_at is not None:
        time.sleep(max(0.0, seen.mark_at + delay - time.monotonic()))
        seen.killed_at = time.monotonic()
    Processes.kill(process)
    return seen


def _pool_query_seconds(sandbox: Sandbox) -> float:
    """The mark -> PATCH window: heatgen asks the pool once between the two (the re-check that
    unmarks a member claimed meanwhile), as this does (the median of three)."""
    from heatgen.pool.ssh import SshPool
    from heatgen.sandbox import hooks

    pool = SshPool(str(_outputs(sandbox, STACK)["master_floating_ip"]),
                   identity_file=hooks.ssh_identity("grid-key", sandbox.config),
                   known_hosts=hooks.known_hosts(sandbox.config))
    took = []
    for _ in range(3):
        started = time.monotonic()
        pool.machines()
        took.append(time.monotonic() - started)
    return sorted(took)[1]


def _restore(pool_sandbox: Sandbox, env: dict[str, str], site: Path, run: Processes) -> None:
    """Back to WORKERS members, all in the pool, none draining, no probe job running."""
    if len(_servers(pool_sandbox)) < WORKERS:
        code, out, err = run.run(["scale", str(site), "--workers", str(WORKERS)], env)
        assert code == 0, err
    # (a run killed after its PATCH leaves the removed worker's ad until it expires)
    _until(f"{WORKERS} workers in the pool", lambda: set(_servers(pool_sandbox).values()) <=
           set(_machines(pool_sandbox)), 180, lambda: str(_machines(pool_sandbox)))
    members = set(_servers(pool_sandbox).values())

    def draining() -> list[Machine]:
        return [m for s, m in _machines(pool_sandbox).items() if s in members and m.draining]

    for machine in draining():
        _cancel_drain(pool_sandbox, machine)
    _until("no worker draining", lambda: not draining(), 60)


@dataclass
class Run:
    """The grid under test and what every kill round needs of it."""

    sandbox: Sandbox
    env: dict[str, str]
    site: Path
    processes: Processes
    heat: Heat
    cpus: int
    busy: set[str]  # the server ids running the long jobs
    window: float = 0.0  # the measured mark -> PATCH window

    def heatgen(self, *args: str) -> tuple[int, str, str]:
        return self.processes.run([args[0], str(self.site), *args[1:]], self.env)


def _kill_once(run: Run, number: int, kind: str, following: str, delay: float,
               ) -> dict[str, Any]:
    """One round: start `kind`, SIGKILL it ``delay`` s after its mark appears, land a job on
    the member it left marked, run the ``following`` decision; check what it left."""
    sandbox = run.sandbox
    record: dict[str, Any] = {"kill": number, "killed": kind, "next": following}
    _restore(sandbox, run.env, run.site, run.processes)
    machines = _machines(sandbox)
    if kind == "scale":
        args = ["scale", str(run.site), "--workers", str(WORKERS - 1)]
    else:
        # The decision before drains an idle member; the killed one removes it.
        code, out, err = run.heatgen("autoscale", "--once", "--format", "json")
        assert code == 0, err
        record["before_did"] = json.loads(out)["actions"]

        def removes() -> bool:
            code, out, _ = run.heatgen("autoscale", "--once", "--dry-run", "--format", "json")
            decided = json.loads(out) if code == 0 else {"groups": []}
            return any(m["action"] == "remove" for g in decided["groups"] for m in g["members"])

        _until("a decision that removes the drained member", removes, 60, poll=1.0)
        args = ["autoscale", str(run.site), "--once", "--format", "json"]
    before = run.heat.stack()[1]
    servers = _servers(sandbox)
    started = time.monotonic()
    process = run.processes.start(args, run.env)
    seen = _kill_at_mark(run.heat, process, delay)
    process.communicate()
    time.sleep(1.0)  # a PATCH in flight when the kill came reaches Heat meanwhile
    status, updated = run.heat.stack()
    standing = run.heat.marks()
    patched = updated != before or status.endswith("IN_PROGRESS")
    record.update({
        "mark_after_s": round(seen.mark_at - started, 3) if seen.mark_at else None,
        "killed_after_mark_s": round(delay, 3) if seen.killed_at else None,
        "exit": process.returncode, "marked": list(seen.marked),
        "mark_standing": sorted(standing), "patch_sent": patched,
        "landed": bool(standing) and not patched and seen.killed_at is not None})
    run.heat.settled()
    # The dangerous case: a job lands on the marked member before the next decision.
    probe: int | None = None
    busy = set(run.busy)
    if record["landed"]:
        [member] = standing
        server = servers[member]
        machine = machines[server]
        if kind == "autoscale":
            # autoscale drains before it marks: its member takes a job only once someone (an
            # operator) cancels the drain
            _cancel_drain(sandbox, machine)
            record["drain_cancelled"] = True
        cluster = probe = _submit(sandbox, f"probe-{number}", 3600, run.cpus,
                                  server_id=server)
        _until("the probe job running on the marked member", lambda: any(
            key[0] == cluster and where == machine.name
            for key, (where, _) in _running(sandbox).items()), 60)
        record["probe_on"] = member
        busy.add(server)
    running = _running(sandbox)
    # The next decision.
    if following == "autoscale":
        code, out, err = run.heatgen("autoscale", "--once", "--format", "json")
        record["next_did"] = json.loads(out)["actions"] if code == 0 else err[-500:]
    else:
        if following == "scale":
            code, out, err = run.heatgen("scale", "--workers", str(len(_servers(sandbox))))
        else:
            code, out, err = run.heatgen("deploy")
        said = (out + err).strip().splitlines()
        record["next_did"] = [line for line in said if "mark" in line] + said[-1:]
    record["next_exit"] = code
    final = run.heat.settled()
    after = set(_servers(sandbox).values())
    now = _running(sandbox)
    record.update({"stack": final, "marks_after": sorted(run.heat.marks()),
                   "busy_kept": sorted(busy & after) == sorted(busy),
                   "jobs_ran_on": {k: v for k, v in now.items() if k in running} == running})
    print("  " + json.dumps(record), flush=True)
    assert code == 0, err
    assert not final.endswith("FAILED"), final
    assert record["marks_after"] == [], record
    assert record["busy_kept"], (busy, after)
    assert record["jobs_ran_on"], (running, now)
    if probe is not None:
        log = _on_master(sandbox, STACK, "cat", f"/home/{USER}/probe-{number}.log")
        assert log.count("Job executing on host") == 1 and "Job was evicted" not in log, log
        _on_master(sandbox, STACK, "condor_rm", str(probe))  # (its log says evicted now)
        _until("the probe job gone", lambda: probe not in {c for c, _ in _running(sandbox)}, 60)
    return record


def test_heatgen_killed_between_mark_and_patch_leaves_no_busy_member_marked(
    pool_sandbox: Sandbox, env: dict[str, str], grid: Path, processes: Processes
) -> None:
    rng = random.Random(SEED)
    heat = Heat.of(pool_sandbox, STACK)
    _until(f"{WORKERS} workers in the pool", lambda: len(_machines(pool_sandbox)) == WORKERS,
           180, lambda: str(_machines(pool_sandbox)))
    cpus = submitter(pool_sandbox, STACK, USER)
    long_cluster = _submit(pool_sandbox, "long", 3600, cpus, count=BUSY)
    _until(f"{BUSY} long jobs running on {BUSY} workers",
           lambda: len({m for m, _ in _running(pool_sandbox).values()}) == BUSY, 120)
    long_jobs = _running(pool_sandbox)
    by_machine = {m.name: server for server, m in _machines(pool_sandbox).items()}
    run = Run(pool_sandbox, env, grid, processes, heat, cpus,
              {by_machine[machine] for machine, _ in long_jobs.values()})

    run.window = _pool_query_seconds(pool_sandbox)
    print(f"mark -> PATCH window: the pool's re-check takes {run.window:.3f} s")

    records = []
    for kill in range(KILLS):
        kind, following = ("scale", "autoscale")[kill % 2], NEXT[kill % len(NEXT)]
        print(f"kill {kill + 1}/{KILLS}: {kind}, then {following}", flush=True)
        # In the first quarter of the window: the poll that sees the mark comes late by up to
        # one Heat round trip, the kill takes its time, and the window varies from run to run
        # (HEATGEN_KILLS=20 measured: the timed re-check 0.85 s, kills up to 0.26 s after the
        # mark was seen landed, 0.26..0.43 s came after the PATCH).
        records.append(_kill_once(run, kill + 1, kind, following,
                                  rng.uniform(0.0, run.window / 4)))
    landed = sum(r["landed"] for r in records)
    print(f"{landed} of {KILLS} kills landed with a mark standing and no PATCH sent "
          f"(window {run.window:.3f} s, seed {SEED!r}); "
          f"{sum(1 for r in records if r.get('probe_on'))} marked members got a job")

    # Every long job ran on, exactly once; none was evicted (until the condor_rm below).
    assert {k: v for k, v in _running(pool_sandbox).items() if k[0] == long_cluster} == \
        long_jobs
    log = _on_master(pool_sandbox, STACK, "cat", f"/home/{USER}/long.log")
    assert log.count("Job executing on host") == BUSY and "Job was evicted" not in log, log
    _on_master(pool_sandbox, STACK, "condor_rm", USER)
    _until("every job in the history", lambda: not _running(pool_sandbox), 60)
    starts = {(j["ClusterId"], j["ProcId"]): j.get("NumJobStarts")
              for j in _jobs(pool_sandbox, STACK)}
    print(f"job starts: {starts}")
    assert all(count == 1 for count in starts.values()), starts
    assert landed >= math.ceil(KILLS * 2 / 3), records
