"""The site config: a small YAML file, validated into a :class:`Site`.

Every problem is reported at once as ``FILE: field.path: what is wrong (got X)``; unknown keys
are errors so that a typo never passes silently. Loading uses a hardened safe loader: no
Python tags, no duplicate keys, bounded aliases and nesting, dates kept as strings.
"""

from __future__ import annotations

import ipaddress
import re
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from heatgen.errors import ConfigError

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
MAX_CONFIG_BYTES = 1 << 20
MAX_ALIASES = 32
MAX_DEPTH = 32
# Longer integers are no site's; Python refuses to convert one of over 4300 digits anyway.
MAX_NUMBER_CHARS = 64

SITE_NAME_PATTERN = r"^[a-zA-Z][a-zA-Z0-9_.-]*$"
CONDOR_VERSION_PATTERN = r"^[0-9]+\.(x|[0-9]+)$"
# The boot payload drops ANONYMOUS and CLAIMTOBE, which needs HTCondor 24 on every node.
CONDOR_MIN_MAJOR = 24
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


class OsFamily(str, Enum):
    EL9 = "el9"
    UBUNTU_2204 = "ubuntu22.04"
    UBUNTU_2404 = "ubuntu24.04"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


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
            raise ValueError(f"must be a network in CIDR form such as 192.0.2.0/24 ({exc})")


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

    @field_validator("cpu_high", "cpu_low", mode="before")
    @classmethod
    def _number(cls, value: Any) -> Any:
        if _number(value) is None:
            raise ValueError("must be a number")
        return value


class Condor(_Model):
    pool_name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=63)]
    version: Annotated[str, Field(pattern=CONDOR_VERSION_PATTERN)] = "24.0"
    start: Annotated[str, Field(min_length=1, max_length=4096)] | None = None
    extra_config: list[Annotated[str, Field(max_length=4096)]] = []
    slots: Literal["partitionable", "static"] = "partitionable"

    @field_validator("version")
    @classmethod
    def _supported(cls, value: str) -> str:
        if int(value.partition(".")[0]) < CONDOR_MIN_MAJOR:
            raise ValueError(
                f"must be {CONDOR_MIN_MAJOR}.0 or newer: the boot payload relies on "
                f"HTCondor {CONDOR_MIN_MAJOR}'s token-only security"
            )
        return value

    @field_validator("start")
    @classmethod
    def _one_line(cls, value: str | None) -> str | None:
        if value is not None and "\n" in value:
            raise ValueError("must be a single-line ClassAd expression")
        if value is not None and MARKER_PREFIX in value:
            raise ValueError(f"must not contain {MARKER_PREFIX!r}: Heat replaces it at boot")
        return value

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
    workers: Workers
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


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


class _SiteLoader(yaml.SafeLoader):
    """A SafeLoader with no timestamps, no duplicate keys and bounded aliases and depth."""

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self._aliases = 0
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                event = self.peek_event()
                raise yaml.composer.ComposerError(
                    None, None, f"more than {MAX_ALIASES} aliases", event.start_mark
                )
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                event = self.peek_event()
                raise yaml.composer.ComposerError(
                    None, None, f"nested deeper than {MAX_DEPTH} levels", event.start_mark
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        if isinstance(node, yaml.MappingNode):
            seen: set[Any] = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=deep)
                try:
                    duplicate = key in seen
                except TypeError:
                    raise yaml.constructor.ConstructorError(
                        None, None, "mapping keys must be plain values", key_node.start_mark
                    )
                if duplicate:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key!r}", key_node.start_mark
                    )
                seen.add(key)
        return super().construct_mapping(node, deep=deep)

    def construct_yaml_int(self, node: Any) -> Any:
        if len(str(node.value)) > MAX_NUMBER_CHARS:
            raise yaml.constructor.ConstructorError(
                None, None, f"number longer than {MAX_NUMBER_CHARS} characters", node.start_mark
            )
        return super().construct_yaml_int(node)


_SiteLoader.add_constructor("tag:yaml.org,2002:int", _SiteLoader.construct_yaml_int)
_SiteLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _yaml_problem(error: yaml.YAMLError) -> str:
    mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
    problem = getattr(error, "problem", None) or str(error)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return f"{where}invalid YAML: {problem}"


class _DocumentLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """libyaml's safe loader, dates kept as strings: for documents heatgen wrote itself."""


_DocumentLoader.yaml_implicit_resolvers = _SiteLoader.yaml_implicit_resolvers


def parse_document(text: str, source: str) -> Any:
    """Parse YAML that heatgen rendered (trusted, bounded) fast; same errors as parse_yaml."""
    try:
        return yaml.load(text, Loader=_DocumentLoader)  # noqa: S506 - a safe loader
    except yaml.YAMLError as error:
        raise ConfigError(source, [_yaml_problem(error)]) from None


def parse_yaml(text: str, source: str) -> Any:
    """Parse YAML text safely; raise :class:`ConfigError` naming the line on failure."""
    try:
        return yaml.load(text, Loader=_SiteLoader)  # noqa: S506 - _SiteLoader is a SafeLoader
    except yaml.YAMLError as error:
        raise ConfigError(source, [_yaml_problem(error)]) from None
    except RecursionError:
        raise ConfigError(source, [f"invalid YAML: nested deeper than {MAX_DEPTH} levels"]) from None


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


def _number(value: Any) -> float | None:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    return float(value) if ok else None


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
        cpu_low = _number(scaling.get("cpu_low", default["cpu_low"].default))
        cpu_high = _number(scaling.get("cpu_high", default["cpu_high"].default))
        if cpu_low is not None and cpu_high is not None and cpu_low >= cpu_high:
            problems.append(
                "autoscaling.cpu_low: must be below autoscaling.cpu_high "
                f"(got {_num(cpu_low)} >= {_num(cpu_high)})"
            )
    return problems


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
    """Validate parsed YAML into a :class:`Site`; raise :class:`ConfigError` listing all problems."""
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
