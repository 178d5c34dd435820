"""The pool layer: recorded `condor_status -json` outputs parsed into machines, the idleness
rules, and the three PoolQuery implementations (ssh with a fake runner, the htcondor2 bindings
with a fake module around real ClassAds, recordings)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest

from heatgen.errors import CloudError
from heatgen.pool import (
    STARTD_ATTRIBUTES,
    Expression,
    Machine,
    PoolQuery,
    parse_classad_json,
    parse_condor_status_json,
    parse_sinful,
    parse_startd_ads,
)
from heatgen.pool.bindings import BindingsPool
from heatgen.pool.ssh import SshPool, startd_name
from heatgen.sandbox.recording import DrainRequest, RecordedPool

DATA = Path(__file__).resolve().parent / "data" / "condor"
NOW = 1767225600

SERVER_IDS = {
    1: "46c22c86-9a2f-5dd9-ac20-5ea375f063e8",
    2: "3265e88a-dd1b-5014-bd3e-6ea70c7fc553",
    3: "456b98b6-4154-59b9-97d9-2fd9e14f1627",
    4: "0d7b5cea-bc4f-5196-96d8-223e332a8aeb",
    5: "ed600181-3c08-5bec-9c49-e71d7da0db9e",
}

HOST = "203.0.113.10"
PROJECTION = (
    "Activity,Cpus,DrainReason,DynamicSlot,EnteredCurrentActivity,EnteredCurrentState,"
    "HeatGenServerId,Machine,Memory,MyAddress,Name,NumDynamicSlots,PartitionableSlot,SlotType,"
    "State"
)


def recording(name: str) -> str:
    return (DATA / f"{name}.json").read_text(encoding="utf-8")


def machines_of(name: str) -> list[Machine]:
    return parse_condor_status_json(recording(name))


def host(index: int) -> str:
    return f"demo-worker-{index}.novalocal"


def by_name(machines: Sequence[Machine]) -> dict[str, Machine]:
    return {machine.name: machine for machine in machines}


# --- the recordings --------------------------------------------------------------------------


def load_capture() -> ModuleType:
    pytest.importorskip("classad2")
    spec = importlib.util.spec_from_file_location("condor_capture", DATA / "capture.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, module)
    spec.loader.exec_module(sys.modules[spec.name])
    return sys.modules[spec.name]


def test_recordings_are_byte_identical_to_what_capture_py_writes() -> None:
    rendered = load_capture().render_all()
    assert sorted(rendered) == sorted(path.name for path in DATA.glob("*.json"))
    for name, text in rendered.items():
        assert (DATA / name).read_bytes() == text.encode(), f"{name}: run capture.py"


def test_capture_projection_is_what_ssh_pool_asks_for() -> None:
    assert load_capture().PROJECTION == STARTD_ATTRIBUTES


def test_recordings_have_condor_status_array_framing() -> None:
    text = recording("busy-two-of-five")
    assert text.startswith("[\n{\n") and text.endswith("\n}\n]\n")
    assert text.count("\n}\n,\n{\n") == 7, "8 slot ads, one separator between each"
    assert recording("no-machines") == ""


def test_idle_five() -> None:
    machines = machines_of("idle-five")
    assert [m.name for m in machines] == [host(i) for i in range(1, 6)]
    assert all(m.idle for m in machines)
    assert [NOW - (m.idle_since or 0) for m in machines] == [11520, 2400, 2400, 90000, 45]
    assert [m.server_id for m in machines] == [SERVER_IDS[i] for i in range(1, 6)]
    assert [m.address for m in machines] == [f"10.0.0.{10 + i}" for i in range(1, 6)]
    first = machines[0]
    assert first.addresses == ("10.0.0.11",)
    assert len(first.slots) == 1
    slot = first.slots[0]
    assert (slot.name, slot.state, slot.activity) == (f"slot1@{host(1)}", "Unclaimed", "Idle")
    assert (slot.partitionable, slot.dynamic, slot.dynamic_slots) == (True, False, 0)
    assert (slot.cpus, slot.memory) == (4, 7680)
    assert all(m.busy_reason is None and m.busy_since is None for m in machines)


def test_busy_two_of_five() -> None:
    machines = by_name(machines_of("busy-two-of-five"))
    assert [machines[host(i)].idle for i in range(1, 6)] == [True, False, True, False, True]
    second = machines[host(2)]
    assert [s.name for s in second.slots] == [
        f"slot1@{host(2)}",
        f"slot1_1@{host(2)}",
        f"slot1_2@{host(2)}",
    ]
    assert [(s.dynamic, s.state, s.activity) for s in second.dynamic_slots] == [
        (True, "Claimed", "Busy"),
        (True, "Claimed", "Busy"),
    ]
    assert second.owner_slots[0].dynamic_slots == 2
    assert second.owner_slots[0].cpus == 2
    assert second.busy_reason == "busy: 2 dynamic slots claimed"
    assert second.busy_since == NOW - 3000
    assert second.idle_since is None
    fourth = machines[host(4)]
    assert fourth.busy_reason == "busy: 1 dynamic slot claimed"
    assert fourth.busy_since == NOW - 36000
    assert machines[host(1)].idle_since == NOW - 7200


def test_full_ads_parse_to_the_same_machines_as_the_projected_query() -> None:
    assert machines_of("full-ads") == machines_of("busy-two-of-five")


def test_full_ads_keep_expressions_lists_and_reals() -> None:
    ads = parse_classad_json(recording("full-ads"))
    assert len(ads) == 8
    first = ads[0]
    assert first["Requirements"] == Expression("START && (WithinResourceLimits)")
    assert first["CurrentTime"] == Expression("time()")
    assert first["Start"] is True
    assert first["TotalCpus"] == 4.0 and isinstance(first["TotalCpus"], float)
    assert first["MyType"] == "Slot"
    assert ads[1]["ChildState"] == ["Claimed", "Claimed"]


def test_expression_decoding_agrees_with_htcondors_own_json_reader() -> None:
    classad2 = pytest.importorskip("classad2")
    text = recording("full-ads")
    stream = text[len("[\n") : -len("]\n")].replace("\n,\n", "\n")
    theirs = list(classad2.parseAds(stream, classad2.ParserType.JSON))
    ours = parse_classad_json(text)
    assert len(theirs) == len(ours)
    for their_ad, our_ad in zip(theirs, ours, strict=True):
        assert sorted(their_ad.keys()) == sorted(our_ad)
        for key in our_ad:
            value = their_ad[key]
            if isinstance(value, classad2.ExprTree):
                assert our_ad[key] == Expression(str(value)), key
            else:
                assert not isinstance(our_ad[key], Expression), key


def test_static_slots_with_one_claimed() -> None:
    first, second = machines_of("static-one-claimed")
    assert [s.name for s in first.slots] == [f"slot1@{host(1)}", f"slot2@{host(1)}"]
    assert not any(s.partitionable or s.dynamic for s in first.slots)
    assert not first.idle
    assert first.busy_reason == "busy: 1 of 2 slots claimed"
    assert first.busy_since == NOW - 900
    assert second.idle
    assert second.idle_since == NOW - 1800, "the latest EnteredCurrentState of its slots"


def test_worker_without_server_id() -> None:
    machines = machines_of("no-server-id")
    assert [m.server_id for m in machines] == [SERVER_IDS[1], SERVER_IDS[2], None]
    assert machines[2].address == "10.0.0.13"
    assert machines[2].idle_since == NOW - 14400


def test_race_snapshots() -> None:
    before = machines_of("race-1-idle")
    after = by_name(machines_of("race-2-claimed"))
    assert all(m.idle for m in before)
    assert not after[host(1)].idle
    assert after[host(1)].busy_reason == "busy: 1 dynamic slot claimed"
    assert after[host(2)].idle and after[host(3)].idle


def test_draining_machine_becomes_idle() -> None:
    retiring = by_name(machines_of("drain-1-retiring"))[host(2)]
    assert retiring.draining and not retiring.idle
    assert retiring.busy_reason == "draining: 1 dynamic slot still claimed"
    drained = by_name(machines_of("drain-2-drained"))[host(2)]
    assert drained.idle and drained.draining
    assert drained.idle_since == NOW + 1500, "when the Idle activity began, not the drain"


def test_empty_output_is_an_empty_pool() -> None:
    assert machines_of("no-machines") == []
    assert parse_condor_status_json("\n") == []


# --- the idleness rules ----------------------------------------------------------------------


def slot_ad(name: str = "slot1@w1", **attributes: Any) -> dict[str, Any]:
    return {"Name": name, "Machine": "w1", "EnteredCurrentState": 100, **attributes}


def one_machine(*ads: dict[str, Any]) -> Machine:
    machines = parse_startd_ads(ads)
    assert len(machines) == 1
    return machines[0]


@pytest.mark.parametrize(
    ("state", "activity", "idle"),
    [
        ("Unclaimed", "Idle", True),
        ("Unclaimed", "Benchmarking", True),
        ("Drained", "Idle", True),
        ("Drained", "Retiring", False),
        ("Claimed", "Idle", False),
        ("Claimed", "Busy", False),
        ("Matched", "Idle", False),
        ("Preempting", "Vacating", False),
        ("Owner", "Idle", False),
        ("Backfill", "Busy", False),
        ("Delete", "Idle", False),
        (None, None, False),
    ],
)
def test_static_slot_states(state: str | None, activity: str | None, idle: bool) -> None:
    ad = slot_ad(SlotType="Static")
    if state is not None:
        ad |= {"State": state, "Activity": activity}
    assert one_machine(ad).idle is idle


@pytest.mark.parametrize(
    ("state", "activity", "dynamic_slots", "idle"),
    [
        ("Unclaimed", "Idle", 0, True),
        ("Unclaimed", "Idle", 1, False),
        ("Drained", "Idle", 0, True),
        ("Drained", "Retiring", 0, False),
        ("Claimed", "Idle", 0, False),
        ("Owner", "Idle", 0, False),
        ("Unclaimed", "Idle", None, False),
    ],
)
def test_partitionable_slot_states(
    state: str, activity: str, dynamic_slots: int | None, idle: bool
) -> None:
    ad = slot_ad(State=state, Activity=activity, PartitionableSlot=True)
    if dynamic_slots is not None:
        ad["NumDynamicSlots"] = dynamic_slots
    assert one_machine(ad).idle is idle


def test_machine_is_idle_only_if_all_its_slots_are() -> None:
    free = slot_ad("slot1@w1", State="Unclaimed", Activity="Idle")
    claimed = slot_ad("slot2@w1", State="Claimed", Activity="Busy")
    assert one_machine(free, dict(free, Name="slot2@w1")).idle
    assert not one_machine(free, claimed).idle


def test_a_listed_dynamic_slot_keeps_the_machine_busy_whatever_its_parent_says() -> None:
    parent = slot_ad(State="Unclaimed", Activity="Idle", PartitionableSlot=True, NumDynamicSlots=0)
    child = slot_ad("slot1_1@w1", State="Claimed", Activity="Idle", DynamicSlot=True)
    machine = one_machine(parent, child)
    assert not machine.idle
    assert machine.busy_reason == "busy: 1 dynamic slot claimed"


def test_dynamic_slots_without_their_partitionable_slot_are_busy() -> None:
    machine = one_machine(slot_ad("slot1_1@w1", State="Claimed", SlotType="Dynamic"))
    assert not machine.idle
    assert machine.busy_reason == (
        "busy: 1 dynamic slot claimed, no partitionable or static slot listed"
    )


@pytest.mark.parametrize(
    ("attributes", "reason"),
    [
        ({"State": "Owner", "Activity": "Idle"}, "not idle: slot1 is Owner/Idle"),
        ({"Activity": "Idle"}, "not idle: slot1 has no State"),
        ({"State": "Matched", "Activity": "Idle"}, "not idle: slot1 is Matched/Idle"),
        ({"State": "Drained", "Activity": "Retiring"}, "draining: slot1 is Drained/Retiring"),
        (
            {"State": "Unclaimed", "Activity": "Idle", "PartitionableSlot": True},
            "not idle: slot1 does not report NumDynamicSlots",
        ),
    ],
)
def test_reasons_for_not_idle(attributes: dict[str, Any], reason: str) -> None:
    assert one_machine(slot_ad(**attributes)).busy_reason == reason


def test_idle_since_is_unknown_if_a_slot_does_not_say() -> None:
    known = slot_ad(State="Unclaimed", Activity="Idle")
    unknown = {"Name": "slot2@w1", "Machine": "w1", "State": "Unclaimed", "Activity": "Idle"}
    machine = one_machine(known, unknown)
    assert machine.idle and machine.idle_since is None


def test_attribute_names_are_case_insensitive_and_machine_falls_back_to_name() -> None:
    machine = one_machine(
        {"name": "slot1@w9", "STATE": "Unclaimed", "activity": "Idle", "heatgenserverid": "abc"}
    )
    assert (machine.name, machine.server_id, machine.idle) == ("w9", "abc", True)


def test_expression_valued_state_is_not_idle() -> None:
    machine = one_machine(slot_ad(State=Expression('"Unclaimed"'), Activity="Idle"))
    assert not machine.idle


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("[{", "the output is not JSON"),
        ('{"Name": "slot1@w1"}', "not a JSON array of ClassAds"),
        ("[1, 2]", "not a JSON array of ClassAds"),
        ('[{"State": "Unclaimed"}]', "slot ad #1 has no Name"),
    ],
)
def test_bad_output_is_a_cloud_error(text: str, error: str) -> None:
    with pytest.raises(CloudError, match=error):
        parse_condor_status_json(text)


def test_only_the_escaped_form_is_an_expression() -> None:
    text = '[{"Name": "s@w", "A": "\\/Expr(x + 1)\\/", "B": "/Expr(x)/", "C": ["\\/Expr(y)\\/"]}]'
    (ad,) = parse_classad_json(text)
    assert ad["A"] == Expression("x + 1")
    assert ad["B"] == "/Expr(x)/"
    assert ad["C"] == [Expression("y")]


@pytest.mark.parametrize(
    ("sinful", "expected"),
    [
        (
            "<10.0.0.12:9618?addrs=10.0.0.12-9618&alias=w.novalocal&noUDP&sock=startd_123_abc>",
            ("10.0.0.12", ("10.0.0.12",)),
        ),
        (
            "<10.0.0.12:9618?addrs=10.0.0.12-9618+[fd00::c]-9618&noUDP>",
            ("10.0.0.12", ("10.0.0.12", "fd00::c")),
        ),
        ("<[fd00::1]:9618?addrs=[fd00::1]-9618>", ("fd00::1", ("fd00::1",))),
        ("<10.0.0.7:9618>", ("10.0.0.7", ("10.0.0.7",))),
        ("not an address", (None, ())),
    ],
)
def test_parse_sinful(sinful: str, expected: tuple[str | None, tuple[str, ...]]) -> None:
    assert parse_sinful(sinful) == expected


# --- SshPool ---------------------------------------------------------------------------------


class FakeRunner:
    """Stands in for subprocess.run: records each call, answers from a queue."""

    def __init__(self, *answers: subprocess.CompletedProcess[str] | BaseException) -> None:
        self.answers = list(answers)
        self.calls: list[tuple[list[str], dict[str, Any]]] = []

    def __call__(self, argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        self.calls.append((argv, kwargs))
        answer = self.answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer


def done(
    stdout: str = "", returncode: int = 0, stderr: str = ""
) -> subprocess.CompletedProcess[str]:
    return subprocess.CompletedProcess(["ssh"], returncode, stdout=stdout, stderr=stderr)


SSH_PREFIX = [
    "ssh",
    "-o",
    "BatchMode=yes",
    "-o",
    "ConnectTimeout=15",
    "-o",
    "StrictHostKeyChecking=accept-new",
]


def test_ssh_pool_runs_condor_status_on_the_master() -> None:
    runner = FakeRunner(done(recording("busy-two-of-five")))
    pool = SshPool(HOST, identity_file=Path("/keys/grid"), runner=runner)
    assert pool.machines() == machines_of("busy-two-of-five")
    ((argv, kwargs),) = runner.calls
    assert argv == [
        *SSH_PREFIX,
        "-o",
        "IdentitiesOnly=yes",
        "-i",
        "/keys/grid",
        "--",
        f"root@{HOST}",
        f"condor_status -json -attributes {PROJECTION}",
    ]
    assert kwargs == {
        "capture_output": True,
        "text": True,
        "timeout": 60.0,
        "check": False,
        "stdin": subprocess.DEVNULL,
    }


def test_ssh_pool_drains_each_machine_gracefully_by_its_slot_name() -> None:
    """condor_drain finds a startd by a slot's Name: the bare Machine is "unknown host"."""
    runner = FakeRunner(done(), done())
    machines = by_name(machines_of("busy-two-of-five"))
    pool = SshPool(HOST, user="ubuntu", runner=runner, sudo=True, timeout=20)
    pool.drain([machines[host(2)], machines[host(4)]])
    assert [argv for argv, _ in runner.calls] == [
        [
            *SSH_PREFIX,
            "--",
            f"ubuntu@{HOST}",
            f"sudo -n condor_drain -graceful -reason 'heatgen scale-in' slot1@{host(i)}",
        ]
        for i in (2, 4)
    ]
    assert runner.calls[0][1]["timeout"] == 20


