"""The worker groups' members as the cloud lists them: the one member type heatgen has."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from heatgen.cloud.interface import Cloud, Resource, Stack
from heatgen.contract import GridOutputs, GroupNames


@dataclass(frozen=True)
class Member:
    """A member of the worker group, with what the pool can match it by.

    ``created_order`` ranks members by creation time: larger is newer. ``nested_stack_id`` is
    the group's nested stack, where the member can be marked unhealthy.
    """

    name: str
    server_id: str | None
    private_ip: str | None
    created_order: int = 0
    status: str = ""
    nested_stack_id: str = ""
    created: str = ""
    reason: str = ""
    group: str = "workers"  # the group's name ("workers": the one group of a workers: site)


def group_members(cloud: Cloud, stack: Stack, group: GroupNames | None = None) -> list[Member]:
    """The members of ``group`` (None: of every group), oldest first; server ids and IPs
    from the stack's outputs."""
    return members_listed(cloud.resources(stack.id, nested_depth=1), stack, group)


def members_listed(listed: Sequence[Resource], stack: Stack,
                   group: GroupNames | None = None) -> list[Member]:
    """The members of ``group`` among a listing of the stack's resources (nested_depth=1)."""
    by_group: dict[str, GroupNames] = {}
    for r in listed:
        names = GroupNames.from_resource(r.parent) if r.parent else None
        if names is not None and (group is None or names == group):
            by_group[r.parent] = names
    members = [r for r in listed if r.parent in by_group]
    members.sort(key=lambda r: (r.created, r.name))
    looked_up = {resource: GridOutputs.of(stack.outputs, names)
                 for resource, names in by_group.items()}
    return [
        Member(
            name=r.name,
            server_id=(looked_up[r.parent].worker_server_ids or {}).get(r.name),
            private_ip=(looked_up[r.parent].worker_private_ips or {}).get(r.name),
            created_order=index,
            status=r.status,
            nested_stack_id=r.stack_id,
            created=r.created,
            reason=r.reason,
            group=by_group[r.parent].group,
        )
        for index, r in enumerate(members)
    ]
