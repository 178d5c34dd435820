"""The exact request bodies (``fields``) heatgen sends to Heat, built as pure values.

The files are passed under stable relative names (``worker.yaml``, ``master-boot.yaml``...)
that the templates and the environment's ``resource_registry`` use, so the same config sends
the same request from any machine and an update that changes nothing looks like nothing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from importlib import resources
from typing import Any

from heatgen.cloud.interface import Definition
from heatgen.config import parse_document
from heatgen.render import ENVIRONMENT, MAIN_TEMPLATE, RenderedGrid

SANDBOX_ENVIRONMENT = "sandbox.yaml"
SANDBOX_TELEMETRY_ENVIRONMENT = "sandbox-telemetry.yaml"
SANDBOX_POOL_ENVIRONMENT = "sandbox-pool.yaml"
SANDBOX_POOL_TELEMETRY_ENVIRONMENT = "sandbox-pool-telemetry.yaml"
SANDBOX_POOL_TEMPLATES = (
    "sandbox-pool-server.yaml", "sandbox-pool-port.yaml", "sandbox-pool-floating-ip.yaml",
)
# Heat merges environment files over the request's `parameters`, so values that must win over
# the rendered environment (the group's live size on a re-deploy) travel as a last environment.
OVERRIDES_ENVIRONMENT = "heatgen-overrides.yaml"

# Environment files count in a definition through what they set, not their text.
ENVIRONMENT_FILES = frozenset({
    ENVIRONMENT, SANDBOX_ENVIRONMENT, SANDBOX_TELEMETRY_ENVIRONMENT, SANDBOX_POOL_ENVIRONMENT,
    SANDBOX_POOL_TELEMETRY_ENVIRONMENT, OVERRIDES_ENVIRONMENT,
})

# Parameters a capacity change may PATCH; nothing else is ever sent by `heatgen scale`.
CAPACITY_PARAMETERS = ("worker_min", "worker_max", "worker_desired")


def packaged_environment(name: str) -> str:
    """Text of an environment file shipped in ``heatgen.environments``."""
    return resources.files("heatgen.environments").joinpath(name).read_text(encoding="utf-8")


def template_body(grid: RenderedGrid) -> dict[str, Any]:
    body = parse_document(grid.main, MAIN_TEMPLATE)
    assert isinstance(body, dict)
    return body


def stack_files(grid: RenderedGrid, extra_environments: Mapping[str, str],
                extra_files: Mapping[str, str] | None = None) -> dict[str, str]:
    """Every file but the main template, by the name the templates refer to it by.

    ``extra_files`` are templates an extra environment maps resource types to (the sandbox
    pool's stand-ins)."""
    files = {name: text for name, text in grid.files.items() if name != MAIN_TEMPLATE}
    files.update(extra_environments)
    files.update(extra_files or {})
    return dict(sorted(files.items()))


def create_fields(
    grid: RenderedGrid,
    *,
    extra_environments: Mapping[str, str] | None = None,
    extra_files: Mapping[str, str] | None = None,
    timeout_mins: int | None = None,
) -> dict[str, Any]:
    """The body of ``stacks.create`` (and ``stacks.preview`` / ``stacks.validate``)."""
    extra = dict(extra_environments or {})
    fields: dict[str, Any] = {
        "stack_name": grid.site.site,
        "template": template_body(grid),
        "files": stack_files(grid, extra, extra_files),
        "environment_files": [ENVIRONMENT, *extra],
        "disable_rollback": True,
    }
    if timeout_mins is not None:
        fields["timeout_mins"] = timeout_mins
    return fields


def update_fields(
    grid: RenderedGrid,
    *,
    parameters: Mapping[str, Any] | None = None,
    extra_environments: Mapping[str, str] | None = None,
    extra_files: Mapping[str, str] | None = None,
    timeout_mins: int | None = None,
) -> dict[str, Any]:
    """The body of a full ``stacks.update`` (PUT): template, files and environments again.

    ``parameters`` override the environment file's values (e.g. the group's current size).
    """
    fields = create_fields(
        grid, extra_environments=_with_overrides(extra_environments, parameters),
        extra_files=extra_files, timeout_mins=timeout_mins,
    )
    del fields["stack_name"]
    del fields["disable_rollback"]
    return fields


def overrides_environment(parameters: Mapping[str, Any]) -> str:
    lines = [
        "# Values heatgen sends over the rendered environment (e.g. the group's live size).",
        "parameters:",
    ]
    lines += [f"  {name}: {json.dumps(value)}" for name, value in sorted(parameters.items())]
    return "\n".join(lines) + "\n"


def _with_overrides(
    extra_environments: Mapping[str, str] | None, parameters: Mapping[str, Any] | None
) -> dict[str, str]:
    extra = dict(extra_environments or {})
    if parameters:
        extra[OVERRIDES_ENVIRONMENT] = overrides_environment(parameters)
    return extra


def capacity_parameter(name: str) -> bool:
    """A group's min, max or desired size (``worker_desired``, ``worker_desired_gpu``...)."""
    return any(name == base or re.fullmatch(f"{base}_[a-z][a-z0-9_]*", name)
               for base in CAPACITY_PARAMETERS)


def patch_fields(parameters: Mapping[str, Any]) -> dict[str, Any]:
    """The body of a PATCH update (``existing=True``): only the given parameters."""
    unknown = sorted(name for name in parameters if not capacity_parameter(name))
    if unknown:
        raise ValueError(f"not a capacity parameter: {', '.join(unknown)}")
    return {"parameters": dict(sorted(parameters.items()))}


def merged_registry(grid: RenderedGrid, extra_environments: Mapping[str, str]) -> dict[str, Any]:
    """The resource_registry Heat ends up with: the grid's, then each extra environment's."""
    registry: dict[str, Any] = {}
    for name, text in [(ENVIRONMENT, grid.environment), *extra_environments.items()]:
        doc = parse_document(text, name)
        if isinstance(doc, dict):
            registry.update(doc.get("resource_registry") or {})
    return registry


def environment_parameters(grid: RenderedGrid) -> dict[str, Any]:
    doc = parse_document(grid.environment, ENVIRONMENT)
    return dict(doc.get("parameters") or {}) if isinstance(doc, dict) else {}


def definition(
    grid: RenderedGrid,
    *,
    parameters: Mapping[str, Any] | None = None,
    extra_environments: Mapping[str, str] | None = None,
    extra_files: Mapping[str, str] | None = None,
) -> Definition:
    """What an update with these fields asks Heat to make, for heatgen's own plan check."""
    extra = _with_overrides(extra_environments, parameters)
    return Definition(
        template=template_body(grid),
        parameters={**environment_parameters(grid), **dict(parameters or {})},
        files=stack_files(grid, extra, extra_files),
        registry=merged_registry(grid, extra),
    )
