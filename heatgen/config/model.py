"""The site config's model: a validated site as frozen dataclasses, with its enums and limits.

Nothing here imports pydantic: a valid config is checked and built by
:mod:`heatgen.config.check` without it. The pydantic models in :mod:`heatgen.config.schema`
are the rules' reference: every error message comes from them (and from
:mod:`heatgen.config.validate`), and so does ``heatgen schema``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Literal, Self

from heatgen.contract import GroupNames

# Heat's own limits and the template versions heatgen can emit (conditions need 2016-10-14).
HEAT_TEMPLATE_VERSIONS = (
    "2016-10-14",
    "2017-02-24",
    "2017-09-01",
    "2018-03-02",
    "2018-08-31",
    "2021-04-16",
)
WAIT_TIMEOUT_MAX = 43200

SITE_NAME_PATTERN = r"^[a-zA-Z][a-zA-Z0-9_.-]*$"
GROUP_NAME_PATTERN = r"^[a-z][a-z0-9-]{0,19}$"
POOL_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
MAX_WORKER_GROUPS = 20
CONDOR_VERSION_PATTERN = r"^[0-9]+\.(x|[0-9]+)$"
# The boot payload drops ANONYMOUS and CLAIMTOBE, which needs HTCondor 24 on every node; the
# one exception is Debian 13's own archive, whose only HTCondor is 23.9 (os: debian13 on every
# node, checked in heatgen.config.validate).
CONDOR_MIN_MAJOR = 24
DEBIAN13_CONDOR_CHANNEL = "23.9"
# How long a draining worker's running jobs may go on (MAXJOBRETIREMENTTIME), in seconds.
RETIREMENT_TIME_DEFAULT = 86400
RETIREMENT_TIME_MAX = 30 * 86400
# Heat replaces these markers in the boot payload; user text must not contain them.
MARKER_PREFIX = "__HEATGEN_"
# User text in the payload, so that master and worker user data stay under Nova's 64 KiB.
USER_TEXT_BUDGET = 24 * 1024


class Telemetry(str, Enum):
    GNOCCHI = "gnocchi"
    PROMETHEUS = "prometheus"
    NONE = "none"


class ScaleIn(str, Enum):
    ALARM = "alarm"
    GUARDED = "guarded"
    OFF = "off"


class Mode(str, Enum):
    """How the groups follow the load: Aodh CPU alarms (the 2017 design), or `heatgen
    autoscale` deciding from the job queue."""

    CPU = "cpu"
    QUEUE = "queue"


class OsFamily(str, Enum):
    EL9 = "el9"
    UBUNTU_2204 = "ubuntu22.04"
    UBUNTU_2404 = "ubuntu24.04"
    DEBIAN_13 = "debian13"


class _Section:
    """What every section of a validated site offers besides its fields."""

    def model_copy(self, *, update: dict[str, Any] | None = None) -> Self:
        """A copy with ``update``'s fields replaced (not validated again)."""
        return dataclasses.replace(self, **(update or {}))  # type: ignore[type-var]


@dataclass(frozen=True, kw_only=True)
class Network(_Section):
    private_network: str
    private_subnet: str
    floating_network: str
    ssh_cidr: str = "0.0.0.0/0"


@dataclass(frozen=True, kw_only=True)
class Master(_Section):
    image: str
    flavor: str
    os: OsFamily = OsFamily.EL9
    volume_size: int | None = None


@dataclass(frozen=True, kw_only=True)
class Workers(_Section):
    image: str
    flavor: str
    os: OsFamily = OsFamily.EL9
    vcpus: int
    min: int
    max: int
    desired: int


