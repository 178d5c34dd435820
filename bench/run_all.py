"""Every benchmark in one run, on one sandbox: `python bench/run_all.py [--runs N]
[--scale-sizes 10,100,300] [--pacing]`.

Starts a sandbox in a temporary directory on free loopback ports (or uses --state-dir),
prints the render table (bench/render_bench.py) and the heatgen-vs-openstack table
(bench/compare_cli.py), with --scale-sizes also the big-grid tables (bench/scale.py, long:
about an hour for 10,100,300 workers), with --pacing also Heat's own time for a group by
member shape and group count (bench/heat_pacing.py, about 15 minutes), then stops the
sandbox. Figures only, no pass/fail.
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import sys
from pathlib import Path

from bench_sandbox import bench_sandbox

HERE = Path(__file__).resolve().parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--state-dir", type=Path, help="a running sandbox to use")
    parser.add_argument("--scale-sizes", metavar="N,N,...",
                        help="also run bench/scale.py for grids of these worker counts "
                        "(default: skip it, it is long)")
    parser.add_argument("--pacing", action="store_true",
                        help="also run bench/heat_pacing.py (about 15 minutes)")
    args = parser.parse_args()

    with bench_sandbox(args.state_dir, "heatgen-bench-") as (config, _):
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            model = next((line.split(":", 1)[1].strip() for line in cpuinfo
                          if line.startswith("model name")), platform.processor())
        print(f"machine: {model}, Python {platform.python_version()}")
        state = ["--state-dir", str(config.state_dir)]
        for script in ("render_bench.py", "compare_cli.py"):
            subprocess.run([sys.executable, str(HERE / script), "--runs", str(args.runs),
                            *state], check=True)
        if args.scale_sizes:
            subprocess.run([sys.executable, str(HERE / "scale.py"), "--sizes",
                            args.scale_sizes, *state], check=True)
        if args.pacing:
            subprocess.run([sys.executable, str(HERE / "heat_pacing.py"), *state], check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
