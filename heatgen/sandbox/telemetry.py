"""Real telemetry for the sandbox (``heatgen sandbox up --telemetry``): Gnocchi + Aodh.

One more background process, ``telemetry`` (see :mod:`heatgen.sandbox.telemetry_process`),
with Gnocchi's API and metricd and Aodh's API, evaluator and notifier, registered in the
sandbox Keystone as services ``metric`` and ``alarming``. Both keep their indexes in the
sandbox's PostgreSQL (Gnocchi has no SQLite indexer) and their measures in files. The
evaluator runs every :data:`EVALUATION_INTERVAL` seconds, and the archive policy
:data:`ARCHIVE_POLICY` keeps 60 s buckets (and, for a short hour, 10 s ones: a site with
``granularity: 10`` runs the whole loop in seconds, as the integration test does) of ``mean`` and
``rate:mean``, the aggregation the grid's alarms ask for. Nothing plays Ceilometer:
``heatgen sandbox load`` writes the samples.
"""

from __future__ import annotations

import json
import secrets as secret_tokens
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from heatgen.errors import SandboxError
from heatgen.sandbox.configfiles import SERVICE_PROJECT, render_ini
from heatgen.sandbox.settings import HOST, REGION, SandboxConfig, _write_private

EVALUATION_INTERVAL = 10
GRANULARITY = 60
# Buckets for quick loops (tests, demos): an alarm's granularity must be one of the policy's.
SHORT_GRANULARITY = 10
ARCHIVE_POLICY = "heatgen-10s-60s"  # a new name: a sandbox made with "heatgen-60s" gets it too
METRICD_DELAY = 2
SECRETS_FILE = "telemetry-secrets.json"
DATABASES = ("gnocchi", "aodh")
SERVICE_USERS = ("gnocchi", "aodh", "ceilometer")
# Ceilometer's `instance` resource type (gnocchi_resources.yaml), all optional here.
INSTANCE_ATTRIBUTES = {
    "display_name": {"type": "string", "required": False, "max_length": 255},
    "host": {"type": "string", "required": False, "max_length": 255},
    "image_ref": {"type": "string", "required": False, "max_length": 255},
    "flavor_id": {"type": "string", "required": False, "max_length": 255},
    "flavor_name": {"type": "string", "required": False, "max_length": 255},
    "server_group": {"type": "string", "required": False, "max_length": 255},
}


@dataclass(frozen=True)
class TelemetrySecrets:
    """Passwords of the service users gnocchi, aodh and ceilometer (0600 in the state dir)."""

    gnocchi_password: str
    aodh_password: str
    ceilometer_password: str

    def password(self, user: str) -> str:
        return str(getattr(self, f"{user}_password"))

    def __repr__(self) -> str:
        return "TelemetrySecrets(<redacted>)"


