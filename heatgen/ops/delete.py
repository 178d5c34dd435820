"""``heatgen delete``: delete the grid's stack, never sending a second DELETE."""

from __future__ import annotations

from heatgen.cloud.interface import Cloud, Stack
from heatgen.config import Site
from heatgen.errors import StackBusy
from heatgen.ops import writes
from heatgen.ops.inspect import require_stack
from heatgen.ops.report import Clock, Reporter
from heatgen.ops.wait import latest_event, wait_for_stack


def delete(
    cloud: Cloud, site: Site, *, timeout: float, report: Reporter, wait: bool = True,
    clock: Clock | None = None,
) -> Stack | None:
    stack = require_stack(cloud, site, outputs=False)  # its status is all a delete needs
    if stack.in_progress and stack.action != "DELETE":
        raise StackBusy(f"stack {stack.name} is busy ({stack.status}); delete it when it is done")
    clock = clock or Clock()
    marker = latest_event(cloud, stack.id)
    if stack.status == "DELETE_IN_PROGRESS":
        # Another DELETE would make Heat cancel this one and start over: wait for it instead.
        report.note(f"stack {stack.name} is already being deleted; waiting for it")
    else:
        writes.delete(cloud, stack, report, clock)
    report.note(f"deleting stack {site.site}")
    if not wait:
        return cloud.get_stack(stack.id, outputs=False)
    return wait_for_stack(cloud, stack.id, "DELETE", timeout=timeout, marker=marker,
                          report=report, clock=clock)
