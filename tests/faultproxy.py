"""A fault-injecting HTTP proxy on 127.0.0.1 for tests and benches (never shipped).

One :class:`FaultProxy` sits in front of one upstream port (the sandbox's Keystone or
heat-api) and, per :class:`Rule`, answers a request itself or breaks it:

``500`` / ``503``
    answers with that status and an OpenStack-style JSON error body; upstream never sees it.
``drop``
    closes the connection without answering; upstream never sees it.
``delay``
    waits ``Rule.delay`` seconds, then forwards the request normally.
``lost``
    forwards the request, reads upstream's whole answer, then closes the connection without
    answering: the request happened but the client never heard.
``401``
    answers 401 Unauthorized, as a service does for an expired or revoked token.

Rules are tried in order; the first whose method and path match, that has firings left
(``times``) and whose coin (``rate``, from a seeded RNG) comes up fires. Everything else is
forwarded unchanged, ``Host`` included, so redirects and links point back at the proxy.

The proxy also remembers every token it saw (``X-Auth-Token`` on requests,
``X-Subject-Token`` on Keystone's answers), for the tests that look for leaked secrets, and
the size of every request and answer body, for the benches that count what a command costs.
``rewrite`` replaces byte strings in answers: Keystone's catalog can then name the heat-api
proxy, for clients that take the endpoint from the catalog only (the `openstack` CLI).
"""

from __future__ import annotations

import http.client
import json
import random
import re
import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

HOST = "127.0.0.1"
FAULT_KINDS = ("500", "503", "drop", "delay", "lost")
HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
    "transfer-encoding", "upgrade", "content-length",
})
UPSTREAM_TIMEOUT = 120.0

_REASONS = {
    500: ("Internal Server Error", "The server has either erred or is incapable of performing "
          "the requested operation (fault injected by the test proxy)."),
    503: ("Service Unavailable", "The server is currently unavailable (fault injected by the "
          "test proxy)."),
    401: ("Unauthorized", "The request you have made requires authentication."),
}


@dataclass
class Rule:
    """Which requests get which fault. ``faults`` holds one kind or several to pick from."""

    faults: Sequence[str]
    rate: float = 1.0
    method: str | None = None
    path: str | None = None  # a regular expression searched in the request path
    times: int | None = None  # fire at most this many times
    skip: int = 0  # let the first this many matching requests through
    delay: float = 1.0
    fired: int = 0
    seen: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.faults, str):
            self.faults = (self.faults,)
        unknown = set(self.faults) - {*FAULT_KINDS, "401"}
        if unknown or not self.faults:
            raise ValueError(f"unknown fault kinds {sorted(unknown)}")

    def matches(self, method: str, path: str) -> bool:
        if self.times is not None and self.fired >= self.times:
            return False
        if self.method is not None and self.method != method:
            return False
        return self.path is None or re.search(self.path, path) is not None


@dataclass
class Record:
    method: str
    path: str
    fault: str | None
    status: int | None  # what upstream answered (None when it never saw the request)
    sent: int = 0  # request body bytes
    received: int = 0  # answer body bytes the client got
    seconds: float = 0.0  # how long upstream took to answer it (sent to answer read)


@dataclass
class FaultProxy:
    """A threaded loopback proxy to ``upstream_port`` that applies ``rules``."""

    upstream_port: int
    rules: list[Rule] = field(default_factory=list)
    seed: int = 0
    name: str = "proxy"
    records: list[Record] = field(default_factory=list)
    tokens: set[str] = field(default_factory=set)
    rewrite: list[tuple[bytes, bytes]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.enabled = True

    # -- lifecycle

    def start(self) -> FaultProxy:
        proxy = self

        class Handler(_Handler):
            owner = proxy

        server = ThreadingHTTPServer((HOST, 0), Handler)
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.1},
            name=f"faultproxy-{self.name}", daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None, "proxy not started"
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    # -- rules and statistics

    def set_rules(self, rules: Sequence[Rule]) -> None:
        with self._lock:
            self.rules = list(rules)

    def choose(self, method: str, path: str) -> tuple[str | None, float]:
        with self._lock:
            if not self.enabled:
                return None, 0.0
            for rule in self.rules:
                if not rule.matches(method, path):
                    continue
                rule.seen += 1
                if rule.seen > rule.skip and self._random.random() < rule.rate:
                    rule.fired += 1
                    return self._random.choice(list(rule.faults)), rule.delay
        return None, 0.0

    def record(self, entry: Record) -> None:
        with self._lock:
            self.records.append(entry)

    def faults(self) -> Counter[str]:
        with self._lock:
            return Counter(r.fault for r in self.records if r.fault)

    def requests(self, method: str | None = None, path: str | None = None) -> list[Record]:
        with self._lock:
            return [r for r in self.records
                    if (method is None or r.method == method)
                    and (path is None or re.search(path, r.path))]


