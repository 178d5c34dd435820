"""A grid's life after ``render``: deploy, scale, watch, inspect and delete, over a :class:`Cloud`.

Every waiting call takes the newest event as a marker before it acts, streams only new events,
has a deadline, and ends in a named outcome: the final :class:`Stack`, :class:`StackFailed`
(with the failed resources, nested ones included) or :class:`WaitTimeout`.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

from heatgen import plandiff, scaledown, stackfields
from heatgen.cloud import Cloud, Event, Resource, Stack
from heatgen.config import Site
from heatgen.errors import CloudError, HeatgenError, StackFailed, UsageError, WaitTimeout
from heatgen.pool import PoolQuery
from heatgen.render import RenderedGrid

POLL_INTERVAL = 1.0
# Tries of a create, update or delete whose failure was transient (each looks before retrying).
WRITE_ATTEMPTS = 8
DELETE_CANCELLED = "Stack DELETE cancelled"  # Heat's reason when a DELETE restarts
CANCEL_GRACE = 15.0  # seconds a cancelled delete may take to show the next one
STATUS_EVERY = 10.0  # seconds between safety-net reads of the stack while waiting
WAIT_MARGIN = 600  # seconds on top of the master's wait_timeout for a whole create
# Replacing any of these breaks the running pool: the plan must be confirmed with --yes.
PROTECTED_RESOURCES = frozenset({"master", "master_port", "master_floating_ip", "pool_secret"})
SECRET_OUTPUTS = frozenset(
    {"scale_up_url", "scale_down_url", "scale_up_alarm_url", "scale_down_alarm_url"}
)
PLAN_KINDS = ("added", "updated", "replaced", "deleted", "unchanged")
WAIT_HANDLE = "master_wait_handle"
WAIT_CONDITION = "master_wait"
WORKER_GROUP = "workers"


class Reporter(Protocol):
    """Where progress goes; the library itself never prints."""

    def event(self, event: Event) -> None: ...

    def note(self, message: str) -> None: ...


class SilentReporter:
    def event(self, event: Event) -> None:
        pass

    def note(self, message: str) -> None:
        pass


class StackBusy(CloudError):
    """The stack is in the middle of another operation."""


class NotDeployed(HeatgenError):
    """The site has no stack in this cloud."""


@dataclass
class Clock:
    """Time and sleep, replaceable in tests."""

    now: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep


# --------------------------------------------------------------------------- waiting


def latest_event_id(cloud: Cloud, stack_id: str) -> str | None:
    events = cloud.events(stack_id, after=None) or []
    return events[-1].id if events else None


def failed_resources(cloud: Cloud, stack_id: str) -> list[Resource]:
    try:
        resources = cloud.resources(stack_id, nested_depth=5)
    except CloudError:
        return []
    return [r for r in resources if r.status.endswith("_FAILED")]


def describe_failure(stack: Stack, failed: list[Resource]) -> str:
    lines = [f"stack {stack.name} is {stack.status}: {stack.reason or 'no reason given'}"]
    for resource in failed:
        where = f"{resource.parent}/" if resource.parent else ""
        lines.append(
            f"  {where}{resource.name} ({resource.type}) {resource.status}: "
            f"{resource.reason or 'no reason given'}"
        )
    return "\n".join(lines)


def wait_for_stack(
    cloud: Cloud,
    stack_id: str,
    action: str,
    *,
    timeout: float,
    marker: str | None,
    report: Reporter,
    on_events: Callable[[str, list[Event]], None] | None = None,
    clock: Clock | None = None,
) -> Stack | None:
    """Wait until ``action`` on the stack ends; return the final stack (None once deleted).

    One request per poll: the events after ``marker``. The stack itself is read when its own
    final event arrives, and every ``STATUS_EVERY`` seconds as a safety net (events can be
    pruned, and a deleted stack may have no events left to list).

    A transient failure (HTTP 5xx, a lost connection) of a poll, after the client's own retries,
    is noted and the wait goes on until the deadline: the operation runs in Heat either way.
    ``on_events`` is called on every successful poll, with the new events (maybe none).
    """
    clock = clock or Clock()
    start = clock.now()
    deadline = start + timeout
    seen = marker
    last_status = start
    finals = (f"{action}_COMPLETE", f"{action}_FAILED")
    stack: Stack | None = None
    cancelled_at: float | None = None
    due = True  # read the stack on this poll
    while True:
        try:
            events = cloud.events(stack_id, after=seen)
            for event in events or []:
                report.event(event)
                seen = event.id
            if on_events is not None:
                on_events(stack_id, events or [])
            # A deleted stack's own final event is not listed: a delete reads the stack each poll.
            due = due or events is None or action == "DELETE" \
                or clock.now() - last_status >= STATUS_EVERY \
                or any(e.physical_id == stack_id and e.status in finals for e in events)
            if due:
                last_status = clock.now()
                stack = cloud.get_stack(stack_id)
                due = False
                if stack is None or stack.status == "DELETE_COMPLETE":
                    if action == "DELETE":
                        return None
                    raise StackFailed(f"stack {stack_id} disappeared while waiting for {action}")
                if stack.status == f"{action}_COMPLETE":
                    return stack
                if action == "DELETE" and stack.status == "DELETE_FAILED" \
                        and stack.reason.startswith(DELETE_CANCELLED):
                    # Another DELETE arrived: Heat cancelled this one and starts that one at
                    # once. Only a cancelled delete that stays so is a failure.
                    cancelled_at = clock.now() if cancelled_at is None else cancelled_at
                    if clock.now() - cancelled_at < CANCEL_GRACE:
                        due = True
                        clock.sleep(POLL_INTERVAL)
                        continue
                else:
                    cancelled_at = None
                if stack.status == f"{action}_FAILED" or (stack.failed and not stack.in_progress):
                    raise StackFailed(describe_failure(stack, failed_resources(cloud, stack_id)))
        except CloudError as error:
            if not getattr(error, "transient", False):
                raise
            report.note(f"{error}; still waiting (the operation goes on in Heat)")
        if clock.now() >= deadline:
            raise WaitTimeout(
                f"stack {stack.name if stack else stack_id} is still "
                f"{stack.status if stack else action + '_IN_PROGRESS'} after {timeout:.0f} s; "
                "it was left alone: run `heatgen status` to look, or the same command again "
                "to wait"
            )
        clock.sleep(POLL_INTERVAL)


def wait_until_idle(
    cloud: Cloud, stack: Stack, *, timeout: float, report: Reporter, clock: Clock | None = None
) -> Stack:
    """Wait until another operation on the stack has ended (``--wait-for-idle``)."""
    clock = clock or Clock()
    deadline = clock.now() + timeout
    report.note(f"stack {stack.name} is {stack.status}; waiting until it is idle")
    current: Stack | None = stack
    while current is not None and current.in_progress:
        if clock.now() >= deadline:
            raise WaitTimeout(f"stack {stack.name} stayed {current.status} for {timeout:.0f} s")
        clock.sleep(POLL_INTERVAL)
        current = cloud.get_stack(stack.id)
    if current is None:
        raise NotDeployed(f"stack {stack.name} was deleted while heatgen waited")
    return current


def refuse_if_busy(
    cloud: Cloud, stack: Stack, *, wait_for_idle: bool, timeout: float, report: Reporter,
    clock: Clock | None = None,
) -> Stack:
    # Read again right before acting: the stack seen at the start may be stale by now.
    stack = cloud.get_stack(stack.id) or stack
    if not stack.in_progress:
        return stack
    if wait_for_idle:
        return wait_until_idle(cloud, stack, timeout=timeout, report=report, clock=clock)
    raise StackBusy(
        f"stack {stack.name} is busy ({stack.status}); try again when it is done, "
        "or pass --wait-for-idle to queue behind it"
    )


def _lock_dir() -> Path:
    base = os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
    return Path(base) / f"heatgen-{os.getuid()}" / "locks"


@contextmanager
def stack_lock(
    stack: Stack, *, wait: bool, timeout: float, report: Reporter, clock: Clock | None = None
) -> Iterator[None]:
    """Hold this machine's lock on the stack while heatgen changes it and waits.

    Heat's convergence engine accepts a second update while one runs and lets the newest win,
    so two `heatgen scale` started together would both pass the busy check. The lock (an
    ``flock``, released by the kernel even on SIGKILL) makes the second one see the stack as
    busy, or, with ``wait``, queue behind the first. Across machines the check stays a race;
    :func:`_wait_resized` then notices that another update won.
    """
    clock = clock or Clock()
    directory = _lock_dir()
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    handle = os.open(directory / f"stack-{stack.id}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = clock.now() + timeout
        told = False
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not wait:
                    raise StackBusy(
                        f"stack {stack.name} is busy: another heatgen on this machine is "
                        "changing it; try again when it is done, or pass --wait-for-idle to "
                        "queue behind it"
                    ) from None
                if clock.now() >= deadline:
                    raise WaitTimeout(
                        f"another heatgen kept stack {stack.name} busy for {timeout:.0f} s"
                    ) from None
                if not told:
                    report.note(f"another heatgen is changing stack {stack.name}; waiting")
                    told = True
                clock.sleep(0.5)
        yield
    finally:
        os.close(handle)


# --------------------------------------------------------------------------- sandbox master


class SandboxMaster:
    """Plays the master's part in the sandbox, where no VM boots: signals the wait handle once.

    It acts when the wait condition starts waiting (its CREATE_IN_PROGRESS event, or its state
    when heatgen attaches to a create already running) and sends the same JSON the master's
    boot script sends with the handle's ``curl_cli``.
    """

    def __init__(self, cloud: Cloud, report: Reporter) -> None:
        self.cloud = cloud
        self.report = report
        self.pending = False
        self.signalled = False

    def __call__(self, stack_id: str, events: list[Event]) -> None:
        # Called on every poll: a signal that failed (transiently) is sent again on the next.
        if any(e.resource == WAIT_CONDITION and e.status == "CREATE_IN_PROGRESS" for e in events):
            self.pending = True
        if self.pending and not self.signalled:
            self.signal(stack_id)

    def attach(self, stack_id: str) -> None:
        """For a create already under way: signal if the wait condition is waiting now."""
        status = {r.name: r.status for r in self.cloud.resources(stack_id, nested_depth=0)}
        if status.get(WAIT_CONDITION) == "CREATE_IN_PROGRESS":
            self.pending = True
            self.signal(stack_id)

    def signal(self, stack_id: str) -> None:
        endpoint = self.cloud.resource_attribute(stack_id, WAIT_HANDLE, "endpoint")
        token = self.cloud.resource_attribute(stack_id, WAIT_HANDLE, "token")
        if not endpoint or not token:
            return
        self.cloud.signal_wait_handle(endpoint, token, sandbox_ready_signal())
        self.signalled = True
        self.report.note(
            "sandbox: no VM boots here, so heatgen sent the master's ready signal to the "
            "wait condition itself (the same JSON the master's boot script sends)"
        )


def sandbox_ready_signal() -> dict[str, str]:
    return {
        "status": "SUCCESS",
        "id": "master",
        "reason": "central manager ready (signalled by the heatgen sandbox)",
        "data": "sandbox",
    }


# --------------------------------------------------------------------------- plans


@dataclass(frozen=True)
class Plan:
    """Heat's own answer to "what would this change": resource names by kind.

    ``over_reported`` lists what Heat's preview called updated/replaced although the
    definition does not change (see :mod:`heatgen.plandiff`); they are shown as unchanged.
    """

    changes: Mapping[str, list[str]]
    over_reported: tuple[str, ...] = ()

    @property
    def has_changes(self) -> bool:
        return any(self.changes.get(kind) for kind in ("added", "updated", "replaced", "deleted"))

    @property
    def replaces_protected(self) -> list[str]:
        return sorted(set(self.changes.get("replaced", [])) & PROTECTED_RESOURCES)

    def lines(self) -> list[str]:
        lines = [
            f"{kind:>9}: {', '.join(sorted(self.changes.get(kind, []))) or '-'}"
            for kind in PLAN_KINDS
        ]
        if self.over_reported:
            lines.append(
                f"   (note): Heat's preview also lists {', '.join(self.over_reported)} as "
                "changed only because a preview cannot resolve references; their definitions "
                "are unchanged, so the update leaves them alone"
            )
        return lines

    def as_dict(self) -> dict[str, Any]:
        return {"changes": {k: sorted(self.changes.get(k, [])) for k in PLAN_KINDS},
                "over_reported": list(self.over_reported)}


def reconciled_plan(
    heat_changes: Mapping[str, list[str]], old: plandiff.Definition, new: plandiff.Definition
) -> Plan:
    """Heat's preview, with what it over-reports moved to unchanged."""
    changed = plandiff.changed_resources(old, new, heat_changes.get("replaced", []))
    changes, moved = plandiff.reconcile(heat_changes, changed)
    return Plan(changes, tuple(moved))


