"""``heatgen deploy``: create the grid's stack, or converge an existing one to the config.

A deploy never shrinks the worker group: Heat would remove the oldest workers, busy or not.
A lowered ``workers.desired`` or ``workers.max`` keeps the group's current size (and says how
to shrink safely, with ``heatgen scale``), and a plan whose group would end smaller than it
is, by any route (a template change included), is refused.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from heatgen.cloud.interface import Cloud, Definition, Event, Stack
from heatgen.config import Group, Site
from heatgen.contract import (
    TOKEN_WAIT,
    WAIT_CONDITION,
    WORKER_GROUP,
    GridOutputs,
    GroupNames,
    as_int,
    deployed_groups,
)
from heatgen.errors import StackBusy, UsageError
from heatgen.ops import fields as stackfields
from heatgen.ops import writes
from heatgen.ops.busy import refuse_if_busy, stack_lock
from heatgen.ops.plan import GroupPlan, Plan, reconciled_plan, same_definition
from heatgen.ops.report import Clock, Reporter
from heatgen.ops.wait import Stall, latest_event, wait_for_stack
from heatgen.render import RenderedGrid
from heatgen.scalein import shrink

WAIT_MARGIN = 600  # seconds on top of the master's wait_timeout for a whole create
STALL_TIMEOUT = 300.0  # seconds without a new event before a wait calls the stack stalled
# Seconds past its own timeout a live engine takes to fail a wait condition nobody signalled.
WAIT_GRACE = 30


class StackWatcher(Protocol):
    """Sees each poll of a wait (the new events, maybe none); the sandbox's master player."""

    def __call__(self, stack_id: str, events: list[Event]) -> None: ...

    def attach(self, stack_id: str) -> None:
        """heatgen joins a create already running: act on the stack as it is now."""

    @property
    def done(self) -> bool:
        """Nothing left to do: a ``--no-wait`` deploy may return."""


@dataclass(frozen=True)
class DeployOptions:
    dry_run: bool = False
    wait: bool = True
    timeout: float | None = None
    yes: bool = False
    wait_for_idle: bool = False
    # Environment files sent after the grid's own (the sandbox's stand-ins), by name, and the
    # templates they map resource types to.
    extra_environments: Mapping[str, str] = field(default_factory=dict)
    extra_files: Mapping[str, str] = field(default_factory=dict)
    stall_timeout: float = STALL_TIMEOUT  # 0: never call a wait stalled
    resume: bool = False  # send an update with the same definition to a stalled stack
    site_label: str = "SITE.yaml"  # how hints name the site file


@dataclass(frozen=True)
class DeployResult:
    action: str  # created | updated | unchanged | planned | started
    stack: Stack | None
    plan: Plan | None = None
    elapsed: float = 0.0
    parameters_sent: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Capacity:
    """The capacity parameters a re-deploy sends, and why they differ from the config."""

    parameters: Mapping[str, int]
    notes: tuple[str, ...] = ()


def _deadline(site: Site, timeout: float | None) -> float:
    return timeout if timeout is not None else float(site.wait_timeout + WAIT_MARGIN)


def _scale_hint(site: Site, group: Group, label: str) -> str:
    return f"heatgen scale {label}" + (f" --group {group.name}" if site.grouped else "")


def update_capacity(site: Site, stack: Stack, label: str = "SITE.yaml") -> Capacity:
    """What a re-deploy sends for each group: never fewer workers than it has.

    Re-deploying an unchanged config must not undo what the alarms or `heatgen scale` did:
    the config's ``desired`` at the last deploy is kept in the stack (``site_worker_desired``,
    per group), and only a changed value is applied, and only upwards. A group the stack does
    not have yet gets the config's size.
    """
    parameters: dict[str, int] = {}
    notes = []
    for group in site.groups:
        names = group.names
        current = GridOutputs.of(stack.outputs, names).worker_count
        if current is None:
            parameters[names.desired] = group.desired
            continue
        where, hint = group.where, _scale_hint(site, group, label)
        deployed = as_int(stack.parameters.get(names.site_desired))
        changed = deployed is None or deployed != group.desired
        target = max(group.desired, current) if changed else current
        target = max(target, group.min)
        if changed and group.desired < current:
            before = f"{deployed} -> " if deployed is not None else ""
            notes.append(
                f"{where}.desired changed {before}{group.desired}, but the group has {current} "
                f"workers and a deploy never removes workers (Heat would take the oldest, busy "
                f"or not): it keeps {target}. Shrink with `{hint} --workers "
                f"{max(group.desired, group.min)}`, which removes only idle workers"
            )
        parameters[names.desired] = target
        if group.max < target:
            parameters[names.max] = target
            notes.append(
                f"{where}.max is {group.max}, but the group has {target} workers: the deploy "
                f"keeps the maximum at {target} instead of letting Heat remove "
                f"{target - group.max} workers, busy or not. Shrink first with `{hint} "
                f"--workers {group.max} --max {group.max}` (idle workers only), then deploy again"
            )
    return Capacity(parameters, tuple(notes))


