"""Reads that do not grow with a stack's history, and waits that notice the end quickly at no
more requests than `openstack stack ... --wait` spends over the same operation."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from heatgen.cloud.interface import Event
from heatgen.config import load_site
from heatgen.ops.inspect import status
from heatgen.ops.report import SilentReporter
from heatgen.ops.scale import ScaleRequest, scale
from heatgen.ops.wait import BUDGET, latest_event, wait_for_stack

from .conftest import EXAMPLES
from .fakecloud import FakeClock, FakeCloud, FakeStack

SITE = load_site(EXAMPLES / "thesis.yaml")


def _grid_with_history(events: int) -> tuple[FakeCloud, FakeStack]:
    """The thesis grid's stack with ``events`` events spread over its own stack, the group's
    nested stack and 300 member stacks, as nested_depth=2 lists them."""
    cloud = FakeCloud()
    stack = cloud.add_stack("bergen-grid", worker_min="1", worker_max="7", worker_desired="1")
    stack.outputs = {"worker_count": 1}
    group = f"{stack.name}-workers-k3v"
    stack.deep_stacks = {f"{group}-m{index}-x7q" for index in range(300)}
    for index in range(events):
        where = (stack.name, group, f"{group}-m{index % 300}-x7q")[index % 3]
        stack.events.append(Event(str(next(cloud._events)), "2026-01-01T00:00:00Z",
                                  f"r{index}", "UPDATE_COMPLETE", "", where))
    return cloud, stack


def test_status_reads_the_same_five_events_however_long_the_history() -> None:
    seen = {}
    for history in (10, 5000):
        cloud, stack = _grid_with_history(history)
        report = status(cloud, SITE)
        assert [e.id for e in report.events] == [e.id for e in stack.events[-5:]]
        seen[history] = (cloud.calls, cloud.events_read)
    assert seen[10] == seen[5000]
    assert seen[5000][1] == 5


def test_status_of_a_grid_without_telemetry_asks_for_no_alarms(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from heatgen.config import Telemetry

    cloud, _ = _grid_with_history(10)
    asked: list[str] = []
    monkeypatch.setattr(cloud, "alarms", lambda stack_id: asked.append(stack_id) or [])
    quiet = SITE.model_copy(update={"autoscaling": SITE.autoscaling.model_copy(
        update={"telemetry": Telemetry.NONE})})
    report = status(cloud, quiet)
    assert asked == [] and report.alarms == {} and report.alarms_unavailable is None
    status(cloud, SITE)
    assert len(asked) == 1


def test_a_wait_starts_from_one_event_however_long_the_history() -> None:
    seen = {}
    for history in (10, 5000):
        cloud, stack = _grid_with_history(history)
        assert latest_event(cloud, stack.id) == stack.events[-1]
        assert cloud.events_read == 1
        cloud.events_read = 0
        result = scale(cloud, SITE, ScaleRequest(workers=3), SilentReporter(),
                       clock=FakeClock())
        assert result.action == "scaled"
        seen[history] = ([(name, arg) for name, arg in cloud.calls
                          if name in ("newest_events", "get_stack", "update_stack")],
                         cloud.names().count("events"), cloud.events_read)
    assert seen[10] == seen[5000]
    assert seen[5000][2] <= 4  # the marker, then only the update's own events


def test_a_scale_up_and_a_delete_never_have_heat_resolve_every_output() -> None:
    # The outputs resolved cost heat-api a read of every member's stack (seconds at hundreds
    # of members): a scale-up reads the stack's status and parameters, and the group's size as
    # its one output, before and after; a delete reads no output at all.
    from heatgen.ops.delete import delete

    cloud, stack = _grid_with_history(10)
    result = scale(cloud, SITE, ScaleRequest(workers=3), SilentReporter(), clock=FakeClock())
    assert result.action == "scaled" and result.wanted == 3
    assert "get_stack" not in cloud.names()
    assert cloud.names().count("stack_no_outputs") == 2
    assert [arg for name, arg in cloud.calls if name == "stack_output"] == ["worker_count"] * 2
    cloud.calls.clear()
    assert delete(cloud, SITE, timeout=600, report=SilentReporter(), clock=FakeClock()) is None
    assert "get_stack" not in cloud.names() and "stack_output" not in cloud.names()


def test_a_scale_that_ends_short_of_its_size_is_told_from_the_groups_size_alone() -> None:
    from heatgen.errors import StackFailed

    cloud, _ = _grid_with_history(10)
    cloud.reaches = 2
    with pytest.raises(StackFailed, match="the group has 2 workers, not 3"):
        scale(cloud, SITE, ScaleRequest(workers=3), SilentReporter(), clock=FakeClock())


# --- pacing: an operation on a clock -------------------------------------------------------


class TimedCloud(FakeCloud):
    """One operation whose events appear at scripted times (the stack's own final event at
    ``end``); the stack reads IN_PROGRESS until then. Events of nested stacks carry another
    stack name: the CLI's polls (nested_depth 0) do not see them."""

    def __init__(self, clock: FakeClock, times: list[float], end: float,
                 action: str = "UPDATE", final_listed: bool = True) -> None:
        super().__init__()
        self.clock, self.end, self.action = clock, end, action
        self.stack = self.add_stack("bergen-grid", f"{action}_IN_PROGRESS")
        self.script = [(t, f"{self.stack.name}-workers-k3v", f"m{i}") for i, t in
                       enumerate(sorted(times))]
        if final_listed:
            self.script.append((end, self.stack.name, self.stack.name))

    def _advance(self, stack_id: str) -> FakeStack | None:
        stack = self.stacks.get(stack_id)
        while self.script and self.script[0][0] <= self.clock.t:
            _, where, resource = self.script.pop(0)
            final = resource == self.stack.name
            state = f"{self.action}_COMPLETE" if final else f"{self.action}_IN_PROGRESS"
            physical = self.stack.id if final else ""
            self.stack.events.append(Event(str(next(self._events)), "", resource, state, "",
                                           where, physical))
        if self.clock.t >= self.end and self.stack.status.endswith("_IN_PROGRESS"):
            self.stack.status = f"{self.action}_COMPLETE"
        return stack

    def events(self, stack_id: str, after: str | None, depth: int = 2
               ) -> list[Event] | None:
        if self.action == "DELETE" and self.clock.t >= self.end:
            self.calls.append(("events" if depth else "own_events", after))
            return []  # heat-api lists a deleted stack's events by name/id as none
        return super().events(stack_id, after, depth)

    def get_stack(self, name_or_id: str, outputs: bool = True) -> Any:
        if self.action == "DELETE" and self.clock.t >= self.end:
            self.calls.append(("get_stack" if outputs else "stack_no_outputs", name_or_id))
            return None
        return super().get_stack(name_or_id, outputs)

    def stack_status(self, stack_id: str) -> Any:
        if self.action == "DELETE" and self.clock.t >= self.end:
            self.calls.append(("stack_status", stack_id))
            return None
        return super().stack_status(stack_id)

    def requests(self) -> int:
        return sum(1 for name in self.names() if name in (
            "events", "own_events", "get_stack", "stack_no_outputs", "stack_status"))