ENVIRONMENT_FILES = frozenset({
    stackfields.ENVIRONMENT, stackfields.SANDBOX_ENVIRONMENT, stackfields.OVERRIDES_ENVIRONMENT,
})


def same_definition(old: plandiff.Definition, new: plandiff.Definition) -> bool:
    """True when an update would leave Heat with exactly the definition it has.

    Environment files count through what they set (parameters and registry), not their text.
    """
    if dict(old.template) != dict(new.template):
        return False
    for name, value in new.parameters.items():
        if plandiff.normal(value) != plandiff.normal(old.parameters.get(name, object())):
            return False
    for name, text in new.files.items():
        if name not in ENVIRONMENT_FILES and old.files.get(name) != text:
            return False
    return all(old.registry.get(k) == v for k, v in new.registry.items())


# --------------------------------------------------------------------------- deploy


@dataclass(frozen=True)
class DeployOptions:
    dry_run: bool = False
    wait: bool = True
    timeout: float | None = None
    yes: bool = False
    wait_for_idle: bool = False
    play_master: bool = True  # sandbox only: send the master's ready signal


@dataclass(frozen=True)
class DeployResult:
    action: str  # created | updated | unchanged | planned | started
    stack: Stack | None
    plan: Plan | None = None
    elapsed: float = 0.0
    parameters_sent: Mapping[str, Any] = field(default_factory=dict)


