"""What the sandbox plugs into the core commands: its credentials when no cloud is named, the
environment files of its stand-ins (and the templates they use), the master's ready signal
where no VM boots, and the key pairs of its pool hosts.

The CLI passes these in; the core (:mod:`heatgen.ops`, :mod:`heatgen.cloud`) never imports
the sandbox.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from heatgen.cloud.interface import Cloud
from heatgen.errors import SandboxError
from heatgen.ops.fields import (
    SANDBOX_ENVIRONMENT,
    SANDBOX_POOL_ENVIRONMENT,
    SANDBOX_POOL_TELEMETRY_ENVIRONMENT,
    SANDBOX_POOL_TEMPLATES,
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

POOL_OS = "debian13"  # what the pool's hosts boot (their base is Debian 13)


def located(state_dir: Path | None = None) -> SandboxConfig:
    """The sandbox in ``state_dir``, else ``$HEATGEN_SANDBOX_DIR``, else the XDG one."""
    return resolve_config(state_dir or os.environ.get(STATE_DIR_VARIABLE) or None)


class Locator:
    """Finds the sandbox in ``state_dir`` (default: as :func:`located`)."""

    def __init__(self, state_dir: Path | None = None) -> None:
        self.state_dir = state_dir

    def entry(self) -> Mapping[str, Any] | None:
        from heatgen.sandbox import control

        config = located(self.state_dir)
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


@dataclass(frozen=True)
class StandIns:
    """The environment files (and templates) a deploy to the sandbox adds."""

    environments: Mapping[str, str]
    files: Mapping[str, str]
    pool: bool  # servers really boot: the master signals its wait condition itself


def stand_ins(cloud: Cloud, pool: bool | None = None) -> StandIns:
    """With ``--pool`` (default: as the located sandbox runs) the servers, ports and floating
    IPs are the pool's stand-ins; with Aodh in the catalog (``up --telemetry``) the alarms are
    real; the rest is ``OS::Heat::None``."""
    pool = located().pool if pool is None else pool
    telemetry = cloud.has_service("alarming")
    if pool:
        name = SANDBOX_POOL_TELEMETRY_ENVIRONMENT if telemetry else SANDBOX_POOL_ENVIRONMENT
        files = {file: packaged_environment(file) for file in SANDBOX_POOL_TEMPLATES}
    else:
        name = SANDBOX_TELEMETRY_ENVIRONMENT if telemetry else SANDBOX_ENVIRONMENT
        files = {}
    return StandIns({name: packaged_environment(name)}, files, pool)


def environments(cloud: Cloud) -> dict[str, str]:
    """The stand-ins' environment of a sandbox without ``--pool`` (tests, scripts)."""
    return dict(stand_ins(cloud, pool=False).environments)


def check_site_boots(site: Any, config: SandboxConfig | None = None) -> None:
    """A ``--pool`` sandbox boots Debian 13 hosts: other images would run other payloads."""
    if not (config or located()).pool:
        return
    systems = {site.master.os.value, *(group.os.value for group in site.groups)}
    if systems != {POOL_OS}:
        fields = "workers.os" if not site.grouped else "every worker_groups[].os"
        raise SandboxError(
            f"this sandbox boots its servers as Debian 13 hosts (`heatgen sandbox up --pool`), "
            f"and the site asks for {', '.join(sorted(systems))}: set master.os and "
            f"{fields} to {POOL_OS} (with condor.version \"23.9\", Debian's HTCondor), or "
            "deploy to a sandbox without --pool, which stubs compute"
        )


def master(cloud: Cloud, report: Reporter) -> SandboxMaster:
    """The player of the master's ready signal for one deploy (sandboxes without --pool)."""
    return SandboxMaster(cloud, report)


def ssh_identity(key_name: str, config: SandboxConfig | None = None) -> Path | None:
    """The private key the pool gave key pair ``key_name``, if the pool made one."""
    from heatgen.sandbox.pool.agent import key_file

    path = key_file((config or located()).pool_dir / "keys", key_name)
    return path if path.exists() else None


def known_hosts(config: SandboxConfig | None = None) -> Path:
    """Where ssh keeps the pool hosts' keys (not the user's ~/.ssh/known_hosts)."""
    return (config or located()).pool_dir / "known_hosts"