def cli_wait(end: float) -> tuple[int, float]:
    """(requests, seconds after ``end``) of `openstack stack update --existing --wait` on the
    same operation, from the marker to the final stack: the newest event as the marker, then
    heatclient's poll_for_events (the stack's own events at once and every 5 s, a stack read
    after two polls without one), then the stack shown; each by name, a lookup and its
    redirect. Only the stack's own events count for it: nested ones are not listed."""
    requests = 2 + 2  # the marker; the first poll, which finds the update's first event
    no_event_polls, t = 0, 0.0
    while True:
        t += 5.0
        requests += 2
        if t >= end:
            return requests + 2, t - end  # the final event, then the stack shown
        no_event_polls += 1
        if no_event_polls >= 2:
            requests += 2
            no_event_polls = 0


@dataclass(frozen=True)
class Scenario:
    name: str
    times: list[float]
    end: float
    lag: float  # how late heatgen may notice the end


def _every(step: float, start: float, stop: float) -> list[float]:
    return [start + step * i for i in range(int((stop - start) / step) + 1)]


# How late heatgen may notice the end: within a second while its budget lasts (operations of
# a few seconds, or after a quiet stretch refilled it), else within one BUDGET interval (2 s),
# or the backoff's second step after a poll that found nothing; the CLI: up to 5 s. A wait
# starts with a poll and the reserve only (START), so an update that moves every second for
# 10 s has spent its budget before its end.
SCENARIOS = [
    Scenario("update of a few seconds", _every(0.3, 0.2, 3.5), 4.0, 1.0),
    Scenario("short update (10 s, an event every 0.3 s)", _every(0.3, 0.2, 10.0), 10.1,
             BUDGET),
    Scenario("create of a small grid: its resources, then ten members a second apart",
             _every(0.3, 0.2, 3.0) + [5.0 + i + d for i in range(10) for d in (0.0, 0.4)],
             17.0, 1.0),
    Scenario("create waiting 60 s on the master, then the group",
             _every(0.5, 0.2, 3.0) + _every(0.5, 60.0, 70.0), 70.2, 1.0),
    Scenario("create with a lull before its last resources",
             _every(0.4, 0.2, 20.0) + [23.0, 23.05], 23.1, BUDGET),
    Scenario("long scale-up (150 s, an event every 0.5 s)", _every(0.5, 0.2, 150.0), 150.3,
             BUDGET),
    Scenario("long scale-up, events in bursts every 4 s",
             [t + d for t in _every(4.0, 0.5, 120.0) for d in (0.0, 0.1, 0.2)], 121.0, 2.25),
]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_a_wait_notices_the_end_quickly_for_fewer_requests_than_the_cli(
    scenario: Scenario,
) -> None:
    clock = FakeClock()
    cloud = TimedCloud(clock, scenario.times, scenario.end)
    seen: list[Event] = []
    final = wait_for_stack(cloud, cloud.stack.id, "UPDATE", timeout=3600, marker=None,
                           report=SilentReporter(), clock=clock,
                           on_events=lambda stack_id, events: seen.extend(events))
    assert final is not None and final.status == "UPDATE_COMPLETE"
    lag = clock.t - scenario.end
    cli_requests, cli_lag = cli_wait(scenario.end)
    assert 0 <= lag <= scenario.lag, (lag, cloud.names())
    assert lag <= cli_lag
    assert 1 + cloud.requests() <= cli_requests, (cloud.requests(), cli_requests)  # + marker
    # The watcher sees every event once, the stack's own final one last.
    assert sorted(e.id for e in seen) == sorted(e.id for e in cloud.stack.events)
    assert seen[-1].physical_id == cloud.stack.id


