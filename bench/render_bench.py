"""How long `heatgen render` takes, against the floor and against the openstack CLI.

    python bench/render_bench.py [--runs 7] [--state-dir DIR]

0. Start-up: `heatgen --version` and `heatgen --help` next to a bare `python -c pass`.
1. Each example rendered by a cold `heatgen render` process, next to the floor
   `python -c "import jinja2, yaml"` (the difference is heatgen's own overhead), and next to
   `openstack orchestration template validate` of the rendered files, which only parses and
   asks Heat to validate (it needs a cloud: the sandbox at --state-dir; skipped without one).
2. Growth: render time in one process for 1, 10 and 100 sites, and for a site with 1, 10 and
   100 `condor.extra_config` lines (the largest structure the config allows), per item, to
   show the cost grows linearly.

Figures are medians of --runs runs; a tool and its floor run in turns, so that a machine busy
with something else slows both alike. Nothing here is a pass/fail test.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))


def wall(argv: list[str], runs: int, env: dict[str, str] | None = None) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True, env=env)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def paired(commands: dict[str, list[str]], runs: int) -> dict[str, float]:
    """Median wall time of each command, the commands run in turns."""
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(runs):
        for name, argv in commands.items():
            started = time.perf_counter()
            subprocess.run(argv, check=True, capture_output=True)
            times[name].append(time.perf_counter() - started)
    return {name: statistics.median(values) for name, values in times.items()}


def start_up(runs: int) -> None:
    heatgen = str(BIN / "heatgen")
    medians = paired({"pass": [sys.executable, "-c", "pass"],
                      "--version": [heatgen, "--version"], "--help": [heatgen, "--help"]}, runs)
    floor = medians.pop("pass")
    print(f"0. start-up ({runs} runs, medians); floor `python -c pass` = {floor * 1000:.0f} ms")
    for name, seconds in medians.items():
        print(f"   heatgen {name:<10} {seconds * 1000:>6.0f} ms  "
              f"+{(seconds - floor) * 1000:.0f} ms")


def in_process(function: object, runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        function()  # type: ignore[operator]
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def cold_render(runs: int, state_dir: Path | None) -> None:
    floor_argv = [sys.executable, "-c", "import jinja2, yaml"]
    floor = wall(floor_argv, runs)
    env = None
    cloud = None
    if state_dir is not None:
        from heatgen.sandbox import control
        from heatgen.sandbox.settings import resolve_config

        config = resolve_config(state_dir)
        clouds = Path(tempfile.mkdtemp()) / "clouds.yaml"
        clouds.write_text(yaml.safe_dump(control.clouds_document(config)))
        env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
        env["OS_CLIENT_CONFIG_FILE"] = str(clouds)
        cloud = "heatgen-sandbox"
    print(f"1. cold render ({runs} runs, medians); floor `python -c \"import jinja2, yaml\"` = "
          f"{floor * 1000:.0f} ms")
    print(f"   {'example':<12} {'render ms':>10} {'overhead ms':>12} {'ratio':>6} "
          f"{'os validate ms':>15}")
    with tempfile.TemporaryDirectory() as out:
        for example in EXAMPLES:
            target = Path(out) / example.stem
            medians = paired({"floor": floor_argv, "render": [
                str(BIN / "heatgen"), "render", str(example), "-o", str(target)]}, runs)
            render, floor = medians["render"], medians["floor"]
            validate = ""
            if cloud is not None:
                seconds = wall(
                    [str(BIN / "openstack"), "--os-cloud", cloud, "orchestration", "template",
                     "validate", "-t", str(target / "grid.yaml"), "-e",
                     str(target / "grid-env.yaml"), "-e",
                     str(REPO / "environments" / "sandbox.yaml")],
                    max(3, runs // 2), env,
                )
                validate = f"{seconds * 1000:>15.0f}"
            print(f"   {example.stem:<12} {render * 1000:>10.0f} {(render - floor) * 1000:>12.0f} "
                  f"{render / floor:>6.2f} {validate}")


def growth(runs: int) -> None:
    from heatgen.config import validate_site
    from heatgen.render import render_site

    base = yaml.safe_load((REPO / "examples" / "thesis.yaml").read_text())
    base["heat_template_version"] = str(base["heat_template_version"])

    def sites(count: int) -> None:
        for index in range(count):
            data = dict(base, site=f"grid-{index}")
            render_site(validate_site(data, "bench"))

    print(f"2. growth, in one process ({runs} runs, medians)")
    print(f"   {'sites':>6} {'total ms':>9} {'ms per site':>12}")
    for count in (1, 10, 100):
        seconds = in_process(lambda count=count: sites(count), max(3, runs // 2))
        print(f"   {count:>6} {seconds * 1000:>9.1f} {seconds * 1000 / count:>12.2f}")
    print(f"   {'lines':>6} {'total ms':>9} {'ms per line':>12}   (condor.extra_config)")
    for count in (1, 10, 100):
        condor = dict(base["condor"], extra_config=[f"KNOB_{i} = {i}" for i in range(count)])
        site = validate_site(dict(base, condor=condor), "bench")
        seconds = in_process(lambda site=site: render_site(site), runs)
        print(f"   {count:>6} {seconds * 1000:>9.1f} {seconds * 1000 / count:>12.3f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--state-dir", type=Path, help="a running sandbox, for the CLI column")
    args = parser.parse_args()
    start_up(args.runs)
    cold_render(args.runs, args.state_dir)
    growth(args.runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
