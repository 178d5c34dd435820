"""``heatgen scale``: change the worker group's size with a PATCH of only the capacity.

Growing is a plain PATCH. Shrinking goes through the guarded scale-in
(:mod:`heatgen.scalein.shrink`) so that no busy worker is removed. Bounds are the deployed
stack's (``worker_min``/``worker_max``), or the ones given with the request. 0 workers parks
the grid: the template then sets the group's maximum to 0, since Heat reads a desired capacity
of 0 as "unset". ``--drain`` waits at most the site's ``condor.retirement_time``: the workers'
HTCondor evicts draining jobs after that, so a longer wait would only watch them be lost.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from heatgen.cloud.group import group_members
from heatgen.cloud.interface import Cloud, Definition, Event, Stack
from heatgen.config import Group, Site
from heatgen.contract import GridOutputs, GroupNames, as_int
from heatgen.errors import CloudError, HeatgenError, StackBusy, StackFailed, UsageError
from heatgen.ops import fields as stackfields
from heatgen.ops import writes
from heatgen.ops.busy import refuse_if_busy, stack_lock
from heatgen.ops.inspect import require_stack
from heatgen.ops.plan import Plan, reconciled_plan
from heatgen.ops.report import Clock, Reporter
from heatgen.ops.wait import Stall, latest_event, wait_for_stack
from heatgen.pool import PoolQuery
from heatgen.scalein import shrink

STALL_TIMEOUT = 300.0


@dataclass(frozen=True)
class ScaleRequest:
    workers: int
    min: int | None = None
    max: int | None = None
    dry_run: bool = False
    wait: bool = True
    timeout: float = 1800.0
    wait_for_idle: bool = False
    force: bool = False
    drain: bool = False
    drain_timeout: float | None = None  # None: the site's condor.retirement_time
    resume: bool = False  # send the resize again to a stalled update
    stall_timeout: float = STALL_TIMEOUT  # 0: never call a wait stalled
    site_label: str = "SITE.yaml"  # how hints name the site file
    group: str | None = None  # which worker group (needed when the site has several)
    lock_held: bool = False  # the caller holds the stack's lock (autoscale's decision)


@dataclass(frozen=True)
class ScaleResult:
    action: str  # scaled | planned | unchanged | started
    stack: Stack | None
    parameters: Mapping[str, int]
    plan: Plan | None = None
    elapsed: float = 0.0
    scale_in: shrink.ScaleInPlan | None = None
    group: GroupNames = field(default_factory=lambda: GroupNames.of(None))

    @property
    def wanted(self) -> int:
        """The group's size this resize sets."""
        return self.parameters[self.group.desired]

    @property
    def busy_kept(self) -> int:
        """Members that would have had to go but are busy (in the pool, not idle)."""
        return len(self.scale_in.busy_kept) if self.scale_in is not None else 0

    @property
    def unknown_kept(self) -> int:
        """Members that would have had to go but whose state the pool cannot tell."""
        return len(self.scale_in.unknown_kept) if self.scale_in is not None else 0


def check_request(request: ScaleRequest, site: Site | None = None) -> None:
    """What can be told wrong without the cloud: negative sizes, crossed bounds, and (given
    the site) a drain timeout longer than the workers' retirement time."""
    problems = []
    if request.workers < 0:
        problems.append(f"--workers must be >= 0 (got {request.workers})")
    if request.min is not None and request.min < 0:
        problems.append(f"--min must be >= 0 (got {request.min})")
    if request.max is not None and request.max < 1:
        problems.append(f"--max must be >= 1 (got {request.max})")
    if request.min is not None and request.max is not None and request.min > request.max:
        problems.append(f"--min must be <= --max (got {request.min} > {request.max})")
    if request.force and request.drain:
        problems.append("--force and --drain exclude each other")
    timeout = request.drain_timeout
    if timeout is not None and not (math.isfinite(timeout) and timeout >= 0):
        problems.append(f"--drain-timeout must be >= 0 (got {timeout:g})")
    elif timeout is not None and site is not None and timeout > site.condor.retirement_time:
        retirement = site.condor.retirement_time
        problems.append(
            f"--drain-timeout {timeout:g} is longer than condor.retirement_time {retirement} of "
            f"{request.site_label}: HTCondor evicts the draining jobs after {retirement} s, "
            f"before heatgen would give up; pass --drain-timeout {retirement} or less"
        )
    if problems:
        raise UsageError("; ".join(problems))


