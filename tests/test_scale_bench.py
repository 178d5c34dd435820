"""The tables of bench/scale.py from saved runs (no sandbox)."""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

from scale import (  # noqa: E402
    OPERATIONS,
    TOOLS,
    Cost,
    Counter,
    Settler,
    load,
    measure_size,
    medians,
    save,
    tool_order,
    tree_cpu_seconds,
)

from tests.faultproxy import FaultProxy  # noqa: E402


def _runs(size: int, seconds: list[float]) -> dict[tuple[str, str], list[Cost]]:
    """Each operation and tool, one cost per run: ``seconds`` scaled by the grid's size."""
    return {
        (op, tool): [Cost(s * size, requests=size + i, received=1024 * size, lag=1.0 + i,
                          kinds=(("GET stack/events", size, 1024 * size, 0.5 * size),),
                          span=s * size - 2.0)
                     for i, s in enumerate(seconds)]
        for op in OPERATIONS for tool in TOOLS
    }


def test_saved_runs_load_back_and_merge_by_size(tmp_path: Path) -> None:
    first, second = tmp_path / "a.json", tmp_path / "b.json"
    save(first, "thesis.yaml", {10: _runs(10, [1.0, 3.0])})
    save(second, "thesis.yaml", {10: _runs(10, [2.0]), 300: _runs(300, [1.0, 2.0, 4.0])})
    site, results = load([first, second])
    assert site == "thesis.yaml"
    assert sorted(results) == [10, 300]
    assert [c.seconds for c in results[10][("scale", "heatgen")]] == [10.0, 30.0, 20.0]
    assert results[10][("deploy", "openstack")][0].kinds == (
        ("GET stack/events", 10, 10240, 5.0),)
    costs = medians(results[300])
    assert costs[("deploy", "heatgen")].seconds == 600.0
    assert costs[("deploy", "heatgen")].own == 2.0  # median wall time - median span


def test_tables_print_medians_and_growth_without_a_sandbox(tmp_path: Path) -> None:
    saved = tmp_path / "runs.json"
    save(saved, "thesis.yaml", {10: _runs(10, [1.0, 2.0, 3.0]), 300: _runs(300, [1.0, 2.0])})
    shown = subprocess.run([sys.executable, str(BENCH / "scale.py"), "--tables", str(saved)],
                           capture_output=True, text=True, check=True).stdout
    assert "10 workers (scale to 15); heatgen / openstack CLI, 3 runs, medians" in shown
    assert "| deploy | 20.0 | 20.0 | 1.00 | 11 / 11 | 1.00 | 10 / 10 | 1.00 | 2.0 / 2.0 |" in shown
    assert "growth from 10 to 300 workers (30x the grid)" in shown
    # 300 workers: median of 300 and 600 s; 10 workers: 20 s
    assert "| scale | heatgen | 22.5x | 27.3x | 30.0x |" in shown


def test_a_file_that_is_not_saved_runs_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"sizes": {}}')
    done = subprocess.run([sys.executable, str(BENCH / "scale.py"), "--tables", str(bad)],
                          capture_output=True, text=True)
    assert done.returncode == 1
    assert f"error: {bad}: not a file of `bench/scale.py --save`" in done.stderr
    assert "Traceback" not in done.stderr


def test_runs_saved_before_answer_times_were_measured_still_load(tmp_path: Path) -> None:
    saved = tmp_path / "old.json"
    save(saved, "thesis.yaml", {10: _runs(10, [1.0])})
    document = json.loads(saved.read_text())
    for values in document["sizes"]["10"].values():
        for value in values:
            value["kinds"] = [kind[:3] for kind in value["kinds"]]
    saved.write_text(json.dumps(document))
    _, results = load([saved])
    assert results[10][("scale", "heatgen")][0].kinds == (("GET stack/events", 10, 10240, None),)
    shown = subprocess.run(
        [sys.executable, str(BENCH / "scale.py"), "--tables", str(saved), "--by-kind"],
        capture_output=True, text=True, check=True).stdout
    assert "| scale | heatgen | `GET stack/events` | 10 | 10 | - |" in shown


