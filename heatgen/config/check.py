"""A fast check of a valid site config, without pydantic.

:func:`check_site` builds the :class:`~heatgen.config.model.Site` of parsed YAML that is valid
in every respect the pydantic models of :mod:`heatgen.config.schema` and the cross-field rules
of :mod:`heatgen.config.validate` check, and returns None for anything else: a config it does
not pass goes to the pydantic path, which accepts it or says what is wrong. So this module
writes no error message, and its only risk is to pass a config the reference would refuse;
tests/test_config_check.py compares the two on every example and thousands of variations.

It accepts only the plain types YAML gives (``type(x) is int``, not a bool or a subclass):
whatever it is not sure of is the reference's to judge.
"""

from __future__ import annotations

import datetime
import re
from typing import Any, TypeVar

from heatgen.config.model import (
    CONDOR_MIN_MAJOR,
    CONDOR_VERSION_PATTERN,
    DEBIAN13_CONDOR_CHANNEL,
    GROUP_NAME_PATTERN,
    HEAT_TEMPLATE_VERSIONS,
    MARKER_PREFIX,
    MAX_WORKER_GROUPS,
    POOL_NAME_PATTERN,
    RETIREMENT_TIME_MAX,
    SITE_NAME_PATTERN,
    USER_TEXT_BUDGET,
    WAIT_TIMEOUT_MAX,
    Autoscaling,
    Condor,
    GroupAutoscaling,
    Master,
    Mode,
    Network,
    OsFamily,
    ScaleIn,
    Site,
    Telemetry,
    WorkerGroup,
    Workers,
)

E = TypeVar("E", Mode, OsFamily, ScaleIn, Telemetry)
_MISSING = object()


class _Doubt(Exception):
    """The config is not plainly valid: the reference path judges it."""


def check_site(data: Any) -> Site | None:
    """The site of ``data`` if it is plainly valid, else None (the pydantic path decides)."""
    try:
        return _site(data)
    except _Doubt:
        return None


# --- values -----------------------------------------------------------------------------------


def _fields(node: Any, allowed: frozenset[str]) -> dict[str, Any]:
    if type(node) is not dict or not all(type(key) is str for key in node):
        raise _Doubt
    if not node.keys() <= allowed:
        raise _Doubt
    return node


def _int(value: Any, low: int, high: int) -> int:
    if type(value) is not int or not low <= value <= high:
        raise _Doubt
    return value


def _optional_int(value: Any, low: int, high: int) -> int | None:
    return None if value is None else _int(value, low, high)


def _text(value: Any, low: int = 0, high: int | None = None) -> str:
    if type(value) is not str or len(value) < low or (high is not None and len(value) > high):
        raise _Doubt
    try:
        value.encode("utf-8")  # a lone surrogate: the reference's to judge
    except UnicodeEncodeError:
        raise _Doubt from None
    return value


def _name(value: Any) -> str:
    return _text(value, 1, 255)


def _matching(value: Any, pattern: str, high: int | None = None) -> str:
    text = _text(value, 0, high)
    # pydantic's patterns are Rust regexes: `$` is the end of the text, as in fullmatch
    if re.fullmatch(pattern.removeprefix("^").removesuffix("$"), text) is None:
        raise _Doubt
    return text


def _enum(value: Any, kind: type[E]) -> E:
    if type(value) is not str:
        raise _Doubt
    try:
        return kind(value)
    except ValueError:
        raise _Doubt from None


def _percent(value: Any) -> float:
    if type(value) not in (int, float) or not 0 < value <= 100:  # NaN fails too
        raise _Doubt
    return float(value)


def _start(value: Any) -> str | None:
    if value is None:
        return None
    text = _text(value, 1, 4096)
    if "\n" in text or MARKER_PREFIX in text:
        raise _Doubt
    return text


# --- sections ---------------------------------------------------------------------------------

_NETWORK = frozenset({"private_network", "private_subnet", "floating_network", "ssh_cidr"})
_MASTER = frozenset({"image", "flavor", "os", "volume_size"})
_WORKERS = frozenset({"image", "flavor", "os", "vcpus", "min", "max", "desired"})
_GROUP_SCALING = frozenset({
    "cpu_high", "cpu_low", "evaluation_periods", "cooldown", "scale_up_step", "scale_down_step",
    "scale_in", "idle_timeout", "join_timeout", "scale_up_delay", "max_scale_in", "keep_idle",
})
_SCALING = _GROUP_SCALING | {"telemetry", "granularity", "mode", "interval"}
_GROUP = _WORKERS | {"name", "memory_mb", "gpus", "start", "autoscaling"}
_CONDOR = frozenset({"pool_name", "version", "start", "extra_config", "slots",
                     "retirement_time"})
