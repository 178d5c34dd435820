"""Start, stop and inspect the sandbox: the library behind ``heatgen sandbox``.

The sandbox is two background processes, each with a PID file under ``<state>/run``:
``keystone`` (Identity API) and ``heat`` (heat-engine, heat-api and heat-api-cfn in one
process), plus ``postgres`` with ``backend="postgres"``. Everything listens on 127.0.0.1 only.
Nothing here prints; progress goes to an optional callback.
"""

from __future__ import annotations

import errno
import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from heatgen.errors import SandboxError
from heatgen.sandbox import configfiles
from heatgen.sandbox.pool.hosts import HostState
from heatgen.sandbox.settings import (
    ADMIN_PROJECT,
    ADMIN_USER,
    CLOUD_NAME,
    HOST,
    REGION,
    SandboxConfig,
    SandboxSecrets,
    default_clouds_yaml,
    ensure_secrets,
    load_secrets,
    save_settings,
    stored_settings,
)

Progress = Callable[[str], None]
ProcessState = Literal["running", "stopped", "crashed"]
SandboxState = Literal["running", "stopped", "crashed", "degraded"]

_KEYSTONE_MARKER = "keystone-initialised"
_RESET_ENTRIES = ("etc", "data", "log", "run", "pool", "sandbox.json")


class PortBusy(SandboxError):
    """A port the sandbox needs is already taken."""

    def __init__(self, service: str, port: int, flag: str, holders: list[int] | None = None
                 ) -> None:
        self.service = service
        self.port = port
        self.holders = list(holders or [])
        if self.holders:
            pids = " ".join(str(pid) for pid in self.holders)
            message = (
                f"port {HOST}:{port} for {service} is in use, and processes of this sandbox "
                f"run without PID files (pids {pids}); stop them with `kill {pids}`, then run "
                "`heatgen sandbox up` again"
            )
        else:
            message = (
                f"port {HOST}:{port} for {service} is already in use by another program; "
                f"stop that program or choose another port with {flag} PORT"
            )
        super().__init__(message)


class SandboxNotCreated(SandboxError):
    """The state dir holds no sandbox yet."""

    def __init__(self, state_dir: Path) -> None:
        super().__init__(f"no sandbox in {state_dir}; run `heatgen sandbox up` first")


@dataclass(frozen=True)
class ServiceStatus:
    """One API or daemon inside a sandbox process."""

    name: str
    port: int | None
    answering: bool | None = None


@dataclass(frozen=True)
class ProcessStatus:
    """One background process, as found from its PID file and /proc."""

    name: str
    state: ProcessState
    pid: int | None
    rss_bytes: int | None
    services: tuple[ServiceStatus, ...]


@dataclass(frozen=True)
class SandboxStatus:
    """What runs where; ``startup_seconds`` is set by ``up``, ``notes`` explain recoveries."""

    state_dir: Path
    backend: str
    state: SandboxState
    processes: tuple[ProcessStatus, ...]
    startup_seconds: float | None = None
    notes: tuple[str, ...] = field(default=())
    hosts: tuple[HostState, ...] = ()  # the pool's hosts (`up --pool`)

    @property
    def rss_bytes(self) -> int:
        return sum(p.rss_bytes or 0 for p in self.processes) + sum(
            h.rss_bytes or 0 for h in self.hosts)

    @property
    def running(self) -> bool:
        return self.state == "running"


def _say(progress: Progress | None, message: str) -> None:
    if progress is not None:
        progress(message)


# --- processes -------------------------------------------------------------------------


def _components(config: SandboxConfig) -> tuple[str, ...]:
    base = ("postgres", "keystone", "heat") if config.backend == "postgres" else (
        "keystone",
        "heat",
    )
    base = (*base, "telemetry") if config.telemetry else base
    return (*base, "pool") if config.pool else base


