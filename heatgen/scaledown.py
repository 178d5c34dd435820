"""Guarded scale-in: shrink the worker group without removing a busy worker.

Heat's AutoScalingGroup removes FAILED/CHECK_FAILED members first, then the oldest. So heatgen
asks the pool which workers are idle (:mod:`heatgen.scalein` chooses), marks exactly the chosen
members unhealthy on the group's nested stack, looks at the pool once more and unmarks any that
were claimed meanwhile, then PATCHes the group to an *absolute* size. A ScalingPolicy's -N is
never used: it counts only healthy members, so it would remove the marked ones *and* the oldest
healthy one. If anything fails after marking, every mark is taken back, because Heat replaces
CHECK_FAILED members on the next update.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from heatgen import scalein
from heatgen.cloud import Cloud, Resource, Stack
from heatgen.errors import UsageError, WaitTimeout
from heatgen.pool import PoolQuery

MARK_REASON = "heatgen scale-in: idle worker chosen for removal"
UNMARK_REASON = "heatgen scale-in: kept after all"
DRAIN_POLL = 10.0
WORKER_GROUP = "workers"


@dataclass(frozen=True)
class GroupMember:
    """A member of the worker group as Heat lists it, with what the pool can match it by."""

    name: str
    nested_stack_id: str
    status: str
    server_id: str | None
    private_ip: str | None
    created: str
    reason: str = ""


def group_members(cloud: Cloud, stack: Stack) -> list[GroupMember]:
    """The group's members, oldest first; server ids and IPs from the stack's outputs."""
    server_ids = stack.outputs.get("worker_server_ids") or {}
    addresses = stack.outputs.get("worker_private_ips") or {}
    members = [
        r for r in cloud.resources(stack.id, nested_depth=1) if r.parent == WORKER_GROUP
    ]
    members.sort(key=lambda r: (r.created, r.name))
    return [
        GroupMember(
            name=r.name,
            nested_stack_id=r.stack_id,
            status=r.status,
            server_id=_text(server_ids.get(r.name)),
            private_ip=_text(addresses.get(r.name)),
            created=r.created,
            reason=r.reason,
        )
        for r in members
    ]


def _text(value: object) -> str | None:
    return str(value) if value not in (None, "") else None


def _scalein_members(members: Sequence[GroupMember]) -> list[scalein.Member]:
    return [
        scalein.Member(m.name, m.server_id, m.private_ip, created_order=index)
        for index, m in enumerate(members)
    ]


@dataclass(frozen=True)
class ScaleInPlan:
    """Which members go, which busy ones stay, and what the group's size becomes."""

    members: tuple[GroupMember, ...]
    choice: scalein.Choice
    forced: tuple[str, ...] = ()
    drained: tuple[str, ...] = ()

    @property
    def removed(self) -> tuple[str, ...]:
        return (*(v.member.name for v in self.choice.chosen), *self.forced)

    @property
    def not_removable(self) -> tuple[scalein.Verdict, ...]:
        """Every member the pool says must stay (busy, draining, or not to be trusted)."""
        forced = set(self.forced)
        return tuple(v for v in self.choice.kept if v.member.name not in forced)

    @property
    def busy_kept(self) -> tuple[scalein.Verdict, ...]:
        """The members that would have had to go for the size asked for, but are busy."""
        shortfall = max(0, self.choice.needed - len(self.forced))
        return self.not_removable[:shortfall]

    @property
    def target_size(self) -> int:
        return len(self.members) - len(self.removed)

    def lines(self) -> list[str]:
        lines = [f"remove {v.member.name} ({v.reason})" for v in self.choice.chosen]
        lines += [f"REMOVE BUSY {name} (--force)" for name in self.forced]
        lines += [f"keep   {v.member.name} ({v.reason})" for v in self.not_removable]
        lines += [f"kept   {name}: claimed between the choice and the removal"
                  for name in self.choice.dropped]
        return lines


@dataclass
class ScaleInOptions:
    force: bool = False
    drain: bool = False
    drain_timeout: float = 3600.0
    now: Callable[[], float] = time.time
    monotonic: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    notes: list[str] = field(default_factory=list)


def choose(
    cloud: Cloud, stack: Stack, pool: PoolQuery, target: int, options: ScaleInOptions,
    note: Callable[[str], None],
) -> ScaleInPlan:
    """Decide which members to remove to reach ``target``; drain or force if asked."""
    members = tuple(group_members(cloud, stack))
    remove = len(members) - target
    if remove <= 0:
        raise UsageError(f"the group has {len(members)} workers; nothing to remove for {target}")
    choice = scalein.choose_removals(_scalein_members(members), pool.machines(), remove,
                                     options.now())
    forced: tuple[str, ...] = ()
    drained: tuple[str, ...] = ()
    if choice.needed and options.drain:
        candidates = [v for v in choice.kept if v.in_pool][: choice.needed]
        drained = tuple(v.member.name for v in candidates)
        machines = [m for v in candidates for m in v.machines]
        note(f"draining {', '.join(drained)} gracefully (condor_drain -graceful) before removal")
        pool.drain(machines, graceful=True)
        choice = _wait_drained(pool, members, remove, drained, options, note)
    if choice.needed and options.force:
        forced = tuple(v.member.name for v in choice.kept[: choice.needed])
        for name in forced:
            note(f"WARNING: --force removes BUSY worker {name}: its running jobs are lost")
    return ScaleInPlan(members, choice, forced, drained)


def _wait_drained(
    pool: PoolQuery, members: Sequence[GroupMember], remove: int, drained: Sequence[str],
    options: ScaleInOptions, note: Callable[[str], None],
) -> scalein.Choice:
    deadline = options.monotonic() + options.drain_timeout
    wanted = set(drained)
    while True:
        choice = scalein.choose_removals(_scalein_members(members), pool.machines(), remove,
                                         options.now())
        chosen = {v.member.name for v in choice.chosen}
        if wanted <= chosen or not choice.needed:
            return choice
        if options.monotonic() >= deadline:
            busy = sorted(wanted - chosen)
            raise WaitTimeout(
                f"{', '.join(busy)} still run jobs after {options.drain_timeout:.0f} s of "
                "draining; nothing was removed (the drain goes on in HTCondor)"
            )
        note(f"waiting for {', '.join(sorted(wanted - chosen))} to finish draining")
        options.sleep(DRAIN_POLL)


def mark(cloud: Cloud, plan: ScaleInPlan, names: Sequence[str], unhealthy: bool) -> None:
    by_name = {m.name: m for m in plan.members}
    for name in names:
        member = by_name[name]
        cloud.mark_unhealthy(member.nested_stack_id, name, unhealthy,
                             MARK_REASON if unhealthy else UNMARK_REASON)


def recheck(pool: PoolQuery, plan: ScaleInPlan, options: ScaleInOptions) -> ScaleInPlan:
    """Right before the PATCH: drop chosen members whose machines were claimed meanwhile."""
    fresh = scalein.recheck(plan.choice, pool.machines(), options.now())
    return ScaleInPlan(plan.members, fresh, plan.forced, plan.drained)


def marked_members(resources: Sequence[Resource]) -> list[str]:
    return [r.name for r in resources if r.parent == WORKER_GROUP and r.status == "CHECK_FAILED"]
