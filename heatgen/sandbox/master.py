"""Play the master VM's part: signal its wait conditions as its boot script would.

No VM boots in the sandbox (without ``--pool``), so nothing runs the master's ``curl_cli``.
heatgen reads the ``endpoint`` and ``token`` of the ``OS::Heat::WaitConditionHandle`` named
``master_wait_handle`` (and of ``worker_token_handle``, which carries the execute nodes' token;
here a random stand-in) while the stack is being created and POSTs the same request:
``X-Auth-Token: <token>``, JSON ``{"status": "SUCCESS", "id": ..., "reason": ...,
"data": ...}``. :class:`SandboxMaster` does it from a deploy's wait (plugged in by the CLI);
:func:`build_master_signal` is pure; :func:`send_signal` does the POST for raw heatclient users
(tests, benches).
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

from heatgen import contract
from heatgen.cloud.interface import Cloud, Event
from heatgen.errors import CloudError, StackFailed, WaitTimeout
from heatgen.ops.report import Reporter

if TYPE_CHECKING:
    from keystoneauth1.session import Session

MASTER_HANDLE = contract.WAIT_HANDLE
HANDLE_TYPE = "OS::Heat::WaitConditionHandle"
SIGNAL_STATUSES = ("SUCCESS", "FAILURE")


@dataclass(frozen=True)
class SignalRequest:
    """The exact HTTP request a booting master's ``curl_cli`` sends; token kept out of repr."""

    url: str
    headers: Mapping[str, str]
    body: str
    method: str = "POST"

    def __repr__(self) -> str:
        shown = {k: ("<redacted>" if k.lower() == "x-auth-token" else v)
                 for k, v in self.headers.items()}
        return f"SignalRequest(method={self.method!r}, url={self.url!r}, headers={shown!r})"


def signal_body(
    *, status: str = "SUCCESS", signal_id: str = "master", reason: str, data: str = ""
) -> dict[str, str]:
    """The JSON a wait-condition handle takes, as the master's boot script sends it."""
    if status not in SIGNAL_STATUSES:
        raise ValueError(f"status must be one of {SIGNAL_STATUSES} (got {status!r})")
    return {"status": status, "id": signal_id, "reason": reason, "data": data}


def build_master_signal(
    endpoint: str,
    token: str,
    *,
    status: str = "SUCCESS",
    signal_id: str = "master",
    reason: str = "master configured (signalled by heatgen)",
    data: str = "",
) -> SignalRequest:
    """Build the wait-condition signal; no I/O.

    ``data`` becomes the value of the wait condition's ``data`` attribute under
    ``signal_id``, as a master's boot script would report it.
    """
    if not endpoint or not token:
        raise ValueError("endpoint and token are required")
    body = signal_body(status=status, signal_id=signal_id, reason=reason, data=data)
    return SignalRequest(
        url=endpoint,
        headers={
            "X-Auth-Token": token,
            "Content-Type": "application/json",
            "Accept": "application/json",
        },
        body=json.dumps(body),
    )


def send_signal(request: SignalRequest, session: Session | None = None,
                timeout: float = 30.0) -> int:
    """POST the signal; returns the HTTP status, raises CloudError on a 4xx/5xx answer.

    With a keystoneauth ``session`` the request goes through it unauthenticated (only the
    handle's token is sent, as curl would); otherwise plain ``requests`` is used.
    """
    if session is not None:
        response = session.request(
            request.url, request.method, headers=dict(request.headers), data=request.body,
            authenticated=False, raise_exc=False, timeout=timeout, log=False,
        )
    else:
        import requests

        response = requests.request(
            request.method, request.url, headers=dict(request.headers), data=request.body,
            timeout=timeout,
        )
    if response.status_code >= 400:
        raise CloudError(
            f"wait condition signal to {urlparse(request.url).path} answered "
            f"HTTP {response.status_code}"
        )
    return int(response.status_code)


@dataclass(frozen=True)
class HandleLocation:
    """Which (possibly nested) stack holds the handle resource."""

    stack_id: str
    resource_name: str


def _owning_stack(resource: Any) -> str | None:
    for link in getattr(resource, "links", []) or []:
        if link.get("rel") == "stack":
            # .../stacks/<name>/<id>
            return unquote(urlparse(link["href"]).path.rstrip("/").rsplit("/", 1)[-1])
    return None


def find_master_handle(
    heat: Any, stack_id: str, name: str = MASTER_HANDLE, nested_depth: int = 5
) -> HandleLocation | None:
    """Find the handle in the stack or its nested stacks; None if it does not exist (yet)."""
    resources = heat.resources.list(stack_id, nested_depth=nested_depth)
    for resource in resources:
        if resource.resource_name == name and resource.resource_type == HANDLE_TYPE:
            return HandleLocation(_owning_stack(resource) or stack_id, name)
    return None


def _heat(client: Any) -> Any:
    if hasattr(client, "stacks"):
        return client
    from heatclient import client as heat_client

    return heat_client.Client("1", session=client)