def _services(config: SandboxConfig, component: str) -> tuple[ServiceStatus, ...]:
    if component == "keystone":
        return (ServiceStatus("keystone", config.keystone_port),)
    if component == "postgres":
        return (ServiceStatus("postgres", config.postgres_port),)
    if component == "telemetry":
        return (
            ServiceStatus("gnocchi-api", config.gnocchi_port),
            ServiceStatus("aodh-api", config.aodh_port),
            ServiceStatus("gnocchi-metricd", None),
            ServiceStatus("aodh-evaluator", None),
            ServiceStatus("aodh-notifier", None),
        )
    if component == "pool":
        return (ServiceStatus("pool-agent", None),)
    return (
        ServiceStatus("heat-api", config.heat_port),
        ServiceStatus("heat-api-cfn", config.cfn_port),
        ServiceStatus("heat-engine", None),
    )


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text(encoding="ascii").split()[0])
    except (FileNotFoundError, ValueError, IndexError):
        return None


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(
            "utf-8", "replace"
        )
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    try:
        # Reap it if it is our own exited child, so it does not linger as a zombie.
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _is_ours(pid: int, config: SandboxConfig) -> bool:
    """Guard against PID reuse: the process must name this state dir on its command line."""
    return _alive(pid) and str(config.state_dir) in _cmdline(pid)


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


def _rss(pid: int) -> int | None:
    """Resident memory of ``pid`` plus its children (PostgreSQL runs one per connection)."""
    total = 0
    for member in [pid, *_children(pid)]:
        try:
            for line in Path(f"/proc/{member}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except (OSError, ValueError):
            if member == pid:
                return None
    return total


def _answers(port: int, timeout: float = 2.0) -> bool:
    """Any HTTP answer counts: the API is up even if it wants auth or redirects."""
    try:
        with urllib.request.urlopen(f"http://{HOST}:{port}/", timeout=timeout):
            return True
    except urllib.error.HTTPError:
        return True
    except (OSError, ValueError):
        return False


def _port_open(port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=timeout):
            return True
    except OSError:
        return False


def _process_status(config: SandboxConfig, component: str, probe: bool) -> ProcessStatus:
    pid = _read_pid(config.pid_file(component))
    services = _services(config, component)
    if pid is None:
        return ProcessStatus(component, "stopped", None, None, services)
    if not _is_ours(pid, config):
        return ProcessStatus(component, "crashed", pid, None, services)
    if probe:
        services = tuple(
            replace(
                service,
                answering=None
                if service.port is None
                else (_port_open(service.port) if component == "postgres"
                      else _answers(service.port)),
            )
            for service in services
        )
    return ProcessStatus(component, "running", pid, _rss(pid), services)


def status(config: SandboxConfig, *, probe: bool = True) -> SandboxStatus:
    """What runs, on which ports, with how much memory; never changes anything.

    ``crashed``: a PID file names a process that is gone. ``degraded``: processes run but an
    API does not answer.
    """
    processes = tuple(_process_status(config, name, probe) for name in _components(config))
    states = {p.state for p in processes}
    state: SandboxState
    if "crashed" in states or states == {"running", "stopped"}:
        state = "crashed"
    elif states == {"stopped"}:
        state = "stopped"
    elif any(s.answering is False for p in processes for s in p.services):
        state = "degraded"
    else:
        state = "running"
    hosts: tuple[HostState, ...] = ()
    if config.pool:
        from heatgen.sandbox.pool import network

        hosts = tuple(network.host_states(config))
    return SandboxStatus(config.state_dir, config.backend, state, processes, hosts=hosts)


def describe_crash(current: SandboxStatus) -> str:
    """One sentence naming the processes that died, for status output and ``up`` notes."""
    dead = [
        f"{p.name} (pid {p.pid})" if p.pid else p.name
        for p in current.processes
        if p.state != "running"
    ]
    return f"sandbox crashed: {', '.join(dead)} not running; logs in {current.state_dir / 'log'}"


def _terminate(pid: int, config: SandboxConfig, timeout: float) -> bool:
    """SIGTERM, wait, then SIGKILL; True if the process had to be killed."""
    if not _is_ours(pid, config):
        return False
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return False
        time.sleep(0.1)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return False
    while _alive(pid):
        time.sleep(0.05)
    return True


def _stop_component(config: SandboxConfig, component: str, timeout: float) -> str | None:
    pid_file = config.pid_file(component)
    pid = _read_pid(pid_file)
    note = None
    if component == "postgres":
        from heatgen.sandbox import postgres

        postgres.stop(config, timeout)
        note = f"stopped postgres (pid {pid})" if pid else None
    elif pid is not None:
        if _is_ours(pid, config):
            killed = _terminate(pid, config, timeout)
            note = f"{'killed' if killed else 'stopped'} {component} (pid {pid})"
        else:
            note = f"removed stale PID file of {component} (pid {pid} was not running)"
    pid_file.unlink(missing_ok=True)
    return note


def down(
    config: SandboxConfig, *, reset: bool = False, timeout: float = 30.0,
    progress: Progress | None = None,
) -> SandboxStatus:
    """Stop the sandbox (Heat first), keeping its data unless ``reset``.

    ``reset`` also deletes stacks, Keystone data, configs and logs; the generated passwords
    stay, so an existing clouds.yaml entry keeps working after the next ``up``.
    """
    notes: list[str] = []
    for component in reversed(_components(config)):
        _say(progress, f"stopping {component}")
        note = _stop_component(config, component, timeout)
        if note:
            notes.append(note)
    if config.pool or (config.pool_dir / "network.json").exists():
        from heatgen.sandbox.pool import network

        notes.extend(network.teardown(config))
    if reset:
        for entry in _RESET_ENTRIES:
            path = config.state_dir / entry
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
        notes.append(f"deleted sandbox data in {config.state_dir}")
    return replace(status(config, probe=False), notes=tuple(notes))


# --- starting ----------------------------------------------------------------------------

_PORT_FLAGS = {
    "keystone": "--keystone-port",
    "heat-api": "--heat-port",
    "heat-api-cfn": "--cfn-port",
    "postgres": "--postgres-port",
    "gnocchi-api": "--gnocchi-port",
    "aodh-api": "--aodh-port",
}


def _untracked(config: SandboxConfig) -> list[int]:
    """Processes of this state dir's sandbox (e.g. after its PID files were deleted)."""
    markers = ("heatgen.sandbox.", f"-D {config.data_dir / 'postgres'}")
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        command = _cmdline(int(entry.name))
        if str(config.state_dir) in command and any(m in command for m in markers):
            found.append(int(entry.name))
    return sorted(found)


def check_ports_free(config: SandboxConfig) -> None:
    """Raise PortBusy for the first sandbox port something already listens on."""
    for service, port in config.ports.items():
        probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            # Same option the servers set, so a port in TIME_WAIT does not count as busy.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((HOST, port))
        except OSError as error:
            if error.errno in (errno.EADDRINUSE, errno.EACCES):
                raise PortBusy(service, port, _PORT_FLAGS[service], _untracked(config)) from error
            raise SandboxError(f"cannot bind {HOST}:{port} for {service}: {error}") from error
        finally:
            probe.close()


def _child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    # The children import heatgen.sandbox; make that work from a source checkout too.
    package_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def _run_module(config: SandboxConfig, module: str, args: list[str], log_name: str,
                extra_env: dict[str, str] | None = None, timeout: float = 300.0) -> None:
    """Run a helper to completion (keystone-manage steps), output appended to a log."""
    env = _child_env()
    env.update(extra_env or {})
    with open(config.log_file(log_name), "ab") as log:
        result = subprocess.run(
            [sys.executable, "-m", module, *args],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            cwd=config.state_dir, env=env, timeout=timeout, check=False,
        )
    if result.returncode != 0:
        raise SandboxError(
            f"`{module} {args[0]}` failed "
            f"(exit {result.returncode}); see {config.log_file(log_name)}"
        )


def _spawn(config: SandboxConfig, component: str, args: list[str]) -> subprocess.Popen[bytes]:
    with open(config.log_dir / f"{component}.out", "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", f"heatgen.sandbox.{component}_process", *args],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            cwd=config.state_dir, env=_child_env(), start_new_session=True, close_fds=True,
        )
    config.pid_file(component).write_text(f"{process.pid}\n", encoding="ascii")
    return process


