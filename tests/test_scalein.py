"""Choosing which group members a scale-in removes, over the recorded pool snapshots."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from heatgen.cloud.group import Member
from heatgen.errors import UsageError
from heatgen.pool import Machine, parse_condor_status_json, parse_startd_ads
from heatgen.sandbox.recording import RecordedPool
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
