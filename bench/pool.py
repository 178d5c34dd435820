"""The sandbox's pool in figures: `python bench/pool.py [--workers N]` (root).

Prints the base root's build time and size (built now if it is not cached), plain `up` against
`up --pool` with the cached base, the deploy of examples/debian13.yaml with a real master, how
long each worker takes from the moment its host starts until the collector lists it, the memory
of the master's and of a worker's host once settled, and how many workers fit in 2 GiB.
Figures only, no pass/fail; every sandbox it starts runs in a temporary directory on free
loopback ports and is stopped (hosts, bridge and all) at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _mib(value: float) -> str:
    return f"{value / 2**20:.0f} MiB"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=10)
    parser.add_argument("--settle", type=float, default=40.0,
                        help="seconds to let the hosts settle before reading memory")
    args = parser.parse_args()
    from heatclient import client as heat_client

    from heatgen.cli import main as heatgen
    from heatgen.sandbox import control
    from heatgen.sandbox.pool import base, network
    from heatgen.sandbox.settings import on_free_ports

    found = base.find()
    if found is None:
        print("base: not cached, building it now", flush=True)
        found = base.ensure(progress=lambda message: print(f"  {message}", flush=True))
        print(f"base: built in {found.built_seconds:.0f} s, {_mib(found.size_bytes or 0)}")
    else:
        recipe = json.loads((found.path.parent / base.RECIPE_FILE).read_text())
        print(f"base: cached ({found.key}); it was built in {recipe.get('built_seconds')} s, "
              f"{_mib(recipe.get('size_bytes') or 0)}")

    work = Path(tempfile.mkdtemp(prefix="heatgen-pool-bench-"))
    plain = on_free_ports(work / "plain")
    started = control.up(plain)
    print(f"up (plain):       {started.startup_seconds:.1f} s")
    control.down(plain, reset=True)
    config = replace(on_free_ports(work / "pool"), pool=True)
    try:
        started = control.up(config)
        print(f"up --pool:        {started.startup_seconds:.1f} s (cached base)")
        os.environ["HEATGEN_SANDBOX_DIR"] = str(config.state_dir)
        site = work / "bench-grid.yaml"
        site.write_text((REPO / "examples" / "debian13.yaml").read_text()
                        .replace("site: debian13-grid", "site: bench-grid")
                        .replace("max: 7", f"max: {max(7, args.workers)}"))
        begin = time.monotonic()
        assert heatgen(["deploy", str(site)]) == 0
        print(f"deploy (real master, 1 worker): {time.monotonic() - begin:.1f} s", flush=True)
        heat = heat_client.Client("1", session=control.session(config))
        before = {o["output_key"]: o["output_value"]
                  for o in heat.stacks.get("bench-grid").outputs}
        existing = set(before["worker_server_ids"].values())
        begin = time.monotonic()
        assert heatgen(["scale", str(site), "--workers", str(args.workers)]) == 0
        print(f"scale 1 -> {args.workers}: {time.monotonic() - begin:.1f} s", flush=True)
        outputs = {o["output_key"]: o["output_value"]
                   for o in heat.stacks.get("bench-grid").outputs}
        hosts = network.hosts_of(config)
        master = str(outputs["master_id"])
        workers = [str(s) for s in outputs["worker_server_ids"].values()]
        new = [server for server in workers if server not in existing]
        joined: dict[str, float] = {}
        deadline = time.monotonic() + 300
        while len(joined) < len(new) and time.monotonic() < deadline:
            listed = hosts.run(master, ["condor_status", "-af", "HeatGenServerId"]).stdout
            now = time.time()
            for server in new:
                if server not in joined and server in listed:
                    joined[server] = now
            time.sleep(0.5)
        delays = []
        for server in new:
            record = json.loads((hosts.directory / server / "host.json").read_text())
            if server in joined:
                delays.append(joined[server] - float(record["started_at"]))
        if delays:
            print(f"join (host start -> listed by the collector), {len(delays)} new workers: "
                  f"median {statistics.median(delays):.1f} s, max {max(delays):.1f} s "
                  f"(polled every 0.5 s)")
        missing = len(new) - len(delays)
        if missing:
            print(f"  {missing} workers had not joined after 300 s")
        time.sleep(args.settle)
        states = {s.server_id: s for s in network.host_states(config)}
        master_rss = states[master].rss_bytes or 0
        worker_rss = [states[s].rss_bytes or 0 for s in workers if s in states]
        median = statistics.median(worker_rss)
        print(f"memory after {args.settle:.0f} s: master host {_mib(master_rss)}, worker hosts "
              f"median {_mib(median)} (min {_mib(min(worker_rss))}, max "
              f"{_mib(max(worker_rss))})")
        services = sum(p.rss_bytes or 0 for p in control.status(config).processes)
        print(f"sandbox services (Keystone, Heat, pool agent): {_mib(services)}")
        fits = int((2 * 2**30 - master_rss) // median)
        print(f"largest pool in 2 GiB of hosts: the master and {fits} workers")
        heatgen(["delete", str(site), "--yes"])
    finally:
        control.down(config, reset=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