def test_over_any_end_a_long_wait_notices_it_a_second_late_on_average() -> None:
    # Where the end falls between two polls decides how late it is seen: over 50 ends 0.1 s
    # apart, a 150 s scale-up is noticed about a second late on average, 2 s at most, for
    # fewer requests than the CLI's polling of the same operation (which sees it 2.5 s late).
    lags, requests, cli_requests = [], [], []
    for step in range(50):
        end = 150.0 + step * 0.1
        clock = FakeClock()
        cloud = TimedCloud(clock, _every(0.5, 0.2, end - 0.3), end)
        wait_for_stack(cloud, cloud.stack.id, "UPDATE", timeout=3600, marker=None,
                       report=SilentReporter(), clock=clock)
        lags.append(clock.t - end)
        requests.append(1 + cloud.requests())
        cli_requests.append(cli_wait(end)[0])
    assert sum(lags) / len(lags) <= 1.1 and max(lags) <= BUDGET
    assert sum(requests) <= 0.9 * sum(cli_requests)


@pytest.mark.parametrize("end", [20.4, 40.4, 41.3, 100.9])
def test_a_delete_gone_quiet_is_noticed_by_reads_between_its_polls(end: float) -> None:
    # Heat lists no more events once the last resource is gone, then cleans up for a few
    # seconds, and never lists the deleted stack's own final event.
    clock = FakeClock()
    times = [t for t in _every(0.5, 0.2, end) if t < end - 3.4]
    cloud = TimedCloud(clock, times, end, action="DELETE", final_listed=False)
    assert wait_for_stack(cloud, cloud.stack.id, "DELETE", timeout=600, marker=None,
                          report=SilentReporter(), clock=clock) is None
    cli_requests, cli_lag = cli_wait(end)
    assert clock.t - end <= 1.0 < cli_lag
    assert 1 + cloud.requests() <= cli_requests


def test_the_budget_is_spent_on_polls_that_follow_events() -> None:
    from heatgen.ops.wait import SLOWEST, START, Pace

    pace = Pace(0.0, unit=1.0)
    waits: list[float] = []
    now = 0.0
    # A quiet start (the master booting) saves what the slow polls do not spend; the
    # operation then moves: its first polls come a second apart, then one per BUDGET.
    for moved in (False,) * 6 + (True,) * 12 + (False,) * 6:
        pace.spend(1, now)
        wait = pace.delay(moved, now)
        waits.append(wait)
        now += wait
    assert waits[5] == SLOWEST and waits[6] == waits[7] == 1.0
    assert max(waits[6:18]) <= BUDGET and waits[17] == BUDGET
    assert waits[-1] == SLOWEST
    spent = len(waits)
    assert spent <= START + now / BUDGET + 1
    # Without the quiet start, a moving operation's polls come one per BUDGET from the
    # second on: a wait starts with one poll and the reserve only.
    pace = Pace(0.0, unit=1.0)
    pace.spend(1, 0.0)
    assert pace.delay(True, 0.0) == BUDGET
    assert pace.delay(True, 0.0, urgent=True) == 1.0


def test_cli_model_matches_heatclient_for_a_quiet_operation() -> None:
    # heatclient.common.event_utils.poll_for_events: 5 s polls, a stack read after two polls
    # that found nothing; by name, each a lookup and its redirect.
    requests, lag = cli_wait(30.0)
    assert requests == 2 + 2 * 7 + 2 * 2 + 2 and math.isclose(lag, 0.0)