def test_startd_name_is_the_first_owner_slot() -> None:
    busy = by_name(machines_of("busy-two-of-five"))[host(2)]
    assert [s.name for s in busy.slots][0] == f"slot1@{host(2)}"
    assert startd_name(busy) == f"slot1@{host(2)}"
    static = machines_of("static-one-claimed")[0]
    assert startd_name(static) == f"slot1@{host(1)}"
    child_first = one_machine(
        slot_ad("slot1_1@w1", State="Claimed", DynamicSlot=True),
        slot_ad("slot1@w1", State="Unclaimed", PartitionableSlot=True, NumDynamicSlots=1),
    )
    assert startd_name(child_first) == "slot1@w1"
    assert startd_name(one_machine(slot_ad("slot1_1@w1", DynamicSlot=True))) == "slot1_1@w1"
    assert startd_name(Machine("w1", None, (), None, ())) == "w1"


def test_ssh_pool_quick_drain_and_quoting() -> None:
    runner = FakeRunner(done())
    odd = one_machine(slot_ad("odd name;rm -rf /", State="Unclaimed"))
    SshPool(HOST, runner=runner).drain([odd], graceful=False)
    assert runner.calls[0][0][-1] == (
        "condor_drain -quick -reason 'heatgen scale-in' 'odd name;rm -rf /'"
    )


