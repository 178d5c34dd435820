"""The one door to OpenStack: heatclient, aodhclient and keystoneauth1 behind :class:`Cloud`.

Nothing else in heatgen imports an OpenStack client (or keystoneauth1); which cloud to talk
to is :mod:`heatgen.cloud.connect`'s decision. Every client error becomes a
:class:`CloudError` whose message names what failed and never carries a token or password;
``transient`` marks the ones worth retrying (HTTP 500/502/503/504, lost connections).
Reads are retried here with bounded backoff, and so are the POSTs that change nothing
(validate, preview); writes are not, the lifecycle decides.
"""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import unquote, urlparse

from aodhclient import exceptions as aodh_exc
from heatclient import client as heat_client
from heatclient import exc as heat_exc
from keystoneauth1 import exceptions as ks_exc
from keystoneauth1 import loading as ks_loading
from keystoneauth1 import session as ks_session

from heatgen.cloud.interface import Alarm, Definition, Event, Resource, Stack
from heatgen.cloud.stackids import StackIds
from heatgen.errors import CloudError, ServiceMissing

# Services whose catalog endpoint clouds.yaml may override (`orchestration_endpoint_override`).
OVERRIDABLE_SERVICES = ("orchestration", "alarming")
TRANSIENT_STATUS = frozenset({500, 502, 503, 504})
# A read is often two requests (heat-api redirects a stack name or bare id). At 20 % failed
# requests, 8 attempts leave about 1 read in 20,000 failing, after at most ~20 s of backoff.
READ_ATTEMPTS = 8
EVENT_DEPTH = 2  # the grid's own stack, the group's and each member's
_UUID = re.compile(r"[0-9a-fA-F]{8}-?(?:[0-9a-fA-F]{4}-?){3}[0-9a-fA-F]{12}")
T = TypeVar("T")


class TransientCloudError(CloudError):
    transient = True


def _status_of(error: Exception) -> int | None:
    for attribute in ("code", "http_status", "status_code"):
        value = getattr(error, attribute, None)
        if isinstance(value, int):
            return value
    return None


def _message(error: Exception) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0].removeprefix("ERROR: ")[:500]  # heatclient's own prefix


def translate(what: str, error: Exception) -> CloudError:
    """Turn a client exception into a CloudError that says what failed."""
    status = _status_of(error)
    lost = ks_exc.ConnectFailure | ks_exc.ConnectTimeout | ks_exc.RetriableConnectionFailure
    if isinstance(error, lost):
        return TransientCloudError(f"{what}: cannot connect ({type(error).__name__})")
    if isinstance(error, ks_exc.Unauthorized) or status == 401:
        return CloudError(f"{what}: authentication failed; check the cloud's credentials")
    if isinstance(error, ks_exc.EndpointNotFound | ks_exc.EmptyCatalog):
        return CloudError(
            f"{what}: the cloud has no such service in its catalog ({_message(error)})"
        )
    if isinstance(error, aodh_exc.ClientException) and status is None:
        return CloudError(f"{what}: {type(error).__name__}: {_message(error)}")
    if status in TRANSIENT_STATUS:
        return TransientCloudError(f"{what}: HTTP {status} ({_message(error)})")
    if status is not None:
        return CloudError(f"{what}: HTTP {status}: {_message(error)}")
    return CloudError(f"{what}: {type(error).__name__}: {_message(error)}")


_CLIENT_ERRORS = (heat_exc.BaseException, ks_exc.ClientException, aodh_exc.ClientException)


