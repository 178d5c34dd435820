"""Plans: what an update would do, Heat's preview read against the definitions themselves.

Besides Heat's resource lists, a plan says which parameters change and what the update does
to each worker group's size, worked out the way Heat's AutoScalingGroup will: the resolved
``desired_capacity`` (Heat reads 0 as "keep the current size") bounded by ``min_size`` and
``max_size``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from heatgen.cloud.interface import Definition
from heatgen.contract import PROTECTED_RESOURCES, WORKER_GROUP, worker_group_resources
from heatgen.ops import definitions, replacement
from heatgen.ops.fields import ENVIRONMENT_FILES

PLAN_KINDS = ("added", "updated", "replaced", "deleted", "unchanged")


@dataclass(frozen=True)
class GroupPlan:
    """What an update does to one worker group: its size before and after (None: unknown)
    and the resources replaced inside every member (name -> what changed)."""

    resource: str  # the group's AutoScalingGroup
    now: int | None = None
    after: int | None = None
    members_replaced: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def shrinks(self) -> bool:
        return self.now is not None and self.after is not None and self.after < self.now


@dataclass(frozen=True)
class Plan:
    """Heat's own answer to "what would this change": resource names by kind.

    ``over_reported`` lists what Heat's preview called updated/replaced although the
    definition does not change (see :mod:`heatgen.ops.definitions`); they are shown as
    unchanged. ``parameters`` are ``(name, deployed, new)`` for every changed value;
    ``groups`` what happens to each worker group (its size now and after, the resources
    replaced in its members), in template order.
    """

    changes: Mapping[str, list[str]]
    over_reported: tuple[str, ...] = ()
    parameters: tuple[tuple[str, str, str], ...] = ()
    groups: tuple[GroupPlan, ...] = ()
    # what a real cloud would replace where stand-ins hide it (the sandbox): name -> why
    stand_in_replaced: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def group(self, resource: str = WORKER_GROUP) -> GroupPlan:
        return next((g for g in self.groups if g.resource == resource), GroupPlan(resource))

    @property
    def group_now(self) -> int | None:
        """The one group's size now (a grid of a single group)."""
        return self.group().now

    @property
    def group_after(self) -> int | None:
        return self.group().after

    @property
    def members_replaced(self) -> Mapping[str, tuple[str, ...]]:
        """The one group's replaced member resources (a grid of a single group)."""
        return self.group().members_replaced

    @property
    def has_changes(self) -> bool:
        return any(self.changes.get(kind) for kind in ("added", "updated", "replaced", "deleted"))

    @property
    def replaces_protected(self) -> list[str]:
        return sorted(set(self.changes.get("replaced", [])) & PROTECTED_RESOURCES)

    def removes(self, resource: str) -> bool:
        """The update replaces or deletes worker group ``resource``: every member goes."""
        gone = set(self.changes.get("replaced", [])) | set(self.changes.get("deleted", []))
        return resource in gone

    @property
    def shrinks_group(self) -> bool:
        return any(g.shrinks for g in self.groups)

    def lines(self) -> list[str]:
        lines = [
            f"{kind:>9}: {', '.join(sorted(self.changes.get(kind, []))) or '-'}"
            for kind in PLAN_KINDS
        ]
        if self.over_reported:
            lines.append(
                f"   (note): Heat's preview also lists {', '.join(self.over_reported)} as "
                "changed only because a preview cannot resolve references; their definitions "
                "are unchanged, so the update leaves them alone"
            )
        for name, why in sorted(self.stand_in_replaced.items()):
            lines.append(f"   (note): {name} is replaced on a real cloud (changed: "
                         f"{', '.join(why)}); the sandbox's stand-in would only update it")
        for group in self.groups:
            whose = ("every worker's" if group.resource == WORKER_GROUP
                     else f"every {group.resource} member's")
            for name, why in sorted(group.members_replaced.items()):
                lines.append(f"  members: {whose} {name} is replaced (changed: "
                             f"{', '.join(why)}): each worker and its running jobs go")
        for name, old, new in self.parameters:
            lines.append(f"parameter: {name} {old} -> {new}")
        for group in self.groups:
            if group.now is not None:
                after = "?" if group.after is None else str(group.after)
                lines.append(f"  {group.resource}: {group.now} now, {after} after the update")
        return lines

    def as_dict(self) -> dict[str, Any]:
        return {"changes": {k: sorted(self.changes.get(k, [])) for k in PLAN_KINDS},
                "over_reported": list(self.over_reported),
                "parameters": [{"name": n, "deployed": o, "new": v}
                               for n, o, v in self.parameters],
                "workers": {"now": self.group_now, "after": self.group_after},
                "groups": {g.resource: {"now": g.now, "after": g.after,
                                        "members_replaced": {k: list(v) for k, v in
                                                             g.members_replaced.items()}}
                           for g in self.groups},
                "stand_in_replaced": {k: list(v) for k, v in self.stand_in_replaced.items()},
                "members_replaced": {k: list(v) for k, v in self.members_replaced.items()}}


