"""Guarded scale-in: shrink the worker group without removing a busy worker.

Heat's AutoScalingGroup removes FAILED/CHECK_FAILED members first, then the oldest. So heatgen
asks the pool which workers are idle (:mod:`heatgen.scalein.choice` chooses), marks exactly the
chosen members unhealthy on the group's nested stack, looks at the pool once more and unmarks
any that were claimed meanwhile, then PATCHes the group to an *absolute* size. A ScalingPolicy's
-N is never used: it counts only healthy members, so it would remove the marked ones *and* the
oldest healthy one. If anything fails after marking, every mark is taken back, because Heat
replaces CHECK_FAILED members on the next update.

``--drain`` drains busy members gracefully and waits for them to become idle, at most as long
as the workers' ``MAXJOBRETIREMENTTIME`` (``condor.retirement_time``): after that HTCondor would
evict their jobs. When the wait ends without them, heatgen cancels the drains it started, so
their jobs keep running and the machines take new ones again.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from heatgen.cloud.group import Member, group_members, members_listed
from heatgen.cloud.interface import Cloud, Stack
from heatgen.config.model import RETIREMENT_TIME_DEFAULT
from heatgen.contract import GroupNames
from heatgen.errors import CloudError, HeatgenError, UsageError, WaitTimeout
from heatgen.pool import Machine, PoolQuery
from heatgen.scalein import choice as scalein

MARK_REASON = "heatgen scale-in: idle worker chosen for removal"
UNMARK_REASON = "heatgen scale-in: kept after all"
DRAIN_POLL = 10.0


@dataclass(frozen=True)
class ScaleInPlan:
    """Which members go, which busy ones stay, and what the group's size becomes."""

    members: tuple[Member, ...]
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
    def shortfall_kept(self) -> tuple[scalein.Verdict, ...]:
        """The members that would have had to go for the size asked for, but must stay."""
        shortfall = max(0, self.choice.needed - len(self.forced))
        return self.not_removable[:shortfall]

    @property
    def busy_kept(self) -> tuple[scalein.Verdict, ...]:
        """Of :attr:`shortfall_kept`, those the pool lists as running jobs (or draining)."""
        return tuple(v for v in self.shortfall_kept if v.in_pool)

    @property
    def unknown_kept(self) -> tuple[scalein.Verdict, ...]:
        """Of :attr:`shortfall_kept`, those the pool does not list while it lists none of the
        group: never joined, or the pool cannot be trusted right now; not taken as idle."""
        return tuple(v for v in self.shortfall_kept if not v.in_pool)

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


@dataclass(frozen=True)
class ScaleInOptions:
    force: bool = False
    drain: bool = False
    drain_timeout: float = float(RETIREMENT_TIME_DEFAULT)
    now: Callable[[], float] = time.time
    monotonic: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep


def choose(
    cloud: Cloud, stack: Stack, pool: PoolQuery, target: int, options: ScaleInOptions,
    note: Callable[[str], None], group: GroupNames | None = None,
) -> ScaleInPlan:
    """Decide which members of ``group`` (default: the only group) to remove to reach
    ``target``; drain or force if asked. The pool's machines of other groups never count:
    members are matched to machines by their server ids."""
    members = tuple(group_members(cloud, stack, group or GroupNames.of(None)))
    remove = len(members) - target
    if remove <= 0:
        raise UsageError(f"the group has {len(members)} workers; nothing to remove for {target}")
    snapshot = pool.machines()
    choice = scalein.choose_removals(members, snapshot, remove, options.now())
    forced: tuple[str, ...] = ()
    drained: tuple[str, ...] = ()
    if choice.needed and options.drain:
        candidates = [v for v in choice.kept if v.in_pool][: choice.needed]
        drained = tuple(v.member.name for v in candidates)
        by_name = {machine.name: machine for machine in snapshot}
        machines = [by_name[name] for v in candidates for name in v.machines]
        note(f"draining {', '.join(drained)} gracefully (condor_drain -graceful) before removal")
        _drain(pool, machines, note)
        choice = _wait_drained(pool, members, remove, drained, machines, options, note)
    if choice.needed and options.force:
        forced = tuple(v.member.name for v in choice.kept[: choice.needed])
        for name in forced:
            note(f"WARNING: --force removes BUSY worker {name}: its running jobs are lost")
    return ScaleInPlan(members, choice, forced, drained)


def choose_these(
    cloud: Cloud, stack: Stack, pool: PoolQuery, chosen: Sequence[str],
    options: ScaleInOptions, group: GroupNames,
) -> ScaleInPlan:
    """A plan that removes exactly the ``chosen`` members of ``group`` the pool says may go
    (autoscale's drained ones); every other member is kept."""
    members = tuple(group_members(cloud, stack, group))
    verdicts, unmatched = scalein.assess_members(members, pool.machines(), options.now())
    wanted = set(chosen)
    picked = tuple(v for v in verdicts if v.member.name in wanted and v.removable)
    kept = tuple(v for v in verdicts if v not in picked)
    return ScaleInPlan(members, scalein.Choice(len(picked), options.now(), picked, kept,
                                               unmatched=unmatched))


def _drain(pool: PoolQuery, machines: Sequence[Machine], note: Callable[[str], None]) -> None:
    """Drain ``machines`` one by one; if one is refused, cancel the drains already started,
    so that no machine is left draining for a removal that will not come."""
    started: list[Machine] = []
    for machine in machines:
        try:
            pool.drain([machine], graceful=True)
        except HeatgenError:
            if started:
                note(f"cancelling the drains already started ({_names(started)})")
                _cancel_quietly(pool, started)
            raise
        started.append(machine)