def _startup_failure(config: SandboxConfig, component: str, code: int | None) -> SandboxError:
    from heatgen.sandbox import serving

    logs = f"{config.log_file(component)} and {config.log_dir / (component + '.out')}"
    if code == serving.EXIT_PORT_BUSY:
        return SandboxError(f"{component} could not listen on its port; see {logs}")
    return SandboxError(
        f"{component} exited during start (exit {code}); see {logs}. If the data is damaged, "
        "`heatgen sandbox up --reset` starts an empty sandbox (deletes its stacks)"
    )


def _wait_until(
    ready: Callable[[], bool], process: subprocess.Popen[bytes] | None, config: SandboxConfig,
    component: str, deadline: float, interval: float = 0.25,
) -> None:
    while True:
        if process is not None and process.poll() is not None:
            raise _startup_failure(config, component, process.returncode)
        if ready():
            return
        if time.monotonic() > deadline:
            raise SandboxError(
                f"{component} did not become ready within {config.start_timeout:.0f} s; "
                f"see {config.log_file(component)}"
            )
        time.sleep(interval)


def _database_urls(config: SandboxConfig) -> dict[str, str]:
    if config.backend == "postgres":
        from heatgen.sandbox import postgres

        return {name: postgres.database_url(config, name) for name in ("keystone", "heat")}
    return {
        name: f"sqlite:///{config.data_dir / (name + '.sqlite')}" for name in ("keystone", "heat")
    }


