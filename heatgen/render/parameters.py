"""Which site value feeds which Heat parameter, and which CPU alarms a site gets: as data.

The environment file's ``parameters`` are :func:`heat_parameters` of the site: the grid's own
values and, for each worker group, its values under its names
(:class:`~heatgen.contract.GroupNames`), in the order of :data:`PARAMETER_MAP`. Thresholds are
in the units the telemetry backend compares (:mod:`heatgen.units`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from heatgen.config import Group, Mode, ScaleIn, Site, Telemetry
from heatgen.units import cpu_nanoseconds, plain_number, prometheus_percent_divisor


def alarm_threshold(site: Site, percent: float, group: Group | None = None) -> int | float:
    """The alarm threshold for ``percent`` CPU, in the units the telemetry backend compares.

    Gnocchi's ``rate:mean`` of the cumulative ``cpu`` metric is CPU-nanoseconds per bucket,
    so P % of a ``vcpus``-core worker is ``P/100 * granularity * 1e9 * vcpus``. The Prometheus
    query already yields a percentage. ``group``: whose vCPUs (default: the only group).
    """
    scaling = site.autoscaling
    if scaling.telemetry is Telemetry.PROMETHEUS:
        return plain_number(percent)
    vcpus = (group or site.groups[0]).vcpus
    return plain_number(round(cpu_nanoseconds(percent, scaling.granularity, vcpus)))


def server_group_value(group: Group) -> str:
    """What a group's members carry as ``metering.server_group``, with ``__STACK_ID__`` for
    the grid stack's id: the id alone for the one group of a ``workers:`` site; with the
    group's name after it in a grid of several groups, since ``server_group`` is the one
    member attribute Ceilometer copies into Gnocchi's instance resources and the Prometheus
    exporter's labels (``metering.worker_group`` reaches only the samples' metadata)."""
    return "__STACK_ID__" if group.names.single else f"__STACK_ID__-{group.name}"


def alarm_query_template(site: Site, group: Group | None = None) -> str:
    """The alarm query of ``group`` (default: the only group), with ``__STACK_ID__`` (and
    ``__GRANULARITY__``) left for Heat to fill: only that group's running members."""
    group = group or site.groups[0]
    server_group = server_group_value(group)
    if site.autoscaling.telemetry is Telemetry.PROMETHEUS:
        divisor = prometheus_percent_divisor(group.vcpus)
        return (
            f'avg(rate(ceilometer_cpu{{server_group="{server_group}"}}[__GRANULARITY__s]))'
            f" / {divisor}"
        )
    return json.dumps(
        {"and": [{"=": {"server_group": server_group}}, {"=": {"ended_at": None}}]}
    )


def _site(value_of: Callable[[Site], Any]) -> Callable[[Site, Group], Any]:
    return lambda site, group: value_of(site)


# Which value feeds which Heat parameter of the main template, in environment order; a
# parameter named in GROUP_PARAMETERS exists once per worker group, under the group's name.
PARAMETER_MAP: tuple[tuple[str, Callable[[Site, Group], Any]], ...] = (
    ("key_name", _site(lambda s: s.keypair)),
    ("private_network", _site(lambda s: s.network.private_network)),
    ("private_subnet", _site(lambda s: s.network.private_subnet)),
    ("floating_network", _site(lambda s: s.network.floating_network)),
    ("ssh_cidr", _site(lambda s: s.network.ssh_cidr)),
    ("master_image", _site(lambda s: s.master.image)),
    ("master_flavor", _site(lambda s: s.master.flavor)),
    ("master_volume_size", _site(lambda s: s.master.volume_size)),
    ("worker_image", lambda s, g: g.image),
    ("worker_flavor", lambda s, g: g.flavor),
    ("worker_min", lambda s, g: g.min),
    ("worker_max", lambda s, g: g.max),
    ("worker_desired", lambda s, g: g.desired),
    ("site_worker_desired", lambda s, g: g.desired),
    ("pool_name", _site(lambda s: s.condor.pool_name)),
    ("wait_timeout", _site(lambda s: s.wait_timeout)),
    ("cooldown", lambda s, g: g.autoscaling.cooldown),
    ("scale_up_step", lambda s, g: g.autoscaling.scale_up_step),
    ("scale_down_adjustment", lambda s, g: -g.autoscaling.scale_down_step),
    ("granularity", _site(lambda s: s.autoscaling.granularity)),
    ("evaluation_periods", lambda s, g: g.autoscaling.evaluation_periods),
    ("cpu_high_threshold", lambda s, g: alarm_threshold(s, g.autoscaling.cpu_high, g)),
    ("cpu_low_threshold", lambda s, g: alarm_threshold(s, g.autoscaling.cpu_low, g)),
)

GROUP_PARAMETERS = frozenset({
    "worker_image", "worker_flavor", "worker_min", "worker_max", "worker_desired",
    "site_worker_desired", "cooldown", "scale_up_step", "scale_down_adjustment",
    "evaluation_periods", "cpu_high_threshold", "cpu_low_threshold",
})
ALARM_PARAMETERS = frozenset(
    {"granularity", "evaluation_periods", "cpu_high_threshold", "cpu_low_threshold"}
)


@dataclass(frozen=True)
class AlarmSpec:
    name: str
    policy: str
    operator: str
    threshold_param: str
    description: str


def alarms_for(site: Site, group: Group | None = None) -> list[AlarmSpec]:
    """The CPU alarms of ``group`` (default: the only group): none without telemetry, no low
    alarm unless its scale_in is alarm."""
    group = group or site.groups[0]
    scaling = group.autoscaling
    if scaling.telemetry is Telemetry.NONE or scaling.mode is Mode.QUEUE:
        return []  # queue mode: `heatgen autoscale` decides from the job queue
    names = group.names
    whose = "the workers'" if names.single else f"group {group.name}'s workers'"
    alarms = [
        AlarmSpec(
            names.suffixed("cpu_alarm_high"),
            names.suffixed("scale_up_policy"),
            "gt",
            names.suffixed("cpu_high_threshold"),
            f"Scale up when {whose} mean CPU is above {plain_number(scaling.cpu_high)} %",
        )
    ]
    if scaling.scale_in is ScaleIn.ALARM:
        alarms.append(
            AlarmSpec(
                names.suffixed("cpu_alarm_low"),
                names.suffixed("scale_down_policy"),
                "lt",
                names.suffixed("cpu_low_threshold"),
                f"Scale down when {whose} mean CPU is below {plain_number(scaling.cpu_low)} %",
            )
        )
    return alarms


def heat_parameters(site: Site) -> dict[str, Any]:
    """The Heat parameter values of the main template for ``site``, in a stable order."""
    params: dict[str, Any] = {}
    with_alarms = any(alarms_for(site, group) for group in site.groups)
    for name, value_of in PARAMETER_MAP:
        if name in ALARM_PARAMETERS and not with_alarms:
            continue
        if name in GROUP_PARAMETERS:
            for group in site.groups:
                params[group.names.suffixed(name)] = value_of(site, group)
            continue
        value = value_of(site, site.groups[0])
        if value is not None:
            params[name] = value
    return params
