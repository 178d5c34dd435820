"""What a real cloud would replace, where a stand-in hides it from Heat's preview.

On the sandbox, ``OS::Nova::Server``, ``OS::Neutron::Port`` and friends are mapped to
stand-ins (``OS::Heat::None`` or the pool's templates), which Heat updates in place whatever
changes: its preview then shows a keypair change as "updated" while a cloud would replace the
master. heatgen asks the rules of Heat's real plugins instead: the properties they cannot
update in place (``update_allowed=False`` in their schemas; a test holds this table against
Heat's own), and the server's update policies (``image``, ``flavor`` and ``user_data`` replace
the server under ``*_update_policy: REPLACE``). A reference to a replaced resource counts as a
changed value, so a replaced port shows up in its server's ``networks``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from heatgen.cloud.interface import Definition
from heatgen.config import parse_document
from heatgen.errors import ConfigError
from heatgen.ops.definitions import normal

NOT_UPDATABLE: Mapping[str, frozenset[str]] = {
    "OS::Nova::Server": frozenset({
        "admin_user", "availability_zone", "block_device_mapping", "block_device_mapping_v2",
        "config_drive", "diskConfig", "key_name", "personality", "reservation_id",
        "scheduler_hints", "security_groups", "user_data_format",
    }),
    "OS::Neutron::Port": frozenset({"mac_address", "network", "network_id"}),
    "OS::Neutron::FloatingIP": frozenset({
        "floating_ip_address", "floating_network", "floating_network_id", "floating_subnet",
        "value_specs",
    }),
    "OS::Neutron::SecurityGroup": frozenset(),
    "OS::Cinder::Volume": frozenset({
        "availability_zone", "image", "imageRef", "multiattach", "scheduler_hints",
        "snapshot_id", "source_volid",
    }),
}
# property -> (its update policy property, the policy's default, the value that replaces)
POLICIES: Mapping[str, Mapping[str, tuple[str, str]]] = {
    "OS::Nova::Server": {
        "flavor": ("flavor_update_policy", "RESIZE"),
        "image": ("image_update_policy", "REBUILD"),
        "user_data": ("user_data_update_policy", "REPLACE"),
    },
}
REPLACE = "REPLACE"


def _resolve(node: Any, parameters: Mapping[str, Any], replaced: set[str]) -> Any:
    """Parameters substituted; a reference to a replaced resource marked as a new value."""
    if isinstance(node, Mapping):
        if len(node) == 1:
            ((key, value),) = node.items()
            if key == "get_param":
                name = value[0] if isinstance(value, list) and value else value
                if isinstance(name, str) and name in parameters:
                    return {"param": normal(parameters[name])}
            if key in ("get_resource", "get_attr"):
                target = value[0] if isinstance(value, list) and value else value
                if isinstance(target, str) and target in replaced:
                    return {"replaced": target}
        return {k: _resolve(v, parameters, replaced) for k, v in node.items()}
    if isinstance(node, list):
        return [_resolve(item, parameters, replaced) for item in node]
    return node


def _replaces(rtype: str, old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """The changed properties that make a real ``rtype`` replace itself."""
    changed = {name for name in set(old) | set(new) if old.get(name) != new.get(name)}
    reasons = sorted(changed & NOT_UPDATABLE.get(rtype, frozenset()))
    for prop, (policy, default) in POLICIES.get(rtype, {}).items():
        if prop in changed:
            chosen = new.get(policy, old.get(policy, default))
            if chosen == REPLACE:
                reasons.append(f"{prop} (under {policy}: REPLACE)")
    return reasons


def _stood_in(rtype: str, registry: Mapping[str, Any]) -> bool:
    target = registry.get(rtype)
    return rtype in NOT_UPDATABLE and target is not None and target != rtype


def _replacements(
    old_resources: Mapping[str, Any], new_resources: Mapping[str, Any],
    old_parameters: Mapping[str, Any], new_parameters: Mapping[str, Any],
    registry: Mapping[str, Any],
) -> dict[str, list[str]]:
    """Resource name -> why a real cloud replaces it, following references until stable."""
    found: dict[str, list[str]] = {}
    grew = True
    while grew:
        grew = False
        for name, snippet in new_resources.items():
            before = old_resources.get(name)
            if name in found or not isinstance(snippet, Mapping) or \
                    not isinstance(before, Mapping):
                continue
            rtype = str(snippet.get("type", ""))
            if not _stood_in(rtype, registry) or before.get("type") != rtype:
                continue
            old_props = _resolve(before.get("properties") or {}, old_parameters, set())
            new_props = _resolve(snippet.get("properties") or {}, new_parameters, set(found))
            reasons = _replaces(rtype, old_props, new_props)
            if reasons:
                found[name] = reasons
                grew = True
    return found


def replaced_resources(old: Definition, new: Definition) -> dict[str, list[str]]:
    """The grid's own resources a real cloud would replace, with the properties why."""
    return _replacements(old.template.get("resources") or {},
                         new.template.get("resources") or {},
                         old.parameters, new.parameters, new.registry)


def replaced_members(old: Definition, new: Definition, group: str) -> dict[str, list[str]]:
    """The resources a real cloud would replace inside every member of ``group``: the member
    template's resources, fed the properties the group passes them."""
    sides = []
    for definition in (old, new):
        snippet = (definition.template.get("resources") or {}).get(group) or {}
        member = (snippet.get("properties") or {}).get("resource") or {}
        if not isinstance(member, Mapping):
            return {}
        template_name = definition.registry.get(str(member.get("type", "")))
        text = definition.files.get(str(template_name)) if template_name else None
        if text is None:
            return {}
        try:
            template = parse_document(text, str(template_name))
        except ConfigError:
            return {}
        passed = _resolve(member.get("properties") or {}, definition.parameters, set())
        sides.append((template.get("resources") or {}, passed))
    (old_resources, old_passed), (new_resources, new_passed) = sides
    return _replacements(old_resources, new_resources, old_passed, new_passed, new.registry)