def _extra_environments(cloud: Cloud) -> dict[str, str]:
    if not cloud.is_sandbox:
        return {}
    from heatgen.sandbox.settings import runs_telemetry

    # With `sandbox up --telemetry` the alarms are real: no OS::Aodh::* -> OS::Heat::None.
    name = "sandbox-telemetry.yaml" if runs_telemetry() else stackfields.SANDBOX_ENVIRONMENT
    return {name: stackfields.packaged_environment(name)}


def _deadline(site: Site, timeout: float | None) -> float:
    return timeout if timeout is not None else float(site.wait_timeout + WAIT_MARGIN)


def _send_looking_first(
    what: str, send: Callable[[], str], look: Callable[[], str | None], report: Reporter,
    clock: Clock,
) -> str:
    """Send a write; after a transient failure (its outcome unknown), look before sending again.

    ``look`` returns what ``send`` would have (a stack id) if the write did land, else None.
    """
    for attempt in range(1, WRITE_ATTEMPTS + 1):
        try:
            return send()
        except CloudError as error:
            if not getattr(error, "transient", False) or attempt == WRITE_ATTEMPTS:
                raise
            report.note(f"{what} failed ({error}); checking whether Heat did it")
            clock.sleep(min(2.0**attempt, 10.0))
            landed = look()
            if landed is not None:
                return landed
    raise AssertionError("unreachable")


