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
STATUS_EVERY = 10.0  # seconds without a new event between safety-net reads of the stack
# In units of POLL_INTERVAL (1 s). `openstack stack ... --wait` lists the stack's own events
# every 5 s by name (2 requests: the lookup and its redirect) and reads the stack after two
# polls without one (2 more): 4 to 6 requests per 10 s through the long middle of an
# operation. A heatgen poll is one request; it may spend one per BUDGET intervals (5 per
# 10 s), BURST at once after a quiet stretch saved them.
SLOWEST = 5.0  # the longest pause while nothing happens
BACKOFF = 1.5  # each poll that brought nothing waits this much longer than the last
BUDGET = 2.0
BURST = 5.0
RESERVE = 2.0  # kept back for polls right after a sign that the end is near
# What a wait starts with: one poll at once and the reserve. A short operation (tens of
# seconds) would otherwise spend a burst it never saved, more than the CLI's polling of it.
START = 1.0 + RESERVE
QUIET_DELETE = 6  # polls of a delete gone quiet that still come soon: it is nearly gone
# Seconds between listings of the tree's events (the nested stacks' progress lines); the
# polls between list only the stack's own events, which show its end as soon.
TREE_EVERY = 5.0
# How deep those listings go: the groups' stacks, whose events are each member's own (created,
# updated, deleted). A member's stack (its server and port) is one level further, and heat-api
# loads every member's stack of a listing that deep: at 450 members, 451 stacks per listing,
# in the process that runs the update. A wait lists that deep only before it calls a stall.
TREE_DEPTH = 1
DEEP = 2


def latest_event(cloud: Cloud, stack_id: str) -> Event | None:
    """The stack's newest event (the groups' stacks included): the marker a wait starts from.

    One request for one event, however long the stack's history. heat-api pages after a
    marker by its creation time and row id, whichever listing it came from: the wait's
    listings of any depth go on from it."""
    newest = cloud.newest_events(stack_id, 1, depth=TREE_DEPTH) or []
    return newest[0] if newest else None


