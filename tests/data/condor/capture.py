"""Regenerates the recorded ``condor_status -json`` outputs in this directory.

No HTCondor daemon can run here, so each slot ad is built as a ``classad2.ClassAd`` with the
attribute names and types a 24.x startd advertises, and serialized by HTCondor's own JSON
unparser (``ClassAd.printJson``). What ``condor_status`` adds around the ads is reproduced from
its source (``src/condor_status.V6/status.cpp`` and ``prettyPrint.cpp``):

- ads sorted by ``Machine``, then ``Name``, in natural order (the default sort keys);
- in each ad, the attributes in case-insensitive order, limited to the ``-attributes`` list
  when one is given (``sGetAdAttrs`` into a ``classad::References`` set);
- ``"[\\n"`` before the first ad, ``",\\n"`` before every other, ``"\\n"`` after each ad,
  ``"]\\n"`` after the last, and no output at all when no ad matched.

``printJson`` writes the attributes of a whole ad in hash order, so every attribute is
unparsed on its own (the same ``ClassAdJsonUnParser`` output for one member) and the members
are joined in condor_status's order; :func:`unparse` checks the result against the whole-ad
serialization.

Usage: ``python tests/data/condor/capture.py`` rewrites the files; ``--check`` only compares.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import classad2

from heatgen.pool import STARTD_ATTRIBUTES

HERE = Path(__file__).resolve().parent

# Every snapshot is taken at NOW unless a scenario says otherwise: 2026-01-01T00:00:00Z.
NOW = 1767225600
BOOTED = NOW - 2 * 86400
MASTER = "demo-master.novalocal"
VERSION = (
    "$CondorVersion: 24.0.14 2025-11-06 BuildID: 812763 PackageID: 24.0.14-1 GitSHA: 5b2e0c41 $"
)
PLATFORM = "$CondorPlatform: X86_64-Ubuntu_24.04 $"

# What `heatgen.pool.SshPool` asks for: `condor_status -json -attributes <these>`.
PROJECTION = STARTD_ATTRIBUTES

WITHIN_RESOURCE_LIMITS = (
    "(MY.Cpus > 0 && TARGET.RequestCpus <= MY.Cpus && MY.Memory > 0 && "
    "TARGET.RequestMemory <= MY.Memory && MY.Disk > 0 && TARGET.RequestDisk <= MY.Disk)"
)


def server_id(index: int) -> str:
    """A stable, Nova-shaped server id for worker ``index``."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"heatgen-fixture/worker-{index}"))


@dataclass(frozen=True)
class Job:
    """A dynamic or static slot's claim: when it was claimed, its state and activity."""

    claimed_at: int
    state: str = "Claimed"
    activity: str = "Busy"
    activity_since: int | None = None
    cpus: int = 1
    memory: int = 2048
    cluster: int = 100


@dataclass
class Worker:
    """One worker VM with a partitionable slot (``jobs`` become dynamic slots) or, when
    ``static`` is given, static slots (``None`` for an unclaimed one)."""

    index: int
    free_since: int
    jobs: list[Job] = field(default_factory=list)
    static: list[Job | None] | None = None
    with_server_id: bool = True
    state: str = "Unclaimed"
    activity: str = "Idle"
    state_since: int | None = None
    activity_since: int | None = None
    cpus: int = 4
    memory: int = 7680

    @property
    def host(self) -> str:
        return f"demo-worker-{self.index}.novalocal"

    @property
    def ip(self) -> str:
        return f"10.0.0.{10 + self.index}"

    @property
    def sinful(self) -> str:
        token = hashlib.sha256(self.host.encode()).hexdigest()
        pid = 1000 + int(token[:3], 16)
        return (
            f"<{self.ip}:9618?addrs={self.ip}-9618&alias={self.host}&noUDP"
            f"&sock=startd_{pid}_{token[3:7]}>"
        )


def _expr(text: str) -> classad2.ExprTree:
    return classad2.ExprTree(text)