def _create(
    cloud: Cloud, fields: Mapping[str, Any], name: str, report: Reporter, clock: Clock
) -> str:
    """Create the stack. A create is never issued while a stack of that name exists, so one
    grid is never made twice."""

    def look() -> str | None:
        found = cloud.find_stack(name)
        if found is None:
            return None
        report.note(f"Heat did make stack {name} ({found.status}); attaching to it")
        return found.id

    return _send_looking_first("create", lambda: cloud.create_stack(fields), look, report, clock)


def _started(cloud: Cloud, stack: Stack, action: str, report: Reporter,
             done: tuple[str, ...] = ()) -> Callable[[], str | None]:
    def look() -> str | None:
        current = cloud.get_stack(stack.id)
        if (current is None and action == "DELETE") or (
            current is not None and current.status in (f"{action}_IN_PROGRESS", *done)
        ):
            report.note(f"Heat did start the {action.lower()} of {stack.name}; attaching to it")
            return stack.id
        return None

    return look


def _update(
    cloud: Cloud, stack: Stack, fields: Mapping[str, Any], patch: bool, report: Reporter,
    clock: Clock,
) -> None:
    """Send an update. Sending the same update twice is harmless (it converges to the same
    definition), but an update that did land is attached to rather than queued behind."""

    def send() -> str:
        cloud.update_stack(stack.id, fields, patch=patch)
        return stack.id

    _send_looking_first("update", send, _started(cloud, stack, "UPDATE", report), report, clock)


