"""Where the sandbox keeps its state, which ports it uses, and its generated secrets.

Light on purpose: only the standard library, so ``heatgen sandbox --help`` and
``heatgen render`` never pay for Keystone or Heat imports.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import socket
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from heatgen.errors import SandboxError, UsageError

HOST = "127.0.0.1"
CLOUD_NAME = "heatgen-sandbox"
REGION = "RegionOne"
ADMIN_USER = "admin"
ADMIN_PROJECT = "admin"

# Off the usual 5000/8000/8004 (Flask, dev servers, a real DevStack) so the sandbox can run
# next to them; the last digits keep the relation to the official ports readable.
DEFAULT_KEYSTONE_PORT = 15000
DEFAULT_HEAT_PORT = 18004
DEFAULT_CFN_PORT = 18000
DEFAULT_POSTGRES_PORT = 15432
DEFAULT_GNOCCHI_PORT = 18041
DEFAULT_AODH_PORT = 18042
# Gnocchi's indexer has no SQLite support (it retries the connection forever).
TELEMETRY_NEEDS_POSTGRES = (
    "--telemetry needs --backend postgres: Gnocchi's indexer runs only on PostgreSQL or MySQL "
    "(apt-get install postgresql; pip install 'heatgen[sandbox]')"
)

Backend = Literal["sqlite", "postgres"]
BACKENDS: tuple[Backend, ...] = ("sqlite", "postgres")

SETTINGS_FILE = "sandbox.json"
SECRETS_FILE = "secrets.json"


STATE_DIR_VARIABLE = "HEATGEN_SANDBOX_DIR"


def default_state_dir(env: Mapping[str, str] | None = None) -> Path:
    """``$HEATGEN_SANDBOX_DIR``, else ``$XDG_DATA_HOME/heatgen/sandbox``, else
    ``~/.local/share/heatgen/sandbox``."""
    env = os.environ if env is None else env
    explicit = env.get(STATE_DIR_VARIABLE, "").strip()
    if explicit:
        return Path(explicit)
    data_home = env.get("XDG_DATA_HOME", "").strip()
    base = Path(data_home) if data_home else Path.home() / ".local" / "share"
    return base / "heatgen" / "sandbox"


def default_clouds_yaml(env: Mapping[str, str] | None = None) -> Path:
    """Where openstacksdk looks first for a user's clouds.yaml."""
    env = os.environ if env is None else env
    config_home = env.get("XDG_CONFIG_HOME", "").strip()
    base = Path(config_home) if config_home else Path.home() / ".config"
    return base / "openstack" / "clouds.yaml"


@dataclass(frozen=True)
class SandboxConfig:
    """Everything that decides how one sandbox runs; paths derive from ``state_dir``."""

    state_dir: Path = field(default_factory=default_state_dir)
    keystone_port: int = DEFAULT_KEYSTONE_PORT
    heat_port: int = DEFAULT_HEAT_PORT
    cfn_port: int = DEFAULT_CFN_PORT
    backend: Backend = "sqlite"
    postgres_port: int = DEFAULT_POSTGRES_PORT
    start_timeout: float = 180.0
    telemetry: bool = False
    gnocchi_port: int = DEFAULT_GNOCCHI_PORT
    aodh_port: int = DEFAULT_AODH_PORT
    pool: bool = False  # servers boot as sandbox hosts (`up --pool`)

    def __post_init__(self) -> None:
        object.__setattr__(self, "state_dir", Path(self.state_dir).expanduser().absolute())
        if self.backend not in BACKENDS:
            raise UsageError(f"sandbox backend must be one of {', '.join(BACKENDS)}")
        ports = {
            "--keystone-port": self.keystone_port,
            "--heat-port": self.heat_port,
            "--cfn-port": self.cfn_port,
        }
        if self.backend == "postgres":
            ports["--postgres-port"] = self.postgres_port
        if self.telemetry:
            if self.backend != "postgres":
                raise UsageError(TELEMETRY_NEEDS_POSTGRES)
            ports["--gnocchi-port"] = self.gnocchi_port
            ports["--aodh-port"] = self.aodh_port
        for flag, port in ports.items():
            if not 1 <= port <= 65535:
                raise UsageError(f"{flag}: must be a TCP port 1-65535 (got {port})")
        if len(set(ports.values())) != len(ports):
            raise UsageError(f"sandbox ports must differ (got {ports})")

    @property
    def ports(self) -> dict[str, int]:
        """Service name -> loopback port, in start order."""
        ports = {
            "keystone": self.keystone_port,
            "heat-api": self.heat_port,
            "heat-api-cfn": self.cfn_port,
        }
        if self.backend == "postgres":
            ports = {"postgres": self.postgres_port, **ports}
        if self.telemetry:
            ports.update({"gnocchi-api": self.gnocchi_port, "aodh-api": self.aodh_port})
        return ports

    @property
    def keystone_url(self) -> str:
        return f"http://{HOST}:{self.keystone_port}"

    @property
    def auth_url(self) -> str:
        return f"{self.keystone_url}/v3"

    @property
    def heat_url(self) -> str:
        return f"http://{HOST}:{self.heat_port}/v1/%(tenant_id)s"

    @property
    def cfn_url(self) -> str:
        return f"http://{HOST}:{self.cfn_port}/v1"

    @property
    def pool_dir(self) -> Path:
        """The pool's hosts, addresses, key pairs and agent state."""
        return self.state_dir / "pool"

    @property
    def tag(self) -> str:
        """A short name of this sandbox for the kernel objects it makes (bridge, veths)."""
        return hashlib.sha256(str(self.state_dir).encode()).hexdigest()[:4]

    @property
    def log_dir(self) -> Path:
        return self.state_dir / "log"

    @property
    def run_dir(self) -> Path:
        return self.state_dir / "run"

    @property
    def etc_dir(self) -> Path:
        return self.state_dir / "etc"

    @property
    def data_dir(self) -> Path:
        return self.state_dir / "data"

    def pid_file(self, component: str) -> Path:
        return self.run_dir / f"{component}.pid"

    def log_file(self, component: str) -> Path:
        return self.log_dir / f"{component}.log"


