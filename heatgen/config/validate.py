"""Validate a site config with the pydantic models of :mod:`heatgen.config.schema`.

The path of every config that :mod:`heatgen.config.check` does not pass on its own (any
invalid one): every problem is reported at once as ``FILE: field.path: what is wrong (got X)``.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ValidationError

from heatgen.config import model as valid
from heatgen.config.model import (
    CONDOR_MIN_MAJOR,
    CONDOR_VERSION_PATTERN,
    DEBIAN13_CONDOR_CHANNEL,
    USER_TEXT_BUDGET,
    OsFamily,
    as_number,
)
from heatgen.config.schema import Autoscaling, Condor, Site, to_site
from heatgen.errors import ConfigError


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _location(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", str(part)):
            out += ("." if out else "") + str(part)
        else:  # an odd key (unknown field): quoted, so the message stays one readable line
            out += f"[{_shown(str(part))}]"
    return out


def _shown(value: Any) -> str:
    try:
        text = repr(value) if isinstance(value, str) else str(value)
    except ValueError:  # an integer too long to print
        text = f"a {value.bit_length()}-bit integer" if isinstance(value, int) else "?"
    if isinstance(value, dict | list):
        text = type(value).__name__
    return text if len(text) <= 60 else text[:57] + "..."


_PATTERN_HINTS = {
    "site": "must start with a letter and hold only letters, digits, '_', '.' and '-'",
    "condor.pool_name": "must hold only letters, digits, '_', '.' and '-'",
    "condor.version": "must be a release channel such as \"24.0\" or \"24.x\"",
}


def _problems(error: ValidationError, model: type[BaseModel]) -> list[str]:
    problems = []
    for item in error.errors(include_url=False):
        # Drop pydantic's validator tags (`function-after[...]`); an unknown key is the user's.
        loc = item["loc"] if item["type"] == "extra_forbidden" else tuple(
            p for p in item["loc"] if not (isinstance(p, str) and "[" in p))
        where = _location(loc)
        kind = item["type"]
        message = item["msg"]
        got = f" (got {_shown(item.get('input'))})"
        if kind == "value_error":
            message = str(item.get("ctx", {}).get("error", message))
        elif kind == "extra_forbidden":
            allowed = _allowed_keys(model, loc[:-1])
            message = "unknown field" + (f" (allowed: {', '.join(allowed)})" if allowed else "")
            got = ""
        elif kind == "missing":
            message, got = "required field is missing", ""
        elif kind in ("model_type", "dict_type", "model_attributes_type"):
            message = "must be a mapping"
        elif kind == "string_pattern_mismatch" and where in _PATTERN_HINTS:
            message = _PATTERN_HINTS[where]
        else:
            message = message[0].lower() + message[1:]
            message = message.replace("input should be", "must be")
        problems.append(f"{where}: {message}{got}" if where else f"{message}{got}")
    return problems


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _capacity_problems(node: Any, where: str) -> list[str]:
    if not isinstance(node, dict):
        return []
    problems = []
    low, high, want = (_int(node.get(k)) for k in ("min", "max", "desired"))
    if low is not None and high is not None and high < low:
        problems.append(f"{where}.max: must be >= {where}.min (got {high} < {low})")
    if want is not None and low is not None and want < low:
        problems.append(f"{where}.desired: must be >= {where}.min (got {want} < {low})")
    if want is not None and high is not None and want > high:
        problems.append(f"{where}.desired: must be <= {where}.max (got {want} > {high})")
    return problems


def _thresholds_problem(scaling: dict[str, Any], where: str,
                        site: dict[str, Any] | None = None) -> list[str]:
    """cpu_low below cpu_high, for the site's section or a group's overrides over it."""
    default = Autoscaling.model_fields
    base = site if site is not None else {}

    def value(name: str) -> float | None:
        given = scaling.get(name, base.get(name, default[name].default))
        return as_number(given)

    cpu_low, cpu_high = value("cpu_low"), value("cpu_high")
    if cpu_low is None or cpu_high is None or cpu_low < cpu_high:
        return []
    if site is not None and "cpu_low" not in scaling and "cpu_high" not in scaling:
        return []  # the site's own section says it
    name = "cpu_low" if "cpu_low" in scaling or site is None else "cpu_high"
    other = "cpu_high" if name == "cpu_low" else "cpu_low"
    relation = "below" if name == "cpu_low" else "above"
    other_where = where if other in scaling or site is None else "autoscaling"
    shown = (cpu_low, cpu_high) if name == "cpu_low" else (cpu_high, cpu_low)
    sign = ">=" if name == "cpu_low" else "<="
    return [f"{where}.{name}: must be {relation} {other_where}.{other} "
            f"(got {_num(shown[0])} {sign} {_num(shown[1])})"]


def _group_problems(data: dict[str, Any]) -> list[str]:
    groups = data.get("worker_groups")
    if "workers" in data and "worker_groups" in data:
        return ["worker_groups: cannot be given together with workers (workers is the "
                "shorthand for a single group: list every group under worker_groups)"]
    if "workers" not in data and "worker_groups" not in data:
        return ["workers: required field is missing (or list the groups under worker_groups)"]
    # `workers:` with nothing after it is YAML's null: a section given empty.
    if "workers" in data and data["workers"] is None:
        return ["workers: must not be empty: give the group's image, flavor, vcpus, min, max "
                "and desired (or list the groups under worker_groups)"]
    if "worker_groups" in data and groups is None:
        return ["worker_groups: must not be empty: list at least one group (or give a single "
                "group under workers)"]
    if not isinstance(groups, list):
        return []
    problems = []
    seen: dict[str, int] = {}
    scaling = data.get("autoscaling")
    site_scaling = scaling if isinstance(scaling, dict) else {}
    for index, group in enumerate(groups):
        where = f"worker_groups[{index}]"
        if not isinstance(group, dict):
            continue
        problems += _capacity_problems(group, where)
        name = group.get("name")
        if isinstance(name, str):
            if name in seen:
                problems.append(f"{where}.name: must be unique: worker_groups[{seen[name]}] "
                                f"is also called {name!r}")
            seen.setdefault(name, index)
        overrides = group.get("autoscaling")
        if isinstance(overrides, dict):
            problems += _thresholds_problem(overrides, f"{where}.autoscaling", site_scaling)
    return problems


def _cross_field_problems(data: dict[str, Any]) -> list[str]:
    """Rules that span fields, checked on the raw data so they show beside type errors."""
    problems = _capacity_problems(data.get("workers"), "workers") + _group_problems(data)
    scaling = data.get("autoscaling")
    if isinstance(scaling, dict):
        problems += _thresholds_problem(scaling, "autoscaling")
    return problems + _os_version_problems(data) + _user_text_problems(data)


def _user_text_problems(data: dict[str, Any]) -> list[str]:
    """A group's start expression goes into its workers' user data beside the site's
    HTCondor configuration: together they must fit (condor.extra_config's own check counts
    condor.start)."""
    condor = data.get("condor")
    groups = data.get("worker_groups")
    if not isinstance(condor, dict) or not isinstance(groups, list):
        return []
    extra = condor.get("extra_config") or []
    if not isinstance(extra, list):  # the field's own message says so
        return []
    texts = [condor.get("start"), *extra]
    if not all(isinstance(t, str) or t is None for t in texts):
        return []
    base = sum(len(t.encode("utf-8")) + 7 for t in texts if t)
    problems = []
    for index, group in enumerate(groups):
        start = group.get("start") if isinstance(group, dict) else None
        if not isinstance(start, str) or len(start) > 4096:
            continue
        size = base + len(start.encode("utf-8")) + 7
        if size > USER_TEXT_BUDGET:
            problems.append(
                f"worker_groups[{index}].start: {size} bytes of HTCondor configuration (with "
                f"condor.start and condor.extra_config) do not fit the user data Nova "
                f"accepts: at most {USER_TEXT_BUDGET}")
    return problems


def _os_of(node: Any) -> OsFamily | None:
    """The ``os`` of a node section in the raw data: el9 when unset, None when the value is
    not an image family (its own error says so)."""
    value = node.get("os", OsFamily.EL9.value) if isinstance(node, dict) else OsFamily.EL9.value
    try:
        return OsFamily(value)
    except ValueError:
        return None


def _worker_systems(data: dict[str, Any]) -> list[tuple[str, OsFamily | None]]:
    """(field, os) of every worker group in the raw data."""
    groups = data.get("worker_groups")
    if "workers" not in data and isinstance(groups, list):
        return [(f"worker_groups[{i}].os", _os_of(g)) for i, g in enumerate(groups)]
    return [("workers.os", _os_of(data.get("workers")))]


def _os_version_problems(data: dict[str, Any]) -> list[str]:
    """Debian 13's archive has only HTCondor 23.9, every other image family gets 24.0 or newer
    from HTCondor's repositories, and the pool runs one condor.version: so debian13 goes on
    every node with "23.9", or on none."""
    master = _os_of(data.get("master"))
    workers = _worker_systems(data)
    if master is None or any(system is None for _, system in workers):
        return []
    debian = OsFamily.DEBIAN_13
    for where, system in workers:
        if (master is debian) != (system is debian):
            assert system is not None
            nodes = "the workers" if where == "workers.os" else "every worker group"
            return [
                f"{where}: must be debian13 on both the master and {nodes} or on neither: "
                f'Debian 13 ships only HTCondor "{DEBIAN13_CONDOR_CHANNEL}", the other images '
                f"need {CONDOR_MIN_MAJOR}.0 or newer, and the pool runs one condor.version "
                f"(got {system.value!r} with master.os {master.value!r})"
            ]
    condor = data.get("condor")
    default = Condor.model_fields["version"].default
    version = condor.get("version", default) if isinstance(condor, dict) else None
    if not isinstance(version, str) or not re.fullmatch(CONDOR_VERSION_PATTERN, version):
        return []
    if master is debian and version != DEBIAN13_CONDOR_CHANNEL:
        if int(version.partition(".")[0]) < CONDOR_MIN_MAJOR:
            return []  # the field's own message names the fix
        return [
            f'condor.version: must be "{DEBIAN13_CONDOR_CHANNEL}" with os: debian13 (Debian 13 '
            f"ships HTCondor {DEBIAN13_CONDOR_CHANNEL}) (got {version!r})"
        ]
    if master is not debian and version == DEBIAN13_CONDOR_CHANNEL:
        families = sorted({master.value, *(s.value for _, s in workers if s is not None)})
        need = "needs" if len(families) == 1 else "need"
        return [
            f'condor.version: "{DEBIAN13_CONDOR_CHANNEL}" needs os: debian13 on the master and '
            f"the workers (Debian 13's own HTCondor); {' and '.join(families)} {need} "
            f"{CONDOR_MIN_MAJOR}.0 or newer (got {version!r})"
        ]
    return []


def _allowed_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    current: Any = model
    for part in loc:
        if isinstance(part, int):  # an item of a list of mappings (worker_groups[1])
            continue
        field = current.model_fields.get(part) if isinstance(part, str) else None
        if field is None:
            return []
        annotation = field.annotation
        candidates = [annotation]
        for candidate in candidates:  # Optional, Annotated and list: every type inside
            candidates.extend(getattr(candidate, "__args__", ()))
        current = next(
            (c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None
        )
        if current is None:
            return []
    return sorted(current.model_fields)


def validate_site(data: Any, source: str) -> valid.Site:
    """Validate parsed YAML into a :class:`Site`; :class:`ConfigError` lists every problem."""
    if not isinstance(data, dict):
        raise ConfigError(source, [f"the file must hold a mapping of fields (got {_shown(data)})"])
    problems: list[str] = []
    site: Site | None = None
    try:
        site = Site.model_validate(data)
    except ValidationError as error:
        problems = _problems(error, Site)
    problems += _cross_field_problems(data)
    if problems or site is None:
        raise ConfigError(source, problems)
    return to_site(site)


def site_json_schema() -> dict[str, Any]:
    """The JSON Schema of the site config, for editors."""
    schema = Site.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "heatgen site config"
    # `workers` (one group) or `worker_groups`, never both (validate_site says so by name)
    schema["oneOf"] = [{"required": ["workers"]}, {"required": ["worker_groups"]}]
    return schema