def _delete(cloud: Cloud, stack: Stack, report: Reporter, clock: Clock) -> None:
    """Send the delete. A second DELETE of a stack being deleted makes Heat cancel the running
    delete (the stack turns DELETE_FAILED, "Stack DELETE cancelled") and start another, so a
    delete that did land is attached to instead."""

    def send() -> str:
        cloud.delete_stack(stack.id)
        return stack.id

    look = _started(cloud, stack, "DELETE", report, done=("DELETE_COMPLETE",))
    _send_looking_first("delete", send, look, report, clock)


def desired_for_update(site: Site, stack: Stack) -> int:
    """The worker count a re-deploy sends: the config's if it changed, else the live size.

    Re-deploying an unchanged config must not undo what the alarms or `heatgen scale` did.
    The config's value at the last deploy is kept in the stack as ``site_worker_desired``.
    """
    deployed = _int(stack.parameters.get("site_worker_desired"))
    current = _int(stack.outputs.get("worker_count"))
    if deployed is None or deployed != site.workers.desired:
        if current is not None and site.workers.desired < current:
            # Heat would remove the oldest workers, busy or not: shrinking is `heatgen scale`'s.
            return max(site.workers.min, min(site.workers.max, current))
        return site.workers.desired
    if current is None:
        return site.workers.desired
    return max(site.workers.min, min(site.workers.max, current))


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def deploy(
    cloud: Cloud,
    grid: RenderedGrid,
    options: DeployOptions,
    report: Reporter,
    confirm: Callable[[str], bool] = lambda question: False,
    clock: Clock | None = None,
) -> DeployResult:
    """Create the grid's stack, or converge an existing one to the config."""
    clock = clock or Clock()
    started = clock.now()
    site = grid.site
    timeout = _deadline(site, options.timeout)
    extra = _extra_environments(cloud)
    fields = stackfields.create_fields(grid, extra_environments=extra)
    master = SandboxMaster(cloud, report) if cloud.is_sandbox and options.play_master else None

    existing = cloud.find_stack(site.site)
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
        stack_id = _create(cloud, fields, site.site, report, clock)
        report.note(f"creating stack {site.site} ({stack_id})")
        if not options.wait:
            return DeployResult("started", cloud.get_stack(stack_id), elapsed=clock.now() - started)
        final = wait_for_stack(
            cloud, stack_id, "CREATE", timeout=timeout, marker=None, report=report,
            on_events=master, clock=clock,
        )
        return DeployResult("created", final, elapsed=clock.now() - started)

    desired = desired_for_update(site, existing)
    if desired > site.workers.desired and _int(existing.outputs.get("worker_count")) == desired \
            and _int(existing.parameters.get("site_worker_desired")) != site.workers.desired:
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
    plan = reconciled_plan(cloud.preview_update(existing.id, update, patch=False), deployed, wanted)
    if options.dry_run:
        return DeployResult("planned", existing, plan=plan, elapsed=clock.now() - started,
                            parameters_sent=override)
    if same_definition(deployed, wanted) and not existing.failed:
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
    _update(cloud, existing, update, False, report, clock)
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


# --------------------------------------------------------------------------- scale


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
    scale_in: scaledown.ScaleInPlan | None = None

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