def _write_configs(config: SandboxConfig, secrets: SandboxSecrets,
                   signal_host: str | None = None) -> None:
    urls = _database_urls(config)
    paste = config.etc_dir / "heat-api-paste.ini"
    heat = configfiles.heat_conf(config, secrets, urls["heat"], paste, signal_host)
    files = {
        config.etc_dir / "keystone.conf": configfiles.keystone_conf(config, urls["keystone"]),
        config.etc_dir / "heat.conf": heat,
        paste: configfiles.heat_paste_ini(),
    }
    for path, text in files.items():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)


def _keystone_version() -> str:
    from importlib.metadata import version

    return version("keystone")


def _init_keystone(config: SandboxConfig, secrets: SandboxSecrets, progress: Progress | None,
                   ) -> None:
    """db_sync, key repositories and bootstrap: first start, or after a Keystone upgrade."""
    marker = config.data_dir / _KEYSTONE_MARKER
    wanted = _keystone_version()
    if marker.exists() and marker.read_text(encoding="utf-8").strip() == wanted:
        return
    _say(progress, "initialising keystone (first start)")
    base = ["--config-file", str(config.etc_dir / "keystone.conf")]
    if config.backend == "sqlite":
        base.append("--sqlite")
    user = ["--keystone-user", str(os.getuid()), "--keystone-group", str(os.getgid())]
    module = "heatgen.sandbox.keystone_process"
    steps: list[list[str]] = [
        ["db_sync"],
        ["fernet_setup", *user],
        ["credential_setup", *user],
        [
            "bootstrap",
            "--bootstrap-username", ADMIN_USER,
            "--bootstrap-project-name", ADMIN_PROJECT,
            "--bootstrap-role-name", "admin",
            "--bootstrap-service-name", "keystone",
            "--bootstrap-region-id", REGION,
            "--bootstrap-public-url", config.keystone_url,
            "--bootstrap-internal-url", config.keystone_url,
        ],
    ]
    if marker.exists():
        steps = steps[:1]  # a Keystone upgrade only needs the schema migration
    commands = [word for step in steps for word in ("+", *step)][1:]
    _run_module(
        config, module, ["manage", *base, "--", *commands], "keystone-manage",
        # The password travels in the environment, never on a command line.
        extra_env={"OS_BOOTSTRAP_PASSWORD": secrets.admin_password},
    )
    marker.write_text(wanted + "\n", encoding="utf-8")


def _heat_round_trip(config: SandboxConfig, secrets: SandboxSecrets) -> Callable[[], bool]:
    from heatclient import client as heat_client

    from heatgen.sandbox.identity import admin_session

    session = admin_session(config, secrets)

    def ready() -> bool:
        try:
            heat = heat_client.Client("1", session=session)
            list(heat.stacks.list(limit=1))
            return True
        except Exception:  # noqa: BLE001 - any failure just means "not yet"
            return False

    return ready


def _start_telemetry(config: SandboxConfig, secrets: SandboxSecrets, deadline: float,
                     progress: Progress | None) -> None:
    """Gnocchi + Aodh in one more process, registered in Keystone (``up --telemetry``)."""
    from heatgen.sandbox import postgres, telemetry
    from heatgen.sandbox.identity import admin_session

    _say(progress, "preparing telemetry (gnocchi, aodh) databases")
    telemetry_secrets = telemetry.ensure_secrets(config)
    postgres.create_databases(config, telemetry.DATABASES)
    telemetry.write_configs(config, telemetry_secrets)
    _run_module(config, "heatgen.sandbox.telemetry_process",
                telemetry.process_args(config, "upgrade"), "telemetry-upgrade")
    session = admin_session(config, secrets)
    telemetry.ensure_identity(session, config, telemetry_secrets)
    _say(progress, f"starting gnocchi on {HOST}:{config.gnocchi_port} and aodh on "
                   f"{HOST}:{config.aodh_port}")
    process = _spawn(config, "telemetry", telemetry.process_args(config, "serve"))
    telemetry.wait_answering(config, _answers, lambda: process.poll() is None, deadline)
    # A new session: the first one's token carries the catalog from before `metric` existed.
    telemetry.ensure_gnocchi_objects(admin_session(config, secrets))


