"""The full autoscaling loop against a real Keystone + Heat + Gnocchi + Aodh sandbox.

Thesis configuration (2 vCPU workers, min 1, one evaluation period) with the sandbox's short
10 s buckets instead of 60 s and a short cooldown: 90 % load grows the group by one, 5 %
shrinks it back to min. Reaction times are printed, not asserted: most of the wait is Gnocchi
needing two buckets before ``rate:mean`` has a value (with 60 s buckets the same loop took
minutes instead of seconds). The 60 s archive a thesis-sized site reads gets the same samples.
"""

from __future__ import annotations

import importlib.util
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from heatgen.sandbox.telemetry import GRANULARITY, SHORT_GRANULARITY
from tests.integration.conftest import REPO, sandbox_installed

# A sandbox of its own: CI runs it in the pool lane (scripts/test.sh), next to the others.
pytestmark = [pytest.mark.sandbox, pytest.mark.own_sandbox]

THESIS = REPO / "examples" / "thesis.yaml"
LOOP_TIMEOUT = 420.0


def _telemetry_installed() -> bool:
    return sandbox_installed() and all(
        importlib.util.find_spec(name) is not None
        for name in ("gnocchi", "aodh", "gnocchiclient", "psycopg", "sqlalchemy_utils")
    )


def _postgres_installed() -> bool:
    return bool(shutil.which("initdb") or list(Path("/usr/lib/postgresql").glob("*/bin/initdb")))


@pytest.fixture(scope="module")
def telemetry_sandbox() -> Iterator[Any]:
    if not _telemetry_installed():
        pytest.skip("needs gnocchi, aodh, gnocchiclient, psycopg, sqlalchemy-utils")
    if not _postgres_installed():
        pytest.skip("needs PostgreSQL (apt-get install postgresql)")
    from heatgen.sandbox import control
    from heatgen.sandbox.settings import on_free_ports

    # Not under pytest's basetemp: pytest keeps that 0700, and as root the server runs as
    # the postgres user, which must traverse to its cluster.
    state = Path(tempfile.mkdtemp(prefix="heatgen-telemetry-"))
    state.chmod(0o711)
    config = on_free_ports(state, telemetry=True, start_timeout=300)
    started = control.up(config)
    print(f"\ntelemetry sandbox ready in {started.startup_seconds:.1f} s, "
          f"RSS {started.rss_bytes / 2**20:.0f} MiB")
    try:
        yield config
    finally:
        control.down(config)
        shutil.rmtree(state, ignore_errors=True)


def _site(tmp_path: Path) -> Path:
    text = THESIS.read_text().replace("site: bergen-grid", "site: loop-grid")
    text = text.replace("cooldown: 60", "cooldown: 15")
    text = text.replace("granularity: 60", f"granularity: {SHORT_GRANULARITY}")
    path = tmp_path / "loop-grid.yaml"
    path.write_text(text)
    return path


def _wait_for(what: str, check: Any, timeout: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if check():
            return time.monotonic() - started
        time.sleep(2)
    raise AssertionError(f"{what} did not happen within {timeout:.0f} s")


def _measures(generator: Any, granularity: int) -> list[Any]:
    """The ``mean`` buckets of ``granularity`` of one of the generator's workers' ``cpu``."""
    server_id = sorted(generator.counters)[0]
    return list(generator.gnocchi.metric.get_measures(
        "cpu", resource_id=server_id, aggregation="mean", granularity=granularity,
        refresh=True))


def test_load_grows_and_shrinks_the_group(
    telemetry_sandbox: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from heatgen.cli import main as cli
    from heatgen.config import load_site
    from heatgen.ops import alarms
    from heatgen.sandbox import hooks, loadgen

    monkeypatch.setenv("HEATGEN_SANDBOX_DIR", str(telemetry_sandbox.state_dir))
    for name in ("OS_CLOUD", "OS_AUTH_URL"):
        monkeypatch.delenv(name, raising=False)
    site_path = _site(tmp_path)
    site = load_site(site_path)
    assert cli(["deploy", str(site_path)]) == 0
    cloud = hooks.open_sandbox(telemetry_sandbox).cloud
    try:
        states = {a.name: a.state for a in alarms.site_alarms(cloud, site)}
        assert set(states) == {"cpu_alarm_high", "cpu_alarm_low"}

        def size() -> int:
            stack = cloud.get_stack(site.site)
            assert stack is not None
            return int(stack.outputs.get("worker_count") or 0)

        generator = loadgen.for_sandbox(site_path, 90.0, state_dir=telemetry_sandbox.state_dir)
        stop = threading.Event()

        def sleep(seconds: float) -> None:
            if stop.wait(seconds):
                raise KeyboardInterrupt

        thread = threading.Thread(
            target=loadgen.run, args=(generator,), kwargs={"duration": None, "sleep": sleep},
            daemon=True,
        )
        thread.start()
        try:
            grew = _wait_for("scale-up", lambda: size() >= 2, LOOP_TIMEOUT)
            high = {a.name: a.state for a in alarms.site_alarms(cloud, site)}
            print(f"\n90 %: group grew from 1 after {grew:.0f} s of load; alarms {high}")
            assert high["cpu_alarm_high"] == "alarm"
            generator.percent = 5.0
            shrank = _wait_for("scale-in to min", lambda: size() == 1, LOOP_TIMEOUT)
            low = {a.name: a.state for a in alarms.site_alarms(cloud, site, history=True)}
            print(f"5 %: group shrank to 1 after {shrank:.0f} s; alarms {low}")
            assert low["cpu_alarm_low"] == "alarm"
            assert low["cpu_alarm_high"] == "ok"
            # The 60 s archive (a thesis-sized site's alarms) holds the same samples.
            assert _measures(generator, GRANULARITY), f"no {GRANULARITY} s bucket"
        finally:
            stop.set()
            thread.join(30)
    finally:
        cli(["delete", str(site_path), "--yes"])
