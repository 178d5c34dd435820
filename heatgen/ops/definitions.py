"""Which resources' definitions an update really changes, to read Heat's preview against.

Heat's ``preview_update`` builds the new stack without creating it, so every ``get_resource``
and ``get_attr`` in it resolves to a placeholder: resources that merely *reference* others are
listed as updated or even replaced although the real update leaves them alone (Heat says so
itself: "This method *cannot* guarantee that an update will have the actions specified"). On
the grid that makes a one-worker resize look like it replaces the wait condition and both
scaling policies. heatgen compares the definitions itself, the way Heat's update will: each
resource's snippet with parameters substituted, plus the files and registry entries it uses.
A reference changes only when its target changes (``get_attr``) or is replaced
(``get_resource``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from heatgen.cloud.interface import Definition
from heatgen.config import parse_document
from heatgen.errors import ConfigError
from heatgen.render.intrinsics import REFERENCES, targets

DEFINITION_KEYS = ("type", "properties", "metadata", "depends_on", "update_policy",
                   "deletion_policy", "condition")


def normal(value: Any) -> str:
    """Parameter values as Heat stores them: strings; lists and maps as JSON."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True)
    return str(value)


def _substitute(node: Any, parameters: Mapping[str, Any]) -> Any:
    if isinstance(node, Mapping):
        if len(node) == 1 and "get_param" in node:
            argument = node["get_param"]
            name = argument[0] if isinstance(argument, list) and argument else argument
            if isinstance(name, str) and name in parameters and not name.startswith("OS::"):
                return {"param": normal(parameters[name])}
        return {k: _substitute(v, parameters) for k, v in node.items()}
    if isinstance(node, list):
        return [_substitute(v, parameters) for v in node]
    return node


def _references(node: Any) -> Iterable[tuple[str, str]]:
    """(function, target) for every get_resource / get_attr in a snippet."""
    return targets(node, REFERENCES)


def _get_files(node: Any) -> Iterable[str]:
    return (name for _, name in targets(node, ("get_file",)))


def _file_closure(names: Iterable[str], files: Mapping[str, str], seen: set[str]) -> set[str]:
    """The files used, following template files into the files they get_file in turn."""
    for name in names:
        if name in seen:
            continue
        seen.add(name)
        text = files.get(name)
        if text is None or not name.endswith((".yaml", ".yml")):
            continue
        try:
            doc = parse_document(text, name)
        except ConfigError:
            continue
        if isinstance(doc, Mapping) and "heat_template_version" in doc:
            _file_closure(_get_files(doc.get("resources")), files, seen)
    return seen


def _member_types(snippet: Mapping[str, Any]) -> list[str]:
    types = [snippet.get("type")]
    nested = (snippet.get("properties") or {}).get("resource")
    if isinstance(nested, Mapping):
        types.append(nested.get("type"))
    return [t for t in types if isinstance(t, str)]


def _fingerprint(snippet: Mapping[str, Any], definition: Definition) -> Any:
    resolved = {k: _substitute(snippet.get(k), definition.parameters) for k in DEFINITION_KEYS}
    used = list(_get_files(snippet))
    registry = {}
    for rtype in _member_types(snippet):
        target = definition.registry.get(rtype)
        if target is not None:
            registry[rtype] = target
            if isinstance(target, str):
                used.append(target)
    closure = sorted(_file_closure(used, definition.files, set()))
    files = {name: definition.files.get(name) for name in closure}
    return resolved, registry, files


def changed_resources(
    old: Definition, new: Definition, replaced_by_heat: Iterable[str] = ()
) -> set[str]:
    """Names of resources whose definition differs between ``old`` and ``new``.

    ``replaced_by_heat`` is Heat's list of replacements; a ``get_resource`` reference counts
    as changed only when its target both changed and is among them.
    """
    old_resources: Mapping[str, Any] = old.template.get("resources") or {}
    new_resources: Mapping[str, Any] = new.template.get("resources") or {}
    changed = {
        name for name in new_resources
        if name not in old_resources
        or _fingerprint(old_resources[name], old) != _fingerprint(new_resources[name], new)
    }
    replaced = set(replaced_by_heat)
    grew = True
    while grew:
        grew = False
        for name, snippet in new_resources.items():
            if name in changed:
                continue
            for function, target in _references(snippet):
                hit = target in changed and (function == "get_attr" or target in replaced)
                if hit:
                    changed.add(name)
                    grew = True
                    break
    return changed


def reconcile(
    heat_plan: Mapping[str, list[str]], changed: set[str]
) -> tuple[dict[str, list[str]], list[str]]:
    """Heat's plan read against the definitions that really change.

    Updates/replacements whose definition does not change move to ``unchanged`` (returned too,
    so the caller can say so); a resource Heat calls unchanged whose definition does change
    (an ``OS::Heat::None`` stand-in in the sandbox, say) moves to ``updated``.
    """
    plan = {kind: list(names) for kind, names in heat_plan.items()}
    moved: list[str] = []
    for kind in ("updated", "replaced"):
        keep: list[str] = []
        for name in plan.get(kind, []):
            (keep if name in changed else moved).append(name)
        plan[kind] = keep
    unchanged = set(plan.get("unchanged", []))
    quiet = sorted(unchanged & changed)
    plan["updated"] = sorted(set(plan.get("updated", [])) | set(quiet))
    plan["unchanged"] = sorted((unchanged - changed) | set(moved))
    return plan, sorted(moved)
