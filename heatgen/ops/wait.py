"""Waiting on Heat: the newest event as a marker, only new events streamed, a deadline, and a
named outcome: the final :class:`Stack`, :class:`StackFailed` (with the failed resources,
nested ones included) or :class:`WaitTimeout`.
"""

from __future__ import annotations

from collections.abc import Callable

from heatgen.cloud.interface import Cloud, Event, Resource, Stack
from heatgen.errors import CloudError, StackFailed, WaitTimeout
from heatgen.ops.report import POLL_INTERVAL, Clock, Reporter

DELETE_CANCELLED = "Stack DELETE cancelled"  # Heat's reason when a DELETE restarts
CANCEL_GRACE = 15.0  # seconds a cancelled delete may take to show the next one
STATUS_EVERY = 10.0  # seconds between safety-net reads of the stack while waiting


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
            if not error.transient:
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