def ensure_secrets(config: SandboxConfig) -> TelemetrySecrets:
    path = config.state_dir / SECRETS_FILE
    try:
        return TelemetrySecrets(**json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        pass
    except (OSError, ValueError, TypeError) as error:
        raise SandboxError(f"{path}: unreadable ({type(error).__name__}); delete it") from error
    created = TelemetrySecrets(
        *(secret_tokens.token_urlsafe(24) for _ in SERVICE_USERS)
    )
    _write_private(path, json.dumps(asdict(created), indent=2) + "\n")
    return created


def load_secrets(config: SandboxConfig) -> TelemetrySecrets | None:
    path = config.state_dir / SECRETS_FILE
    if not path.exists():
        return None
    return ensure_secrets(config)


def gnocchi_url(config: SandboxConfig) -> str:
    return f"http://{HOST}:{config.gnocchi_port}"


def aodh_url(config: SandboxConfig) -> str:
    return f"http://{HOST}:{config.aodh_port}"


# --- configuration files -----------------------------------------------------------------


def _service_auth(config: SandboxConfig, user: str, password: str) -> dict[str, str]:
    return {
        "auth_type": "password",
        "auth_url": config.keystone_url,
        "username": user,
        "password": password,
        "user_domain_name": "Default",
        "project_name": SERVICE_PROJECT,
        "project_domain_name": "Default",
    }


def gnocchi_conf(config: SandboxConfig, secrets: TelemetrySecrets, database_url: str,
                 paste: Path) -> str:
    store = config.data_dir / "gnocchi"
    return render_ini(
        {
            "DEFAULT": {"log_file": config.log_file("telemetry"), "use_stderr": False},
            "api": {"auth_mode": "keystone", "paste_config": paste},
            "indexer": {"url": database_url},
            "storage": {"driver": "file", "file_basepath": store},
            "incoming": {"driver": "file", "file_basepath": store},
            "metricd": {"workers": 1, "metric_processing_delay": METRICD_DELAY,
                        "metric_reporting_delay": -1},
            "keystone_authtoken": {
                **_service_auth(config, "gnocchi", secrets.gnocchi_password),
                "www_authenticate_uri": config.auth_url,
                "service_token_roles_required": True,
            },
        }
    )


def aodh_conf(config: SandboxConfig, secrets: TelemetrySecrets, database_url: str,
              paste: Path) -> str:
    auth = _service_auth(config, "aodh", secrets.aodh_password)
    return render_ini(
        {
            "DEFAULT": {
                "log_file": config.log_file("telemetry"),
                "use_stderr": False,
                # Evaluator and notifier share one process: no broker needed.
                "transport_url": "fake:/",
            },
            "api": {"auth_mode": "keystone", "paste_config": paste,
                    # Whose Gnocchi resources an alarm may see besides its own project's.
                    "gnocchi_external_project_owner": SERVICE_PROJECT},
            "database": {"connection": database_url},
            "evaluator": {"evaluation_interval": EVALUATION_INTERVAL},
            "notifier": {"batch_size": 1},
            "keystone_authtoken": {
                **auth,
                "www_authenticate_uri": config.auth_url,
                "service_token_roles_required": True,
            },
            "service_credentials": {**auth, "region_name": REGION, "interface": "public"},
            "oslo_messaging_notifications": {"driver": "noop"},
        }
    )


def paste_ini(project: str, conf_path: Path) -> str:
    """The project's shipped api-paste.ini with every filter reading ``conf_path``.

    keystonemiddleware and the oslo middlewares otherwise look for /etc/<project>/.
    """
    package = {"gnocchi": "gnocchi.rest", "aodh": "aodh.api"}[project]
    shipped = resources.files(package).joinpath("api-paste.ini").read_text(encoding="utf-8")
    lines = []
    for line in shipped.splitlines():
        lines.append(line)
        if line.replace(" ", "").startswith("oslo_config_project="):
            lines.append(f"oslo_config_file = {conf_path}")
    return "\n".join(lines) + "\n"


def write_configs(config: SandboxConfig, secrets: TelemetrySecrets) -> dict[str, Path]:
    from heatgen.sandbox import postgres

    etc = config.etc_dir
    files = {
        "gnocchi": etc / "gnocchi.conf",
        "aodh": etc / "aodh.conf",
    }
    texts = {
        files["gnocchi"]: gnocchi_conf(config, secrets, _gnocchi_database_url(config),
                                       etc / "gnocchi-api-paste.ini"),
        # Aodh picks its storage driver by the URL's plain scheme; SQLAlchemy 2.1 then
        # uses psycopg 3.
        files["aodh"]: aodh_conf(config, secrets,
                                 f"postgresql://{postgres.DB_USER}@{HOST}:"
                                 f"{config.postgres_port}/aodh",
                                 etc / "aodh-api-paste.ini"),
        etc / "gnocchi-api-paste.ini": paste_ini("gnocchi", files["gnocchi"]),
        etc / "aodh-api-paste.ini": paste_ini("aodh", files["aodh"]),
    }
    for path, text in texts.items():
        _write_private(path, text)
    return files


def _gnocchi_database_url(config: SandboxConfig) -> str:
    from heatgen.sandbox import postgres

    return postgres.database_url(config, "gnocchi")


# --- identity ----------------------------------------------------------------------------


def ensure_identity(session: Any, config: SandboxConfig, secrets: TelemetrySecrets) -> None:
    """Users gnocchi, aodh, ceilometer (admin on service); services metric and alarming."""
    from heatgen.sandbox.identity import _ensure_endpoints, _Identity

    ks = _Identity(session, config)
    admin_role = ks.ensure("roles", {"name": "admin"})
    service_project = ks.ensure("projects", {"name": SERVICE_PROJECT, "domain_id": "default"})
    for user in SERVICE_USERS:
        found = ks.ensure(
            "users",
            {"name": user, "domain_id": "default", "password": secrets.password(user)},
            domain_id="default",
        )
        ks.set_password(found, secrets.password(user))
        ks.grant(admin_role["id"], found["id"], project=service_project["id"])
    _ensure_endpoints(ks, "gnocchi", "metric", gnocchi_url(config))
    _ensure_endpoints(ks, "aodh", "alarming", aodh_url(config))


# --- Gnocchi objects ---------------------------------------------------------------------


def ensure_gnocchi_objects(session: Any) -> None:
    """Archive policy (60 s and 10 s, mean + rate:mean), the rule sending ``cpu`` to it, and
    Ceilometer's ``instance`` resource type with ``server_group``."""
    from gnocchiclient import exceptions as gexc
    from gnocchiclient.v1 import client as gnocchi_client

    gnocchi = gnocchi_client.Client(session=session)
    try:
        gnocchi.archive_policy.create({
            "name": ARCHIVE_POLICY,
            "back_window": 0,
            "aggregation_methods": ["mean", "rate:mean"],
            "definition": [{"granularity": f"{SHORT_GRANULARITY}s", "timespan": "1 hour"},
                           {"granularity": f"{GRANULARITY}s", "timespan": "1 day"}],
        })
    except gexc.ArchivePolicyAlreadyExists:
        pass
    try:
        gnocchi.archive_policy_rule.create(
            {"name": "heatgen-cpu", "metric_pattern": "cpu", "archive_policy_name": ARCHIVE_POLICY}
        )
    except gexc.ArchivePolicyRuleAlreadyExists:
        pass
    except gexc.ClientException as error:
        if getattr(error, "code", None) != 409:
            raise
    try:
        gnocchi.resource_type.create({"name": "instance", "attributes": INSTANCE_ATTRIBUTES})
    except gexc.ResourceTypeAlreadyExists:
        pass
    except gexc.ClientException as error:
        if getattr(error, "code", None) != 409:
            raise


# --- start -------------------------------------------------------------------------------


Spawn = Callable[[str, list[str]], Any]
RunModule = Callable[..., None]


def process_args(config: SandboxConfig, action: str) -> list[str]:
    args = [
        action,
        "--gnocchi-config", str(config.etc_dir / "gnocchi.conf"),
        "--aodh-config", str(config.etc_dir / "aodh.conf"),
    ]
    if action == "serve":
        args += ["--gnocchi-port", str(config.gnocchi_port), "--aodh-port", str(config.aodh_port)]
    return args


def wait_answering(config: SandboxConfig, answers: Callable[[int], bool],
                   alive: Callable[[], bool], deadline: float) -> None:
    for port, name in ((config.gnocchi_port, "gnocchi-api"), (config.aodh_port, "aodh-api")):
        while not answers(port):
            if not alive():
                raise SandboxError(
                    f"telemetry exited during start; see {config.log_file('telemetry')} and "
                    f"{config.log_dir / 'telemetry.out'}"
                )
            if time.monotonic() > deadline:
                raise SandboxError(
                    f"{name} did not answer within the start timeout; "
                    f"see {config.log_file('telemetry')}"
                )
            time.sleep(0.25)
