"""Soak the sandbox: create, PATCH-update and delete a grid-like stack many times.

    python bench/soak_sandbox.py                      # 20 in a row, then 5 in parallel
    python bench/soak_sandbox.py --template OUT_DIR   # a grid rendered by `heatgen render`
    python bench/soak_sandbox.py --state-dir DIR      # reuse a running sandbox

Without --state-dir a sandbox is started in a temporary directory on free ports and removed
at the end. Each cycle signals the master's wait condition the way heatgen does
(heatgen.sandbox.master). Prints failure counts and timings; exit status 1 if any cycle
failed. Traffic goes to 127.0.0.1 only; every loop is bounded in count and time.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DEFAULT_TEMPLATE = REPO / "tests" / "integration" / "data" / "small-grid.yaml"
SANDBOX_ENVIRONMENT = REPO / "environments" / "sandbox.yaml"


def load_stack_inputs(
    template: Path | None,
) -> tuple[dict[str, Any], dict[str, str], dict[str, Any]]:
    """(template, files, environment) as heatclient's CLI would send them.

    ``template`` is a directory rendered by ``heatgen render`` (grid.yaml + grid-env.yaml +
    nested files) or None for the built-in small grid. The sandbox environment is merged last.
    """
    from heatclient.common import template_utils

    if template is None:
        main, environments = DEFAULT_TEMPLATE, []
    else:
        main = template / "grid.yaml"
        environments = [template / "grid-env.yaml"] if (template / "grid-env.yaml").exists() else []
        if not main.exists():
            raise SystemExit(f"{template}: no grid.yaml (expected `heatgen render` output)")
    files, body = template_utils.get_template_contents(template_file=str(main))
    env_files, environment = template_utils.process_multiple_environments_and_files(
        env_paths=[str(p) for p in [*environments, SANDBOX_ENVIRONMENT]]
    )
    return dict(body), {**files, **env_files}, dict(environment)


def _summary(values: list[float]) -> str:
    if not values:
        return "-"
    return (
        f"mean {statistics.mean(values):5.1f} s  median {statistics.median(values):5.1f} s  "
        f"max {max(values):5.1f} s"
    )


def run_phase(label: str, count: int, workers: int, config: Any, inputs: tuple[Any, ...],
              parameter: str, sizes: tuple[int, int], timeout: float) -> dict[str, Any]:
    from heatclient import client as heat_client

    from heatgen.sandbox import control, exercise

    template, files, environment = inputs

    def one(index: int) -> Any:
        session = control.session(config)  # one per thread: requests sessions are not shared
        heat = heat_client.Client("1", session=session)
        return exercise.run_cycle(
            heat, f"soak-{label}-{index:02d}", template, environment, files=files,
            create_parameters={parameter: sizes[0]}, update_parameters={parameter: sizes[1]},
            session=session, timeout=timeout,
        )

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(one, range(count)))
    wall = time.monotonic() - started
    ok = [r for r in results if r.ok]
    failures = [r for r in results if not r.ok]
    return {
        "phase": label,
        "cycles": count,
        "concurrency": workers,
        "failures": len(failures),
        "errors": [f"{r.name}: {r.error}" for r in failures],
        "wall_s": round(wall, 1),
        "create_s": [round(r.create_s, 2) for r in ok],
        "update_s": [round(r.update_s, 2) for r in ok],
        "delete_s": [round(r.delete_s, 2) for r in ok],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--state-dir", type=Path, help="use the running sandbox in DIR")
    parser.add_argument("--template", type=Path, metavar="DIR",
                        help="`heatgen render` output dir (default: built-in small grid)")
    parser.add_argument("--serial", type=int, default=20, help="cycles in a row (default 20)")
    parser.add_argument("--parallel", type=int, default=5,
                        help="cycles at the same time (default 5)")
    parser.add_argument("--count-parameter", default=None,
                        help="parameter holding the worker count (default worker_count, "
                        "worker_desired with --template)")
    parser.add_argument("--sizes", default="1:3", help="workers at create:after update")
    parser.add_argument("--timeout", type=float, default=300.0, help="per step, seconds")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    if not (0 <= args.serial <= 200 and 0 <= args.parallel <= 20):
        parser.error("--serial must be 0-200 and --parallel 0-20")
    create_size, update_size = (int(x) for x in args.sizes.split(":"))
    parameter = args.count_parameter or ("worker_desired" if args.template else "worker_count")

    from heatgen.sandbox import control
    from heatgen.sandbox.settings import on_free_ports, resolve_config

    temporary: Path | None = None
    if args.state_dir:
        config = resolve_config(args.state_dir)
        if not control.status(config).running:
            raise SystemExit(f"no running sandbox in {args.state_dir}: heatgen sandbox up first")
        startup = None
    else:
        temporary = Path(tempfile.mkdtemp(prefix="heatgen-soak-"))
        config = on_free_ports(temporary)
        startup = control.up(config).startup_seconds
    try:
        inputs = load_stack_inputs(args.template)
        rss_before = control.status(config).rss_bytes
        phases = []
        if args.serial:
            phases.append(run_phase("serial", args.serial, 1, config, inputs, parameter,
                                    (create_size, update_size), args.timeout))
        if args.parallel:
            phases.append(run_phase("parallel", args.parallel, args.parallel, config, inputs,
                                    parameter, (create_size, update_size), args.timeout))
        after = control.status(config)
        leftovers = len(list(control_heat(config).stacks.list()))
    finally:
        if temporary is not None:
            control.down(config)
            shutil.rmtree(temporary, ignore_errors=True)

    report = {
        "template": str(args.template or DEFAULT_TEMPLATE.relative_to(REPO)),
        "startup_s": None if startup is None else round(startup, 1),
        "rss_mib_before": round(rss_before / 2**20),
        "rss_mib_after": round(after.rss_bytes / 2**20),
        "sandbox_state_after": after.state,
        "stacks_left": leftovers,
        "phases": phases,
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"template: {report['template']}")
        if startup is not None:
            print(f"sandbox up: {startup:.1f} s")
        for phase in phases:
            print(
                f"{phase['phase']:>8}: {phase['cycles']} cycles, concurrency "
                f"{phase['concurrency']}, failures {phase['failures']}, wall {phase['wall_s']} s"
            )
            for step in ("create", "update", "delete"):
                print(f"          {step:<6} {_summary(phase[f'{step}_s'])}")
            for error in phase["errors"]:
                print(f"          FAILED {error}")
        print(f"sandbox RSS: {report['rss_mib_before']} MiB before, "
              f"{report['rss_mib_after']} MiB after; state {after.state}; "
              f"stacks left {leftovers}")
    failed = sum(p["failures"] for p in phases) + (after.state != "running") + (leftovers > 0)
    return 1 if failed else 0


def control_heat(config: Any) -> Any:
    from heatclient import client as heat_client

    from heatgen.sandbox import control

    return heat_client.Client("1", session=control.session(config))


if __name__ == "__main__":
    sys.exit(main())
