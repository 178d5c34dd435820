"""What the rest of heatgen relies on in a rendered grid: resource names and stack outputs.

``templates/grid.yaml.j2`` defines them; this module is the one place that names them, and
:class:`GridOutputs` the one reader of a grid stack's outputs (a test checks both against every
rendered example). Secret outputs are pre-signed URLs: shown only on request
(``--show-secrets``), redacted otherwise.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

WORKER_GROUP = "workers"  # the OS::Heat::AutoScalingGroup
WAIT_HANDLE = "master_wait_handle"
WAIT_CONDITION = "master_wait"
# The master hands the execute nodes' token to Heat here; the group's members take it from the
# wait condition's data. Its data is a secret: never an output, never shown.
TOKEN_HANDLE = "worker_token_handle"
TOKEN_WAIT = "worker_token_wait"
TOKEN_SIGNAL_ID = "worker_token"
# Replacing any of these breaks the running pool: a plan that does needs --yes.
PROTECTED_RESOURCES = frozenset({"master", "master_port", "master_floating_ip", "pool_secret"})

# output key -> whether the value is a secret
OUTPUTS: Mapping[str, bool] = {
    "master_floating_ip": False,
    "master_private_ip": False,
    "master_id": False,
    "scale_up_url": True,
    "scale_down_url": True,
    "scale_up_alarm_url": True,
    "scale_down_alarm_url": True,
    "stack_key": False,
    "alarm_query": False,  # only with CPU alarms
    "wait_condition_data": False,
    "worker_count": False,
    "worker_server_ids": False,
    "worker_private_ips": False,
}
SECRET_OUTPUTS = frozenset(key for key, secret in OUTPUTS.items() if secret)
OPTIONAL_OUTPUTS = frozenset({"alarm_query"})
# Outputs each worker group has: the names above in a single-group grid, suffixed with the
# group (``worker_count_gpu``) in a grid of several.
GROUP_OUTPUTS = (
    "scale_up_url", "scale_down_url", "scale_up_alarm_url", "scale_down_alarm_url",
    "alarm_query", "worker_count", "worker_server_ids", "worker_private_ips",
)
# The single group of a ``workers:`` site: rendered under the names it always had.
DEFAULT_GROUP = "workers"


@dataclass(frozen=True)
class GroupNames:
    """What one worker group is called in the rendered grid: its AutoScalingGroup, its Heat
    parameters, policies, alarms, outputs and member files.

    The one group of a ``workers:`` site keeps the names of a single-group grid (``workers``,
    ``worker_desired``, ``scale_up_policy``...); each group of ``worker_groups`` gets them
    suffixed with its key (the name with ``-`` as ``_``, which Heat accepts everywhere):
    ``workers_gpu``, ``worker_desired_gpu``, ``scale_up_policy_gpu``.
    """

    group: str  # the group's name: DEFAULT_GROUP for a ``workers:`` site
    single: bool  # the one group of a ``workers:`` site (no suffix, no group tag)

    @classmethod
    def of(cls, group: str | None) -> GroupNames:
        """The names of group ``group``; None: the single group of a ``workers:`` site."""
        return cls(DEFAULT_GROUP, True) if group is None else cls(group, False)

    @classmethod
    def from_resource(cls, resource: str) -> GroupNames | None:
        """The names of the group whose AutoScalingGroup is ``resource`` (a group's key maps
        back to its name: names have no ``_``); None if it is no worker group's."""
        if resource == WORKER_GROUP:
            return cls.of(None)
        key = resource.removeprefix(f"{WORKER_GROUP}_")
        if key == resource or not re.fullmatch(r"[a-z][a-z0-9_]{0,19}", key):
            return None
        return cls.of(key.replace("_", "-"))

    @property
    def key(self) -> str:
        return self.group.replace("-", "_")

    def suffixed(self, name: str) -> str:
        return name if self.single else f"{name}_{self.key}"

    @property
    def resource(self) -> str:
        """The OS::Heat::AutoScalingGroup."""
        return self.suffixed(WORKER_GROUP)

    @property
    def member_type(self) -> str:
        return "HeatGen::Grid::Worker" + ("" if self.single else f"::{self.group}")

    @property
    def member_template(self) -> str:
        return "worker.yaml" if self.single else f"worker-{self.group}.yaml"

    @property
    def boot_file(self) -> str:
        return "worker-boot.yaml" if self.single else f"worker-boot-{self.group}.yaml"

    @property
    def desired(self) -> str:
        return self.suffixed("worker_desired")

    @property
    def min(self) -> str:
        return self.suffixed("worker_min")

    @property
    def max(self) -> str:
        return self.suffixed("worker_max")

    @property
    def site_desired(self) -> str:
        """The config's desired size at the last deploy (never changed by scaling)."""
        return self.suffixed("site_worker_desired")

    def output(self, name: str) -> str:
        """This group's output ``name`` (one of :data:`GROUP_OUTPUTS`)."""
        if name not in GROUP_OUTPUTS:
            raise KeyError(name)
        return self.suffixed(name)


