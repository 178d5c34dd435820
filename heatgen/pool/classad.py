"""HTCondor's data as heatgen reads it: slot ads (ClassAd JSON from ``condor_status -json``,
or plain data from the bindings) grouped into :class:`~heatgen.pool.model.Machine` values, and
HTCondor's address strings.
"""

from __future__ import annotations

import json
import json.decoder
import json.scanner
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from heatgen.errors import CloudError
from heatgen.pool.model import Machine, Slot

SERVER_ID_ATTRIBUTE = "HeatGenServerId"

# The slot attributes heatgen reads, passed to `condor_status -attributes` and to the
# collector as a projection; everything else in a slot ad is irrelevant to scale-in.
STARTD_ATTRIBUTES: tuple[str, ...] = (
    "Activity",
    "Cpus",
    "DrainReason",
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


@dataclass(frozen=True)
class Expression:
    """A ClassAd expression an ad carries unevaluated, such as ``Requirements``.

    ``condor_status -json`` writes these as the string ``"\\/Expr(<text>)\\/"``; keeping them
    apart from plain strings means no expression is ever mistaken for a state name.
    """

    text: str



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
        drain_reason = next(
            (reason for ad, _ in members if (reason := _string(ad, "drainreason"))), None
        )
        machines.append(
            Machine(
                name=machine_name,
                address=address,
                addresses=addresses,
                server_id=server_id,
                slots=tuple(slot for _, slot in members),
                drain_reason=drain_reason,
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
