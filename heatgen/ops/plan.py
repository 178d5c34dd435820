"""Plans: what an update would do, Heat's preview read against the definitions themselves."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from heatgen.cloud.interface import Definition
from heatgen.contract import PROTECTED_RESOURCES
from heatgen.ops import definitions
from heatgen.ops.fields import ENVIRONMENT_FILES

PLAN_KINDS = ("added", "updated", "replaced", "deleted", "unchanged")


@dataclass(frozen=True)
class Plan:
    """Heat's own answer to "what would this change": resource names by kind.

    ``over_reported`` lists what Heat's preview called updated/replaced although the
    definition does not change (see :mod:`heatgen.plandiff`); they are shown as unchanged.
    """

    changes: Mapping[str, list[str]]
    over_reported: tuple[str, ...] = ()

    @property
    def has_changes(self) -> bool:
        return any(self.changes.get(kind) for kind in ("added", "updated", "replaced", "deleted"))

    @property
    def replaces_protected(self) -> list[str]:
        return sorted(set(self.changes.get("replaced", [])) & PROTECTED_RESOURCES)

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
        return lines

    def as_dict(self) -> dict[str, Any]:
        return {"changes": {k: sorted(self.changes.get(k, [])) for k in PLAN_KINDS},
                "over_reported": list(self.over_reported)}


def reconciled_plan(
    heat_changes: Mapping[str, list[str]], old: Definition, new: Definition
) -> Plan:
    """Heat's preview, with what it over-reports moved to unchanged."""
    changed = definitions.changed_resources(old, new, heat_changes.get("replaced", []))
    changes, moved = definitions.reconcile(heat_changes, changed)
    return Plan(changes, tuple(moved))


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
