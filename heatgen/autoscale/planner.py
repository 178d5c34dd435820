"""One autoscaling decision, as pure logic: from the groups' members (Heat), the pool's
machines (the collector) and the idle jobs (the schedd) to what each group should do.

- **Demand.** Idle jobs the negotiator has already tried (queued before it last rejected
  their autocluster, or before its last cycle) and that no free slot of the pool fits (those
  the negotiator matches by itself). Each goes to the group whose fresh worker it fits
  (HTCondor's own evaluation of the job's requirements and the group's start rule,
  :mod:`heatgen.autoscale.match`) with the least waste, then the lower group order; a job
  that fits no group is reported, never a reason to grow.
- **Growth.** Per group, the jobs are packed first-fit-decreasing onto the members still
  booting (within ``join_timeout``: capacity on its way), then onto new workers of the
  group's shape; the new workers are the growth, within ``max`` and ``scale_up_delay``: one
  decision grows a group by all it needs, not by a step per cooldown.
- **Scale-in without the race.** A group with no demand gives up members idle for
  ``idle_timeout``, at most ``max_scale_in`` per decision, never below ``min`` nor below
  ``keep_idle`` idle workers. It does so in two decisions: first the member is drained
  (``condor_drain -graceful``: the startd takes no new claim), and only at a later decision,
  after the negotiator has had a cycle, is a member that is still drained and idle removed;
  one that got a job before its drain took hold gets its drain cancelled and stays.
- **Liveness.** A member not in the pool ``join_timeout`` after it was created is reported
  as never joined (when the pool lists any machine at all: an empty collector says nothing).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from heatgen.autoscale.match import Matcher, Shape
from heatgen.cloud.group import Member
from heatgen.config import Group
from heatgen.pool import Machine
from heatgen.pool.jobs import Job, Queue
from heatgen.scalein.choice import assess_members

# The -reason of the drains autoscale starts: only drains with it are autoscale's to undo.
DRAIN_REASON = "heatgen autoscale: idle, chosen for removal"
# A startd re-advertises at least every UPDATE_INTERVAL (300 s by default): a collector up
# for longer than that, with a margin, lists every live startd.
COLLECTOR_SETTLE = 360


@dataclass(frozen=True)
class GroupView:
    """One group as the decision sees it: its config, Heat's members, and its history."""

    group: Group
    members: tuple[Member, ...]
    grew_at: float | None = None  # when this loop last grew the group
    backoff_until: float | None = None  # no growth before this (after repeated failures)
    # members this loop drained whose machines the collector may not show drained yet
    drain_requested: frozenset[str] = frozenset()


@dataclass(frozen=True)
class MemberDecision:
    name: str
    server_id: str | None
    state: str  # booting | missing | idle | busy | draining | drained
    action: str  # keep | drain | remove | undrain | replace
    reason: str
    machines: tuple[str, ...] = ()
    idle_since: int | None = None  # epoch second, for idle members


@dataclass(frozen=True)
class GroupDecision:
    name: str
    size: int
    target: int  # the size to set now (grow) or after the removals
    jobs: tuple[str, ...]  # the unmatched jobs this group is to serve
    new_workers: int  # workers the jobs need beyond the members booting
    reason: str
    members: tuple[MemberDecision, ...]

    @property
    def grow(self) -> int:
        return max(0, self.target - self.size) if not self.remove else 0

    @property
    def remove(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.members if m.action == "remove")

    @property
    def drain(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.members if m.action == "drain")

    @property
    def undrain(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.members if m.action == "undrain")

    @property
    def replace(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.members if m.action == "replace")

    @property
    def action(self) -> str:
        if self.replace:
            return "replace"
        if self.grow:
            return "grow"
        if self.remove:
            return "remove"
        if self.drain or self.undrain:
            return "drain" if self.drain else "undrain"
        return "none"


@dataclass(frozen=True)
class Decision:
    now: float
    groups: tuple[GroupDecision, ...]
    unserved: tuple[tuple[str, str], ...] = ()  # (job id, why no group serves it)
    matched_soon: tuple[str, ...] = ()  # jobs a free slot fits: the negotiator's to match
    not_yet_seen: tuple[str, ...] = ()  # queued after the negotiator's last cycle

    def group(self, name: str) -> GroupDecision:
        return next(g for g in self.groups if g.name == name)


def _epoch(text: str) -> float | None:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def shape_of(group: Group) -> Shape:
    return Shape(group.name, group.vcpus, group.memory_mb, group.gpus, group.start)