def requested_group(site: Site, request: ScaleRequest) -> Group:
    """The worker group a request resizes: ``--group``, or the site's only group."""
    names = ", ".join(g.name for g in site.groups)
    if request.group is None:
        group = site.group(None)
        if group is None:
            raise UsageError(
                f"{request.site_label} has {len(site.groups)} worker groups ({names}): name the "
                f"one to resize with --group, e.g. `heatgen scale {request.site_label} --group "
                f"{site.groups[0].name} --workers {request.workers}`"
            )
        return group
    group = site.group(request.group)
    if group is None:
        raise UsageError(
            f"--group {request.group}: {request.site_label} has no worker group "
            f"{request.group!r} (its groups: {names})"
        )
    return group


def drain_timeout(site: Site, request: ScaleRequest) -> float:
    """How long ``--drain`` waits: the request's, else the site's ``condor.retirement_time``."""
    check_request(request, site)
    if request.drain_timeout is not None:
        return request.drain_timeout
    return float(site.condor.retirement_time)


def _bound(given: int | None, stack: Stack | None, parameter: str, site_value: int,
           flag: str, where: str) -> tuple[int, str]:
    if given is not None:
        return given, flag
    deployed = as_int(stack.parameters.get(parameter)) if stack is not None else None
    if deployed is not None:
        return deployed, f"the stack's {parameter}"
    return site_value, f"{where}.{flag.removeprefix('--')}"


def scale_parameters(site: Site, request: ScaleRequest, stack: Stack | None = None,
                     ) -> dict[str, int]:
    """The PATCH parameters for a capacity change of the requested group, checked against
    the bounds that apply: the request's, else the deployed stack's, else the site's."""
    check_request(request)
    group = requested_group(site, request)
    names = group.names
    low, low_from = _bound(request.min, stack, names.min, group.min, "--min", group.where)
    high, high_from = _bound(request.max, stack, names.max, group.max, "--max", group.where)
    label, wanted = request.site_label, request.workers
    command = f"heatgen scale {label}" + (f" --group {group.name}" if site.grouped else "")
    problems = []
    if low > high:
        problems.append(f"the minimum {low} ({low_from}) is above the maximum {high} "
                        f"({high_from}); give both with --min and --max")
    elif wanted > high:
        problems.append(
            f"--workers {wanted} is above the maximum {high} ({high_from}); raise it with "
            f"`{command} --workers {wanted} --max {wanted}` (or raise "
            f"{group.where}.max and deploy)"
        )
    elif wanted < low:
        problems.append(
            f"--workers {wanted} is below the minimum {low} ({low_from}); lower it with "
            f"`{command} --workers {wanted} --min {wanted}`"
        )
    if problems:
        raise UsageError("; ".join(problems))
    params = {names.desired: wanted}
    if request.min is not None:
        params[names.min] = request.min
    if request.max is not None:
        params[names.max] = request.max
    return params


def group_size(cloud: Cloud, stack: Stack, names: GroupNames) -> int | None:
    """The group's size as Heat counts its members (its ``worker_count`` output, resolved
    alone: one request, where the stack's outputs resolved read every member's stack)."""
    if stack.outputs:
        return GridOutputs.of(stack.outputs, names).worker_count
    return as_int(cloud.stack_output(stack.id, names.output("worker_count")))


def _resizing_to(stack: Stack, params: Mapping[str, int]) -> bool:
    """An update in progress that sets exactly these capacity values (an earlier run's)."""
    return stack.action == "UPDATE" and stack.in_progress and all(
        as_int(stack.parameters.get(name)) == value for name, value in params.items()
    )


