"""Records the pool and queue snapshots in this directory from a real HTCondor pool: the
sandbox's (`heatgen sandbox up --pool`), whose workers run Debian's HTCondor daemons.

    HEATGEN_SANDBOX_DIR=... python tests/data/pool/record.py

deploys a queue-mode grid of two workers (``record-grid``), submits a mix of jobs as a
plain user and writes, as the planner's readers see them:

- ``members.json``: the group's members as Heat lists them (name, server id, created);
- ``idle-two.json``: ``condor_status -json`` of the two idle workers (``SshPool``'s query);
- ``queue-mix.json``: ``condor_q -allusers -json`` of the idle jobs, taken after the
  negotiator rejected them for two cycles (the workers drained meanwhile, so that none ran):
  small jobs, whole-worker jobs, a job larger than a worker's memory, a GPU job, a job that
  fits nothing, and a job that asks for the ``highmem`` group by name;
- ``daemons.txt``: the negotiator's and collector's line (``SshPool.queue``'s second query);
- ``busy.json`` / ``queue-busy.json``: the workers and the queue once the jobs that fit ran;
- ``claimed-draining.json``: a worker with a running job drained with autoscale's reason.

``shape.json`` keeps what the workers advertise (cpus, memory), which the tests' site gives
its ``cpu`` group. The grid is deleted at the end, also on failure.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
sys.path.insert(0, str(REPO))

from heatgen.autoscale.planner import DRAIN_REASON  # noqa: E402
from heatgen.pool import STARTD_ATTRIBUTES  # noqa: E402
from heatgen.pool.jobs import JOB_ATTRIBUTES  # noqa: E402
from heatgen.pool.ssh import DAEMONS_COMMAND  # noqa: E402

STACK = "record-grid"
HEATGEN = [sys.executable, "-m", "heatgen"]
STATUS = ["condor_status", "-json", "-attributes", ",".join(STARTD_ATTRIBUTES)]
QUEUE = ["condor_q", "-allusers", "-constraint", "JobStatus == 1", "-json", "-attributes",
         ",".join(JOB_ATTRIBUTES)]


def heatgen(*args: str) -> str:
    done = subprocess.run([*HEATGEN, *args], capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        raise SystemExit(f"heatgen {' '.join(args)}: {done.stderr[-2000:]}")
    return done.stdout


def master(*command: str, input_text: str | None = None) -> str:
    done = subprocess.run([*HEATGEN, "sandbox", "ssh", "master", "--", *command],
                          input=input_text, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise SystemExit(f"on the master: {command}: {done.stdout}{done.stderr}")
    return done.stdout


def until(what: str, check: Callable[[], bool], timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"{what} did not happen within {timeout:.0f} s")
        time.sleep(2)


def write(name: str, text: str) -> None:
    (HERE / name).write_text(text, encoding="utf-8")
    print(f"wrote {name} ({len(text)} bytes)")


def site(directory: Path) -> Path:
    text = (REPO / "examples" / "debian13.yaml").read_text()
    text = text.replace("site: debian13-grid", f"site: {STACK}")
    # a cycle every 20 s: time to read the pool between two of them
    text = text.replace('  version: "23.9"\n', '  version: "23.9"\n  extra_config: '
                        '["NEGOTIATOR_INTERVAL = 20", "NEGOTIATOR_CYCLE_DELAY = 20"]\n')
    text = text.replace("  min: 1\n", "  min: 2\n").replace("  desired: 1\n",
                                                              "  desired: 2\n")
    block = text[text.index("autoscaling:\n"):text.index("condor:\n")]
    text = text.replace(block, "autoscaling:\n  mode: queue\n  telemetry: none\n")
    path = directory / f"{STACK}.yaml"
    path.write_text(text)
    return path


def members() -> list[dict[str, object]]:
    """The group's members as ``heatgen autoscale`` reads them from Heat."""
    from heatgen.cloud.connect import open_cloud
    from heatgen.cloud.group import group_members
    from heatgen.sandbox.hooks import Locator

    cloud = open_cloud(None, None, sandbox=Locator()).cloud
    stack = cloud.get_stack(STACK)
    assert stack is not None
    return [dataclasses.asdict(member) for member in group_members(cloud, stack)]


