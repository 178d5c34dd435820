"""Which workers a scale-in removes, decided from Heat's group members and the pool's machines.

Pure logic: the caller reads the members from Heat (:func:`heatgen.cloud.group.group_members`)
and the machines from a :class:`heatgen.pool.PoolQuery`, then acts on the :class:`Choice`
(mark the chosen members unhealthy, shrink the group to an absolute size). Heat itself would
remove the oldest member, busy or not; this module picks members that run no job:

1. members whose machine is not in the pool: a worker that never joined (or has left) runs no
   HTCondor job, so it is the first to go; the oldest first, as it has been absent longest
   and is likelier broken than still booting;
2. idle members, idle longest first, then the newest member first (the long-lived members
   are kept, and Heat's own oldest-first order is what caused the thesis's lost jobs);
3. busy members are never chosen; they are returned as ``kept``, with reasons, in the order a
   caller should take them for ``--drain`` or ``--force``: the most recently claimed first,
   as it has the least work to lose.

One exception to 1: if the pool lists none of the group's members at all, the collector is
more likely empty (restarted in the last update interval) than every worker gone, so absent
members are kept as "not trusted" rather than chosen.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from heatgen.cloud.group import Member
from heatgen.errors import UsageError
from heatgen.pool import Machine

MATCHED_BY_SERVER_ID = "server id"
MATCHED_BY_ADDRESS = "address"


@dataclass(frozen=True)
class Verdict:
    """What the pool says about one member, and whether removing it is safe."""

    member: Member
    removable: bool
    reason: str
    machines: tuple[str, ...] = ()
    matched_by: str | None = None
    idle_since: int | None = None
    busy_since: int | None = None

    @property
    def in_pool(self) -> bool:
        return bool(self.machines)


@dataclass(frozen=True)
class Choice:
    """The members to remove, and what was kept and why.

    ``chosen`` are removable members in removal order, at most ``wanted``; ``spare`` are
    removable members that were not needed; ``kept`` are members that must not be removed
    now; ``dropped`` names chosen members that :func:`recheck` found claimed meanwhile;
    ``unmatched`` names pool machines that belong to no member (for diagnostics).
    """

    wanted: int
    now: float
    chosen: tuple[Verdict, ...]
    kept: tuple[Verdict, ...]
    spare: tuple[Verdict, ...] = ()
    dropped: tuple[str, ...] = ()
    unmatched: tuple[str, ...] = ()

    @property
    def needed(self) -> int:
        """How many more members would have to go to remove ``wanted``."""
        return max(0, self.wanted - len(self.chosen))

    @property
    def members(self) -> tuple[Member, ...]:
        return tuple(verdict.member for verdict in self.chosen)


def format_duration(seconds: float) -> str:
    """``3h12m``, ``1d04h``, ``12m``, ``40s``: two units at most, never negative."""
    total = max(0, int(seconds))
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m"
    return f"{secs}s"


def _address(text: str) -> str:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return text


def _match(
    members: Sequence[Member], machines: Sequence[Machine]
) -> tuple[dict[str, tuple[list[Machine], str | None]], list[str]]:
    """Each member's machines and how they were found, plus the machines no member claims.

    A machine advertising ``HeatGenServerId`` belongs to the member with that Nova id and to
    no other. A machine without one (its worker never wrote the id) belongs to the member
    whose private IP it advertises; an IP is not trusted over a conflicting server id, since
    a deleted server's address can be reused by a new one.
    """
    by_id: dict[str, list[Machine]] = {}
    without_id: list[Machine] = []
    for machine in machines:
        if machine.server_id:
            by_id.setdefault(machine.server_id.lower(), []).append(machine)
        else:
            without_id.append(machine)
    matches: dict[str, tuple[list[Machine], str | None]] = {}
    claimed: set[str] = set()
    for member in members:
        found = list(by_id.get(member.server_id.lower(), [])) if member.server_id else []
        how = MATCHED_BY_SERVER_ID if found else None
        if member.private_ip:
            ip = _address(member.private_ip)
            by_ip = [m for m in without_id if ip in {_address(a) for a in m.addresses}]
            if by_ip and how is None:
                how = MATCHED_BY_ADDRESS
            found += by_ip
        matches[member.name] = (found, how)
        claimed.update(machine.name for machine in found)
    unmatched = [machine.name for machine in machines if machine.name not in claimed]
    return matches, unmatched


def _verdict(
    member: Member, found: list[Machine], how: str | None, now: float, trust_absence: bool
) -> Verdict:
    names = tuple(machine.name for machine in found)
    if not found:
        if trust_absence:
            return Verdict(member, True, "not in the pool")
        return Verdict(
            member,
            False,
            "not in the pool, but the pool lists none of this group's workers: "
            "not taken as idle (collector restarting?)",
        )
    busy = [machine for machine in found if not machine.idle]
    if busy:
        reasons = [machine.busy_reason or "busy" for machine in busy]
        if len(found) > 1:
            reasons = [f"{m.name}: {r}" for m, r in zip(busy, reasons, strict=True)]
        claims = [m.busy_since for m in busy if m.busy_since is not None]
        return Verdict(
            member,
            False,
            "; ".join(reasons),
            machines=names,
            matched_by=how,
            busy_since=min(claims) if claims else None,
        )
    times = [machine.idle_since for machine in found]
    since = None if any(t is None for t in times) else max(t for t in times if t is not None)
    reason = "idle (since unknown)" if since is None else f"idle for {format_duration(now - since)}"
    if how == MATCHED_BY_ADDRESS:
        reason += f" (matched by address {member.private_ip})"
    return Verdict(member, True, reason, machines=names, matched_by=how, idle_since=since)


def assess_members(
    members: Sequence[Member], machines: Sequence[Machine], now: float
) -> tuple[tuple[Verdict, ...], tuple[str, ...]]:
    """A verdict for every member, in the order given, and the unmatched machines' names."""
    names = [member.name for member in members]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise UsageError(f"the worker group lists {', '.join(duplicates)} more than once")
    matches, unmatched = _match(members, machines)
    trust_absence = any(found for found, _ in matches.values())
    verdicts = tuple(
        _verdict(member, *matches[member.name], now=now, trust_absence=trust_absence)
        for member in members
    )
    return verdicts, tuple(unmatched)


