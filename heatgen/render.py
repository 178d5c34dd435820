"""Render a :class:`~heatgen.config.Site` into the HOT set of an elastic HTCondor grid.

Pure: a site goes in, a mapping of file names to text comes out, byte-identical for the same
site. Writing to disk is a separate step that happens only when everything rendered and
checked cleanly.
"""

from __future__ import annotations

import functools
import json
import os
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2

from heatgen import hotcheck
from heatgen.config import ScaleIn, Site, Telemetry, parse_document
from heatgen.errors import ConfigError, RenderError
from heatgen.payload import payload_context

MAIN_TEMPLATE = "grid.yaml"
MEMBER_TEMPLATE = "worker.yaml"
ENVIRONMENT = "grid-env.yaml"
MASTER_BOOT = "master-boot.yaml"
WORKER_BOOT = "worker-boot.yaml"
HOT_FILES = (MAIN_TEMPLATE, MEMBER_TEMPLATE)
CLOUD_CONFIGS = (MASTER_BOOT, WORKER_BOOT)
OUTPUT_FILES = (MAIN_TEMPLATE, MEMBER_TEMPLATE, MASTER_BOOT, WORKER_BOOT, ENVIRONMENT)
WORKER_TYPE = "HeatGen::Grid::Worker"

NANOSECONDS = 1_000_000_000


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


def alarm_threshold(site: Site, percent: float) -> int | float:
    """The alarm threshold for ``percent`` CPU, in the units the telemetry backend compares.

    Gnocchi's ``rate:mean`` of the cumulative ``cpu`` metric is CPU-nanoseconds per bucket,
    so P % of a ``vcpus``-core worker is ``P/100 * granularity * 1e9 * vcpus``. The Prometheus
    query already yields a percentage.
    """
    scaling = site.autoscaling
    if scaling.telemetry is Telemetry.PROMETHEUS:
        return _number(percent)
    return _number(round(percent / 100 * scaling.granularity * NANOSECONDS * site.workers.vcpus))


def alarm_query_template(site: Site) -> str:
    """The alarm query, with ``__STACK_ID__`` (and ``__GRANULARITY__``) left for Heat to fill."""
    if site.autoscaling.telemetry is Telemetry.PROMETHEUS:
        divisor = NANOSECONDS // 100 * site.workers.vcpus
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
class Alarm:
    name: str
    policy: str
    operator: str
    threshold_param: str
    description: str