def scale(
    cloud: Cloud,
    site: Site,
    request: ScaleRequest,
    report: Reporter,
    clock: Clock | None = None,
    pool_for: Callable[[Stack], PoolQuery | None] | None = None,
    scale_in_options: shrink.ScaleInOptions | None = None,
) -> ScaleResult:
    """Change the group's size with a PATCH update of only the capacity parameters.

    Shrinking removes only idle workers: ``pool_for(stack)`` gives the pool to ask (see
    :mod:`heatgen.scalein.shrink`). Without a pool a shrink needs ``force``. A run that finds
    the same resize already under way (an interrupted earlier run) waits for it.
    """
    clock = clock or Clock()
    started = clock.now()
    check_request(request, site)
    # The status and parameters: the outputs resolved cost Heat a read of every member's
    # stack, and only a shrink needs them (the pool's address, the members' servers).
    stack = require_stack(cloud, site, outputs=False)
    params = scale_parameters(site, request, stack)
    names = requested_group(site, request).names
    if not request.dry_run and stack.in_progress and (
        _resizing_to(stack, params) or request.resume
    ):
        return _attach(cloud, stack, request, params, report, clock, started, names)
    if names.desired not in stack.parameters and stack.parameters:
        raise UsageError(
            f"stack {stack.name} has no worker group {names.group} yet (it is in "
            f"{request.site_label}, but was not deployed): run `heatgen deploy "
            f"{request.site_label}` first"
        )
    current = group_size(cloud, stack, names)
    if current is not None and request.workers < current:
        stack = require_stack(cloud, site)
        pool = pool_for(stack) if pool_for is not None else None
        if pool is not None:
            with stack_lock(stack, wait=request.wait_for_idle, timeout=request.timeout,
                            report=report, clock=clock):
                options = replace(scale_in_options or shrink.ScaleInOptions(),
                                  drain_timeout=drain_timeout(site, request))
                return _scale_in(cloud, stack, request, params, pool, report, clock, started,
                                 options, names)
        if not request.force:
            raise UsageError(
                f"shrinking {site.site} from {current} to {request.workers} workers needs the "
                "HTCondor pool, to remove only idle workers, and the pool cannot be asked "
                "(no master address). Pass --force to let Heat remove the oldest workers, "
                "busy or not"
            )
        report.note(
            f"WARNING: --force without the pool: Heat removes the {current - request.workers} "
            "oldest workers, busy or not; their running jobs are lost"
        )
    fields = stackfields.patch_fields(params)
    if request.dry_run:
        deployed = cloud.deployed_definition(stack.id)
        wanted = Definition(
            deployed.template, {**deployed.parameters, **params}, deployed.files,
            deployed.registry,
        )
        previewed = cloud.preview_update(stack.id, fields, patch=True)
        plan = reconciled_plan(previewed, deployed, wanted, {names.resource: current})
        return ScaleResult("planned", stack, params, plan=plan, elapsed=clock.now() - started,
                           group=names)
    lock = contextlib.nullcontext() if request.lock_held else stack_lock(
        stack, wait=request.wait_for_idle, timeout=request.timeout, report=report, clock=clock)
    with lock:
        stack = refuse_if_busy(
            cloud, stack, wait_for_idle=request.wait_for_idle, timeout=request.timeout,
            report=report, clock=clock,
        )
        if not request.lock_held:  # autoscale's decision took them back under its lock
            shrink.take_back_or_refuse(cloud, stack, report.note, "a resize")
        marker = latest_event(cloud, stack.id)
        writes.update(cloud, stack, fields, True, report, clock)
        return _wait_resized(cloud, stack, request, params, report, clock, started, marker,
                             names=names)


def _attach(
    cloud: Cloud, stack: Stack, request: ScaleRequest, params: dict[str, int], report: Reporter,
    clock: Clock, started: float, names: GroupNames,
) -> ScaleResult:
    marker = latest_event(cloud, stack.id)
    if request.resume:
        report.note(
            f"stack {stack.name} is {stack.status}: sending the resize again so that a running "
            "Heat engine takes it over"
        )
        writes.update(cloud, stack, stackfields.patch_fields(params), True, report, clock)
    else:
        report.note(f"stack {stack.name} is already being resized to "
                    f"{params[names.desired]} workers; attaching to it")
    return _wait_resized(cloud, stack, request, params, report, clock, started, marker,
                         names=names)


