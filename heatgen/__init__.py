"""heatgen: render, deploy and resize elastic HTCondor grids on OpenStack Heat.

The public API, for scripts that drive heatgen without its CLI::

    import heatgen

    site = heatgen.load_site("site.yaml")
    grid = heatgen.render_site(site)
    target = heatgen.open_cloud("mycloud")          # clouds.yaml entry
    heatgen.deploy(target.cloud, grid, heatgen.DeployOptions(), heatgen.SilentReporter())
    heatgen.scale(target.cloud, site, heatgen.ScaleRequest(workers=3), heatgen.SilentReporter())
    print(heatgen.status(target.cloud, site).as_dict())
    heatgen.delete(target.cloud, site, timeout=1800, report=heatgen.SilentReporter())

Every failure is a :class:`HeatgenError` (``exit_status`` says which). The names below are
imported on first use, so ``import heatgen`` stays cheap; everything not listed may move.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_API = {
    "load_site": "heatgen.config",
    "Site": "heatgen.config",
    "render_site": "heatgen.render",
    "write_rendered": "heatgen.render",
    "RenderedGrid": "heatgen.render",
    "open_cloud": "heatgen.cloud.connect",
    "Cloud": "heatgen.cloud.interface",
    "deploy": "heatgen.ops.deploy",
    "DeployOptions": "heatgen.ops.deploy",
    "DeployResult": "heatgen.ops.deploy",
    "scale": "heatgen.ops.scale",
    "ScaleRequest": "heatgen.ops.scale",
    "ScaleResult": "heatgen.ops.scale",
    "status": "heatgen.ops.inspect",
    "StatusReport": "heatgen.ops.inspect",
    "delete": "heatgen.ops.delete",
    "Reporter": "heatgen.ops.report",
    "SilentReporter": "heatgen.ops.report",
    "HeatgenError": "heatgen.errors",
    "ConfigError": "heatgen.errors",
    "RenderError": "heatgen.errors",
    "UsageError": "heatgen.errors",
    "CloudError": "heatgen.errors",
    "StackBusy": "heatgen.errors",
    "NotDeployed": "heatgen.errors",
    "StackFailed": "heatgen.errors",
    "WaitTimeout": "heatgen.errors",
    "ExitStatus": "heatgen.errors",
}

__all__ = ["__version__", *_API]  # noqa: PLE0604 - the keys are the names


def __getattr__(name: str) -> Any:
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'heatgen' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