@dataclass
class _Bin:
    cpus: int
    memory: float
    gpus: int

    def take(self, need: tuple[int, int, int]) -> bool:
        cpus, memory, gpus = need
        if cpus <= self.cpus and memory <= self.memory and gpus <= self.gpus:
            self.cpus -= cpus
            self.memory -= memory
            self.gpus -= gpus
            return True
        return False


def _free_bins(machine: Machine, group: Group) -> list[_Bin]:
    """What a running, undrained worker can still take: its partitionable slot's remaining
    resources, or each unclaimed static slot."""
    bins = []
    for slot in machine.owner_slots:
        if slot.state != "Unclaimed":
            continue
        memory = float(slot.memory) if slot.memory is not None else math.inf
        bins.append(_Bin(slot.cpus or 0, memory, group.gpus))
    return bins


def _waste(group: Group, need: tuple[int, int, int]) -> float:
    cpus, memory, gpus = need
    waste = (group.vcpus - cpus) / group.vcpus
    if group.memory_mb:
        waste += (group.memory_mb - memory) / group.memory_mb
    if group.gpus:
        waste += (group.gpus - gpus) / group.gpus
    return waste


def decide(
    views: Sequence[GroupView], machines: Sequence[Machine], queue: Queue, now: float,
    matcher: Matcher,
) -> Decision:
    """The decision for this moment (pure: the caller reads, the caller acts)."""
    by_name = {machine.name: machine for machine in machines}
    states: dict[str, list[MemberDecision]] = {}
    free: list[tuple[Group, _Bin]] = []
    booting: dict[str, int] = {}
    replaceable: set[str] = set()
    for view in views:
        group = view.group
        join_timeout = group.autoscaling.join_timeout
        verdicts, _ = assess_members(list(view.members), list(machines), now)
        members = []
        for member, verdict in zip(view.members, verdicts, strict=True):
            found = [by_name[n] for n in verdict.machines if n in by_name]
            if not found:
                created = _epoch(member.created)
                young = created is None or created + join_timeout > now
                if young:
                    booting[group.name] = booting.get(group.name, 0) + 1
                    state, reason = "booting", "not in the pool yet (booting)"
                else:
                    state = "missing"
                    reason = (f"not in the pool {join_timeout} s after it was created (never "
                              "joined, or left)")
                    if _absence_is_real(created, machines, queue, now):
                        replaceable.add(member.name)
                members.append(MemberDecision(member.name, member.server_id, state, "keep",
                                              reason))
                continue
            names = tuple(m.name for m in found)
            draining = any(m.draining or m.drain_reason for m in found)
            if not draining and member.name in view.drain_requested:
                # drained at the last decision; the startd's new ad is not in yet
                members.append(MemberDecision(
                    member.name, member.server_id, "draining", "keep",
                    "drain requested at the last decision, not yet shown by the collector",
                    names))
                continue
            ours = any(m.drain_reason == DRAIN_REASON for m in found)
            idle = all(m.idle for m in found)
            if draining:
                state = "drained" if idle else "draining"
                members.append(MemberDecision(
                    member.name, member.server_id, state, "keep",
                    "drained by heatgen autoscale" if ours else "drained by someone else "
                    "(heatgen leaves it alone)", names))
                continue
            if idle:
                members.append(MemberDecision(member.name, member.server_id, "idle", "keep",
                                              verdict.reason, names, verdict.idle_since))
                for machine in found:
                    free += [(group, b) for b in _free_bins(machine, group)]
                continue
            members.append(MemberDecision(member.name, member.server_id, "busy", "keep",
                                          verdict.reason, names))
            for machine in found:
                free += [(group, b) for b in _free_bins(machine, group)]
        states[group.name] = _replacements(group, members, replaceable)

    # Demand: what the negotiator has seen and cannot place on a free slot.
    seen, later = [], []
    tried = _last_tried(queue)
    for job in queue.jobs:
        cutoff = max(queue.last_cycle_end or 0, tried.get(job.number("AutoClusterId"), 0),
                     job.number("LastRejMatchTime") or 0)
        if job.queued_at is not None and job.queued_at > cutoff:
            later.append(job.id)
        else:
            seen.append(job)
    matched_soon: list[str] = []
    unmatched: list[Job] = []
    for job in seen:
        placed = False
        for group, slot in free:
            if slot.cpus <= 0:
                continue
            shape = Shape(group.name, slot.cpus, None if math.isinf(slot.memory)
                          else int(slot.memory), slot.gpus, group.start)
            need = matcher.fit(job, shape).need
            if need is not None and slot.take(need):
                placed = True
                break
        (matched_soon.append(job.id) if placed else unmatched.append(job))

    groups = {view.group.name: view.group for view in views}
    order = [view.group.name for view in views]
    assigned: dict[str, list[tuple[Job, tuple[int, int, int]]]] = {name: [] for name in order}
    unserved: list[tuple[str, str]] = []
    for job in unmatched:
        options = []
        reasons = []
        for index, name in enumerate(order):
            group = groups[name]
            fit = matcher.fit(job, shape_of(group))
            if fit.need is not None:
                options.append((_waste(group, fit.need), index, name, fit.need))
            else:
                reasons.append(fit.reason)
        if not options:
            unserved.append((job.id, "fits no group: " + "; ".join(reasons)))
            continue
        _, _, name, need = min(options)
        assigned[name].append((job, need))

    decisions = []
    for view in views:
        group = view.group
        decisions.append(_group_decision(view, states[group.name], assigned[group.name],
                                         booting.get(group.name, 0), now))
    return Decision(now, tuple(decisions), tuple(unserved), tuple(matched_soon), tuple(later))