def group_sizes(stack: Stack, *templates: Mapping[str, Any]) -> dict[str, int | None]:
    """Each worker group's size now, by AutoScalingGroup name (from the stack's outputs), for
    every group of the given templates (the deployed one and the one to deploy)."""
    groups = {names.resource: names for t in templates for names in deployed_groups(t)}
    return {resource: GridOutputs.of(stack.outputs, names).worker_count
            for resource, names in groups.items()}


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
    signal through it).
    """
    clock = clock or Clock()
    started = clock.now()
    site = grid.site
    label = options.site_label
    timeout = _deadline(site, options.timeout)
    extra = dict(options.extra_environments)
    files = dict(options.extra_files)
    fields = stackfields.create_fields(grid, extra_environments=extra, extra_files=files)
    stall = Stall(
        options.stall_timeout, dict.fromkeys((WAIT_CONDITION, TOKEN_WAIT),
                                             float(site.wait_timeout + WAIT_GRACE)),
        resume=f"run `heatgen deploy {label} --resume`",
    )
    hint = f"run `heatgen status {label}` to look, or `heatgen deploy {label}` again to wait"

    def wait(stack_id: str, action: str, marker: Event | None) -> Stack | None:
        return wait_for_stack(cloud, stack_id, action, timeout=timeout, marker=marker,
                              report=report, on_events=watcher, clock=clock, stall=stall,
                              hint=hint)

    existing = cloud.get_stack(site.site)
    if existing is not None and existing.in_progress and not options.dry_run:
        if options.resume and existing.action in ("CREATE", "UPDATE"):
            return _resume(cloud, existing, report, clock, started, options, watcher, wait)
        if existing.action in ("CREATE", "UPDATE") and not options.wait_for_idle:
            report.note(f"stack {site.site} is {existing.status}; attaching to it")
            if not options.wait:
                return DeployResult("started", existing, elapsed=clock.now() - started)
            marker = latest_event(cloud, existing.id)
            if watcher is not None and existing.action == "CREATE":
                watcher.attach(existing.id)
            existing = wait(existing.id, existing.action, marker)
        else:
            existing = refuse_if_busy(
                cloud, existing, wait_for_idle=options.wait_for_idle, timeout=timeout,
                report=report, clock=clock,
            )
    elif options.resume:
        report.note(f"stack {site.site} is not in progress; nothing to resume, deploying")

    if existing is None:
        return _create(cloud, fields, options, report, clock, started, watcher, wait, timeout)

    capacity = update_capacity(site, existing, label)
    for note in capacity.notes:
        report.note(note)
    override = dict(capacity.parameters)
    update = stackfields.update_fields(grid, parameters=override, extra_environments=extra,
                                       extra_files=files)
    cloud.validate(fields)
    deployed = cloud.deployed_definition(existing.id)
    wanted = stackfields.definition(grid, parameters=override, extra_environments=extra,
                                    extra_files=files)
    previewed = cloud.preview_update(existing.id, update, patch=False)
    sizes = group_sizes(existing, deployed.template, wanted.template)
    plan = reconciled_plan(previewed, deployed, wanted, sizes)
    _refuse_signing_key_grid(deployed, wanted, site.site, label)
    if options.dry_run:
        return DeployResult("planned", existing, plan=plan, elapsed=clock.now() - started,
                            parameters_sent=override)
    if same_definition(deployed, wanted) and not existing.failed:
        _take_back_stale_marks(cloud, existing, report, clock)
        return DeployResult("unchanged", existing, plan=plan, elapsed=clock.now() - started)
    _check_groups(plan, options, confirm, label)
    for group in plan.groups:
        if not (group.members_replaced and group.now and not options.yes):
            continue
        what = ", ".join(sorted(group.members_replaced))
        whose = ("every worker's" if group.resource == WORKER_GROUP
                 else f"every {group.resource} member's")
        if not confirm(f"this update replaces {whose} {what}: all {group.now} workers "
                       "and their running jobs would be lost. Go ahead?"):
            raise UsageError(
                f"the plan replaces {whose} {what} ({group.now} workers, busy or not); "
                f"nothing was changed. Review it (`heatgen deploy {label} --dry-run`) and pass "
                "--yes to go ahead, or drain the group first"
            )
    protected = plan.replaces_protected
    if protected and not options.yes:
        question = (
            f"this update replaces {', '.join(protected)}: the pool's central manager and "
            "every running job would be lost. Go ahead?"
        )
        if not confirm(question):
            raise UsageError(
                f"the plan replaces {', '.join(protected)}; nothing was changed. Review the plan "
                f"(`heatgen deploy {label} --dry-run`) and pass --yes to go ahead"
            )
    with stack_lock(existing, wait=options.wait_for_idle, timeout=timeout, report=report,
                    clock=clock):
        existing = refuse_if_busy(
            cloud, existing, wait_for_idle=options.wait_for_idle, timeout=timeout,
            report=report, clock=clock,
        )
        # the update would replace every member a killed scale-in left marked, busy or not
        shrink.take_back_or_refuse(cloud, existing, report.note, "this update")
        marker = latest_event(cloud, existing.id)
        writes.update(cloud, existing, update, False, report, clock)
    report.note(f"updating stack {site.site} (workers: {_sizes_sent(site, override)})")
    if not options.wait:
        return DeployResult("started", cloud.get_stack(existing.id, outputs=False), plan=plan,
                            elapsed=clock.now() - started, parameters_sent=override)
    final = wait(existing.id, "UPDATE", marker)
    return DeployResult("updated", final, plan=plan, elapsed=clock.now() - started,
                        parameters_sent=override)


def _take_back_stale_marks(cloud: Cloud, stack: Stack, report: Reporter, clock: Clock) -> None:
    """An unchanged deploy sends no update, but leaves no mark of a killed scale-in standing
    for the next update of any kind to act on. Under the stack's lock, if it is free: a
    heatgen holding it may be between its own mark and PATCH."""
    try:
        with stack_lock(stack, wait=False, timeout=0, report=report, clock=clock):
            shrink.take_back_or_refuse(cloud, stack, report.note, "the next update")
    except StackBusy:
        report.note(f"another heatgen is changing stack {stack.name}; its marks are its own")


def _refuse_signing_key_grid(deployed: Definition, wanted: Definition, name: str,
                             label: str) -> None:
    """A grid deployed before the master issued the workers' token cannot be updated to it.

    Its master runs its boot payload once: it would never hand Heat the token, and the update
    would wait for it until it failed. Nothing is changed; the way over is a new grid."""
    def has_token_wait(definition: Definition) -> bool:
        resources = definition.template.get("resources")
        return isinstance(resources, dict) and TOKEN_WAIT in resources

    if deployed.template and has_token_wait(wanted) and not has_token_wait(deployed):
        raise UsageError(
            f"stack {name} was deployed by an earlier heatgen, whose workers all hold the pool "
            "signing key; this heatgen gives workers a token the master issues at its first "
            "boot, which its running master will never do, so the update would wait for it "
            f"and fail. Nothing was changed. To move the grid over: drain it (`heatgen scale "
            f"{label} --workers 0 --min 0 --drain`), then `heatgen delete {label} --yes` and "
            f"`heatgen deploy {label}` (a new central manager and a new pool key)"
        )


def _sizes_sent(site: Site, parameters: Mapping[str, int]) -> str:
    if not site.grouped:
        return str(parameters[site.groups[0].names.desired])
    return ", ".join(f"{g.name} {parameters[g.names.desired]}" for g in site.groups)


def _check_groups(
    plan: Plan, options: DeployOptions, confirm: Callable[[str], bool], label: str,
) -> None:
    """Refuse an update that would leave a group smaller than it is, whatever the route."""
    for group in plan.groups:
        _check_group(plan, group, options, confirm, label)


def _check_group(
    plan: Plan, group: GroupPlan, options: DeployOptions,
    confirm: Callable[[str], bool], label: str,
) -> None:
    single = group.resource == WORKER_GROUP
    names = GroupNames.from_resource(group.resource)
    scale = f"heatgen scale {label}" + (
        f" --group {names.group}" if names is not None and not single else "")
    the_group = "the worker group" if single else f"worker group {group.resource}"
    current = group.now
    how = (f"shrink it first with `{scale} --workers N` (idle workers only), "
           "then deploy again; nothing was changed")
    deleted = group.resource in plan.changes.get("deleted", [])
    if plan.removes(group.resource) and current:
        verb = "removes" if deleted else "replaces"
        drain = f"`{scale} --workers 0 --min 0 --drain`"
        then = ("then deploy again" if deleted
                else "then deploy with --yes")
        raise UsageError(
            f"this update {verb} {the_group}: all {current} workers would be removed, "
            f"busy or not. Drain it to 0 first ({drain}; with the group still in "
            f"{label}), {then}; nothing was changed"
        )
    if plan.removes(group.resource) and not deleted and not options.yes and not confirm(
        f"this update replaces the (empty) {the_group.removeprefix('the ')}. Go ahead?"
    ):
        raise UsageError(f"the plan replaces {the_group}; pass --yes to go ahead")
    if group.shrinks:
        raise UsageError(
            f"this update would shrink {the_group} from {group.now} to "
            f"{group.after} workers, and Heat removes the oldest, busy or not; {how}"
        )
    if current and group.after is None and not options.yes and not confirm(
        f"heatgen cannot tell {the_group}'s size after this update (a template it "
        "cannot evaluate). Go ahead?"
    ):
        raise UsageError(
            f"heatgen cannot tell {the_group}'s size after this update; review the plan "
            "and pass --yes to go ahead; nothing was changed"
        )


def _create(
    cloud: Cloud, fields: Mapping[str, Any], options: DeployOptions, report: Reporter,
    clock: Clock, started: float, watcher: StackWatcher | None,
    wait: Callable[[str, str, Event | None], Stack | None], timeout: float,
) -> DeployResult:
    name = str(fields["stack_name"])
    cloud.validate(fields)
    if options.dry_run:
        added = [r.name for r in cloud.preview_create(fields)]
        return DeployResult("planned", None, plan=Plan({"added": added}),
                            elapsed=clock.now() - started)
    stack_id = writes.create(cloud, fields, name, report, clock)
    report.note(f"creating stack {name} ({stack_id})")
    if not options.wait:
        if watcher is not None and not watcher.done:
            # Whatever plays a part in the create (the sandbox's master) must still act.
            report.note("waiting only until the master's ready signal is sent")
            wait_for_stack(cloud, stack_id, "CREATE", timeout=timeout,
                           marker=None, report=report, on_events=watcher, clock=clock,
                           until=lambda: watcher.done)
        return DeployResult("started", cloud.get_stack(stack_id, outputs=False),
                            elapsed=clock.now() - started)
    final = wait(stack_id, "CREATE", None)
    return DeployResult("created", final, elapsed=clock.now() - started)


def _resume(
    cloud: Cloud, stack: Stack, report: Reporter, clock: Clock, started: float,
    options: DeployOptions, watcher: StackWatcher | None,
    wait: Callable[[str, str, Event | None], Stack | None],
) -> DeployResult:
    """Send a stalled stack an update with the same definition, so that a running engine
    takes it over (Heat's convergence engine does not pick up a dead engine's traversal)."""
    report.note(
        f"stack {stack.name} is {stack.status}: sending an update with the same definition "
        "so that a running Heat engine takes it over"
    )
    marker = latest_event(cloud, stack.id)
    writes.update(cloud, stack, {}, True, report, clock)
    if not options.wait:
        return DeployResult("started", cloud.get_stack(stack.id, outputs=False),
                            elapsed=clock.now() - started)
    final = wait(stack.id, "UPDATE", marker)
    return DeployResult("updated", final, elapsed=clock.now() - started)