def test_ssh_pool_cancels_drains() -> None:
    runner = FakeRunner(done(), done())
    machines = by_name(machines_of("drain-1-retiring"))
    SshPool(HOST, runner=runner).cancel_drain([machines[host(2)], machines[host(1)]])
    assert [argv[-1] for argv, _ in runner.calls] == [
        f"condor_drain -cancel slot1@{host(2)}",
        f"condor_drain -cancel slot1@{host(1)}",
    ]


def test_ssh_pool_tries_every_cancel_and_reports_the_failures_together() -> None:
    runner = FakeRunner(done(returncode=1, stderr="ERROR: Can't find address\n"), done())
    machines = by_name(machines_of("drain-1-retiring"))
    with pytest.raises(CloudError) as caught:
        SshPool(HOST, runner=runner).cancel_drain([machines[host(2)], machines[host(1)]])
    assert len(runner.calls) == 2
    assert str(caught.value) == (
        f"cancelling the drain failed for {host(2)}: condor_drain -cancel slot1@{host(2)} on "
        f"root@{HOST} failed with exit status 1: ERROR: Can't find address"
    )


def test_ssh_pool_empty_pool() -> None:
    assert SshPool(HOST, runner=FakeRunner(done(""))).machines() == []


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (
            done(returncode=255, stderr="root@203.0.113.10: Permission denied (publickey).\n"),
            "ssh to root@203.0.113.10 failed: root@203.0.113.10: Permission denied (publickey).",
        ),
        (
            done(
                returncode=1,
                stderr="Warning: Permanently added '203.0.113.10' (ED25519) to the list of known "
                "hosts.\nError: Couldn't contact the condor_collector on demo-master.\n",
            ),
            (
                "condor_status on root@203.0.113.10 failed with exit status 1: "
                "Error: Couldn't contact the condor_collector on demo-master."
            ),
        ),
        (
            done(returncode=127, stderr=""),
            "condor_status on root@203.0.113.10 failed with exit status 127: no message",
        ),
        (
            subprocess.TimeoutExpired(["ssh"], 60.0),
            "condor_status on root@203.0.113.10 did not finish within 60 s",
        ),
        (FileNotFoundError(2, "No such file", "ssh"), "cannot run ssh: it is not installed"),
        (
            done(stdout="Error: unknown option -json\n"),
            "condor_status on root@203.0.113.10: the output is not JSON: Expecting value",
        ),
        (
            done(stdout='{"Name": "slot1@w1"}'),
            "condor_status on root@203.0.113.10: the output is not a JSON array of ClassAds",
        ),
    ],
)
def test_ssh_pool_errors_name_what_failed(
    answer: subprocess.CompletedProcess[str] | BaseException, message: str
) -> None:
    pool = SshPool(HOST, runner=FakeRunner(answer))
    with pytest.raises(CloudError) as caught:
        pool.machines()
    assert str(caught.value).startswith(message)


