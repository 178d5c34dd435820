"""The Keystone objects Heat needs, created idempotently over the Identity v3 API."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from heatgen.errors import SandboxError
from heatgen.sandbox.configfiles import (
    HEAT_SERVICE_USER,
    SERVICE_PROJECT,
    STACK_DOMAIN_ADMIN,
    STACK_USER_DOMAIN,
)
from heatgen.sandbox.settings import (
    ADMIN_PROJECT,
    ADMIN_USER,
    REGION,
    SandboxConfig,
    SandboxSecrets,
)

if TYPE_CHECKING:
    from keystoneauth1.session import Session

HEAT_ROLES = ("heat_stack_owner", "heat_stack_user")


def admin_session(config: SandboxConfig, secrets: SandboxSecrets) -> Session:
    """A keystoneauth session as the sandbox admin, scoped to the admin project."""
    from keystoneauth1 import session
    from keystoneauth1.identity import v3

    auth = v3.Password(
        auth_url=config.auth_url,
        username=ADMIN_USER,
        password=secrets.admin_password,
        user_domain_name="Default",
        project_name=ADMIN_PROJECT,
        project_domain_name="Default",
    )
    return session.Session(auth=auth, timeout=60)


class _Identity:
    """Thin idempotent helpers over /v3, raising SandboxError on unexpected answers."""

    def __init__(self, session: Session, config: SandboxConfig) -> None:
        self.session = session
        self.base = config.auth_url

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.session.request(self.base + path, method, raise_exc=False, **kwargs)
        if response.status_code >= 400:
            raise SandboxError(
                f"keystone: {method} {path.split('?')[0]} answered HTTP {response.status_code}"
            )
        return response.json() if response.content else None

    def find(self, collection: str, name: str, **filters: str) -> dict[str, Any] | None:
        query = "&".join(f"{k}={v}" for k, v in {"name": name, **filters}.items())
        found = self._request("GET", f"/{collection}?{query}")[collection]
        return found[0] if found else None

    def ensure(self, collection: str, body: dict[str, Any], **filters: str) -> dict[str, Any]:
        existing = self.find(collection, body["name"], **filters)
        if existing is not None:
            return existing
        singular = collection[:-1]
        created: dict[str, Any] = self._request("POST", f"/{collection}", json={singular: body})[
            singular
        ]
        return created

    def grant(self, role_id: str, user_id: str, *, project: str = "", domain: str = "") -> None:
        target = f"/projects/{project}" if project else f"/domains/{domain}"
        self._request("PUT", f"{target}/users/{user_id}/roles/{role_id}")

    def set_password(self, user: dict[str, Any], password: str) -> None:
        self._request("PATCH", f"/users/{user['id']}", json={"user": {"password": password}})


def ensure_heat_identity(session: Session, config: SandboxConfig, secrets: SandboxSecrets) -> None:
    """Create (or repair) Heat's users, roles, domain, services and endpoints.

    Safe to run at every start: existing objects are reused and endpoint URLs follow the
    ports of this start.
    """
    ks = _Identity(session, config)
    default_domain = "default"
    admin_role = ks.ensure("roles", {"name": "admin"})
    for role in HEAT_ROLES:
        ks.ensure("roles", {"name": role})
    service_project = ks.ensure(
        "projects", {"name": SERVICE_PROJECT, "domain_id": default_domain}
    )
    heat_user = ks.ensure(
        "users",
        {"name": HEAT_SERVICE_USER, "domain_id": default_domain,
         "password": secrets.heat_password},
        domain_id=default_domain,
    )
    ks.set_password(heat_user, secrets.heat_password)
    ks.grant(admin_role["id"], heat_user["id"], project=service_project["id"])

    stack_domain = ks.ensure(
        "domains", {"name": STACK_USER_DOMAIN, "description": "Heat stack users"}
    )
    domain_admin = ks.ensure(
        "users",
        {"name": STACK_DOMAIN_ADMIN, "domain_id": stack_domain["id"],
         "password": secrets.domain_admin_password},
        domain_id=stack_domain["id"],
    )
    ks.set_password(domain_admin, secrets.domain_admin_password)
    ks.grant(admin_role["id"], domain_admin["id"], domain=stack_domain["id"])

    admin_user = ks.find("users", ADMIN_USER, domain_id=default_domain)
    admin_project = ks.find("projects", ADMIN_PROJECT, domain_id=default_domain)
    owner_role = ks.find("roles", "heat_stack_owner")
    if admin_user and admin_project and owner_role:
        ks.grant(owner_role["id"], admin_user["id"], project=admin_project["id"])

    wanted = {
        ("keystone", "identity"): config.keystone_url,
        ("heat", "orchestration"): config.heat_url,
        ("heat-cfn", "cloudformation"): config.cfn_url,
    }
    for (name, kind), url in wanted.items():
        _ensure_endpoints(ks, name, kind, url)


def _ensure_endpoints(ks: _Identity, name: str, kind: str, url: str) -> None:
    services = ks._request("GET", f"/services?type={kind}")["services"]
    if services:
        service = services[0]
    else:
        service = ks._request(
            "POST", "/services", json={"service": {"name": name, "type": kind, "enabled": True}}
        )["service"]
    endpoints = ks._request("GET", f"/endpoints?service_id={service['id']}")["endpoints"]
    present = {endpoint["interface"]: endpoint for endpoint in endpoints}
    for interface in ("public", "internal", "admin"):
        endpoint = present.get(interface)
        if endpoint is None:
            ks._request(
                "POST",
                "/endpoints",
                json={"endpoint": {"service_id": service["id"], "interface": interface,
                                   "url": url, "region_id": REGION, "enabled": True}},
            )
        elif endpoint["url"] != url:
            ks._request("PATCH", f"/endpoints/{endpoint['id']}", json={"endpoint": {"url": url}})
