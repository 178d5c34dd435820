"""Reading a grid: its stack, status (members, outputs, events, alarm states) and outputs."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from heatgen.cloud.group import Member, group_members
from heatgen.cloud.interface import Cloud, Event, Stack
from heatgen.config import Site, Telemetry
from heatgen.contract import secret_output
from heatgen.errors import CloudError, NotDeployed
from heatgen.redact import redact_url


def not_deployed(site: Site) -> NotDeployed:
    return NotDeployed(f"stack {site.site} does not exist in this cloud; run `heatgen deploy`")


def require_stack(cloud: Cloud, site: Site, outputs: bool = True) -> Stack:
    """The site's stack; ``outputs=False`` for its status and parameters alone (see
    :meth:`Cloud.get_stack`)."""
    stack = cloud.get_stack(site.site, outputs=outputs)
    if stack is None:
        raise not_deployed(site)
    return stack


def shown_outputs(stack: Stack, show_secrets: bool) -> dict[str, Any]:
    out = dict(sorted(stack.outputs.items()))
    if not show_secrets:
        for key in [key for key in out if secret_output(key)]:
            out[key] = redact_url(out[key])
    return out


@dataclass(frozen=True)
class StatusReport:
    stack: Stack
    members: list[Member]
    outputs: Mapping[str, Any]
    events: list[Event]
    # name -> Aodh state (alarm, ok, insufficient data)
    alarms: Mapping[str, str] = field(default_factory=dict)
    alarms_unavailable: str | None = None  # why the states could not be read

    def by_group(self) -> dict[str, list[Member]]:
        """The members of each worker group, in the order the groups first appear."""
        groups: dict[str, list[Member]] = {}
        for member in self.members:
            groups.setdefault(member.group, []).append(member)
        return groups

    def as_dict(self) -> dict[str, Any]:
        return {
            "stack": {"name": self.stack.name, "id": self.stack.id,
                      "status": self.stack.status, "reason": self.stack.reason},
            "workers": {
                "count": len(self.members),
                "members": [
                    {"name": m.name, "status": m.status, "server_id": m.server_id or "",
                     "reason": m.reason, "group": m.group}
                    for m in self.members
                ],
            },
            "groups": {
                group: {"count": len(of), "members": [m.name for m in of]}
                for group, of in self.by_group().items()
            },
            "master": {
                "floating_ip": self.outputs.get("master_floating_ip"),
                "private_ip": self.outputs.get("master_private_ip"),
            },
            "outputs": dict(self.outputs),
            "events": [e.__dict__ for e in self.events],
            "alarms": dict(self.alarms),
            "alarms_unavailable": self.alarms_unavailable,
        }


def status(
    cloud: Cloud, site: Site, show_secrets: bool = False, last_events: int = 5
) -> StatusReport:
    stack = require_stack(cloud, site)
    events = list(reversed(cloud.newest_events(stack.id, last_events) or []))
    alarms: dict[str, str] = {}
    unavailable = None
    if site.autoscaling.telemetry is not Telemetry.NONE:  # else the grid has no alarms
        try:
            alarms = {a.name: a.state for a in cloud.alarms(stack.id)}
        except CloudError as error:
            # Alarm states are extra information: a cloud without Aodh must not fail `status`.
            unavailable = str(error)
    return StatusReport(stack, group_members(cloud, stack), shown_outputs(stack, show_secrets),
                        events, alarms, unavailable)