# --- heatgen events ------------------------------------------------------------------------


THESIS = str(EXAMPLES / "thesis.yaml")


def _resources(out: str) -> list[str]:
    return [line.split()[2].rsplit("/", 1)[-1] for line in out.splitlines()
            if line.startswith("  ")]


@pytest.fixture
def events_cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
               ) -> tuple[FakeCloud, FakeStack, Any]:
    """`heatgen events ...` against a fake grid with 5000 events; (exit code, out, err)."""
    from heatgen.cli import common, main
    from heatgen.cloud.connect import Target
    from heatgen.ops import report

    cloud, stack = _grid_with_history(5000)
    monkeypatch.setattr(common, "open_target", lambda site, os_cloud: Target(cloud, "fake",
                                                                              False))
    monkeypatch.setattr(report, "POLL_INTERVAL", 0.001)

    def run(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = main(["events", THESIS, *args])
        out, err = capsys.readouterr()
        return code, out, err

    return cloud, stack, run


def test_events_prints_the_newest_twenty_oldest_first_from_one_read(
    events_cli: tuple[FakeCloud, FakeStack, Any],
) -> None:
    cloud, stack, run = events_cli
    code, out, err = run()
    assert code == 0, err
    assert _resources(out) == [e.resource for e in stack.events[-20:]]
    assert cloud.calls == [("newest_events", 20)] and cloud.events_read == 20  # by name
    code, out, _ = run("--limit", "3")
    assert _resources(out) == ["r4997", "r4998", "r4999"]
    code, out, _ = run("--limit", "0")
    assert code == 0 and len(out.splitlines()) == 5000


def test_events_follow_goes_on_from_the_newest_event_it_printed(
    events_cli: tuple[FakeCloud, FakeStack, Any],
) -> None:
    cloud, stack, run = events_cli
    cloud._begin(stack, "DELETE")  # the next poll ends it, then the stack is gone
    code, out, err = run("--follow", "--limit", "2")
    assert code == 0, err
    assert _resources(out) == ["r4999", "bergen-grid"]  # its DELETE_IN_PROGRESS
    assert out.rstrip().endswith("stack bergen-grid is gone (deleted)")
    assert ("events", None) not in cloud.calls and cloud.events_read < 10


@pytest.mark.parametrize("bad", ["-1", "ten"])
def test_events_limit_must_be_a_count(events_cli: tuple[FakeCloud, FakeStack, Any],
                                      bad: str) -> None:
    _, _, run = events_cli
    with pytest.raises(SystemExit) as exited:
        run("--limit", bad)
    assert exited.value.code == 2


# --- the OpenStack side of the seam --------------------------------------------------------


class _Raw(dict[str, Any]):
    def to_dict(self) -> dict[str, Any]:
        return dict(self)


class _Stub:
    """heatclient's stacks and events managers, recording the stack path of each call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, dict[str, Any]]] = []

    def get(self, path: str, **kwargs: Any) -> _Raw:
        self.calls.append(("stacks.get", path, kwargs))
        return _Raw(id="abc", stack_name="grid", stack_status="UPDATE_IN_PROGRESS")

    def list(self, path: str, **kwargs: Any) -> list[_Raw]:
        self.calls.append(("events.list", path, kwargs))
        base = "http://heat/v1/p/stacks"
        root = {"rel": "root_stack", "href": f"{base}/grid/abc"}
        return [
            _Raw(id="2", resource_name="port", resource_status="CREATE_COMPLETE",
                 links=[{"rel": "stack", "href": f"{base}/grid-workers-k3v-m1-x7q/m1"}, root]),
            _Raw(id="1", resource_name="workers", resource_status="UPDATE_IN_PROGRESS",
                 links=[{"rel": "stack", "href": f"{base}/grid/abc"}, root]),
        ]


def _bare_cloud(heat: Any, directory: Path, scope: str = "http://heat/v1/p p") -> Any:
    """An OpenStackCloud over stub managers, remembering stack ids in ``directory``."""
    from heatgen.cloud.openstack import OpenStackCloud
    from heatgen.cloud.stackids import StackIds

    cloud = OpenStackCloud.__new__(OpenStackCloud)
    cloud.heat = heat
    cloud._paths = {}
    cloud.stack_ids = StackIds(directory / "stack-ids.json")
    cloud._scope_key = scope
    return cloud


def test_openstack_cloud_reads_a_known_stack_by_name_and_id_and_only_the_newest_events(
    tmp_path: Path,
) -> None:
    from types import SimpleNamespace

    stub = _Stub()
    cloud = _bare_cloud(SimpleNamespace(stacks=stub, events=stub), tmp_path)
    assert cloud.get_stack("grid") is not None
    assert cloud.get_stack("abc") is not None
    newest = cloud.newest_events("abc", 5)
    # heat-api redirects a bare name or id (a second request); name/id it answers at once.
    assert [(name, path) for name, path, _ in stub.calls] == [
        ("stacks.get", "grid"), ("stacks.get", "grid/abc"), ("events.list", "grid/abc")]
    assert stub.calls[-1][2] == {"sort_dir": "desc", "limit": 5, "nested_depth": 2}
    assert newest is not None and [(e.stack, e.resource) for e in newest] == [
        ("grid-workers-k3v-m1-x7q", "port"), ("", "workers")]


class _Paths:
    """heatclient's stacks and events managers over a table: path -> answer (None: 404)."""

    def __init__(self, stacks: dict[str, Any], events: dict[str, Any]) -> None:
        self.stacks, self.event_lists = stacks, events
        self.calls: list[str] = []

    def get(self, path: str, **kwargs: Any) -> _Raw:
        from heatclient import exc

        self.calls.append(f"stacks/{path}")
        if self.stacks.get(path) is None:
            raise exc.HTTPNotFound()
        return _Raw(self.stacks[path])

    def list(self, path: str, **kwargs: Any) -> list[_Raw]:
        from heatclient import exc

        self.calls.append(f"stacks/{path}/events")
        if self.event_lists.get(path) is None:
            raise exc.HTTPNotFound()
        return [_Raw(e) for e in self.event_lists[path]]


def _stack_event(name: str, stack_id: str, status: str) -> dict[str, Any]:
    href = f"http://heat/v1/p/stacks/{name}/{stack_id}"
    return {"id": f"{stack_id}-{status}", "resource_name": name, "resource_status": status,
            "physical_resource_id": stack_id,
            "links": [{"rel": "stack", "href": href}, {"rel": "root_stack", "href": href}]}


def test_a_stack_name_seen_once_is_read_by_its_id_in_the_next_command(tmp_path: Path) -> None:
    from types import SimpleNamespace

    heat = _Paths({"grid": {"id": "abc", "stack_name": "grid", "stack_status": "CREATE_COMPLETE"},
                   "grid/abc": {"id": "abc", "stack_name": "grid",
                                "stack_status": "CREATE_COMPLETE"}},
                  {"grid": [_stack_event("grid", "abc", "CREATE_COMPLETE")],
                   "grid/abc": [_stack_event("grid", "abc", "CREATE_COMPLETE")]})
    first = _bare_cloud(SimpleNamespace(stacks=heat, events=heat), tmp_path)
    assert first.get_stack("grid") is not None
    assert heat.calls == ["stacks/grid"]  # heat-api's lookup (and its redirect)
    # The next command (a new cloud object, the same file) goes to name/id at once, for the
    # stack and for its events.
    later = _bare_cloud(SimpleNamespace(stacks=heat, events=heat), tmp_path)
    assert later.get_stack("grid") is not None
    assert [e.status for e in later.newest_events("grid", 20) or []] == ["CREATE_COMPLETE"]
    assert heat.calls[1:] == ["stacks/grid/abc", "stacks/grid/abc/events"]
    # Ids are remembered per endpoint and project: another cloud's "grid" is asked by name.
    other = _bare_cloud(SimpleNamespace(stacks=heat, events=heat), tmp_path, "http://b/v1/q q")
    assert other.get_stack("grid") is not None and heat.calls[-1] == "stacks/grid"
    mode = (tmp_path / "stack-ids.json").stat().st_mode
    assert mode & 0o077 == 0, oct(mode)


def test_a_remembered_stack_that_was_deleted_is_asked_for_by_name_again(tmp_path: Path) -> None:
    from types import SimpleNamespace

    # "grid" was abc, deleted (heat-api still shows it by name/id), and made again as def.
    old = {"id": "abc", "stack_name": "grid", "stack_status": "DELETE_COMPLETE"}
    new = {"id": "def", "stack_name": "grid", "stack_status": "CREATE_COMPLETE"}
    heat = _Paths({"grid": new, "grid/abc": old, "grid/def": new},
                  {"grid": [_stack_event("grid", "def", "CREATE_COMPLETE")],
                   "grid/abc": [_stack_event("grid", "abc", "DELETE_COMPLETE")],
                   "grid/def": [_stack_event("grid", "def", "CREATE_COMPLETE")]})
    from heatgen.cloud.stackids import StackIds

    ids = StackIds(tmp_path / "stack-ids.json")
    ids.remember("http://heat/v1/p p", "grid", "abc")
    cloud = _bare_cloud(SimpleNamespace(stacks=heat, events=heat), tmp_path)
    newest = cloud.newest_events("grid", 5)
    assert newest is not None and newest[0].physical_id == "def"
    assert heat.calls == ["stacks/grid/abc/events", "stacks/grid/events"]
    # The answer by name taught the new id: the stack is read by it.
    stack = cloud.get_stack("grid")
    assert stack is not None and stack.id == "def" and heat.calls[-1] == "stacks/grid/def"

    ids = StackIds(tmp_path / "stack-ids.json")
    ids.remember("http://heat/v1/p p", "grid", "abc")
    heat.calls.clear()
    stack = _bare_cloud(SimpleNamespace(stacks=heat, events=heat), tmp_path).get_stack("grid")
    assert stack is not None and stack.id == "def"
    assert heat.calls == ["stacks/grid/abc", "stacks/grid"]

    # With nested_depth heat-api lists none of a deleted stack's events (its resources are
    # gone): an empty answer by a remembered id is asked by name again too.
    heat = _Paths({}, {"grid/abc": []})
    ids = StackIds(tmp_path / "stack-ids.json")
    ids.remember("http://heat/v1/p p", "grid", "abc")
    cloud = _bare_cloud(SimpleNamespace(stacks=heat, events=heat), tmp_path)
    assert cloud.newest_events("grid", 5) is None
    assert heat.calls == ["stacks/grid/abc/events", "stacks/grid/events"]

    # Purged (404 by name/id) and no other of the name: not deployed, and forgotten.
    heat = _Paths({}, {})
    ids = StackIds(tmp_path / "stack-ids.json")
    ids.remember("http://heat/v1/p p", "grid", "abc")
    cloud = _bare_cloud(SimpleNamespace(stacks=heat, events=heat), tmp_path)
    assert cloud.get_stack("grid") is None and cloud.newest_events("grid", 5) is None
    assert heat.calls == ["stacks/grid/abc", "stacks/grid", "stacks/grid/events"]
    assert StackIds(tmp_path / "stack-ids.json").get("http://heat/v1/p p", "grid") is None


def test_a_stack_ids_file_others_may_read_or_that_is_broken_is_not_used(tmp_path: Path) -> None:
    from heatgen.cloud.stackids import StackIds

    path = tmp_path / "state" / "stack-ids.json"
    ids = StackIds(path)
    ids.remember("scope", "grid", "abc")
    assert StackIds(path).get("scope", "grid") == "abc"
    assert path.parent.stat().st_mode & 0o077 == 0
    path.chmod(0o644)
    assert StackIds(path).get("scope", "grid") is None
    path.chmod(0o600)
    path.write_text("{not json")
    assert StackIds(path).get("scope", "grid") is None
    broken = StackIds(path)
    broken.remember("scope", "grid", "def")  # a broken file is replaced
    assert StackIds(path).get("scope", "grid") == "def"
    # The newest names are kept, the oldest dropped.
    many = StackIds(path)
    for number in range(70):
        many.remember("scope", f"grid-{number}", str(number))
    kept = StackIds(path)
    assert kept.get("scope", "grid-69") == "69" and kept.get("scope", "grid-0") is None


def test_a_delete_told_to_notice_a_stall_lists_events_on_every_poll() -> None:
    # Polls that only read the stack cannot tell whether events came: with a stall to
    # notice, a delete whose events come every 7 s is not taken for stalled after 8 s.
    from heatgen.ops.wait import Stall

    clock = FakeClock()
    cloud = TimedCloud(clock, _every(7.0, 0.2, 60.0), 62.0, action="DELETE",
                       final_listed=False)
    assert wait_for_stack(cloud, cloud.stack.id, "DELETE", timeout=600, marker=None,
                          report=SilentReporter(), clock=clock, stall=Stall(8.0)) is None


# --- the wait's reads of the stack ---------------------------------------------------------


def test_a_wait_reads_the_whole_stack_once_and_only_its_status_before() -> None:
    # A big grid's stack with its outputs resolved costs Heat a read of every member: the
    # safety-net reads of a long quiet stretch and the end's first read are of the status only.
    clock = FakeClock()
    cloud = TimedCloud(clock, _every(0.5, 0.2, 10.0) + _every(0.5, 60.0, 70.0), 70.2)
    final = wait_for_stack(cloud, cloud.stack.id, "UPDATE", timeout=3600, marker=None,
                           report=SilentReporter(), clock=clock)
    assert final is not None and final.status == "UPDATE_COMPLETE"
    assert cloud.names().count("get_stack") == 1 and cloud.names()[-1] == "get_stack"
    assert cloud.names().count("stack_status") >= 3  # the quiet 50 s
    # The stack's own final event listed: the whole stack is read at once, not its status first.
    assert cloud.names()[-3:] == ["stack_status", "events", "get_stack"] or \
        cloud.names()[-2:] == ["events", "get_stack"]


def test_a_wait_whose_final_read_fails_reads_again_on_the_next_poll() -> None:
    from .fakecloud import FakeTransient

    clock = FakeClock()
    cloud = TimedCloud(clock, [0.5, 1.0], 2.0)
    cloud.fail("get_stack", FakeTransient("read the stack: HTTP 503"))
    notes: list[str] = []

    class Notes(SilentReporter):
        def note(self, message: str) -> None:
            notes.append(message)

    final = wait_for_stack(cloud, cloud.stack.id, "UPDATE", timeout=3600, marker=None,
                           report=Notes(), clock=clock)
    assert final is not None and final.status == "UPDATE_COMPLETE"
    assert cloud.names().count("get_stack") == 2 and len(notes) == 1
    after = cloud.names()[cloud.names().index("get_stack") + 1:]
    assert after[1:] == ["get_stack"]  # on the next poll, not the safety net's 10 s on


def test_the_busy_check_reads_the_status_and_keeps_the_stack_read_before() -> None:
    from heatgen.errors import StackBusy
    from heatgen.ops.busy import refuse_if_busy

    cloud = FakeCloud()
    fake = cloud.add_stack("bergen-grid", worker_desired="3")
    fake.outputs = {"worker_count": 3}
    seen = cloud.get_stack(fake.id)
    assert seen is not None
    cloud.calls.clear()
    kept = refuse_if_busy(cloud, seen, wait_for_idle=False, timeout=10, report=SilentReporter())
    assert cloud.names() == ["stack_status"] and kept == seen
    fake.status = "UPDATE_IN_PROGRESS"
    with pytest.raises(StackBusy, match="UPDATE_IN_PROGRESS"):
        refuse_if_busy(cloud, seen, wait_for_idle=False, timeout=10, report=SilentReporter())


def test_openstack_cloud_reads_a_stack_status_from_the_listing_by_id(tmp_path: Path) -> None:
    from types import SimpleNamespace

    listed: list[dict[str, Any]] = []
    rows = [_Raw(id="other", stack_name="grid2", stack_status="CREATE_COMPLETE"),
            _Raw(id="abc", stack_name="grid", stack_status="UPDATE_IN_PROGRESS",
                 stack_status_reason="Stack UPDATE started")]

    def stacks_list(**kwargs: Any) -> list[_Raw]:
        listed.append(kwargs)
        return rows

    cloud = _bare_cloud(SimpleNamespace(stacks=SimpleNamespace(list=stacks_list)), tmp_path)
    found = cloud.stack_status("abc")
    assert listed == [{"filters": {"id": "abc"}}]
    assert found is not None and (found.name, found.status, found.reason) == (
        "grid", "UPDATE_IN_PROGRESS", "Stack UPDATE started")
    assert cloud._path("abc") == "grid/abc"  # later reads by name/id: one request each
    rows[1] = _Raw(id="abc", stack_name="grid", stack_status="DELETE_COMPLETE")
    assert cloud.stack_status("abc") is None
    rows.clear()
    assert cloud.stack_status("abc") is None


def test_between_listings_of_the_tree_a_wait_lists_only_the_stacks_own_events() -> None:
    # The tree's listing (the group's and every member's stack) is what grows with the grid:
    # it comes every TREE_EVERY seconds; the polls between ask for the top stack's own
    # events, and every event is still reported once, the stack's own final one last.
    from heatgen.ops.wait import TREE_EVERY

    clock = FakeClock()
    cloud = TimedCloud(clock, _every(0.5, 0.2, 150.0), 150.3)
    shown: list[Event] = []

    class Shown(SilentReporter):
        def event(self, event: Event) -> None:
            shown.append(event)

    final = wait_for_stack(cloud, cloud.stack.id, "UPDATE", timeout=3600, marker=None,
                           report=Shown(), clock=clock)
    assert final is not None and final.status == "UPDATE_COMPLETE"
    trees, own = cloud.names().count("events"), cloud.names().count("own_events")
    assert trees <= clock.t / TREE_EVERY + 2 and own >= 1.5 * trees
    assert [e.id for e in shown] == [e.id for e in cloud.stack.events]  # once, in order
    assert shown[-1].physical_id == cloud.stack.id


def test_a_wait_lists_the_members_own_events_and_their_servers_only_before_a_stall() -> None:
    # heat-api loads every stack of a listing's depth: the tree's listings stop at the groups'
    # stacks (each member's own events). Only a poll that would call a stall looks at the
    # members' servers and ports too, and work inside a member there is progress.
    from heatgen.errors import StackStalled
    from heatgen.ops.wait import DEEP, TREE_DEPTH, Stall

    clock = FakeClock()
    cloud = TimedCloud(clock, _every(0.5, 0.2, 30.0), 30.3)
    final = wait_for_stack(cloud, cloud.stack.id, "UPDATE", timeout=3600, marker=None,
                           report=SilentReporter(), clock=clock, stall=Stall(20.0))
    assert final is not None and set(cloud.event_depths) == {0, TREE_DEPTH}

    # One member's server takes 40 s: its member shows nothing in between, its server does.
    clock = FakeClock()
    cloud = TimedCloud(clock, [0.2, 45.0], 45.3)
    member = f"{cloud.stack.name}-workers-k3v-m0-x7q"
    cloud.stack.deep_stacks = {member}
    cloud.script[1:1] = [(t, member, "server") for t in (1.0, 25.0, 44.0)]
    shown: list[Event] = []

    class Shown(SilentReporter):
        def event(self, event: Event) -> None:
            shown.append(event)

    final = wait_for_stack(cloud, cloud.stack.id, "UPDATE", timeout=3600, marker=None,
                           report=Shown(), clock=clock, stall=Stall(20.0))
    assert final is not None and final.status == "UPDATE_COMPLETE"
    assert DEEP in cloud.event_depths and cloud.event_depths.count(DEEP) <= 3
    assert len(shown) == len({e.id for e in shown})  # each once; the servers' where listed
    assert {e.id for e in cloud.stack.events if cloud.stack.depth_of(e) <= TREE_DEPTH} <= {
        e.id for e in shown}

    # Nothing moves anywhere: the stall is told, after a listing of the whole tree.
    clock = FakeClock()
    cloud = TimedCloud(clock, [0.2], 500.0)
    with pytest.raises(StackStalled):
        wait_for_stack(cloud, cloud.stack.id, "UPDATE", timeout=3600, marker=None,
                       report=SilentReporter(), clock=clock, stall=Stall(20.0))
    assert cloud.event_depths[-1] == DEEP and 20.0 <= clock.t < 30.0


def test_a_top_level_event_between_listings_of_the_tree_is_reported_once() -> None:
    clock = FakeClock()
    cloud = TimedCloud(clock, _every(0.5, 0.2, 20.0), 20.3)
    # The group itself, a resource of the top stack, moves in the middle of the update.
    cloud.script.insert(20, (cloud.script[20][0], cloud.stack.name, "workers"))
    shown: list[Event] = []

    class Shown(SilentReporter):
        def event(self, event: Event) -> None:
            shown.append(event)

    wait_for_stack(cloud, cloud.stack.id, "UPDATE", timeout=3600, marker=None,
                   report=Shown(), clock=clock)
    assert sorted(e.id for e in shown) == sorted(e.id for e in cloud.stack.events)
    assert len(shown) == len({e.id for e in shown})
    assert [e.resource for e in shown].count("workers") == 1


def test_openstack_cloud_lists_the_stacks_own_events_without_nested_depth(tmp_path: Path) -> None:
    from types import SimpleNamespace

    stub = _Stub()
    cloud = _bare_cloud(SimpleNamespace(stacks=stub, events=stub), tmp_path)
    cloud._paths = {"abc": "grid/abc"}
    cloud.events("abc", after="7", depth=0)
    cloud.events("abc", after="7", depth=1)
    cloud.events("abc", after="7")
    assert [kwargs for _, _, kwargs in stub.calls] == [
        {"sort_dir": "asc", "marker": "7"},
        {"sort_dir": "asc", "nested_depth": 1, "marker": "7"},
        {"sort_dir": "asc", "nested_depth": 2, "marker": "7"}]


def test_openstack_cloud_reads_a_stack_without_outputs_and_one_output_alone(
    tmp_path: Path,
) -> None:
    from types import SimpleNamespace

    stub = _Stub()
    shown: list[tuple[str, str]] = []

    def output_show(path: str, key: str) -> dict[str, Any]:
        shown.append((path, key))
        return {"output": {"output_key": key, "output_value": 450}}

    cloud = _bare_cloud(SimpleNamespace(stacks=SimpleNamespace(get=stub.get,
                                                               output_show=output_show),
                                        events=stub), tmp_path)
    cloud._paths = {"abc": "grid/abc"}
    found = cloud.get_stack("abc", outputs=False)
    assert found is not None and found.outputs == {}
    assert stub.calls == [("stacks.get", "grid/abc", {"resolve_outputs": False})]
    assert cloud.stack_output("abc", "worker_count") == 450
    assert shown == [("grid/abc", "worker_count")]
    cloud.newest_events("abc", 1, depth=1)
    assert stub.calls[-1][2] == {"sort_dir": "desc", "limit": 1, "nested_depth": 1}
