"""The sandbox's pure parts, as values: no server, no network (fast; not marked sandbox)."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from heatgen.errors import SandboxError, UsageError
from heatgen.sandbox import configfiles, control, settings
from heatgen.sandbox.master import build_master_signal
from heatgen.sandbox.sqlite_safety import autoincrement_sql, rebuild_integer_keys

REPO = Path(__file__).resolve().parents[1]


def test_master_signal_is_what_curl_cli_sends() -> None:
    request = build_master_signal(
        "http://127.0.0.1:18004/v1/p/stacks/g/1/resources/master_wait_handle/signal",
        "tok-123", reason="condor up", data="10.0.0.5",
    )
    assert request.method == "POST"
    assert request.url.endswith("/resources/master_wait_handle/signal")
    assert request.headers == {
        "X-Auth-Token": "tok-123",
        "Content-Type": "application/json",
        "Accept": "application/json",
    }
    assert json.loads(request.body) == {
        "status": "SUCCESS", "id": "master", "reason": "condor up", "data": "10.0.0.5",
    }
    assert "tok-123" not in repr(request)
    with pytest.raises(ValueError):
        build_master_signal("http://x", "t", status="DONE")


def test_state_dir_honours_xdg_data_home(tmp_path: Path) -> None:
    assert settings.default_state_dir({"XDG_DATA_HOME": str(tmp_path)}) == (
        tmp_path / "heatgen" / "sandbox"
    )
    assert settings.default_state_dir({}).parts[-4:] == (".local", "share", "heatgen", "sandbox")
    assert settings.default_state_dir(
        {"HEATGEN_SANDBOX_DIR": str(tmp_path / "x"), "XDG_DATA_HOME": "/elsewhere"}
    ) == tmp_path / "x"
    assert settings.default_clouds_yaml({"XDG_CONFIG_HOME": str(tmp_path)}) == (
        tmp_path / "openstack" / "clouds.yaml"
    )


def test_ports_are_validated_and_remembered(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="must differ"):
        settings.SandboxConfig(state_dir=tmp_path, keystone_port=1, heat_port=1)
    with pytest.raises(UsageError, match="--cfn-port"):
        settings.SandboxConfig(state_dir=tmp_path, cfn_port=70000)
    config = settings.SandboxConfig(state_dir=tmp_path, keystone_port=25000)
    settings.save_settings(config)
    assert settings.resolve_config(tmp_path).keystone_port == 25000
    assert settings.resolve_config(tmp_path, keystone_port=26000).keystone_port == 26000


def test_secrets_are_private_and_stable(tmp_path: Path) -> None:
    config = settings.SandboxConfig(state_dir=tmp_path)
    first = settings.ensure_secrets(config)
    assert settings.ensure_secrets(config) == first
    assert (tmp_path / settings.SECRETS_FILE).stat().st_mode & 0o777 == 0o600
    assert first.admin_password not in repr(first)
    assert len(first.auth_encryption_key) == 32


def test_heat_conf_binds_loopback_and_uses_in_process_messaging(tmp_path: Path) -> None:
    config = settings.SandboxConfig(state_dir=tmp_path, heat_port=28004, cfn_port=28000)
    secrets = settings.ensure_secrets(config)
    text = configfiles.heat_conf(config, secrets, "sqlite:///x", tmp_path / "paste.ini")
    assert "transport_url = fake:/" in text
    assert "heat_waitcondition_server_url = http://127.0.0.1:28000/v1/waitcondition" in text
    assert "0.0.0.0" not in text
    assert "$" not in secrets.admin_password + secrets.heat_password  # oslo.config interpolation


def test_clouds_entry_merges_without_losing_other_clouds(tmp_path: Path) -> None:
    config = settings.SandboxConfig(state_dir=tmp_path / "sb", keystone_port=25000)
    with pytest.raises(SandboxError, match="heatgen sandbox up"):
        control.clouds_entry(config)
    settings.ensure_secrets(config)
    target = tmp_path / "clouds.yaml"
    original = ("# my clouds\nclouds:\n  prod:  # the real one\n"
                "    auth: {auth_url: 'https://x'}\n")
    target.write_text(original)
    control.write_clouds_yaml(config, target)
    text = target.read_text()
    assert text.startswith("# my clouds\nclouds:\n  prod:  # the real one\n")
    data = yaml.safe_load(text)
    assert set(data["clouds"]) == {"prod", settings.CLOUD_NAME}
    assert data["clouds"][settings.CLOUD_NAME]["auth"]["auth_url"] == "http://127.0.0.1:25000/v3"
    backup = tmp_path / "clouds.yaml.bak"
    assert backup.read_text() == original
    assert oct(backup.stat().st_mode & 0o777) == oct(target.stat().st_mode & 0o777) == "0o600"
    control.write_clouds_yaml(config, target)  # again: replaced, not added twice
    assert yaml.safe_load(target.read_text()) == data
    target.write_text("- not\n- a mapping\n")
    with pytest.raises(SandboxError, match="not changed"):
        control.write_clouds_yaml(config, target)
    assert target.read_text() == "- not\n- a mapping\n"


def test_status_of_an_empty_state_dir_is_stopped(tmp_path: Path) -> None:
    current = control.status(settings.SandboxConfig(state_dir=tmp_path))
    assert current.state == "stopped" and current.rss_bytes == 0


def test_stale_pid_file_is_reported_as_crashed(tmp_path: Path) -> None:
    config = settings.SandboxConfig(state_dir=tmp_path)
    config.run_dir.mkdir(parents=True)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    config.pid_file("heat").write_text(f"{dead.pid}\n")
    current = control.status(config)
    assert current.state == "crashed"
    assert f"heat (pid {dead.pid})" in control.describe_crash(current)
    notes = control.down(config).notes
    assert any("stale PID file" in note for note in notes)
    assert control.status(config).state == "stopped"


def test_autoincrement_rewrite_keeps_data_and_stops_id_reuse(tmp_path: Path) -> None:
    database = tmp_path / "t.sqlite"
    con = sqlite3.connect(database)
    con.executescript(
        """
        CREATE TABLE parent (id VARCHAR(36) NOT NULL, PRIMARY KEY (id));
        CREATE TABLE event (
            id INTEGER NOT NULL,
            stack_id VARCHAR(36) NOT NULL,
            PRIMARY KEY (id),
            FOREIGN KEY(stack_id) REFERENCES parent (id),
            UNIQUE (stack_id, id)
        );
        CREATE INDEX ix_event_stack ON event (stack_id);
        INSERT INTO parent VALUES ('s');
        INSERT INTO event (stack_id) VALUES ('s'), ('s'), ('s');
        DELETE FROM event WHERE id = 3;
        """
    )
    con.commit()
    con.close()
    assert rebuild_integer_keys(database) == ["event"]
    assert rebuild_integer_keys(database) == []  # idempotent
    con = sqlite3.connect(database)
    assert [r[0] for r in con.execute("SELECT id FROM event ORDER BY id")] == [1, 2]
    con.execute("INSERT INTO event (stack_id) VALUES ('s')")
    con.execute("DELETE FROM event WHERE id = 3")
    con.execute("INSERT INTO event (stack_id) VALUES ('s')")
    assert max(r[0] for r in con.execute("SELECT id FROM event")) == 4  # 3 not reused
    assert con.execute(
        "SELECT count(*) FROM sqlite_master WHERE name = 'ix_event_stack'"
    ).fetchone() == (1,)
    with pytest.raises(ValueError):
        autoincrement_sql("CREATE TABLE other (x INTEGER)", "event", "n", "id")


def test_sandbox_environment_maps_absent_services_to_none() -> None:
    from heatclient.common import environment_format

    env = environment_format.parse((REPO / "environments" / "sandbox.yaml").read_text())
    registry = env["resource_registry"]
    for kind in (
        "OS::Nova::Server", "OS::Neutron::Port", "OS::Neutron::FloatingIP",
        "OS::Neutron::SecurityGroup", "OS::Neutron::Net", "OS::Neutron::Subnet",
        "OS::Neutron::Router", "OS::Neutron::RouterInterface", "OS::Cinder::Volume",
        "OS::Cinder::VolumeAttachment", "OS::Aodh::GnocchiAggregationByResourcesAlarm",
        "OS::Aodh::PrometheusAlarm", "OS::Aodh::Alarm",
    ):
        assert registry[kind] == "OS::Heat::None", kind


def test_sandbox_cli_import_stays_light() -> None:
    code = (
        "import sys, heatgen.cli.sandbox; "
        "heavy = [m for m in ('keystone', 'heat', 'heatclient', 'keystoneauth1', "
        "'heatgen.sandbox.control') if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


def test_on_free_ports_gives_distinct_ports_and_telemetry_brings_postgres(tmp_path: Path) -> None:
    config = settings.on_free_ports(tmp_path, telemetry=True, start_timeout=300)
    ports = [config.keystone_port, config.heat_port, config.cfn_port, config.postgres_port,
             config.gnocchi_port, config.aodh_port]
    assert len(set(ports)) == 6
    assert (config.backend, config.telemetry, config.start_timeout) == ("postgres", True, 300)
    assert settings.on_free_ports(tmp_path).backend == "sqlite"


def _made_sandbox(state_dir: Path, backend: str = "sqlite") -> settings.SandboxConfig:
    """A state dir as a stopped sandbox leaves it: settings, secrets, initialised data."""
    config = settings.SandboxConfig(state_dir=state_dir, backend=backend)  # type: ignore[arg-type]
    settings.save_settings(config)
    settings.ensure_secrets(config)
    config.data_dir.mkdir(parents=True)
    (config.data_dir / "keystone-initialised").write_text("30.0.0\n")
    return config


def test_a_stopped_sandbox_is_reported_at_once_with_how_to_start_it(tmp_path: Path) -> None:
    from heatgen.sandbox.hooks import Locator

    _made_sandbox(tmp_path / "sb")
    with pytest.raises(SandboxError) as stopped:
        Locator(tmp_path / "sb").entry()
    assert str(stopped.value) == (f"the heatgen sandbox in {tmp_path / 'sb'} is stopped; "
                                  "start it with `heatgen sandbox up`")
    assert Locator(tmp_path / "none").entry() is None  # no sandbox here: no fallback


def test_switching_backend_is_refused_with_the_exact_command_and_changes_nothing(
    tmp_path: Path,
) -> None:
    made = _made_sandbox(tmp_path / "sb")
    wanted = settings.resolve_config(made.state_dir, backend="postgres", telemetry=True)
    with pytest.raises(SandboxError) as refused:
        control.up(wanted)
    assert "keeps its stacks and users in sqlite; it cannot move them to postgres" in \
        str(refused.value)
    assert "`heatgen sandbox up --reset --backend postgres --telemetry` (deletes its stacks)" \
        in str(refused.value)
    assert settings.stored_settings(made.state_dir)["backend"] == "sqlite"
    assert not (made.state_dir / "run").exists()  # nothing was started


def test_reset_asks_and_needs_yes_off_a_terminal(tmp_path: Path, capsys: Any) -> None:
    from heatgen.cli import main

    made = _made_sandbox(tmp_path / "sb")
    for command in (["up", "--reset"], ["down", "--reset"]):
        assert main(["sandbox", *command, "--state-dir", str(made.state_dir)]) == 2
        assert "pass --yes when not on a terminal" in capsys.readouterr().err
    assert control.has_data(made)


def test_load_on_a_prometheus_grid_says_it_needs_gnocchi(capsys: Any) -> None:
    from heatgen.cli import main

    site = REPO / "examples" / "prometheus.yaml"
    assert main(["sandbox", "load", str(site), "--cpu", "50"]) == 2
    assert capsys.readouterr().err == (
        f"heatgen: error: {site}: autoscaling.telemetry is prometheus, but `heatgen sandbox "
        "load` feeds Gnocchi (the sandbox's telemetry has no Prometheus): it needs "
        "autoscaling.telemetry: gnocchi\n")


def test_tests_see_none_of_the_users_clouds_or_sandbox() -> None:
    import os

    assert not any(name.startswith("OS_") and name != "OS_CLIENT_CONFIG_FILE"
                   for name in os.environ)
    assert "HEATGEN_SANDBOX_DIR" not in os.environ
    assert Path(os.environ["OS_CLIENT_CONFIG_FILE"]).read_text() == "clouds: {}\n"
    assert settings.default_state_dir().is_relative_to(Path(os.environ["XDG_DATA_HOME"]))


HEAT_THREADS = """
import sys
from oslo_service import backend
backend.init_backend(backend.BackendType.THREADING)
from heat.engine import service
from heatgen.sandbox.heat_process import forget_finished_threads

