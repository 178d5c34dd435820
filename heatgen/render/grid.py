"""Render a :class:`~heatgen.config.Site` into the HOT set of an elastic HTCondor grid.

Pure: a site goes in, a mapping of file names to text comes out, byte-identical for the same
site. Writing to disk is a separate step that happens only when everything rendered and
checked cleanly. The compiled templates are kept between runs in the user's cache (compiling
them is a third of a cold render); the output never depends on it.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import pickle
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2

from heatgen.config import Site, Telemetry, parse_document
from heatgen.errors import ConfigError, RenderError
from heatgen.render import hotcheck
from heatgen.render.parameters import alarm_query_template, alarms_for, heat_parameters
from heatgen.render.payload import payload_context
from heatgen.units import plain_number

MAIN_TEMPLATE = "grid.yaml"
MEMBER_TEMPLATE = "worker.yaml"
ENVIRONMENT = "grid-env.yaml"
MASTER_BOOT = "master-boot.yaml"
WORKER_BOOT = "worker-boot.yaml"
HOT_FILES = (MAIN_TEMPLATE, MEMBER_TEMPLATE)
CLOUD_CONFIGS = (MASTER_BOOT, WORKER_BOOT)
OUTPUT_FILES = (MAIN_TEMPLATE, MEMBER_TEMPLATE, MASTER_BOOT, WORKER_BOOT, ENVIRONMENT)
WORKER_TYPE = "HeatGen::Grid::Worker"


def _q(value: Any) -> str:
    """Emit a value as a JSON scalar, which is valid YAML and cannot break the document."""
    if hasattr(value, "value") and not isinstance(value, int | float | str):
        value = value.value
    if isinstance(value, float):
        value = plain_number(value)
    return json.dumps(value, ensure_ascii=False)


def _package_source(name: str) -> tuple[str, str, Callable[[], bool]] | None:
    resource = resources.files("heatgen.templates").joinpath(name)
    if not resource.is_file():
        return None
    return resource.read_text(encoding="utf-8"), f"heatgen/templates/{name}", lambda: True


# How the templates are compiled (the compiled code depends on these).
_OPTIONS: dict[str, Any] = {
    "autoescape": False,
    "trim_blocks": True,
    "lstrip_blocks": True,
    "keep_trailing_newline": True,
}


class _QuietCache(jinja2.FileSystemBytecodeCache):
    """Compiled templates on disk that never fail a render: an entry that cannot be read or
    written is compiled again. Jinja checks each entry against its template's source."""

    def load_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        try:
            super().load_bytecode(bucket)
        except (OSError, EOFError, ValueError, pickle.UnpicklingError):
            bucket.reset()

    def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        try:
            super().dump_bytecode(bucket)
        except OSError:
            pass


def _bytecode_cache() -> jinja2.BytecodeCache | None:
    """``$XDG_CACHE_HOME/heatgen/jinja`` (``~/.cache/...``), only if it is the user's own and
    nobody else may write it (compiled code is loaded from it); else no cache."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    directory = Path(base, "heatgen", "jinja")
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = directory.stat()
    except OSError:
        return None
    if info.st_uid != os.getuid() or info.st_mode & 0o022:
        return None
    # Jinja keys an entry by the template's name and source only: the options it was compiled
    # with are part of the file name, so that other options never load it.
    options = hashlib.sha256(repr(sorted(_OPTIONS.items())).encode()).hexdigest()[:12]
    return _QuietCache(str(directory), f"{options}-%s.cache")


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
        bytecode_cache=_bytecode_cache(),
        **_OPTIONS,
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
            where = f"{error.filename or source}:{error.lineno}"
            raise RenderError(f"{where}: {error.message}") from None
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
                problems.append(
                    f"{ENVIRONMENT}: parameter {pname!r} is not declared by {MAIN_TEMPLATE}"
                )
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
