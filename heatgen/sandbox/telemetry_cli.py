"""``heatgen sandbox load SITE.yaml --cpu P``: play Ceilometer for a deployed grid.

Standard library only at import time; the load generator is imported when the command runs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def register(actions: Any, common: argparse.ArgumentParser) -> None:
    load = actions.add_parser(
        "load", parents=[common],
        help="push CPU samples for a deployed grid's workers (needs `up --telemetry`)",
        description="Keep a Gnocchi `instance` resource per worker of the grid (server_group = "
        "the stack id, written as Ceilometer would) and push cumulative `cpu` measures at the "
        "given percentage, one per granularity bucket. Ctrl-C stops it.",
    )
    load.add_argument("site", type=Path, metavar="SITE.yaml")
    load.add_argument("--cpu", type=float, required=True, metavar="PERCENT",
                      help="CPU load of every worker, 0-100")
    load.add_argument("--duration", type=float, default=None, metavar="S",
                      help="stop after S seconds (default: until Ctrl-C)")
    load.set_defaults(func=_load)


def _progress(message: str) -> None:
    print(f"load: {message}", file=sys.stderr, flush=True)


def _load(args: argparse.Namespace) -> int:
    from heatgen import loadgen

    result = loadgen.run_for_site(args.site, args.cpu, duration=args.duration,
                                  state_dir=args.state_dir, progress=_progress)
    print(f"pushed {result.samples} samples for {result.workers_seen} workers "
          f"over {result.elapsed:.0f} s")
    return 0