def signal_master(
    heat_or_session: Any,
    stack_id: str,
    *,
    session: Session | None = None,
    reason: str = "master configured (signalled by heatgen)",
    data: str = "",
    handle_name: str = MASTER_HANDLE,
    signal_id: str = "master",
    optional: bool = False,
    timeout: float = 300.0,
    poll: float = 0.5,
) -> SignalRequest | None:
    """Wait for the master's handle, then signal SUCCESS like the master's boot script.

    Takes a heatclient ``Client`` or a keystoneauth ``Session``. Returns the request sent,
    or None if the stack is not being created (nothing to signal), or if it has no such
    handle and ``optional`` is set. Raises StackFailed if
    the stack fails first, WaitTimeout if no ready handle appears before the deadline,
    CloudError if the signal is refused.
    """
    heat = _heat(heat_or_session)
    if session is None and not hasattr(heat_or_session, "stacks"):
        session = heat_or_session
    deadline = time.monotonic() + timeout
    location: HandleLocation | None = None
    while True:
        stack = heat.stacks.get(stack_id)
        state = str(stack.stack_status)
        if state.endswith("FAILED"):
            raise StackFailed(
                f"stack {stack.stack_name} is {state} before the master signalled: "
                f"{stack.stack_status_reason}"
            )
        if state != "CREATE_IN_PROGRESS":
            return None
        location = location or find_master_handle(heat, stack_id, handle_name)
        if location is None and optional:
            return None  # Heat lists every resource of a stack being created, made or not
        if location is not None:
            handle = heat.resources.get(location.stack_id, location.resource_name)
            attributes = getattr(handle, "attributes", {}) or {}
            endpoint, token = attributes.get("endpoint"), attributes.get("token")
            if handle.resource_status == "CREATE_COMPLETE" and endpoint and token:
                request = build_master_signal(str(endpoint), str(token), reason=reason,
                                              data=data, signal_id=signal_id)
                send_signal(request, session)
                return request
        if time.monotonic() > deadline:
            raise WaitTimeout(
                f"no ready {handle_name} in stack {stack.stack_name} after {timeout:.0f} s"
            )
        time.sleep(poll)


def signal_grid(
    heat_or_session: Any,
    stack_id: str,
    *,
    session: Session | None = None,
    data: str = "",
    timeout: float = 300.0,
) -> SignalRequest | None:
    """Both signals of a grid's master, as its boot script sends them: the execute nodes'
    token (a random stand-in), then ready with ``data``. Returns the ready request."""
    stand_in = sandbox_token_signal()
    signal_master(heat_or_session, stack_id, session=session, handle_name=contract.TOKEN_HANDLE,
                  signal_id=contract.TOKEN_SIGNAL_ID, optional=True, timeout=timeout,
                  reason=stand_in["reason"], data=stand_in["data"])
    return signal_master(heat_or_session, stack_id, session=session, data=data,
                         timeout=timeout)


class SandboxMaster:
    """Plays the master's part in the sandbox, where no VM boots: signals the wait handle once.

    It acts when the wait condition starts waiting (its CREATE_IN_PROGRESS event, or its state
    when heatgen attaches to a create already running) and sends the same JSON the master's
    boot script sends with the handle's ``curl_cli``.
    """

    def __init__(self, cloud: Cloud, report: Reporter) -> None:
        self.cloud = cloud
        self.report = report
        self.pending = False
        self.sent: set[str] = set()  # handles signalled
        self.handles: tuple[str, ...] = (contract.TOKEN_HANDLE, contract.WAIT_HANDLE)
        self.checked = False  # whether attach() read which handles the template has

    def __call__(self, stack_id: str, events: list[Event]) -> None:
        # Called on every poll: a signal that failed (transiently) is sent again on the next.
        waits = (contract.WAIT_CONDITION, contract.TOKEN_WAIT)
        if any(e.resource in waits and e.status == "CREATE_IN_PROGRESS" for e in events):
            self.pending = True
        if self.pending and not self.done:
            self.signal(stack_id)

    @property
    def done(self) -> bool:
        return all(handle in self.sent for handle in self.handles)

    def attach(self, stack_id: str) -> None:
        """For a create already under way: signal if the wait condition is waiting now."""
        status = {r.name: r.status for r in self.cloud.resources(stack_id, nested_depth=0)}
        if status.get(contract.WAIT_CONDITION) == "CREATE_COMPLETE":
            # an earlier, interrupted deploy sent the ready signal; the token may still be due
            self.sent.add(contract.WAIT_HANDLE)
        waiting = (contract.WAIT_CONDITION, contract.TOKEN_WAIT)
        if any(status.get(name) == "CREATE_IN_PROGRESS" for name in waiting):
            # A grid rendered before the execute nodes' token existed has no token handle:
            # its template says so (a listing may not show resources not made yet).
            if not self.checked:
                resources = self.cloud.deployed_definition(stack_id).template.get("resources")
                if isinstance(resources, dict) and resources:
                    self.handles = tuple(h for h in self.handles if h in resources)
                self.checked = True
            self.pending = True
            self.signal(stack_id)

    def signal(self, stack_id: str) -> None:
        for handle in self.handles:
            if handle in self.sent:
                continue
            endpoint = self.cloud.resource_attribute(stack_id, handle, "endpoint")
            token = self.cloud.resource_attribute(stack_id, handle, "token")
            if not endpoint or not token:
                continue
            if handle == contract.TOKEN_HANDLE:
                body = signal_body(signal_id=contract.TOKEN_SIGNAL_ID, **sandbox_token_signal())
            else:
                body = sandbox_ready_signal()
            self.cloud.signal_wait_handle(endpoint, token, body)
            self.sent.add(handle)
            if handle == contract.WAIT_HANDLE:
                self.report.note(
                    "sandbox: no VM boots here, so heatgen sent the master's ready signal to "
                    "the wait condition itself (the same JSON the master's boot script sends)"
                )


def sandbox_token_signal() -> dict[str, str]:
    """The stand-in for the execute nodes' token: random, and kept as secret as the real one."""
    return {"reason": "execute-node token issued (a stand-in, from the heatgen sandbox)",
            "data": secrets.token_urlsafe(32)}


def sandbox_ready_signal() -> dict[str, str]:
    return signal_body(reason="central manager ready (signalled by the heatgen sandbox)",
                       data="sandbox")