def test_ssh_pool_drain_failure_names_the_machine_and_the_refusal() -> None:
    stderr = "Attempt to send DRAIN_JOBS to startd <10.0.0.14:9618> failed\nPERMISSION DENIED\n"
    runner = FakeRunner(done(), done(returncode=1, stderr=stderr))
    pool = SshPool(HOST, runner=runner)
    machines = by_name(machines_of("busy-two-of-five"))
    with pytest.raises(CloudError) as caught:
        pool.drain([machines[host(2)], machines[host(4)]])
    assert str(caught.value) == (
        f"the startd of {host(4)} refused to drain: condor_drain slot1@{host(4)} on "
        f"root@{HOST} failed with exit status 1: Attempt to send DRAIN_JOBS to startd "
        "<10.0.0.14:9618> failed / PERMISSION DENIED"
    )


def test_ssh_pool_drain_over_a_broken_ssh_is_no_refusal() -> None:
    runner = FakeRunner(done(returncode=255, stderr="Connection timed out\n"))
    machine = by_name(machines_of("busy-two-of-five"))[host(4)]
    with pytest.raises(CloudError) as caught:
        SshPool(HOST, runner=runner).drain([machine])
    assert str(caught.value) == f"ssh to root@{HOST} failed: Connection timed out"


def test_ssh_pool_long_stderr_is_shortened() -> None:
    noise = "\n".join(f"line {i} " + "x" * 200 for i in range(10))
    pool = SshPool(HOST, runner=FakeRunner(done(returncode=2, stderr=noise)))
    with pytest.raises(CloudError) as caught:
        pool.machines()
    assert len(str(caught.value)) < 400
    assert "line 9" in str(caught.value) and "line 6" not in str(caught.value)