class Plain(service.ThreadGroup):
    pass

class Forgetting(service.ThreadGroup):
    pass

forget_finished_threads(Forgetting)
for kind in (Plain, Forgetting):
    group = kind()
    started = 0
    try:
        for _ in range(1200):
            group.add_thread(lambda: None).join()
            started += 1
    except RuntimeError as error:
        print(kind.__name__, started, error)
    else:
        print(kind.__name__, started, len(group.threads))
"""


def test_the_sandbox_heat_forgets_finished_threads_of_a_stack() -> None:
    """Heat's ThreadGroup on the threading backend counts every thread it ever started: a
    stack's 1001st is refused although the others are done (a group of ~450 members)."""
    pytest.importorskip("heat.engine.service", reason="needs the sandbox extra")
    done = subprocess.run([sys.executable, "-c", HEAT_THREADS], capture_output=True, text=True,
                          timeout=120, cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert lines[0] == "Plain 1000 Maximum number of threads reached", lines
    assert lines[1] == "Forgetting 1200 1", lines


LITERAL_EVAL = """
import threading
from oslo_service import backend
backend.init_backend(backend.BackendType.THREADING)
from heat.engine import sync_point
from heatgen.sandbox.heat_process import one_literal_eval_at_a_time

one_literal_eval_at_a_time(sync_point)
one_literal_eval_at_a_time(sync_point)  # a second call changes nothing
key = sync_point.str_pack_tuple((7, True))
print(sync_point._deserialize({key: {key: 1}}))
answers = []
with sync_point.ast.lock:  # while the lock is held, a read waits for it
    reader = threading.Thread(target=lambda: answers.append(sync_point._str_unpack_tuple(key)))
    reader.start()
    reader.join(0.5)
    print("while locked", answers)
reader.join(10)
print("after", answers)
"""


def test_the_sandbox_heat_reads_sync_points_one_at_a_time() -> None:
    """Heat reads sync points back with ast.literal_eval from many threads; CPython 3.11's AST
    builder is not safe for that, so the sandbox's Heat takes one lock around it."""
    pytest.importorskip("heat.engine.sync_point", reason="needs the sandbox extra")
    done = subprocess.run([sys.executable, "-c", LITERAL_EVAL], capture_output=True,
                          text=True, timeout=120, cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines() == [
        "{(7, True): {(7, True): 1}}", "while locked []", "after [(7, True)]"]
