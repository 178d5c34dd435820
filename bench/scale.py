"""heatgen against the `openstack` CLI on big grids: what each operation costs as the grid grows.

    python bench/scale.py [--sizes 10,100,300] [--runs 1] [--first-run 1] [--state-dir DIR]
                          [--site SITE.yaml] [--by-kind] [--save FILE]
    python bench/scale.py --tables FILE [FILE ...] [--by-kind]

Needs the `openstack` CLI: `pip install -e '.[sandbox,bench]'`.

For each size N, on the sandbox, a thesis-shaped site (examples/thesis.yaml with telemetry
none, N workers, max 2 N) gets the same operations from both tools, one after the other on
two stacks of their own: deploy N workers, scale to 1.5 N, status, events (the last 20),
outputs, delete. The tools take turns going first (heatgen in odd runs, the CLI in even
ones), and before each command the bench waits until the sandbox's processes are idle (under
5 % of a core for 2 s in a row, at most 120 s), so that neither command is timed while Heat
still works on the other's. What the CLI runs for each:

    deploy   openstack stack create --wait -t grid.yaml -e grid-env.yaml -e sandbox.yaml NAME
             (rendered by `heatgen render` beforehand; a thread plays the master's signal
             over its own connection, as heatgen does itself, so it is not counted)
    scale    openstack stack update --existing --wait --parameter worker_desired=M NAME
    status   openstack stack show NAME; openstack stack resource list --nested-depth 1 NAME;
             openstack stack event list NAME --nested-depth 2 --sort event_time:desc --limit 5
             (what `heatgen status` shows: status, outputs, members by state, last events)
    events   openstack stack event list NAME --nested-depth 2 --sort event_time:desc --limit 20
    outputs  openstack stack output show --all NAME
    delete   openstack stack delete --wait -y NAME

Both tools reach Keystone and heat-api through counting proxies (tests/faultproxy.py, no
faults): Keystone's answers are rewritten so that its catalog names the heat-api proxy, since
the CLI takes heat-api's address from the catalog only. For each command the table shows its
wall time, its HTTP requests (Keystone's included) and the bytes of the answers it received,
and for the waits how long after Heat's own final event the command ended (Heat stamps events
to the second: +-1 s). Neither tool's master player is counted: heatgen's deploy reads each
wait handle's endpoint and token through the proxy (four requests; the kinds table shows
them), the CLI's player uses a connection of its own, and on a cloud the master signals by
itself. A second table splits each wait into Heat's own span (the stack's first event of the
operation to its final one) and what the tool added beyond it (start-up, reads before the
change, noticing the end). With --by-kind, the waits' requests and bytes by what they asked
(the last run of each size). Then, for each figure, how it grows from the smallest size to
the largest.

--save FILE keeps every run's figures; --tables prints the tables again from such files, the
runs of one size from several files merged (sizes measured on different days side by side,
the growth table included; a run measured apart takes its turn with --first-run: `--runs 1
--first-run 2` has the CLI go first). Without --state-dir a sandbox is started in a temporary
directory on free ports and removed at the end. Heat's limit of resources per stack must
allow the largest grid (3 per worker).
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import json
import math
import os
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench_sandbox import bench_sandbox  # noqa: E402  (bench/ is this script's directory)
from compare_cli import MasterPlayer  # noqa: E402

from heatgen import contract  # noqa: E402
from tests.faultproxy import FaultProxy, write_clouds_yaml  # noqa: E402

BIN = Path(sys.executable).parent
HEATGEN = [str(BIN / "heatgen")]
OPENSTACK = [str(BIN / "openstack")]
OPERATIONS = ("deploy", "scale", "status", "events", "outputs", "delete")
WAITS = ("deploy", "scale", "delete")
TOOLS = ("heatgen", "openstack")
COMMAND_TIMEOUT = 3600
# What the sandbox's master player asks, inside `heatgen deploy` (heatgen.sandbox.master): the
# endpoint and token of each wait handle. The kinds table still shows them.
PLAYER_KINDS = frozenset(f"GET stack/resources/{handle}?with_attr"
                         for handle in (contract.WAIT_HANDLE, contract.TOKEN_HANDLE))
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@dataclass(frozen=True)
class Cost:
    """What one operation of one tool cost."""

    seconds: float
    requests: int
    received: int  # answer bytes
    lag: float | None = None  # seconds after Heat's final event
    # (what was asked, requests, bytes, seconds heat-api or Keystone took to answer them;
    # None in runs saved before that was measured)
    kinds: tuple[tuple[str, int, int, float | None], ...] = ()
    span: float | None = None  # Heat's own time: the stack's first event to its final one

    @property
    def own(self) -> float | None:
        """The tool's own share: its wall time beyond Heat's span."""
        return None if self.span is None else self.seconds - self.span


class Counter:
    """The Keystone and heat-api proxies, and what went through them since ``mark``."""

    def __init__(self, keystone: FaultProxy, heat: FaultProxy) -> None:
        self.proxies = (keystone, heat)
        self.marks = (0, 0)

    def mark(self) -> None:
        self.marks = (len(self.proxies[0].records), len(self.proxies[1].records))

    def since(self) -> tuple[int, int]:
        """Requests and answer bytes since ``mark``, the sandbox's master player's left out:
        on a cloud the master signals its own wait conditions, and the CLI's player is not
        counted either."""
        records = [r for name, r in self.records()
                   if kind(name, r.method, r.path) not in PLAYER_KINDS]
        return len(records), sum(r.received for r in records)

    def records(self) -> list[tuple[str, Any]]:
        return [(proxy.name, r) for proxy, mark in zip(self.proxies, self.marks, strict=True)
                for r in proxy.records[mark:]]

    def kinds(self) -> dict[str, tuple[int, int, float]]:
        """Requests, answer bytes and the seconds upstream took to answer them, since
        ``mark``, by what was asked (see :func:`kind`)."""
        out: dict[str, tuple[int, int, float]] = {}
        for name, record in self.records():
            key = kind(name, record.method, record.path)
            count, received, seconds = out.get(key, (0, 0, 0.0))
            out[key] = (count + 1, received + record.received, seconds + record.seconds)
        return out


def tree_cpu_seconds(roots: list[int]) -> float:
    """CPU seconds (user + system, every thread) used so far by ``roots`` and their children
    (PostgreSQL runs one child per connection); processes that are gone count nothing."""
    ticks = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        pid, ppid = int(stat.parent.name), int(fields[1])
        if pid in roots or ppid in roots:
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


class Settler:
    """Waits, before each timed command, until the sandbox's processes are idle: Heat may
    still be finishing the previous command's work (the other tool's, on its own stack), and
    that work would otherwise be counted in the next command's time.

    Idle: under ``quiet`` of one core over each of ``windows`` windows of ``window`` seconds
    in a row; gives up after ``longest`` seconds. ``cpu`` reads the processes' CPU seconds."""

    def __init__(self, cpu: Any, *, quiet: float = 0.05, window: float = 1.0, windows: int = 2,
                 longest: float = 120.0, clock: Any = time.monotonic,
                 sleep: Any = time.sleep) -> None:
        self.cpu, self.quiet, self.window, self.windows = cpu, quiet, window, windows
        self.longest, self.clock, self.sleep = longest, clock, sleep

    def settle(self) -> tuple[float, bool]:
        """Seconds waited, and whether the processes did go idle in that time."""
        started = self.clock()
        calm, used = 0, self.cpu()
        while calm < self.windows:
            if self.clock() - started >= self.longest:
                return self.clock() - started, False
            self.sleep(self.window)
            now = self.cpu()
            calm = calm + 1 if now - used < self.quiet * self.window else 0
            used = now
        return self.clock() - started, True