def _common(worker: Worker, taken_at: int, slots: int) -> dict[str, object]:
    values: dict[str, object] = {
        "Arch": "X86_64",
        "CondorLoadAvg": 0.0,
        "CondorPlatform": PLATFORM,
        "CondorVersion": VERSION,
        "CurrentTime": _expr("time()"),
        "DaemonStartTime": BOOTED + worker.index * 37,
        "DetectedCpus": worker.cpus,
        "DetectedMemory": worker.memory,
        "FileSystemDomain": worker.host,
        "LastHeardFrom": taken_at - 20 - worker.index,
        "Machine": worker.host,
        "MyAddress": worker.sinful,
        "MyCurrentTime": taken_at - 25 - worker.index,
        "MyType": "Slot",
        "OpSys": "LINUX",
        "OpSysAndVer": "Ubuntu24",
        "OpSysMajorVer": 24,
        "OpSysName": "Ubuntu",
        "Rank": 0.0,
        "Requirements": _expr("START && (WithinResourceLimits)"),
        "Start": True,
        "StartdIpAddr": worker.sinful,
        "TargetType": "Job",
        "TotalCpus": float(worker.cpus),
        "TotalDisk": 38912000,
        "TotalMemory": worker.memory,
        "TotalSlots": slots,
        "UidDomain": worker.host,
        "UpdateSequenceNumber": 540 + worker.index,
        "WithinResourceLimits": _expr(WITHIN_RESOURCE_LIMITS),
    }
    if worker.with_server_id:
        values["HeatGenServerId"] = server_id(worker.index)
    return values


def _ad(values: dict[str, object]) -> classad2.ClassAd:
    ad = classad2.ClassAd()
    for key, value in values.items():
        ad[key] = value
    return ad


def _job_attributes(job: Job) -> dict[str, object]:
    job_id = f"{job.cluster}.0"
    return {
        "Activity": job.activity,
        "ClientMachine": MASTER,
        "EnteredCurrentActivity": job.activity_since or job.claimed_at + 2,
        "EnteredCurrentState": job.claimed_at,
        "GlobalJobId": f"{MASTER}#{job_id}#{job.claimed_at - 40}",
        "JobId": job_id,
        "JobStart": job.claimed_at + 2,
        "RemoteOwner": "batch@demo.pool",
        "RemoteUser": "batch@demo.pool",
        "State": job.state,
    }


def slot_ads(worker: Worker, taken_at: int) -> list[classad2.ClassAd]:
    """The slot ads ``worker``'s startd has in the collector at ``taken_at``."""
    if worker.static is not None:
        return _static_ads(worker, taken_at)
    slots = 1 + len(worker.jobs)
    base = _common(worker, taken_at, slots)
    used_cpus = sum(job.cpus for job in worker.jobs)
    used_memory = sum(job.memory for job in worker.jobs)
    partitionable: dict[str, object] = {
        **base,
        "Activity": worker.activity,
        "Cpus": worker.cpus - used_cpus,
        "Disk": 38912000 - 1048576 * len(worker.jobs),
        "EnteredCurrentActivity": worker.activity_since or worker.free_since,
        "EnteredCurrentState": worker.state_since or worker.free_since,
        "LoadAvg": round(0.98 * len(worker.jobs), 2),
        "Memory": worker.memory - used_memory,
        "Name": f"slot1@{worker.host}",
        "NumDynamicSlots": len(worker.jobs),
        "PartitionableSlot": True,
        "SlotID": 1,
        "SlotType": "Partitionable",
        "SlotTypeID": 1,
        "State": worker.state,
        "TotalSlotCpus": worker.cpus,
        "TotalSlotMemory": worker.memory,
    }
    if worker.jobs:
        partitionable["ChildActivity"] = [job.activity for job in worker.jobs]
        partitionable["ChildCpus"] = [job.cpus for job in worker.jobs]
        partitionable["ChildMemory"] = [job.memory for job in worker.jobs]
        partitionable["ChildState"] = [job.state for job in worker.jobs]
    ads = [_ad(partitionable)]
    for number, job in enumerate(worker.jobs, start=1):
        name = f"slot1_{number}@{worker.host}"
        dynamic = {
            **base,
            **_job_attributes(job),
            "Cpus": job.cpus,
            "Disk": 1048576,
            "DynamicSlot": True,
            "LoadAvg": 0.98,
            "Memory": job.memory,
            "Name": name,
            "ParentSlotId": 1,
            "SlotID": 1,
            "SlotType": "Dynamic",
            "SlotTypeID": -1,
            "TotalSlotCpus": job.cpus,
            "TotalSlotMemory": job.memory,
        }
        ads.append(_ad(dynamic))
    return ads


