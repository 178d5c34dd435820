"""What the HTCondor pool says about its workers: which machines are idle, and since when.

Scale-in must remove only idle workers, so this module turns the collector's slot ads into
:class:`Machine` values with one answer each: :attr:`Machine.idle`. The ads come from one of
three :class:`PoolQuery` implementations: :class:`SshPool` runs ``condor_status`` on the master
over ssh (the master's floating IP is the only public address of a grid), :class:`BindingsPool`
asks a collector through the ``htcondor2`` bindings, and :class:`RecordedPool` replays recorded
``condor_status -json`` snapshots for tests and the sandbox.

Idleness, as HTCondor's states define it (admin manual, "condor_startd Policy Configuration"):

- A static slot is idle when its ``State`` is ``"Unclaimed"``, or ``"Drained"`` with
  ``Activity == "Idle"``: the manual's Drained state is entered once a slot "has finished
  running jobs", and its Idle activity once *all* slots of the machine have drained, which is
  what ``condor_drain`` ends in. ``Drained/Retiring`` (other slots still running),
  ``Claimed``, ``Matched`` (a job is on its way), ``Preempting`` (a job is being evicted),
  ``Owner`` (the startd refuses jobs for a reason heatgen does not know, for instance an
  operator's policy) and ``Backfill`` are not idle, nor is a missing or unknown state:
  keeping a worker one more round costs a VM-hour, removing a busy one costs a job.
- A partitionable slot is idle when ``NumDynamicSlots == 0`` and its own state passes the
  rule above; a claimed partitionable slot (newer HTCondor can claim one whole) is not idle.
- A dynamic slot exists only while a job holds (part of) the machine. Its ad is not judged on
  its own, but any dynamic slot still listed keeps the machine busy, even if its
  partitionable slot's ``NumDynamicSlots`` already says 0: the two ads reach the collector
  separately, and the safe reading of a disagreement is "busy".
- A machine is idle only when it has at least one non-dynamic slot and all of them are idle.

Nothing here imports ``htcondor2``: :class:`BindingsPool` imports it when it is used, so heatgen
works without the bindings installed.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import json.decoder
import json.scanner
import os
import re
import shlex
import subprocess
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from heatgen.errors import CloudError

SERVER_ID_ATTRIBUTE = "HeatGenServerId"

# The slot attributes heatgen reads, passed to `condor_status -attributes` and to the
# collector as a projection; everything else in a slot ad is irrelevant to scale-in.
STARTD_ATTRIBUTES: tuple[str, ...] = (
    "Activity",
    "Cpus",
    "DynamicSlot",
    "EnteredCurrentActivity",
    "EnteredCurrentState",
    SERVER_ID_ATTRIBUTE,
    "Machine",
    "Memory",
    "MyAddress",
    "Name",
    "NumDynamicSlots",
    "PartitionableSlot",
    "SlotType",
    "State",
)

DRAIN_REASON = "heatgen scale-in"

_SSH_OPTIONS: tuple[str, ...] = ("BatchMode=yes", "ConnectTimeout=15")
# Trust on first use: the master's floating IP is new with every stack, and a changed key
# for a known address still fails loudly.
DEFAULT_HOST_KEY_POLICY = "accept-new"

Runner = Callable[..., "subprocess.CompletedProcess[str]"]


@dataclass(frozen=True)
class Expression:
    """A ClassAd expression an ad carries unevaluated, such as ``Requirements``.

    ``condor_status -json`` writes these as the string ``"\\/Expr(<text>)\\/"``; keeping them
    apart from plain strings means no expression is ever mistaken for a state name.
    """

    text: str


@dataclass(frozen=True)
class Slot:
    """One slot ad of a startd, reduced to what decides idleness."""

    name: str
    state: str | None
    activity: str | None
    partitionable: bool = False
    dynamic: bool = False
    dynamic_slots: int | None = None
    entered_current_state: int | None = None
    entered_current_activity: int | None = None
    cpus: int | None = None
    memory: int | None = None

    @property
    def short_name(self) -> str:
        """``slot1`` for ``slot1@host``: enough to tell a machine's slots apart."""
        return self.name.split("@", 1)[0]

    @property
    def free(self) -> bool:
        """No job holds this slot and none can start on it (the module's state rule)."""
        if self.dynamic or not _state_free(self):
            return False
        return not self.partitionable or self.dynamic_slots == 0

    @property
    def free_since(self) -> int | None:
        """When this slot became free: a drained slot's Idle activity began when the last slot
        of its machine finished; any other free slot became free when it entered its state."""
        if self.state == "Drained":
            return self.entered_current_activity
        return self.entered_current_state