def sandbox_cpu(config: Any) -> Any:
    """A reader of the CPU seconds the sandbox's processes (Heat, Keystone, PostgreSQL) used."""
    from heatgen.sandbox import control

    roots = [p.pid for p in control.status(config, probe=False).processes if p.pid is not None]
    return lambda: tree_cpu_seconds(roots)


def tool_order(index: int) -> tuple[str, ...]:
    """Which tool goes first in run ``index``: each in turn, so that neither always follows the
    other's command."""
    return TOOLS if index % 2 == 0 else TOOLS[::-1]


def kind(proxy: str, method: str, path: str) -> str:
    """What a request asked, without names, ids or values: ``GET stack/events?limit,marker``."""
    if proxy == "keystone":
        return f"keystone {method}"
    route, _, query = path.partition("?")
    parts = [p for p in route.split("/") if p]
    where = parts[parts.index("stacks") + 1:] if "stacks" in parts else parts[-1:]
    # stacks/NAME/ID[/rest]: the rest names the sub-resource (ids left out); stacks/NAME[/rest]
    # without the id is a lookup that heat-api redirects
    by_id = len(where) >= 2 and UUID.fullmatch(where[1]) is not None
    rest = [p for p in where[2 if by_id else 1:] if not UUID.fullmatch(p)]
    if not where:
        target = "stacks"
    elif where[0] in ("validate", "preview"):
        target = where[0]
    else:
        target = ("stack/" if by_id else "stack by name/") + "/".join(rest)
    keys = sorted({item.split("=")[0] for item in query.split("&") if item})
    return f"{method} {target.rstrip('/')}" + (f"?{','.join(keys)}" if keys else "")