def _removal_order(verdict: Verdict) -> tuple[int, float, int]:
    if not verdict.in_pool:
        return (0, verdict.member.created_order, 0)
    since = math.inf if verdict.idle_since is None else verdict.idle_since
    return (1, since, -verdict.member.created_order)


def _keeping_order(verdict: Verdict) -> tuple[int, float, int]:
    if verdict.busy_since is None:
        return (1, 0.0, -verdict.member.created_order)
    return (0, -verdict.busy_since, -verdict.member.created_order)


def _split(
    verdicts: Iterable[Verdict], wanted: int
) -> tuple[tuple[Verdict, ...], tuple[Verdict, ...], tuple[Verdict, ...]]:
    listed = list(verdicts)
    removable = sorted((v for v in listed if v.removable), key=_removal_order)
    kept = sorted((v for v in listed if not v.removable), key=_keeping_order)
    return tuple(removable[:wanted]), tuple(kept), tuple(removable[wanted:])


def choose_removals(
    members: Sequence[Member], machines: Sequence[Machine], remove_count: int, now: float
) -> Choice:
    """Up to ``remove_count`` members that are safe to remove, in the module's order.

    ``now`` is the epoch second the idle times are measured against. When fewer members are
    removable than asked for, :attr:`Choice.needed` says how many are missing and
    :attr:`Choice.kept` lists the busy members with their reasons.
    """
    if remove_count < 0:
        raise UsageError(f"cannot remove a negative number of workers (got {remove_count})")
    verdicts, unmatched = assess_members(members, machines, now)
    chosen, kept, spare = _split(verdicts, remove_count)
    return Choice(remove_count, now, chosen, kept, spare, unmatched=unmatched)


def recheck(choice: Choice, machines: Sequence[Machine], now: float | None = None) -> Choice:
    """The choice again against a fresh look at the pool, right before acting on it.

    A chosen member whose machine was claimed (or that the pool no longer allows to trust) in
    the meantime is dropped into ``kept`` and named in ``dropped``; nothing is added in its
    place, since a replacement would need its own fresh check.
    """
    when = choice.now if now is None else now
    members = [v.member for v in (*choice.chosen, *choice.kept, *choice.spare)]
    verdicts, unmatched = assess_members(members, machines, when)
    fresh = {verdict.member.name: verdict for verdict in verdicts}
    chosen: list[Verdict] = []
    dropped: list[Verdict] = []
    for previous in choice.chosen:
        verdict = fresh[previous.member.name]
        if verdict.removable:
            chosen.append(verdict)
        else:
            dropped.append(replace(verdict, reason=f"changed since the choice: {verdict.reason}"))
    others = [fresh[v.member.name] for v in (*choice.kept, *choice.spare)]
    kept = sorted([*dropped, *(v for v in others if not v.removable)], key=_keeping_order)
    spare = sorted((v for v in others if v.removable), key=_removal_order)
    return Choice(
        wanted=choice.wanted,
        now=when,
        chosen=tuple(sorted(chosen, key=_removal_order)),
        kept=tuple(kept),
        spare=tuple(spare),
        dropped=(*choice.dropped, *(v.member.name for v in dropped)),
        unmatched=unmatched,
    )