class Pace:
    """How long a wait pauses before its next poll.

    A poll that brought events is followed by one after ``POLL_INTERVAL`` (an operation that
    moves may end any moment); each poll that brought nothing waits ``BACKOFF`` times longer,
    up to ``SLOWEST`` intervals. Requests come out of a budget that fills at one per ``BUDGET``
    intervals, starts at ``START`` and holds at most ``2 * BURST``: once it is spent, polls
    come every ``BUDGET`` intervals (the end is noticed about a second late on average, two at
    most), and a wait costs no more requests than the CLI's over the same operation. ``RESERVE``
    of it is kept for an ``urgent`` poll, one that follows a sign of the end (a top-level
    resource done, a delete gone quiet), so that one comes after ``POLL_INTERVAL`` anyway.
    """

    def __init__(self, now: float, unit: float | None = None) -> None:
        self.unit = POLL_INTERVAL if unit is None else unit
        self.interval = self.unit
        self.tokens = START
        self.updated = now

    def _fill(self, now: float) -> None:
        self.tokens = min(2 * BURST, self.tokens + (now - self.updated) / (BUDGET * self.unit))
        self.updated = now

    def spend(self, requests: int, now: float) -> None:
        self._fill(now)
        self.tokens -= requests

    def delay(self, moved: bool, now: float, urgent: bool = False) -> float:
        """Seconds until the next poll, after a poll that brought events (``moved``) or not."""
        self._fill(now)
        self.interval = self.unit if moved or urgent else min(SLOWEST * self.unit,
                                                              self.interval * BACKOFF)
        needed = 1.0 if urgent else 1.0 + RESERVE
        owed = max(0.0, needed - self.tokens) * BUDGET * self.unit
        return max(self.interval, owed)


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
    outputs: bool = True,
) -> Stack | None:
    """Wait until ``action`` on the stack ends; return the final stack (None once deleted).

    One request per poll, paced by :class:`Pace`: the events after the marker, which is what
    tells whether anything changed. Every ``TREE_EVERY`` seconds that is the events of the
    tree down to ``TREE_DEPTH`` (the groups' stacks: each member's own events, the progress
    lines); on the polls between, only the stack's own events (a query over the top stack
    alone, however big the grid), which show its end, a top-level resource done and the
    master's wait condition as soon. A poll that would call a stall lists ``DEEP`` (the
    members' servers and ports too), so that work inside a member counts as progress. When
    the stack's own final event comes, the rest of the tree's events are listed at once, so
    that it is reported last. The stack's status is read (its row alone,
    :meth:`Cloud.stack_status`) when its final event says it failed, and after
    ``STATUS_EVERY`` seconds without a new event as a safety net (events can be pruned); the
    stack itself once, when the operation has completed: with its ``outputs`` resolved (seconds
    for a big grid: Heat reads every member) only if the caller shows them, else its status and
    parameters. A delete lists the tree on every poll. A deleted stack has no events left to
    list: a delete's poll that brings nothing reads the status too, and of the polls of a
    delete gone quiet, two in three only read it.

    A transient failure (HTTP 5xx, a lost connection) of a poll, after the client's own retries,
    is noted and the wait goes on until the deadline: the operation runs in Heat either way.
    ``on_events`` is called on every successful listing, with the new events (maybe none);
    once ``until()`` is true the wait ends early with the stack as it is. ``stall`` ends a
    wait that sees no new event for too long with :class:`StackStalled`.
    """
    clock = clock or Clock()
    start = clock.now()
    deadline = start + timeout
    pace = Pace(start)
    seen = marker.id if marker is not None else None  # the tree's listing is after this
    seen_own = seen  # the stack's own listing is after this
    reported: set[str] = set()  # the stack's own events reported since ``seen``
    tree_at = start - TREE_EVERY  # when the tree's events were listed last
    moving = True  # the tree's last listing brought events: the operation moves
    last_event = marker
    progressed = start
    last_status = start
    finals = (f"{action}_COMPLETE", f"{action}_FAILED")
    stack: Stack | None = None
    cancelled_at: float | None = None
    due = False  # read the stack on this poll
    whole = False  # read the stack itself (parameters, outputs if asked), not only its status
    first = True  # the operation may have ended before the marker was read
    idle = 0  # polls since the last new event
    while True:
        moved = urgent = False
        # A poll that skips the events cannot tell a stall: a wait told to notice one lists
        # them every poll.
        read_only = action == "DELETE" and idle % 3 != 0 \
            and (stall is None or stall.after <= 0)
        # The tree's events are what shows progress: a poll that may tell a stall lists them,
        # down to the members' servers.
        deep = stall is not None and stall.after > 0 \
            and clock.now() - progressed >= stall.allowed(last_event)
        tree = action == "DELETE" or first or clock.now() - tree_at >= TREE_EVERY or deep
        try:
            events: list[Event] | None = []
            if not read_only:
                if not tree:
                    pace.spend(1, clock.now())
                    listed = cloud.events(stack_id, after=seen_own, depth=0)
                    # The stack's own final event: the tree's last events come first.
                    tree = listed is not None and any(
                        e.physical_id == stack_id and e.status in finals for e in listed)
                    if listed and not tree:
                        seen_own = listed[-1].id
                        reported.update(e.id for e in listed)
                        events = listed
                    elif listed is None:
                        events = None
                if tree:
                    pace.spend(1, clock.now())
                    listed = cloud.events(stack_id, after=seen,
                                          depth=DEEP if deep else TREE_DEPTH)
                    tree_at = clock.now()
                    if listed:
                        seen = seen_own = listed[-1].id
                    events = None if listed is None else [
                        e for e in listed if e.id not in reported]
                    reported.clear()
                    moving = bool(events)
            for event in events or []:
                report.event(event)
                last_event = event
                progressed = clock.now()
                moved = True
                # A top-level resource done: the stack's own final event may be next.
                urgent = urgent or (event.physical_id != stack_id and event.stack in (
                    "", stack.name if stack else "") and not event.status.endswith(
                    "_IN_PROGRESS"))
            idle = 0 if moved else idle + 1
            if not tree:
                moved = moved or moving  # paced as the tree's last listing found it
            urgent = urgent or (action == "DELETE" and 0 < idle <= QUIET_DELETE)
            if on_events is not None:
                on_events(stack_id, events or [])
            stalled = tree and stall is not None and stall.after > 0 \
                and clock.now() - progressed >= stall.allowed(last_event)
            # The stack's own event that it completed: read the stack itself at once.
            whole = whole or (action != "DELETE" and any(
                e.physical_id == stack_id and e.status == finals[0] for e in events or []))
            due = due or whole or events is None or (action == "DELETE" and not moved) \
                or (first and not moved) \
                or min(clock.now() - last_status, clock.now() - progressed) >= STATUS_EVERY \
                or any(e.physical_id == stack_id and e.status in finals for e in events or []) \
                or stalled or (until is not None and until())
            first = False
            if due:
                last_status = clock.now()
                pace.spend(1, clock.now())
                stack = cloud.get_stack(stack_id, outputs=outputs) if whole \
                    else cloud.stack_status(stack_id)
                if stack is None or stack.status == "DELETE_COMPLETE":
                    if action == "DELETE":
                        return None
                    raise StackFailed(f"stack {stack_id} disappeared while waiting for {action}")
                if stack.status == f"{action}_COMPLETE":
                    if not whole:
                        whole = True  # a read of it that fails is made on the next poll
                        pace.spend(1, clock.now())
                        stack = cloud.get_stack(stack_id, outputs=outputs)
                        if stack is None:
                            raise StackFailed(
                                f"stack {stack_id} disappeared while waiting for {action}")
                    return stack
                whole = False
                due = False  # only now: a read that failed is made again on the next poll
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
        now = clock.now()
        if now >= deadline:
            raise WaitTimeout(
                f"stack {stack.name if stack else stack_id} is still "
                f"{stack.status if stack else action + '_IN_PROGRESS'} after {timeout:.0f} s; "
                f"it was left alone: {hint}"
            )
        pause = min(pace.delay(moved, now, urgent), deadline - now)
        if stall is not None and stall.after > 0:
            stall_at = progressed + stall.allowed(last_event)
            if stall_at > now:
                pause = min(pause, stall_at - now)  # a stall is told when it is one
        clock.sleep(pause)
