"""Drive one stack through create -> PATCH update -> delete against a Heat, timing each step.

Shared by the sandbox integration tests and ``bench/soak_sandbox.py``; the template is
expected to contain the master's ``OS::Heat::WaitConditionHandle`` (signalled here through
:mod:`heatgen.sandbox.master`) and a ``worker_count`` parameter.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from heatgen.errors import StackFailed, WaitTimeout
from heatgen.sandbox.master import signal_grid


def wait_for_stack(
    heat: Any, stack_id: str, action: str, *, timeout: float = 300.0, poll: float = 0.5
) -> Any:
    """Poll until ``<action>_COMPLETE``; StackFailed on ``_FAILED``, WaitTimeout at the deadline.

    For ``DELETE`` a stack that is no longer found counts as complete (returns None).
    """
    from heatclient import exc

    deadline = time.monotonic() + timeout
    while True:
        try:
            stack = heat.stacks.get(stack_id)
        except exc.HTTPNotFound:
            if action == "DELETE":
                return None
            raise
        status = str(stack.stack_status)
        if status == f"{action}_COMPLETE":
            return stack
        if status.endswith("_FAILED"):
            raise StackFailed(f"stack {stack.stack_name}: {status}: {stack.stack_status_reason}")
        if time.monotonic() > deadline:
            raise WaitTimeout(f"stack {stack.stack_name} still {status} after {timeout:.0f} s")
        time.sleep(poll)


def outputs(stack: Any) -> dict[str, Any]:
    """Stack outputs as ``{key: value}``."""
    return {o["output_key"]: o.get("output_value") for o in (stack.outputs or [])}


@dataclass
class CycleResult:
    """Timings in seconds of one create/update/delete cycle, and what the stack reported."""

    name: str
    create_s: float = 0.0
    update_s: float = 0.0
    delete_s: float = 0.0
    outputs_after_create: dict[str, Any] = field(default_factory=dict)
    outputs_after_update: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def run_cycle(
    heat: Any,
    name: str,
    template: Mapping[str, Any],
    environment: Mapping[str, Any],
    *,
    files: Mapping[str, str] | None = None,
    create_parameters: Mapping[str, Any] | None = None,
    update_parameters: Mapping[str, Any] | None = None,
    session: Any = None,
    master_data: str = "10.0.0.10",
    timeout: float = 300.0,
    delete: bool = True,
) -> CycleResult:
    """Create (signalling the master's wait condition), PATCH-update, then delete a stack.

    Never raises for a stack failure: the error text is in the result, and the stack is
    deleted anyway when ``delete`` is set.
    """
    result = CycleResult(name)
    stack_id: str | None = None
    try:
        started = time.monotonic()
        created = heat.stacks.create(
            stack_name=name, template=dict(template), environment=dict(environment),
            files=dict(files or {}), parameters=dict(create_parameters or {}),
            timeout_mins=max(1, int(timeout // 60)),
        )
        stack_id = created["stack"]["id"]
        signal_grid(heat, stack_id, session=session, data=master_data, timeout=timeout)
        stack = wait_for_stack(heat, stack_id, "CREATE", timeout=timeout)
        result.create_s = time.monotonic() - started
        result.outputs_after_create = outputs(stack)

        started = time.monotonic()
        heat.stacks.update(stack_id, existing=True, parameters=dict(update_parameters or {}))
        stack = wait_for_stack(heat, stack_id, "UPDATE", timeout=timeout)
        result.update_s = time.monotonic() - started
        result.outputs_after_update = outputs(stack)
    except Exception as error:  # noqa: BLE001 - reported in the result
        result.error = f"{type(error).__name__}: {error}"
    if delete and stack_id is not None:
        try:
            started = time.monotonic()
            heat.stacks.delete(stack_id)
            wait_for_stack(heat, stack_id, "DELETE", timeout=timeout)
            result.delete_s = time.monotonic() - started
        except Exception as error:  # noqa: BLE001
            result.error = (result.error + "; " if result.error else "") + (
                f"delete: {type(error).__name__}: {error}"
            )
    return result