def reconciled_plan(
    heat_changes: Mapping[str, list[str]], old: Definition, new: Definition,
    group_now: Mapping[str, int | None] | None = None,
) -> Plan:
    """Heat's preview, with what it over-reports moved to unchanged; the parameters that
    change, and (given groups' sizes now, by AutoScalingGroup name) their sizes after the
    update."""
    hidden = replacement.replaced_resources(old, new)
    replaced = [*heat_changes.get("replaced", []), *hidden]
    changed = definitions.changed_resources(old, new, replaced)
    changes, moved = definitions.reconcile(heat_changes, changed)
    if hidden:
        for kind in ("updated", "unchanged"):
            changes[kind] = [name for name in changes.get(kind, []) if name not in hidden]
        changes["replaced"] = sorted({*changes.get("replaced", []), *hidden})
        moved = [name for name in moved if name not in hidden]
    currents = group_now or {}
    resources = list(dict.fromkeys([*worker_group_resources(old.template),
                                    *worker_group_resources(new.template)]))
    if not resources:
        resources = [WORKER_GROUP]
    groups = []
    for resource in resources:
        now = currents.get(resource)
        in_new = resource in (new.template.get("resources") or {})
        after = (group_size_after(new, now, resource) if in_new else 0) if now is not None \
            else None
        members = replacement.replaced_members(old, new, resource)
        groups.append(GroupPlan(resource, now, after,
                                {k: tuple(v) for k, v in members.items()}))
    return Plan(changes, tuple(moved), parameter_changes(old, new), tuple(groups),
                {k: tuple(v) for k, v in hidden.items()})


def parameter_changes(old: Definition, new: Definition) -> tuple[tuple[str, str, str], ...]:
    changed = []
    for name in sorted(new.parameters):
        before = old.parameters.get(name)
        after = definitions.normal(new.parameters[name])
        shown = "(unset)" if before is None else definitions.normal(before)
        if shown != after:
            changed.append((name, shown, after))
    return tuple(changed)


def same_definition(old: Definition, new: Definition) -> bool:
    """True when an update would leave Heat with exactly the definition it has.

    Environment files count through what they set (parameters and registry), not their text.
    """
    if dict(old.template) != dict(new.template):
        return False
    for name, value in new.parameters.items():
        if definitions.normal(value) != definitions.normal(old.parameters.get(name, object())):
            return False
    for name, text in new.files.items():
        if name not in ENVIRONMENT_FILES and old.files.get(name) != text:
            return False
    return all(old.registry.get(k) == v for k, v in new.registry.items())


class _Unknown(Exception):
    """A value heatgen cannot work out without Heat."""


def group_size_after(new: Definition, current: int, resource: str = WORKER_GROUP) -> int | None:
    """Worker group ``resource``'s size once Heat has applied ``new`` to it at ``current``.

    Heat's AutoScalingGroup takes ``desired_capacity or current`` and bounds it by min and
    max. None when the template's group has a form heatgen cannot evaluate.
    """
    resources = new.template.get("resources") or {}
    group = resources.get(resource)
    if not isinstance(group, Mapping):
        return None
    properties = group.get("properties") or {}
    try:
        low = _number(properties.get("min_size", 0), new)
        high = _number(properties.get("max_size"), new)
        wanted = properties.get("desired_capacity")
        desired = _number(wanted, new) if wanted is not None else 0
    except _Unknown:
        return None
    return max(low, min(high, desired or current))


def _value(node: Any, new: Definition) -> Any:
    if isinstance(node, Mapping) and len(node) == 1:
        ((function, argument),) = node.items()
        if function == "get_param" and isinstance(argument, str):
            if argument in new.parameters:
                return new.parameters[argument]
            declared = (new.template.get("parameters") or {}).get(argument) or {}
            if "default" in declared:
                return declared["default"]
            raise _Unknown(argument)
        if function == "if" and isinstance(argument, list) and len(argument) == 3:
            return _value(argument[1] if _condition(argument[0], new) else argument[2], new)
        raise _Unknown(function)
    if isinstance(node, Mapping | list):
        raise _Unknown(node)
    return node


def _number(node: Any, new: Definition) -> int:
    value = _value(node, new)
    if isinstance(value, bool):
        raise _Unknown(value)
    try:
        return int(float(value))
    except (TypeError, ValueError):
        raise _Unknown(value) from None


def _condition(node: Any, new: Definition) -> bool:
    if isinstance(node, bool):
        return node
    if isinstance(node, str):
        conditions = new.template.get("conditions") or {}
        if node not in conditions:
            raise _Unknown(node)
        return _condition(conditions[node], new)
    if isinstance(node, Mapping) and len(node) == 1:
        ((function, argument),) = node.items()
        if function == "equals" and isinstance(argument, list) and len(argument) == 2:
            left, right = (definitions.normal(_value(a, new)) for a in argument)
            return left == right
        if function == "not":
            return not _condition(argument, new)
        if function == "and" and isinstance(argument, list):
            return all(_condition(a, new) for a in argument)
        if function == "or" and isinstance(argument, list):
            return any(_condition(a, new) for a in argument)
    raise _Unknown(node)