_SITE = frozenset({"site", "cloud", "heat_template_version", "keypair", "network", "master",
                   "workers", "worker_groups", "autoscaling", "condor", "wait_timeout"})


def _network(node: Any) -> Network:
    given = _fields(node, _NETWORK)
    kept: dict[str, Any] = {}
    if "ssh_cidr" in given:
        import ipaddress

        try:
            kept["ssh_cidr"] = str(ipaddress.ip_network(_text(given["ssh_cidr"]), strict=True))
        except ValueError:
            raise _Doubt from None
    return Network(private_network=_name(given.get("private_network")),
                   private_subnet=_name(given.get("private_subnet")),
                   floating_network=_name(given.get("floating_network")), **kept)


def _master(node: Any) -> Master:
    given = _fields(node, _MASTER)
    return Master(image=_name(given.get("image")), flavor=_name(given.get("flavor")),
                  os=_enum(given.get("os", "el9"), OsFamily),
                  volume_size=_optional_int(given.get("volume_size"), 1, 16384))


def _capacity(low: int, high: int, want: int) -> None:
    if not low <= want <= high:  # and so low <= high
        raise _Doubt


def _workers(node: Any) -> Workers | None:
    if node is None:  # not given (`workers: null` alone is refused by _site)
        return None
    given = _fields(node, _WORKERS)
    workers = Workers(image=_name(given.get("image")), flavor=_name(given.get("flavor")),
                      os=_enum(given.get("os", "el9"), OsFamily),
                      vcpus=_int(given.get("vcpus"), 1, 1024),
                      min=_int(given.get("min"), 0, 10000),
                      max=_int(given.get("max"), 1, 10000),
                      desired=_int(given.get("desired"), 0, 10000))
    _capacity(workers.min, workers.max, workers.desired)
    return workers


# (field, low, high) of the integer settings of an autoscaling section
_SCALING_INTS = (("evaluation_periods", 1, 100), ("cooldown", 0, 86400),
                 ("scale_up_step", 1, 1000), ("scale_down_step", 1, 1000),
                 ("idle_timeout", 0, 86400), ("join_timeout", 60, 86400),
                 ("scale_up_delay", 0, 86400), ("keep_idle", 0, 10000))


def _autoscaling(node: Any) -> Autoscaling:
    given = _fields(node, _SCALING)
    kept: dict[str, Any] = {}
    for name, low, high in (*_SCALING_INTS, ("granularity", 1, 86400), ("interval", 5, 3600)):
        if name in given:
            kept[name] = _int(given[name], low, high)
    for name in ("cpu_high", "cpu_low"):
        if name in given:
            kept[name] = _percent(given[name])
    if "telemetry" in given:
        kept["telemetry"] = _enum(given["telemetry"], Telemetry)
    if "scale_in" in given:
        kept["scale_in"] = _enum(given["scale_in"], ScaleIn)
    if "mode" in given:
        kept["mode"] = _enum(given["mode"], Mode)
    if "max_scale_in" in given:
        kept["max_scale_in"] = _optional_int(given["max_scale_in"], 1, 10000)
    scaling = Autoscaling(**kept)
    if not scaling.cpu_low < scaling.cpu_high:
        raise _Doubt
    return scaling


def _group_autoscaling(node: Any, site: Autoscaling) -> GroupAutoscaling:
    given = _fields(node, _GROUP_SCALING)
    kept: dict[str, Any] = {}
    for name, low, high in (*_SCALING_INTS, ("max_scale_in", 1, 10000)):
        if name in given:
            kept[name] = _optional_int(given[name], low, high)
    for name in ("cpu_high", "cpu_low"):
        if given.get(name) is not None:
            kept[name] = _percent(given[name])
    if given.get("scale_in") is not None:
        kept["scale_in"] = _enum(given["scale_in"], ScaleIn)
    # The group's thresholds over the site's; an override given as null leaves them unchecked
    # (as the reference does).
    if ("cpu_low" in given or "cpu_high" in given) and given.get("cpu_low", 0) is not None \
            and given.get("cpu_high", 0) is not None:
        low = kept.get("cpu_low", site.cpu_low)
        high = kept.get("cpu_high", site.cpu_high)
        if not low < high:
            raise _Doubt
    return GroupAutoscaling(**kept)