def require_stack(cloud: Cloud, site: Site) -> Stack:
    stack = cloud.find_stack(site.site)
    if stack is None:
        raise NotDeployed(f"stack {site.site} does not exist in this cloud; run `heatgen deploy`")
    return stack


def scale(
    cloud: Cloud,
    site: Site,
    request: ScaleRequest,
    report: Reporter,
    clock: Clock | None = None,
    pool_for: Callable[[Stack], PoolQuery | None] | None = None,
    scale_in_options: scaledown.ScaleInOptions | None = None,
) -> ScaleResult:
    """Change the group's size with a PATCH update of only the capacity parameters.

    Shrinking removes only idle workers: ``pool_for(stack)`` gives the pool to ask (see
    :mod:`heatgen.scaledown`). Without a pool a shrink needs ``force``.
    """
    clock = clock or Clock()
    started = clock.now()
    params = scale_parameters(site, request)
    stack = require_stack(cloud, site)
    current = _int(stack.outputs.get("worker_count"))
    if current is not None and request.workers < current:
        pool = pool_for(stack) if pool_for is not None else None
        if pool is not None:
            with stack_lock(stack, wait=request.wait_for_idle, timeout=request.timeout,
                            report=report, clock=clock):
                return _scale_in(cloud, stack, request, params, pool, report, clock, started,
                                 scale_in_options or scaledown.ScaleInOptions())
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
        wanted = plandiff.Definition(
            deployed.template, {**deployed.parameters, **params}, deployed.files,
            deployed.registry,
        )
        plan = reconciled_plan(cloud.preview_update(stack.id, fields, patch=True), deployed, wanted)
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
    _update(cloud, stack, stackfields.patch_fields(params), True, report, clock)
    return _wait_resized(cloud, stack, request, params, report, clock, started, marker)


def _wait_resized(
    cloud: Cloud, stack: Stack, request: ScaleRequest, params: dict[str, int], report: Reporter,
    clock: Clock, started: float, marker: str | None,
    scale_in: scaledown.ScaleInPlan | None = None,
) -> ScaleResult:
    report.note(f"resizing {stack.name}: " + ", ".join(f"{k}={v}" for k, v in params.items()))
    if not request.wait:
        return ScaleResult("started", stack, params, elapsed=clock.now() - started,
                           scale_in=scale_in)
    final = wait_for_stack(
        cloud, stack.id, "UPDATE", timeout=request.timeout, marker=marker, report=report,
        clock=clock,
    )
    won = _int((final.parameters if final else {}).get("worker_desired"))
    if won is not None and won != params["worker_desired"]:
        raise StackBusy(
            f"another update of stack {stack.name} ran at the same time and won: the group "
            f"is set to {won} workers, not {params['worker_desired']}; run the command again "
            "to apply this one"
        )
    return ScaleResult("scaled", final, params, elapsed=clock.now() - started, scale_in=scale_in)


def _scale_in(
    cloud: Cloud, stack: Stack, request: ScaleRequest, params: dict[str, int], pool: PoolQuery,
    report: Reporter, clock: Clock, started: float, options: scaledown.ScaleInOptions,
) -> ScaleResult:
    """Mark the chosen idle members, re-check the pool, unmark the claimed, PATCH the size."""
    options.force, options.drain = request.force, request.drain
    options.drain_timeout = request.drain_timeout
    plan = scaledown.choose(cloud, stack, pool, request.workers, options, report.note)
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
    marked: list[str] = []
    try:
        scaledown.mark(cloud, plan, plan.removed, True)
        marked.extend(plan.removed)
        plan = scaledown.recheck(pool, plan, options)
        claimed = [name for name in plan.choice.dropped if name in marked]
        if claimed:
            report.note(f"{', '.join(claimed)} got a job since the choice; keeping them")
            scaledown.mark(cloud, plan, claimed, False)
            for name in claimed:
                marked.remove(name)
        params = {**params, "worker_desired": plan.target_size}
        if not plan.removed:
            return ScaleResult("unchanged", stack, params, elapsed=clock.now() - started,
                               scale_in=plan)
        _update(cloud, stack, stackfields.patch_fields(params), True, report, clock)
    except BaseException:
        _unmark_quietly(cloud, plan, marked)
        raise
    return _wait_resized(cloud, stack, request, params, report, clock, started, marker, plan)


