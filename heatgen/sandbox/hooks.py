"""What the sandbox plugs into the core commands: its credentials when no cloud is named, the
environment files of its stand-ins, and the master's ready signal (no VM boots here).

The CLI passes these in; the core (:mod:`heatgen.ops`, :mod:`heatgen.cloud`) never imports
the sandbox.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from heatgen.cloud.interface import Cloud
from heatgen.errors import SandboxError
from heatgen.ops.fields import (
    SANDBOX_ENVIRONMENT,
    SANDBOX_TELEMETRY_ENVIRONMENT,
    packaged_environment,
)
from heatgen.ops.report import Reporter
from heatgen.sandbox.master import SandboxMaster
from heatgen.sandbox.settings import (
    STATE_DIR_VARIABLE,
    SandboxConfig,
    load_secrets,
    resolve_config,
)

if TYPE_CHECKING:
    from heatgen.cloud.connect import Target


class Locator:
    """Finds the sandbox in ``state_dir`` (default: ``$HEATGEN_SANDBOX_DIR``, else the XDG one)."""

    def __init__(self, state_dir: Path | None = None) -> None:
        self.state_dir = state_dir

    def entry(self) -> Mapping[str, Any] | None:
        from heatgen.sandbox import control

        explicit = self.state_dir or os.environ.get(STATE_DIR_VARIABLE) or None
        config = resolve_config(explicit)
        if load_secrets(config) is None:
            return None
        current = control.status(config, probe=False)
        if current.state != "running":
            raise SandboxError(
                f"the heatgen sandbox in {config.state_dir} is {current.state}; start it with "
                "`heatgen sandbox up`"
            )
        return control.clouds_entry(config)


def open_sandbox(config: SandboxConfig) -> Target:
    """The sandbox in ``config`` as a cloud target, for scripts and tests."""
    from heatgen.cloud.connect import SANDBOX_CLOUD, Target
    from heatgen.cloud.openstack import OpenStackCloud, session_from_entry
    from heatgen.sandbox import control

    connection = session_from_entry(SANDBOX_CLOUD, control.clouds_entry(config))
    return Target(OpenStackCloud(connection), SANDBOX_CLOUD, sandbox=True)


def environments(cloud: Cloud) -> dict[str, str]:
    """The stand-ins' environment: with Aodh in the catalog (``up --telemetry``) the alarms are
    real and only compute and network are stubbed."""
    name = (SANDBOX_TELEMETRY_ENVIRONMENT if cloud.has_service("alarming")
            else SANDBOX_ENVIRONMENT)
    return {name: packaged_environment(name)}


def master(cloud: Cloud, report: Reporter) -> SandboxMaster:
    """The player of the master's ready signal for one deploy."""
    return SandboxMaster(cloud, report)
