"""``heatgen pool``: the HTCondor pool as heatgen sees it, next to the worker group.

Each group member with its server id and what the pool says of its machine (in the pool or
not, its slots and their states, idle since when, draining); the members the pool does not
list; the machines of the pool that are no member. The same matching scale-in uses
(:mod:`heatgen.scalein.choice`): by ``HeatGenServerId``, else by private address.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from heatgen.cloud.group import group_members
from heatgen.cloud.interface import Cloud, Stack
from heatgen.config import Site
from heatgen.errors import UsageError
from heatgen.ops.inspect import require_stack
from heatgen.pool import Machine, PoolQuery
from heatgen.scalein.choice import assess_members


@dataclass(frozen=True)
class SlotView:
    name: str
    state: str
    cpus: int | None
    memory_mb: int | None
    kind: str  # partitionable | static | dynamic


@dataclass(frozen=True)
class MemberView:
    name: str
    server_id: str | None
    heat_status: str
    in_pool: bool
    machines: tuple[str, ...]
    condition: str  # "idle for 3m", "busy: 2 dynamic slots claimed", "not in the pool"
    idle_since: int | None
    draining: bool
    slots: tuple[SlotView, ...]
    group: str = "workers"  # the worker group it is a member of


@dataclass(frozen=True)
class PoolView:
    stack: str
    members: tuple[MemberView, ...]
    strangers: tuple[str, ...]  # machines in the pool that are no member of the group
    taken_at: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _slots(machine: Machine) -> tuple[SlotView, ...]:
    return tuple(
        SlotView(
            slot.name, f"{slot.state or '?'}/{slot.activity or '?'}", slot.cpus, slot.memory,
            "dynamic" if slot.dynamic else "partitionable" if slot.partitionable else "static",
        )
        for slot in machine.slots
    )


def pool_view(
    cloud: Cloud, site: Site, pool_for: Callable[[Stack], PoolQuery | None],
    now: Callable[[], float] = time.time,
) -> PoolView:
    stack = require_stack(cloud, site)
    pool = pool_for(stack)
    if pool is None:
        raise UsageError(
            f"stack {site.site} has no master address to reach its pool through (no floating "
            "IP yet, or a sandbox without --pool)"
        )
    members = group_members(cloud, stack)
    machines = pool.machines()
    taken = now()
    verdicts, unmatched = assess_members(members, machines, taken)
    by_name = {machine.name: machine for machine in machines}
    views = []
    for member, verdict in zip(members, verdicts, strict=True):
        found = [by_name[name] for name in verdict.machines if name in by_name]
        views.append(MemberView(
            name=member.name, server_id=member.server_id, heat_status=member.status,
            in_pool=verdict.in_pool, machines=verdict.machines,
            condition=verdict.reason if verdict.in_pool else "not in the pool",
            idle_since=verdict.idle_since,
            draining=any(machine.draining for machine in found),
            slots=tuple(slot for machine in found for slot in _slots(machine)),
            group=member.group,
        ))
    return PoolView(stack.name, tuple(views), tuple(unmatched), taken)


def format_text(view: PoolView) -> str:
    lines = [f"pool of stack {view.stack}: {sum(m.in_pool for m in view.members)} of "
             f"{len(view.members)} workers in the pool"]
    groups = list(dict.fromkeys(m.group for m in view.members))
    grouped = groups != ["workers"] and bool(groups)
    if grouped:
        for group in groups:
            of = [m for m in view.members if m.group == group]
            lines.append(f"  group {group}: {sum(m.in_pool for m in of)} of {len(of)} in the pool")
    for member in view.members:
        drain = ", draining" if member.draining else ""
        group = f"[{member.group}] " if grouped else ""
        lines.append(f"  {group}{member.name:<16} server {member.server_id or '-':<36} "
                     f"{member.condition}{drain}")
        for slot in member.slots:
            size = f"{slot.cpus} cpus, {slot.memory_mb} MB" if slot.cpus is not None else ""
            lines.append(f"      {slot.name:<34} {slot.kind:<13} {slot.state:<18} {size}")
    absent = [m.name for m in view.members if not m.in_pool]
    if absent:
        lines.append(f"not in the pool (never joined, or not reachable): {', '.join(absent)}")
    if view.strangers:
        lines.append(f"in the pool but no member of the group: {', '.join(view.strangers)}")
    return "\n".join(lines)