def _settings_path(state_dir: Path) -> Path:
    return state_dir / SETTINGS_FILE


def stored_settings(state_dir: Path) -> dict[str, Any]:
    """The settings saved by the last ``up`` in ``state_dir`` (empty if none)."""
    path = _settings_path(state_dir)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as error:
        raise SandboxError(f"{path}: unreadable sandbox settings ({error})") from error
    if not isinstance(raw, dict):
        raise SandboxError(f"{path}: expected a JSON object")
    known = {"keystone_port", "heat_port", "cfn_port", "backend", "postgres_port",
             "telemetry", "gnocchi_port", "aodh_port", "pool"}
    return {key: value for key, value in raw.items() if key in known}


def resolve_config(state_dir: Path | str | None = None, **overrides: Any) -> SandboxConfig:
    """Build the config from stored settings, with explicit (non-None) overrides winning.

    A later ``status``/``down``/``env`` therefore needs no port flags: it finds what
    ``up`` used.
    """
    directory = Path(state_dir).expanduser() if state_dir else default_state_dir()
    values: dict[str, Any] = stored_settings(directory.absolute())
    values.update({key: value for key, value in overrides.items() if value is not None})
    return SandboxConfig(state_dir=directory, **values)


def save_settings(config: SandboxConfig) -> None:
    """Record the ports and backend so later commands find them."""
    data = asdict(config)
    data.pop("state_dir")
    data.pop("start_timeout")
    _write_private(_settings_path(config.state_dir), json.dumps(data, indent=2) + "\n")


@dataclass(frozen=True)
class SandboxSecrets:
    """Passwords and keys generated at the first ``up``; stored 0600 in the state dir."""

    admin_password: str
    heat_password: str
    domain_admin_password: str
    auth_encryption_key: str

    def __repr__(self) -> str:
        return "SandboxSecrets(<redacted>)"


def _new_password() -> str:
    # URL-safe alphabet: no '$' (oslo.config interpolation) and no quoting trouble in YAML.
    return secrets.token_urlsafe(24)


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def load_secrets(config: SandboxConfig) -> SandboxSecrets | None:
    """The stored secrets, or None before the first ``up``."""
    path = config.state_dir / SECRETS_FILE
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        return SandboxSecrets(**raw)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError) as error:
        raise SandboxError(
            f"{path}: unreadable sandbox secrets ({type(error).__name__}); "
            "run `heatgen sandbox up --reset` to start a new sandbox"
        ) from error


def ensure_secrets(config: SandboxConfig) -> SandboxSecrets:
    """Load the secrets, generating and storing them (mode 0600) the first time."""
    existing = load_secrets(config)
    if existing is not None:
        return existing
    created = SandboxSecrets(
        admin_password=_new_password(),
        heat_password=_new_password(),
        domain_admin_password=_new_password(),
        auth_encryption_key=secrets.token_hex(16),
    )
    _write_private(config.state_dir / SECRETS_FILE, json.dumps(asdict(created), indent=2) + "\n")
    return created


def with_overrides(config: SandboxConfig, **overrides: Any) -> SandboxConfig:
    """A copy of ``config`` with the non-None overrides applied."""
    return replace(config, **{k: v for k, v in overrides.items() if v is not None})


def free_loopback_ports(count: int) -> list[int]:
    """``count`` different ports nothing listens on right now (held open together)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind((HOST, 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def on_free_ports(state_dir: Path, *, backend: Backend = "sqlite", telemetry: bool = False,
                  **extra: Any) -> SandboxConfig:
    """A sandbox in ``state_dir`` on loopback ports nothing listens on now (tests, benches).

    ``telemetry`` implies PostgreSQL (Gnocchi's indexer needs it).
    """
    backend = "postgres" if telemetry else backend
    ks, heat, cfn, pg, gnocchi, aodh = free_loopback_ports(6)
    return SandboxConfig(
        state_dir=state_dir, keystone_port=ks, heat_port=heat, cfn_port=cfn, backend=backend,
        postgres_port=pg, telemetry=telemetry, gnocchi_port=gnocchi, aodh_port=aodh, **extra,
    )
