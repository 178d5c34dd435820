"""``heatgen deploy``: create the grid's stack, or converge an existing one to the config."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from heatgen.cloud.interface import Cloud, Event, Stack
from heatgen.config import Site
from heatgen.contract import as_int
from heatgen.errors import UsageError
from heatgen.ops import fields as stackfields
from heatgen.ops import plan as plan_module
from heatgen.ops import writes
from heatgen.ops.busy import refuse_if_busy
from heatgen.ops.plan import Plan
from heatgen.ops.report import Clock, Reporter
from heatgen.ops.wait import latest_event_id, wait_for_stack
from heatgen.render import RenderedGrid

WAIT_MARGIN = 600  # seconds on top of the master's wait_timeout for a whole create


class StackWatcher(Protocol):
    """Sees each poll of a wait (the new events, maybe none); the sandbox's master player."""

    def __call__(self, stack_id: str, events: list[Event]) -> None: ...

    def attach(self, stack_id: str) -> None: ...


@dataclass(frozen=True)
class DeployOptions:
    dry_run: bool = False
    wait: bool = True
    timeout: float | None = None
    yes: bool = False
    wait_for_idle: bool = False
    # Environment files sent after the grid's own (the sandbox's stand-ins), by name.
    extra_environments: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class DeployResult:
    action: str  # created | updated | unchanged | planned | started
    stack: Stack | None
    plan: Plan | None = None
    elapsed: float = 0.0
    parameters_sent: Mapping[str, Any] = field(default_factory=dict)


def _deadline(site: Site, timeout: float | None) -> float:
    return timeout if timeout is not None else float(site.wait_timeout + WAIT_MARGIN)


def desired_for_update(site: Site, stack: Stack) -> int:
    """The worker count a re-deploy sends: the config's if it changed, else the live size.

    Re-deploying an unchanged config must not undo what the alarms or `heatgen scale` did.
    The config's value at the last deploy is kept in the stack as ``site_worker_desired``.
    """
    deployed = as_int(stack.parameters.get("site_worker_desired"))
    current = as_int(stack.outputs.get("worker_count"))
    if deployed is None or deployed != site.workers.desired:
        if current is not None and site.workers.desired < current:
            # Heat would remove the oldest workers, busy or not: shrinking is `heatgen scale`'s.
            return max(site.workers.min, min(site.workers.max, current))
        return site.workers.desired
    if current is None:
        return site.workers.desired
    return max(site.workers.min, min(site.workers.max, current))


def deploy(
    cloud: Cloud,
    grid: RenderedGrid,
    options: DeployOptions,
    report: Reporter,
    confirm: Callable[[str], bool] = lambda question: False,
    clock: Clock | None = None,
    watcher: StackWatcher | None = None,
) -> DeployResult:
    """Create the grid's stack, or converge an existing one to the config.

    ``watcher`` sees every poll of a create or update (the sandbox plays the master's ready
    signal through it); ``attach`` is called when heatgen joins a create already running.
    """
    clock = clock or Clock()
    started = clock.now()
    site = grid.site
    timeout = _deadline(site, options.timeout)
    extra = dict(options.extra_environments)
    fields = stackfields.create_fields(grid, extra_environments=extra)
    master = watcher

    existing = cloud.get_stack(site.site)
    if existing is not None and existing.in_progress and not options.dry_run:
        if existing.action in ("CREATE", "UPDATE") and not options.wait_for_idle:
            report.note(f"stack {site.site} is {existing.status}; attaching to it")
            if not options.wait:
                return DeployResult("started", existing, elapsed=clock.now() - started)
            marker = latest_event_id(cloud, existing.id)
            if master is not None and existing.action == "CREATE":
                master.attach(existing.id)
            final = wait_for_stack(
                cloud, existing.id, existing.action, timeout=timeout, marker=marker,
                report=report, on_events=master, clock=clock,
            )
            existing = final
        else:
            existing = refuse_if_busy(
                cloud, existing, wait_for_idle=options.wait_for_idle, timeout=timeout,
                report=report, clock=clock,
            )

    if existing is None:
        cloud.validate(fields)
        if options.dry_run:
            added = [r.name for r in cloud.preview_create(fields)]
            plan = Plan({"added": added})
            return DeployResult("planned", None, plan=plan, elapsed=clock.now() - started)
        stack_id = writes.create(cloud, fields, site.site, report, clock)
        report.note(f"creating stack {site.site} ({stack_id})")
        if not options.wait:
            return DeployResult("started", cloud.get_stack(stack_id), elapsed=clock.now() - started)
        final = wait_for_stack(
            cloud, stack_id, "CREATE", timeout=timeout, marker=None, report=report,
            on_events=master, clock=clock,
        )
        return DeployResult("created", final, elapsed=clock.now() - started)

    desired = desired_for_update(site, existing)
    if desired > site.workers.desired and as_int(existing.outputs.get("worker_count")) == desired \
            and as_int(existing.parameters.get("site_worker_desired")) != site.workers.desired:
        report.note(
            f"workers.desired went down to {site.workers.desired}, but deploy does not remove "
            f"workers (Heat would take the oldest, busy or not); the group keeps {desired}. "
            f"Shrink it with `heatgen scale SITE.yaml --workers {site.workers.desired}`, which "
            "removes only idle workers"
        )
    override = {"worker_desired": desired}
    update = stackfields.update_fields(grid, parameters=override, extra_environments=extra)
    cloud.validate(fields)
    deployed = cloud.deployed_definition(existing.id)
    wanted = stackfields.definition(grid, parameters=override, extra_environments=extra)
    previewed = cloud.preview_update(existing.id, update, patch=False)
    plan = plan_module.reconciled_plan(previewed, deployed, wanted)
    if options.dry_run:
        return DeployResult("planned", existing, plan=plan, elapsed=clock.now() - started,
                            parameters_sent=override)
    if plan_module.same_definition(deployed, wanted) and not existing.failed:
        return DeployResult("unchanged", existing, plan=plan, elapsed=clock.now() - started)
    protected = plan.replaces_protected
    if protected and not options.yes:
        question = (
            f"this update replaces {', '.join(protected)}: the pool's central manager and "
            "every running job would be lost. Go ahead?"
        )
        if not confirm(question):
            raise UsageError(
                f"the plan replaces {', '.join(protected)}; nothing was changed. Review the plan "
                "and pass --yes to go ahead"
            )
    existing = refuse_if_busy(
        cloud, existing, wait_for_idle=options.wait_for_idle, timeout=timeout, report=report,
        clock=clock,
    )
    marker = latest_event_id(cloud, existing.id)
    writes.update(cloud, existing, update, False, report, clock)
    report.note(f"updating stack {site.site} (workers: {desired})")
    if not options.wait:
        return DeployResult("started", cloud.get_stack(existing.id), plan=plan,
                            elapsed=clock.now() - started)
    final = wait_for_stack(
        cloud, existing.id, "UPDATE", timeout=timeout, marker=marker, report=report,
        on_events=master, clock=clock,
    )
    return DeployResult("updated", final, plan=plan, elapsed=clock.now() - started,
                        parameters_sent={"worker_desired": desired})
