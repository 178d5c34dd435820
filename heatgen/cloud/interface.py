"""heatgen's one interface to a cloud, as plain data and a Protocol: a leaf module.

Only :mod:`heatgen.cloud.openstack` implements it against the real OpenStack clients; tests use
an in-memory fake of the same Protocol. Nothing here imports an OpenStack library, nor any other
heatgen module.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class Definition:
    """What decides a stack's resources: template, parameter values, files, registry."""

    template: Mapping[str, Any]
    parameters: Mapping[str, Any]
    files: Mapping[str, str]
    registry: Mapping[str, Any]


@dataclass(frozen=True)
class Stack:
    """What heatgen needs to know of a stack."""

    id: str
    name: str
    status: str  # e.g. CREATE_IN_PROGRESS: action and state joined by "_"
    reason: str = ""
    parameters: Mapping[str, Any] = field(default_factory=dict)
    outputs: Mapping[str, Any] = field(default_factory=dict)

    @property
    def action(self) -> str:
        return self.status.rsplit("_", 2)[0] if self.status.count("_") >= 2 else self.status

    @property
    def in_progress(self) -> bool:
        return self.status.endswith("_IN_PROGRESS")

    @property
    def failed(self) -> bool:
        return self.status.endswith("_FAILED")


@dataclass(frozen=True)
class Event:
    id: str
    time: str  # ISO 8601 as Heat reports it
    resource: str
    status: str
    reason: str
    stack: str = ""  # name of the (nested) stack the resource is in
    physical_id: str = ""  # a stack's own events carry the stack id here


@dataclass(frozen=True)
class Resource:
    name: str
    type: str
    status: str
    reason: str
    physical_id: str
    stack_id: str  # the stack the resource belongs to (nested stacks included)
    parent: str = ""  # name of the resource that owns the nested stack, "" at top level
    attributes: Mapping[str, Any] = field(default_factory=dict)
    created: str = ""  # creation time as Heat reports it (ISO 8601)


@dataclass(frozen=True)
class Alarm:
    id: str
    name: str
    type: str
    state: str
    state_timestamp: str
    description: str
    rule: Mapping[str, Any]
    actions: Sequence[str]


class Cloud(Protocol):
    """The calls heatgen makes. Every method raises :class:`heatgen.errors.CloudError`."""

    def get_stack(self, name_or_id: str, outputs: bool = True) -> Stack | None:
        """The stack, or None when there is none of that name or id (or it is deleted).

        ``outputs``: with its outputs resolved, which costs heat-api a read of every member's
        stack (seconds for a big grid); without, the stack's status and parameters only, and
        no outputs."""

    def stack_output(self, stack_id: str, key: str) -> Any:
        """One output of the stack, resolved alone; None when the stack has no such output."""

    def stack_status(self, stack_id: str) -> Stack | None:
        """The stack's status and reason, from its database row alone (no parameters, no
        outputs): one small request that heat-api answers without loading the template or
        any resource, for waits to poll. None once the stack is deleted."""

    def has_service(self, service_type: str) -> bool:
        """Whether the cloud's catalog has an endpoint of ``service_type`` (``alarming``)."""

    def validate(self, fields: Mapping[str, Any]) -> None: ...

    def create_stack(self, fields: Mapping[str, Any]) -> str: ...

    def update_stack(self, stack_id: str, fields: Mapping[str, Any], patch: bool) -> None: ...

    def preview_create(self, fields: Mapping[str, Any]) -> list[Resource]: ...

    def preview_update(
        self, stack_id: str, fields: Mapping[str, Any], patch: bool
    ) -> dict[str, list[str]]: ...

    def delete_stack(self, stack_id: str) -> None: ...

    def deployed_definition(self, stack_id: str) -> Definition: ...

    def events(self, stack_id: str, after: str | None, depth: int = 2
               ) -> list[Event] | None:
        """Events after the marker, oldest first; None when the stack no longer exists.

        ``depth``: the levels of nested stacks whose events are listed too: 0 only the
        stack's own resources and the stack itself (the cheapest query), 1 also the groups'
        stacks (each member's own events), 2 also the members' stacks (their servers and
        ports; heat-api then loads every member's stack). The marker may be any event of the
        tree, listed at any depth. Without a marker this is every event the stack has: use
        :meth:`newest_events`."""

    def newest_events(self, stack_id: str, limit: int, depth: int = 2
                      ) -> list[Event] | None:
        """The stack's newest ``limit`` events (nested stacks down to ``depth`` included),
        newest first, in one request whatever the stack's history; None when the stack no
        longer exists."""

    def resources(self, stack_id: str, nested_depth: int, state: str | None = None
                  ) -> list[Resource]:
        """The stack's resources, and its nested stacks' down to ``nested_depth``.

        ``state`` (such as ``CHECK_FAILED``): only the resources in that state, filtered by
        heat-api in its query. Heat's filtered listing is incomplete in one case: when a
        resource of the stack itself is in that state, the nested stacks' are left out (it
        caches the filtered rows and then walks only those), so an answer that holds one of
        the stack's own resources may miss nested ones."""

    def resource_attribute(self, stack_id: str, resource: str, attribute: str) -> Any: ...

    def mark_unhealthy(
        self, stack_id: str, resource: str, unhealthy: bool, reason: str
    ) -> None: ...

    def signal_wait_handle(self, endpoint: str, token: str, body: Mapping[str, Any]) -> None: ...

    def alarms(self, stack_id: str) -> list[Alarm]: ...

    def alarm_history(self, alarm_id: str) -> list[dict[str, Any]]: ...