class _Handler(BaseHTTPRequestHandler):
    owner: FaultProxy
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _any(self) -> None:
        proxy = self.owner
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        token = self.headers.get("X-Auth-Token")
        if token:
            with proxy._lock:
                proxy.tokens.add(token)
        fault, delay = proxy.choose(self.command, self.path)
        if fault in ("500", "503", "401"):
            proxy.record(Record(self.command, self.path, fault, None))
            self._error(int(fault))
            return
        if fault == "drop":
            proxy.record(Record(self.command, self.path, fault, None))
            self._hang_up()
            return
        if fault == "delay":
            time.sleep(delay)
        asked = time.monotonic()
        try:
            status, reason, headers, answer = self._forward(body)
        except OSError:
            proxy.record(Record(self.command, self.path, "upstream-down", None))
            self._hang_up()
            return
        for old, new in proxy.rewrite:
            answer = answer.replace(old, new)
        lost = fault == "lost"
        proxy.record(Record(self.command, self.path, fault, status, len(body),
                            0 if lost else len(answer), time.monotonic() - asked))
        subject = next((v for k, v in headers if k.lower() == "x-subject-token"), None)
        if subject:
            with proxy._lock:
                proxy.tokens.add(subject)
        if lost:
            self._hang_up()
            return
        self.send_response(status, reason)
        for key, value in headers:
            if key.lower() not in HOP_BY_HOP:
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(answer)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _any

    def _forward(self, body: bytes) -> tuple[int, str, list[tuple[str, str]], bytes]:
        upstream = http.client.HTTPConnection(HOST, self.owner.upstream_port,
                                              timeout=UPSTREAM_TIMEOUT)
        try:
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
            if body or self.command in ("POST", "PUT", "PATCH"):
                headers["Content-Length"] = str(len(body))
            upstream.request(self.command, self.path, body=body or None, headers=headers)
            response = upstream.getresponse()
            answer = response.read()
            return response.status, response.reason, response.getheaders(), answer
        finally:
            upstream.close()

    def _error(self, status: int) -> None:
        title, explanation = _REASONS[status]
        if status == 401:
            payload: dict[str, Any] = {"error": {"code": 401, "title": title,
                                                 "message": explanation}}
        else:
            payload = {"code": status, "title": title, "explanation": explanation,
                       "error": {"message": explanation, "type": title.replace(" ", "")}}
        data = json.dumps(payload).encode()
        self.send_response(status, title)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if status == 401:
            self.send_header("WWW-Authenticate", 'Keystone uri="http://127.0.0.1"')
        self.end_headers()
        self.wfile.write(data)

    def _hang_up(self) -> None:
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


# --------------------------------------------------------------------------- sandbox wiring


@dataclass
class ProxiedSandbox:
    """A Keystone proxy and a heat-api proxy, and the clouds.yaml that routes heatgen via them."""

    keystone: FaultProxy
    heat: FaultProxy
    clouds_yaml: Path

    @property
    def proxies(self) -> tuple[FaultProxy, FaultProxy]:
        return self.keystone, self.heat

    def set_rules(self, rules: Sequence[Rule]) -> None:
        """The same rules (fresh copies) on both proxies."""
        for proxy in self.proxies:
            proxy.set_rules([Rule(**{**r.__dict__, "fired": 0, "seen": 0}) for r in rules])

    def faults(self) -> Counter[str]:
        return self.keystone.faults() + self.heat.faults()

    def tokens(self) -> set[str]:
        return self.keystone.tokens | self.heat.tokens


def sandbox_cloud_entry(sandbox_config: Any, keystone_url: str, heat_url: str) -> dict[str, Any]:
    """The sandbox's clouds.yaml entry with Keystone and heat-api reached through proxies.

    Keystone's catalog still names the real heat-api; ``orchestration_endpoint_override``
    (a standard clouds.yaml key, which heatgen honours) sends heatclient to the proxy.
    """
    from heatgen.sandbox.control import clouds_entry

    entry = clouds_entry(sandbox_config)
    entry["auth"] = {**entry["auth"], "auth_url": f"{keystone_url}/v3"}
    entry["orchestration_endpoint_override"] = f"{heat_url}/v1/%(project_id)s"
    return entry


def write_clouds_yaml(path: Path, entry: dict[str, Any], name: str = "heatgen-sandbox") -> Path:
    path.write_text(yaml.safe_dump({"clouds": {name: entry}}), encoding="utf-8")
    path.chmod(0o600)
    return path


@contextmanager
def proxied_sandbox(sandbox_config: Any, directory: Path, seed: int = 0
                    ) -> Iterator[ProxiedSandbox]:
    """Proxies in front of the sandbox's Keystone and heat-api, and a clouds.yaml for them.

    Point ``OS_CLIENT_CONFIG_FILE`` at ``clouds_yaml`` and run heatgen with
    ``--os-cloud heatgen-sandbox``.
    """
    keystone = FaultProxy(sandbox_config.keystone_port, seed=seed, name="keystone").start()
    heat = FaultProxy(sandbox_config.heat_port, seed=seed + 1, name="heat").start()
    try:
        entry = sandbox_cloud_entry(sandbox_config, keystone.url, heat.url)
        clouds = write_clouds_yaml(directory / "clouds.yaml", entry)
        yield ProxiedSandbox(keystone, heat, clouds)
    finally:
        heat.stop()
        keystone.stop()