def site_for(source: Path, name: str, size: int, directory: Path) -> Path:
    data = yaml.safe_load(source.read_text(encoding="utf-8"))
    data["heat_template_version"] = str(data["heat_template_version"])
    data["site"] = name
    data["autoscaling"]["telemetry"] = "none"
    data["workers"].update(min=1, max=2 * size, desired=size)
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def commands(tool: str, op: str, site: Path, name: str, rendered: Path, target: int
             ) -> list[list[str]]:
    cloud = ["--os-cloud", "heatgen-sandbox"]
    if tool == "heatgen":
        args = {
            "deploy": ["deploy", str(site)],
            "scale": ["scale", str(site), "--workers", str(target)],
            "status": ["status", str(site)],
            "events": ["events", str(site)],
            "outputs": ["outputs", str(site)],
            "delete": ["delete", str(site), "--yes"],
        }[op]
        return [[*HEATGEN, *args, *cloud]]
    stack = ["stack"]
    newest = ["--nested-depth", "2", "--sort", "event_time:desc"]
    runs = {
        "deploy": [[*stack, "create", "--wait", "-t", str(rendered / "grid.yaml"),
                    "-e", str(rendered / "grid-env.yaml"),
                    "-e", str(REPO / "environments" / "sandbox.yaml"), name]],
        "scale": [[*stack, "update", "--existing", "--wait", "--parameter",
                   f"worker_desired={target}", name]],
        "status": [[*stack, "show", name], [*stack, "resource", "list", "--nested-depth", "1",
                                            name],
                   [*stack, "event", "list", name, *newest, "--limit", "5"]],
        "events": [[*stack, "event", "list", name, *newest, "--limit", "20"]],
        "outputs": [[*stack, "output", "show", "--all", name]],
        "delete": [[*stack, "delete", "--wait", "-y", name]],
    }[op]
    return [[*OPENSTACK, *cloud, *run] for run in runs]


def run(argv: list[str], env: dict[str, str]) -> None:
    done = subprocess.run(argv, env=env, capture_output=True, text=True,
                          timeout=COMMAND_TIMEOUT, cwd=REPO)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:4])}... failed ({done.returncode}):\n"
                           f"{done.stderr[-2000:]}")


def _epoch(stamp: str) -> float:
    return dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def heat_window(cloud: Any, heat: Any, name: str, op: str) -> tuple[float, float] | None:
    """When Heat began and ended the operation: the stack's own newest ``<ACTION>_IN_PROGRESS``
    event and its final one after it (a deleted stack's own events are still listed by
    ``name/id``; its end is its deletion time)."""
    action = {"deploy": "CREATE", "scale": "UPDATE", "delete": "DELETE"}[op]
    if op == "delete":
        for stack in heat.stacks.list(show_deleted=True, filters={"name": name}):
            if stack.stack_status == "DELETE_COMPLETE" and stack.deletion_time:
                own = [e for e in heat.events.list(f"{name}/{stack.id}", sort_dir="asc")
                       if e.physical_resource_id == stack.id]
                began = [_epoch(e.event_time) for e in own
                         if e.resource_status == "DELETE_IN_PROGRESS"]
                end = _epoch(stack.deletion_time)
                return (began[-1] if began else end), end
        return None
    stack = cloud.get_stack(name)
    if stack is None:
        return None
    own = [e for e in cloud.events(stack.id, after=None, depth=0) or []
           if e.physical_id == stack.id]
    starts = [i for i, e in enumerate(own) if e.status == f"{action}_IN_PROGRESS"]
    if not starts:
        return None
    ended = [e for e in own[starts[-1]:] if e.status in (f"{action}_COMPLETE", f"{action}_FAILED")]
    if not ended:
        return None
    return _epoch(own[starts[-1]].time), _epoch(ended[0].time)