def _last_tried(queue: Queue) -> dict[int | None, int]:
    """When the negotiator last tried (and failed to match) each autocluster: it rejects an
    autocluster by one of its jobs (``LastRejMatchTime``), so the time stands for all of its
    jobs. The negotiator's own ad in the collector is refreshed only every few minutes, so
    this is the fresher sign that a job has been seen."""
    tried: dict[int | None, int] = {}
    for job in queue.jobs:
        cluster, when = job.number("AutoClusterId"), job.number("LastRejMatchTime")
        if cluster is not None and when is not None:
            tried[cluster] = max(tried.get(cluster, 0), when)
    return tried


def _absence_is_real(created: float | None, machines: Sequence[Machine], queue: Queue,
                     now: float) -> bool:
    """Whether a member's absence from the pool means it never joined: it does when the
    collector ran all along since the member was created, or long enough for every live
    startd to have advertised to it again; a collector just restarted says nothing. When
    the collector's start is not known, only a pool that lists some machine is believed."""
    since = queue.collector_since
    if since is None:
        return bool(machines)
    return (created is not None and since <= created) or now - since >= COLLECTOR_SETTLE


def _replacements(group: Group, members: list[MemberDecision],
                  replaceable: set[str]) -> list[MemberDecision]:
    """Members that never joined are replaced (Heat rebuilds them: the group keeps its size),
    at most ``max_scale_in`` per decision, and only where their absence is real
    (``_absence_is_real``): the last member of a group may be the one that never joined."""
    limit = group.autoscaling.scale_in_limit(len(members))
    out, replaced = [], 0
    for member in members:
        if member.state == "missing" and member.name in replaceable and replaced < limit:
            replaced += 1
            member = MemberDecision(member.name, member.server_id, member.state, "replace",
                                    member.reason + ": replaced (marked unhealthy, Heat "
                                    "rebuilds it)", member.machines)
        out.append(member)
    return out


def _group_decision(
    view: GroupView, members: list[MemberDecision],
    jobs: list[tuple[Job, tuple[int, int, int]]], booting: int, now: float,
) -> GroupDecision:
    group = view.group
    scaling = group.autoscaling
    size = len(view.members)
    job_ids = tuple(job.id for job, _ in jobs)
    # Pack the demand onto the booting members, then onto new workers.
    memory = float(group.memory_mb) if group.memory_mb else math.inf
    bins = [_Bin(group.vcpus, memory, group.gpus) for _ in range(booting)]
    new = 0
    for _, need in sorted(jobs, key=lambda item: (item[1][2], item[1][0], item[1][1]),
                          reverse=True):
        if any(b.take(need) for b in bins):
            continue
        fresh = _Bin(group.vcpus, memory, group.gpus)
        fresh.take(need)
        bins.append(fresh)
        new += 1
    if jobs:
        target = min(group.max, size + new)
        if new == 0:
            reason = f"{len(jobs)} jobs wait for the {booting} members still booting"
        elif view.backoff_until is not None and now < view.backoff_until:
            target, reason = size, (f"{len(jobs)} jobs need {new} more workers, but the group "
                                    f"backs off for {view.backoff_until - now:.0f} s more "
                                    "after failures")
        elif view.grew_at is not None and now < view.grew_at + scaling.scale_up_delay:
            target, reason = size, (f"{len(jobs)} jobs need {new} more workers; the group grew "
                                    f"{now - view.grew_at:.0f} s ago (scale_up_delay "
                                    f"{scaling.scale_up_delay} s)")
        elif target == size:
            reason = (f"{len(jobs)} jobs need {new} more workers, but the group is at max "
                      f"{group.max}")
        else:
            capped = f" (capped by max {group.max})" if size + new > group.max else ""
            reason = f"{len(jobs)} jobs need {new} more workers: grow {size} -> {target}{capped}"
        return GroupDecision(group.name, size, target, job_ids, new, reason, tuple(members))
    return _scale_in(view, members, now)