def _unmark_quietly(cloud: Cloud, plan: scaledown.ScaleInPlan, names: list[str]) -> None:
    """Take the marks back after a failure, so the next update does not replace them."""
    for name in names:
        try:
            scaledown.mark(cloud, plan, [name], False)
        except HeatgenError:
            continue


# --------------------------------------------------------------------------- inspect, delete


def redact_url(url: Any) -> Any:
    """Keep scheme, host and path of a URL; drop its query (signatures) and credentials."""
    if not isinstance(url, str) or "://" not in url:
        return url
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    query = "<redacted>" if parts.query else ""
    return urlunsplit((parts.scheme, host, parts.path, query, ""))


def shown_outputs(stack: Stack, show_secrets: bool) -> dict[str, Any]:
    out = dict(sorted(stack.outputs.items()))
    if not show_secrets:
        for key in SECRET_OUTPUTS & set(out):
            out[key] = redact_url(out[key])
    return out


@dataclass(frozen=True)
class Member:
    name: str
    status: str
    server_id: str
    reason: str = ""


@dataclass(frozen=True)
class StatusReport:
    stack: Stack
    members: list[Member]
    outputs: Mapping[str, Any]
    events: list[Event]
    # name -> Aodh state (alarm/ok/insufficient data); "unavailable: ..." without Aodh.
    alarms: Mapping[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "stack": {"name": self.stack.name, "id": self.stack.id,
                      "status": self.stack.status, "reason": self.stack.reason},
            "workers": {
                "count": len(self.members),
                "members": [m.__dict__ for m in self.members],
            },
            "master": {
                "floating_ip": self.outputs.get("master_floating_ip"),
                "private_ip": self.outputs.get("master_private_ip"),
            },
            "outputs": dict(self.outputs),
            "events": [e.__dict__ for e in self.events],
            "alarms": dict(self.alarms),
        }


def group_members(cloud: Cloud, stack: Stack) -> list[Member]:
    """The worker group's members with their states and Nova ids, oldest first."""
    return [
        Member(m.name, m.status, m.server_id or "", m.reason)
        for m in scaledown.group_members(cloud, stack)
    ]


def status(cloud: Cloud, site: Site, show_secrets: bool = False, last_events: int = 5) -> StatusReport:
    stack = require_stack(cloud, site)
    events = (cloud.events(stack.id, after=None) or [])[-last_events:]
    return StatusReport(stack, group_members(cloud, stack), shown_outputs(stack, show_secrets),
                        events, _alarm_states(cloud, stack))


def _alarm_states(cloud: Cloud, stack: Stack) -> dict[str, str]:
    """Alarm states are extra information: a cloud without Aodh must not fail `status`."""
    try:
        return {alarm.name: alarm.state for alarm in cloud.alarms(stack.id)}
    except Exception as error:  # noqa: BLE001 - aodhclient raises its own exception types
        return {"*": f"unavailable: {type(error).__name__}"}


def delete(
    cloud: Cloud, site: Site, *, timeout: float, report: Reporter, wait: bool = True,
    clock: Clock | None = None,
) -> Stack | None:
    stack = require_stack(cloud, site)
    if stack.in_progress and stack.action != "DELETE":
        raise StackBusy(f"stack {stack.name} is busy ({stack.status}); delete it when it is done")
    clock = clock or Clock()
    marker = latest_event_id(cloud, stack.id)
    if stack.status == "DELETE_IN_PROGRESS":
        # Another DELETE would make Heat cancel this one and start over: wait for it instead.
        report.note(f"stack {stack.name} is already being deleted; waiting for it")
    else:
        _delete(cloud, stack, report, clock)
    report.note(f"deleting stack {site.site}")
    if not wait:
        return cloud.get_stack(stack.id)
    return wait_for_stack(cloud, stack.id, "DELETE", timeout=timeout, marker=marker,
                          report=report, clock=clock)
