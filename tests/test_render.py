"""What `heatgen render` produces, checked as parsed HOT (heatclient's own parsers)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
from heatclient.common import environment_format, template_format, template_utils

from heatgen.cli import main
from heatgen.config import load_site
from heatgen.errors import RenderError
from heatgen.render import (
    ENVIRONMENT,
    HOT_FILES,
    MAIN_TEMPLATE,
    MEMBER_TEMPLATE,
    cloud_configs,
    hot_files,
    output_files,
    render_site,
    write_rendered,
)

from .conftest import EXAMPLES, REPO, example_paths


def _rendered(example: str) -> dict[str, Any]:
    grid = render_site(load_site(EXAMPLES / f"{example}.yaml"))
    parsed: dict[str, Any] = {}
    for name in HOT_FILES:
        parsed[name] = template_format.parse(grid.files[name])
    parsed[ENVIRONMENT] = environment_format.parse(grid.files[ENVIRONMENT])
    return parsed


@pytest.mark.parametrize("example", example_paths(), ids=lambda p: p.stem)
def test_every_output_parses_with_heatclient(example: Path, tmp_path: Path) -> None:
    site = load_site(example)
    write_rendered(render_site(site), tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(output_files(site))
    for name in hot_files(site):
        doc = template_format.parse((tmp_path / name).read_text())
        assert doc["heat_template_version"] == site.heat_template_version
    env = environment_format.parse((tmp_path / ENVIRONMENT).read_text())
    assert env["resource_registry"] == {
        g.names.member_type: g.names.member_template for g in site.groups}
    for name in cloud_configs(site):
        assert (tmp_path / name).read_text().startswith("#cloud-config\n")
    # The way deploy hands the files to Heat: heatclient resolves get_file and the registry.
    files, template = template_utils.get_template_contents(str(tmp_path / MAIN_TEMPLATE))
    env_files, env_doc = template_utils.process_multiple_environments_and_files(
        env_paths=[str(tmp_path / ENVIRONMENT)]
    )
    assert any(key.endswith("/master-boot.yaml") for key in files)
    for group in site.groups:
        worker_url = env_doc["resource_registry"][group.names.member_type]
        assert worker_url in env_files
        assert any(key.endswith(f"/{group.names.boot_file}") for key in env_files)


# `heatgen render EXAMPLE -o OUT` for each (example, out), in this order, in one process; the
# exit status of each, by example, on the last line.
RENDER_ALL = """
import json, sys
from heatgen.cli import main
codes = {example: main(["render", example, "-o", out]) for example, out in json.loads(sys.argv[1])}
print(json.dumps(codes))
"""


@pytest.fixture(scope="module")
def renders_by_seed(tmp_path_factory: pytest.TempPathFactory
                    ) -> list[tuple[dict[str, int], Path]]:
    """Every example rendered by two processes at once, one with PYTHONHASHSEED 1 and one with
    2, the second in the reverse order (so that no example is rendered after the same others
    in both): (exit status by example, output root) of each."""
    examples = [str(p) for p in example_paths()]
    runs = []
    for seed, order in (("1", examples), ("2", examples[::-1])):
        root = tmp_path_factory.mktemp(f"seed-{seed}")
        jobs = [(example, str(root / Path(example).stem)) for example in order]
        process = subprocess.Popen(
            [sys.executable, "-c", RENDER_ALL, json.dumps(jobs)],
            env={**os.environ, "PYTHONHASHSEED": seed},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        runs.append((process, root))
    results = []
    for process, root in runs:
        stdout, stderr = process.communicate()
        assert process.returncode == 0, stderr
        results.append((json.loads(stdout.splitlines()[-1]), root))
    return results


@pytest.mark.parametrize("example", example_paths(), ids=lambda p: p.stem)
def test_render_is_deterministic_across_processes(
    example: Path, renders_by_seed: list[tuple[dict[str, int], Path]]
) -> None:
    outputs = []
    for codes, root in renders_by_seed:
        assert codes[str(example)] == 0
        out = root / example.stem
        outputs.append({p.name: p.read_bytes() for p in sorted(out.iterdir())})
    assert outputs[0] == outputs[1]
    assert len(outputs[0]) == len(output_files(load_site(example)))


def test_thesis_master_port_floating_ip_and_wait_condition() -> None:
    grid = _rendered("thesis")[MAIN_TEMPLATE]
    res = grid["resources"]
    assert res["master_port"]["type"] == "OS::Neutron::Port"
    fixed_ips = res["master_port"]["properties"]["fixed_ips"]
    assert fixed_ips == [{"subnet": {"get_param": "private_subnet"}}]
    assert res["master_floating_ip"]["properties"] == {
        "floating_network": {"get_param": "floating_network"},
        "port_id": {"get_resource": "master_port"},
    }
    master = res["master"]["properties"]
    assert master["networks"] == [{"port": {"get_resource": "master_port"}}]
    assert master["user_data_update_policy"] == "IGNORE"
    params = master["user_data"]["str_replace"]["params"]
    assert params["__HEATGEN_WC_NOTIFY__"] == {"get_attr": ["master_wait_handle", "curl_cli"]}
    assert res["master_wait"]["properties"] == {
        "handle": {"get_resource": "master_wait_handle"},
        "count": 1,
        "timeout": {"get_param": "wait_timeout"},
    }
    assert params["__HEATGEN_WT_NOTIFY__"] == {"get_attr": ["worker_token_handle", "curl_cli"]}
    assert res["worker_token_wait"]["properties"] == {
        "handle": {"get_resource": "worker_token_handle"},
        "count": 1,
        "timeout": {"get_param": "wait_timeout"},
    }
    assert res["worker_token_wait"]["depends_on"] == "master_wait"
    # Workers start once the master is ready and has handed over their token.
    assert res["workers"]["depends_on"] == ["master_wait", "worker_token_wait"]


def test_security_groups_open_ssh_from_cidr_and_condor_only_inside_the_pool() -> None:
    res = _rendered("thesis")[MAIN_TEMPLATE]["resources"]
    ssh = res["master_security_group"]["properties"]["rules"]
    assert ssh == [{
        "protocol": "tcp", "port_range_min": 22, "port_range_max": 22,
        "remote_ip_prefix": {"get_param": "ssh_cidr"},
    }]
    condor = res["pool_security_group"]["properties"]["rules"][0]
    assert (condor["port_range_min"], condor["port_range_max"]) == (9618, 9618)
    assert condor["remote_mode"] == "remote_group_id"
    assert "remote_ip_prefix" not in condor


def test_workers_are_tagged_with_the_parent_stack_and_have_no_public_address() -> None:
    parsed = _rendered("thesis")
    group = parsed[MAIN_TEMPLATE]["resources"]["workers"]
    assert group["type"] == "OS::Heat::AutoScalingGroup"
    props = group["properties"]
    assert props["min_size"] == {"get_param": "worker_min"}
    # A group asked for 0 workers is parked through its maximum (Heat reads desired 0 as unset).
    assert props["max_size"] == {"if": ["parked", 0, {"get_param": "worker_max"}]}
    assert parsed[MAIN_TEMPLATE]["conditions"] == {
        "parked": {"equals": [{"get_param": "worker_desired"}, 0]}}
    assert props["desired_capacity"] == {"get_param": "worker_desired"}
    member = props["resource"]
    assert member["type"] == "HeatGen::Grid::Worker"
    assert member["properties"]["stack_key"] == {"get_param": "OS::stack_id"}
    assert member["properties"]["master_ip"] == {
        "get_attr": ["master_port", "fixed_ips", 0, "ip_address"]
    }
    worker = parsed[MEMBER_TEMPLATE]
    server = worker["resources"]["server"]["properties"]
    assert server["metadata"] == {
        "metering.stack": {"get_param": "stack_key"},
        "metering.server_group": {"get_param": "stack_key"},
    }
    assert {r["type"] for r in worker["resources"].values()} == {
        "OS::Neutron::Port", "OS::Nova::Server"
    }
    assert worker["parameters"]["worker_token"]["hidden"] is True
    assert "pool_secret" not in worker["parameters"]
    assert server["user_data"]["str_replace"]["params"]["__HEATGEN_MASTER_IP__"] == {
        "get_param": "master_ip"
    }


def test_thesis_policies_and_gnocchi_alarms() -> None:
    parsed = _rendered("thesis")
    res = parsed[MAIN_TEMPLATE]["resources"]
    env = parsed[ENVIRONMENT]["parameters"]
    up, down = res["scale_up_policy"]["properties"], res["scale_down_policy"]["properties"]
    assert up["adjustment_type"] == down["adjustment_type"] == "change_in_capacity"
    assert up["auto_scaling_group_id"] == {"get_resource": "workers"}
    assert (env["scale_up_step"], env["scale_down_adjustment"], env["cooldown"]) == (1, -1, 60)
    high, low = res["cpu_alarm_high"], res["cpu_alarm_low"]
    for alarm, policy, op in ((high, "scale_up_policy", "gt"), (low, "scale_down_policy", "lt")):
        assert alarm["type"] == "OS::Aodh::GnocchiAggregationByResourcesAlarm"
        props = alarm["properties"]
        assert (props["metric"], props["aggregation_method"], props["resource_type"]) == (
            "cpu", "rate:mean", "instance"
        )
        assert props["comparison_operator"] == op
        assert props["query"] == {"get_attr": ["alarm_query", "value"]}
        assert props["alarm_actions"] == [
            {"list_join": ["", ["trust+", {"get_attr": [policy, "signal_url"]}]]}
        ]
    # 50 % and 10 % of 2 vCPUs over 60 s buckets, in CPU-nanoseconds.
    assert env["cpu_high_threshold"] == 50 / 100 * 60 * 1e9 * 2 == 6e10
    assert env["cpu_low_threshold"] == 1.2e10
    assert (env["granularity"], env["evaluation_periods"]) == (60, 1)
    query = res["alarm_query"]["properties"]["value"]["str_replace"]
    assert query["template"] == (
        '{"and": [{"=": {"server_group": "__STACK_ID__"}}, {"=": {"ended_at": null}}]}'
    )
    assert query["params"] == {"__STACK_ID__": {"get_param": "OS::stack_id"}}


def test_outputs_an_operator_needs() -> None:
    outputs = _rendered("thesis")[MAIN_TEMPLATE]["outputs"]
    assert {
        "master_floating_ip", "master_private_ip", "scale_up_url", "scale_down_url",
        "scale_up_alarm_url", "scale_down_alarm_url", "stack_key", "alarm_query",
        "wait_condition_data", "worker_count",
    } <= set(outputs)
    assert outputs["scale_up_url"]["value"] == {"get_attr": ["scale_up_policy", "signal_url"]}
    assert outputs["scale_down_alarm_url"]["value"] == {
        "get_attr": ["scale_down_policy", "alarm_url"]
    }
    assert outputs["worker_count"]["value"] == {"get_attr": ["workers", "current_size"]}
    assert outputs["wait_condition_data"]["value"] == {"get_attr": ["master_wait", "data"]}


def test_prometheus_renders_prometheus_alarms_in_percent() -> None:
    parsed = _rendered("prometheus")
    res = parsed[MAIN_TEMPLATE]["resources"]
    assert res["cpu_alarm_high"]["type"] == "OS::Aodh::PrometheusAlarm"
    assert "granularity" not in res["cpu_alarm_high"]["properties"]
    query = res["alarm_query"]["properties"]["value"]["str_replace"]["template"]
    # 4 vCPUs: rate is ns/s; / 1e7 gives percent of one core, / 4 of the flavor.
    assert query == (
        'avg(rate(ceilometer_cpu{server_group="__STACK_ID__"}[__GRANULARITY__s])) / 40000000'
    )
    env = parsed[ENVIRONMENT]["parameters"]
    assert (env["cpu_high_threshold"], env["cpu_low_threshold"]) == (80, 20)
    assert env["scale_down_adjustment"] == -1 and env["scale_up_step"] == 2


def test_no_telemetry_renders_no_alarms_and_no_alarm_parameters() -> None:
    parsed = _rendered("manual")
    res = parsed[MAIN_TEMPLATE]["resources"]
    assert not [r for r in res.values() if r["type"].startswith("OS::Aodh::")]
    assert "alarm_query" not in res and "alarm_query" not in parsed[MAIN_TEMPLATE]["outputs"]
    assert "cpu_high_threshold" not in parsed[ENVIRONMENT]["parameters"]
    assert "scale_down_policy" in res  # manual signals still work


def test_guarded_scale_in_renders_no_low_alarm() -> None:
    res = _rendered("volume")[MAIN_TEMPLATE]["resources"]
    assert "cpu_alarm_high" in res and "cpu_alarm_low" not in res


def test_boot_from_volume() -> None:
    parsed = _rendered("volume")
    master = parsed[MAIN_TEMPLATE]["resources"]["master"]["properties"]
    assert "image" not in master
    assert master["block_device_mapping_v2"] == [{
        "boot_index": 0, "image": {"get_param": "master_image"},
        "volume_size": {"get_param": "master_volume_size"}, "delete_on_termination": True,
    }]
    assert parsed[ENVIRONMENT]["parameters"]["master_volume_size"] == 40
    plain = _rendered("thesis")[MAIN_TEMPLATE]
    assert "master_volume_size" not in plain["parameters"]
    assert plain["resources"]["master"]["properties"]["image"] == {"get_param": "master_image"}


def test_template_version_is_kept_a_string() -> None:
    text = render_site(load_site(EXAMPLES / "volume.yaml")).files[MAIN_TEMPLATE]
    assert text.startswith('heat_template_version: "2018-08-31"\n')
    assert template_format.parse(text)["heat_template_version"] == "2018-08-31"


def test_values_cannot_break_the_document(tmp_path: Path) -> None:
    text = (EXAMPLES / "minimal.yaml").read_text().replace(
        "image: AlmaLinux-9\n  flavor: m1.small\nworkers",
        'image: "evil\\"}\\n  injected: {get_file: /etc/passwd}"\n  flavor: m1.small\nworkers',
    )
    site = tmp_path / "site.yaml"
    site.write_text(text)
    grid = render_site(load_site(site))
    env = environment_format.parse(grid.environment)
    assert env["parameters"]["master_image"] == 'evil"}\n  injected: {get_file: /etc/passwd}'
    assert "injected" not in template_format.parse(grid.main)["resources"]


def test_override_templates_dir(tmp_path: Path) -> None:
    override = tmp_path / "tpl"
    override.mkdir()
    source = (REPO / "templates" / "worker-boot.yaml.j2").read_text()
    (override / "worker-boot.yaml.j2").write_text(
        source.replace("write_files:", "bootcmd:\n  - [echo, site-override]\nwrite_files:", 1)
    )
    grid = render_site(load_site(EXAMPLES / "minimal.yaml"), templates_dir=override)
    assert "site-override" in grid.files["worker-boot.yaml"]
    assert "site-override" not in grid.files["master-boot.yaml"]


def test_override_with_dangling_reference_is_a_render_error(tmp_path: Path) -> None:
    override = tmp_path / "tpl"
    override.mkdir()
    source = (REPO / "templates" / "grid.yaml.j2").read_text()
    (override / "grid.yaml.j2").write_text(
        source.replace("depends_on: [master_wait,", "depends_on: [master_wiat,")
        .replace('{get_param: {{ g.n("worker_flavor") }}}', "{get_param: worker_flavour}")
    )
    with pytest.raises(RenderError) as caught:
        render_site(load_site(EXAMPLES / "minimal.yaml"), templates_dir=override)
    message = str(caught.value)
    assert "grid.yaml: resources.workers: depends_on unknown resource 'master_wiat'" in message
    assert "get_param of undeclared parameter 'worker_flavour'" in message


def test_override_with_jinja_error_names_file_and_line(tmp_path: Path, capsys: Any) -> None:
    override = tmp_path / "tpl"
    override.mkdir()
    (override / "worker.yaml.j2").write_text("heat_template_version: {{ site.nope }}\n")
    code = main(["render", str(EXAMPLES / "minimal.yaml"), "-o", str(tmp_path / "out"),
                 "--templates", str(override)])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("heatgen: error: worker.yaml.j2: ")
    assert "has no attribute 'nope'" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_cli_render_writes_the_files_and_lists_them(tmp_path: Path, capsys: Any) -> None:
    assert main(["render", str(EXAMPLES / "thesis.yaml"), "-o", str(tmp_path)]) == 0
    listed = capsys.readouterr().out.split()
    assert sorted(Path(p).name for p in listed) == sorted(
        ["grid.yaml", "worker.yaml", "master-boot.yaml", "worker-boot.yaml", "grid-env.yaml"]
    )


def test_render_does_not_import_openstack_clients(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from heatgen.cli import main\n"
        f"site, out = {str(EXAMPLES / 'thesis.yaml')!r}, {str(tmp_path)!r}\n"
        "assert main(['render', site, '-o', out]) == 0\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('heatclient', 'keystoneauth1', 'openstack', 'aodhclient', 'heat', 'keystone'))\n"
        "print(heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_wheel_ships_templates_and_environments(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(tmp_path),
         str(REPO)],
        check=True, capture_output=True,
    )
    (wheel,) = tmp_path.glob("heatgen-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for source in (REPO / "templates").glob("*.j2"):
        assert f"heatgen/templates/{source.name}" in names
    for source in (REPO / "environments").glob("*.yaml"):
        assert f"heatgen/environments/{source.name}" in names
    assert "heatgen/templates/grid.yaml.j2" in names
