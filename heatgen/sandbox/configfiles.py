"""The Keystone and Heat configuration files of a sandbox, built as plain values.

Pure functions from (config, secrets, database URLs) to file text, so the settings that make
Heat work without Nova/Neutron are readable in one place and testable without a server.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from heatgen.sandbox.settings import HOST, REGION, SandboxConfig, SandboxSecrets

Sections = Mapping[str, Mapping[str, str | int | bool | Path]]

HEAT_SERVICE_USER = "heat"
SERVICE_PROJECT = "service"
STACK_USER_DOMAIN = "heat"
STACK_DOMAIN_ADMIN = "heat_domain_admin"


def render_ini(sections: Sections) -> str:
    """INI text in the given section order; booleans as oslo.config spells them."""
    lines: list[str] = ["# Written by `heatgen sandbox up`; rewritten at every start.", ""]
    for name, options in sections.items():
        lines.append(f"[{name}]")
        for key, value in options.items():
            text = str(value).lower() if isinstance(value, bool) else str(value)
            lines.append(f"{key} = {text}")
        lines.append("")
    return "\n".join(lines)


def keystone_conf(config: SandboxConfig, database_url: str) -> str:
    """keystone.conf: fernet tokens, in-memory cache and cheap hashing for speed."""
    data = config.data_dir
    return render_ini(
        {
            "DEFAULT": {
                "log_file": config.log_file("keystone"),
                "use_stderr": False,
                "public_endpoint": config.keystone_url,
            },
            "database": {"connection": database_url},
            "token": {"provider": "fernet", "expiration": 14400},
            "fernet_tokens": {"key_repository": data / "fernet-keys"},
            "fernet_receipts": {"key_repository": data / "fernet-keys"},
            "credential": {"key_repository": data / "credential-keys"},
            # One process, so a per-process memory cache is coherent; drops request time
            # from hundreds of milliseconds to about ten.
            "cache": {"enabled": True, "backend": "dogpile.cache.memory"},
            "identity": {"password_hash_rounds": 4},
            "oslo_messaging_notifications": {"driver": "noop"},
        }
    )


def _password_auth(config: SandboxConfig, secrets: SandboxSecrets) -> dict[str, str]:
    return {
        "auth_type": "password",
        "auth_url": config.keystone_url,
        "username": HEAT_SERVICE_USER,
        "password": secrets.heat_password,
        "user_domain_name": "Default",
        "project_name": SERVICE_PROJECT,
        "project_domain_name": "Default",
    }


def heat_conf(
    config: SandboxConfig, secrets: SandboxSecrets, database_url: str, paste_path: Path,
    signal_host: str | None = None,
) -> str:
    """heat.conf for engine + APIs in one process talking over the in-process transport.

    ``signal_host`` (the pool's bridge address) goes into the signal URLs Heat hands out, so
    that sandbox hosts reach heat-api from their namespaces."""
    cfn = f"http://{HOST}:{config.cfn_port}"
    service_auth = _password_auth(config, secrets)
    trustee = {k: v for k, v in service_auth.items() if not k.startswith("project_")}
    return render_ini(
        {
            "DEFAULT": {
                "host": "heatgen-sandbox",
                "log_file": config.log_file("heat"),
                "use_stderr": False,
                # Engine, worker and APIs share one process: no broker needed.
                "transport_url": "fake:/",
                "num_engine_workers": 1,
                "executor_thread_pool_size": 16,
                "region_name_for_services": REGION,
                "heat_metadata_server_url": cfn,
                "heat_waitcondition_server_url": f"{cfn}/v1/waitcondition",
                "stack_user_domain_name": STACK_USER_DOMAIN,
                "stack_domain_admin": STACK_DOMAIN_ADMIN,
                "stack_domain_admin_password": secrets.domain_admin_password,
                "auth_encryption_key": secrets.auth_encryption_key,
                "deferred_auth_method": "trusts",
                "periodic_interval": 60,
                # Heat counts every nested stack's resources against the top-level stack's
                # limit (1000 by default): 3 per worker, so about 330 workers; bench/scale.py
                # takes a grid to 450.
                "max_resources_per_stack": 5000,
            },
            "database": {"connection": database_url},
            "paste_deploy": {"api_paste_config": paste_path},
            "keystone_authtoken": {
                **service_auth,
                "www_authenticate_uri": config.auth_url,
                "service_token_roles_required": True,
            },
            "trustee": trustee,
            "clients_keystone": {"auth_uri": config.keystone_url},
            **({"clients_heat": {"url": f"http://{signal_host}:{config.heat_port}/v1/"
                                        "%(tenant_id)s"}} if signal_host else {}),
            # Pre-signed alarm_url requests: Keystone lets only service users validate EC2
            # signatures, and needs the unversioned root to find its EC2 API.
            "ec2authtoken": {
                **service_auth,
                "auth_uri": config.auth_url,
                "endpoint_override": config.keystone_url,
            },
            "oslo_messaging_notifications": {"driver": "noop"},
        }
    )


def heat_paste_ini() -> str:
    """The two WSGI pipelines, Keystone-authenticated, without profiler or CORS."""
    return render_ini(
        {
            "pipeline:heat-api": {
                "pipeline": "request_id faultwrap http_proxy_to_wsgi versionnegotiation "
                "authurl authtoken context apiv1app",
            },
            "pipeline:heat-api-cfn": {
                "pipeline": "request_id http_proxy_to_wsgi cfnversionnegotiation "
                "ec2authtoken authtoken context apicfnv1app",
            },
            "app:apiv1app": {
                "paste.app_factory": "heat.common.wsgi:app_factory",
                "heat.app_factory": "heat.api.openstack.v1:API",
            },
            "app:apicfnv1app": {
                "paste.app_factory": "heat.common.wsgi:app_factory",
                "heat.app_factory": "heat.api.cfn.v1:API",
            },
            "filter:versionnegotiation": {
                "paste.filter_factory": "heat.common.wsgi:filter_factory",
                "heat.filter_factory": "heat.api.openstack:version_negotiation_filter",
            },
            "filter:cfnversionnegotiation": {
                "paste.filter_factory": "heat.common.wsgi:filter_factory",
                "heat.filter_factory": "heat.api.cfn:version_negotiation_filter",
            },
            "filter:faultwrap": {
                "paste.filter_factory": "heat.common.wsgi:filter_factory",
                "heat.filter_factory": "heat.api.openstack:faultwrap_filter",
            },
            "filter:context": {
                "paste.filter_factory": "heat.common.context:ContextMiddleware_filter_factory",
            },
            "filter:ec2authtoken": {
                "paste.filter_factory": "heat.api.aws.ec2token:EC2Token_filter_factory",
            },
            "filter:http_proxy_to_wsgi": {
                "paste.filter_factory": "oslo_middleware:HTTPProxyToWSGI.factory",
            },
            "filter:authurl": {"paste.filter_factory": "heat.common.auth_url:filter_factory"},
            "filter:authtoken": {
                "paste.filter_factory": "keystonemiddleware.auth_token:filter_factory",
            },
            "filter:request_id": {
                "paste.filter_factory": "oslo_middleware.request_id:RequestId.factory",
            },
        }
    )