def _static_ads(worker: Worker, taken_at: int) -> list[classad2.ClassAd]:
    assert worker.static is not None
    count = len(worker.static)
    base = _common(worker, taken_at, count)
    share_cpus = worker.cpus // count
    share_memory = worker.memory // count
    ads = []
    for number, job in enumerate(worker.static, start=1):
        name = f"slot{number}@{worker.host}"
        values: dict[str, object] = {
            **base,
            "Cpus": share_cpus,
            "Disk": 38912000 // count,
            "LoadAvg": 0.99 if job else 0.0,
            "Memory": share_memory,
            "Name": name,
            "SlotID": number,
            "SlotType": "Static",
            "SlotTypeID": 1,
            "TotalSlotCpus": share_cpus,
            "TotalSlotMemory": share_memory,
        }
        if job is None:
            # The last unclaimed slot became free at free_since, the others a minute apart.
            since = worker.free_since - 60 * (count - number)
            values.update(
                {
                    "Activity": "Idle",
                    "EnteredCurrentActivity": since,
                    "EnteredCurrentState": since,
                    "State": "Unclaimed",
                }
            )
        else:
            values.update(_job_attributes(job))
        ads.append(_ad(values))
    return ads


def _natural_key(text: str) -> tuple[object, ...]:
    """condor_status's natural_cmp: digit runs compare as numbers, the rest as bytes."""
    parts = re.split(r"(\d+)", text)
    return tuple(int(part) if index % 2 else part for index, part in enumerate(parts))


def unparse(ad: classad2.ClassAd, attributes: Iterable[str] | None) -> str:
    """One ad as condor_status -json prints it: sorted, projected, HTCondor's own unparser."""
    names = sorted(ad.keys(), key=str.lower)
    if attributes is not None:
        wanted = {name.lower() for name in attributes}
        names = [name for name in names if name.lower() in wanted]
    members = []
    for name in names:
        single = classad2.ClassAd()
        single[name] = ad.lookup(name)
        text = single.printJson()
        assert text.startswith("{\n") and text.endswith("\n}"), text
        members.append(text[2:-2])
    result = "{\n" + ",\n".join(members) + "\n}"
    whole = json.loads(ad.printJson())
    assert json.loads(result) == {name: whole[name] for name in names}
    return result


def condor_status_json(ads: Sequence[classad2.ClassAd], attributes: Iterable[str] | None) -> str:
    """The whole stdout of ``condor_status -json [-attributes ...]`` for these slot ads."""
    projection = tuple(attributes) if attributes is not None else None
    ordered = sorted(
        enumerate(ads),
        key=lambda item: _natural_key(f"{item[1]['Machine']}\n{item[1]['Name']}\n{item[0]:08X}"),
    )
    out = []
    for position, (_, ad) in enumerate(ordered):
        out.append("[\n" if position == 0 else ",\n")
        out.append(unparse(ad, projection))
        out.append("\n")
    if ordered:
        out.append("]\n")
    return "".join(out)