@dataclass(frozen=True)
class Machine:
    """One execution point of the pool: all slot ads that share a ``Machine`` name."""

    name: str
    address: str | None
    addresses: tuple[str, ...]
    server_id: str | None
    slots: tuple[Slot, ...]

    @property
    def owner_slots(self) -> tuple[Slot, ...]:
        """The static and partitionable slots: the ones that own the machine's resources."""
        return tuple(slot for slot in self.slots if not slot.dynamic)

    @property
    def dynamic_slots(self) -> tuple[Slot, ...]:
        return tuple(slot for slot in self.slots if slot.dynamic)

    @property
    def idle(self) -> bool:
        """True only if the machine runs no job and none is on its way (module docstring)."""
        owners = self.owner_slots
        return bool(owners) and not self.dynamic_slots and all(slot.free for slot in owners)

    @property
    def idle_since(self) -> int | None:
        """Epoch second the machine became idle: the latest moment any of its slots became
        free. None when it is busy or a slot does not say.

        A partitionable slot stays Unclaimed while dynamic slots come and go, so for it this
        is when the slot last changed state, which can be earlier than its last job's end;
        it orders idle machines, it never makes a busy one look idle.
        """
        if not self.idle:
            return None
        times = [slot.free_since for slot in self.owner_slots]
        if any(time is None for time in times):
            return None
        return max(time for time in times if time is not None)

    @property
    def busy_since(self) -> int | None:
        """Epoch second of the oldest claim on the machine, None if idle or unknown: how much
        work a forced removal would throw away."""
        if self.idle:
            return None
        times = [
            slot.entered_current_state
            for slot in self.slots
            if slot.dynamic or (slot.state in _HELD_STATES and not slot.partitionable)
        ]
        known = [time for time in times if time is not None]
        return min(known) if known else None

    @property
    def draining(self) -> bool:
        """A drain was started on this machine; it stays true once the drain has finished."""
        return any(slot.state == "Drained" for slot in self.owner_slots)

    @property
    def busy_reason(self) -> str | None:
        """Why the machine is not idle, for people (``busy: 2 dynamic slots claimed``);
        None when it is idle."""
        if self.idle:
            return None
        owners = self.owner_slots
        statics = [slot for slot in owners if not slot.partitionable]
        held = max(
            len(self.dynamic_slots),
            sum(slot.dynamic_slots or 0 for slot in owners if slot.partitionable),
        )
        claimed = sum(1 for slot in statics if slot.state == "Claimed")
        parts: list[str] = []
        if held:
            still = "still " if self.draining else ""
            parts.append(f"{_plural(held, 'dynamic slot')} {still}claimed")
        if claimed:
            parts.append(f"{claimed} of {_plural(len(statics), 'slot')} claimed")
        if not owners:
            parts.append("no partitionable or static slot listed")
        for slot in owners:
            if slot.free:
                continue
            if slot.partitionable:
                if slot.dynamic_slots is None:
                    parts.append(f"{slot.short_name} does not report NumDynamicSlots")
                    continue
                if slot.dynamic_slots and (_state_free(slot) or slot.state == "Drained"):
                    continue
            elif slot.state == "Claimed":
                continue
            parts.append(_state_text(slot))
        if self.draining:
            prefix = "draining"
        elif held or claimed:
            prefix = "busy"
        else:
            prefix = "not idle"
        return f"{prefix}: {', '.join(parts)}"


_HELD_STATES = frozenset({"Claimed", "Matched", "Preempting"})


def _state_free(slot: Slot) -> bool:
    return slot.state == "Unclaimed" or (slot.state == "Drained" and slot.activity == "Idle")


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _state_text(slot: Slot) -> str:
    if slot.state is None:
        return f"{slot.short_name} has no State"
    activity = f"/{slot.activity}" if slot.activity else ""
    return f"{slot.short_name} is {slot.state}{activity}"


_SINFUL = re.compile(
    r"^<(?:\[(?P<v6>[^\]]+)\]|(?P<host>[^:?>]+))(?::\d+)?(?:\?(?P<query>[^>]*))?>$"
)
_ADDRS_ENTRY = re.compile(r"^(?:\[(?P<v6>[^\]]+)\]|(?P<host>[^-\[\]]+))-\d+$")