def _wait_resized(
    cloud: Cloud, stack: Stack, request: ScaleRequest, params: dict[str, int], report: Reporter,
    clock: Clock, started: float, marker: Event | None,
    scale_in: shrink.ScaleInPlan | None = None, names: GroupNames | None = None,
) -> ScaleResult:
    names = names or GroupNames.of(None)
    report.note(f"resizing {stack.name}: " + ", ".join(f"{k}={v}" for k, v in params.items()))
    if not request.wait:
        return ScaleResult("started", stack, params, elapsed=clock.now() - started,
                           scale_in=scale_in, group=names)
    label = request.site_label
    which = f" --group {request.group}" if request.group else ""
    again = f"`heatgen scale {label}{which} --workers {request.workers}`"
    final = wait_for_stack(
        cloud, stack.id, "UPDATE", timeout=request.timeout, marker=marker, report=report,
        clock=clock,
        stall=Stall(request.stall_timeout, resume=f"run {again[:-1]} --resume`"),
        hint=f"run `heatgen status {label}` to look, or {again} again to wait",
        outputs=False,  # the parameters and the group's size are all it checks
    )
    won = as_int((final.parameters if final else {}).get(names.desired))
    wanted = params[names.desired]
    if won is not None and won != wanted:
        raise StackBusy(
            f"another update of stack {stack.name} ran at the same time and won: the group "
            f"is set to {won} workers, not {wanted}; run the command again to apply this one"
        )
    reached = group_size(cloud, final, names) if final else None
    if reached is not None and reached != wanted:
        raise StackFailed(
            f"Heat finished the update of {stack.name} ({final.status if final else '?'}), "
            f"but the group has {reached} workers, not {wanted}"
        )
    return ScaleResult("scaled", final, params, elapsed=clock.now() - started, scale_in=scale_in,
                       group=names)


def _scale_in(
    cloud: Cloud, stack: Stack, request: ScaleRequest, params: dict[str, int], pool: PoolQuery,
    report: Reporter, clock: Clock, started: float, options: shrink.ScaleInOptions,
    names: GroupNames,
) -> ScaleResult:
    """Choose idle members; mark them, re-check the pool, unmark the claimed; PATCH the size.

    The plan is returned, not printed: the caller shows it once."""
    options = replace(options, force=request.force, drain=request.drain)
    if not request.dry_run:
        # before the choice: a member marked by a killed run would be removed or replaced by
        # this PATCH whatever the choice, busy or not
        stack = refuse_if_busy(cloud, stack, wait_for_idle=request.wait_for_idle,
                               timeout=request.timeout, report=report, clock=clock)
        shrink.take_back_or_refuse(cloud, stack, report.note, "a resize")
    plan = shrink.choose(cloud, stack, pool, request.workers, options, report.note, names)
    if request.dry_run or not plan.removed:
        action = "planned" if request.dry_run else "unchanged"
        return ScaleResult(action, stack, {**params, names.desired: plan.target_size},
                           elapsed=clock.now() - started, scale_in=plan, group=names)
    return _remove(cloud, stack, request, params, pool, plan, report, clock, started, options,
                   names)


def _remove(
    cloud: Cloud, stack: Stack, request: ScaleRequest, params: dict[str, int], pool: PoolQuery,
    plan: shrink.ScaleInPlan, report: Reporter, clock: Clock, started: float,
    options: shrink.ScaleInOptions, names: GroupNames,
) -> ScaleResult:
    """Mark the plan's members, re-check the pool, unmark the claimed; PATCH the size; forget
    the removed workers' ads."""
    stack = refuse_if_busy(
        cloud, stack, wait_for_idle=request.wait_for_idle, timeout=request.timeout,
        report=report, clock=clock,
    )
    marker = latest_event(cloud, stack.id)
    with shrink.marked(cloud, pool, plan, options, report.note) as plan:
        params = {**params, names.desired: plan.target_size}
        if not plan.removed:
            return ScaleResult("unchanged", stack, params, elapsed=clock.now() - started,
                               scale_in=plan, group=names)
        writes.update(cloud, stack, stackfields.patch_fields(params), True, report, clock)
    result = _wait_resized(cloud, stack, request, params, report, clock, started, marker, plan,
                           names)
    if result.action == "scaled":
        _forget_removed(pool, plan, report)
    return result