@dataclass(frozen=True)
class Scenario:
    name: str
    workers: tuple[Worker, ...]
    taken_at: int = NOW
    attributes: tuple[str, ...] | None = PROJECTION

    def render(self) -> str:
        ads = [ad for worker in self.workers for ad in slot_ads(worker, self.taken_at)]
        return condor_status_json(ads, self.attributes)


def _busy_two_of_five() -> tuple[Worker, ...]:
    return (
        Worker(1, free_since=NOW - 7200),
        Worker(
            2,
            free_since=NOW - 9000,
            jobs=[Job(NOW - 3000, cluster=101), Job(NOW - 1200, cluster=102)],
        ),
        Worker(3, free_since=NOW - 1200),
        Worker(4, free_since=NOW - 40000, jobs=[Job(NOW - 36000, cluster=77, cpus=4, memory=7680)]),
        Worker(5, free_since=NOW - 300),
    )


def _drain_workers(done: bool) -> tuple[Worker, ...]:
    drain_started = NOW - 600
    if done:
        draining = Worker(
            2,
            free_since=drain_started,
            state="Drained",
            activity="Idle",
            state_since=drain_started,
            activity_since=NOW + 1500,
        )
    else:
        draining = Worker(
            2,
            free_since=NOW - 5200,
            state="Drained",
            activity="Retiring",
            state_since=drain_started,
            activity_since=drain_started,
            jobs=[
                Job(
                    NOW - 5000,
                    activity="Retiring",
                    activity_since=drain_started,
                    cluster=140,
                    cpus=2,
                    memory=4096,
                )
            ],
        )
    return (Worker(1, free_since=NOW - 2400), draining)


SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        "idle-five",
        (
            Worker(1, free_since=NOW - 11520),
            Worker(2, free_since=NOW - 2400),
            Worker(3, free_since=NOW - 2400),
            Worker(4, free_since=NOW - 90000),
            Worker(5, free_since=NOW - 45),
        ),
    ),
    Scenario("busy-two-of-five", _busy_two_of_five()),
    Scenario("full-ads", _busy_two_of_five(), attributes=None),
    Scenario(
        "static-one-claimed",
        (
            Worker(
                1,
                free_since=NOW - 7200,
                cpus=2,
                memory=3840,
                static=[None, Job(NOW - 900, cluster=210)],
            ),
            Worker(2, free_since=NOW - 1800, cpus=2, memory=3840, static=[None, None]),
        ),
    ),
    Scenario(
        "no-server-id",
        (
            Worker(1, free_since=NOW - 600),
            Worker(2, free_since=NOW - 1200),
            Worker(3, free_since=NOW - 14400, with_server_id=False),
        ),
    ),
    Scenario(
        "race-1-idle",
        (
            Worker(1, free_since=NOW - 7200),
            Worker(2, free_since=NOW - 3600),
            Worker(3, free_since=NOW - 600),
        ),
    ),
    Scenario(
        "race-2-claimed",
        (
            Worker(1, free_since=NOW - 7200, jobs=[Job(NOW + 30, cluster=300)]),
            Worker(2, free_since=NOW - 3600),
            Worker(3, free_since=NOW - 600),
        ),
        taken_at=NOW + 60,
    ),
    Scenario("drain-1-retiring", _drain_workers(done=False)),
    Scenario("drain-2-drained", _drain_workers(done=True), taken_at=NOW + 1800),
    Scenario("no-machines", ()),
)


def render_all() -> dict[str, str]:
    """File name -> exact content, for every scenario."""
    return {f"{scenario.name}.json": scenario.render() for scenario in SCENARIOS}


def main(argv: Sequence[str]) -> int:
    check = "--check" in argv
    stale = []
    for name, text in render_all().items():
        path = HERE / name
        current = path.read_bytes() if path.exists() else None
        if current == text.encode():
            continue
        stale.append(name)
        if not check:
            path.write_bytes(text.encode())
    if stale:
        verb = "differ" if check else "rewritten"
        print(f"{verb}: {', '.join(stale)}")
    return 1 if check and stale else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