def parse_sinful(sinful: str) -> tuple[str | None, tuple[str, ...]]:
    """The primary host and every advertised address of an HTCondor address string.

    ``"<10.0.0.12:9618?addrs=10.0.0.12-9618+[fd00::c]-9618&alias=w1&noUDP&sock=startd_1_a>"``
    gives ``("10.0.0.12", ("10.0.0.12", "fd00::c"))``. Unparsable input gives ``(None, ())``.
    """
    match = _SINFUL.match(sinful.strip())
    if not match:
        return None, ()
    primary = match.group("v6") or match.group("host")
    addresses = [primary]
    for parameter in (match.group("query") or "").split("&"):
        key, _, value = parameter.partition("=")
        if key != "addrs":
            continue
        for entry in value.split("+"):
            found = _ADDRS_ENTRY.match(entry)
            if found:
                addresses.append(found.group("v6") or found.group("host"))
    return primary, tuple(dict.fromkeys(addresses))


def _string(ad: Mapping[str, Any], key: str) -> str | None:
    value = ad.get(key)
    return value if isinstance(value, str) else None


def _integer(ad: Mapping[str, Any], key: str) -> int | None:
    value = ad.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return int(value)


def _flag(ad: Mapping[str, Any], key: str) -> bool:
    return ad.get(key) is True


def _slot_from_ad(ad: Mapping[str, Any], name: str) -> Slot:
    slot_type = _string(ad, "slottype")
    return Slot(
        name=name,
        state=_string(ad, "state"),
        activity=_string(ad, "activity"),
        partitionable=_flag(ad, "partitionableslot") or slot_type == "Partitionable",
        dynamic=_flag(ad, "dynamicslot") or slot_type == "Dynamic",
        dynamic_slots=_integer(ad, "numdynamicslots"),
        entered_current_state=_integer(ad, "enteredcurrentstate"),
        entered_current_activity=_integer(ad, "enteredcurrentactivity"),
        cpus=_integer(ad, "cpus"),
        memory=_integer(ad, "memory"),
    )


def parse_startd_ads(ads: Iterable[Mapping[str, Any]]) -> list[Machine]:
    """Group slot ads into machines by their ``Machine`` attribute, in first-seen order.

    Attribute names are matched case-insensitively, as ClassAds do. An ad without ``Machine``
    belongs to the host part of its ``Name``; an ad without ``Name`` cannot be told apart from
    its neighbours and is an error, not something to skip: skipping a busy slot would make its
    machine look idle.
    """
    grouped: dict[str, list[tuple[Mapping[str, Any], Slot]]] = {}
    for position, raw in enumerate(ads):
        if not isinstance(raw, Mapping):
            raise CloudError(f"slot ad #{position + 1} is not a ClassAd (got {type(raw).__name__})")
        ad = {str(key).lower(): value for key, value in raw.items()}
        name = _string(ad, "name")
        if not name:
            raise CloudError(f"slot ad #{position + 1} has no Name")
        machine = _string(ad, "machine") or name.rpartition("@")[2]
        grouped.setdefault(machine, []).append((ad, _slot_from_ad(ad, name)))
    machines = []
    for machine_name, members in grouped.items():
        server_id = next(
            (sid for ad, _ in members if (sid := _string(ad, SERVER_ID_ATTRIBUTE.lower()))), None
        )
        sinfuls = (_string(ad, "myaddress") or _string(ad, "startdipaddr") for ad, _ in members)
        sinful = next((s for s in sinfuls if s), None)
        address, addresses = parse_sinful(sinful) if sinful else (None, ())
        machines.append(
            Machine(
                name=machine_name,
                address=address,
                addresses=addresses,
                server_id=server_id,
                slots=tuple(slot for _, slot in members),
            )
        )
    return machines


# In the raw JSON text an expression string opens with a backslash-escaped slash; a plain
# string that happens to read "/Expr(" is written without the backslash.
_RAW_EXPRESSION_OPENING = "\\/Expr("