Runs = dict[tuple[str, str], list[Cost]]  # (operation, tool): each run's cost


def measure_size(size: int, runs: int, source: Path, work: Path, env: dict[str, str],
                 counter: Counter, cloud: Any, heat: Any, settler: Settler,
                 on_run: Callable[[Runs], None] = lambda costs: None, first: int = 0) -> Runs:
    """Every run's costs; after each run that completed, ``on_run`` gets the runs so far (a
    command that fails ends the measurement without its run). Runs are numbered from
    ``first`` (0-based), which sets who goes first in each."""
    target = size + math.ceil(size / 2)
    costs: Runs = {}
    for index in range(first, first + runs):
        this_run: Runs = {}
        player = None
        names = {tool: f"scale-{tool[:2]}-{size}-{index}" for tool in TOOLS}
        sites = {tool: site_for(source, names[tool], size, work) for tool in TOOLS}
        rendered = work / names["openstack"]
        run([*HEATGEN, "render", str(sites["openstack"]), "-o", str(rendered)], env)
        try:
            for op in OPERATIONS:
                for tool in tool_order(index):
                    waited, idle = settler.settle()
                    if tool == "openstack" and op == "deploy":
                        player = MasterPlayer(cloud, names[tool], timeout=600)
                        player.start()
                    counter.mark()
                    started = time.monotonic()
                    for argv in commands(tool, op, sites[tool], names[tool], rendered, target):
                        run(argv, env)
                    seconds = time.monotonic() - started
                    ended = time.time()
                    requests, received = counter.since()
                    kinds = tuple((k, n, b, round(t, 3))
                                  for k, (n, b, t) in sorted(counter.kinds().items()))
                    if player is not None:
                        player.done.set()
                        player = None
                    lag = span = None
                    if op in WAITS:
                        window = heat_window(cloud, heat, names[tool], op)
                        if window is not None:
                            lag, span = ended - window[1], window[1] - window[0]
                    this_run.setdefault((op, tool), []).append(
                        Cost(seconds, requests, received, lag, kinds, span))
                    print(f"  {size:>4} workers, run {index + 1}: {tool:<9} {op:<7} "
                          f"{seconds:7.1f} s {requests:5} requests (after "
                          f"{waited:.0f} s for an idle sandbox{'' if idle else ', not idle'})",
                          flush=True)
        finally:
            if player is not None:
                player.done.set()
            for name in names.values():
                stack = cloud.get_stack(name)
                if stack is not None and not stack.status.startswith("DELETE"):
                    cloud.delete_stack(stack.id)
        for key, values in this_run.items():
            costs.setdefault(key, []).extend(values)
        on_run(costs)
    return costs


def medians(runs: Runs) -> dict[tuple[str, str], Cost]:
    return {key: median_cost(values) for key, values in runs.items()}


def save(path: Path, site: str, results: dict[int, Runs]) -> None:
    """Every run's figures as JSON, for ``--tables`` to print again or merge with others."""
    document = {"site": site, "sizes": {
        str(size): {f"{op} {tool}": [asdict(cost) for cost in values]
                    for (op, tool), values in sorted(runs.items())}
        for size, runs in sorted(results.items())}}
    path.write_text(json.dumps(document, indent=1) + "\n")


def load(paths: list[Path]) -> tuple[str, dict[int, Runs]]:
    """The runs of every file given to ``--tables``; the runs of a size in several files add
    up (the last file's kinds are the ones shown)."""
    sites: list[str] = []
    results: dict[int, Runs] = {}
    for path in paths:
        try:
            document = json.loads(path.read_text())
            sites.append(str(document["site"]))
            for size, runs in document["sizes"].items():
                merged = results.setdefault(int(size), {})
                for key, values in runs.items():
                    op, tool = key.split(" ")
                    merged.setdefault((op, tool), []).extend(
                        Cost(**{**value, "kinds": tuple(_kind(k) for k in value["kinds"])})
                        for value in values)
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise SystemExit(f"error: {path}: not a file of `bench/scale.py --save` "
                             f"({type(error).__name__}: {error})") from None
    for size, runs in results.items():
        missing = [f"{op} {tool}" for op in OPERATIONS for tool in TOOLS
                   if not runs.get((op, tool))]
        if missing:
            raise SystemExit(f"error: {size} workers: no figures for {', '.join(missing)}")
    return " + ".join(dict.fromkeys(sites)), results


