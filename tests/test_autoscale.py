"""The queue-mode planner, table by table, over recorded pool snapshots (tests/data/condor,
the shapes the real pool reports) and job ads as `condor_q -json` gives them."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
import yaml

from heatgen.autoscale.match import Matcher
from heatgen.autoscale.planner import DRAIN_REASON, Decision, GroupView, as_dict, decide
from heatgen.cloud.group import Member
from heatgen.cloud.interface import Resource
from heatgen.config import validate_site
from heatgen.errors import CloudError, UsageError
from heatgen.ops import autoscale as loop
from heatgen.ops.report import SilentReporter
from heatgen.ops.scale import ScaleRequest
from heatgen.pool import Machine, Slot
from heatgen.pool.classad import Expression
from heatgen.pool.jobs import Job, Queue, parse_condor_q_json
from heatgen.sandbox.recording import RecordedPool

from .conftest import EXAMPLES
from .fakecloud import FakeClock, FakeCloud
from .test_pool import SERVER_IDS
from .test_scalein import NOW, machines_of

# What condor_submit puts in a vanilla job's Requirements (HTCondor 23/24).
REQUIREMENTS = ('(TARGET.Arch == "X86_64") && (TARGET.OpSys == "LINUX") && '
                '(TARGET.Disk >= RequestDisk) && (TARGET.Memory >= RequestMemory) && '
                '(TARGET.Cpus >= RequestCpus) && (TARGET.HasFileTransfer)')
# condor_submit adds this clause when the job sets request_gpus
GPU_CLAUSE = " && (TARGET.GPUs >= RequestGpus)"
LONG_AGO = "2025-12-01T00:00:00Z"  # created a month before NOW: long past any join_timeout
JUST_NOW = "2025-12-31T23:58:00Z"  # two minutes before NOW


def _site(**scaling: Any) -> Any:
    data = yaml.safe_load((EXAMPLES / "groups.yaml").read_text())
    data["autoscaling"] = {"mode": "queue", "telemetry": "none", **scaling}
    # the recorded workers: 4 CPUs and 7680 MB each
    data["worker_groups"][0].update(vcpus=4, memory_mb=7680, min=1, max=4)
    return validate_site(data, "groups.yaml")


SITE = _site()


def job(number: int, cpus: int = 1, memory: int = 1024, gpus: int | None = None,
        queued: int = NOW - 600, requirements: str = REQUIREMENTS) -> Job:
    ad: dict[str, Any] = {"ClusterId": 10, "ProcId": number, "JobStatus": 1, "Owner": "alice",
                          "QDate": queued, "RequestCpus": cpus, "RequestMemory": memory,
                          "RequestDisk": 1024, "Requirements": Expression(requirements)}
    if gpus is not None:
        ad["RequestGpus"] = gpus
        ad["Requirements"] = Expression(requirements + GPU_CLAUSE)
    return Job(f"10.{number}", "alice", queued, ad)


def member(index: int, group: str = "cpu", created: str = LONG_AGO) -> Member:
    return Member(f"member-{index}", SERVER_IDS.get(index, f"server-{index}"),
                  f"10.0.0.{10 + index}", index, "CREATE_COMPLETE", f"nested-{index}", created,
                  group=group)


def views(members: dict[str, list[Member]], site: Any = SITE,
          **history: Any) -> list[GroupView]:
    return [GroupView(g, tuple(members.get(g.name, [])), **history.get(g.name, {}))
            for g in site.groups]


def plan(members: dict[str, list[Member]], machines: list[Machine], jobs: list[Job],
         last_cycle: int | None = NOW - 30, site: Any = SITE,
         collector_since: int | None = NOW - 3600, **history: Any) -> Decision:
    return decide(views(members, site, **history), machines,
                  Queue(tuple(jobs), last_cycle, collector_since), NOW, Matcher())


IDLE = machines_of("idle-five")  # demo-worker-1..5, idle, 4 CPUs / 7680 MB free each


def test_one_decision_grows_the_group_by_everything_the_queue_needs() -> None:
    # one idle worker of group cpu takes four 1-CPU jobs; the other eight need two more
    decision = plan({"cpu": [member(1)]}, IDLE[:1], [job(i) for i in range(12)])
    cpu = decision.group("cpu")
    assert len(decision.matched_soon) == 4
    assert (cpu.new_workers, cpu.size, cpu.target, cpu.action) == (2, 1, 3, "grow")
    assert len(cpu.jobs) == 8 and decision.unserved == ()
    assert decision.group("highmem").action == decision.group("gpu").action == "none"


@pytest.mark.parametrize(("jobs", "expected"), [
    # (cpus, MB, gpus) of each job -> the group it goes to: fits, least waste, then order
    ([(2, 2048, None)], {"cpu": 1}),
    ([(4, 7680, None)], {"cpu": 1}),
    ([(2, 16384, None)], {"highmem": 0}),  # highmem's start rule: RequestMemory > 16384
    ([(2, 20000, None)], {"highmem": 1}),
    ([(1, 1024, 1)], {"gpu": 1}),
    ([(8, 20000, None), (8, 20000, None), (8, 20000, None)], {"highmem": 3}),
    ([(4, 7680, None)] * 5, {"cpu": 3}),  # 1 + 5 would pass max 4: capped at 4
])
def test_each_job_goes_to_the_group_it_fits_with_least_waste(
    jobs: list[tuple[int, int, int | None]], expected: dict[str, int],
) -> None:
    decision = plan({"cpu": [member(1)]}, [], [job(i, *spec) for i, spec in enumerate(jobs)])
    grew = {g.name: g.target - g.size for g in decision.groups if g.target != g.size}
    assert grew == {k: v for k, v in expected.items() if v}, [g.reason for g in decision.groups]
    if expected == {"highmem": 0}:
        [(_, why)] = decision.unserved
        assert "group highmem's start rule" in why and "needs 16384 MB, group cpu has 7680" in why


def test_a_job_that_fits_no_group_is_reported_and_grows_nothing() -> None:
    decision = plan({"cpu": [member(1)]}, IDLE[:1], [job(1, cpus=64)])
    [(job_id, why)] = decision.unserved
    assert job_id == "10.1"
    assert why.startswith("fits no group: needs 64 CPUs, group cpu has 4")
    assert all(g.target == g.size for g in decision.groups)


def test_members_still_booting_count_as_capacity_on_the_way() -> None:
    booting = [member(1), member(6, created=JUST_NOW)]  # 6 is not in the pool yet
    decision = plan({"cpu": booting}, IDLE[:1], [job(i) for i in range(8)])
    cpu = decision.group("cpu")
    assert [m.state for m in cpu.members] == ["idle", "booting"]
    # four on worker-1's free slot, four on the booting member: nothing new
    assert (len(decision.matched_soon), cpu.new_workers, cpu.target) == (4, 0, 2)
    assert "wait for the 1 members still booting" in cpu.reason


def test_a_member_that_never_joined_is_reported_not_counted() -> None:
    decision = plan({"cpu": [member(1), member(7)]}, IDLE[:1], [job(i) for i in range(8)])
    cpu = decision.group("cpu")
    assert [m.state for m in cpu.members] == ["idle", "missing"]
    assert "not in the pool 900 s after it was created" in cpu.members[1].reason
    assert cpu.replace == ("member-7",) and cpu.action == "replace"
    assert cpu.new_workers == 1 and cpu.target == 3
    # an empty collector just restarted (or of unknown age) is no reason to replace anyone
    for since in (NOW - 60, None):
        empty = plan({"cpu": [member(1), member(7)]}, [], [], collector_since=since)
        assert empty.group("cpu").replace == ()


def test_the_last_member_that_never_joined_is_replaced_when_its_absence_is_real() -> None:
    # the group's only member never joined: the pool lists no machine at all, but the
    # collector has run for longer than a startd's update interval, so nobody is hiding
    decision = plan({"cpu": [member(7)]}, [], [], collector_since=NOW - 400)
    cpu = decision.group("cpu")
    assert [m.state for m in cpu.members] == ["missing"]
    assert cpu.replace == ("member-7",) and cpu.action == "replace"
    # a short join_timeout: the collector was up when the member was created, so its
    # absence is real however young the collector is; one started after it is not believed
    quick = _site(join_timeout=60)
    created = "2025-12-31T23:57:00Z"  # three minutes before NOW
    for since, replaced in ((NOW - 200, ("member-7",)), (NOW - 120, ())):
        decision = plan({"cpu": [member(7, created=created)]}, [], [], site=quick,
                        collector_since=since)
        assert decision.group("cpu").members[0].state == "missing"
        assert decision.group("cpu").replace == replaced, since
    # the collector's start unknown: an empty pool is not believed, a listing one is
    unknown = plan({"cpu": [member(7)]}, [], [], collector_since=None)
    assert unknown.group("cpu").replace == ()
    listing = plan({"cpu": [member(1), member(7)]}, IDLE[:1], [], collector_since=None)
    assert listing.group("cpu").replace == ("member-7",)


def test_jobs_the_negotiator_has_not_seen_wait_for_it() -> None:
    decision = plan({"cpu": [member(1)]}, [], [job(1, queued=NOW - 5)], last_cycle=NOW - 30)
    assert decision.not_yet_seen == ("10.1",)
    assert decision.group("cpu").target == 1


@pytest.mark.parametrize(("history", "why"), [
    ({"cpu": {"grew_at": NOW - 10}}, None),  # scale_up_delay 0: grows again at once
    ({"cpu": {"backoff_until": NOW + 60}}, "backs off for"),
])
def test_growth_waits_for_backoff(history: dict[str, Any], why: str | None) -> None:
    decision = plan({"cpu": [member(1)]}, [], [job(i, cpus=4, memory=4096) for i in range(3)],
                    **history)
    cpu = decision.group("cpu")
    if why is None:
        assert cpu.target == 4  # member-1 never joined: all three need new workers
    else:
        assert cpu.target == 1 and why in cpu.reason


def test_scale_up_delay_holds_a_group_that_just_grew() -> None:
    decision = plan({"cpu": [member(1)]}, [], [job(1, cpus=4)],
                    site=_site(scale_up_delay=300), cpu={"grew_at": NOW - 100})
    cpu = decision.group("cpu")
    assert cpu.target == 1 and "grew 100 s ago (scale_up_delay 300 s)" in cpu.reason


def test_a_group_at_max_says_so() -> None:
    members = [member(i) for i in range(1, 5)]
    busy = [_busy(m) for m in IDLE[:4]]
    decision = plan({"cpu": members}, busy, [job(1, cpus=4)])
    cpu = decision.group("cpu")
    assert cpu.target == 4 and "at max 4" in cpu.reason


def _busy(machine: Machine) -> Machine:
    slot = machine.slots[0]
    claimed = Slot(f"slot1_1@{machine.name}", "Claimed", "Busy", dynamic=True,
                   entered_current_state=NOW - 100, cpus=4, memory=7680)
    return dataclasses.replace(machine, slots=(dataclasses.replace(slot, cpus=0, memory=0,
                                                                  dynamic_slots=1), claimed))


def _drained(machine: Machine, busy: bool = False) -> Machine:
    base = _busy(machine) if busy else machine
    slots = tuple(dataclasses.replace(s, state="Drained",
                                      activity="Retiring" if busy else "Idle",
                                      entered_current_activity=NOW - 120)
                  if not s.dynamic else s for s in base.slots)
    return dataclasses.replace(base, slots=slots, drain_reason=DRAIN_REASON)


def test_idle_members_are_drained_first_and_removed_at_the_next_decision() -> None:
    members = [member(i) for i in range(1, 5)]
    first = plan({"cpu": members}, IDLE[:4], [])
    cpu = first.group("cpu")
    # worker-4 has been idle longest (25 h); default max_scale_in: 10 % of 4 -> 1
    assert cpu.drain == ("member-4",) and cpu.remove == () and cpu.target == 4
    assert "drained now, removed at the next decision" in cpu.members[3].reason
    second = plan({"cpu": members}, [*IDLE[:3], _drained(IDLE[3])], [])
    cpu = second.group("cpu")
    assert cpu.remove == ("member-4",) and cpu.target == 3 and cpu.action == "remove"
    assert cpu.drain == ()  # one member per decision


def test_a_member_claimed_between_drain_and_removal_is_returned_to_service() -> None:
    members = [member(i) for i in range(1, 3)]
    decision = plan({"cpu": members}, [_drained(IDLE[0], busy=True), IDLE[1]], [])
    cpu = decision.group("cpu")
    assert cpu.undrain == ("member-1",) and cpu.remove == ()
    assert "got a job before its drain took hold" in cpu.members[0].reason


def test_someone_elses_drain_is_left_alone() -> None:
    members = [member(i) for i in range(1, 3)]
    theirs = dataclasses.replace(_drained(IDLE[0], busy=True), drain_reason="operator")
    cpu = plan({"cpu": members}, [theirs, IDLE[1]], []).group("cpu")
    assert cpu.members[0].action == "keep" and "someone else" in cpu.members[0].reason


@pytest.mark.parametrize(("scaling", "size", "drained"), [
    ({}, 4, 1),                          # 10 % of 4, at least 1
    ({"max_scale_in": 3}, 4, 3),         # never below min 1
    ({"max_scale_in": 10, "keep_idle": 2}, 4, 2),
    ({"max_scale_in": 10, "idle_timeout": 12000}, 3, 0),  # idle 3.2 h and 40 min: too short
    ({"max_scale_in": 10, "idle_timeout": 2000}, 3, 2),  # min 1 keeps the third
])
def test_scale_in_limits(scaling: dict[str, Any], size: int, drained: int) -> None:
    decision = plan({"cpu": [member(i) for i in range(1, size + 1)]}, IDLE[:size], [],
                    site=_site(**scaling))
    assert len(decision.group("cpu").drain) == drained


def test_a_busy_worker_is_never_drained_or_removed() -> None:
    members = [member(i) for i in range(1, 4)]
    machines = [_busy(IDLE[0]), _busy(IDLE[1]), _busy(IDLE[2])]
    cpu = plan({"cpu": members}, machines, []).group("cpu")
    assert [m.state for m in cpu.members] == ["busy"] * 3
    assert cpu.drain == cpu.remove == () and cpu.target == 3


def test_the_decision_record_is_plain_json() -> None:
    decision = plan({"cpu": [member(1)]}, IDLE[:1], [job(i) for i in range(6)] + [job(9, 64)])
    record = json.loads(json.dumps(as_dict(decision)))
    assert record["groups"][0]["name"] == "cpu" and record["groups"][0]["action"] == "grow"
    assert record["unserved"][0]["job"] == "10.9"
    assert set(record) == {"time", "groups", "unserved", "matched_soon", "not_yet_seen"}


def test_condor_q_json_gives_the_idle_jobs_with_their_expressions() -> None:
    text = ('[{"ClusterId": 3, "ProcId": 0, "JobStatus": 1, "Owner": "bob", "QDate": 100, '
            '"RequestCpus": 2, "RequestMemory": "\\/Expr(ifThenElse(MemoryUsage =!= undefined,'
            ' MemoryUsage, 2048))\\/", "Requirements": "\\/Expr(TARGET.Cpus >= RequestCpus)\\/"},'
            ' {"ClusterId": 3, "ProcId": 1, "JobStatus": 2, "Owner": "bob", "QDate": 100}]')
    [idle] = parse_condor_q_json(text)
    assert idle.id == "3.0" and idle.queued_at == 100
    assert isinstance(idle.ad["Requirements"], Expression)
    matcher = Matcher()
    from heatgen.autoscale.planner import shape_of

    assert matcher.fit(idle, shape_of(SITE.groups[0])).need == (2, 2048, 0)


# --- one step of the loop, over the fake cloud ---------------------------------------------------

SINGLE = validate_site({**yaml.safe_load((EXAMPLES / "thesis.yaml").read_text()),
                        "autoscaling": {"mode": "queue", "telemetry": "none",
                                        "idle_timeout": 600}}, "queue.yaml")


class QueuePool(RecordedPool):
    """A recorded pool with a queue, keeping the drain reasons it was given."""

    def __init__(self, machines: list[Machine], jobs: list[Job]) -> None:
        super().__init__([machines])
        self.jobs = jobs
        self.reasons: list[str | None] = []

    def drain(self, machines: Any, graceful: bool = True, reason: str | None = None) -> None:
        super().drain(machines, graceful, reason)
        self.reasons.append(reason)

    def queue(self) -> Queue:
        return Queue(tuple(self.jobs), NOW - 30)


def _grid(cloud: FakeCloud, count: int) -> Any:
    stack = cloud.add_stack(SINGLE.site, worker_min="1", worker_max="7",
                            worker_desired=str(count))
    stack.resources = [
        Resource(f"member-{i}", "HeatGen::Grid::Worker", "CREATE_COMPLETE", "", f"nested-{i}",
                 "group-stack", parent="workers", created=LONG_AGO)
        for i in range(1, count + 1)
    ]
    stack.outputs = {"worker_count": count, "master_floating_ip": "203.0.113.10",
                     "worker_server_ids": {f"member-{i}": SERVER_IDS[i]
                                           for i in range(1, count + 1)}}
    return stack


def _step(cloud: FakeCloud, pool: QueuePool, dry_run: bool = False,
          state: loop.LoopState | None = None) -> loop.Outcome:
    return loop.step(cloud, SINGLE, lambda stack: pool, state or loop.LoopState(),
                     SilentReporter(), dry_run=dry_run, clock=FakeClock(), now=lambda: NOW)


def test_a_step_grows_the_group_with_one_patch_of_its_size() -> None:
    cloud = FakeCloud()
    _grid(cloud, 1)
    pool = QueuePool(IDLE[:1], [job(i, cpus=2, memory=1024) for i in range(5)])
    state = loop.LoopState()
    outcome = _step(cloud, pool, state=state)
    # two 2-CPU jobs on worker-1's 4 free CPUs; three need three more 2-CPU workers
    assert outcome.actions == ("workers: grew 1 -> 4",), outcome.skipped
    updates = [args for name, args in cloud.calls if name == "update_stack"]
    assert updates == [{"fields": {"parameters": {"worker_desired": 4}}, "patch": True}]
    assert state.added == 3 and state.grew_at == {"workers": NOW}


def test_a_dry_run_decides_and_changes_nothing() -> None:
    cloud = FakeCloud()
    _grid(cloud, 1)
    pool = QueuePool(IDLE[:1], [job(i, cpus=2) for i in range(5)])
    outcome = _step(cloud, pool, dry_run=True)
    assert outcome.decision is not None and outcome.decision.groups[0].target == 4
    assert outcome.actions == () and outcome.as_dict()["dry_run"] is True
    assert "update_stack" not in cloud.names() and pool.drain_requests == []


def test_idle_workers_are_drained_with_autoscales_reason_then_removed() -> None:
    cloud = FakeCloud()
    _grid(cloud, 2)
    pool = QueuePool(IDLE[:2], [])
    outcome = _step(cloud, pool)
    assert outcome.actions == ("workers: drained member-1 (removed at the next decision if "
                               "still idle)",)
    assert pool.reasons == [DRAIN_REASON] and "update_stack" not in cloud.names()
    # the next decision sees it drained and idle: marked, re-checked, PATCHed to 1
    pool = QueuePool([_drained(IDLE[0]), IDLE[1]], [])
    outcome = _step(cloud, pool)
    assert outcome.actions == ("workers: removed member-1; size 1",), outcome.skipped
    marks = [args for name, args in cloud.calls if name == "mark_unhealthy"]
    assert [m[:2] for m in marks] == [("member-1", True)]
    updates = [args for name, args in cloud.calls if name == "update_stack"]
    assert updates == [{"fields": {"parameters": {"worker_desired": 1}}, "patch": True}]


def test_a_busy_stack_or_an_unreachable_pool_skips_the_decision_with_the_reason() -> None:
    cloud = FakeCloud()
    stack = _grid(cloud, 1)
    stack.status = "UPDATE_IN_PROGRESS"
    stack.polls_left = 10
    pool = QueuePool(IDLE[:1], [job(i, cpus=2) for i in range(5)])
    outcome = _step(cloud, pool)
    assert outcome.actions == () and "is UPDATE_IN_PROGRESS: nothing done" in outcome.skipped[0]

    class Down(QueuePool):
        def machines(self) -> list[Machine]:
            raise CloudError("ssh to the master failed: Connection refused")

    state = loop.LoopState()
    outcome = _step(FakeCloud(), Down([], []), state=state)
    assert outcome.decision is None and state.failed_decisions == 1
    assert outcome.skipped[0].startswith("no decision: stack bergen-grid does not exist")
    cloud = FakeCloud()
    _grid(cloud, 1)
    outcome = _step(cloud, Down([], []), state=state)
    assert outcome.skipped == ("no decision: ssh to the master failed: Connection refused",)


def test_a_group_that_keeps_failing_backs_off() -> None:
    cloud = FakeCloud()
    _grid(cloud, 1)
    cloud.fail("update_stack", *[CloudError("HTTP 503") for _ in range(5)])
    state = loop.LoopState()
    pool = QueuePool(IDLE[:1], [job(i, cpus=2) for i in range(5)])
    for _ in range(3):
        outcome = _step(cloud, pool, state=state)
    assert "3 failures in a row: group workers backs off for 60 s" in outcome.skipped[0]
    assert state.backoff_until["workers"] == NOW + 60
    held = _step(cloud, pool, state=state)
    assert held.decision is not None and "backs off for" in held.decision.groups[0].reason


def test_a_member_that_never_joined_is_marked_and_the_group_patched_to_its_size() -> None:
    cloud = FakeCloud()
    _grid(cloud, 2)
    pool = QueuePool(IDLE[:1], [])  # member-2 never joined
    state = loop.LoopState()
    outcome = _step(cloud, pool, state=state)
    assert outcome.actions[0] == "workers: replaced member-2 (never joined the pool)"
    marks = [args for name, args in cloud.calls if name == "mark_unhealthy"]
    assert marks == [("member-2", True, "heatgen autoscale: never joined the pool, replaced")]
    updates = [args for name, args in cloud.calls if name == "update_stack"]
    assert updates[0] == {"fields": {"parameters": {"worker_desired": 2}}, "patch": True}
    assert state.replaced == 1 and state.failures == {"workers": 1}
    # the idle member-1 is not drained while the group is not whole
    assert pool.drain_requests == [] and len(outcome.actions) == 1


def test_the_status_file_is_prometheus_text_with_the_latest_record() -> None:
    cloud = FakeCloud()
    _grid(cloud, 1)
    state = loop.LoopState()
    outcome = _step(cloud, QueuePool(IDLE[:1], [job(i, cpus=2) for i in range(3)]), state=state)
    text = loop.status_text(outcome, state, "bergen-grid")
    assert 'heatgen_autoscale_decisions_total{stack="bergen-grid"} 1' in text
    assert 'heatgen_autoscale_group_target{stack="bergen-grid",group="workers"} 2' in text
    assert 'heatgen_autoscale_members_added_total{stack="bergen-grid"} 1' in text
    latest = next(line for line in text.splitlines() if line.startswith("# latest decision: "))
    assert json.loads(latest.removeprefix("# latest decision: "))["actions"] == [
        "workers: grew 1 -> 2"]


def test_autoscale_refuses_a_site_in_cpu_mode() -> None:
    cpu_site = validate_site(yaml.safe_load((EXAMPLES / "thesis.yaml").read_text()), "t.yaml")
    with pytest.raises(UsageError, match="autoscaling.mode is cpu"):
        loop.check_queue_mode(cpu_site, "t.yaml")
    assert ScaleRequest(workers=1).lock_held is False


def test_queue_mode_renders_no_cpu_alarms_and_a_unit_that_runs_the_loop(
    tmp_path: Any, capsys: Any,
) -> None:
    import configparser

    from heatclient.common import template_format

    from heatgen.cli import main
    from heatgen.render import render_site

    data = yaml.safe_load((EXAMPLES / "thesis.yaml").read_text())
    data["autoscaling"] = {**data["autoscaling"], "mode": "queue"}  # telemetry gnocchi stays
    site_file = tmp_path / "queue.yaml"
    site_file.write_text(yaml.safe_dump(data))
    grid = render_site(validate_site(data, "queue.yaml"))
    template = template_format.parse(grid.files["grid.yaml"])
    kinds = {r["type"] for r in template["resources"].values()}
    assert not any(kind.startswith("OS::Aodh::") for kind in kinds)
    assert "scale_up_policy" in template["resources"]  # the policies stay, for manual signals
    assert "cpu_high_threshold" not in grid.files["grid-env.yaml"]
    out = tmp_path / "out"
    assert main(["render", str(site_file), "-o", str(out), "--autoscale-unit"]) == 0
    unit = configparser.ConfigParser(interpolation=None)
    unit.read_string((out / "heatgen-autoscale-bergen-grid.service").read_text())
    command = unit["Service"]["ExecStart"]
    assert command.startswith("/usr/bin/env heatgen autoscale ")
    assert str(site_file.resolve()) in command and "--status-file" in command
    assert unit["Service"]["KillSignal"] == "SIGTERM"
    assert unit["Install"]["WantedBy"] == "multi-user.target"
    capsys.readouterr()
    assert main(["render", str(EXAMPLES / "thesis.yaml"), "-o", str(tmp_path / "cpu"),
                 "--autoscale-unit"]) == 2
    assert "autoscaling.mode is cpu" in capsys.readouterr().err


def test_the_ssh_pool_reads_the_idle_jobs_and_the_negotiators_last_cycle() -> None:
    from heatgen.pool.ssh import SshPool

    from .test_pool import HOST, FakeRunner, done

    jobs = ('[{"ClusterId": 7, "ProcId": 0, "JobStatus": 1, "Owner": "carol", "QDate": 50, '
            '"RequestCpus": 2, "Requirements": "\\/Expr(TARGET.Cpus >= 2)\\/"}]')
    daemons = "Collector undefined 1767220000\nNegotiator 1767225500 1767220001\n"
    runner = FakeRunner(done(jobs), done(daemons))
    queue = SshPool(HOST, runner=runner).queue()
    assert [j.id for j in queue.jobs] == ["7.0"]
    assert (queue.last_cycle_end, queue.collector_since) == (1767225500, 1767220000)
    commands = [argv[-1] for argv, _ in runner.calls]
    assert commands[0].startswith("condor_q -allusers -constraint 'JobStatus == 1' -json "
                                  "-attributes ClusterId,ProcId,Owner,JobStatus,QDate")
    assert commands[1] == ("condor_status -any -constraint 'MyType == \"Negotiator\" || "
                           "MyType == \"Collector\"' -af MyType LastNegotiationCycleEnd0 "
                           "'MonitorSelfTime - MonitorSelfAge'")
    # no negotiator ad yet, nothing known
    runner = FakeRunner(done(jobs), done(""))
    queue = SshPool(HOST, runner=runner).queue()
    assert (queue.last_cycle_end, queue.collector_since) == (None, None)


def test_a_drain_reason_is_read_from_the_slot_ads() -> None:
    from heatgen.pool import parse_startd_ads

    ads = [{"Name": "slot1@w1", "Machine": "w1", "State": "Drained", "Activity": "Idle",
            "PartitionableSlot": True, "NumDynamicSlots": 0, "DrainReason": DRAIN_REASON}]
    [machine] = parse_startd_ads(ads)
    assert machine.drain_reason == DRAIN_REASON and machine.idle and machine.draining


def test_a_mark_an_interrupted_run_left_is_taken_back_before_anything_else() -> None:
    from heatgen.scalein.shrink import MARK_REASON

    cloud = FakeCloud()
    stack = _grid(cloud, 2)
    # a scale-in SIGKILLed between marking member-2 and the PATCH
    stack.resources[1] = dataclasses.replace(stack.resources[1], status="CHECK_FAILED",
                                             reason=MARK_REASON)
    pool = QueuePool(IDLE[:2], [job(i, cpus=2) for i in range(9)])
    outcome = _step(cloud, pool)
    assert outcome.actions == ("workers: took back the mark an interrupted heatgen left on "
                               "member-2",)
    marks = [args for name, args in cloud.calls if name == "mark_unhealthy"]
    assert [m[:2] for m in marks] == [("member-2", False)]
    assert "update_stack" not in cloud.names()  # no PATCH that would replace member-2


def test_a_drain_the_collector_does_not_show_yet_is_neither_repeated_nor_removed() -> None:
    cloud = FakeCloud()
    _grid(cloud, 2)
    state = loop.LoopState()
    first = _step(cloud, QueuePool(IDLE[:2], []), state=state)
    assert first.decision is not None and first.decision.groups[0].drain == ("member-1",)
    # the next decision still sees member-1's old ad (Unclaimed/Idle, no DrainReason)
    pool = QueuePool(IDLE[:2], [])
    second = _step(cloud, pool, state=state)
    assert second.decision is not None
    member = second.decision.groups[0].members[0]
    assert (member.state, member.action) == ("draining", "keep")
    assert "not yet shown by the collector" in member.reason
    assert pool.drain_requests == [] and "update_stack" not in cloud.names()