def submit_mix(cpus: int, memory: int) -> None:
    common = ("executable = /bin/sleep\narguments = 600\nrequest_disk = 1024\n"
              "transfer_executable = false\nshould_transfer_files = YES\n"
              "when_to_transfer_output = ON_EXIT\nlog = /home/carol/jobs.log\n")
    parts = [
        "request_cpus = 1\nrequest_memory = 256\nqueue 3",  # small
        f"request_cpus = {cpus}\nrequest_memory = 512\nqueue 2",  # a whole worker each
        f"request_cpus = 1\nrequest_memory = {memory * 2}\nqueue 1",  # larger than a worker
        "request_cpus = 64\nrequest_memory = 1024\nqueue 1",  # fits nothing
        'request_cpus = 1\nrequest_memory = 256\nrequirements = HeatGenGroup == "highmem"\n'
        "queue 1",  # asks for a group by name
        # last: a submit file's settings hold for every later queue statement
        'requirements = True\nrequest_cpus = 1\nrequest_memory = 1024\nrequest_gpus = 1\n'
        "queue 1",  # a GPU
    ]
    text = common + "\n".join(parts) + "\n"
    master("su", "-s", "/bin/sh", "carol", "-c",
           "cd /home/carol && cat > mix.sub && condor_submit mix.sub", input_text=text)


def main() -> int:
    if not os.environ.get("HEATGEN_SANDBOX_DIR"):
        print("set HEATGEN_SANDBOX_DIR to a running `heatgen sandbox up --pool`", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as directory:
        path = site(Path(directory))
        heatgen("deploy", str(path))
        try:
            record(path)
        finally:
            heatgen("delete", str(path), "--yes")
    return 0


def record(path: Path) -> None:
    until("two workers in the pool, idle", lambda: master(
        "condor_status", "-af", "Activity").split() == ["Idle", "Idle"])
    write("members.json", json.dumps(members(), indent=1, sort_keys=True) + "\n")
    write("idle-two.json", master(*STATUS))
    ads = json.loads(master("condor_status", "-json", "-attributes", "TotalCpus,TotalMemory"))
    cpus, memory = int(ads[0]["TotalCpus"]), int(ads[0]["TotalMemory"])
    write("shape.json", json.dumps({"cpus": cpus, "memory_mb": memory}) + "\n")

    master("sh", "-c", "id carol >/dev/null 2>&1 || useradd -m carol")
    # condor_drain finds a startd by its slot's Name (slot1@host), not by the bare Machine
    startds = sorted(master("condor_status", "-af", "Name").split())
    for startd in startds:  # nothing may start while the queue is recorded
        master("condor_drain", "-graceful", "-reason", "recording the queue", startd)
    submit_mix(cpus, memory)
    # two negotiation cycles (20 s each): every autocluster rejected (LastRejMatchTime);
    # the negotiator's own ad is refreshed only every few minutes, so no use waiting on it
    time.sleep(50)
    write("queue-mix.json", master(*QUEUE))
    write("daemons.txt", master(*DAEMONS_COMMAND))
    for startd in startds:
        master("condor_drain", "-cancel", startd)

    until("the jobs that fit running", lambda: len(json.loads(master(
        "condor_q", "-allusers", "-constraint", "JobStatus == 2", "-json", "-attributes",
        "ClusterId") or "[]")) >= 3, 180)
    time.sleep(5)  # the startds' ads with the claims
    write("busy.json", master(*STATUS))
    write("queue-busy.json", master(*QUEUE))

    running = json.loads(master("condor_q", "-allusers", "-constraint", "JobStatus == 2",
                                "-json", "-attributes", "RemoteHost"))
    claimed = str(running[0]["RemoteHost"]).split("@")[-1]
    master("condor_drain", "-graceful", "-reason", DRAIN_REASON, f"slot1@{claimed}")
    until("the drain shown", lambda: DRAIN_REASON in master(
        "condor_status", "-constraint", f'Machine == "{claimed}"', "-af", "DrainReason"), 60)
    write("claimed-draining.json", master(*STATUS))


if __name__ == "__main__":
    raise SystemExit(main())