def alarms_for(site: Site) -> list[Alarm]:
    """The CPU alarms the site gets: none without telemetry, no low alarm unless scale_in=alarm."""
    scaling = site.autoscaling
    if scaling.telemetry is Telemetry.NONE:
        return []
    alarms = [
        Alarm(
            "cpu_alarm_high",
            "scale_up_policy",
            "gt",
            "cpu_high_threshold",
            f"Scale up when the workers' mean CPU is above {_number(scaling.cpu_high)} %",
        )
    ]
    if scaling.scale_in is ScaleIn.ALARM:
        alarms.append(
            Alarm(
                "cpu_alarm_low",
                "scale_down_policy",
                "lt",
                "cpu_low_threshold",
                f"Scale down when the workers' mean CPU is below {_number(scaling.cpu_low)} %",
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


def _q(value: Any) -> str:
    """Emit a value as a JSON scalar, which is valid YAML and cannot break the document."""
    if hasattr(value, "value") and not isinstance(value, int | float | str):
        value = value.value
    if isinstance(value, float):
        value = _number(value)
    return json.dumps(value, ensure_ascii=False)


def _package_source(name: str) -> tuple[str, str, Callable[[], bool]] | None:
    resource = resources.files("heatgen.templates").joinpath(name)
    if not resource.is_file():
        return None
    return resource.read_text(encoding="utf-8"), f"heatgen/templates/{name}", lambda: True


@functools.lru_cache(maxsize=8)
def _environment(templates_dir: Path | None) -> jinja2.Environment:
    """One Jinja environment per template directory, so each template compiles once."""
    loaders: list[jinja2.BaseLoader] = []
    if templates_dir is not None:
        loaders.append(jinja2.FileSystemLoader(str(templates_dir)))
    loaders.append(jinja2.FunctionLoader(_package_source))
    env = jinja2.Environment(
        loader=jinja2.ChoiceLoader(loaders),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["q"] = _q
    return env


@dataclass(frozen=True)
class RenderedGrid:
    """The rendered files of one grid, by file name, in a fixed order."""

    site: Site
    files: Mapping[str, str]

    @property
    def main(self) -> str:
        return self.files[MAIN_TEMPLATE]

    @property
    def environment(self) -> str:
        return self.files[ENVIRONMENT]


def render_site(site: Site, templates_dir: str | Path | None = None) -> RenderedGrid:
    """Render every output file for ``site`` and check the set; raise :class:`RenderError`."""
    if templates_dir is not None and not Path(templates_dir).is_dir():
        raise RenderError(f"{templates_dir}: --templates must name a directory")
    env = _environment(Path(templates_dir) if templates_dir is not None else None)
    context = {
        "site": site,
        "alarms": alarms_for(site),
        "alarm_query_template": alarm_query_template(site),
        "threshold_unit": (
            "percent CPU"
            if site.autoscaling.telemetry is Telemetry.PROMETHEUS
            else "CPU-nanoseconds per granularity bucket (metric cpu, rate:mean)"
        ),
        "parameters": heat_parameters(site),
        **payload_context(site),
    }
    files: dict[str, str] = {}
    for name in OUTPUT_FILES:
        source = f"{name}.j2"
        try:
            files[name] = env.get_template(source).render(context)
        except jinja2.TemplateNotFound:
            raise RenderError(f"{source}: template not found") from None
        except jinja2.TemplateSyntaxError as error:
            raise RenderError(f"{error.filename or source}:{error.lineno}: {error.message}") from None
        except jinja2.UndefinedError as error:
            raise RenderError(f"{source}: {error.message}") from None
    check_rendered(files)
    return RenderedGrid(site=site, files=files)


def _parse(name: str, text: str) -> Any:
    try:
        return parse_document(text, name)
    except ConfigError as error:
        raise RenderError(f"rendered {error}") from None


def check_rendered(files: Mapping[str, str]) -> None:
    """Parse every rendered file and check that every reference resolves."""
    parsed = {name: _parse(name, text) for name, text in files.items()}
    problems: list[str] = []
    for name in HOT_FILES:
        doc = parsed[name]
        if not isinstance(doc, dict) or "heat_template_version" not in doc:
            problems.append(f"{name}: not a HOT template (no heat_template_version)")
            continue
        problems += hotcheck.check_template(doc, name, files)
    for name in CLOUD_CONFIGS:
        if not files[name].startswith("#cloud-config\n") or not isinstance(parsed[name], dict):
            problems.append(f"{name}: not a cloud-config document")
    env = parsed[ENVIRONMENT]
    registry = env.get("resource_registry", {}) if isinstance(env, dict) else {}
    main = parsed[MAIN_TEMPLATE]
    if isinstance(main, dict):
        declared = main.get("parameters") or {}
        for pname in (env.get("parameters") or {}) if isinstance(env, dict) else {}:
            if pname not in declared:
                problems.append(f"{ENVIRONMENT}: parameter {pname!r} is not declared by {MAIN_TEMPLATE}")
        for pname, body in declared.items():
            given = (env.get("parameters") or {}) if isinstance(env, dict) else {}
            if pname not in given and "default" not in (body or {}):
                problems.append(f"{MAIN_TEMPLATE}: parameter {pname!r} gets no value")
        templates = {n: parsed[n] for n in HOT_FILES if isinstance(parsed[n], dict)}
        problems += hotcheck.check_member_properties(main, MAIN_TEMPLATE, registry, templates)
    if problems:
        raise RenderError("the rendered templates are inconsistent:\n" + "\n".join(problems))


def write_rendered(grid: RenderedGrid, out_dir: str | Path) -> list[Path]:
    """Write the rendered files into ``out_dir`` (created if needed), each one atomically."""
    target = Path(out_dir)
    try:
        target.mkdir(parents=True, exist_ok=True)
        written = []
        for name, text in grid.files.items():
            fd, tmp = tempfile.mkstemp(prefix=f".{name}.", dir=target)
            with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
                handle.write(text)
            os.chmod(tmp, 0o644)
            os.replace(tmp, target / name)
            written.append(target / name)
    except OSError as error:
        raise RenderError(f"{target}: cannot write the rendered files ({error.strerror})") from None
    return written