def has_data(config: SandboxConfig) -> bool:
    """Whether the state dir holds a sandbox's data (Keystone was initialised there)."""
    return (config.data_dir / _KEYSTONE_MARKER).exists()


def _previous_config(config: SandboxConfig) -> SandboxConfig:
    """The sandbox as the last ``up`` in this state dir left it (``config`` if none)."""
    stored = stored_settings(config.state_dir)
    if not stored:
        return config
    return replace(config, **stored)


def refuse_backend_switch(previous: SandboxConfig, config: SandboxConfig) -> None:
    """Stacks and users live in the backend's database: another backend would start empty
    and break the old one's state, so a switch needs ``--reset``."""
    if previous.backend == config.backend or not has_data(previous):
        return
    extra = " --telemetry" if config.telemetry else ""
    raise SandboxError(
        f"the sandbox in {config.state_dir} keeps its stacks and users in {previous.backend}; "
        f"it cannot move them to {config.backend}. Start it as it is with `heatgen sandbox up "
        f"--backend {previous.backend}`, or start an empty {config.backend} sandbox with "
        f"`heatgen sandbox up --reset --backend {config.backend}{extra}` (deletes its stacks); "
        "nothing was changed"
    )


def up(
    config: SandboxConfig, *, reset: bool = False, progress: Progress | None = None
) -> SandboxStatus:
    """Start the sandbox and wait until a heatclient round trip succeeds.

    Already running: returns its status. Crashed: stops what is left, says so in ``notes``
    and starts again; Heat marks stacks that were IN_PROGRESS as FAILED. ``reset`` starts
    from empty data (keeps the generated passwords).
    """
    started = time.monotonic()
    notes: list[str] = []
    previous = _previous_config(config)
    if reset:
        down(previous, reset=True, progress=progress)
        notes.append("reset: previous stacks and identity data deleted")
    else:
        refuse_backend_switch(previous, config)
        if previous != config and status(previous, probe=False).state == "running":
            _say(progress, "settings changed; restarting the sandbox with them")
            notes.extend(down(previous).notes)
    current = status(config)
    if current.state == "running":
        return replace(current, notes=("already running",))
    if current.state in ("crashed", "degraded"):
        notes.append(
            describe_crash(current) if current.state == "crashed"
            else "sandbox was running but not answering"
        )
        _say(progress, notes[-1] + "; restarting")
        notes.extend(down(config).notes)
    check_ports_free(config)

    for directory in (config.state_dir, config.etc_dir, config.data_dir, config.log_dir,
                      config.run_dir):
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(config.state_dir, 0o700)
    secrets = ensure_secrets(config)
    save_settings(config)
    deadline = time.monotonic() + config.start_timeout

    try:
        bridge_address = None
        if config.pool:
            from heatgen.sandbox.pool import network

            bridge_address = network.prepare(config, progress).gateway
        _write_configs(config, secrets, bridge_address)
        if config.backend == "postgres":
            from heatgen.sandbox import postgres

            _say(progress, f"starting postgres on {HOST}:{config.postgres_port}")
            postgres.start(config, deadline)
        # Heat reads only its database while it starts, so it boots while Keystone
        # initialises and starts.
        _say(progress, f"starting heat on {HOST}:{config.heat_port} and "
                       f"{HOST}:{config.cfn_port}")
        heat_args = [
            "--config-file", str(config.etc_dir / "heat.conf"),
            "--api-port", str(config.heat_port), "--cfn-port", str(config.cfn_port),
        ]
        if config.backend == "sqlite":
            heat_args += ["--sqlite", str(config.data_dir / "heat.sqlite")]
        if bridge_address:
            heat_args += ["--api-also-on", bridge_address]
        heat = _spawn(config, "heat", heat_args)

        _init_keystone(config, secrets, progress)

        _say(progress, f"starting keystone on {HOST}:{config.keystone_port}")
        keystone_args = [
            "serve", "--config-file", str(config.etc_dir / "keystone.conf"),
            "--port", str(config.keystone_port),
        ]
        if config.backend == "sqlite":
            keystone_args.append("--sqlite")
        keystone = _spawn(config, "keystone", keystone_args)

        _wait_until(lambda: _answers(config.keystone_port), keystone, config, "keystone",
                    deadline)
        from heatgen.sandbox.identity import admin_session, ensure_heat_identity

        ensure_heat_identity(admin_session(config, secrets), config, secrets)
        _say(progress, "waiting for a heatclient round trip")
        _wait_until(_heat_round_trip(config, secrets), heat, config, "heat", deadline,
                    interval=0.5)
        if config.telemetry:
            _start_telemetry(config, secrets, deadline, progress)
        if config.pool:
            _say(progress, f"starting the pool agent (hosts on {bridge_address}'s bridge)")
            agent = _spawn(config, "pool", ["--state-dir", str(config.state_dir)])
            time.sleep(0.5)
            if agent.poll() is not None:
                raise _startup_failure(config, "pool", agent.returncode)
    except BaseException:
        down(config)
        if previous != config and has_data(previous):
            save_settings(previous)  # the next plain `up` starts the sandbox that worked
        raise

    elapsed = time.monotonic() - started
    return replace(status(config), startup_seconds=elapsed, notes=tuple(notes))