def _kind(saved: list[Any]) -> tuple[str, int, int, float | None]:
    """One saved (what, requests, bytes[, seconds]): runs saved before the seconds were
    measured have three."""
    what, count, received, *seconds = saved
    return (str(what), int(count), int(received),
            None if not seconds or seconds[0] is None else float(seconds[0]))


def print_tables(site: str, results: dict[int, Runs], by_kind: bool) -> None:
    print(f"\nheatgen vs openstack CLI on the sandbox, site {site} (telemetry none, max 2 N)")
    for size in sorted(results):
        costs = medians(results[size])
        runs = max(len(values) for values in results[size].values())
        size_table(size, runs, costs)
        share_table(size, costs)
        if by_kind:
            kinds_table(size, costs)
    if len(results) > 1:
        growth_table({size: medians(runs) for size, runs in results.items()})


def median_cost(values: list[Cost]) -> Cost:
    lags = [v.lag for v in values if v.lag is not None]
    spans = [v.span for v in values if v.span is not None]
    return Cost(statistics.median(v.seconds for v in values),
                int(statistics.median(v.requests for v in values)),
                int(statistics.median(v.received for v in values)),
                statistics.median(lags) if lags else None,
                values[-1].kinds,
                statistics.median(spans) if spans else None)


def _lag(cost: Cost) -> str:
    return f"{cost.lag:.1f}" if cost.lag is not None else "-"


def _s(value: float | None) -> str:
    return f"{value:.1f}" if value is not None else "-"


def share_table(size: int, costs: dict[tuple[str, str], Cost]) -> None:
    """Heat's own time in each wait, and what each tool added to it."""
    print(f"\n{size} workers: Heat's own time (the stack's first event of the operation to "
          "its final one) and each tool's share beyond it, s")
    print("| operation | Heat's span hg / os | own share hg / os | ratio |")
    print("| --- | --- | --- | --- |")
    for op in WAITS:
        hg, osc = costs[(op, "heatgen")], costs[(op, "openstack")]
        ratio = f"{hg.own / osc.own:.2f}" if hg.own is not None and osc.own else "-"
        print(f"| {op} | {_s(hg.span)} / {_s(osc.span)} | {_s(hg.own)} / {_s(osc.own)} "
              f"| {ratio} |")


