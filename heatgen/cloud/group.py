"""The worker group's members as the cloud lists them: the one member type heatgen has."""

from __future__ import annotations

from dataclasses import dataclass

from heatgen.cloud.interface import Cloud, Stack
from heatgen.contract import WORKER_GROUP, GridOutputs


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


def group_members(cloud: Cloud, stack: Stack) -> list[Member]:
    """The group's members, oldest first; server ids and IPs from the stack's outputs."""
    outputs = GridOutputs.of(stack.outputs)
    server_ids = outputs.worker_server_ids or {}
    addresses = outputs.worker_private_ips or {}
    members = [
        r for r in cloud.resources(stack.id, nested_depth=1) if r.parent == WORKER_GROUP
    ]
    members.sort(key=lambda r: (r.created, r.name))
    return [
        Member(
            name=r.name,
            server_id=server_ids.get(r.name),
            private_ip=addresses.get(r.name),
            created_order=index,
            status=r.status,
            nested_stack_id=r.stack_id,
            created=r.created,
            reason=r.reason,
        )
        for index, r in enumerate(members)
    ]