# Both are public in CPython's json package but missing from typeshed. The pure-Python scanner
# is needed because the C one never calls a decoder's parse_string.
_scanstring: Callable[[str, int, bool], tuple[str, int]]
_scanstring = json.decoder.scanstring  # type: ignore[attr-defined]
_py_make_scanner: Callable[[json.JSONDecoder], Any]
_py_make_scanner = json.scanner.py_make_scanner  # type: ignore[attr-defined]


def _scan_string(text: str, end: int, strict: bool = True) -> tuple[str | Expression, int]:
    value, stop = _scanstring(text, end, strict)
    if (
        text.startswith(_RAW_EXPRESSION_OPENING, end)
        and value.startswith("/Expr(")
        and value.endswith(")/")
    ):
        return Expression(value[len("/Expr(") : -len(")/")]), stop
    return value, stop


class _ClassAdJsonDecoder(json.JSONDecoder):
    """JSON decoding that returns ``\\/Expr(...)\\/`` strings as :class:`Expression`.

    The escape that marks an expression is gone after ordinary decoding, so string values go
    through :func:`_scan_string`, which still sees the raw text.
    """

    def __init__(self) -> None:
        super().__init__()
        self.parse_string = _scan_string
        self.scan_once = _py_make_scanner(self)


def parse_classad_json(text: str) -> list[dict[str, Any]]:
    """The ads of a ``condor_status -json`` output, expressions as :class:`Expression`.

    ``condor_status`` prints nothing at all when no ad matches, so empty output is an empty
    pool, not an error.
    """
    if not text.strip():
        return []
    try:
        document = _ClassAdJsonDecoder().decode(text)
    except json.JSONDecodeError as error:
        raise CloudError(f"the output is not JSON: {error}") from error
    if not isinstance(document, list) or not all(isinstance(ad, dict) for ad in document):
        raise CloudError("the output is not a JSON array of ClassAds")
    return document


def parse_condor_status_json(text: str) -> list[Machine]:
    """The machines in the exact output of ``condor_status -json`` (HTCondor's ClassAd JSON)."""
    return parse_startd_ads(parse_classad_json(text))


class PoolQuery(Protocol):
    """heatgen's one interface to an HTCondor pool. Methods raise
    :class:`heatgen.errors.CloudError` when the pool cannot be asked."""

    def machines(self) -> list[Machine]: ...

    def drain(self, machines: Sequence[str], graceful: bool = True) -> None: ...


def _stderr_summary(stderr: str | bytes | None) -> str:
    if isinstance(stderr, bytes):
        stderr = stderr.decode("utf-8", "replace")
    lines = [
        line.strip()
        for line in (stderr or "").splitlines()
        if line.strip() and not line.startswith("Warning: Permanently added")
    ]
    summary = " / ".join(lines[-3:])
    return summary if len(summary) <= 300 else "..." + summary[-297:]


