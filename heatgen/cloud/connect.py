"""Which cloud a command talks to, and the credentials for it.

In this order: ``--os-cloud NAME``, the site's ``cloud:``, ``OS_CLOUD``, the ``OS_*``
variables (openstacksdk's loader reads clouds.yaml and the environment), and last the local
sandbox, when one exists. The sandbox is plugged in by the caller as a
:class:`SandboxLocator` (the core never imports :mod:`heatgen.sandbox`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from heatgen.cloud.interface import Cloud
from heatgen.errors import CloudError

SANDBOX_CLOUD = "heatgen-sandbox"

NO_CLOUD = (
    "no cloud is configured: pass --os-cloud NAME, set `cloud:` in the site config or "
    "OS_CLOUD / OS_* variables, or start the local one with `heatgen sandbox up`"
)


class SandboxLocator(Protocol):
    """Finds the local sandbox's clouds.yaml entry."""

    def entry(self) -> Mapping[str, Any] | None:
        """The running sandbox's entry; None when no sandbox was ever made here. Raises
        :class:`~heatgen.errors.CloudError` (saying how to start it) when it is not running."""


@dataclass(frozen=True)
class Target:
    """A cloud to talk to, under the name heatgen shows for it."""

    cloud: Cloud
    name: str
    sandbox: bool


def choose_cloud(
    os_cloud: str | None, site_cloud: str | None, environ: Mapping[str, str] | None = None
) -> str | None:
    """The clouds.yaml name to use, or None for the ``OS_*`` variables or the sandbox."""
    environ = os.environ if environ is None else environ
    return os_cloud or site_cloud or environ.get("OS_CLOUD") or None


def open_cloud(
    os_cloud: str | None,
    site_cloud: str | None = None,
    sandbox: SandboxLocator | None = None,
    environ: Mapping[str, str] | None = None,
) -> Target:
    """Connect to the chosen cloud (module docstring); nothing is requested yet."""
    from heatgen.cloud import openstack

    environ = os.environ if environ is None else environ
    name = choose_cloud(os_cloud, site_cloud, environ)
    if name is None and not environ.get("OS_AUTH_URL"):
        entry = sandbox.entry() if sandbox is not None else None
        if entry is None:
            raise CloudError(NO_CLOUD)
        return _target(openstack.session_from_entry(SANDBOX_CLOUD, entry), sandbox=True)
    if name == SANDBOX_CLOUD and SANDBOX_CLOUD not in openstack.known_clouds():
        # The name the sandbox prints works while it runs, without `sandbox env --write`.
        entry = sandbox.entry() if sandbox is not None else None
        if entry is None:
            raise CloudError(
                f"cloud {SANDBOX_CLOUD!r}: no heatgen sandbox exists here; start one with "
                "`heatgen sandbox up`"
            )
        return _target(openstack.session_from_entry(SANDBOX_CLOUD, entry), sandbox=True)
    return _target(openstack.session_for_cloud(name), sandbox=name == SANDBOX_CLOUD)


def _target(connection: Any, sandbox: bool) -> Target:
    from heatgen.cloud import openstack

    return Target(openstack.OpenStackCloud(connection), connection.name, sandbox)