def size_table(size: int, runs: int, costs: dict[tuple[str, str], Cost]) -> None:
    target = size + math.ceil(size / 2)
    print(f"\n{size} workers (scale to {target}); heatgen / openstack CLI, "
          f"{runs} run{'s' if runs > 1 else ''}{', medians' if runs > 1 else ''}")
    print("| operation | heatgen s | openstack s | ratio | requests hg / os | ratio "
          "| KiB received hg / os | ratio | after Heat's end hg / os s |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for op in OPERATIONS:
        hg, osc = costs[(op, "heatgen")], costs[(op, "openstack")]
        lag = f"{_lag(hg)} / {_lag(osc)}" if op in WAITS else "-"
        print(f"| {op} | {hg.seconds:.1f} | {osc.seconds:.1f} | {hg.seconds / osc.seconds:.2f} "
              f"| {hg.requests} / {osc.requests} | {hg.requests / osc.requests:.2f} "
              f"| {hg.received / 1024:.0f} / {osc.received / 1024:.0f} "
              f"| {hg.received / max(osc.received, 1):.2f} | {lag} |")


def kinds_table(size: int, costs: dict[tuple[str, str], Cost]) -> None:
    """The waits' requests by what they asked (the last run of the size)."""
    print(f"\n{size} workers: the waits' requests by what was asked (last run): "
          "requests, KiB received, seconds Keystone or heat-api took to answer them")
    print("| operation | tool | asked | requests | KiB | s answering |")
    print("| --- | --- | --- | --- | --- | --- |")
    for op in WAITS:
        for tool in TOOLS:
            for what, count, received, seconds in costs[(op, tool)].kinds:
                print(f"| {op} | {tool} | `{what}` | {count} | {received / 1024:.0f} "
                      f"| {'-' if seconds is None else f'{seconds:.2f}'} |")


def growth_table(results: dict[int, dict[tuple[str, str], Cost]]) -> None:
    small, large = min(results), max(results)
    print(f"\ngrowth from {small} to {large} workers ({large / small:.0f}x the grid): "
          "figure at the largest size / at the smallest")
    print("| operation | tool | wall time | requests | bytes received |")
    print("| --- | --- | --- | --- | --- |")
    for op in OPERATIONS:
        for tool in TOOLS:
            a, b = results[small][(op, tool)], results[large][(op, tool)]
            print(f"| {op} | {tool} | {b.seconds / a.seconds:.1f}x | "
                  f"{b.requests / a.requests:.1f}x | {b.received / max(a.received, 1):.1f}x |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10,100,300",
                        help="worker counts, comma-separated (default 10,100,300)")
    parser.add_argument("--runs", type=int, default=1, help="runs per size (default 1)")
    parser.add_argument("--first-run", type=int, default=1, metavar="K",
                        help="number the runs from K (default 1): the tools' turns follow the "
                        "number, so --runs 1 --first-run 2 has the CLI go first")
    parser.add_argument("--state-dir", type=Path, help="a running sandbox to use")
    parser.add_argument("--site", type=Path, default=REPO / "examples" / "thesis.yaml")
    parser.add_argument("--by-kind", action="store_true",
                        help="also list the waits' requests by what they asked")
    parser.add_argument("--save", type=Path, metavar="FILE",
                        help="also write every run's figures to FILE (JSON)")
    parser.add_argument("--tables", type=Path, nargs="+", metavar="FILE",
                        help="print the tables of saved runs (several files: their runs "
                        "merged, sizes side by side) and exit; no sandbox")
    args = parser.parse_args()
    if args.tables:
        site, results = load(args.tables)
        print_tables(site, results, args.by_kind)
        return 0
    try:
        sizes = sorted({int(size) for size in args.sizes.split(",")})
    except ValueError:
        parser.error(f"--sizes: worker counts such as 10,100,300 (got {args.sizes!r})")
    if not sizes or sizes[0] < 1:
        parser.error(f"--sizes: each size must be at least 1 (got {args.sizes!r})")
    if args.first_run < 1:
        parser.error(f"--first-run: a run number, 1 or more (got {args.first_run})")

    with bench_sandbox(args.state_dir, "heatgen-scale-", announce=True) as (config, work):
        return measure(args, sizes, config, work)


def measure(args: argparse.Namespace, sizes: list[int], config: Any, work: Path) -> int:
    from heatclient import client as heat_client

    from heatgen.sandbox import control
    from heatgen.sandbox.hooks import open_sandbox

    keystone = FaultProxy(config.keystone_port, name="keystone").start()
    heat_proxy = FaultProxy(config.heat_port, name="heat").start()
    try:
        keystone.rewrite = [
            (f"127.0.0.1:{port}{end}".encode(), f"127.0.0.1:{proxy.port}{end}".encode())
            for port, proxy in ((config.heat_port, heat_proxy),
                                (config.keystone_port, keystone))
            for end in ("/", '"')
        ]
        entry = control.clouds_entry(config)
        entry["auth"] = {**entry["auth"], "auth_url": f"{keystone.url}/v3"}
        clouds = write_clouds_yaml(work / "clouds.yaml", entry)
        env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
        env.update(OS_CLIENT_CONFIG_FILE=str(clouds), HEATGEN_SANDBOX_DIR=str(config.state_dir),
                   XDG_STATE_HOME=str(work / "state"))  # the stack ids heatgen remembers
        cloud = open_sandbox(config).cloud  # direct: the bench's own reads are not counted
        heat = heat_client.Client("1", session=control.session(config))
        counter = Counter(keystone, heat_proxy)
        settler = Settler(sandbox_cpu(config))
        results: dict[int, Runs] = {}

        def keep(size: int, costs: Runs) -> None:
            results[size] = costs
            if args.save is not None:  # after every run: a later failure keeps these
                save(args.save, args.site.name, results)

        for size in sizes:
            print(f"{size} workers", flush=True)
            measure_size(size, args.runs, args.site, work, env, counter, cloud, heat,
                         settler, on_run=functools.partial(keep, size),
                         first=args.first_run - 1)
        print_tables(args.site.name, results, args.by_kind)
    finally:
        heat_proxy.stop()
        keystone.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
