"""Waiting on Heat: the newest event as a marker, only new events streamed, a deadline, and a
named outcome: the final :class:`Stack`, :class:`StackFailed` (with the failed resources,
nested ones included) or :class:`WaitTimeout`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from heatgen.cloud.interface import Cloud, Event, Resource, Stack
from heatgen.errors import CloudError, StackFailed, StackStalled, WaitTimeout
from heatgen.ops.report import POLL_INTERVAL, Clock, Reporter

DELETE_CANCELLED = "Stack DELETE cancelled"  # Heat's reason when a DELETE restarts
CANCEL_GRACE = 15.0  # seconds a cancelled delete may take to show the next one
STATUS_EVERY = 10.0  # seconds between safety-net reads of the stack while waiting


def latest_event(cloud: Cloud, stack_id: str) -> Event | None:
    """The stack's newest event (nested stacks included): the marker a wait starts from."""
    events = cloud.events(stack_id, after=None) or []
    return events[-1] if events else None


@dataclass(frozen=True)
class Stall:
    """When a wait that sees no new event gives up, and what to tell the user.

    ``after`` seconds without a new event is a stall, except while the newest event says a
    resource of ``patient`` started (its own timeout in seconds, such as the master's wait
    condition): Heat itself ends those, if its engine is alive.
    """

    after: float
    patient: Mapping[str, float] = field(default_factory=dict)
    resume: str = "run the same command with --resume"

    def allowed(self, last: Event | None) -> float:
        if last is not None and last.status.endswith("_IN_PROGRESS"):
            return max(self.after, self.patient.get(last.resource, 0.0))
        return self.after


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
    marker: Event | None,
    report: Reporter,
    on_events: Callable[[str, list[Event]], None] | None = None,
    clock: Clock | None = None,
    stall: Stall | None = None,
    until: Callable[[], bool] | None = None,
    hint: str = "run `heatgen status` to look, or the same command again to wait",
) -> Stack | None:
    """Wait until ``action`` on the stack ends; return the final stack (None once deleted).

    One request per poll: the events after ``marker``. The stack itself is read when its own
    final event arrives, and every ``STATUS_EVERY`` seconds as a safety net (events can be
    pruned, and a deleted stack may have no events left to list).

    A transient failure (HTTP 5xx, a lost connection) of a poll, after the client's own retries,
    is noted and the wait goes on until the deadline: the operation runs in Heat either way.
    ``on_events`` is called on every successful poll, with the new events (maybe none);
    once ``until()`` is true the wait ends early with the stack as it is. ``stall`` ends a
    wait that sees no new event for too long with :class:`StackStalled`.
    """
    clock = clock or Clock()
    start = clock.now()
    deadline = start + timeout
    seen = marker.id if marker is not None else None
    last_event = marker
    progressed = start
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
                last_event = event
                progressed = clock.now()
            if on_events is not None:
                on_events(stack_id, events or [])
            stalled = stall is not None and stall.after > 0 \
                and clock.now() - progressed >= stall.allowed(last_event)
            # A deleted stack's own final event is not listed: a delete reads the stack each poll.
            due = due or events is None or action == "DELETE" \
                or clock.now() - last_status >= STATUS_EVERY \
                or any(e.physical_id == stack_id and e.status in finals for e in events) \
                or stalled or (until is not None and until())
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
                if until is not None and until():
                    return stack
                if stalled and stall is not None and stack.in_progress:
                    quiet = clock.now() - progressed
                    since = f" since {last_event.resource} {last_event.status}" \
                        if last_event is not None else ""
                    raise StackStalled(
                        f"stack {stack.name} is {stack.status} but has shown no progress for "
                        f"{quiet:.0f} s (no new event{since}). Likely cause: the Heat engine "
                        "that ran it stopped (restarted or crashed); Heat's convergence engine "
                        "does not pick up a dead engine's work by itself. The stack was left "
                        f"alone: {stall.resume} to send an update with the same definition, "
                        "which a running engine takes over"
                    )
        except CloudError as error:
            if not error.transient:
                raise
            report.note(f"{error}; still waiting (the operation goes on in Heat)")
        if clock.now() >= deadline:
            raise WaitTimeout(
                f"stack {stack.name if stack else stack_id} is still "
                f"{stack.status if stack else action + '_IN_PROGRESS'} after {timeout:.0f} s; "
                f"it was left alone: {hint}"
            )
        clock.sleep(POLL_INTERVAL)
