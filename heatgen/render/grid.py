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
import re
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2

from heatgen.config import Group, Site, Telemetry, parse_document
from heatgen.contract import GroupNames
from heatgen.errors import ConfigError, RenderError
from heatgen.render import hotcheck
from heatgen.render.parameters import (
    AlarmSpec,
    alarm_query_template,
    alarms_for,
    heat_parameters,
)
from heatgen.render.payload import group_payload, payload_context
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


_PLAIN_UNSAFE = re.compile(r"^[-?:,\[\]{}#&*!|>'\"%@`\s]|: | #|\s$")


def _q_plain(value: str) -> str:
    """heatgen's own description text as a plain YAML scalar where it reads as one (so the
    files stay as they always were), else quoted."""
    return _q(value) if _PLAIN_UNSAFE.search(value) or "\n" in value else value


@dataclass(frozen=True)
class _GroupContext:
    """What the templates need of one worker group: its names and its alarms."""

    site: Site
    group: Group

    @property
    def names(self) -> GroupNames:
        return self.group.names

    def n(self, name: str) -> str:
        return self.group.names.suffixed(name)

    @property
    def name(self) -> str:
        return self.group.name

    @property
    def where(self) -> str:
        return self.group.where

    @property
    def single(self) -> bool:
        return self.group.names.single

    @property
    def name_prefix(self) -> str:
        return f"{self.site.site}-" + ("worker" if self.single else self.group.name)

    @property
    def alarms(self) -> list[AlarmSpec]:
        return alarms_for(self.site, self.group)

    @property
    def alarm_query_template(self) -> str:
        return alarm_query_template(self.site, self.group)

    @property
    def threshold_unit(self) -> str:
        if self.site.autoscaling.telemetry is Telemetry.PROMETHEUS:
            return "percent CPU"
        return "CPU-nanoseconds per granularity bucket (metric cpu, rate:mean)"

    def whose_policy(self, kind: str) -> str:
        return f"the {kind} policy" if self.single else f"group {self.name}'s {kind} policy"

    def whose_url(self, kind: str) -> str:
        return f"{kind} URL" + ("" if self.single else f" of group {self.name}")

    @property
    def alarms_of(self) -> str:
        return "the CPU alarms" if self.single else f"group {self.name}'s CPU alarms"

    @property
    def the_group(self) -> str:
        return "the group" if self.single else f"group {self.name}"

    @property
    def member_word(self) -> str:
        return "group member" if self.single else f"member of group {self.name}"


def output_files(site: Site) -> tuple[str, ...]:
    """The rendered files of ``site``, in order: the main template, each group's member
    template, the master's and each group's boot payload, the environment."""
    groups = [g.names for g in site.groups]
    return (MAIN_TEMPLATE, *(g.member_template for g in groups), MASTER_BOOT,
            *(g.boot_file for g in groups), ENVIRONMENT)


def hot_files(site: Site) -> tuple[str, ...]:
    return (MAIN_TEMPLATE, *(g.names.member_template for g in site.groups))


def cloud_configs(site: Site) -> tuple[str, ...]:
    return (MASTER_BOOT, *(g.names.boot_file for g in site.groups))


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
    env.filters["q_plain"] = _q_plain
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
    groups = [_GroupContext(site, group) for group in site.groups]
    context = {
        "site": site,
        "groups": groups,
        "alarms": any(g.alarms for g in groups),
        "stack_key_description": (
            "Stack id every worker carries as metering.stack (and, with its group's name "
            "after it, as metering.server_group)" if site.grouped
            else "Stack id the workers carry as metering.stack and metering.server_group"),
        "parameters": heat_parameters(site),
        **payload_context(site),
    }
    jobs: list[tuple[str, str, dict[str, Any]]] = [(MAIN_TEMPLATE, MAIN_TEMPLATE, context)]
    for group in groups:
        own = {**context, "group": group, "group_payload": group_payload(site, group.group)}
        jobs.append((group.names.member_template, MEMBER_TEMPLATE, own))
    jobs.append((MASTER_BOOT, MASTER_BOOT, context))
    for group in groups:
        own = {**context, "group": group, "group_payload": group_payload(site, group.group)}
        jobs.append((group.names.boot_file, WORKER_BOOT, own))
    jobs.append((ENVIRONMENT, ENVIRONMENT, context))
    files: dict[str, str] = {}
    for name, template, values in jobs:
        source = f"{template}.j2"
        try:
            files[name] = env.get_template(source).render(values)
        except jinja2.TemplateNotFound:
            raise RenderError(f"{source}: template not found") from None
        except jinja2.TemplateSyntaxError as error:
            where = f"{error.filename or source}:{error.lineno}"
            raise RenderError(f"{where}: {error.message}") from None
        except jinja2.UndefinedError as error:
            raise RenderError(f"{source}: {error.message}") from None
    check_rendered(files, site)
    return RenderedGrid(site=site, files=files)


def _parse(name: str, text: str) -> Any:
    try:
        return parse_document(text, name)
    except ConfigError as error:
        raise RenderError(f"rendered {error}") from None


def check_rendered(files: Mapping[str, str], site: Site) -> None:
    """Parse every rendered file of ``site`` and check that every reference resolves."""
    parsed = {name: _parse(name, text) for name, text in files.items()}
    problems: list[str] = []
    templates_of = hot_files(site)
    for name in templates_of:
        doc = parsed[name]
        if not isinstance(doc, dict) or "heat_template_version" not in doc:
            problems.append(f"{name}: not a HOT template (no heat_template_version)")
            continue
        problems += hotcheck.check_template(doc, name, files)
    for name in cloud_configs(site):
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
        templates = {n: parsed[n] for n in templates_of if isinstance(parsed[n], dict)}
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
