"""Fixtures for tests against the real Keystone + Heat of ``heatgen sandbox``.

One sandbox per test session, in a temporary state dir on free non-default ports, stopped
at the end. Tests that need it are marked ``sandbox``; without the extra installed
(``pip install 'heatgen[sandbox]'``) they are skipped.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
DATA = Path(__file__).resolve().parent / "data"
SMALL_GRID = DATA / "small-grid.yaml"
SANDBOX_ENVIRONMENT = REPO / "environments" / "sandbox.yaml"


def sandbox_installed() -> bool:
    return all(importlib.util.find_spec(name) is not None for name in ("keystone", "heat"))


def free_ports(count: int) -> list[int]:
    """Ports nothing listens on right now (held open together so they differ)."""
    from heatgen.sandbox.settings import free_loopback_ports

    return free_loopback_ports(count)


@dataclass
class Sandbox:
    """A running sandbox: its config, clouds.yaml-style auth, a Session and a heatclient."""

    config: Any
    auth: dict[str, Any]
    session: Any
    heat: Any
    startup_seconds: float

    def template(self) -> dict[str, Any]:
        from heatclient.common import template_format

        return dict(template_format.parse(SMALL_GRID.read_text(encoding="utf-8")))

    def environment(self) -> dict[str, Any]:
        from heatclient.common import environment_format

        return dict(environment_format.parse(SANDBOX_ENVIRONMENT.read_text(encoding="utf-8")))


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """Start the sandbox once per session and stop it (with its data) at the end."""
    if not sandbox_installed():
        pytest.skip("needs the sandbox extra: pip install 'heatgen[sandbox]'")
    from heatgen.sandbox.settings import on_free_ports

    yield from _running(on_free_ports(tmp_path_factory.mktemp("sandbox")))


def _running(config: Any, progress: Any = None) -> Iterator[Sandbox]:
    """A sandbox started with ``config``, stopped (with all it made) when the caller is done."""
    from heatclient import client as heat_client

    from heatgen.sandbox import control

    try:
        started = control.up(config, progress=progress)
        session = control.session(config)
        yield Sandbox(
            config=config,
            auth=control.auth_dict(config),
            session=session,
            heat=heat_client.Client("1", session=session),
            startup_seconds=started.startup_seconds or 0.0,
        )
    finally:
        control.down(config)


def pool_unavailable() -> str | None:
    """Why this machine cannot run the sandbox's pool, or None."""
    import os
    import shutil
    import subprocess

    if not sandbox_installed():
        return "needs the sandbox extra: pip install 'heatgen[sandbox]'"
    if os.geteuid() != 0:
        return "the pool's hosts are namespaces: needs root"
    if shutil.which("debootstrap") is None and not Path("/usr/sbin/debootstrap").exists():
        return "needs debootstrap (apt-get install debootstrap)"
    probe = subprocess.run(["unshare", "--net", "--mount", "--uts", "--pid", "--fork", "true"],
                           capture_output=True, check=False)
    if probe.returncode != 0:
        return "this machine cannot make network, mount and PID namespaces"
    return None


@pytest.fixture(scope="session")
def pool_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """A sandbox with its pool (`up --pool`), started once per session, stopped at the end
    with every host, mount and bridge it made."""
    reason = pool_unavailable()
    if reason:
        pytest.skip(reason)
    from dataclasses import replace

    from heatgen.sandbox.settings import on_free_ports

    config = replace(on_free_ports(tmp_path_factory.mktemp("pool-sandbox")), pool=True)
    yield from _running(config, progress=lambda message: print(f"pool sandbox: {message}"))


@pytest.fixture
def env(pool_sandbox: Sandbox) -> dict[str, str]:
    """The environment for `heatgen` subprocesses: the pool sandbox, and no OS_* cloud."""
    import os

    environment = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    environment["HEATGEN_SANDBOX_DIR"] = str(pool_sandbox.config.state_dir)
    return environment


def heatgen_runner(capsys: Any) -> Any:
    """``run(*args)``: `heatgen ARGS` in this process; returns (exit code, stdout, stderr)."""
    from heatgen.cli import main

    def run(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = main(list(args))
        out, err = capsys.readouterr()
        return code, out, err

    return run