# --- credentials -------------------------------------------------------------------------


def clouds_entry(config: SandboxConfig) -> dict[str, Any]:
    """The ``clouds.yaml`` entry (under ``clouds: heatgen-sandbox:``) for the sandbox admin."""
    secrets = load_secrets(config)
    if secrets is None:
        raise SandboxNotCreated(config.state_dir)
    return {
        "auth": {
            "auth_url": config.auth_url,
            "username": ADMIN_USER,
            "password": secrets.admin_password,
            "project_name": ADMIN_PROJECT,
            "user_domain_name": "Default",
            "project_domain_name": "Default",
        },
        "region_name": REGION,
        "interface": "public",
        "identity_api_version": 3,
    }


def clouds_document(config: SandboxConfig) -> dict[str, Any]:
    """A complete clouds.yaml document holding only the sandbox entry."""
    return {"clouds": {CLOUD_NAME: clouds_entry(config)}}


def write_clouds_yaml(config: SandboxConfig, path: Path | None = None) -> Path:
    """Add or replace the ``heatgen-sandbox`` entry in ``path``, keeping everything else.

    The file is edited round-trip (ruamel.yaml), so other clouds, comments and key order stay
    as they were; the previous file is kept as ``<path>.bak``. Both are written atomically with
    mode 0600 (they hold passwords).
    """
    from ruamel.yaml import YAML
    from ruamel.yaml.comments import CommentedMap
    from ruamel.yaml.error import YAMLError

    target = (path or default_clouds_yaml()).expanduser()
    entry = clouds_entry(config)
    round_trip = YAML()
    round_trip.preserve_quotes = True
    try:
        before: str | None = target.read_text(encoding="utf-8")
    except FileNotFoundError:
        before = None
    except OSError as error:
        raise SandboxError(f"{target}: cannot read ({error.strerror}); not changed") from error
    try:
        document = round_trip.load(before) if before and before.strip() else None
    except YAMLError as error:
        raise SandboxError(f"{target}: not valid YAML ({type(error).__name__}); not changed"
                           ) from error
    if document is None:
        document = CommentedMap()
    clouds = document.get("clouds") if isinstance(document, dict) else None
    if not isinstance(document, dict) or not isinstance(clouds, dict | None):
        raise SandboxError(f"{target}: expected a mapping with a `clouds` mapping; not changed")
    if clouds is None:
        document["clouds"] = clouds = CommentedMap()
    clouds[CLOUD_NAME] = entry
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if before is not None:
        _write_private_file(target.with_name(target.name + ".bak"), before)
    buffer = io.StringIO()
    round_trip.dump(document, buffer)
    _write_private_file(target, buffer.getvalue())
    return target


def _write_private_file(target: Path, text: str) -> None:
    tmp = target.with_name(f".{target.name}.heatgen-tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.chmod(tmp, 0o600)
    os.replace(tmp, target)


def auth_dict(config: SandboxConfig) -> dict[str, Any]:
    """The ``auth`` part of the clouds.yaml entry (keystoneauth password plugin arguments)."""
    return dict(clouds_entry(config)["auth"])


def session(config: SandboxConfig) -> Any:
    """A keystoneauth1 Session as the sandbox admin (admin project)."""
    from heatgen.sandbox.identity import admin_session

    secrets = load_secrets(config)
    if secrets is None:
        raise SandboxNotCreated(config.state_dir)
    return admin_session(config, secrets)
