"""Which site value feeds which Heat parameter, and which CPU alarms a site gets: as data.

The environment file's ``parameters`` are :func:`heat_parameters` of the site, in the order of
:data:`PARAMETER_MAP`; thresholds are in the units the telemetry backend compares
(:mod:`heatgen.units`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from heatgen.config import ScaleIn, Site, Telemetry
from heatgen.units import cpu_nanoseconds, plain_number, prometheus_percent_divisor


def alarm_threshold(site: Site, percent: float) -> int | float:
    """The alarm threshold for ``percent`` CPU, in the units the telemetry backend compares.

    Gnocchi's ``rate:mean`` of the cumulative ``cpu`` metric is CPU-nanoseconds per bucket,
    so P % of a ``vcpus``-core worker is ``P/100 * granularity * 1e9 * vcpus``. The Prometheus
    query already yields a percentage.
    """
    scaling = site.autoscaling
    if scaling.telemetry is Telemetry.PROMETHEUS:
        return plain_number(percent)
    return plain_number(round(cpu_nanoseconds(percent, scaling.granularity, site.workers.vcpus)))


def alarm_query_template(site: Site) -> str:
    """The alarm query, with ``__STACK_ID__`` (and ``__GRANULARITY__``) left for Heat to fill."""
    if site.autoscaling.telemetry is Telemetry.PROMETHEUS:
        divisor = prometheus_percent_divisor(site.workers.vcpus)
        return (
            'avg(rate(ceilometer_cpu{server_group="__STACK_ID__"}[__GRANULARITY__s]))'
            f" / {divisor}"
        )
    return json.dumps(
        {"and": [{"=": {"server_group": "__STACK_ID__"}}, {"=": {"ended_at": None}}]}
    )


# Which site value feeds which Heat parameter of the main template, in environment order.
PARAMETER_MAP: tuple[tuple[str, Callable[[Site], Any]], ...] = (
    ("key_name", lambda s: s.keypair),
    ("private_network", lambda s: s.network.private_network),
    ("private_subnet", lambda s: s.network.private_subnet),
    ("floating_network", lambda s: s.network.floating_network),
    ("ssh_cidr", lambda s: s.network.ssh_cidr),
    ("master_image", lambda s: s.master.image),
    ("master_flavor", lambda s: s.master.flavor),
    ("master_volume_size", lambda s: s.master.volume_size),
    ("worker_image", lambda s: s.workers.image),
    ("worker_flavor", lambda s: s.workers.flavor),
    ("worker_min", lambda s: s.workers.min),
    ("worker_max", lambda s: s.workers.max),
    ("worker_desired", lambda s: s.workers.desired),
    ("site_worker_desired", lambda s: s.workers.desired),
    ("pool_name", lambda s: s.condor.pool_name),
    ("wait_timeout", lambda s: s.wait_timeout),
    ("cooldown", lambda s: s.autoscaling.cooldown),
    ("scale_up_step", lambda s: s.autoscaling.scale_up_step),
    ("scale_down_adjustment", lambda s: -s.autoscaling.scale_down_step),
    ("granularity", lambda s: s.autoscaling.granularity),
    ("evaluation_periods", lambda s: s.autoscaling.evaluation_periods),
    ("cpu_high_threshold", lambda s: alarm_threshold(s, s.autoscaling.cpu_high)),
    ("cpu_low_threshold", lambda s: alarm_threshold(s, s.autoscaling.cpu_low)),
)

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


def alarms_for(site: Site) -> list[AlarmSpec]:
    """The CPU alarms the site gets: none without telemetry, no low alarm unless scale_in=alarm."""
    scaling = site.autoscaling
    if scaling.telemetry is Telemetry.NONE:
        return []
    alarms = [
        AlarmSpec(
            "cpu_alarm_high",
            "scale_up_policy",
            "gt",
            "cpu_high_threshold",
            f"Scale up when the workers' mean CPU is above {plain_number(scaling.cpu_high)} %",
        )
    ]
    if scaling.scale_in is ScaleIn.ALARM:
        alarms.append(
            AlarmSpec(
                "cpu_alarm_low",
                "scale_down_policy",
                "lt",
                "cpu_low_threshold",
                f"Scale down when the workers' mean CPU is below {plain_number(scaling.cpu_low)} %",
            )
        )
    return alarms


def heat_parameters(site: Site) -> dict[str, Any]:
    """The Heat parameter values of the main template for ``site``, in a stable order."""
    params: dict[str, Any] = {}
    with_alarms = bool(alarms_for(site))
    for name, value_of in PARAMETER_MAP:
        if name in ALARM_PARAMETERS and not with_alarms:
            continue
        value = value_of(site)
        if value is not None:
            params[name] = value
    return params
