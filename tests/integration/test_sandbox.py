"""``heatgen sandbox`` against its real Keystone + Heat (never a mock of Heat)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from heatgen.errors import ExitStatus
from heatgen.sandbox import control, exercise
from heatgen.sandbox.master import HANDLE_TYPE, MASTER_HANDLE, signal_master
from heatgen.sandbox.settings import CLOUD_NAME, SandboxConfig, on_free_ports
from tests.integration.conftest import Sandbox, free_ports, sandbox_installed

pytestmark = pytest.mark.sandbox


def run_heatgen(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The real command line, in a fresh process."""
    return subprocess.run(
        [sys.executable, "-m", "heatgen", *args],
        capture_output=True, text=True, timeout=300, env={**os.environ, **(env or {})},
        check=False,
    )


def test_up_status_env_round_trip(sandbox: Sandbox, tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    config = sandbox.config
    assert sandbox.startup_seconds > 0

    current = control.status(config)
    assert current.state == "running"
    ports = {s.name: s.port for p in current.processes for s in p.services}
    assert ports == {
        "keystone": config.keystone_port,
        "heat-api": config.heat_port,
        "heat-api-cfn": config.cfn_port,
        "heat-engine": None,
    }
    assert all(s.answering for p in current.processes for s in p.services if s.port)
    assert all(p.rss_bytes and p.rss_bytes > 10 * 2**20 for p in current.processes)

    # `up` on a running sandbox changes nothing.
    again = control.up(config)
    assert again.notes == ("already running",)
    assert [p.pid for p in again.processes] == [p.pid for p in current.processes]

    shown = run_heatgen("sandbox", "status", "--state-dir", str(config.state_dir), "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["state"] == "running"
    human = run_heatgen("sandbox", "status", "--state-dir", str(config.state_dir))
    assert f"127.0.0.1:{config.heat_port}" in human.stdout and "RSS" in human.stdout
    assert sandbox.auth["password"] not in human.stdout + shown.stdout

    printed = run_heatgen("sandbox", "env", "--state-dir", str(config.state_dir))
    assert printed.returncode == 0, printed.stderr
    entry = yaml.safe_load(printed.stdout)["clouds"][CLOUD_NAME]
    assert entry["auth"] == sandbox.auth
    assert entry["auth"]["auth_url"] == f"http://127.0.0.1:{config.keystone_port}/v3"

    # --write merges into an existing clouds.yaml without touching other clouds.
    clouds_yaml = tmp_path / "clouds.yaml"
    clouds_yaml.write_text(yaml.safe_dump({"clouds": {"other": {"auth": {"x": 1}}}}))
    written = run_heatgen(
        "sandbox", "env", "--state-dir", str(config.state_dir), "--write", str(clouds_yaml)
    )
    assert written.returncode == 0, written.stderr
    assert sandbox.auth["password"] not in written.stdout + written.stderr
    merged = yaml.safe_load(clouds_yaml.read_text())
    assert merged["clouds"]["other"] == {"auth": {"x": 1}}
    assert merged["clouds"][CLOUD_NAME] == entry
    assert clouds_yaml.stat().st_mode & 0o077 == 0

    # What `--os-cloud heatgen-sandbox` resolves to works against the sandbox.
    import openstack.config
    from heatclient import client as heat_client

    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(clouds_yaml))  # the tests' empty one else
    cloud = openstack.config.OpenStackConfig(config_files=[str(clouds_yaml)]).get_one(
        CLOUD_NAME
    )
    heat = heat_client.Client("1", session=cloud.get_session())
    assert isinstance(list(heat.stacks.list()), list)

    secrets_file = config.state_dir / "secrets.json"
    assert secrets_file.stat().st_mode & 0o777 == 0o600


def test_stack_create_patch_update_delete(sandbox: Sandbox) -> None:
    result = exercise.run_cycle(
        sandbox.heat, "grid-cycle", sandbox.template(), sandbox.environment(),
        session=sandbox.session, create_parameters={"worker_count": 1},
        update_parameters={"worker_count": 3}, master_data="10.0.0.5",
    )
    assert result.ok, result.error
    assert json.loads(result.outputs_after_create["master_data"]) == {"master": "10.0.0.5"}
    assert result.outputs_after_create["worker_count"] == 1
    assert result.outputs_after_update["worker_count"] == 3
    assert str(result.outputs_after_update["scale_up_url"]).startswith(
        f"http://127.0.0.1:{sandbox.config.heat_port}/v1/"
    )
    print(
        f"create {result.create_s:.1f} s, update {result.update_s:.1f} s, "
        f"delete {result.delete_s:.1f} s"
    )


def _create_signalled(sandbox: Sandbox, name: str) -> str:
    created = sandbox.heat.stacks.create(
        stack_name=name, template=sandbox.template(), environment=sandbox.environment(),
        parameters={"worker_count": 2},
    )
    stack_id = str(created["stack"]["id"])
    request = signal_master(sandbox.heat, stack_id, session=sandbox.session, data="10.0.0.7")
    assert request is not None
    assert request.headers["Content-Type"] == "application/json"
    assert "<redacted>" in repr(request) and request.headers["X-Auth-Token"] not in repr(request)
    exercise.wait_for_stack(sandbox.heat, stack_id, "CREATE")
    return stack_id


def test_master_handle_is_found_and_signal_is_recorded(sandbox: Sandbox) -> None:
    stack_id = _create_signalled(sandbox, "grid-master")
    try:
        handle = sandbox.heat.resources.get(stack_id, MASTER_HANDLE)
        assert handle.resource_type == HANDLE_TYPE
        events = sandbox.heat.events.list(stack_id, resource_name=MASTER_HANDLE)
        reasons = " ".join(e.resource_status_reason for e in events)
        assert "Signal: status:SUCCESS" in reasons or "SUCCESS" in reasons
        # Once created there is nothing left to signal.
        assert signal_master(sandbox.heat, stack_id, timeout=5) is None
    finally:
        sandbox.heat.stacks.delete(stack_id)
        exercise.wait_for_stack(sandbox.heat, stack_id, "DELETE")


def test_down_then_up_keeps_stacks(sandbox: Sandbox) -> None:
    config = sandbox.config
    stack_id = _create_signalled(sandbox, "grid-kept")

    stopped = control.down(config)
    assert stopped.state == "stopped"
    assert not list(config.run_dir.glob("*.pid"))
    assert control.status(config).state == "stopped"

    restarted = control.up(config)
    assert restarted.state == "running"
    assert restarted.startup_seconds is not None
    stack = sandbox.heat.stacks.get(stack_id)
    assert stack.stack_status == "CREATE_COMPLETE"
    assert exercise.outputs(stack)["worker_count"] == 2

    sandbox.heat.stacks.update(stack_id, existing=True, parameters={"worker_count": 1})
    updated = exercise.wait_for_stack(sandbox.heat, stack_id, "UPDATE")
    assert exercise.outputs(updated)["worker_count"] == 1
    sandbox.heat.stacks.delete(stack_id)
    exercise.wait_for_stack(sandbox.heat, stack_id, "DELETE")


def test_crash_is_reported_and_up_recovers(sandbox: Sandbox) -> None:
    config = sandbox.config
    heat_pid = next(p.pid for p in control.status(config).processes if p.name == "heat")
    assert heat_pid is not None
    os.kill(heat_pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while control.status(config, probe=False).state != "crashed":
        assert time.monotonic() < deadline, "kill -9 not detected"
        time.sleep(0.1)

    crashed = control.status(config)
    heat = next(p for p in crashed.processes if p.name == "heat")
    assert heat.state == "crashed" and heat.pid == heat_pid
    assert f"heat (pid {heat_pid})" in control.describe_crash(crashed)

    shown = run_heatgen("sandbox", "status", "--state-dir", str(config.state_dir))
    assert shown.returncode == int(ExitStatus.CLOUD)
    assert "crashed" in shown.stdout and "heatgen sandbox up" in shown.stdout

    recovered = control.up(config)
    assert recovered.state == "running"
    assert any("crashed" in note for note in recovered.notes)
    assert isinstance(list(sandbox.heat.stacks.list()), list)


def test_busy_port_is_a_clear_error(sandbox: Sandbox, tmp_path: Path) -> None:
    # Taken by the running sandbox itself.
    other = SandboxConfig(
        state_dir=tmp_path / "second", keystone_port=sandbox.config.keystone_port,
        heat_port=free_ports(1)[0], cfn_port=free_ports(1)[0],
    )
    with pytest.raises(control.PortBusy) as raised:
        control.up(other)
    assert str(sandbox.config.keystone_port) in str(raised.value)
    assert "--keystone-port" in str(raised.value)
    assert not (other.state_dir / "run").exists()


def test_lost_pid_files_are_named_in_the_port_error(sandbox: Sandbox) -> None:
    config = sandbox.config
    saved = {path: path.read_text() for path in config.run_dir.glob("*.pid")}
    pids = sorted(int(text) for text in saved.values())
    for path in saved:
        path.unlink()
    try:
        assert control.status(config).state == "stopped"
        with pytest.raises(control.PortBusy) as raised:
            control.up(config)
        assert raised.value.holders == pids
        assert f"kill {' '.join(map(str, pids))}" in str(raised.value)
    finally:
        for path, text in saved.items():
            path.write_text(text)
    assert control.status(config).state == "running"


def _postgres_available() -> bool:
    from heatgen.errors import SandboxError
    from heatgen.sandbox import postgres

    try:
        postgres.driver()
        postgres._binary("initdb")
    except SandboxError:
        return False
    return sandbox_installed()


@pytest.mark.own_sandbox  # CI runs it at the end of the sandbox lane (scripts/test.sh)
@pytest.mark.skipif(not _postgres_available(), reason="needs PostgreSQL and psycopg2")
def test_postgres_backend_runs_a_cycle_and_restarts() -> None:
    from heatclient import client as heat_client
    from heatclient.common import environment_format, template_format

    from tests.integration.conftest import SANDBOX_ENVIRONMENT, SMALL_GRID

    # As root the server runs as `postgres`, which cannot enter pytest's private tmp_path.
    state_dir = Path(tempfile.mkdtemp(prefix="heatgen-pg-"))
    config = on_free_ports(state_dir, backend="postgres")
    try:
        started = control.up(config)
        assert [p.name for p in started.processes] == ["postgres", "keystone", "heat"]
        assert all(p.state == "running" for p in started.processes)
        session = control.session(config)
        heat = heat_client.Client("1", session=session)
        template = template_format.parse(SMALL_GRID.read_text())
        environment = environment_format.parse(SANDBOX_ENVIRONMENT.read_text())
        result = exercise.run_cycle(
            heat, "pg-cycle", template, environment, session=session,
            update_parameters={"worker_count": 2}, delete=False,
        )
        assert result.ok, result.error
        control.down(config)
        assert control.status(config).state == "stopped"
        control.up(config)
        heat = heat_client.Client("1", session=control.session(config))
        assert heat.stacks.get("pg-cycle").stack_status == "UPDATE_COMPLETE"
    finally:
        control.down(config)
        shutil.rmtree(state_dir, ignore_errors=True)


@pytest.mark.skipif(not sandbox_installed(), reason="needs the sandbox extra")
def test_busy_port_from_the_command_line(tmp_path: Path) -> None:
    keystone_port, heat_port, cfn_port = free_ports(3)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", heat_port))
        squatter.listen()
        result = run_heatgen(
            "sandbox", "up", "--state-dir", str(tmp_path / "sb"),
            "--keystone-port", str(keystone_port), "--heat-port", str(heat_port),
            "--cfn-port", str(cfn_port),
        )
    assert result.returncode == int(ExitStatus.CLOUD)
    assert "Traceback" not in result.stderr
    assert f"127.0.0.1:{heat_port}" in result.stderr and "--heat-port" in result.stderr