def test_ssh_pool_needs_a_host() -> None:
    with pytest.raises(CloudError):
        SshPool("")


# --- RecordedPool ----------------------------------------------------------------------------


def test_recorded_pool_replays_in_order_then_stays_on_the_last() -> None:
    pool = RecordedPool.from_files([DATA / "race-1-idle.json", DATA / "race-2-claimed.json"])
    assert pool.machines() == machines_of("race-1-idle")
    assert pool.machines() == machines_of("race-2-claimed")
    assert pool.machines() == machines_of("race-2-claimed")
    assert pool.queries == 3


def test_recorded_pool_records_drains_and_takes_machine_lists() -> None:
    pool = RecordedPool([machines_of("drain-1-retiring"), recording("drain-2-drained")])
    machines = by_name(machines_of("drain-1-retiring"))
    pool.drain([machines[host(2)]])
    pool.drain([machines[host(1)]], graceful=False)
    pool.cancel_drain([machines[host(2)], machines[host(1)]])
    assert pool.drain_requests == [
        DrainRequest((host(2),), True),
        DrainRequest((host(1),), False),
    ]
    assert pool.cancel_requests == [(host(2), host(1))]
    assert pool.machines() == machines_of("drain-1-retiring")


def test_recorded_pool_rejects_bad_recordings(tmp_path: Path) -> None:
    with pytest.raises(CloudError, match="at least one snapshot"):
        RecordedPool([])
    bad = tmp_path / "bad.json"
    bad.write_text("[{", encoding="utf-8")
    with pytest.raises(CloudError, match="bad pool recording: the output is not JSON"):
        RecordedPool.from_files([bad])
    with pytest.raises(CloudError, match="cannot read the pool recording"):
        RecordedPool.from_files([tmp_path / "missing.json"])