def deployed_groups(template: Mapping[str, Any]) -> list[GroupNames]:
    """The worker groups of a deployed template, in template order."""
    found = (GroupNames.from_resource(name) for name in worker_group_resources(template))
    return [names for names in found if names is not None]


def worker_group_resources(template: Mapping[str, Any]) -> dict[str, str]:
    """The worker groups of a deployed template: AutoScalingGroup name -> member type, read
    from the template itself (so a group the site no longer lists is still found)."""
    resources = template.get("resources")
    found: dict[str, str] = {}
    for name, body in (resources.items() if isinstance(resources, Mapping) else ()):
        if not isinstance(body, Mapping) or body.get("type") != "OS::Heat::AutoScalingGroup":
            continue
        member = (body.get("properties") or {}).get("resource") or {}
        member_type = member.get("type") if isinstance(member, Mapping) else None
        if isinstance(member_type, str) and member_type.startswith("HeatGen::Grid::Worker"):
            found[str(name)] = member_type
    return found


def secret_output(key: str) -> bool:
    """Whether the output ``key`` of any group is a secret (a pre-signed or signal URL)."""
    return any(key == name or key.startswith(f"{name}_") for name in SECRET_OUTPUTS)


def _text(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None


def as_int(value: Any) -> int | None:
    """A parameter or output value as Heat returns it (often a string) as an int, or None."""
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _by_member(value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping):
        return {}
    return {str(name): str(item) for name, item in value.items() if item not in (None, "")}


@dataclass(frozen=True)
class GridOutputs:
    """What heatgen reads from a grid stack's outputs (absent or null values as None/empty)."""

    master_floating_ip: str | None = None
    master_private_ip: str | None = None
    worker_count: int | None = None
    worker_server_ids: Mapping[str, str] | None = None
    worker_private_ips: Mapping[str, str] | None = None
    scale_up_url: str | None = None
    scale_down_url: str | None = None

    @classmethod
    def of(cls, outputs: Mapping[str, Any], group: GroupNames | None = None) -> GridOutputs:
        """The outputs of a grid; the worker values of ``group`` (default: the single group
        of a ``workers:`` site)."""
        names = group or GroupNames.of(None)
        return cls(
            master_floating_ip=_text(outputs.get("master_floating_ip")),
            master_private_ip=_text(outputs.get("master_private_ip")),
            worker_count=as_int(outputs.get(names.output("worker_count"))),
            worker_server_ids=_by_member(outputs.get(names.output("worker_server_ids"))),
            worker_private_ips=_by_member(outputs.get(names.output("worker_private_ips"))),
            scale_up_url=_text(outputs.get(names.output("scale_up_url"))),
            scale_down_url=_text(outputs.get(names.output("scale_down_url"))),
        )
