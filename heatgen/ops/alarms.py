"""A grid's alarms as the user configured them: ``heatgen alarms`` and ``heatgen status``.

Pure functions over :class:`heatgen.cloud.Alarm`: thresholds are shown both in Aodh's units
(CPU-nanoseconds per granularity bucket of ``rate:mean``) and as the CPU percentage the site
config asked for; action URLs lose their credentials (``trust+`` user info, signatures).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from heatgen.cloud.interface import Alarm, Cloud
from heatgen.config import Group, Site, Telemetry
from heatgen.ops.inspect import require_stack
from heatgen.redact import redact_url
from heatgen.units import cpu_percent


@dataclass(frozen=True)
class Transition:
    time: str
    type: str
    detail: str  # the new state, or what changed
    reason: str


@dataclass(frozen=True)
class AlarmView:
    name: str
    id: str
    type: str
    state: str
    since: str
    threshold: float | None
    threshold_percent: float | None
    operator: str
    query: Any
    actions: list[str]
    history: list[Transition] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def alarm_group(site: Site, name: str) -> Group:
    """The worker group an alarm belongs to, by the resource name Heat puts in the alarm's
    name (``<stack>-cpu_alarm_high_gpu-<id>``); the longest match wins, since the single
    group's ``cpu_alarm_high`` starts every group's name."""
    found = [(len(base), g) for g in site.groups
             for base in (g.names.suffixed("cpu_alarm_high"), g.names.suffixed("cpu_alarm_low"))
             if re.search(rf"(^|-){re.escape(base)}(-|$)", name)]
    return max(found, key=lambda item: item[0])[1] if found else site.groups[0]


def threshold_percent(site: Site, rule: Mapping[str, Any], name: str = "") -> float | None:
    """The CPU percentage an Aodh threshold stands for (inverse of the render's threshold);
    ``name``: the alarm's, which tells whose workers' vCPUs it counts."""
    threshold = rule.get("threshold")
    if not isinstance(threshold, int | float):
        return None
    if site.autoscaling.telemetry is Telemetry.PROMETHEUS:
        return float(threshold)
    granularity = rule.get("granularity") or site.autoscaling.granularity
    return cpu_percent(threshold, granularity, alarm_group(site, name).vcpus)


def redact_action(action: str) -> str:
    """``trust+http://user:pw@host/path?sig`` -> ``trust+http://host/path?<redacted>``."""
    scheme, sep, rest = action.partition("+")
    if sep and "://" in rest:
        return f"{scheme}+{redact_url(rest)}"
    return str(redact_url(action))


def _transition(raw: Mapping[str, Any]) -> Transition:
    detail = str(raw.get("detail") or "")
    reason = str(raw.get("reason") or "")
    try:
        parsed = json.loads(detail)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict) and "state" in parsed:
        detail = str(parsed["state"])
        reason = reason or str(parsed.get("transition_reason") or "")
    return Transition(
        time=str(raw.get("timestamp") or ""), type=str(raw.get("type") or ""),
        detail=detail, reason=reason[:300],
    )


def view(site: Site, alarm: Alarm, history: Sequence[Mapping[str, Any]] = ()) -> AlarmView:
    """``since`` is the newest state transition when ``history`` is given: Aodh's own
    ``state_timestamp`` stays at the creation time when the evaluator changes the state."""
    rule = alarm.rule
    transitions = sorted((_transition(h) for h in history), key=lambda t: t.time)
    changes = [t.time for t in transitions if t.type in ("state transition", "creation")]
    query = rule.get("query")
    if isinstance(query, str):
        try:
            query = json.loads(query)
        except ValueError:
            pass
    return AlarmView(
        name=alarm.name, id=alarm.id, type=alarm.type, state=alarm.state,
        since=changes[-1] if changes else alarm.state_timestamp,
        threshold=rule.get("threshold"),
        threshold_percent=threshold_percent(site, rule, alarm.name),
        operator=str(rule.get("comparison_operator") or ""), query=query,
        actions=[redact_action(a) for a in alarm.actions],
        history=transitions,
    )


def site_alarms(cloud: Cloud, site: Site, history: bool = False) -> list[AlarmView]:
    """The stack's alarms, optionally with every transition and its reason."""
    stack = require_stack(cloud, site)
    views = [view(site, alarm, cloud.alarm_history(alarm.id)) for alarm in cloud.alarms(stack.id)]
    if not history:
        views = [replace(v, history=[]) for v in views]
    return views


def format_text(alarms: Sequence[AlarmView]) -> str:
    if not alarms:
        return "no alarms (autoscaling.telemetry: none, or the cloud maps them to OS::Heat::None)"
    lines = []
    for alarm in alarms:
        pct = "" if alarm.threshold_percent is None else f" ({alarm.threshold_percent:g} % CPU)"
        lines.append(f"{alarm.name}: {alarm.state} since {alarm.since}")
        lines.append(f"  type:      {alarm.type} ({alarm.id})")
        lines.append(f"  threshold: {alarm.operator} {alarm.threshold}{pct}")
        query = alarm.query if isinstance(alarm.query, str) else json.dumps(alarm.query)
        lines.append(f"  query:     {query}")
        for action in alarm.actions:
            lines.append(f"  action:    {action}")
        for t in alarm.history:
            lines.append(f"  {t.time}  {t.type:<14} {t.detail:<18} {t.reason}")
    return "\n".join(lines)