class SshPool:
    """Asks the pool through ``condor_status`` and ``condor_drain`` on the master, over ssh.

    The master is the only VM with a public address and already holds the pool's client
    configuration and credentials, so nothing about HTCondor security has to exist on the
    operator's machine. ssh runs with ``BatchMode=yes`` (a password prompt would hang),
    a connect timeout and a deadline for the whole command.

    The query is plain ``condor_status -json`` (slot ads), not ``condor_status -startd``:
    since HTCondor 23.2 a startd can also advertise one "StartDaemon" ad per machine, and
    ``-startd`` selects those, which carry no slot state.
    """

    def __init__(
        self,
        host: str,
        user: str = "root",
        identity_file: str | os.PathLike[str] | None = None,
        runner: Runner = subprocess.run,
        *,
        timeout: float = 60.0,
        host_key_policy: str = DEFAULT_HOST_KEY_POLICY,
        sudo: bool = False,
    ) -> None:
        if not host or not user:
            raise CloudError("SshPool needs a host and a user")
        self.host = host
        self.user = user
        self.identity_file = os.fspath(identity_file) if identity_file is not None else None
        self.runner = runner
        self.timeout = timeout
        self.host_key_policy = host_key_policy
        self.sudo = sudo

    @property
    def target(self) -> str:
        return f"{self.user}@{self.host}"

    def ssh_argv(self, remote: Sequence[str]) -> list[str]:
        """The exact ssh command line that runs ``remote`` on the master."""
        argv = ["ssh"]
        for option in (*_SSH_OPTIONS, f"StrictHostKeyChecking={self.host_key_policy}"):
            argv += ["-o", option]
        if self.identity_file is not None:
            argv += ["-o", "IdentitiesOnly=yes", "-i", self.identity_file]
        command = ["sudo", "-n", *remote] if self.sudo else list(remote)
        return [*argv, "--", self.target, shlex.join(command)]

    def _run(self, what: str, remote: Sequence[str]) -> str:
        try:
            result = self.runner(
                self.ssh_argv(remote),
                capture_output=True,
                text=True,
                timeout=self.timeout,
                check=False,
                stdin=subprocess.DEVNULL,
            )
        except FileNotFoundError as error:
            raise CloudError("cannot run ssh: it is not installed or not on PATH") from error
        except subprocess.TimeoutExpired as error:
            raise CloudError(
                f"{what} on {self.target} did not finish within {self.timeout:g} s"
            ) from error
        if result.returncode == 255:
            raise CloudError(
                f"ssh to {self.target} failed: {_stderr_summary(result.stderr) or 'no message'}"
            )
        if result.returncode != 0:
            detail = _stderr_summary(result.stderr) or "no message"
            raise CloudError(
                f"{what} on {self.target} failed with exit status {result.returncode}: {detail}"
            )
        return result.stdout or ""

    def machines(self) -> list[Machine]:
        remote = ["condor_status", "-json", "-attributes", ",".join(STARTD_ATTRIBUTES)]
        output = self._run("condor_status", remote)
        try:
            return parse_condor_status_json(output)
        except CloudError as error:
            raise CloudError(f"condor_status on {self.target}: {error}") from error

    def drain(self, machines: Sequence[str], graceful: bool = True) -> None:
        """``condor_drain`` each machine; ``graceful=False`` means ``-quick`` (evict now, with
        the usual vacate time) rather than ``-fast`` (hard kill)."""
        schedule = "-graceful" if graceful else "-quick"
        for machine in machines:
            remote = ["condor_drain", schedule, "-reason", DRAIN_REASON, machine]
            self._run(f"condor_drain {machine}", remote)


def _plain_value(value: Any, classad2: Any) -> Any:
    """A value read from a ``classad2.ClassAd`` as the plain data :func:`parse_startd_ads`
    reads (what ``condor_status -json`` would have printed)."""
    if isinstance(value, classad2.ExprTree):
        return Expression(str(value))
    if isinstance(value, classad2.ClassAd):
        return {key: _plain_value(value[key], classad2) for key in value}
    if isinstance(value, list):
        return [_plain_value(item, classad2) for item in value]
    if isinstance(value, classad2.Value):
        return None if value == classad2.Value.Undefined else Expression("error")
    return value