def _wait_drained(
    pool: PoolQuery, members: Sequence[Member], remove: int, drained: Sequence[str],
    machines: Sequence[Machine], options: ScaleInOptions, note: Callable[[str], None],
) -> scalein.Choice:
    """Wait until the drained members are idle; past the deadline, cancel the drains."""
    deadline = options.monotonic() + options.drain_timeout
    wanted = set(drained)
    while True:
        choice = scalein.choose_removals(members, pool.machines(), remove,
                                         options.now())
        chosen = {v.member.name for v in choice.chosen}
        if wanted <= chosen or not choice.needed:
            return choice
        if options.monotonic() >= deadline:
            busy = ", ".join(sorted(wanted - chosen))
            waited = f"{busy} still run jobs after {options.drain_timeout:.0f} s of draining"
            try:
                pool.cancel_drain(machines)
            except HeatgenError as error:
                raise WaitTimeout(
                    f"{waited}; nothing was removed, and cancelling the drains failed "
                    f"({error}): they go on in HTCondor until `condor_drain -cancel` runs for "
                    f"{_names(machines)} on the master"
                ) from error
            raise WaitTimeout(
                f"{waited}; nothing was removed: heatgen cancelled the drains it started "
                f"({_names(machines)}), so their jobs keep running and they take new jobs again"
            )
        note(f"waiting for {', '.join(sorted(wanted - chosen))} to finish draining")
        options.sleep(DRAIN_POLL)


def _names(machines: Sequence[Machine]) -> str:
    return ", ".join(machine.name for machine in machines)


def _cancel_quietly(pool: PoolQuery, machines: Sequence[Machine]) -> None:
    try:
        pool.cancel_drain(machines)
    except HeatgenError:
        return


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


@contextmanager
def marked(
    cloud: Cloud, pool: PoolQuery, plan: ScaleInPlan, options: ScaleInOptions,
    note: Callable[[str], None],
) -> Iterator[ScaleInPlan]:
    """Mark the chosen members unhealthy, look at the pool again and unmark any claimed since;
    yield the plan as it stands then. The caller PATCHes the group inside the block; if
    anything fails before the block ends, every mark still held is taken back."""
    held: list[str] = []
    try:
        mark(cloud, plan, plan.removed, True)
        held.extend(plan.removed)
        plan = recheck(pool, plan, options)
        claimed = [name for name in plan.choice.dropped if name in held]
        if claimed:
            note(f"{', '.join(claimed)} got a job since the choice; keeping them")
            mark(cloud, plan, claimed, False)
            for name in claimed:
                held.remove(name)
        yield plan
    except BaseException:
        _unmark_quietly(cloud, plan, held)
        raise


@dataclass(frozen=True)
class TakenBack:
    """Heatgen's own marks an interrupted run left: those taken back, those that failed."""

    taken: tuple[Member, ...] = ()
    failed: tuple[tuple[Member, HeatgenError], ...] = ()


def take_back_stale_marks(cloud: Cloud, stack: Stack) -> TakenBack:
    """Take back the marks a killed `heatgen scale` or `autoscale` left between marking
    members for removal and the PATCH. Heat replaces a marked member at the next update of any
    kind, busy or not (a job may have landed on it since). A mark heatgen made is known by its
    reason. Call it under the stack's lock: then no other heatgen of this machine is between
    the two steps, and every such mark is stale."""
    taken: list[Member] = []
    failed: list[tuple[Member, HeatgenError]] = []
    for member in marked_members(cloud, stack):
        if member.status != "CHECK_FAILED" or MARK_REASON not in member.reason:
            continue
        try:
            cloud.mark_unhealthy(member.nested_stack_id, member.name, False,
                                 UNMARK_REASON + " (a mark left by an interrupted run)")
            taken.append(member)
        except HeatgenError as error:
            failed.append((member, error))
    return TakenBack(tuple(taken), tuple(failed))


def marked_members(cloud: Cloud, stack: Stack) -> list[Member]:
    """The members Heat shows marked (CHECK_FAILED), of every group.

    One listing that heat-api filters (a few rows, where every member is 289 KiB at 450
    members), unless a resource of the grid's own stack is marked too: Heat's filtered
    listing then leaves the groups' members out, and every member is listed instead."""
    marked = cloud.resources(stack.id, nested_depth=1, state="CHECK_FAILED")
    if any(not resource.parent for resource in marked):
        return [m for m in group_members(cloud, stack) if m.status == "CHECK_FAILED"]
    return members_listed(marked, stack)


def take_back_or_refuse(cloud: Cloud, stack: Stack, note: Callable[[str], None],
                        doing: str) -> None:
    """:func:`take_back_stale_marks` before an update: says what it took back, and raises if
    a mark stays (the update would replace that member)."""
    result = take_back_stale_marks(cloud, stack)
    for member in result.taken:
        note(f"{member.group}: took back the mark an interrupted heatgen left on "
             f"{member.name} (Heat would have replaced it)")
    if result.failed:
        detail = "; ".join(f"{m.group}/{m.name}: {error}" for m, error in result.failed)
        raise CloudError(
            f"an interrupted heatgen left members marked for removal, and the marks could not "
            f"be taken back ({detail}); {doing} now would make Heat replace them, busy or not: "
            "nothing was changed, run the command again"
        )


def _unmark_quietly(cloud: Cloud, plan: ScaleInPlan, names: list[str]) -> None:
    """Take the marks back after a failure, so the next update does not replace them."""
    for name in names:
        try:
            mark(cloud, plan, [name], False)
        except HeatgenError:
            continue
