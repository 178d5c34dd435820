"""Writes that look before they retry: a create, update or delete whose outcome is unknown
(its answer was lost) is looked for before it is sent again, so no grid is made twice and no
running delete is cancelled by a second one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from heatgen.cloud.interface import Cloud, Stack
from heatgen.errors import CloudError
from heatgen.ops.report import Clock, Reporter

# Tries of a create, update or delete whose failure was transient (each looks before retrying).
WRITE_ATTEMPTS = 8


def send_looking_first(
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
            if not error.transient or attempt == WRITE_ATTEMPTS:
                raise
            report.note(f"{what} failed ({error}); checking whether Heat did it")
            clock.sleep(min(2.0**attempt, 10.0))
            landed = look()
            if landed is not None:
                return landed
    raise AssertionError("unreachable")


def create(
    cloud: Cloud, fields: Mapping[str, Any], name: str, report: Reporter, clock: Clock
) -> str:
    """Create the stack. A create is never issued while a stack of that name exists, so one
    grid is never made twice."""

    def look() -> str | None:
        found = cloud.get_stack(name)
        if found is None:
            return None
        report.note(f"Heat did make stack {name} ({found.status}); attaching to it")
        return found.id

    return send_looking_first("create", lambda: cloud.create_stack(fields), look, report, clock)


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


def update(
    cloud: Cloud, stack: Stack, fields: Mapping[str, Any], patch: bool, report: Reporter,
    clock: Clock,
) -> None:
    """Send an update. Sending the same update twice is harmless (it converges to the same
    definition), but an update that did land is attached to rather than queued behind."""

    def send() -> str:
        cloud.update_stack(stack.id, fields, patch=patch)
        return stack.id

    send_looking_first("update", send, _started(cloud, stack, "UPDATE", report), report, clock)


def delete(cloud: Cloud, stack: Stack, report: Reporter, clock: Clock) -> None:
    """Send the delete. A second DELETE of a stack being deleted makes Heat cancel the running
    delete (the stack turns DELETE_FAILED, "Stack DELETE cancelled") and start another, so a
    delete that did land is attached to instead."""

    def send() -> str:
        cloud.delete_stack(stack.id)
        return stack.id

    look = _started(cloud, stack, "DELETE", report, done=("DELETE_COMPLETE",))
    send_looking_first("delete", send, look, report, clock)
