"""heatgen on a bad day, against the real sandbox behind a fault-injecting proxy.

Keystone and heat-api are reached through :mod:`tests.faultproxy`; heatgen finds them through
a clouds.yaml (``OS_CLIENT_CONFIG_FILE``) whose ``auth_url`` is the Keystone proxy and whose
``orchestration_endpoint_override`` is the heat-api proxy. The default run holds a reduced
version of each scenario; `pytest -m slow` runs the full-size ones (see also bench/faults.py).
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from heatgen.cli import main
from tests.faultproxy import (
    FAULT_KINDS,
    INTERRUPTIBLE_HEATGEN,
    ProxiedSandbox,
    Rule,
    chaos,
    direct_clouds_yaml,
    outcome,
    proxied_sandbox,
    run_cycle,
    stacks_named,
    thesis_site,
)

from .conftest import REPO, Sandbox

pytestmark = pytest.mark.sandbox

CLOUD = "heatgen-sandbox"
HEATGEN = [sys.executable, "-m", "heatgen"]
COMMAND_TIMEOUT = 600


@dataclass
class Clouds:
    proxied: ProxiedSandbox
    direct: Path
    workdir: Path


@pytest.fixture
def clouds(sandbox: Sandbox, tmp_path: Path) -> Iterator[Clouds]:
    with proxied_sandbox(sandbox.config, tmp_path) as proxied:
        yield Clouds(proxied, direct_clouds_yaml(sandbox.config, tmp_path / "direct.yaml"),
                     tmp_path)


def _env(clouds_yaml: Path) -> dict[str, str]:
    env = {**os.environ, "OS_CLIENT_CONFIG_FILE": str(clouds_yaml), "OS_CLOUD": CLOUD}
    for name in ("HEATGEN_SANDBOX_DIR", "OS_AUTH_URL"):
        env.pop(name, None)
    return env


def in_process(clouds_yaml: Path) -> Any:
    """Run `heatgen ARGS` in this process with the given clouds.yaml; (code, out, err)."""

    def run(args: list[str]) -> tuple[int, str, str]:
        saved = dict(os.environ)
        os.environ.clear()
        os.environ.update(_env(clouds_yaml))
        out, err = io.StringIO(), io.StringIO()
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                code = main(args)
        finally:
            os.environ.clear()
            os.environ.update(saved)
        return code, out.getvalue(), err.getvalue()

    return run


def subprocesses(clouds_yaml: Path) -> Any:
    """Run `heatgen ARGS` as its own process, as a user would; (code, out, err)."""

    def run(args: list[str]) -> tuple[int, str, str]:
        done = subprocess.run([*HEATGEN, *args], env=_env(clouds_yaml), capture_output=True,
                              text=True, timeout=COMMAND_TIMEOUT, cwd=REPO)
        return done.returncode, done.stdout, done.stderr

    return run


def _cleanup(sandbox: Sandbox, clouds: Clouds, *names: str) -> None:
    run = in_process(clouds.direct)
    for name in names:
        if stacks_named(sandbox.heat, name):
            run(["delete", str(clouds.workdir / f"{name}.yaml"), "--yes"])


def _chaos_cycles(sandbox: Sandbox, clouds: Clouds, label: str, kinds: tuple[str, ...],
                  runs: int, jobs: int = 3) -> list[Any]:
    clouds.proxied.set_rules(chaos(0.2, kinds))
    faulty, direct = subprocesses(clouds.proxied.clouds_yaml), subprocesses(clouds.direct)

    def cycle(index: int) -> list[Any]:
        name = f"chaos-{label}-{index}"
        try:
            return run_cycle(faulty, direct, sandbox.heat, thesis_site(clouds.workdir, name),
                             name)
        finally:
            _cleanup(sandbox, clouds, name)

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        steps = [step for steps in pool.map(cycle, range(runs)) for step in steps]
    clouds.proxied.set_rules([])
    return steps


def _assert_cycles(steps: list[Any], runs: int, clouds: Clouds, minimum: float) -> None:
    report = [(s.command, s.outcome, s.recovered, s.problems) for s in steps]
    assert not [p for s in steps for p in s.problems], report
    assert len(steps) == 3 * runs, report
    for step in steps:
        assert "TRACEBACK" not in step.outcome, report
        # A failure is a named outcome with a documented exit code, never a crash.
        assert step.outcome == "ok" or step.outcome.split(":")[0] in (
            "exit 3", "exit 4", "exit 5"), report
    ok = sum(s.outcome == "ok" for s in steps)
    assert ok / len(steps) >= minimum, report
    assert sum(clouds.proxied.faults().values()) > 0


def test_deploy_scale_delete_with_20_percent_of_requests_failing(
    sandbox: Sandbox, clouds: Clouds
) -> None:
    """2 cycles, each request failing with 20 % odds in one of the five ways."""
    steps = _chaos_cycles(sandbox, clouds, "mixed", FAULT_KINDS, runs=2)
    _assert_cycles(steps, 2, clouds, minimum=5 / 6)
    assert set(clouds.proxied.faults()) >= {"500", "503", "drop", "lost"}


@pytest.mark.slow
@pytest.mark.parametrize("kind", FAULT_KINDS)
def test_each_fault_kind_30_runs(sandbox: Sandbox, clouds: Clouds, kind: str) -> None:
    steps = _chaos_cycles(sandbox, clouds, kind, (kind,), runs=30)
    _assert_cycles(steps, 30, clouds, minimum=0.99)


def test_lost_create_answer_and_expired_token_mid_wait(sandbox: Sandbox, clouds: Clouds) -> None:
    """The create happened but its answer was lost: heatgen finds the stack by name and waits
    on it. Later, mid-wait, heat-api answers 401 once (an expired or revoked token):
    keystoneauth fetches a new token and heatgen keeps waiting."""
    name = "lost-create"
    site = thesis_site(clouds.workdir, name)
    clouds.proxied.heat.set_rules([
        Rule("lost", method="POST", path=r"/stacks$", times=1),
        Rule("401", method="GET", path=r"/events", skip=3, times=1),
    ])
    run = in_process(clouds.proxied.clouds_yaml)
    try:
        code, out, err = run(["deploy", str(site)])
        assert code == 0, err
        assert "Heat did make stack lost-create" in err
        assert f"stack {name} CREATE_COMPLETE" in out
        assert [s.stack_status for s in stacks_named(sandbox.heat, name)] == ["CREATE_COMPLETE"]
        faults = clouds.proxied.heat.faults()
        assert faults == {"lost": 1, "401": 1}
        assert len(clouds.proxied.heat.requests("POST", r"/stacks$")) == 1
        # One token at the start, a second one after the 401.
        assert len(clouds.proxied.keystone.requests("POST", r"/auth/tokens")) == 2
        assert len(clouds.proxied.tokens()) >= 2
    finally:
        _cleanup(sandbox, clouds, name)


def _kill_and_redeploy(sandbox: Sandbox, clouds: Clouds, name: str, how: signal.Signals,
                       after: float) -> dict[str, Any]:
    """A SIGKILL comes ``after`` seconds after the start; a SIGINT ``after`` seconds after Heat
    lists the stack, when heatgen waits on the create, however long heatgen took to start (on
    a busy machine more than 3 s: a Ctrl-C before the create request says only that it was
    interrupted, with no stack to leave)."""
    site = thesis_site(clouds.workdir, name)
    process = subprocess.Popen([*INTERRUPTIBLE_HEATGEN, "deploy", str(site)],
                               env=_env(clouds.direct), cwd=REPO, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    if how == signal.SIGINT:
        deadline = time.monotonic() + 120
        while not stacks_named(sandbox.heat, name):
            assert process.poll() is None and time.monotonic() < deadline, "no stack was made"
            time.sleep(0.2)
    time.sleep(after)
    process.send_signal(how)
    _, err = process.communicate(timeout=60)
    code, out, err2 = subprocesses(clouds.direct)(["deploy", str(site), "--timeout", "300"])
    return {"killed": (process.returncode, err), "redeploy": (code, out, err2),
            "stacks": [s.stack_status for s in stacks_named(sandbox.heat, name)]}


@pytest.mark.parametrize("moments", [
    pytest.param([(signal.SIGINT, 1.0), (signal.SIGKILL, 6.0)], id="2-kills"),
])
def test_killed_deploy_then_deploy_again_converges(
    sandbox: Sandbox, clouds: Clouds, moments: list[tuple[signal.Signals, float]]
) -> None:
    names = [f"killed-{how.name.lower()}-{index}" for index, (how, _) in enumerate(moments)]
    try:
        with ThreadPoolExecutor(max_workers=min(len(moments), 4)) as pool:
            results = list(pool.map(
                lambda item: _kill_and_redeploy(sandbox, clouds, item[0], *item[1]),
                zip(names, moments, strict=True),
            ))
        for (how, after), result in zip(moments, results, strict=True):
            code, err = result["killed"]
            if how == signal.SIGINT:
                # A thesis create takes several seconds on the sandbox: an early SIGINT must
                # interrupt it.
                assert code in ((130,) if after < 5.0 else (0, 130)), err
                assert "Traceback" not in err
                if code == 130:
                    assert "interrupted; stack" in err and "was left as it is" in err
            else:
                assert code in (0, -signal.SIGKILL)
            code, out, err = result["redeploy"]
            assert code == 0, err
            assert result["stacks"] in (["CREATE_COMPLETE"], ["UPDATE_COMPLETE"]), result
    finally:
        _cleanup(sandbox, clouds, *names)


@pytest.mark.slow
def test_twenty_killed_deploys_converge(sandbox: Sandbox, clouds: Clouds) -> None:
    import random

    rng = random.Random(20)
    moments = [(signal.SIGINT if i % 2 == 0 else signal.SIGKILL, rng.uniform(0.5, 14.0))
               for i in range(20)]
    test_killed_deploy_then_deploy_again_converges(sandbox, clouds, moments)


def _scale_pair(clouds: Clouds, site: Path, sizes: tuple[int, int], *extra: str
                ) -> list[tuple[int, str]]:
    processes = [
        subprocess.Popen([*HEATGEN, "scale", str(site), "--workers", str(size), *extra],
                         env=_env(clouds.direct), cwd=REPO, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
        for size in sizes
    ]
    results = []
    for process in processes:
        out, err = process.communicate(timeout=COMMAND_TIMEOUT)
        results.append((process.returncode, out + err))
    return results


def test_two_scales_at_once_one_wins_the_other_is_busy_or_queues(
    sandbox: Sandbox, clouds: Clouds
) -> None:
    name = "two-scales"
    site = thesis_site(clouds.workdir, name)
    run = in_process(clouds.direct)

    def desired() -> int:
        return int(sandbox.heat.stacks.get(name).parameters["worker_desired"])

    try:
        code, _, err = run(["deploy", str(site)])
        assert code == 0, err

        results = _scale_pair(clouds, site, (2, 3))
        codes = sorted(code for code, _ in results)
        assert codes == [0, 3], results
        winner = next(size for size, (code, _) in zip((2, 3), results, strict=True) if code == 0)
        loser_text = next(text for code, text in results if code == 3)
        assert "busy" in loser_text and "Traceback" not in loser_text, loser_text
        assert desired() == winner

        results = _scale_pair(clouds, site, (4, 5), "--wait-for-idle")
        assert [code for code, _ in results] == [0, 0], results
        assert desired() in (4, 5)
        assert any("waiting" in text for _, text in results), results
        assert [s.stack_status for s in stacks_named(sandbox.heat, name)] == ["UPDATE_COMPLETE"]
    finally:
        _cleanup(sandbox, clouds, name)


def test_outcome_names_the_error() -> None:
    assert outcome(0, "") == "ok"
    assert outcome(3, "heatgen: error: create the stack: HTTP 503 (x)\n") == \
        "exit 3: create the stack: HTTP N (x)"
