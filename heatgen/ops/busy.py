"""One operation at a time: refuse or queue behind a busy stack, and this machine's lock."""

from __future__ import annotations

import fcntl
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from heatgen.cloud.interface import Cloud, Stack
from heatgen.errors import NotDeployed, StackBusy, WaitTimeout
from heatgen.ops.report import POLL_INTERVAL, Clock, Reporter


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
    # Read its status again right before acting: the stack seen at the start may be stale by
    # now. The status alone: the outputs resolved again would cost seconds on a big grid.
    fresh = cloud.stack_status(stack.id)
    if fresh is not None:
        stack = replace(stack, status=fresh.status, reason=fresh.reason)
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