# --- BindingsPool ----------------------------------------------------------------------------


def test_pool_modules_import_without_the_bindings() -> None:
    code = (
        "import sys; sys.modules['htcondor2'] = None; sys.modules['classad2'] = None; "
        "import heatgen.pool.ssh, heatgen.pool.bindings, heatgen.scalein.shrink"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_bindings_pool_without_the_bindings_is_a_cloud_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "htcondor2", None)
    with pytest.raises(CloudError, match="bindings are not installed"):
        BindingsPool("demo-master:9618").machines()


def test_bindings_pool_against_a_closed_port_is_a_cloud_error() -> None:
    pytest.importorskip("htcondor2")
    with pytest.raises(CloudError, match=r"collector at 127\.0\.0\.1:9 failed"):
        BindingsPool("127.0.0.1:9").machines()


class FakeBindings:
    """An htcondor2 stand-in around real classad2 ads: what was asked, with which settings."""

    def __init__(self, classad2: Any, ads: list[Any]) -> None:
        self.ads = ads
        self.queries: list[dict[str, Any]] = []
        self.drains: list[tuple[str, Any, str]] = []
        self.cancels: list[tuple[str, str | None]] = []
        self.refuse: str | None = None
        self.seen_token_files: list[str] = []
        self.param: dict[str, str] = {"SEC_TOKEN_DIRECTORY": "/home/op/.condor/tokens.d"}
        fake = self

        class Collector:
            def __init__(self, pool: str, security: Any = None) -> None:
                fake.queries.append({"pool": pool, "token": getattr(security, "token", None)})

            def query(
                self,
                ad_type: str,
                constraint: str | None = None,
                projection: list[str] | None = None,
            ) -> list[Any]:
                directory = Path(fake.param["SEC_TOKEN_DIRECTORY"])
                fake.seen_token_files += [p.read_text() for p in directory.glob("*")]
                fake.queries[-1] |= {
                    "type": ad_type,
                    "constraint": constraint,
                    "projection": projection,
                }
                if constraint:
                    wanted = constraint.split('"')[1]
                    return [ad for ad in fake.ads if ad["Machine"] == wanted]
                return fake.ads

        class Startd:
            def __init__(self, location: Any) -> None:
                self.address = location["MyAddress"]

            def drainJobs(self, drain_type: Any, reason: str) -> str:
                if fake.refuse is not None:
                    raise RuntimeError(fake.refuse)
                fake.drains.append((self.address, drain_type, reason))
                return f"request-{len(fake.drains)}"

            def cancelDrainJobs(self, request_id: str | None = None) -> None:
                if fake.refuse is not None:
                    raise RuntimeError(fake.refuse)
                fake.cancels.append((self.address, request_id))

        self.module = SimpleNamespace(
            Collector=Collector,
            Startd=Startd,
            AdTypes=SimpleNamespace(Startd="Startd"),
            DrainType=SimpleNamespace(Graceful="Graceful", Quick="Quick"),
            HTCondorException=RuntimeError,
            SecurityContext=lambda token: SimpleNamespace(token=token),
            param=self.param,
        )