@dataclass(frozen=True, kw_only=True)
class Autoscaling(_Section):
    telemetry: Telemetry = Telemetry.GNOCCHI
    cpu_high: float = 50
    cpu_low: float = 10
    granularity: int = 300
    evaluation_periods: int = 2
    cooldown: int = 60
    scale_up_step: int = 1
    scale_down_step: int = 1
    scale_in: ScaleIn = ScaleIn.ALARM
    # queue mode (`heatgen autoscale`): no CPU alarms; decisions from the job queue
    mode: Mode = Mode.CPU
    interval: int = 60
    idle_timeout: int = 600
    join_timeout: int = 900
    scale_up_delay: int = 0
    max_scale_in: int | None = None
    keep_idle: int = 0

    def scale_in_limit(self, size: int) -> int:
        """Members one decision may remove from a group of ``size``: ``max_scale_in``, by
        default 10 % of the group and at least 1."""
        return self.max_scale_in if self.max_scale_in is not None else max(1, size // 10)


@dataclass(frozen=True, kw_only=True)
class GroupAutoscaling(_Section):
    """A worker group's overrides of the site's ``autoscaling`` section. The telemetry backend
    and its granularity are the cloud's, and one decision loop (``mode``, ``interval``) runs
    for the whole grid, so those are set for the whole site only."""

    cpu_high: float | None = None
    cpu_low: float | None = None
    evaluation_periods: int | None = None
    cooldown: int | None = None
    scale_up_step: int | None = None
    scale_down_step: int | None = None
    scale_in: ScaleIn | None = None
    idle_timeout: int | None = None
    join_timeout: int | None = None
    scale_up_delay: int | None = None
    max_scale_in: int | None = None
    keep_idle: int | None = None

    def over(self, site: Autoscaling) -> Autoscaling:
        """The site's section with this group's overrides applied."""
        given = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return dataclasses.replace(site, **{k: v for k, v in given.items() if v is not None})


@dataclass(frozen=True, kw_only=True)
class WorkerGroup(_Section):
    """One group of ``worker_groups``: workers of one flavor, scaled on their own."""

    name: str
    image: str
    flavor: str
    os: OsFamily = OsFamily.EL9
    vcpus: int
    min: int
    max: int
    desired: int
    memory_mb: int | None = None
    gpus: int = 0
    start: str | None = None
    autoscaling: GroupAutoscaling = GroupAutoscaling()


@dataclass(frozen=True, kw_only=True)
class Condor(_Section):
    pool_name: str
    version: str = "24.0"
    start: str | None = None
    extra_config: list[str] = field(default_factory=list)
    slots: Literal["partitionable", "static"] = "partitionable"
    retirement_time: int = RETIREMENT_TIME_DEFAULT


@dataclass(frozen=True, kw_only=True)
class Site(_Section):
    """A validated site config."""

    site: str
    cloud: str | None = None
    heat_template_version: str = "2021-04-16"
    keypair: str
    network: Network
    master: Master
    # One of the two (checked in heatgen.config.validate): `workers` is the shorthand for a
    # single group, rendered under the names a grid of one group always had.
    workers: Workers | None = None
    worker_groups: list[WorkerGroup] | None = None
    autoscaling: Autoscaling = Autoscaling()
    condor: Condor
    wait_timeout: int = 1800

    @property
    def groups(self) -> tuple[Group, ...]:
        """Every worker group, in config order: the one of ``workers``, or ``worker_groups``."""
        if self.worker_groups is None:
            assert self.workers is not None, "validate_site checks workers or worker_groups"
            w = self.workers
            return (Group(GroupNames.of(None), w.image, w.flavor, w.os, w.vcpus, None, 0,
                          w.min, w.max, w.desired, None, self.autoscaling, "workers"),)
        return tuple(
            Group(GroupNames.of(g.name), g.image, g.flavor, g.os, g.vcpus, g.memory_mb, g.gpus,
                  g.min, g.max, g.desired, g.start, g.autoscaling.over(self.autoscaling),
                  f"worker_groups[{index}]")
            for index, g in enumerate(self.worker_groups)
        )

    def group(self, name: str | None) -> Group | None:
        """The group called ``name``; None: the only group (None if there are several)."""
        groups = self.groups
        if name is None:
            return groups[0] if len(groups) == 1 else None
        return next((g for g in groups if g.name == name), None)

    @property
    def grouped(self) -> bool:
        """The site lists ``worker_groups`` (names carry the group), not ``workers``."""
        return self.worker_groups is not None


@dataclass(frozen=True)
class Group:
    """A worker group as the rest of heatgen sees it, whichever way the site gave it; its
    ``autoscaling`` is the site's with the group's overrides applied."""

    names: GroupNames
    image: str
    flavor: str
    os: OsFamily
    vcpus: int
    memory_mb: int | None
    gpus: int
    min: int
    max: int
    desired: int
    start: str | None
    autoscaling: Autoscaling
    where: str  # how hints name its fields: "workers" or "worker_groups[1]"

    @property
    def name(self) -> str:
        return self.names.group


SECTIONS: dict[str, type[_Section]] = {
    cls.__name__: cls
    for cls in (Network, Master, Workers, Autoscaling, GroupAutoscaling, WorkerGroup, Condor, Site)
}


def as_number(value: Any) -> float | None:
    """``value`` as a float if it is a YAML number (booleans are not), else None."""
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    return float(value) if ok else None
