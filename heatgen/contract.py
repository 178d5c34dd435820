"""What the rest of heatgen relies on in a rendered grid: resource names and stack outputs.

``templates/grid.yaml.j2`` defines them; this module is the one place that names them, and
:class:`GridOutputs` the one reader of a grid stack's outputs (a test checks both against every
rendered example). Secret outputs are pre-signed URLs: shown only on request
(``--show-secrets``), redacted otherwise.
"""

from __future__ import annotations

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
    def of(cls, outputs: Mapping[str, Any]) -> GridOutputs:
        return cls(
            master_floating_ip=_text(outputs.get("master_floating_ip")),
            master_private_ip=_text(outputs.get("master_private_ip")),
            worker_count=as_int(outputs.get("worker_count")),
            worker_server_ids=_by_member(outputs.get("worker_server_ids")),
            worker_private_ips=_by_member(outputs.get("worker_private_ips")),
            scale_up_url=_text(outputs.get("scale_up_url")),
            scale_down_url=_text(outputs.get("scale_down_url")),
        )