def _reads(what: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
    """Retry an idempotent read on transient failures, with bounded backoff."""

    def decorate(function: Callable[..., T]) -> Callable[..., T]:
        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> T:
            for attempt in range(1, READ_ATTEMPTS + 1):
                try:
                    return function(*args, **kwargs)
                except _CLIENT_ERRORS as error:
                    translated = translate(what, error)
                    if not translated.transient or attempt == READ_ATTEMPTS:
                        raise translated from None
                time.sleep(min(0.25 * 2**attempt, 4.0))
            raise AssertionError("unreachable")

        return wrapper

    return decorate


def _write(what: str, call: Callable[[], T]) -> T:
    try:
        return call()
    except _CLIENT_ERRORS as error:
        raise translate(what, error) from None


@dataclass(frozen=True)
class Connection:
    session: Any
    interface: str | None
    region_name: str | None
    name: str
    # service type -> URL, from clouds.yaml's `<service>_endpoint_override` (may hold
    # `%(project_id)s`); used instead of the catalog's endpoint for that service.
    endpoint_overrides: Mapping[str, str] = field(default_factory=dict)


def _plugin_type(auth_type: str | None, auth: Mapping[str, Any]) -> str:
    """``v3password`` for a password login at an auth URL that names Keystone's v3, else
    ``auth_type`` as it is.

    keystoneauth's generic ``password`` first asks the auth URL which API versions it serves
    (one more request in every command), even when the URL names the version already; the v3
    plugin posts to ``<auth_url>/auth/tokens`` at once. The generic plugin's own options that
    the v3 one lacks (``default_domain_*``) keep it generic."""
    chosen = auth_type or "password"
    path = urlparse(str(auth.get("auth_url") or "")).path.rstrip("/")
    if chosen != "password" or not path.endswith("/v3") \
            or any(auth.get(key) for key in ("default_domain_id", "default_domain_name")):
        return chosen
    return "v3password"


def session_for_cloud(cloud_name: str | None) -> Connection:
    """One keystoneauth1 session from clouds.yaml (``cloud_name``) or the ``OS_*`` variables."""
    from openstack import config as os_config
    from openstack import exceptions as os_exc

    try:
        loader = os_config.OpenStackConfig()
        peek = loader.get_one(cloud=cloud_name, validate=False).config
        plugin = _plugin_type(peek.get("auth_type"), peek.get("auth") or {})
        override: dict[str, Any] = {} if plugin == peek.get("auth_type") else {
            "auth_type": plugin}
        region = loader.get_one(cloud=cloud_name, **override)
        session = region.get_session()
    except os_exc.OpenStackCloudException as error:
        where = f"cloud {cloud_name!r}" if cloud_name else "the OS_* environment variables"
        raise CloudError(f"cannot load credentials from {where}: {_message(error)}") from None
    except ks_exc.ClientException as error:
        raise translate("authentication", error) from None
    overrides = {service: region.get_endpoint(service) for service in OVERRIDABLE_SERVICES}
    interface = region.get_interface()
    if isinstance(interface, list):  # a list names the interfaces to try: the first wins
        interface = interface[0] if interface else None
    return Connection(
        session=session,
        interface=interface,
        region_name=region.get_region_name() or None,
        name=cloud_name or "OS_* environment",
        endpoint_overrides={k: v for k, v in overrides.items() if v},
    )


def known_clouds() -> list[str]:
    """The cloud names clouds.yaml defines (openstacksdk's search path)."""
    from openstack import config as os_config
    from openstack import exceptions as os_exc

    try:
        return list(os_config.OpenStackConfig().get_cloud_names())
    except os_exc.OpenStackCloudException:
        return []


def session_from_entry(name: str, entry: Mapping[str, Any]) -> Connection:
    """A session from a clouds.yaml entry given as data (the sandbox's)."""
    auth = dict(entry.get("auth", {}))
    loader: Any = ks_loading.get_plugin_loader(_plugin_type(entry.get("auth_type"), auth))
    plugin = loader.load_from_options(**auth)
    return Connection(
        session=ks_session.Session(auth=plugin),
        interface=entry.get("interface"),
        region_name=entry.get("region_name"),
        name=name,
        endpoint_overrides={
            service: str(entry[f"{service}_endpoint_override"])
            for service in OVERRIDABLE_SERVICES if entry.get(f"{service}_endpoint_override")
        },
    )


def _stack(raw: Any) -> Stack:
    info = raw.to_dict() if hasattr(raw, "to_dict") else dict(raw)
    outputs = {
        o.get("output_key"): o.get("output_value") for o in info.get("outputs") or []
    }
    return Stack(
        id=info["id"],
        name=info.get("stack_name", ""),
        status=info.get("stack_status", ""),
        reason=info.get("stack_status_reason") or "",
        parameters=dict(info.get("parameters") or {}),
        outputs=outputs,
    )


def _link_id(links: Any, rel: str) -> str:
    for link in links or []:
        if link.get("rel") == rel:
            return str(link.get("href", "")).rstrip("/").rsplit("/", 1)[-1]
    return ""


def _link_path(links: Any, rel: str) -> tuple[str, str] | None:
    """(id, ``name/id``) of the stack a ``.../stacks/<name>/<id>`` link names, or None."""
    for link in links or []:
        if link.get("rel") == rel:
            parts = str(link.get("href", "")).rstrip("/").split("/stacks/", 1)[-1].split("/")
            if len(parts) == 2 and all(parts):
                return parts[1], f"{unquote(parts[0])}/{parts[1]}"
    return None


def _resource(raw: Any) -> Resource:
    info = raw.to_dict() if hasattr(raw, "to_dict") else dict(raw)
    return Resource(
        name=info.get("resource_name", ""),
        type=info.get("resource_type", ""),
        status=info.get("resource_status", ""),
        reason=info.get("resource_status_reason") or "",
        physical_id=info.get("physical_resource_id") or "",
        stack_id=_link_id(info.get("links"), "stack"),
        parent=info.get("parent_resource") or "",
        attributes=dict(info.get("attributes") or {}),
        created=str(info.get("creation_time") or ""),
    )


def _event(raw: Any) -> Event:
    info = raw.to_dict() if hasattr(raw, "to_dict") else dict(raw)
    # A listing with nested_depth links each event to its stack and to the root stack: an
    # event of a nested stack is named by that stack, one of the root by none.
    links = info.get("links")
    own, root = _link_path(links, "stack"), _link_path(links, "root_stack")
    nested = own is not None and root is not None and own[0] != root[0]
    return Event(
        id=str(info.get("id", "")),
        time=str(info.get("event_time", "")),
        resource=info.get("resource_name", ""),
        status=info.get("resource_status", ""),
        reason=info.get("resource_status_reason") or "",
        stack=own[1].split("/")[0] if own is not None and nested else
        str(info.get("stack_name") or ""),
        physical_id=str(info.get("physical_resource_id") or ""),
    )


def _names(changes: Mapping[str, Any]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for kind in ("added", "updated", "replaced", "deleted", "unchanged"):
        out[kind] = sorted(
            r.get("resource_name", "") if isinstance(r, Mapping) else str(r)
            for r in changes.get(kind, [])
        )
    return out


def _flatten(resources: Any) -> list[Any]:
    flat: list[Any] = []
    for item in resources or []:
        if isinstance(item, list):
            flat.extend(_flatten(item))
        else:
            flat.append(item)
    return flat


_HEAT_ONLY_FIELDS = ("stack_name", "disable_rollback", "timeout_mins")


class OpenStackCloud:
    """:class:`heatgen.cloud.Cloud` over python-heatclient and aodhclient, one session."""

    def __init__(self, connection: Connection, stack_ids: StackIds | None = None) -> None:
        self.connection = connection
        self.stack_ids = stack_ids if stack_ids is not None else StackIds()
        self._scope_key: str | None = None
        kwargs: dict[str, Any] = {"session": connection.session}
        if connection.interface:
            kwargs["interface"] = connection.interface
        if connection.region_name:
            kwargs["region_name"] = connection.region_name
        self._client_kwargs = kwargs
        self.heat = heat_client.Client("1", **self._service_kwargs("orchestration"))
        self._aodh: Any = None
        # stack id -> "name/id": heat-api answers that path at once, where a bare id (or a
        # name) costs a lookup and a redirect, a second request.
        self._paths: dict[str, str] = {}

    def _path(self, stack_id: str) -> str:
        return self._paths.get(stack_id, stack_id)

    def _learn(self, stack_id: str, name: str) -> None:
        if stack_id and name and "/" not in name:
            self._paths[stack_id] = f"{name}/{stack_id}"
            if self._remembers(name):
                self.stack_ids.remember(self._scope(), name, stack_id)

    def _scope(self) -> str:
        """The Heat endpoint and project that remembered ids belong to. No request of its own:
        it needs the token, which heat-api's first request needs anyway."""
        if self._scope_key is None:
            endpoint = self.heat.http_client.get_endpoint() or ""
            self._scope_key = f"{endpoint} {self.connection.session.get_project_id() or ''}"
        return self._scope_key

    @staticmethod
    def _remembers(name: str) -> bool:
        """Whether ``name`` is a stack name (not an id, not a ``name/id`` path)."""
        return bool(name) and "/" not in name and not _UUID.fullmatch(name)

    def _remembered(self, name: str) -> str | None:
        """``name/id`` for a stack name heatgen saw before (see :mod:`heatgen.cloud.stackids`),
        else None. The caller checks the answer and calls :meth:`_forget` if it was stale."""
        if not self._remembers(name):
            return None
        stack_id = self.stack_ids.get(self._scope(), name)
        return f"{name}/{stack_id}" if stack_id else None

    def _forget(self, name: str) -> None:
        self.stack_ids.forget(self._scope(), name)

    def _learn_links(self, raw: Any) -> None:
        found = _link_path(getattr(raw, "links", None), "stack")
        if found is not None:
            self._paths.setdefault(*found)

    @property
    def aodh(self) -> Any:
        if self._aodh is None:
            from aodhclient import client as aodh_client

            self._aodh = aodh_client.Client("2", **self._service_kwargs("alarming"))
        return self._aodh

    def _service_kwargs(self, service: str) -> dict[str, Any]:
        override = self.connection.endpoint_overrides.get(service)
        return {**self._client_kwargs, **({"endpoint_override": override} if override else {})}

    @_reads("read the stack")
    def get_stack(self, name_or_id: str, outputs: bool = True) -> Stack | None:
        remembered = self._remembered(name_or_id)
        stack = self._read_stack(remembered or self._path(name_or_id), outputs)
        if remembered and stack is None:  # that stack is gone: is there another of the name?
            self._forget(name_or_id)
            stack = self._read_stack(name_or_id, outputs)
        if stack is not None:
            self._learn(stack.id, stack.name)
        return stack

    def _read_stack(self, path: str, outputs: bool) -> Stack | None:
        try:
            stack = _stack(self.heat.stacks.get(path, resolve_outputs=outputs))
        except heat_exc.HTTPNotFound:
            return None
        # Heat still shows a deleted stack after DELETE_COMPLETE (for a moment by name, for
        # good by name/id): it is gone.
        return None if stack.status == "DELETE_COMPLETE" else stack

    @_reads("read the stack's status")
    def stack_status(self, stack_id: str) -> Stack | None:
        """One GET ``stacks?id=ID``: heat-api lists stacks from their rows (no template, no
        resources, no outputs resolved) and leaves deleted ones out."""
        for raw in self.heat.stacks.list(filters={"id": stack_id}):
            stack = _stack(raw)
            if stack.id == stack_id and stack.status != "DELETE_COMPLETE":
                self._learn(stack.id, stack.name)
                return stack
        return None

    @_reads("read a stack output")
    def stack_output(self, stack_id: str, key: str) -> Any:
        """One GET ``stacks/NAME/ID/outputs/KEY``: heat-api resolves that output alone (the
        group's ``current_size`` costs a count of its members, where every output of a big grid
        costs a read of every member's stack). None when the stack has no such output."""
        try:
            shown = self.heat.stacks.output_show(self._path(stack_id), key)
        except heat_exc.HTTPNotFound:
            return None
        output = (shown or {}).get("output") or {}
        return output.get("output_value")

    def has_service(self, service_type: str) -> bool:
        """Whether the catalog (or clouds.yaml) names an endpoint of ``service_type``."""
        if service_type in self.connection.endpoint_overrides:
            return True
        try:
            endpoint = self.connection.session.get_endpoint(
                service_type=service_type, **{k: v for k, v in self._client_kwargs.items()
                                              if k in ("interface", "region_name")})
        except (ks_exc.EndpointNotFound, ks_exc.EmptyCatalog):
            return False
        except ks_exc.ClientException as error:
            raise translate(f"read the catalog for {service_type}", error) from None
        return bool(endpoint)

    @_reads("validate the templates on the server")
    def validate(self, fields: Mapping[str, Any]) -> None:
        body = {k: v for k, v in fields.items() if k not in _HEAT_ONLY_FIELDS}
        self.heat.stacks.validate(**body)

    def create_stack(self, fields: Mapping[str, Any]) -> str:
        created = _write("create the stack", lambda: self.heat.stacks.create(**fields))
        stack_id = str(created["stack"]["id"])
        self._learn(stack_id, str(fields.get("stack_name", "")))
        return stack_id

    def update_stack(self, stack_id: str, fields: Mapping[str, Any], patch: bool) -> None:
        _write(
            "update the stack",
            lambda: self.heat.stacks.update(self._path(stack_id), existing=patch, **fields),
        )

    @_reads("preview the stack")
    def preview_create(self, fields: Mapping[str, Any]) -> list[Resource]:
        preview = self.heat.stacks.preview(**fields)
        info = preview.to_dict() if hasattr(preview, "to_dict") else dict(preview)
        return [_resource(r) for r in _flatten(info.get("resources"))]

    @_reads("preview the update")
    def preview_update(
        self, stack_id: str, fields: Mapping[str, Any], patch: bool
    ) -> dict[str, list[str]]:
        answer = self.heat.stacks.preview_update(self._path(stack_id), existing=patch,
                                                 **fields)
        return _names(answer.get("resource_changes", {}))

    def delete_stack(self, stack_id: str) -> None:
        path = self._path(stack_id)
        if "/" in path:  # soon gone: the next read by its name asks heat-api again
            self._forget(path.split("/", 1)[0])
        try:
            self.heat.stacks.delete(path)
        except heat_exc.HTTPNotFound:
            return
        except _CLIENT_ERRORS as error:
            raise translate("delete the stack", error) from None

    @_reads("read the deployed templates")
    def deployed_definition(self, stack_id: str) -> Definition:
        path = self._path(stack_id)
        stack = self.heat.stacks.get(path, resolve_outputs=False)
        environment = self.heat.stacks.environment(path) or {}
        return Definition(
            template=self.heat.stacks.template(path) or {},
            parameters=dict(getattr(stack, "parameters", {}) or {}),
            files=dict(self.heat.stacks.files(path) or {}),
            registry=dict(environment.get("resource_registry") or {}),
        )

    @_reads("list the stack's events")
    def events(self, stack_id: str, after: str | None, depth: int = EVENT_DEPTH
               ) -> list[Event] | None:
        """One GET ``events?sort_dir=asc[&marker=ID][&nested_depth=N]``. Without
        ``nested_depth`` (depth 0) heat-api reads only the stack's own events; with it, it
        first lists every stack of the tree and loads those down to that depth (depth 1: the
        top stack and the groups'; depth 2 also every member's). heat-api pages after the
        marker event by creation time and row id over whichever events it reads (it looks the
        marker up among all events), so a marker from a listing of any depth works."""
        kwargs: dict[str, Any] = {"sort_dir": "asc"}
        if depth > 0:
            kwargs["nested_depth"] = depth
        if after:
            kwargs["marker"] = after
        return self._list_events(stack_id, kwargs, newest_first=False)

    def _list_events(self, stack: str, kwargs: dict[str, Any], newest_first: bool
                     ) -> list[Event] | None:
        """One listing; by a remembered ``name/id`` when ``stack`` is a name heatgen saw, and
        by the name again (heat-api's lookup and redirect) if that stack turns out deleted."""
        remembered = self._remembered(stack)
        if remembered:
            listed = self._events_at(remembered, kwargs)
            stack_id = remembered.split("/", 1)[1]
            newest = (listed[0] if newest_first else listed[-1]) if listed else None
            # heat-api still lists a deleted stack's events by name/id: its own events end
            # with its deletion, and with nested_depth there are none (its resources are
            # gone). A stack's events begin with its creation: an empty answer is only
            # believed after a marker.
            deleted = newest is not None and newest.physical_id == stack_id \
                and newest.status == "DELETE_COMPLETE"
            if listed is not None and not deleted and (listed or "marker" in kwargs):
                return listed
            self._forget(stack)
        return self._events_at(self._path(stack), kwargs, name=stack)

    def _events_at(self, path: str, kwargs: dict[str, Any], name: str = ""
                   ) -> list[Event] | None:
        try:
            listed = self.heat.events.list(path, **kwargs)
        except heat_exc.HTTPNotFound:
            return None
        if listed and self._remembers(name):  # asked by name: the links name the stack's id
            first = listed[0]
            links = (first.to_dict() if hasattr(first, "to_dict") else dict(first)).get("links")
            found = _link_path(links, "root_stack") or _link_path(links, "stack")
            if found is not None and found[1].split("/", 1)[0] == name:
                self._learn(found[0], name)
        return [_event(e) for e in listed]

    @_reads("list the stack's newest events")
    def newest_events(self, stack_id: str, limit: int, depth: int = EVENT_DEPTH
                      ) -> list[Event] | None:
        """One GET ``events?limit=N&nested_depth=D&sort_dir=desc``.

        heat-api passes ``limit``, ``marker`` and ``sort_dir`` with ``nested_depth`` to one
        database query over the events of every stack of the tree down to that depth (ordered
        by creation time, then row id), so the answer is the newest N events of the tree, and
        an ascending listing after the newest one's id continues exactly where this one ends.
        """
        kwargs: dict[str, Any] = {"sort_dir": "desc", "limit": max(1, limit)}
        if depth > 0:
            kwargs["nested_depth"] = depth
        listed = self._list_events(stack_id, kwargs, newest_first=True)
        return None if listed is None else listed[:limit]

    @_reads("list the stack's resources")
    def resources(self, stack_id: str, nested_depth: int, state: str | None = None
                  ) -> list[Resource]:
        """One GET ``resources?nested_depth=N[&action=A&status=S]``."""
        kwargs: dict[str, Any] = {"nested_depth": nested_depth}
        if state is not None:
            action, _, status = state.partition("_")
            kwargs["filters"] = {"action": action, "status": status}
        try:
            listed = self.heat.resources.list(self._path(stack_id), **kwargs)
        except heat_exc.HTTPNotFound:
            return []
        for raw in listed:
            self._learn_links(raw)
        return [_resource(r) for r in listed]

    @_reads("read a resource attribute")
    def resource_attribute(self, stack_id: str, resource: str, attribute: str) -> Any:
        shown = self.heat.resources.get(self._path(stack_id), resource, with_attr=[attribute])
        return (getattr(shown, "attributes", None) or {}).get(attribute)

    def mark_unhealthy(self, stack_id: str, resource: str, unhealthy: bool, reason: str) -> None:
        _write(
            f"mark {resource} {'unhealthy' if unhealthy else 'healthy'}",
            lambda: self.heat.resources.mark_unhealthy(self._path(stack_id), resource,
                                                       unhealthy, reason),
        )

    def signal_wait_handle(self, endpoint: str, token: str, body: Mapping[str, Any]) -> None:
        _write(
            "signal the wait condition",
            # log=False: keystoneauth's --debug log would show the body, and a signal's data
            # may be a secret (the execute nodes' token).
            lambda: self.connection.session.post(
                endpoint, json=dict(body), authenticated=False, log=False,
                headers={"X-Auth-Token": token, "Accept": "application/json"},
            ),
        )

    @_reads("list the stack's alarms")
    def alarms(self, stack_id: str) -> list[Alarm]:
        resources = [
            r for r in self.heat.resources.list(self._path(stack_id), nested_depth=0)
            if r.resource_type.startswith("OS::Aodh::") and r.physical_resource_id
        ]
        if resources and not self.has_service("alarming"):
            raise ServiceMissing("alarming", "Aodh")
        found = []
        for resource in resources:
            raw = self.aodh.alarm.get(resource.physical_resource_id)
            rule_key = next((k for k in raw if k.endswith("_rule")), "")
            found.append(
                Alarm(
                    id=raw["alarm_id"], name=resource.resource_name, type=raw.get("type", ""),
                    state=raw.get("state", ""), state_timestamp=raw.get("state_timestamp", ""),
                    description=raw.get("description", ""), rule=raw.get(rule_key, {}),
                    actions=list(raw.get("alarm_actions", [])),
                )
            )
        return found

    @_reads("read the alarm's history")
    def alarm_history(self, alarm_id: str) -> list[dict[str, Any]]:
        return list(self.aodh.alarm_history.get(alarm_id))
