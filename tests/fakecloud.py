"""An in-memory stand-in for heatgen's own :class:`heatgen.cloud.Cloud` interface.

It models only what the lifecycle logic reads: stacks moving through IN_PROGRESS to a final
state over a scripted number of polls, events, resources and failures injected per call.
It is not a Heat: anything that claims to deploy is tested against the sandbox.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from heatgen.cloud.interface import Alarm, Definition, Event, Resource, Stack
from heatgen.errors import CloudError


class FakeTransient(CloudError):
    transient = True


@dataclass
class FakeStack:
    id: str
    name: str
    status: str
    parameters: dict[str, Any]
    outputs: dict[str, Any] = field(default_factory=dict)
    reason: str = ""
    polls_left: int = 2
    final: str = "COMPLETE"
    final_reason: str = ""
    events: list[Event] = field(default_factory=list)
    resources: list[Resource] = field(default_factory=list)
    definition: Definition | None = None
    restart_in: int | None = None  # polls until a cancelled delete starts over
    # Nested stacks two levels down (the members' own: servers, ports); every other nested
    # stack an event names is one level down (a group's, whose resources are the members).
    deep_stacks: set[str] = field(default_factory=set)

    def depth_of(self, event: Event) -> int:
        """How far down the tree the event's stack is: 0 this stack's own event."""
        if event.stack in ("", self.name):
            return 0
        return 2 if event.stack in self.deep_stacks else 1



class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += seconds


class FakeCloud:
    def __init__(self, *, polls: int = 2, services: tuple[str, ...] = ("orchestration",)) -> None:
        self.services = set(services)
        self.stacks: dict[str, FakeStack] = {}
        self.calls: list[tuple[str, Any]] = []
        self.failures: dict[str, list[Exception]] = {}
        self.create_lands_before_failure = False
        self.delete_lands_before_failure = False
        self.polls = polls
        self.final = "COMPLETE"
        self.final_reason = ""
        self.failed_resources: list[Resource] = []
        self.plan: dict[str, list[str]] = {"updated": ["workers"], "unchanged": ["master"]}
        self.signals: list[tuple[str, str, Mapping[str, Any]]] = []
        # Heat's convergence engine takes an update while another runs (--resume relies on it).
        self.updates_while_busy = False
        # The group's size an update ends in (None: the worker_desired it asks for).
        self.reaches: int | None = None
        self.events_read = 0  # events handed out by events() and newest_events()
        self.event_depths: list[int] = []  # the depth of each events() listing
        self._ids = (f"stack-{i}" for i in itertools.count(1))
        self._events = itertools.count(1)

    # -- helpers for tests
    def fail(self, method: str, *errors: Exception) -> None:
        self.failures.setdefault(method, []).extend(errors)

    def _maybe_fail(self, method: str) -> None:
        queue = self.failures.get(method)
        if queue:
            raise queue.pop(0)

    def _event(self, stack: FakeStack, resource: str, status: str, reason: str = "") -> None:
        physical = stack.id if resource == stack.name else ""
        stack.events.append(Event(str(next(self._events)), "2026-01-01T00:00:00Z", resource,
                                  status, reason, stack.name, physical))

    def _begin(self, stack: FakeStack, action: str) -> None:
        stack.status = f"{action}_IN_PROGRESS"
        stack.polls_left = self.polls
        stack.final = self.final
        stack.final_reason = self.final_reason
        self._event(stack, stack.name, stack.status, f"Stack {action} started")

    def add_stack(self, name: str, status: str = "CREATE_COMPLETE", **params: Any) -> FakeStack:
        stack = FakeStack(next(self._ids), name, status, dict(params))
        self.stacks[stack.id] = stack
        return stack

    def _view(self, stack: FakeStack) -> Stack:
        return Stack(stack.id, stack.name, stack.status, stack.reason, dict(stack.parameters),
                     dict(stack.outputs))

    def _by_name(self, name_or_id: str) -> FakeStack | None:
        for stack in self.stacks.values():
            if name_or_id in (stack.id, stack.name) and stack.status != "DELETE_COMPLETE":
                return stack
        return None

    # -- the Cloud protocol
    def get_stack(self, name_or_id: str, outputs: bool = True) -> Stack | None:
        # A read without outputs is a call of its own: it costs Heat no read of the members.
        what = "get_stack" if outputs else "stack_no_outputs"
        self.calls.append((what, name_or_id))
        self._maybe_fail(what)
        found = self._by_name(name_or_id)
        stack = self._advance(found.id) if found else None
        if stack is None:
            return None
        view = self._view(stack)
        return view if outputs else Stack(view.id, view.name, view.status, view.reason,
                                          view.parameters)

    def stack_output(self, stack_id: str, key: str) -> Any:
        self.calls.append(("stack_output", key))
        self._maybe_fail("stack_output")
        stack = self._advance(stack_id) if stack_id in self.stacks else None
        return stack.outputs.get(key) if stack else None

    def stack_status(self, stack_id: str) -> Stack | None:
        self.calls.append(("stack_status", stack_id))
        self._maybe_fail("stack_status")
        stack = self._advance(stack_id) if stack_id in self.stacks else None
        return Stack(stack.id, stack.name, stack.status, stack.reason) if stack else None

    def has_service(self, service_type: str) -> bool:
        return service_type in self.services

    def _advance(self, stack_id: str) -> FakeStack | None:
        """One tick of the scripted operation: the stack moves on whenever it is looked at."""
        stack = self.stacks.get(stack_id)
        if stack is None:
            return None
        if stack.restart_in is not None:
            if stack.restart_in > 0:
                stack.restart_in -= 1
            else:
                stack.restart_in = None
                self._begin(stack, "DELETE")
        elif stack.status.endswith("_IN_PROGRESS"):
            if stack.polls_left > 0:
                stack.polls_left -= 1
            else:
                action = stack.status.removesuffix("_IN_PROGRESS")
                stack.status = f"{action}_{stack.final}"
                stack.reason = stack.final_reason
                if stack.final == "FAILED":
                    stack.resources = list(self.failed_resources)
                self._event(stack, stack.name, stack.status, stack.reason)
                if stack.status == "DELETE_COMPLETE":
                    del self.stacks[stack_id]
                    return None
        return stack

    def validate(self, fields: Mapping[str, Any]) -> None:
        self.calls.append(("validate", fields))
        self._maybe_fail("validate")

    def create_stack(self, fields: Mapping[str, Any]) -> str:
        self.calls.append(("create_stack", fields))
        name = fields["stack_name"]
        if self._by_name(name) is not None:
            raise CloudError(f"create the stack: HTTP 409: The Stack ({name}) already exists.")
        queue = self.failures.get("create_stack")
        if queue:
            error = queue.pop(0)
            if self.create_lands_before_failure:
                self._begin(self.add_stack(name), "CREATE")
            raise error
        stack = self.add_stack(name)
        self._begin(stack, "CREATE")
        return stack.id

    def update_stack(self, stack_id: str, fields: Mapping[str, Any], patch: bool) -> None:
        self.calls.append(("update_stack", {"fields": fields, "patch": patch}))
        self._maybe_fail("update_stack")
        stack = self.stacks[stack_id]
        if stack.status.endswith("_IN_PROGRESS") and not self.updates_while_busy:
            raise CloudError("update the stack: HTTP 409: stack is busy")
        parameters = fields.get("parameters", {})
        stack.parameters.update(parameters)
        for name, value in parameters.items():  # each group's size follows its desired one
            count = name.replace("worker_desired", "worker_count", 1)
            if name.startswith("worker_desired") and count in stack.outputs:
                stack.outputs[count] = self.reaches if self.reaches is not None else value
        self._begin(stack, "UPDATE")

    def preview_create(self, fields: Mapping[str, Any]) -> list[Resource]:
        self.calls.append(("preview_create", fields))
        return [Resource(name, "T", "INIT_COMPLETE", "", "", "") for name in
                sorted(fields["template"].get("resources", {}))]

    def preview_update(
        self, stack_id: str, fields: Mapping[str, Any], patch: bool
    ) -> dict[str, list[str]]:
        self.calls.append(("preview_update", {"fields": fields, "patch": patch}))
        return {k: list(v) for k, v in self.plan.items()}

    def delete_stack(self, stack_id: str) -> None:
        self.calls.append(("delete_stack", stack_id))
        queue = self.failures.get("delete_stack")
        if queue and not self.delete_lands_before_failure:
            raise queue.pop(0)
        stack = self.stacks.get(stack_id)
        if stack is not None:
            if stack.status == "DELETE_IN_PROGRESS":
                # Heat's convergence engine: a second DELETE cancels the running one (the
                # stack shows DELETE_FAILED for a moment), then starts again.
                stack.status, stack.reason = "DELETE_FAILED", "Stack DELETE cancelled"
                self._event(stack, stack.name, stack.status, stack.reason)
                stack.restart_in = 1
            else:
                self._begin(stack, "DELETE")
        if queue:
            raise queue.pop(0)

    def deployed_definition(self, stack_id: str) -> Definition:
        self.calls.append(("deployed_definition", stack_id))
        stack = self.stacks[stack_id]
        return stack.definition or Definition({}, dict(stack.parameters), {}, {})

    def events(self, stack_id: str, after: str | None, depth: int = 2
               ) -> list[Event] | None:
        self.calls.append(("events" if depth else "own_events", after))
        self.event_depths.append(depth)
        self._maybe_fail("events" if depth else "own_events")
        stack = self.stacks.get(stack_id) or self._by_name(stack_id)  # heat-api takes either
        if stack is None:
            return None
        self._advance(stack.id)
        events = list(stack.events)
        if after is not None:
            ids = [e.id for e in events]
            events = events[ids.index(after) + 1:] if after in ids else events
        events = [e for e in events if stack.depth_of(e) <= depth]
        self.events_read += len(events)
        return events

    def newest_events(self, stack_id: str, limit: int, depth: int = 2) -> list[Event] | None:
        self.calls.append(("newest_events", limit))
        self._maybe_fail("newest_events")
        stack = self.stacks.get(stack_id) or self._by_name(stack_id)
        if stack is None:
            return None
        newest = [e for e in stack.events[::-1] if stack.depth_of(e) <= depth][:limit]
        self.events_read += len(newest)
        return newest

    def resources(self, stack_id: str, nested_depth: int, state: str | None = None
                  ) -> list[Resource]:
        self.calls.append(("resources", nested_depth) if state is None else
                          ("resources", (nested_depth, state)))
        stack = self.stacks.get(stack_id)
        listed = list(stack.resources) if stack else []
        if state is None:
            return listed
        # Heat's filtered listing: a resource of the stack itself in that state hides the
        # nested stacks' (see Cloud.resources).
        matching = [r for r in listed if r.status == state]
        if any(not r.parent for r in matching):
            return [r for r in matching if not r.parent]
        return matching

    def resource_attribute(self, stack_id: str, resource: str, attribute: str) -> Any:
        self.calls.append(("resource_attribute", (resource, attribute)))
        return {"endpoint": f"http://heat/{resource}/signal", "token": "tok-123"}.get(attribute)

    def mark_unhealthy(self, stack_id: str, resource: str, unhealthy: bool, reason: str) -> None:
        self.calls.append(("mark_unhealthy", (resource, unhealthy, reason)))
        self._maybe_fail("mark_unhealthy")

    def signal_wait_handle(self, endpoint: str, token: str, body: Mapping[str, Any]) -> None:
        self.calls.append(("signal_wait_handle", body))
        self.signals.append((endpoint, token, body))

    def alarms(self, stack_id: str) -> list[Alarm]:
        return []

    def alarm_history(self, alarm_id: str) -> list[dict[str, Any]]:
        return []

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]