class BindingsPool:
    """Asks a collector directly through the ``htcondor2`` Python bindings.

    Useful where the collector is reachable (on the master, or in the sandbox); from outside a
    grid, port 9618 is closed and :class:`SshPool` is the way in.

    Authentication: with ``token`` (the token itself) or ``token_file`` (a file holding one),
    the collector is asked with ``htcondor2.SecurityContext(token=...)`` where the bindings
    have it, and every call runs with ``SEC_TOKEN_DIRECTORY`` pointed at a private temporary
    directory holding the token, because ``htcondor2.Startd`` takes no security context (it
    reads the process configuration). Without either, the bindings use the local HTCondor
    configuration as any HTCondor tool would. The token needs READ for queries and
    ADMINISTRATOR on the startds for draining.
    """

    def __init__(
        self,
        collector_host: str,
        token: str | None = None,
        *,
        token_file: str | os.PathLike[str] | None = None,
    ) -> None:
        self.collector_host = collector_host
        self._token = token
        self._token_file = token_file

    def _read_token(self) -> str | None:
        if self._token is not None:
            return self._token.strip()
        if self._token_file is None:
            return None
        try:
            return Path(self._token_file).read_text(encoding="utf-8").strip()
        except OSError as error:
            raise CloudError(
                f"cannot read the HTCondor token file {os.fspath(self._token_file)}: "
                f"{error.strerror}"
            ) from error

    @contextlib.contextmanager
    def _session(self) -> Iterator[tuple[Any, Any, Any]]:
        """(htcondor2, classad2, collector) with the token configured, errors as CloudError."""
        try:
            classad2 = importlib.import_module("classad2")
            htcondor2 = importlib.import_module("htcondor2")
        except ImportError as error:
            raise CloudError(
                "the htcondor Python bindings are not installed (pip install htcondor)"
            ) from error
        token = self._read_token()
        with contextlib.ExitStack() as stack:
            security = None
            if token:
                stack.enter_context(_token_directory(htcondor2, token))
                context_type = getattr(htcondor2, "SecurityContext", None)
                if context_type is not None:
                    security = context_type(token=token)
            try:
                if security is not None:
                    collector = htcondor2.Collector(self.collector_host, security=security)
                else:
                    collector = htcondor2.Collector(self.collector_host)
                yield htcondor2, classad2, collector
            except htcondor2.HTCondorException as error:
                raise CloudError(
                    f"the HTCondor collector at {self.collector_host} failed: {error}"
                ) from error

    def machines(self) -> list[Machine]:
        with self._session() as (htcondor2, classad2, collector):
            ads = collector.query(htcondor2.AdTypes.Startd, projection=list(STARTD_ATTRIBUTES))
            plain = [{key: _plain_value(ad[key], classad2) for key in ad} for ad in ads]
        return parse_startd_ads(plain)

    def drain(self, machines: Sequence[str], graceful: bool = True) -> None:
        """The bindings' equivalent of ``condor_drain -graceful`` (``-quick`` when not
        graceful): find the startd's address in a slot ad, then ask it to drain."""
        with self._session() as (htcondor2, classad2, collector):
            drain_type = htcondor2.DrainType.Graceful if graceful else htcondor2.DrainType.Quick
            for machine in machines:
                ads = collector.query(
                    htcondor2.AdTypes.Startd,
                    constraint=f"Machine == {classad2.quote(machine)}",
                    projection=["Machine", "MyAddress", "Name"],
                )
                located = [ad for ad in ads if "MyAddress" in ad]
                if not located:
                    raise CloudError(f"the pool at {self.collector_host} does not list {machine}")
                htcondor2.Startd(located[0]).drainJobs(drain_type=drain_type, reason=DRAIN_REASON)


@contextlib.contextmanager
def _token_directory(htcondor2: Any, token: str) -> Iterator[None]:
    """Point the bindings' ``SEC_TOKEN_DIRECTORY`` at a private directory holding ``token``
    for the duration, then restore the previous setting and delete the directory."""
    param = htcondor2.param
    previous = param.get("SEC_TOKEN_DIRECTORY")
    with tempfile.TemporaryDirectory(prefix="heatgen-token-") as directory:
        path = Path(directory, "heatgen")
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(token + "\n")
        param["SEC_TOKEN_DIRECTORY"] = directory
        try:
            yield
        finally:
            if previous is None:
                del param["SEC_TOKEN_DIRECTORY"]
            else:
                param["SEC_TOKEN_DIRECTORY"] = previous


@dataclass(frozen=True)
class DrainRequest:
    machines: tuple[str, ...]
    graceful: bool


class RecordedPool:
    """A pool that answers with recorded snapshots, in order, then keeps giving the last.

    Each snapshot is a list of :class:`Machine` or a ``condor_status -json`` text (parsed at
    construction, so a bad recording fails at once). Drain requests are recorded, not acted
    on: the snapshots already say what the pool did.
    """

    def __init__(self, snapshots: Sequence[Sequence[Machine] | str]) -> None:
        if not snapshots:
            raise CloudError("a recorded pool needs at least one snapshot")
        self._snapshots = [
            parse_condor_status_json(s) if isinstance(s, str) else list(s) for s in snapshots
        ]
        self.queries = 0
        self.drain_requests: list[DrainRequest] = []

    @classmethod
    def from_files(cls, paths: Iterable[str | os.PathLike[str]]) -> RecordedPool:
        """Snapshots read from ``condor_status -json`` files, in the order given."""
        texts = []
        for path in paths:
            try:
                texts.append(Path(path).read_text(encoding="utf-8"))
            except OSError as error:
                raise CloudError(
                    f"cannot read the pool recording {os.fspath(path)}: {error.strerror}"
                ) from error
        try:
            return cls(texts)
        except CloudError as error:
            raise CloudError(f"bad pool recording: {error}") from error

    def machines(self) -> list[Machine]:
        snapshot = self._snapshots[min(self.queries, len(self._snapshots) - 1)]
        self.queries += 1
        return list(snapshot)

    def drain(self, machines: Sequence[str], graceful: bool = True) -> None:
        self.drain_requests.append(DrainRequest(tuple(machines), graceful))
