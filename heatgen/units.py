"""CPU units: one place for the arithmetic between "P % CPU" and what telemetry compares.

Ceilometer's ``cpu`` metric is cumulative CPU time in nanoseconds over all of a server's
vCPUs, so Gnocchi's ``rate:mean`` over a bucket of ``granularity`` seconds is CPU-nanoseconds
per bucket: P % of a ``vcpus``-core worker is ``P/100 * granularity * 1e9 * vcpus``. The
Prometheus exporter's ``ceilometer_cpu`` counts the same nanoseconds, so its per-second rate
divided by ``1e9 / 100 * vcpus`` is a percentage.
"""

from __future__ import annotations

NANOSECONDS = 1_000_000_000


def plain_number(value: float) -> int | float:
    """``3.0`` -> ``3``: whole numbers print without a fraction."""
    return int(value) if float(value).is_integer() else value


def cpu_nanoseconds(percent: float, granularity: int, vcpus: int) -> float:
    """CPU-nanoseconds per ``granularity`` bucket of a ``vcpus`` worker running at ``percent``."""
    return percent / 100 * granularity * NANOSECONDS * vcpus


def cpu_percent(nanoseconds: float, granularity: float, vcpus: int) -> float:
    """The inverse of :func:`cpu_nanoseconds`, rounded to a thousandth of a percent."""
    return round(nanoseconds / (float(granularity) * NANOSECONDS * vcpus) * 100, 3)


def prometheus_percent_divisor(vcpus: int) -> int:
    """What a per-second rate of ``ceilometer_cpu`` is divided by to read as a percentage."""
    return NANOSECONDS // 100 * vcpus