@pytest.fixture
def bindings(monkeypatch: pytest.MonkeyPatch) -> FakeBindings:
    classad2 = pytest.importorskip("classad2")
    text = recording("full-ads")
    stream = text[len("[\n") : -len("]\n")].replace("\n,\n", "\n")
    fake = FakeBindings(classad2, list(classad2.parseAds(stream, classad2.ParserType.JSON)))
    monkeypatch.setitem(sys.modules, "htcondor2", fake.module)
    return fake


def test_bindings_pool_reads_real_classads(bindings: FakeBindings) -> None:
    assert BindingsPool("demo-master:9618").machines() == machines_of("busy-two-of-five")
    assert bindings.queries == [
        {
            "pool": "demo-master:9618",
            "token": None,
            "type": "Startd",
            "constraint": None,
            "projection": list(STARTD_ATTRIBUTES),
        }
    ]


def test_bindings_pool_drains_through_the_startd_with_a_token(
    bindings: FakeBindings, tmp_path: Path
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("eyJhbGciOiJIUzI1NiJ9.e30.sig\n", encoding="utf-8")
    machine = by_name(machines_of("busy-two-of-five"))[host(4)]
    BindingsPool("demo-master:9618", token_file=token_file).drain([machine], graceful=False)
    ads = parse_classad_json(recording("busy-two-of-five"))
    address = next(ad["MyAddress"] for ad in ads if ad["Machine"] == host(4))
    assert bindings.drains == [(address, "Quick", "heatgen scale-in")]
    assert bindings.queries[0]["token"] == "eyJhbGciOiJIUzI1NiJ9.e30.sig"
    assert bindings.queries[0]["constraint"] == f'Machine == "{host(4)}"'
    assert bindings.seen_token_files == ["eyJhbGciOiJIUzI1NiJ9.e30.sig\n"]
    assert bindings.param["SEC_TOKEN_DIRECTORY"] == "/home/op/.condor/tokens.d"


def test_bindings_pool_drain_of_an_unknown_machine(bindings: FakeBindings) -> None:
    stranger = one_machine(slot_ad("slot1@demo-worker-9.novalocal", Machine=host(9)))
    with pytest.raises(CloudError, match="does not list demo-worker-9"):
        BindingsPool("demo-master:9618").drain([stranger])


def test_bindings_pool_drain_refused_by_the_startd_names_it_and_the_token(
    bindings: FakeBindings,
) -> None:
    bindings.refuse = "Startd failed to start draining jobs."
    machine = by_name(machines_of("busy-two-of-five"))[host(4)]
    with pytest.raises(CloudError) as caught:
        BindingsPool("demo-master:9618").drain([machine])
    message = str(caught.value)
    assert message.startswith(
        f"the startd of {host(4)} refused to drain: Startd failed to start draining jobs.; "
        "the likely cause is an HTCondor token that allows READ only, or no token"
    )
    assert "collector" not in message


def test_bindings_pool_cancels_exactly_the_drains_it_started(bindings: FakeBindings) -> None:
    machines = by_name(machines_of("busy-two-of-five"))
    pool = BindingsPool("demo-master:9618")
    pool.drain([machines[host(2)], machines[host(4)]])
    pool.cancel_drain([machines[host(4)], machines[host(5)]])
    address = {m: next(ad["MyAddress"] for ad in parse_classad_json(recording("busy-two-of-five"))
                       if ad["Machine"] == host(m)) for m in (2, 4, 5)}
    assert bindings.cancels == [(address[4], "request-2"), (address[5], None)]
    bindings.refuse = "SECMAN:2010:Received \"DENIED\" from server"
    with pytest.raises(CloudError) as caught:
        pool.cancel_drain([machines[host(2)]])
    assert str(caught.value) == (
        f'cancelling the drain failed for {host(2)}: SECMAN:2010:Received "DENIED" from server'
    )


def test_every_pool_is_a_pool_query() -> None:
    pools: list[PoolQuery] = [
        SshPool(HOST),
        BindingsPool("demo-master:9618"),
        RecordedPool([""]),
    ]
    assert [type(pool).__name__ for pool in pools] == ["SshPool", "BindingsPool", "RecordedPool"]


def test_ssh_pool_forgets_removed_machines_at_the_collector() -> None:
    runner = FakeRunner(done(), done())
    pool = SshPool(HOST, runner=runner, known_hosts="/sandbox/known_hosts")
    pool.forget(parse_startd_ads([
        {"Name": "slot1@w1", "Machine": "w1", "State": "Unclaimed"},
        {"Name": "slot1@w2", "Machine": "w2", "State": "Unclaimed"},
    ]))
    assert len(runner.calls) == 2
    argv = runner.calls[0][0]
    assert argv[:len(SSH_PREFIX)] == SSH_PREFIX
    assert "UserKnownHostsFile=/sandbox/known_hosts" in argv
    script = argv[-1]
    assert "condor_advertise INVALIDATE_STARTD_ADS -" in script
    assert "condor_advertise INVALIDATE_MASTER_ADS -" in script
    assert "Machine == \"w1\"" in script and "w2" not in script


def test_importing_the_bindings_leaves_the_environment_as_it_was() -> None:
    """``import htcondor2`` sets CONDOR_CONFIG=/dev/null when HTCondor is not installed; left
    in os.environ, every condor tool started later (on a sandbox host too) reads no config."""
    pytest.importorskip("htcondor2", reason="needs the htcondor bindings (test extra)")
    probe = ("import os; from heatgen.pool.bindings import import_bindings; "
             "import_bindings(); print(os.environ.get('CONDOR_CONFIG', 'unset'))")
    env = {k: v for k, v in __import__("os").environ.items() if k != "CONDOR_CONFIG"}
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          env=env, check=True)
    assert done.stdout.strip() == "unset"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          env={**env, "CONDOR_CONFIG": "/etc/condor/condor_config"}, check=True)
    assert done.stdout.strip() == "/etc/condor/condor_config"