class _Slow(BaseHTTPRequestHandler):
    """An upstream that takes 0.3 s to answer a PATCH and answers a GET at once."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        if self.command == "PATCH":
            time.sleep(0.3)
        body = b'{"ok": true}'
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_PATCH = _answer


def test_the_proxies_time_each_answer_and_the_kinds_add_them_up() -> None:
    upstream = ThreadingHTTPServer(("127.0.0.1", 0), _Slow)
    serving = threading.Thread(target=upstream.serve_forever, kwargs={"poll_interval": 0.05},
                               daemon=True)
    serving.start()
    keystone = FaultProxy(upstream.server_address[1], name="keystone")
    heat = FaultProxy(upstream.server_address[1], name="heat")
    try:
        keystone.start()
        heat.start()
        counter = Counter(keystone, heat)
        counter.mark()
        stack = "/v1/p/stacks/grid/0b7c2a1e-5f3d-4c2b-9a8e-1d2c3b4a5f6e"
        for method in ("PATCH", "GET", "GET"):
            connection = http.client.HTTPConnection("127.0.0.1", heat.port, timeout=10)
            connection.request(method, stack, body=b"{}" if method == "PATCH" else None)
            assert connection.getresponse().read() == b'{"ok": true}'
            connection.close()
        kinds = counter.kinds()
        assert sorted(kinds) == ["GET stack", "PATCH stack"]
        patches, patched, patch_seconds = kinds["PATCH stack"]
        gets, _, get_seconds = kinds["GET stack"]
        assert (patches, patched, gets) == (1, 12, 2)
        assert 0.3 <= patch_seconds < 5.0
        assert get_seconds < patch_seconds
        assert counter.since()[0] == 3
        # The sandbox's master player's reads inside `heatgen deploy` count for neither tool;
        # the kinds still show them.
        counter.mark()
        for handle in ("master_wait_handle", "worker_token_handle", "master_server"):
            connection = http.client.HTTPConnection("127.0.0.1", heat.port, timeout=10)
            connection.request("GET", f"{stack}/resources/{handle}?with_attr=endpoint")
            assert connection.getresponse().read() == b'{"ok": true}'
            connection.close()
        assert counter.since() == (1, 12)
        assert sum(count for count, _, _ in counter.kinds().values()) == 3
    finally:
        heat.stop()
        keystone.stop()
        upstream.shutdown()
        upstream.server_close()
        serving.join(timeout=5)


class _Machine:
    """A clock, a sleep that advances it, and processes whose CPU use per second is scripted."""

    def __init__(self, busy: list[float]) -> None:
        self.now, self.used, self.busy = 0.0, 0.0, list(busy)

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        share = self.busy.pop(0) if self.busy else 0.0
        self.now += seconds
        self.used += share * seconds

    def cpu(self) -> float:
        return self.used


def test_the_settler_waits_for_two_quiet_seconds_in_a_row() -> None:
    machine = _Machine([0.9, 0.02, 0.6, 0.01, 0.0, 0.8])
    settler = Settler(machine.cpu, clock=machine.clock, sleep=machine.sleep)
    assert settler.settle() == (5.0, True)  # busy, quiet, busy, then quiet twice
    assert machine.busy == [0.8]  # no window looked at after the second quiet one


def test_the_settler_gives_up_on_a_sandbox_that_stays_busy() -> None:
    machine = _Machine([0.5] * 100)
    settler = Settler(machine.cpu, longest=10.0, clock=machine.clock, sleep=machine.sleep)
    assert settler.settle() == (10.0, False)


def test_the_tools_take_turns_going_first() -> None:
    assert [tool_order(i)[0] for i in range(4)] == ["heatgen", "openstack"] * 2
    assert all(sorted(tool_order(i)) == sorted(TOOLS) for i in range(4))


def test_the_cpu_of_a_process_and_its_children_is_read_from_proc() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time\nend = time.process_time() + 0.4\n"
                              "while time.process_time() < end: pass\ntime.sleep(30)"])
    try:
        deadline = time.monotonic() + 20
        while tree_cpu_seconds([os.getpid()]) - time.process_time() < 0.3:
            assert time.monotonic() < deadline, "the child's CPU time was never counted"
            time.sleep(0.05)
        assert 0.3 <= tree_cpu_seconds([child.pid]) < 5
        assert tree_cpu_seconds([]) == 0.0
    finally:
        child.kill()
        child.wait()


class _Quiet:
    def settle(self) -> tuple[float, bool]:
        return 0.0, True


class _NoProxies:
    def mark(self) -> None: ...

    def since(self) -> tuple[int, int]:
        return 3, 1024

    def kinds(self) -> dict[str, tuple[int, int, float]]:
        return {"GET stack": (3, 1024, 0.1)}


class _Player:
    def __init__(self, *args: object, **kwargs: object) -> None:
        self.done = threading.Event()

    def start(self) -> None: ...


class _NoStacks:
    def get_stack(self, name: str) -> None:
        return None


def test_a_failed_command_keeps_the_runs_before_it(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Each completed run is handed on (saved) as it ends; the failing run is not."""
    import scale

    calls: list[list[str]] = []

    def run(argv: list[str], env: dict[str, str]) -> None:
        calls.append(argv)
        if "delete" in argv and sum("delete" in a for a in calls) == 3:  # run 2's first delete
            raise RuntimeError("delete failed")

    monkeypatch.setattr(scale, "run", run)
    monkeypatch.setattr(scale, "MasterPlayer", _Player)
    monkeypatch.setattr(scale, "heat_window", lambda *args: None)
    handed: list[int] = []
    saved = tmp_path / "runs.json"

    def on_run(costs: dict[tuple[str, str], list[Cost]]) -> None:
        handed.append(len(costs[("delete", "heatgen")]))
        save(saved, "thesis.yaml", {10: costs})

    source = Path(__file__).resolve().parents[1] / "examples" / "thesis.yaml"
    try:
        measure_size(10, 3, source, tmp_path, {}, _NoProxies(), _NoStacks(), None,
                     _Quiet(), on_run=on_run)
    except RuntimeError as error:
        assert str(error) == "delete failed"
    else:
        raise AssertionError("the failing delete was not raised")
    assert handed == [1]
    _, results = load([saved])
    assert {len(values) for values in results[10].values()} == {1}
    assert sorted(results[10]) == sorted((op, tool) for op in OPERATIONS for tool in TOOLS)


def test_a_run_numbered_apart_takes_its_turn(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """`--first-run 2` measures run 2 alone: the CLI goes first, on stacks named for run 2."""
    import scale

    calls: list[list[str]] = []
    monkeypatch.setattr(scale, "run", lambda argv, env: calls.append(argv))
    monkeypatch.setattr(scale, "MasterPlayer", _Player)
    monkeypatch.setattr(scale, "heat_window", lambda *args: None)
    source = Path(__file__).resolve().parents[1] / "examples" / "thesis.yaml"
    costs = measure_size(10, 1, source, tmp_path, {}, _NoProxies(), _NoStacks(), None,
                         _Quiet(), first=1)
    assert {len(values) for values in costs.values()} == {1}
    deploys = [argv for argv in calls if "deploy" in argv or "create" in argv]
    assert [Path(argv[0]).name for argv in deploys] == ["openstack", "heatgen"]
    assert deploys[0][-1] == "scale-op-10-1"
    assert any(arg.endswith("scale-he-10-1.yaml") for arg in deploys[1])
