"""The site config's model: what a valid site is, as pydantic models and enums.

Unknown keys are errors (``extra="forbid"``) so that a typo never passes silently. Rules that
span fields are checked in :mod:`heatgen.config.validate`, beside the type errors.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from enum import Enum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from heatgen.contract import GroupNames

# pydantic looks for plugins in the metadata of every installed distribution as each model is
# built (about 80 ms with the OpenStack clients installed); heatgen's models take none. The
# variable is pydantic's own switch, set while this module builds its models and restored.
_PLUGINS = "PYDANTIC_DISABLE_PLUGINS"
_plugins_before = os.environ.get(_PLUGINS)
os.environ[_PLUGINS] = "__all__"

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


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False, defer_build=True)


Name = Annotated[str, Field(min_length=1, max_length=255)]
PositiveInt = Annotated[int, Field(strict=True, gt=0)]


class Network(_Model):
    private_network: Name
    private_subnet: Name
    floating_network: Name
    ssh_cidr: str = "0.0.0.0/0"

    @field_validator("ssh_cidr")
    @classmethod
    def _cidr(cls, value: str) -> str:
        try:
            return str(ipaddress.ip_network(value, strict=True))
        except ValueError as exc:
            raise ValueError(
                f"must be a network in CIDR form such as 192.0.2.0/24 ({exc})"
            ) from None


class Master(_Model):
    image: Name
    flavor: Name
    os: OsFamily = OsFamily.EL9
    volume_size: Annotated[int, Field(strict=True, gt=0, le=16384)] | None = None


class Workers(_Model):
    image: Name
    flavor: Name
    os: OsFamily = OsFamily.EL9
    vcpus: Annotated[int, Field(strict=True, gt=0, le=1024)]
    min: Annotated[int, Field(strict=True, ge=0, le=10000)]
    max: Annotated[int, Field(strict=True, ge=1, le=10000)]
    desired: Annotated[int, Field(strict=True, ge=0, le=10000)]


Percent = Annotated[float, Field(strict=False, gt=0, le=100)]


class Autoscaling(_Model):
    telemetry: Telemetry = Telemetry.GNOCCHI
    cpu_high: Percent = 50
    cpu_low: Percent = 10
    granularity: Annotated[int, Field(strict=True, gt=0, le=86400)] = 300
    evaluation_periods: Annotated[int, Field(strict=True, ge=1, le=100)] = 2
    cooldown: Annotated[int, Field(strict=True, ge=0, le=86400)] = 60
    scale_up_step: Annotated[int, Field(strict=True, ge=1, le=1000)] = 1
    scale_down_step: Annotated[int, Field(strict=True, ge=1, le=1000)] = 1
    scale_in: ScaleIn = ScaleIn.ALARM
    # queue mode (`heatgen autoscale`): no CPU alarms; decisions from the job queue
    mode: Mode = Mode.CPU
    interval: Annotated[int, Field(strict=True, ge=5, le=3600)] = 60
    idle_timeout: Annotated[int, Field(strict=True, ge=0, le=86400)] = 600
    join_timeout: Annotated[int, Field(strict=True, ge=60, le=86400)] = 900
    scale_up_delay: Annotated[int, Field(strict=True, ge=0, le=86400)] = 0
    max_scale_in: Annotated[int, Field(strict=True, ge=1, le=10000)] | None = None
    keep_idle: Annotated[int, Field(strict=True, ge=0, le=10000)] = 0

    @field_validator("cpu_high", "cpu_low", mode="before")
    @classmethod
    def _number(cls, value: Any) -> Any:
        if as_number(value) is None:
            raise ValueError("must be a number")
        return value

    def scale_in_limit(self, size: int) -> int:
        """Members one decision may remove from a group of ``size``: ``max_scale_in``, by
        default 10 % of the group and at least 1."""
        return self.max_scale_in if self.max_scale_in is not None else max(1, size // 10)


class GroupAutoscaling(_Model):
    """A worker group's overrides of the site's ``autoscaling`` section. The telemetry backend
    and its granularity are the cloud's, and one decision loop (``mode``, ``interval``) runs
    for the whole grid, so those are set for the whole site only."""

    cpu_high: Percent | None = None
    cpu_low: Percent | None = None
    evaluation_periods: Annotated[int, Field(strict=True, ge=1, le=100)] | None = None
    cooldown: Annotated[int, Field(strict=True, ge=0, le=86400)] | None = None
    scale_up_step: Annotated[int, Field(strict=True, ge=1, le=1000)] | None = None
    scale_down_step: Annotated[int, Field(strict=True, ge=1, le=1000)] | None = None
    scale_in: ScaleIn | None = None
    idle_timeout: Annotated[int, Field(strict=True, ge=0, le=86400)] | None = None
    join_timeout: Annotated[int, Field(strict=True, ge=60, le=86400)] | None = None
    scale_up_delay: Annotated[int, Field(strict=True, ge=0, le=86400)] | None = None
    max_scale_in: Annotated[int, Field(strict=True, ge=1, le=10000)] | None = None
    keep_idle: Annotated[int, Field(strict=True, ge=0, le=10000)] | None = None

    @field_validator("cpu_high", "cpu_low", mode="before")
    @classmethod
    def _number(cls, value: Any) -> Any:
        if value is not None and as_number(value) is None:
            raise ValueError("must be a number")
        return value

    def over(self, site: Autoscaling) -> Autoscaling:
        """The site's section with this group's overrides applied."""
        given = {k: v for k, v in self.model_dump().items() if v is not None}
        return site.model_copy(update=given)


def _check_start(value: str | None) -> str | None:
    if value is not None and "\n" in value:
        raise ValueError("must be a single-line ClassAd expression")
    if value is not None and MARKER_PREFIX in value:
        raise ValueError(f"must not contain {MARKER_PREFIX!r}: Heat replaces it at boot")
    return value


class WorkerGroup(_Model):
    """One group of ``worker_groups``: workers of one flavor, scaled on their own."""

    name: Annotated[str, Field(pattern=GROUP_NAME_PATTERN)]
    image: Name
    flavor: Name
    os: OsFamily = OsFamily.EL9
    vcpus: Annotated[int, Field(strict=True, gt=0, le=1024)]
    memory_mb: Annotated[int, Field(strict=True, gt=0, le=16 * 1024 * 1024)] | None = None
    gpus: Annotated[int, Field(strict=True, ge=0, le=64)] = 0
    min: Annotated[int, Field(strict=True, ge=0, le=10000)]
    max: Annotated[int, Field(strict=True, ge=1, le=10000)]
    desired: Annotated[int, Field(strict=True, ge=0, le=10000)]
    start: Annotated[str, Field(min_length=1, max_length=4096)] | None = None
    autoscaling: GroupAutoscaling = GroupAutoscaling()

    @field_validator("start")
    @classmethod
    def _one_line(cls, value: str | None) -> str | None:
        return _check_start(value)


class Condor(_Model):
    pool_name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=63)]
    version: Annotated[str, Field(pattern=CONDOR_VERSION_PATTERN)] = "24.0"
    start: Annotated[str, Field(min_length=1, max_length=4096)] | None = None
    extra_config: list[Annotated[str, Field(max_length=4096)]] = []
    slots: Literal["partitionable", "static"] = "partitionable"
    retirement_time: Annotated[
        int, Field(strict=True, gt=0, le=RETIREMENT_TIME_MAX)
    ] = RETIREMENT_TIME_DEFAULT

    @field_validator("version")
    @classmethod
    def _supported(cls, value: str) -> str:
        if value != DEBIAN13_CONDOR_CHANNEL and int(value.partition(".")[0]) < CONDOR_MIN_MAJOR:
            raise ValueError(
                f"must be {CONDOR_MIN_MAJOR}.0 or newer: the boot payload relies on "
                f"HTCondor {CONDOR_MIN_MAJOR}'s token-only security (the one exception is "
                f'"{DEBIAN13_CONDOR_CHANNEL}" with os: debian13, Debian 13\'s own HTCondor)'
            )
        return value

    @field_validator("start")
    @classmethod
    def _one_line(cls, value: str | None) -> str | None:
        return _check_start(value)

    @field_validator("extra_config")
    @classmethod
    def _config_lines(cls, lines: list[str], info: ValidationInfo) -> list[str]:
        for index, line in enumerate(lines):
            if "\n" in line:
                raise ValueError(f"item {index}: must be a single configuration line")
            if MARKER_PREFIX in line:
                raise ValueError(
                    f"item {index}: must not contain {MARKER_PREFIX!r}: Heat replaces it at boot"
                )
        start = info.data.get("start") or ""
        size = sum(len(text.encode("utf-8")) + 7 for text in [start, *lines])
        if size > USER_TEXT_BUDGET:
            raise ValueError(
                f"{size} bytes of HTCondor configuration (with condor.start) do not fit the "
                f"user data Nova accepts: at most {USER_TEXT_BUDGET}"
            )
        return lines


class Site(_Model):
    """A validated site config."""

    site: Annotated[str, Field(pattern=SITE_NAME_PATTERN, max_length=60)]
    cloud: Annotated[str, Field(min_length=1, max_length=255)] | None = None
    heat_template_version: str = "2021-04-16"
    keypair: Name
    network: Network
    master: Master
    # One of the two (checked in heatgen.config.validate): `workers` is the shorthand for a
    # single group, rendered under the names a grid of one group always had.
    workers: Workers | None = None
    worker_groups: Annotated[
        list[WorkerGroup], Field(min_length=1, max_length=MAX_WORKER_GROUPS)
    ] | None = None
    autoscaling: Autoscaling = Autoscaling()
    condor: Condor
    wait_timeout: Annotated[int, Field(strict=True, ge=1, le=WAIT_TIMEOUT_MAX)] = 1800

    @field_validator("heat_template_version", mode="before")
    @classmethod
    def _version(cls, value: Any) -> Any:
        text = str(value)
        if text not in HEAT_TEMPLATE_VERSIONS:
            raise ValueError(f"must be one of {', '.join(HEAT_TEMPLATE_VERSIONS)}")
        return text

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



# The models build their validators when first used (defer_build): only Site's is needed, which
# holds the others' schemas; it is built here, while plugins are off.
Site.model_rebuild(force=True)
if _plugins_before is None:
    del os.environ[_PLUGINS]
else:
    os.environ[_PLUGINS] = _plugins_before


def as_number(value: Any) -> float | None:
    """``value`` as a float if it is a YAML number (booleans are not), else None."""
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    return float(value) if ok else None
