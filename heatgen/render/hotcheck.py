"""Static checks of a rendered HOT set: every reference must point at something that exists.

Heat reports a dangling ``get_param``/``get_resource``/``get_attr``/``depends_on`` only when the
stack is validated on a cloud; these checks catch it at render time, also for site overrides.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from heatgen.render.intrinsics import targets

PSEUDO_PARAMETERS = frozenset({"OS::stack_id", "OS::stack_name", "OS::project_id"})
_CHECKED = ("get_param", "get_resource", "get_attr", "get_file")


def check_template(
    template: Mapping[str, Any], name: str, files: Mapping[str, Any]
) -> list[str]:
    """Return one message per dangling reference in ``template`` (named ``name``)."""
    problems: list[str] = []
    parameters = set(template.get("parameters") or {}) | PSEUDO_PARAMETERS
    resources: Mapping[str, Any] = template.get("resources") or {}
    sections = [(f"resources.{r}", body) for r, body in resources.items()]
    sections += [(f"outputs.{o}", body) for o, body in (template.get("outputs") or {}).items()]

    for where, body in sections:
        for function, target in targets(body, _CHECKED):
            if function == "get_param" and target not in parameters:
                problems.append(f"{name}: {where}: get_param of undeclared parameter {target!r}")
            elif function in ("get_resource", "get_attr") and target not in resources:
                problems.append(f"{name}: {where}: {function} of unknown resource {target!r}")
            elif function == "get_file" and target not in files:
                problems.append(f"{name}: {where}: get_file of {target!r}, which is not rendered")
        if where.startswith("resources.") and isinstance(body, Mapping):
            depends = body.get("depends_on") or []
            for target in [depends] if isinstance(depends, str) else depends:
                if target not in resources:
                    problems.append(f"{name}: {where}: depends_on unknown resource {target!r}")
    return problems


def check_member_properties(
    template: Mapping[str, Any],
    name: str,
    registry: Mapping[str, str],
    templates: Mapping[str, Mapping[str, Any]],
) -> list[str]:
    """Check that properties passed to a template resource match its parameters."""
    problems: list[str] = []
    for rname, body in (template.get("resources") or {}).items():
        definitions = [body]
        properties = (body.get("properties") or {}) if isinstance(body, Mapping) else {}
        nested = properties.get("resource")
        if isinstance(nested, Mapping):
            definitions.append(nested)
        for definition in definitions:
            rtype = definition.get("type") if isinstance(definition, Mapping) else None
            member_file = registry.get(rtype) if isinstance(rtype, str) else None
            if member_file is None:
                continue
            member = templates.get(member_file)
            if member is None:
                problems.append(f"{name}: resources.{rname}: {rtype} maps to missing {member_file}")
                continue
            declared = member.get("parameters") or {}
            given = set(definition.get("properties") or {})
            for extra in sorted(given - set(declared)):
                problems.append(
                    f"{name}: resources.{rname}: property {extra!r} is not a parameter of "
                    f"{member_file}"
                )
            for needed in sorted(set(declared) - given):
                if "default" not in (declared[needed] or {}):
                    problems.append(
                        f"{name}: resources.{rname}: {member_file} parameter {needed!r} "
                        "is never given"
                    )
    return problems
