"""``heatgen scale``: change the worker group's size with a PATCH of only the capacity.

Growing is a plain PATCH. Shrinking goes through the guarded scale-in
(:mod:`heatgen.scalein.shrink`) so that no busy worker is removed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

from heatgen.cloud.interface import Cloud, Definition, Stack
from heatgen.config import Site
from heatgen.contract import GridOutputs, as_int
from heatgen.errors import StackBusy, UsageError
from heatgen.ops import fields as stackfields
from heatgen.ops import plan as plan_module
from heatgen.ops import writes
from heatgen.ops.busy import refuse_if_busy, stack_lock
from heatgen.ops.inspect import require_stack
from heatgen.ops.plan import Plan
from heatgen.ops.report import Clock, Reporter
from heatgen.ops.wait import latest_event_id, wait_for_stack
from heatgen.pool import PoolQuery
from heatgen.scalein import shrink


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
    drain_timeout: float = 3600.0


@dataclass(frozen=True)
class ScaleResult:
    action: str  # scaled | planned | unchanged | started
    stack: Stack | None
    parameters: Mapping[str, int]
    plan: Plan | None = None
    elapsed: float = 0.0
    scale_in: shrink.ScaleInPlan | None = None

    @property
    def busy_kept(self) -> int:
        return len(self.scale_in.busy_kept) if self.scale_in is not None else 0


def scale_parameters(site: Site, request: ScaleRequest) -> dict[str, int]:
    """The PATCH parameters for a capacity change, checked against min/max before any call."""
    low = request.min if request.min is not None else site.workers.min
    high = request.max if request.max is not None else site.workers.max
    problems = []
    if low < 0:
        problems.append(f"--min must be >= 0 (got {low})")
    if high < 1:
        problems.append(f"--max must be >= 1 (got {high})")
    if low > high:
        problems.append(f"min must be <= max (got {low} > {high})")
    if not low <= request.workers <= high:
        problems.append(
            f"--workers {request.workers} is outside min..max {low}..{high}; "
            "change the bounds with --min/--max"
        )
    if problems:
        raise UsageError("; ".join(problems))
    params = {"worker_desired": request.workers}
    if request.min is not None:
        params["worker_min"] = request.min
    if request.max is not None:
        params["worker_max"] = request.max
    return params


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
    :mod:`heatgen.scalein.shrink`). Without a pool a shrink needs ``force``.
    """
    clock = clock or Clock()
    started = clock.now()
    params = scale_parameters(site, request)
    stack = require_stack(cloud, site)
    current = GridOutputs.of(stack.outputs).worker_count
    if current is not None and request.workers < current:
        pool = pool_for(stack) if pool_for is not None else None
        if pool is not None:
            with stack_lock(stack, wait=request.wait_for_idle, timeout=request.timeout,
                            report=report, clock=clock):
                return _scale_in(cloud, stack, request, params, pool, report, clock, started,
                                 scale_in_options or shrink.ScaleInOptions())
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
        plan = plan_module.reconciled_plan(previewed, deployed, wanted)
        return ScaleResult("planned", stack, params, plan=plan, elapsed=clock.now() - started)
    with stack_lock(stack, wait=request.wait_for_idle, timeout=request.timeout, report=report,
                    clock=clock):
        return _patch_and_wait(cloud, stack, request, params, report, clock, started)


def _patch_and_wait(
    cloud: Cloud, stack: Stack, request: ScaleRequest, params: dict[str, int], report: Reporter,
    clock: Clock, started: float,
) -> ScaleResult:
    stack = refuse_if_busy(
        cloud, stack, wait_for_idle=request.wait_for_idle, timeout=request.timeout,
        report=report, clock=clock,
    )
    marker = latest_event_id(cloud, stack.id)
    writes.update(cloud, stack, stackfields.patch_fields(params), True, report, clock)
    return _wait_resized(cloud, stack, request, params, report, clock, started, marker)


def _wait_resized(
    cloud: Cloud, stack: Stack, request: ScaleRequest, params: dict[str, int], report: Reporter,
    clock: Clock, started: float, marker: str | None,
    scale_in: shrink.ScaleInPlan | None = None,
) -> ScaleResult:
    report.note(f"resizing {stack.name}: " + ", ".join(f"{k}={v}" for k, v in params.items()))
    if not request.wait:
        return ScaleResult("started", stack, params, elapsed=clock.now() - started,
                           scale_in=scale_in)
    final = wait_for_stack(
        cloud, stack.id, "UPDATE", timeout=request.timeout, marker=marker, report=report,
        clock=clock,
    )
    won = as_int((final.parameters if final else {}).get("worker_desired"))
    if won is not None and won != params["worker_desired"]:
        raise StackBusy(
            f"another update of stack {stack.name} ran at the same time and won: the group "
            f"is set to {won} workers, not {params['worker_desired']}; run the command again "
            "to apply this one"
        )
    return ScaleResult("scaled", final, params, elapsed=clock.now() - started, scale_in=scale_in)


def _scale_in(
    cloud: Cloud, stack: Stack, request: ScaleRequest, params: dict[str, int], pool: PoolQuery,
    report: Reporter, clock: Clock, started: float, options: shrink.ScaleInOptions,
) -> ScaleResult:
    """Choose idle members; mark them, re-check the pool, unmark the claimed; PATCH the size."""
    options = replace(options, force=request.force, drain=request.drain,
                      drain_timeout=request.drain_timeout)
    plan = shrink.choose(cloud, stack, pool, request.workers, options, report.note)
    for line in plan.lines():
        report.note(line)
    if request.dry_run or not plan.removed:
        action = "planned" if request.dry_run else "unchanged"
        return ScaleResult(action, stack, {**params, "worker_desired": plan.target_size},
                           elapsed=clock.now() - started, scale_in=plan)
    stack = refuse_if_busy(
        cloud, stack, wait_for_idle=request.wait_for_idle, timeout=request.timeout,
        report=report, clock=clock,
    )
    marker = latest_event_id(cloud, stack.id)
    with shrink.marked(cloud, pool, plan, options, report.note) as plan:
        params = {**params, "worker_desired": plan.target_size}
        if not plan.removed:
            return ScaleResult("unchanged", stack, params, elapsed=clock.now() - started,
                               scale_in=plan)
        writes.update(cloud, stack, stackfields.patch_fields(params), True, report, clock)
    return _wait_resized(cloud, stack, request, params, report, clock, started, marker, plan)