def _forget_removed(pool: PoolQuery, plan: shrink.ScaleInPlan, report: Reporter) -> None:
    """The removed workers' ads leave the collector now, not when they expire (a deleted VM
    never says goodbye, and the negotiator would keep matching jobs to it)."""
    gone = {machine for verdict in (*plan.choice.chosen, *plan.choice.kept)
            if verdict.member.name in plan.removed for machine in verdict.machines}
    if not gone:
        return
    try:
        pool.forget([machine for machine in pool.machines() if machine.name in gone])
    except CloudError as error:
        report.note(f"the removed workers' ads stay in the collector until they expire "
                    f"({error})")


def remove_members(
    cloud: Cloud, site: Site, stack: Stack, pool: PoolQuery, group: str,
    chosen: Sequence[str], report: Reporter, clock: Clock | None = None,
    timeout: float = 1800.0, options: shrink.ScaleInOptions | None = None,
) -> ScaleResult:
    """Remove exactly the ``chosen`` members of ``group`` if the pool still says they are
    idle (autoscale's drained members): mark them, look at the pool once more and unmark any
    claimed since, then PATCH the group to its absolute size. The caller holds the stack's
    lock."""
    clock = clock or Clock()
    started = clock.now()
    options = options or shrink.ScaleInOptions()
    names = requested_group(site, ScaleRequest(workers=0, group=group)).names
    plan = shrink.choose_these(cloud, stack, pool, chosen, options, names)
    request = ScaleRequest(workers=plan.target_size, group=group, timeout=timeout)
    params = {names.desired: plan.target_size}
    if not plan.removed:
        return ScaleResult("unchanged", stack, params, elapsed=clock.now() - started,
                           scale_in=plan, group=names)
    return _remove(cloud, stack, request, params, pool, plan, report, clock, started, options,
                   names)


REPLACE_REASON = "heatgen autoscale: never joined the pool, replaced"


def replace_members(
    cloud: Cloud, site: Site, stack: Stack, group: str, chosen: Sequence[str],
    report: Reporter, clock: Clock | None = None, timeout: float = 1800.0,
) -> ScaleResult:
    """Replace the ``chosen`` members of ``group`` (members that never joined the pool): mark
    them unhealthy, then PATCH the group to the size it has, which makes Heat rebuild every
    member it finds marked. Marks are taken back if the PATCH is not sent. The caller holds
    the stack's lock."""
    clock = clock or Clock()
    started = clock.now()
    names = requested_group(site, ScaleRequest(workers=0, group=group)).names
    members = {m.name: m for m in group_members(cloud, stack, names)}
    size = GridOutputs.of(stack.outputs, names).worker_count
    if size is None:
        raise CloudError(f"stack {stack.name} has no size for group {names.group}")
    stack = refuse_if_busy(cloud, stack, wait_for_idle=False, timeout=timeout, report=report,
                           clock=clock)
    marker = latest_event(cloud, stack.id)
    params = {names.desired: size}
    held: list[str] = []
    try:
        for name in chosen:
            member = members[name]
            cloud.mark_unhealthy(member.nested_stack_id, name, True, REPLACE_REASON)
            held.append(name)
        writes.update(cloud, stack, stackfields.patch_fields(params), True, report, clock)
    except BaseException:
        for name in held:
            try:
                cloud.mark_unhealthy(members[name].nested_stack_id, name, False,
                                     "heatgen autoscale: replacement not sent")
            except HeatgenError:
                continue
        raise
    request = ScaleRequest(workers=size, group=group, timeout=timeout)
    return _wait_resized(cloud, stack, request, params, report, clock, started, marker,
                         names=names)