# --------------------------------------------------------------------------- scenarios

Runner = Any  # Callable[[list[str]], tuple[int, str, str]]: runs `heatgen ARGS`
THESIS = Path(__file__).resolve().parents[1] / "examples" / "thesis.yaml"
_VOLATILE = re.compile(
    r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|[0-9a-f]{32}|\d+(\.\d+)?"
)


def thesis_site(directory: Path, name: str) -> Path:
    """examples/thesis.yaml with its stack renamed to ``name``."""
    text = THESIS.read_text(encoding="utf-8").replace("site: bergen-grid", f"site: {name}")
    path = directory / f"{name}.yaml"
    path.write_text(text, encoding="utf-8")
    return path


# `heatgen` with Ctrl-C working even when the caller runs in the background: a shell starts
# background jobs with SIGINT ignored, and Python then never turns SIGINT into
# KeyboardInterrupt, so a SIGINT test would silently test nothing.
INTERRUPTIBLE_HEATGEN = [
    sys.executable, "-c",
    "import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "from heatgen.cli import main; sys.exit(main(sys.argv[1:]))",
]


def outcome(code: int, err: str) -> str:
    """A run's outcome as one short line: ``ok``, or the exit code and the error's shape."""
    if code == 0:
        return "ok"
    lines = [line for line in err.splitlines() if line.startswith("heatgen: error:")]
    if "Traceback" in err:
        return f"exit {code}: TRACEBACK"
    if not lines:
        lines = [line for line in err.splitlines() if line.startswith("heatgen:")][-1:]
    shown = lines[0].removeprefix("heatgen: error: ") if lines else "(no message)"
    return f"exit {code}: {_VOLATILE.sub('N', shown)[:150]}"


def stacks_named(heat: Any, name: str) -> list[Any]:
    """Every stack of that name Heat knows (not deleted), read without the proxy.

    Heat lists a stack for a moment after DELETE_COMPLETE, until its row is soft-deleted; such
    a stack is gone, not a leftover.
    """
    from keystoneauth1 import exceptions as ks_exc

    for attempt in range(5):
        try:
            listed = list(heat.stacks.list(filters={"name": name}))
            break
        except ks_exc.ConnectFailure:
            # The server closed an idle keep-alive connection just as it was reused.
            if attempt == 4:
                raise
            time.sleep(1)
    return [s for s in listed if s.stack_name == name and s.stack_status != "DELETE_COMPLETE"]


@dataclass
class Step:
    command: str
    outcome: str
    recovered: str | None = None  # outcome of the second, fault-free run after a failure
    problems: list[str] = field(default_factory=list)
    detail: str = ""  # the end of stderr of a failed run


def run_cycle(run: Runner, rerun: Runner, heat: Any, site: Path, name: str,
              scale_to: int = 3) -> list[Step]:
    """``deploy``, ``scale --workers N`` and ``delete`` through ``run``; check each result.

    After a failed command the same command runs again through ``rerun`` (no faults) and must
    finish; at no point may Heat hold two stacks of the name.
    """
    commands = {
        "deploy": ["deploy", str(site), "--timeout", "300"],
        "scale": ["scale", str(site), "--workers", str(scale_to), "--timeout", "300"],
        "delete": ["delete", str(site), "--yes", "--timeout", "300"],
    }
    expected = {"deploy": ("CREATE_COMPLETE", "UPDATE_COMPLETE"), "scale": ("UPDATE_COMPLETE",)}
    steps = []
    for command, args in commands.items():
        code, _, err = run(args)
        step = Step(command, outcome(code, err))
        if code != 0:
            step.detail = "\n".join(err.splitlines()[-12:])
            code, _, err = rerun(args)
            step.recovered = outcome(code, err)
            if code != 0:
                step.problems.append(f"a second {command} did not finish: {step.recovered}")
        found = stacks_named(heat, name)
        states = sorted(s.stack_status for s in found)
        if len(found) > 1:
            step.problems.append(f"{len(found)} stacks named {name}: {states}")
        elif code == 0 and command in expected and (not found or states[0] not in
                                                    expected[command]):
            step.problems.append(f"after {command}: stacks {states}")
        elif code == 0 and command == "delete" and found:
            step.problems.append(f"after delete: stacks {states}")
        steps.append(step)
        if step.problems:
            break
    return steps


def direct_clouds_yaml(sandbox_config: Any, path: Path) -> Path:
    """A clouds.yaml whose ``heatgen-sandbox`` reaches the sandbox without any proxy."""
    from heatgen.sandbox.control import clouds_entry

    return write_clouds_yaml(path, clouds_entry(sandbox_config))


def chaos(rate: float, kinds: Sequence[str] = FAULT_KINDS, delay: float = 1.0) -> list[Rule]:
    """``rate`` of all requests fail, each with one of ``kinds`` picked at random."""
    return [Rule(tuple(kinds), rate=rate, delay=delay)]
