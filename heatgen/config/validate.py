"""Read and validate a site config into a :class:`~heatgen.config.model.Site`.

Every problem is reported at once as ``FILE: field.path: what is wrong (got X)``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from heatgen.config.loader import parse_yaml
from heatgen.config.model import (
    CONDOR_MIN_MAJOR,
    CONDOR_VERSION_PATTERN,
    DEBIAN13_CONDOR_CHANNEL,
    Autoscaling,
    Condor,
    OsFamily,
    Site,
    as_number,
)
from heatgen.errors import ConfigError

MAX_CONFIG_BYTES = 1 << 20


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


def _cross_field_problems(data: dict[str, Any]) -> list[str]:
    """Rules that span fields, checked on the raw data so they show beside type errors."""
    problems = []
    workers = data.get("workers")
    if isinstance(workers, dict):
        low, high, want = (_int(workers.get(k)) for k in ("min", "max", "desired"))
        if low is not None and high is not None and high < low:
            problems.append(f"workers.max: must be >= workers.min (got {high} < {low})")
        if want is not None and low is not None and want < low:
            problems.append(f"workers.desired: must be >= workers.min (got {want} < {low})")
        if want is not None and high is not None and want > high:
            problems.append(f"workers.desired: must be <= workers.max (got {want} > {high})")
    scaling = data.get("autoscaling")
    if isinstance(scaling, dict):
        default = Autoscaling.model_fields
        cpu_low = as_number(scaling.get("cpu_low", default["cpu_low"].default))
        cpu_high = as_number(scaling.get("cpu_high", default["cpu_high"].default))
        if cpu_low is not None and cpu_high is not None and cpu_low >= cpu_high:
            problems.append(
                "autoscaling.cpu_low: must be below autoscaling.cpu_high "
                f"(got {_num(cpu_low)} >= {_num(cpu_high)})"
            )
    return problems + _os_version_problems(data)


def _node_os(data: dict[str, Any], role: str) -> OsFamily | None:
    """The ``os`` of ``role`` (master or workers) in the raw data: el9 when unset, None when
    the value is not an image family (its own error says so)."""
    node = data.get(role)
    value = node.get("os", OsFamily.EL9.value) if isinstance(node, dict) else OsFamily.EL9.value
    try:
        return OsFamily(value)
    except ValueError:
        return None


def _os_version_problems(data: dict[str, Any]) -> list[str]:
    """Debian 13's archive has only HTCondor 23.9, every other image family gets 24.0 or newer
    from HTCondor's repositories, and the pool runs one condor.version: so debian13 goes on
    every node with "23.9", or on none."""
    master, workers = _node_os(data, "master"), _node_os(data, "workers")
    if master is None or workers is None:
        return []
    debian = OsFamily.DEBIAN_13
    if (master is debian) != (workers is debian):
        return [
            f"workers.os: must be debian13 on both the master and the workers or on neither: "
            f'Debian 13 ships only HTCondor "{DEBIAN13_CONDOR_CHANNEL}", the other images need '
            f"{CONDOR_MIN_MAJOR}.0 or newer, and the pool runs one condor.version "
            f"(got {workers.value!r} with master.os {master.value!r})"
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
        families = sorted({master.value, workers.value})
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
        field = current.model_fields.get(part) if isinstance(part, str) else None
        if field is None:
            return []
        annotation = field.annotation
        candidates = [annotation, *getattr(annotation, "__args__", ())]
        current = next(
            (c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None
        )
        if current is None:
            return []
    return sorted(current.model_fields)


def validate_site(data: Any, source: str) -> Site:
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
    return site


def load_site(path: str | Path) -> Site:
    """Read, parse and validate a site config file."""
    source = str(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as error:
        raise ConfigError(source, [f"cannot read the file ({error.strerror})"]) from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(source, [f"file is larger than {MAX_CONFIG_BYTES} bytes"])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ConfigError(source, [f"not UTF-8 text (byte {error.start})"]) from None
    return validate_site(parse_yaml(text, source), source)


def site_json_schema() -> dict[str, Any]:
    """The JSON Schema of the site config, for editors."""
    schema = Site.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "heatgen site config"
    return schema