def _scale_in(view: GroupView, members: list[MemberDecision], now: float) -> GroupDecision:
    """No demand: remove what autoscale drained and is still idle, drain what has been idle
    for long enough, undo autoscale's drains that caught a job."""
    group = view.group
    scaling = group.autoscaling
    size = len(view.members)
    limit = scaling.scale_in_limit(size)
    floor = group.min
    decided: dict[str, MemberDecision] = {m.name: m for m in members}
    idle_kept = sum(m.state == "idle" for m in members)

    def set_action(member: MemberDecision, action: str, reason: str) -> None:
        decided[member.name] = MemberDecision(member.name, member.server_id, member.state,
                                              action, reason, member.machines,
                                              member.idle_since)

    removing = 0
    for member in members:
        ours = member.reason == "drained by heatgen autoscale"
        if member.state == "drained" and ours:
            if removing < limit and size - removing - 1 >= floor:
                removing += 1
                set_action(member, "remove", "drained by autoscale and still idle after a "
                                             "negotiation cycle: removed")
            else:
                set_action(member, "undrain", f"drained, but the group keeps min {floor} "
                                              f"(or max_scale_in {limit} is reached)")
        elif member.state == "draining" and ours:
            set_action(member, "undrain", "got a job before its drain took hold: drain "
                                          "cancelled, kept")
    idle = sorted((m for m in members if m.state == "idle"),
                  key=lambda m: (m.idle_since is None, m.idle_since or 0))
    if any(m.state == "missing" for m in members):
        idle = []  # a group with members that never joined is not shrunk until it is whole
    # drains of autoscale's still under way count against the limit and the floor
    pending = sum(1 for m in members if m.state == "draining" and m.action == "keep"
                  and (m.reason.startswith("drain requested")
                       or m.reason == "drained by heatgen autoscale"))
    draining = 0
    for member in idle:
        since = member.idle_since
        if since is None or now - since < scaling.idle_timeout:
            continue
        after = size - removing - draining - pending - 1
        if removing + draining + pending >= limit:
            set_action(member, "keep", f"idle, but max_scale_in {limit} is reached")
        elif after < floor:
            set_action(member, "keep", f"idle, kept for min {floor}")
        elif idle_kept - 1 < scaling.keep_idle:
            set_action(member, "keep", f"idle, kept for keep_idle {scaling.keep_idle}")
        else:
            draining += 1
            idle_kept -= 1
            set_action(member, "drain", f"idle for {now - since:.0f} s (idle_timeout "
                                        f"{scaling.idle_timeout} s): drained now, removed at "
                                        "the next decision if still idle")
    final = tuple(decided[m.name] for m in members)
    target = size - removing
    parts = []
    if removing:
        parts.append(f"remove {removing}")
    if draining:
        parts.append(f"drain {draining}")
    reason = ("no job waits for this group: " + ", ".join(parts)) if parts else \
        "no job waits for this group; nothing idle long enough to go"
    if any(m.state == "missing" for m in members):
        reason += " (members that never joined: no new drains until they are replaced)"
    return GroupDecision(group.name, size, target, (), 0, reason, final)


def as_dict(decision: Decision) -> dict[str, Any]:
    return {
        "time": decision.now,
        "groups": [
            {"name": g.name, "size": g.size, "target": g.target, "action": g.action,
             "jobs": list(g.jobs), "new_workers": g.new_workers, "reason": g.reason,
             "members": [{"name": m.name, "server_id": m.server_id, "state": m.state,
                          "action": m.action, "reason": m.reason,
                          "idle_since": m.idle_since} for m in g.members]}
            for g in decision.groups
        ],
        "unserved": [{"job": job, "reason": why} for job, why in decision.unserved],
        "matched_soon": list(decision.matched_soon),
        "not_yet_seen": list(decision.not_yet_seen),
    }
