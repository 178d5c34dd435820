"""The job queue as the autoscaler sees it: idle jobs and what each asks for.

The schedd's idle jobs (``JobStatus == 1``) of every user, with the attributes a placement
needs: the requested CPUs, memory and GPUs (plain numbers, or expressions evaluated later
against a machine), the job's ``Requirements`` and when it was queued. The ads come from
``condor_q -allusers -json`` on the master, or a recording in the tests.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from heatgen.errors import CloudError
from heatgen.pool.classad import parse_classad_json

IDLE = 1
# The job attributes the autoscaler reads (condor_q -attributes, a schedd projection).
JOB_ATTRIBUTES: tuple[str, ...] = (
    "ClusterId", "ProcId", "Owner", "JobStatus", "QDate", "JobUniverse", "RequestCpus",
    "RequestMemory", "RequestDisk", "RequestGpus", "Requirements", "DiskUsage", "ImageSize",
    "MemoryUsage", "WantGPU", "LastRejMatchTime", "AutoClusterId",
)


@dataclass(frozen=True)
class Job:
    """One idle job: its id, owner, when it was queued, and its ad (expressions as
    :class:`~heatgen.pool.classad.Expression`) for matching against machines."""

    id: str
    owner: str
    queued_at: int | None
    ad: Mapping[str, Any] = field(default_factory=dict)

    def number(self, attribute: str) -> int | None:
        """A plain numeric attribute, or None (absent, or an expression)."""
        value = self.ad.get(attribute)
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None
        return int(value)


@dataclass(frozen=True)
class Queue:
    """The idle jobs, the end of the negotiator's last cycle and when the collector started
    (None: not known)."""

    jobs: tuple[Job, ...]
    last_cycle_end: int | None = None
    collector_since: int | None = None


def parse_daemon_lines(text: str) -> tuple[int | None, int | None]:
    """The negotiator's last cycle end and the collector's start time in the output of
    ``condor_status -any ... -af MyType LastNegotiationCycleEnd0 <the collector's start>``
    (``heatgen.pool.ssh.DAEMONS_COMMAND``)."""
    ends, starts = [], []
    for line in text.splitlines():
        words = line.split()
        if len(words) != 3:
            continue
        kind, end, start = words
        if kind == "Negotiator" and end.isdigit():
            ends.append(int(end))
        elif kind == "Collector" and start.isdigit():
            starts.append(int(start))
    return (max(ends) if ends else None), (max(starts) if starts else None)


def parse_jobs(ads: list[dict[str, Any]]) -> list[Job]:
    """Idle jobs of the given job ads (others are left out)."""
    jobs = []
    for ad in ads:
        if ad.get("JobStatus") != IDLE:
            continue
        cluster, proc = ad.get("ClusterId"), ad.get("ProcId")
        if not isinstance(cluster, int) or not isinstance(proc, int):
            raise CloudError(f"a job ad without ClusterId/ProcId: {sorted(ad)[:6]}")
        queued = ad.get("QDate")
        jobs.append(Job(f"{cluster}.{proc}", str(ad.get("Owner") or "?"),
                        queued if isinstance(queued, int) else None, dict(ad)))
    return jobs


def parse_condor_q_json(text: str) -> list[Job]:
    """The idle jobs in the exact output of ``condor_q -json``."""
    return parse_jobs(parse_classad_json(text))
