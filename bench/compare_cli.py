"""heatgen against the `openstack` CLI on the sandbox, measured side by side in one run.

    python bench/compare_cli.py [--runs 3] [--state-dir DIR] [--site examples/thesis.yaml]

Needs the `openstack` CLI: `pip install -e '.[sandbox,bench]'`.

For each run it deploys the same rendered grid with `heatgen deploy` and with
`openstack stack create --wait`, resizes it to 3 workers with `heatgen scale` and with
`openstack stack update --existing --wait --parameter worker_desired=3`, and deletes it with
both tools. It prints, per operation, the median wall time of each tool and their ratio, how
long after Heat's own final event each tool exited (Heat stamps events to the second, so
this is +-1 s), and, from one extra `--debug` pass, the HTTP requests each tool made (every
answer keystoneauth logs, redirects included, and the token request), the request-body bytes
it sent and the answer bytes it received.

No VM boots in the sandbox, so for the CLI's create a thread plays the master's part exactly
as heatgen does (it signals the wait condition once). Without --state-dir a sandbox is
started in a temporary directory on free ports and removed at the end. Traffic goes to
127.0.0.1 only; every loop is bounded.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import yaml
from bench_sandbox import bench_sandbox

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
HEATGEN = [str(BIN / "heatgen")]
OPENSTACK = [str(BIN / "openstack")]


def run(argv: list[str], env: dict[str, str], log: Path | None = None) -> tuple[float, float]:
    """Run a command; return (wall seconds, epoch at exit). Raise on failure."""
    started = time.monotonic()
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=900)
    ended = time.time()
    if log is not None:
        log.write_text(result.stdout + result.stderr)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:3])}... failed ({result.returncode}):\n"
                           f"{result.stderr[-2000:]}")
    return time.monotonic() - started, ended


class MasterPlayer(threading.Thread):
    """Signals the wait condition of stack ``name`` once it is waiting, like heatgen does."""

    def __init__(self, cloud: Any, name: str, timeout: float = 300.0) -> None:
        super().__init__(daemon=True)
        self.cloud, self.name, self.timeout = cloud, name, timeout
        self.done = threading.Event()

    def run(self) -> None:
        from heatgen.ops.report import SilentReporter
        from heatgen.sandbox.master import SandboxMaster

        player = SandboxMaster(self.cloud, SilentReporter())
        deadline = time.monotonic() + self.timeout
        stack_id = None
        while not self.done.is_set() and not player.done and time.monotonic() < deadline:
            # The name until the stack exists, then its status alone (the whole stack, its
            # outputs resolved, would load Heat more than the CLI's own polls do).
            stack = self.cloud.stack_status(stack_id) if stack_id else \
                self.cloud.get_stack(self.name)
            stack_id = stack.id if stack is not None else None
            if stack is not None and stack.in_progress:
                if player.pending:
                    # The wait condition is waiting: what was not sent yet (a handle made
                    # after the first look) is sent as soon as Heat has made it.
                    player.signal(stack.id)
                else:
                    player.attach(stack.id)
            time.sleep(0.2)


def final_event_epoch(cloud: Any, name: str) -> float | None:
    stack = cloud.get_stack(name)
    if stack is None:
        return None
    events = [e for e in cloud.events(stack.id, after=None) or [] if e.physical_id == stack.id]
    if not events:
        return None
    stamp = dt.datetime.fromisoformat(events[-1].time.replace("Z", "+00:00"))
    return stamp.timestamp()


def deleted_epoch(heat: Any, name: str) -> float | None:
    for stack in heat.stacks.list(show_deleted=True, filters={"name": name}):
        if stack.stack_status == "DELETE_COMPLETE" and stack.deletion_time:
            return dt.datetime.fromisoformat(stack.deletion_time.replace("Z", "+00:00")).timestamp()
    return None


REQ = re.compile(r"REQ: curl -g -i -X (\w+) (\S+)(.*)")
BODY = re.compile(r" -d '(.*)'$")
# keystoneauth logs a REQ line once per call but a RESP line for each answer, a redirect's
# too; the token request it only announces.
RESP = re.compile(r"RESP: \[\d+\](?: Content-Length: (\d+))?")
AUTH = "Making authentication request"


def count_requests(log: Path) -> tuple[int, int, int]:
    """(requests, request-body bytes, answer bytes) from a keystoneauth --debug log."""
    requests = sent = received = 0
    for line in log.read_text().splitlines():
        match = REQ.search(line)
        if match:
            body = BODY.search(match.group(3))
            if body:
                sent += len(body.group(1).encode())
        answer = RESP.search(line)
        if answer:
            requests += 1
            received += int(answer.group(1) or 0)
        elif AUTH in line:
            requests += 1
    return requests, sent, received


def site_named(source: Path, name: str, directory: Path) -> Path:
    text = re.sub(r"^site: .*$", f"site: {name}", source.read_text(), count=1, flags=re.M)
    path = directory / f"{name}.yaml"
    path.write_text(text)
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--state-dir", type=Path, help="a running sandbox to use")
    parser.add_argument("--site", type=Path, default=REPO / "examples" / "thesis.yaml")
    args = parser.parse_args()

    with bench_sandbox(args.state_dir, "heatgen-bench-") as (config, work):
        return measure(args, config, work)


def measure(args: argparse.Namespace, config: Any, work: Path) -> int:
    from heatclient import client as heat_client

    from heatgen.cloud.connect import SANDBOX_CLOUD, open_cloud
    from heatgen.cloud.openstack import OpenStackCloud
    from heatgen.sandbox import control

    clouds = work / "clouds.yaml"
    clouds.write_text(yaml.safe_dump(control.clouds_document(config)))
    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    env["OS_CLIENT_CONFIG_FILE"] = str(clouds)
    os.environ["OS_CLIENT_CONFIG_FILE"] = str(clouds)
    cloud = open_cloud(SANDBOX_CLOUD).cloud
    assert isinstance(cloud, OpenStackCloud), "the sandbox is reached through OpenStack's clients"
    heat = heat_client.Client("1", session=cloud.connection.session)
    sandbox_env = REPO / "environments" / "sandbox.yaml"
    cloud_arg = ["--os-cloud", SANDBOX_CLOUD]

    times: dict[tuple[str, str], list[float]] = {}
    lags: dict[tuple[str, str], list[float]] = {}
    requests: dict[tuple[str, str], tuple[int, int, int]] = {}

    def record(op: str, tool: str, wall: float, lag: float | None) -> None:
        times.setdefault((op, tool), []).append(wall)
        if lag is not None:
            lags.setdefault((op, tool), []).append(lag)

    for index in range(args.runs + 1):
        debug = index == args.runs  # the last pass only counts requests
        for tool in ("heatgen", "openstack"):
            name = f"bench-{tool}-{index}"
            site = site_named(args.site, name, work)
            rendered = work / name
            subprocess.run([*HEATGEN, "render", str(site), "-o", str(rendered)], check=True,
                           env=env, capture_output=True)
            logs = {op: work / f"{name}-{op}.log" for op in ("deploy", "scale", "delete")}
            flag = ["--debug"] if debug else []
            if tool == "heatgen":
                commands = {
                    "deploy": [*HEATGEN, *flag, "deploy", str(site), *cloud_arg],
                    "scale": [*HEATGEN, *flag, "scale", str(site), "--workers", "3", *cloud_arg],
                    "delete": [*HEATGEN, *flag, "delete", str(site), "--yes", *cloud_arg],
                }
            else:
                commands = {
                    "deploy": [*OPENSTACK, *flag, *cloud_arg, "stack", "create", "--wait",
                               "-t", str(rendered / "grid.yaml"),
                               "-e", str(rendered / "grid-env.yaml"), "-e", str(sandbox_env),
                               name],
                    "scale": [*OPENSTACK, *flag, *cloud_arg, "stack", "update", "--existing",
                              "--wait", "--parameter", "worker_desired=3", name],
                    "delete": [*OPENSTACK, *flag, *cloud_arg, "stack", "delete", "--wait", "-y",
                               name],
                }
            for op in ("deploy", "scale", "delete"):
                player = None
                if tool == "openstack" and op == "deploy":
                    player = MasterPlayer(cloud, name)
                    player.start()
                wall, exited = run(commands[op], env, logs[op] if debug else None)
                if player is not None:
                    player.done.set()
                if debug:
                    requests[(op, tool)] = count_requests(logs[op])
                    continue
                final = deleted_epoch(heat, name) if op == "delete" else \
                    final_event_epoch(cloud, name)
                record(op, tool, wall, exited - final if final else None)

    print(f"heatgen vs openstack CLI on the sandbox ({args.runs} runs, medians; "
          f"site {args.site.name})")
    print(f"{'operation':<8} {'heatgen s':>10} {'openstack s':>12} {'ratio':>6} "
          f"{'lag hg s':>9} {'lag os s':>9} {'req hg':>7} {'req os':>7} {'sent hg':>8} "
          f"{'sent os':>8} {'recv hg':>8} {'recv os':>8}")
    for op in ("deploy", "scale", "delete"):
        hg = statistics.median(times[(op, "heatgen")])
        osc = statistics.median(times[(op, "openstack")])
        lag_hg = statistics.median(lags.get((op, "heatgen"), [float("nan")]))
        lag_os = statistics.median(lags.get((op, "openstack"), [float("nan")]))
        (rh, bh, ih), (ro, bo, io) = requests[(op, "heatgen")], requests[(op, "openstack")]
        print(f"{op:<8} {hg:>10.2f} {osc:>12.2f} {hg / osc:>6.2f} {lag_hg:>9.2f} "
              f"{lag_os:>9.2f} {rh:>7} {ro:>7} {bh:>8} {bo:>8} {ih:>8} {io:>8}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