def _worker_group(node: Any, site: Autoscaling) -> WorkerGroup:
    given = _fields(node, _GROUP)
    kept: dict[str, Any] = {}
    if "autoscaling" in given:
        kept["autoscaling"] = _group_autoscaling(given["autoscaling"], site)
    group = WorkerGroup(name=_matching(given.get("name"), GROUP_NAME_PATTERN),
                        image=_name(given.get("image")), flavor=_name(given.get("flavor")),
                        os=_enum(given.get("os", "el9"), OsFamily),
                        vcpus=_int(given.get("vcpus"), 1, 1024),
                        memory_mb=_optional_int(given.get("memory_mb"), 1, 16 * 1024 * 1024),
                        gpus=_int(given.get("gpus", 0), 0, 64),
                        min=_int(given.get("min"), 0, 10000),
                        max=_int(given.get("max"), 1, 10000),
                        desired=_int(given.get("desired"), 0, 10000),
                        start=_start(given.get("start")), **kept)
    _capacity(group.min, group.max, group.desired)
    return group


def _worker_groups(node: Any, site: Autoscaling) -> list[WorkerGroup] | None:
    if node is None:
        return None
    if type(node) is not list or not 1 <= len(node) <= MAX_WORKER_GROUPS:
        raise _Doubt
    groups = [_worker_group(item, site) for item in node]
    if len({g.name for g in groups}) != len(groups):
        raise _Doubt
    return groups


def _condor(node: Any) -> Condor:
    given = _fields(node, _CONDOR)
    kept: dict[str, Any] = {}
    if "version" in given:
        version = _matching(given["version"], CONDOR_VERSION_PATTERN)
        if version != DEBIAN13_CONDOR_CHANNEL:
            try:
                major = int(version.partition(".")[0])
            except ValueError:  # too many digits to convert
                raise _Doubt from None
            if major < CONDOR_MIN_MAJOR:
                raise _Doubt
        kept["version"] = version
    start = _start(given.get("start"))
    if "extra_config" in given:
        lines = given["extra_config"]
        if type(lines) is not list:
            raise _Doubt
        lines = [_text(line, 0, 4096) for line in lines]
        if any("\n" in line or MARKER_PREFIX in line for line in lines):
            raise _Doubt
        if sum(len(text.encode("utf-8")) + 7 for text in [start or "", *lines]) \
                > USER_TEXT_BUDGET:
            raise _Doubt
        kept["extra_config"] = lines
    if "slots" in given:
        if type(given["slots"]) is not str or given["slots"] not in ("partitionable", "static"):
            raise _Doubt
        kept["slots"] = given["slots"]
    if "retirement_time" in given:
        kept["retirement_time"] = _int(given["retirement_time"], 1, RETIREMENT_TIME_MAX)
    return Condor(pool_name=_matching(given.get("pool_name"), POOL_NAME_PATTERN, 63),
                  start=start, **kept)


def _site(data: Any) -> Site:
    given = _fields(data, _SITE)
    if ("workers" in given) == ("worker_groups" in given) \
            or given.get("workers", given.get("worker_groups")) is None:
        raise _Doubt  # both, neither, or the one given empty: the reference says which
    kept: dict[str, Any] = {}
    if "cloud" in given:
        kept["cloud"] = None if given["cloud"] is None else _name(given["cloud"])
    if "heat_template_version" in given:
        version = given["heat_template_version"]
        if type(version) is datetime.date:  # PyYAML's own loader reads 2021-04-16 as a date
            version = str(version)
        if type(version) is not str or version not in HEAT_TEMPLATE_VERSIONS:
            raise _Doubt
        kept["heat_template_version"] = version
    if "wait_timeout" in given:
        kept["wait_timeout"] = _int(given["wait_timeout"], 1, WAIT_TIMEOUT_MAX)
    scaling = _autoscaling(given["autoscaling"]) if "autoscaling" in given else Autoscaling()
    site = Site(site=_matching(given.get("site"), SITE_NAME_PATTERN, 60),
                keypair=_name(given.get("keypair")), network=_network(given.get("network")),
                master=_master(given.get("master")), workers=_workers(given.get("workers")),
                worker_groups=_worker_groups(given.get("worker_groups"), scaling),
                autoscaling=scaling, condor=_condor(given.get("condor")), **kept)
    _systems(site)
    _user_text(site)
    return site


def _systems(site: Site) -> None:
    """Debian 13 on the master and every worker group with HTCondor "23.9", or on none."""
    debian = site.master.os is OsFamily.DEBIAN_13
    if any((group.os is OsFamily.DEBIAN_13) != debian for group in site.groups):
        raise _Doubt
    if (site.condor.version == DEBIAN13_CONDOR_CHANNEL) != debian:
        raise _Doubt


def _user_text(site: Site) -> None:
    """Each group's start expression fits its workers' user data beside condor's text."""
    if site.worker_groups is None:
        return
    texts = [site.condor.start, *site.condor.extra_config]
    base = sum(len(text.encode("utf-8")) + 7 for text in texts if text)
    for group in site.worker_groups:
        if group.start is not None and \
                base + len(group.start.encode("utf-8")) + 7 > USER_TEXT_BUDGET:
            raise _Doubt
