"""The site config's rules as pydantic models: the reference for what a valid site is.

Every config error message comes from these models (and :mod:`heatgen.config.validate`), and
so does ``heatgen schema``; they are imported only then, or when the fast check of
:mod:`heatgen.config.check` leaves a config to them. A valid result is converted to the
pydantic-free types of :mod:`heatgen.config.model`, which the rest of heatgen sees.

Unknown keys are errors (``extra="forbid"``) so that a typo never passes silently. Rules that
span fields are checked in :mod:`heatgen.config.validate`, beside the type errors.
"""

from __future__ import annotations

import ipaddress
import os
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from heatgen.config import model
from heatgen.config.model import (
    CONDOR_MIN_MAJOR,
    CONDOR_VERSION_PATTERN,
    DEBIAN13_CONDOR_CHANNEL,
    GROUP_NAME_PATTERN,
    HEAT_TEMPLATE_VERSIONS,
    MARKER_PREFIX,
    MAX_WORKER_GROUPS,
    POOL_NAME_PATTERN,
    RETIREMENT_TIME_DEFAULT,
    RETIREMENT_TIME_MAX,
    SITE_NAME_PATTERN,
    USER_TEXT_BUDGET,
    WAIT_TIMEOUT_MAX,
    Mode,
    OsFamily,
    ScaleIn,
    Telemetry,
    as_number,
)

# pydantic looks for plugins in the metadata of every installed distribution as each model is
# built (about 80 ms with the OpenStack clients installed); heatgen's models take none. The
# variable is pydantic's own switch, set while this module builds its models and restored.
_PLUGINS = "PYDANTIC_DISABLE_PLUGINS"
_plugins_before = os.environ.get(_PLUGINS)
os.environ[_PLUGINS] = "__all__"


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
    pool_name: Annotated[str, Field(pattern=POOL_NAME_PATTERN, max_length=63)]
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


# The models build their validators when first used (defer_build): only Site's is needed, which
# holds the others' schemas; it is built here, while plugins are off.
Site.model_rebuild(force=True)
if _plugins_before is None:
    del os.environ[_PLUGINS]
else:
    os.environ[_PLUGINS] = _plugins_before


def to_site(site: Site) -> model.Site:
    """The validated model as the pydantic-free :class:`heatgen.config.model.Site`."""
    return _converted(site)  # type: ignore[no-any-return]


def _converted(value: Any) -> Any:
    if isinstance(value, BaseModel):
        section = model.SECTIONS[type(value).__name__]
        return section(**{name: _converted(getattr(value, name))
                          for name in type(value).model_fields})
    if isinstance(value, list):
        return [_converted(item) for item in value]
    return value
