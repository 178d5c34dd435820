"""``heatgen autoscale``: the queue-mode decision loop (see :mod:`heatgen.ops.autoscale`)."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

from heatgen.cli import common
from heatgen.cli.common import add_pool_options, add_site, pool_factory
from heatgen.errors import ExitStatus, UsageError


def register(sub: Any) -> None:
    auto = sub.add_parser(
        "autoscale", help="grow the worker groups from the job queue, shrink idle ones safely",
        description="Queue mode (autoscaling.mode: queue): every --interval seconds, read the "
        "groups from Heat and the machines and idle jobs from the pool, grow each group by "
        "what its queued jobs need, drain members idle for idle_timeout and remove them at "
        "the next decision if still idle, and write one decision record. SIGTERM ends it "
        "after the current step.",
    )
    add_site(auto)
    add_pool_options(auto)
    auto.add_argument("--once", action="store_true", help="make one decision and exit")
    auto.add_argument("--interval", type=common.positive_seconds, metavar="S",
                      help="seconds between decisions (default: autoscaling.interval)")
    auto.add_argument("--dry-run", action="store_true",
                      help="decide and print, change nothing")
    auto.add_argument("--format", choices=("text", "json"), default="text",
                      help="text, or one JSON object per decision")
    auto.add_argument("--status-file", type=Path, metavar="FILE",
                      help="keep the latest decision and the counters here, in Prometheus "
                           "text format (for node_exporter's textfile collector)")
    auto.add_argument("--decisions", type=int, metavar="N",
                      help="stop after N decisions (default: run until SIGTERM)")
    auto.add_argument("--timeout", type=common.positive_seconds, default=1800.0, metavar="S",
                      help="longest a resize may take (default 1800)")
    auto.set_defaults(func=_autoscale)


class _NotesOnly:
    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def event(self, event: Any) -> None:
        return None

    def note(self, message: str) -> None:
        self.inner.note(message)

    def close(self) -> None:
        self.inner.close()


def _autoscale(args: argparse.Namespace) -> int:
    from heatgen.cli.output import ConsoleReporter
    from heatgen.config import load_site
    from heatgen.ops import autoscale

    site = load_site(args.site)
    autoscale.check_queue_mode(site, str(args.site))
    interval = args.interval if args.interval is not None else float(site.autoscaling.interval)
    if interval <= 0:
        raise UsageError(f"--interval must be > 0 (got {interval:g})")
    if args.decisions is not None and args.decisions < 1:
        raise UsageError(f"--decisions must be >= 1 (got {args.decisions})")
    if args.status_file is not None and not args.status_file.parent.is_dir():
        raise UsageError(f"--status-file {args.status_file}: no such directory "
                         f"{args.status_file.parent}")
    target = common.open_target(site, args.os_cloud)
    # a daemon's log: the notes of each action (on stderr), not every Heat event; the
    # decision records say what happened
    report = _NotesOnly(ConsoleReporter(progress=False))
    pool_for = pool_factory(args, target, site.keypair)
    state = autoscale.LoopState()
    stopping: list[int] = []

    def stop(signum: int, frame: Any) -> None:
        stopping.append(signum)

    previous = signal.signal(signal.SIGTERM, stop)
    limit = 1 if args.once else args.decisions
    try:
        while not stopping:
            started = time.monotonic()
            outcome = autoscale.step(target.cloud, site, pool_for, state, report,
                                     dry_run=args.dry_run, timeout=args.timeout)
            if args.format == "json":
                print(json.dumps(outcome.as_dict(), sort_keys=True), flush=True)
            else:
                print(autoscale.record_text(outcome), flush=True)
            if args.status_file is not None:
                autoscale.write_status(args.status_file,
                                       autoscale.status_text(outcome, state, site.site))
            if limit is not None and state.decisions >= limit:
                break
            while not stopping and time.monotonic() - started < interval:
                time.sleep(min(1.0, interval))
    finally:
        signal.signal(signal.SIGTERM, previous)
        report.close()
    if stopping:
        print(f"heatgen: autoscale stopped by signal {stopping[0]} after {state.decisions} "
              "decisions; no member is left marked", file=sys.stderr)
    return int(ExitStatus.OK)
