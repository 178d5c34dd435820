"""The queue-mode planner on snapshots recorded from a real HTCondor pool (tests/data/pool,
written by its record.py on the sandbox's pool: Debian's HTCondor 23.9): the startd ads,
the idle jobs as condor_submit and the negotiator left them, the negotiator's and the
collector's line, and the members as Heat listed them.

The recorded workers have 2 CPUs and 24105 MB each (shape.json); the site here gives its
``cpu`` group that shape, beside a large-memory and a GPU group (examples/groups.yaml).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from heatgen.autoscale.match import Matcher
from heatgen.autoscale.planner import DRAIN_REASON, Decision, GroupView, decide
from heatgen.cloud.group import Member
from heatgen.config import validate_site
from heatgen.pool import Machine
from heatgen.pool.classad import parse_condor_status_json
from heatgen.pool.jobs import Queue, parse_condor_q_json, parse_daemon_lines

from .conftest import EXAMPLES

DATA = Path(__file__).parent / "data" / "pool"
SHAPE = json.loads((DATA / "shape.json").read_text())


def _raw(**scaling: Any) -> dict[str, Any]:
    data = yaml.safe_load((EXAMPLES / "groups.yaml").read_text())
    data["autoscaling"] = {"mode": "queue", "telemetry": "none", **scaling}
    data["worker_groups"][0].update(vcpus=SHAPE["cpus"], memory_mb=SHAPE["memory_mb"], min=1,
                                    max=4)
    return dict(data)


def _site(**scaling: Any) -> Any:
    return validate_site(_raw(**scaling), "groups.yaml")


SITE = _site()


def members(*extra: Member) -> list[Member]:
    """The recorded group's two members, in the site's ``cpu`` group."""
    recorded = json.loads((DATA / "members.json").read_text())
    return [Member(**{**m, "group": "cpu"}) for m in recorded] + list(extra)


def machines(name: str) -> list[Machine]:
    return parse_condor_status_json((DATA / f"{name}.json").read_text())


def queue(name: str) -> Queue:
    jobs = parse_condor_q_json((DATA / f"{name}.json").read_text())
    return Queue(tuple(jobs), *parse_daemon_lines((DATA / "daemons.txt").read_text()))


MIX = queue("queue-mix")
# just after the negotiator rejected every autocluster of the mix
RECORDED = max(j.number("LastRejMatchTime") or 0 for j in MIX.jobs) + 5


def plan(group_members: list[Member], pool: list[Machine], jobs: Queue, now: float = RECORDED,
         site: Any = SITE, **history: Any) -> Decision:
    views = [GroupView(g, tuple(m for m in group_members if m.group == g.name),
                       **history.get(g.name, {})) for g in site.groups]
    return decide(views, pool, jobs, now, Matcher())


def _by_request(decision_jobs: tuple[str, ...]) -> list[tuple[int, int, int]]:
    index = {job.id: job for job in MIX.jobs}
    return sorted((index[j].number("RequestCpus") or 0, index[j].number("RequestMemory") or 0,
                   index[j].number("RequestGpus") or 0) for j in decision_jobs)


def test_the_recorded_mix_grows_each_group_by_what_its_jobs_need_in_one_decision() -> None:
    decision = plan(members(), machines("idle-two"), MIX)
    # every job was queued after the negotiator's own ad was last refreshed, yet all of them
    # were seen: each autocluster was rejected (LastRejMatchTime) after the submit
    assert MIX.last_cycle_end is not None and all(
        (j.queued_at or 0) > MIX.last_cycle_end for j in MIX.jobs)
    assert decision.not_yet_seen == ()
    # the three 1-CPU jobs fit the idle workers' free CPUs: the negotiator matches them
    assert _by_request(decision.matched_soon) == [(1, 256, 0)] * 3
    cpu, highmem, gpu = (decision.group(n) for n in ("cpu", "highmem", "gpu"))
    # the two whole-worker (2-CPU) jobs find 1 CPU left: two new cpu workers
    assert _by_request(cpu.jobs) == [(2, 512, 0)] * 2
    assert (cpu.size, cpu.target, cpu.action) == (2, 4, "grow")
    # larger than a cpu worker's memory: the large-memory group
    assert _by_request(highmem.jobs) == [(1, 48210, 0)] and highmem.target == 1
    assert _by_request(gpu.jobs) == [(1, 1024, 1)] and gpu.target == 1
    unserved = dict(decision.unserved)
    assert len(unserved) == 2
    [impossible] = [why for why in unserved.values() if "64 CPUs" in why]
    assert impossible.startswith("fits no group: needs 64 CPUs, group cpu has 2")
    # asks for highmem by name, but highmem starts only jobs of more than 16 GiB
    [named] = [why for why in unserved.values() if "64 CPUs" not in why]
    assert "group highmem's start rule" in named, named


def test_busy_recorded_workers_are_kept_and_the_rest_of_the_queue_still_grows() -> None:
    jobs = queue("queue-busy")
    decision = plan(members(), machines("busy"), jobs, now=RECORDED + 60)
    cpu = decision.group("cpu")
    assert [m.state for m in cpu.members] == ["busy", "busy"]
    assert [m.action for m in cpu.members] == ["keep", "keep"]
    # the small jobs ran one and two per worker: no free slot has 2 CPUs left
    assert decision.matched_soon == ()
    assert (cpu.size, cpu.target) == (2, 4) and cpu.drain == cpu.remove == ()


def test_a_recorded_worker_drained_while_it_ran_a_job_is_returned_to_service() -> None:
    decision = plan(members(), machines("claimed-draining"), Queue(()), now=RECORDED + 90)
    cpu = decision.group("cpu")
    [draining] = [m for m in cpu.members if m.state == "draining"]
    assert cpu.undrain == (draining.name,) and cpu.remove == ()
    assert any(m.drain_reason == DRAIN_REASON for m in machines("claimed-draining"))


def test_idle_recorded_workers_are_drained_once_idle_long_enough() -> None:
    idle = machines("idle-two")
    since = max(m.idle_since or 0 for m in idle)
    site = _site(idle_timeout=600)
    assert plan(members(), idle, Queue(()), now=since + 300, site=site).group(
        "cpu").drain == ()
    cpu = plan(members(), idle, Queue(()), now=since + 700, site=site).group("cpu")
    assert len(cpu.drain) == 1 and cpu.target == 2  # min 1: one of the two may go


@pytest.mark.parametrize(("collector_age", "replaced"), [(400, True), (30, False)])
def test_a_member_missing_from_the_recorded_pool_is_replaced_when_the_collector_knows(
    collector_age: int, replaced: bool,
) -> None:
    jobs = queue("queue-mix")
    assert jobs.collector_since is not None  # the recorded collector's start
    stranger = Member("ghost0member", "5f0c1f6e-0000-4000-8000-000000000000", "10.77.2.13", 2,
                      "CREATE_COMPLETE", "nested", "2026-01-01T00:00:00Z", group="cpu")
    # created long before the collector started: only the collector's age can vouch for it
    decision = plan(members(stranger), machines("idle-two"), jobs,
                    now=jobs.collector_since + collector_age)
    cpu = decision.group("cpu")
    assert cpu.members[-1].state == "missing"
    assert cpu.replace == (("ghost0member",) if replaced else ())


def test_the_recorded_daemons_line_gives_the_cycle_and_the_collectors_start() -> None:
    end, since = parse_daemon_lines((DATA / "daemons.txt").read_text())
    assert end is not None and since is not None
    # the collector started before the workers' first ads and the jobs
    assert since <= min(m.idle_since or since for m in machines("idle-two"))
    assert since < min(j.queued_at or since + 1 for j in MIX.jobs)


def test_a_member_still_booting_takes_the_recorded_jobs_it_fits() -> None:
    # a third member created a minute before the decision, not in the pool yet
    booting = Member("boot0member", "5f0c1f6e-0000-4000-8000-000000000001", "10.77.2.14", 2,
                     "CREATE_COMPLETE", "nested", _iso(RECORDED - 60), group="cpu")
    cpu = plan(members(booting), machines("idle-two"), MIX).group("cpu")
    assert [m.state for m in cpu.members] == ["idle", "idle", "booting"]
    # one whole-worker job goes onto the booting member, the other needs one new worker
    assert (cpu.size, cpu.new_workers, cpu.target) == (3, 1, 4)


def test_a_group_at_max_grows_no_further_and_says_so() -> None:
    data = _raw()
    data["worker_groups"][0]["max"] = 2
    decision = plan(members(), machines("idle-two"), MIX,
                    site=validate_site(data, "groups.yaml"))
    cpu = decision.group("cpu")
    assert (cpu.size, cpu.target) == (2, 2) and "at max 2" in cpu.reason
    # the other groups grow as they would have
    assert decision.group("gpu").target == decision.group("highmem").target == 1


def test_a_group_in_backoff_holds_its_growth_and_says_until_when() -> None:
    history = {"cpu": {"backoff_until": RECORDED + 120}}
    decision = plan(members(), machines("idle-two"), MIX, **history)
    cpu = decision.group("cpu")
    assert cpu.target == cpu.size == 2, cpu.reason
    assert cpu.reason.endswith("backs off for 120 s more after failures"), cpu.reason
    assert decision.group("gpu").target == 1  # only the failing group waits


def _iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))
