"""How OpenStack client errors become heatgen's CloudError: what failed, whether to retry, and
never a secret; and which cloud a command talks to."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from aodhclient import exceptions as aodh_exc
from heatclient import exc as heat_exc
from keystoneauth1 import exceptions as ks_exc

from heatgen.cloud import connect
from heatgen.cloud.openstack import translate
from heatgen.errors import CloudError, SandboxError


@pytest.mark.parametrize(("error", "message", "transient"), [
    (ks_exc.ConnectFailure("refused"), "read the stack: cannot connect (ConnectFailure)", True),
    (ks_exc.ConnectTimeout("slow"), "read the stack: cannot connect (ConnectTimeout)", True),
    (ks_exc.Unauthorized("token=abc"),
     "read the stack: authentication failed; check the cloud's credentials", False),
    (ks_exc.EndpointNotFound("no orchestration"),
     "read the stack: the cloud has no such service in its catalog (no orchestration)", False),
    (heat_exc.HTTPServiceUnavailable("busy"), "read the stack: HTTP 503 (busy)", True),
    (heat_exc.HTTPInternalServerError("boom"), "read the stack: HTTP 500 (boom)", True),
    (heat_exc.HTTPBadRequest("DesiredCapacity must be between MinSize and MaxSize"),
     "read the stack: HTTP 400: DesiredCapacity must be between MinSize and MaxSize", False),
    (aodh_exc.BadRequest("bad rule"), "read the stack: HTTP 400: bad rule (HTTP 400)", False),
    (aodh_exc.ClientException("odd"), "read the stack: ClientException: odd (HTTP N/A)", False),
])
def test_client_errors_say_what_failed_and_whether_to_retry(
    error: Exception, message: str, transient: bool
) -> None:
    translated = translate("read the stack", error)
    assert isinstance(translated, CloudError)
    assert str(translated) == message
    assert translated.transient is transient


def test_a_token_in_an_error_never_reaches_the_message() -> None:
    translated = translate("auth", ks_exc.Unauthorized("X-Auth-Token: gAAAAsecret"))
    assert "gAAAA" not in str(translated)


class Locator:
    def __init__(self, entry: Mapping[str, Any] | None = None,
                 error: Exception | None = None) -> None:
        self._entry, self._error = entry, error

    def entry(self) -> Mapping[str, Any] | None:
        if self._error is not None:
            raise self._error
        return self._entry


ENTRY = {"auth": {"auth_url": "http://127.0.0.1:1/v3", "username": "admin", "password": "p",
                  "project_name": "admin", "user_domain_name": "Default",
                  "project_domain_name": "Default"}, "region_name": "RegionOne"}


def test_no_cloud_and_no_sandbox_says_what_to_configure() -> None:
    with pytest.raises(CloudError, match="no cloud is configured: pass --os-cloud NAME"):
        connect.open_cloud(None, None, sandbox=Locator(None), environ={})


def test_a_stopped_sandbox_is_named_with_how_to_start_it_at_once() -> None:
    stopped = SandboxError("the heatgen sandbox in /x is stopped; start it with `heatgen "
                           "sandbox up`")
    with pytest.raises(SandboxError, match="start it with `heatgen sandbox up`"):
        connect.open_cloud(None, None, sandbox=Locator(error=stopped), environ={})


def test_the_sandbox_name_works_as_os_cloud_without_a_clouds_yaml_entry() -> None:
    target = connect.open_cloud(connect.SANDBOX_CLOUD, None, sandbox=Locator(ENTRY), environ={})
    assert target.sandbox and target.name == connect.SANDBOX_CLOUD
    fallback = connect.open_cloud(None, None, sandbox=Locator(ENTRY), environ={})
    assert fallback.sandbox


def test_choice_order_is_flag_site_environment() -> None:
    environ = {"OS_CLOUD": "env-cloud"}
    assert connect.choose_cloud("flag", "site", environ) == "flag"
    assert connect.choose_cloud(None, "site", environ) == "site"
    assert connect.choose_cloud(None, None, environ) == "env-cloud"
    assert connect.choose_cloud(None, None, {}) is None


@pytest.mark.parametrize(("auth_url", "auth_type", "extra", "plugin"), [
    ("https://keystone.example:5000/v3", None, {}, "v3password"),
    ("https://keystone.example:5000/v3/", "password", {}, "v3password"),
    ("https://keystone.example/identity/v3", "password", {}, "v3password"),
    # Not naming the version: only the discovery can tell.
    ("https://keystone.example:5000", "password", {}, "password"),
    ("https://keystone.example:5000/v2.0", "password", {}, "password"),
    # Options only the generic plugin has; other kinds of login as they are.
    ("https://keystone.example:5000/v3", "password", {"default_domain_name": "Default"},
     "password"),
    ("https://keystone.example:5000/v3", "v3applicationcredential", {},
     "v3applicationcredential"),
])
def test_a_password_login_at_a_v3_url_skips_the_version_discovery(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, auth_url: str, auth_type: str | None,
    extra: dict[str, str], plugin: str,
) -> None:
    import yaml
    from keystoneauth1 import loading

    from heatgen.cloud.openstack import _plugin_type, session_for_cloud, session_from_entry

    auth = {"auth_url": auth_url, "username": "u", "password": "p", "project_name": "x",
            "user_domain_name": "Default", "project_domain_name": "Default", **extra}
    if plugin == "v3applicationcredential":
        auth = {"auth_url": auth_url, "application_credential_id": "i",
                "application_credential_secret": "s"}
    assert _plugin_type(auth_type, auth) == plugin
    expected = type(loading.get_plugin_loader(plugin).load_from_options(**auth))
    entry = {"auth": auth, **({"auth_type": auth_type} if auth_type else {})}
    assert type(session_from_entry("c", entry).session.auth) is expected
    # The same through clouds.yaml, read by openstacksdk.
    clouds = tmp_path / "clouds.yaml"
    clouds.write_text(yaml.safe_dump({"clouds": {"c": entry}}))
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(clouds))
    assert type(session_for_cloud("c").session.auth) is expected
