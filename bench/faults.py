"""heatgen on a bad day: deploy/scale/delete through a fault-injecting proxy, and killed deploys.

    python bench/faults.py                      # 30 cycles at 20 % faults (mixed kinds), 20 kills
    python bench/faults.py --per-kind --runs 10 # 10 cycles for each fault kind on its own
    python bench/faults.py --state-dir DIR      # use a running sandbox instead of starting one

Every command runs as its own `heatgen` process, like a user's. A cycle is `deploy` of
examples/thesis.yaml renamed per run, `scale --workers 3`, `delete --yes`, with ``--rate`` of
all requests to Keystone and heat-api failing (500, 503, dropped connection, delay, or
forwarded with the answer lost). After a failed command the same command runs again without
faults and must finish; Heat must never hold two stacks of the name. The kill phase sends
SIGINT or SIGKILL to `heatgen deploy` at a random moment, then runs `heatgen deploy` again,
which must converge to one CREATE_COMPLETE stack. Prints a table of outcomes and success
rates.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.faultproxy import (  # noqa: E402
    FAULT_KINDS,
    INTERRUPTIBLE_HEATGEN,
    Step,
    chaos,
    direct_clouds_yaml,
    outcome,
    proxied_sandbox,
    run_cycle,
    stacks_named,
    thesis_site,
)

HEATGEN = [sys.executable, "-m", "heatgen"]
COMMAND_TIMEOUT = 900


def runner(clouds_yaml: Path) -> Any:
    env = {**os.environ, "OS_CLIENT_CONFIG_FILE": str(clouds_yaml), "OS_CLOUD": "heatgen-sandbox"}
    env.pop("HEATGEN_SANDBOX_DIR", None)
    env.pop("OS_AUTH_URL", None)

    def run(args: list[str]) -> tuple[int, str, str]:
        done = subprocess.run([*HEATGEN, *args], env=env, capture_output=True, text=True,
                              timeout=COMMAND_TIMEOUT, cwd=REPO)
        return done.returncode, done.stdout, done.stderr

    return run


def fault_phase(config: Any, heat: Any, work: Path, label: str, kinds: tuple[str, ...],
                runs: int, rate: float, jobs: int, seed: int) -> list[Step]:
    direct = runner(direct_clouds_yaml(config, work / f"direct-{label}.yaml"))
    phase_dir = work / label
    phase_dir.mkdir()
    with proxied_sandbox(config, phase_dir, seed=seed) as proxied:
        proxied.set_rules(chaos(rate, kinds))
        faulty = runner(proxied.clouds_yaml)

        def cycle(index: int) -> list[Step]:
            name = f"bench-{label}-{index}"
            steps = run_cycle(faulty, direct, heat, thesis_site(phase_dir, name), name)
            print(f"  {name}: " + ", ".join(f"{s.command}={s.outcome}" for s in steps)
                  + "".join(f" PROBLEM {p}" for s in steps for p in s.problems), flush=True)
            return steps

        with ThreadPoolExecutor(max_workers=jobs) as pool:
            results = list(pool.map(cycle, range(runs)))
        faults = proxied.faults()
        total = len(proxied.keystone.records) + len(proxied.heat.records)
    print(f"  faults injected: {dict(faults)} over {total} requests", flush=True)
    return [step for steps in results for step in steps]


def kill_phase(config: Any, heat: Any, work: Path, kills: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    clouds = direct_clouds_yaml(config, work / "direct-kill.yaml")
    run = runner(clouds)
    env = {**os.environ, "OS_CLIENT_CONFIG_FILE": str(clouds), "OS_CLOUD": "heatgen-sandbox"}
    env.pop("HEATGEN_SANDBOX_DIR", None)
    # Kill moments fall inside an undisturbed deploy's duration, measured first.
    timing = thesis_site(work, "bench-kill-timing")
    started = time.monotonic()
    code, _, err = run(["deploy", str(timing)])
    duration = time.monotonic() - started
    run(["delete", str(timing), "--yes"])
    if code != 0:
        raise SystemExit(f"an undisturbed deploy failed: {outcome(code, err)}")
    print(f"  an undisturbed deploy takes {duration:.1f} s; kills fall in "
          f"0.5-{0.9 * duration:.1f} s", flush=True)
    results = []
    for index in range(kills):
        name = f"bench-kill-{index}"
        site = thesis_site(work, name)
        how = signal.SIGINT if index % 2 == 0 else signal.SIGKILL
        after = rng.uniform(0.5, 0.9 * duration)
        process = subprocess.Popen([*INTERRUPTIBLE_HEATGEN, "deploy", str(site)], env=env,
                                   cwd=REPO,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        time.sleep(after)
        process.send_signal(how)
        try:
            _, err = process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            _, err = process.communicate()
        code = process.returncode
        killed = outcome(code if code >= 0 else 128 - code, err)
        code, _, err2 = run(["deploy", str(site), "--timeout", "300"])
        found = stacks_named(heat, name)
        problems = []
        if code != 0:
            problems.append(f"re-deploy: {outcome(code, err2)}")
        if len(found) != 1 or found[0].stack_status not in ("CREATE_COMPLETE", "UPDATE_COMPLETE"):
            problems.append(f"stacks {[s.stack_status for s in found]}")
        results.append({"signal": how.name, "after": after, "killed": killed,
                        "redeploy": outcome(code, err2), "problems": problems})
        print(f"  {name}: {how.name} after {after:.1f} s -> {killed}; re-deploy "
              f"{outcome(code, err2)}" + "".join(f" PROBLEM {p}" for p in problems), flush=True)
        run(["delete", str(site), "--yes"])
    return results


def table(title: str, steps: list[Step]) -> None:
    print(f"\n{title}")
    print(f"  {'command':<8} {'runs':>4} {'ok':>4} {'rate':>7}  second run ok  distinct outcomes")
    for command in ("deploy", "scale", "delete"):
        mine = [s for s in steps if s.command == command]
        if not mine:
            continue
        ok = sum(s.outcome == "ok" for s in mine)
        failed = [s for s in mine if s.outcome != "ok"]
        recovered = sum(s.recovered == "ok" for s in failed)
        print(f"  {command:<8} {len(mine):>4} {ok:>4} {100 * ok / len(mine):>6.1f}%  "
              f"{recovered}/{len(failed):<12}")
        for text, count in Counter(s.outcome for s in mine).most_common():
            print(f"      {count:>3} x {text}")
    for step in steps:
        if "TRACEBACK" in step.outcome:
            print(f"      traceback of a {step.command}:\n{step.detail}")
    problems = [p for s in steps for p in s.problems]
    print(f"  invariant violations (duplicates, unfinishable stacks): {len(problems)}")
    for problem in problems:
        print(f"      {problem}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30, help="cycles per phase (default 30)")
    parser.add_argument("--rate", type=float, default=0.2, help="fault rate (default 0.2)")
    parser.add_argument("--kills", type=int, default=20, help="killed deploys (default 20)")
    parser.add_argument("--per-kind", action="store_true",
                        help="one phase per fault kind instead of one mixed phase")
    parser.add_argument("--kinds", default=",".join(FAULT_KINDS),
                        help=f"with --per-kind: which kinds (default {','.join(FAULT_KINDS)})")
    parser.add_argument("--jobs", type=int, default=3, help="cycles run at once (default 3)")
    parser.add_argument("--seed", type=int, default=2017)
    parser.add_argument("--state-dir", type=Path, help="a running sandbox to use")
    args = parser.parse_args()
    unknown = set(args.kinds.split(",")) - set(FAULT_KINDS)
    if unknown:
        parser.error(f"--kinds: unknown {', '.join(sorted(unknown))} (known: "
                     f"{', '.join(FAULT_KINDS)})")

    from heatclient import client as heat_client

    from heatgen.sandbox import control
    from heatgen.sandbox.settings import on_free_ports, resolve_config

    with tempfile.TemporaryDirectory(prefix="heatgen-faults-") as tmp:
        work = Path(tmp)
        if args.state_dir:
            config = resolve_config(str(args.state_dir))
            owned = False
        else:
            config = on_free_ports(work / "sandbox")
            print(f"starting a sandbox in {config.state_dir}", flush=True)
            control.up(config)
            owned = True
        try:
            heat = heat_client.Client("1", session=control.session(config))
            started = time.monotonic()
            phases = [(k, (k,)) for k in args.kinds.split(",")] if args.per_kind else \
                [("mixed", FAULT_KINDS)]
            all_steps: dict[str, list[Step]] = {}
            for label, kinds in phases:
                print(f"\nphase {label}: {args.runs} cycles, {args.rate:.0%} of requests fail "
                      f"({', '.join(kinds)})", flush=True)
                all_steps[label] = fault_phase(config, heat, work, label, kinds, args.runs,
                                               args.rate, args.jobs, args.seed)
            kills = []
            if args.kills:
                print(f"\nkill phase: {args.kills} deploys killed at random moments", flush=True)
                kills = kill_phase(config, heat, work, args.kills, args.seed)
            for label, steps in all_steps.items():
                table(f"faults: {label} ({args.rate:.0%} of requests)", steps)
            if kills:
                converged = sum(not k["problems"] for k in kills)
                print(f"\nkilled deploys: {len(kills)}; next deploy converged with one stack: "
                      f"{converged}/{len(kills)}")
                for text, count in Counter(f"{k['signal']}: {k['killed']}" for k in kills
                                           ).most_common():
                    print(f"      {count:>3} x {text}")
            print(f"\nwall time {time.monotonic() - started:.0f} s")
            bad = any(p for steps in all_steps.values() for s in steps for p in s.problems) or \
                any(k["problems"] for k in kills)
            return 1 if bad else 0
        finally:
            if owned:
                control.down(config)


if __name__ == "__main__":
    sys.exit(main())
