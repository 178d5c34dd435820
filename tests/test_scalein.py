"""Choosing which group members a scale-in removes, over the recorded pool snapshots."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from heatgen.cloud.group import Member
from heatgen.cloud.interface import Resource, Stack
from heatgen.config import load_site, validate_site
from heatgen.errors import CloudError, UsageError, WaitTimeout
from heatgen.ops.report import SilentReporter
from heatgen.ops.scale import ScaleRequest, check_request, drain_timeout, scale
from heatgen.pool import Machine, parse_condor_status_json, parse_startd_ads
from heatgen.sandbox.recording import DrainRequest, RecordedPool
from heatgen.scalein import shrink
from heatgen.scalein.choice import (
    MATCHED_BY_ADDRESS,
    MATCHED_BY_SERVER_ID,
    Choice,
    Verdict,
    assess_members,
    choose_removals,
    format_duration,
    recheck,
)

from .conftest import EXAMPLES
from .fakecloud import FakeClock, FakeCloud
from .test_pool import SERVER_IDS

DATA = Path(__file__).resolve().parent / "data" / "condor"
NOW = 1767225600


def machines_of(name: str) -> list[Machine]:
    return parse_condor_status_json((DATA / f"{name}.json").read_text(encoding="utf-8"))


def member(index: int, *, server_id: str | None = "known", created: int | None = None) -> Member:
    """Group member ``index`` as Heat reports it: its worker is demo-worker-<index>."""
    sid = SERVER_IDS.get(index) if server_id == "known" else server_id
    order = index if created is None else created
    return Member(f"member-{index}", sid, f"10.0.0.{10 + index}", order)


def members(*indexes: int) -> list[Member]:
    return [member(i) for i in indexes]


def names(verdicts: Sequence[Verdict]) -> list[str]:
    return [v.member.name for v in verdicts]


def reasons(verdicts: Sequence[Verdict]) -> list[str]:
    return [v.reason for v in verdicts]


def test_idle_longest_first_then_newest() -> None:
    choice = choose_removals(members(1, 2, 3, 4, 5), machines_of("idle-five"), 3, NOW)
    assert names(choice.chosen) == ["member-4", "member-1", "member-3"]
    assert reasons(choice.chosen) == ["idle for 1d01h", "idle for 3h12m", "idle for 40m"]
    assert names(choice.spare) == ["member-2", "member-5"]
    assert choice.kept == ()
    assert choice.needed == 0
    assert choice.members == (member(4), member(1), member(3))
    assert choice.chosen[0].machines == ("demo-worker-4.novalocal",)
    assert choice.chosen[0].matched_by == MATCHED_BY_SERVER_ID
    assert choice.chosen[0].idle_since == NOW - 90000


def test_ties_go_to_the_newest_member() -> None:
    older_three = [member(2, created=9), member(3, created=1)]
    choice = choose_removals(older_three, machines_of("idle-five"), 1, NOW)
    assert names(choice.chosen) == ["member-2"]


def test_busy_members_are_kept_with_reasons() -> None:
    choice = choose_removals(members(1, 2, 3, 4, 5), machines_of("busy-two-of-five"), 4, NOW)
    assert names(choice.chosen) == ["member-1", "member-3", "member-5"]
    assert reasons(choice.chosen) == ["idle for 2h00m", "idle for 20m", "idle for 5m"]
    assert choice.needed == 1
    assert names(choice.kept) == ["member-2", "member-4"], "the most recently claimed first"
    assert reasons(choice.kept) == [
        "busy: 2 dynamic slots claimed",
        "busy: 1 dynamic slot claimed",
    ]
    assert [v.busy_since for v in choice.kept] == [NOW - 3000, NOW - 36000]
    assert not any(v.removable for v in choice.kept)


def test_the_ten_hour_job_is_never_chosen() -> None:
    choice = choose_removals(members(1, 2, 3, 4, 5), machines_of("busy-two-of-five"), 5, NOW)
    assert "member-4" not in names(choice.chosen)
    assert choice.needed == 2


def test_members_not_in_the_pool_go_first_oldest_first() -> None:
    group = [*members(1, 2, 3, 4, 5), member(6, created=6), member(7, created=0)]
    choice = choose_removals(group, machines_of("idle-five"), 3, NOW)
    assert names(choice.chosen) == ["member-7", "member-6", "member-4"]
    assert reasons(choice.chosen)[:2] == ["not in the pool", "not in the pool"]
    assert choice.chosen[0].machines == () and not choice.chosen[0].in_pool


def test_an_empty_pool_is_not_taken_as_idle_workers() -> None:
    choice = choose_removals(members(1, 2, 3), machines_of("no-machines"), 2, NOW)
    assert choice.chosen == ()
    assert choice.needed == 2
    assert names(choice.kept) == ["member-3", "member-2", "member-1"]
    assert reasons(choice.kept)[0] == (
        "not in the pool, but the pool lists none of this group's workers: "
        "not taken as idle (collector restarting?)"
    )


def test_fallback_to_the_private_address() -> None:
    group = [member(1), member(2), member(3, server_id=None)]
    choice = choose_removals(group, machines_of("no-server-id"), 1, NOW)
    (chosen,) = choice.chosen
    assert chosen.member.name == "member-3"
    assert chosen.matched_by == MATCHED_BY_ADDRESS
    assert chosen.machines == ("demo-worker-3.novalocal",)
    assert chosen.reason == "idle for 4h00m (matched by address 10.0.0.13)"


def test_the_address_fallback_applies_even_when_heat_knows_the_server_id() -> None:
    verdicts, unmatched = assess_members(members(3), machines_of("no-server-id"), NOW)
    assert verdicts[0].matched_by == MATCHED_BY_ADDRESS
    assert unmatched == ("demo-worker-1.novalocal", "demo-worker-2.novalocal")


def test_an_address_never_beats_a_conflicting_server_id() -> None:
    stranger = Member("member-x", "00000000-0000-4000-8000-000000000000", "10.0.0.11", 1)
    verdicts, unmatched = assess_members([stranger, member(2)], machines_of("idle-five"), NOW)
    assert verdicts[0].reason == "not in the pool"
    assert "demo-worker-1.novalocal" in unmatched


def test_server_ids_match_whatever_their_case() -> None:
    upper = Member("member-1", SERVER_IDS[1].upper(), None, 1)
    verdicts, _ = assess_members([upper], machines_of("idle-five"), NOW)
    assert verdicts[0].machines == ("demo-worker-1.novalocal",)


def test_a_busy_machine_on_the_members_address_keeps_it() -> None:
    ads: list[dict[str, Any]] = [
        {
            "Name": "slot1@a",
            "Machine": "a",
            "State": "Unclaimed",
            "Activity": "Idle",
            "PartitionableSlot": True,
            "NumDynamicSlots": 0,
            "EnteredCurrentState": NOW - 60,
            "HeatGenServerId": "sid-1",
            "MyAddress": "<10.0.0.11:9618>",
        },
        {
            "Name": "slot1@stale",
            "Machine": "stale",
            "State": "Claimed",
            "Activity": "Busy",
            "EnteredCurrentState": NOW - 600,
            "MyAddress": "<10.0.0.11:9618>",
        },
    ]
    group = [Member("member-1", "sid-1", "10.0.0.11", 1)]
    (verdict,), _ = assess_members(group, parse_startd_ads(ads), NOW)
    assert not verdict.removable
    assert verdict.machines == ("a", "stale")
    assert verdict.reason == "stale: busy: 1 of 1 slot claimed"


def test_static_slots() -> None:
    choice = choose_removals(members(1, 2), machines_of("static-one-claimed"), 2, NOW)
    assert names(choice.chosen) == ["member-2"]
    assert reasons(choice.chosen) == ["idle for 30m"]
    assert reasons(choice.kept) == ["busy: 1 of 2 slots claimed"]
    assert choice.needed == 1


def test_race_recheck_drops_a_member_claimed_meanwhile() -> None:
    pool = RecordedPool.from_files([DATA / "race-1-idle.json", DATA / "race-2-claimed.json"])
    choice = choose_removals(members(1, 2, 3), pool.machines(), 2, NOW)
    assert names(choice.chosen) == ["member-1", "member-2"]
    checked = recheck(choice, pool.machines(), NOW + 60)
    assert names(checked.chosen) == ["member-2"]
    assert checked.dropped == ("member-1",)
    assert checked.needed == 1
    assert names(checked.kept) == ["member-1"]
    assert reasons(checked.kept) == ["changed since the choice: busy: 1 dynamic slot claimed"]
    assert names(checked.spare) == ["member-3"], "a replacement needs its own fresh check"
    assert checked.now == NOW + 60


def test_recheck_of_an_unchanged_pool_keeps_the_choice() -> None:
    machines = machines_of("busy-two-of-five")
    choice = choose_removals(members(1, 2, 3, 4, 5), machines, 2, NOW)
    assert recheck(choice, machines) == choice


def test_recheck_against_an_empty_pool_drops_everything() -> None:
    choice = choose_removals(members(1, 2, 3), machines_of("race-1-idle"), 2, NOW)
    checked = recheck(choice, machines_of("no-machines"))
    assert checked.chosen == ()
    assert checked.dropped == ("member-1", "member-2")


def test_a_drained_member_becomes_removable() -> None:
    retiring = choose_removals(members(1, 2), machines_of("drain-1-retiring"), 2, NOW)
    assert names(retiring.chosen) == ["member-1"]
    assert reasons(retiring.kept) == ["draining: 1 dynamic slot still claimed"]
    drained = choose_removals(members(1, 2), machines_of("drain-2-drained"), 2, NOW + 1800)
    assert names(drained.chosen) == ["member-1", "member-2"]
    assert reasons(drained.chosen) == ["idle for 1h10m", "idle for 5m"]


def test_removing_nothing() -> None:
    choice = choose_removals(members(1, 2), machines_of("idle-five"), 0, NOW)
    assert choice == Choice(
        wanted=0,
        now=NOW,
        chosen=(),
        kept=(),
        spare=choice.spare,
        unmatched=(
            "demo-worker-3.novalocal",
            "demo-worker-4.novalocal",
            "demo-worker-5.novalocal",
        ),
    )
    assert names(choice.spare) == ["member-1", "member-2"]


def test_asking_for_more_than_the_group() -> None:
    choice = choose_removals(members(1, 2), machines_of("idle-five"), 5, NOW)
    assert len(choice.chosen) == 2 and choice.needed == 3


def test_bad_requests() -> None:
    with pytest.raises(UsageError, match="negative"):
        choose_removals(members(1), [], -1, NOW)
    with pytest.raises(UsageError, match="member-1 more than once"):
        choose_removals([member(1), member(1)], [], 1, NOW)


def test_unknown_idle_time_sorts_after_known_ones() -> None:
    ads: list[dict[str, Any]] = [
        {"Name": "slot1@a", "Machine": "a", "State": "Unclaimed", "HeatGenServerId": "a"},
        {
            "Name": "slot1@b",
            "Machine": "b",
            "State": "Unclaimed",
            "HeatGenServerId": "b",
            "EnteredCurrentState": NOW - 10,
        },
    ]
    group = [Member("ma", "a", None, 2), Member("mb", "b", None, 1)]
    choice = choose_removals(group, parse_startd_ads(ads), 2, NOW)
    assert names(choice.chosen) == ["mb", "ma"]
    assert reasons(choice.chosen) == ["idle for 10s", "idle (since unknown)"]


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (-5, "0s"),
        (59, "59s"),
        (60, "1m"),
        (11520, "3h12m"),
        (3600, "1h00m"),
        (90000, "1d01h"),
        (86400 * 12 + 7200, "12d02h"),
    ],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


# --- draining: the deadline follows the retirement time, and a timeout cancels the drains -----


SITE = load_site(EXAMPLES / "thesis.yaml")


def grid(cloud: FakeCloud, count: int = 5) -> Stack:
    """The thesis grid with ``count`` members whose workers are demo-worker-<i>."""
    stack = cloud.add_stack(SITE.site, worker_min="0", worker_max="7",
                            worker_desired=str(count))
    names = [f"member-{i}" for i in range(1, count + 1)]
    stack.resources = [
        Resource(name, "HeatGen::Grid::Worker", "CREATE_COMPLETE", "", f"nested-{name}",
                 "group-stack", parent="workers", created=f"2026-01-01T00:00:0{i}Z")
        for i, name in enumerate(names, start=1)
    ]
    stack.outputs = {
        "worker_count": count,
        "worker_server_ids": {name: SERVER_IDS[i] for i, name in enumerate(names, start=1)},
        "worker_private_ips": {name: f"10.0.0.{10 + i}" for i, name in enumerate(names, 1)},
        "master_floating_ip": "203.0.113.10",
    }
    view = cloud.get_stack(SITE.site)
    assert view is not None
    return view


class MachinePool(RecordedPool):
    """A recorded pool that keeps the Machine values it was asked to drain or cancel, and can
    refuse the drain of one machine."""

    def __init__(self, snapshots: Sequence[Sequence[Machine] | str], refuse: str = "") -> None:
        super().__init__(snapshots)
        self.refuse = refuse
        self.drained: list[Machine] = []
        self.cancelled: list[Machine] = []

    def drain(self, machines: Sequence[Machine], graceful: bool = True,
              reason: str | None = None) -> None:
        if any(m.name == self.refuse for m in machines):
            raise CloudError(f"the startd of {self.refuse} refused to drain: PERMISSION DENIED")
        super().drain(machines, graceful)
        self.drained.extend(machines)

    def cancel_drain(self, machines: Sequence[Machine]) -> None:
        super().cancel_drain(machines)
        self.cancelled.extend(machines)


class Ticks:
    """A monotonic clock that moves only when slept on."""

    def __init__(self) -> None:
        self.t = 0.0

    def monotonic(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += seconds


def drain_options(timeout: float) -> tuple[shrink.ScaleInOptions, Ticks]:
    ticks = Ticks()
    options = shrink.ScaleInOptions(drain=True, drain_timeout=timeout, now=lambda: NOW,
                                    monotonic=ticks.monotonic, sleep=ticks.sleep)
    return options, ticks


def test_a_drain_past_its_deadline_is_cancelled_so_the_jobs_keep_running() -> None:
    cloud = FakeCloud()
    stack = grid(cloud)
    pool = MachinePool([machines_of("busy-two-of-five")])
    options, ticks = drain_options(30)
    notes: list[str] = []
    with pytest.raises(WaitTimeout) as caught:
        shrink.choose(cloud, stack, pool, 1, options, notes.append)
    worker = "demo-worker-2.novalocal"
    assert str(caught.value) == (
        f"member-2 still run jobs after 30 s of draining; nothing was removed: heatgen "
        f"cancelled the drains it started ({worker}), so their jobs keep running and they "
        "take new jobs again"
    )
    assert pool.drain_requests == [DrainRequest((worker,), True)]
    assert pool.cancel_requests == [(worker,)]
    snapshot = {m.name: m for m in machines_of("busy-two-of-five")}
    assert pool.drained == [snapshot[worker]] and pool.cancelled == [snapshot[worker]]
    assert ticks.t >= 30
    assert "mark_unhealthy" not in cloud.names()


def test_a_failed_cancel_says_the_drain_goes_on_and_how_to_stop_it() -> None:
    class NoCancel(MachinePool):
        def cancel_drain(self, machines: Sequence[Machine]) -> None:
            raise CloudError("ssh to root@203.0.113.10 failed: Connection timed out")

    cloud = FakeCloud()
    pool = NoCancel([machines_of("busy-two-of-five")])
    options, _ = drain_options(0)
    with pytest.raises(WaitTimeout) as caught:
        shrink.choose(cloud, grid(cloud), pool, 1, options, lambda text: None)
    assert str(caught.value) == (
        "member-2 still run jobs after 0 s of draining; nothing was removed, and cancelling "
        "the drains failed (ssh to root@203.0.113.10 failed: Connection timed out): they go on "
        "in HTCondor until `condor_drain -cancel` runs for demo-worker-2.novalocal on the master"
    )


def test_a_finished_drain_is_not_cancelled() -> None:
    cloud = FakeCloud()
    stack = grid(cloud, 2)
    pool = MachinePool([machines_of("drain-1-retiring"), machines_of("drain-2-drained")])
    options, _ = drain_options(3600)
    plan = shrink.choose(cloud, stack, pool, 0, options, lambda text: None)
    assert plan.removed == ("member-1", "member-2")
    assert plan.drained == ("member-2",)
    assert pool.drain_requests == [DrainRequest(("demo-worker-2.novalocal",), True)]
    assert pool.cancel_requests == []


def test_a_refused_drain_cancels_the_drains_already_started() -> None:
    cloud = FakeCloud()
    pool = MachinePool([machines_of("busy-two-of-five")], refuse="demo-worker-4.novalocal")
    options, _ = drain_options(3600)
    notes: list[str] = []
    with pytest.raises(CloudError, match="the startd of demo-worker-4.novalocal refused"):
        shrink.choose(cloud, grid(cloud), pool, 0, options, notes.append)
    assert [m.name for m in pool.drained] == ["demo-worker-2.novalocal"]
    assert [m.name for m in pool.cancelled] == ["demo-worker-2.novalocal"]
    assert "cancelling the drains already started (demo-worker-2.novalocal)" in notes


def site_with_retirement(seconds: int) -> Any:
    data = yaml.safe_load((EXAMPLES / "thesis.yaml").read_text(encoding="utf-8"))
    data["condor"]["retirement_time"] = seconds
    return validate_site(data, "site.yaml")


def test_the_drain_timeout_defaults_to_the_retirement_time() -> None:
    assert drain_timeout(SITE, ScaleRequest(workers=1, drain=True)) == 86400.0
    site = site_with_retirement(7200)
    assert drain_timeout(site, ScaleRequest(workers=1, drain=True)) == 7200.0
    assert drain_timeout(site, ScaleRequest(workers=1, drain=True, drain_timeout=7200)) == 7200
    assert drain_timeout(site, ScaleRequest(workers=1, drain=True, drain_timeout=60)) == 60


def test_a_drain_timeout_past_the_retirement_time_is_refused_before_any_api_call() -> None:
    site = site_with_retirement(7200)
    request = ScaleRequest(workers=1, drain=True, drain_timeout=7201, site_label="site.yaml")
    with pytest.raises(UsageError) as caught:
        check_request(request, site)
    assert str(caught.value) == (
        "--drain-timeout 7201 is longer than condor.retirement_time 7200 of site.yaml: "
        "HTCondor evicts the draining jobs after 7200 s, before heatgen would give up; pass "
        "--drain-timeout 7200 or less"
    )
    cloud = FakeCloud()
    with pytest.raises(UsageError, match="longer than condor.retirement_time 7200"):
        scale(cloud, site, request, SilentReporter())
    assert cloud.calls == []
    with pytest.raises(UsageError, match=r"--drain-timeout must be >= 0 \(got -1\)"):
        check_request(ScaleRequest(workers=1, drain=True, drain_timeout=-1))


def test_scale_waits_for_a_drain_as_long_as_the_retirement_time() -> None:
    site = site_with_retirement(600)
    cloud = FakeCloud()
    grid(cloud)
    pool = MachinePool([machines_of("busy-two-of-five")])
    options, ticks = drain_options(1)  # replaced by the site's retirement time
    with pytest.raises(WaitTimeout, match="after 600 s of draining; nothing was removed"):
        scale(cloud, site, ScaleRequest(workers=1, drain=True), SilentReporter(),
              pool_for=lambda stack: pool, scale_in_options=options)
    assert 600 <= ticks.t < 600 + shrink.DRAIN_POLL
    assert pool.cancel_requests == [("demo-worker-2.novalocal",)]


# --- a mark a killed run left between marking and the PATCH -----------------------------------


def _left_marked(stack: Stack, cloud: FakeCloud, index: int, reason: str) -> None:
    """Member ``index`` (1-based) as a heatgen SIGKILLed after marking it left it."""
    fake = cloud.stacks[stack.id]
    fake.resources[index - 1] = dataclasses.replace(fake.resources[index - 1],
                                                    status="CHECK_FAILED", reason=reason)


class Notes(SilentReporter):
    def __init__(self) -> None:
        self.notes: list[str] = []

    def note(self, message: str) -> None:
        self.notes.append(message)


def _marks(cloud: FakeCloud) -> list[tuple[str, bool]]:
    return [(args[0], args[1]) for name, args in cloud.calls if name == "mark_unhealthy"]


def test_a_same_size_scale_takes_back_a_mark_a_killed_run_left_before_its_patch() -> None:
    # Heat replaces a marked member at the next update of any kind: a PATCH of the same size
    # would replace member-2, busy or not (a job may have landed on it since the kill).
    cloud = FakeCloud()
    stack = grid(cloud, 3)
    _left_marked(stack, cloud, 2, shrink.MARK_REASON)
    report = Notes()
    result = scale(cloud, SITE, ScaleRequest(workers=3), report, FakeClock())
    assert result.action == "scaled"
    assert _marks(cloud) == [("member-2", False)]
    assert cloud.names().index("mark_unhealthy") < cloud.names().index("update_stack")
    assert any("took back the mark an interrupted heatgen left on member-2" in n
               for n in report.notes), report.notes


def test_stale_marks_are_found_by_a_filtered_listing_unless_a_top_level_one_hides_them(
) -> None:
    # heat-api filters the listing by state: a few rows, not every member. When a resource of
    # the grid's own stack is marked too, Heat's filtered listing leaves the members out: then
    # every member is listed, and the stale mark is still taken back.
    cloud = FakeCloud()
    stack = grid(cloud, 3)
    _left_marked(stack, cloud, 2, shrink.MARK_REASON)
    cloud.calls.clear()
    assert [m.name for m in shrink.take_back_stale_marks(cloud, stack).taken] == ["member-2"]
    assert cloud.calls[0] == ("resources", (1, "CHECK_FAILED"))
    assert ("resources", 1) not in cloud.calls
    cloud.calls.clear()
    cloud.stacks[stack.id].resources.append(
        Resource("master", "OS::Nova::Server", "CHECK_FAILED", "marked by hand", "srv", ""))
    assert [m.name for m in shrink.take_back_stale_marks(cloud, stack).taken] == ["member-2"]
    assert ("resources", 1) in cloud.calls


def test_a_scale_in_takes_back_a_stale_mark_before_it_marks_its_own() -> None:
    cloud = FakeCloud()
    stack = grid(cloud)
    _left_marked(stack, cloud, 2, shrink.MARK_REASON)
    pool = MachinePool([machines_of("busy-two-of-five")])
    scale(cloud, SITE, ScaleRequest(workers=4), SilentReporter(), FakeClock(),
          pool_for=lambda s: pool)
    marks = _marks(cloud)
    assert marks[0] == ("member-2", False) and any(unhealthy for _, unhealthy in marks[1:])
    assert cloud.names().index("update_stack") > len(marks)


def test_a_stale_mark_that_cannot_be_taken_back_stops_the_resize() -> None:
    cloud = FakeCloud()
    stack = grid(cloud, 3)
    _left_marked(stack, cloud, 2, shrink.MARK_REASON)
    cloud.fail("mark_unhealthy", CloudError("Heat answered 503"))
    with pytest.raises(CloudError, match="member-2: Heat answered 503.*nothing was changed"):
        scale(cloud, SITE, ScaleRequest(workers=3), SilentReporter(), FakeClock())
    assert "update_stack" not in cloud.names()


def test_marks_heatgen_did_not_make_for_a_removal_are_left_alone() -> None:
    cloud = FakeCloud()
    stack = grid(cloud, 3)
    _left_marked(stack, cloud, 1, "marked by the operator")
    _left_marked(stack, cloud, 2, "heatgen autoscale: never joined the pool, replaced")
    scale(cloud, SITE, ScaleRequest(workers=3), SilentReporter(), FakeClock())
    assert _marks(cloud) == [] and "update_stack" in cloud.names()
