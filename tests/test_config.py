"""The site config contract: what is accepted, and the exact message for what is not."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from heatgen.cli import main
from heatgen.config import load_site
from heatgen.errors import ConfigError

from .conftest import EXAMPLES

MINIMAL = (EXAMPLES / "minimal.yaml").read_text()


def _problems(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "site.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_site(path)
    assert all(line.startswith(f"{path}: ") for line in str(caught.value).splitlines())
    return [line.removeprefix(f"{path}: ") for line in str(caught.value).splitlines()]


def _edit(**replacements: str) -> str:
    text = MINIMAL
    for old, new in replacements.items():
        old = old.replace("__", ": ").replace("_NL_", "\n")
        assert old in text, old
        text = text.replace(old, new, 1)
    return text


def test_examples_load() -> None:
    site = load_site(EXAMPLES / "thesis.yaml")
    assert (site.workers.min, site.workers.max, site.workers.desired) == (1, 7, 1)
    assert (site.autoscaling.cpu_high, site.autoscaling.cpu_low) == (50, 10)
    assert site.heat_template_version == "2021-04-16"


def test_defaults_of_the_minimal_site() -> None:
    site = load_site(EXAMPLES / "minimal.yaml")
    assert site.autoscaling.telemetry.value == "gnocchi"
    assert site.autoscaling.granularity == 300
    assert site.autoscaling.evaluation_periods == 2
    assert site.network.ssh_cidr == "0.0.0.0/0"
    assert site.wait_timeout == 1800
    assert site.condor.slots == "partitionable"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            MINIMAL.replace("site: mini-grid", "site: 9grid"),
            ["site: must start with a letter and hold only letters, digits, '_', '.' and '-' "
             "(got '9grid')"],
        ),
        (
            MINIMAL.replace("site: mini-grid", "site: " + "g" * 61),
            ["site: string should have at most 60 characters (got '"
             + "g" * 56 + "...)"],
        ),
        (
            MINIMAL.replace("  max: 3", "  max: 0"),
            ["workers.max: must be greater than or equal to 1 (got 0)",
             "workers.max: must be >= workers.min (got 0 < 1)",
             "workers.desired: must be <= workers.max (got 1 > 0)"],
        ),
        (
            MINIMAL.replace("  desired: 1", "  desired: 5"),
            ["workers.desired: must be <= workers.max (got 5 > 3)"],
        ),
        (
            MINIMAL.replace("  min: 1", "  min: 2").replace("  desired: 1", "  desired: 1"),
            ["workers.desired: must be >= workers.min (got 1 < 2)"],
        ),
        (
            MINIMAL + "autoscaling:\n  cpu_high: 20\n  cpu_low: 30\n",
            ["autoscaling.cpu_low: must be below autoscaling.cpu_high (got 30 >= 20)"],
        ),
        (
            MINIMAL + "autoscaling:\n  cpu_high: 120\n  cpu_low: 0\n",
            ["autoscaling.cpu_high: must be less than or equal to 100 (got 120)",
             "autoscaling.cpu_low: must be greater than 0 (got 0)"],
        ),
        (
            MINIMAL + "autoscaling:\n  granularity: 0\n  telemetry: ceilometer\n",
            ["autoscaling.telemetry: must be 'gnocchi', 'prometheus' or 'none' (got 'ceilometer')",
             "autoscaling.granularity: must be greater than 0 (got 0)"],
        ),
        (
            MINIMAL + "wait_timeout: 50000\n",
            ["wait_timeout: must be less than or equal to 43200 (got 50000)"],
        ),
        (
            MINIMAL + "wait_timeout: 0\n",
            ["wait_timeout: must be greater than or equal to 1 (got 0)"],
        ),
        (
            MINIMAL + "heat_template_version: 2015-10-15\n",
            ["heat_template_version: must be one of 2016-10-14, 2017-02-24, 2017-09-01, "
             "2018-03-02, 2018-08-31, 2021-04-16 (got '2015-10-15')"],
        ),
        (
            MINIMAL.replace("  vcpus: 1", "  vcpus: two"),
            ["workers.vcpus: must be a valid integer (got 'two')"],
        ),
        (
            MINIMAL.replace("  vcpus: 1", "  vcpus: true"),
            ["workers.vcpus: must be a valid integer (got True)"],
        ),
        (
            MINIMAL.replace("keypair: my-key\n", ""),
            ["keypair: required field is missing"],
        ),
        (
            MINIMAL.replace("  floating_network: public",
                            "  floating_network: public\n  ssh_cidr: 10.0.0.1/8"),
            ["network.ssh_cidr: must be a network in CIDR form such as 192.0.2.0/24 "
             "(10.0.0.1/8 has host bits set) (got '10.0.0.1/8')"],
        ),
        (
            MINIMAL.replace("workers:", "wrokers:\n  image: x\nworkers:"),
            ["wrokers: unknown field (allowed: autoscaling, cloud, condor, heat_template_version, "
             "keypair, master, network, site, wait_timeout, worker_groups, workers)"],
        ),
        (
            MINIMAL.replace("  vcpus: 1", "  vcpus: 1\n  vcpu: 2"),
            ["workers.vcpu: unknown field (allowed: desired, flavor, image, max, min, os, vcpus)"],
        ),
        (
            MINIMAL.replace("network:\n", "network: ext\nold_network:\n"),
            ["network: must be a mapping (got 'ext')",
             "old_network: unknown field (allowed: autoscaling, cloud, condor, "
             "heat_template_version, keypair, master, network, site, wait_timeout, worker_groups, "
             "workers)"],
        ),
        (
            MINIMAL + "master_extra: 1\nautoscaling:\n  scale_in: sometimes\n",
            ["autoscaling.scale_in: must be 'alarm', 'guarded' or 'off' (got 'sometimes')",
             "master_extra: unknown field (allowed: autoscaling, cloud, condor, "
             "heat_template_version, keypair, master, network, site, wait_timeout, worker_groups, "
             "workers)"],
        ),
        (
            MINIMAL.replace("  pool_name: mini", "  pool_name: mini\n  version: latest"),
            ['condor.version: must be a release channel such as "24.0" or "24.x" (got \'latest\')'],
        ),
    ],
    ids=[
        "site-pattern", "site-length", "max-zero", "desired-above-max", "desired-below-min",
        "cpu-low-above-high", "percent-range", "telemetry-and-granularity", "wait-too-long",
        "wait-zero", "old-template-version", "vcpus-string", "vcpus-bool", "missing-keypair",
        "cidr-host-bits", "unknown-top-level", "unknown-nested", "not-a-mapping",
        "scale-in-enum", "condor-version",
    ],
)
def test_bad_config_messages(tmp_path: Path, text: str, expected: list[str]) -> None:
    assert _problems(tmp_path, text) == expected


def _debian(master: str = "debian13", workers: str = "debian13", version: str | None = None
            ) -> str:
    text = MINIMAL.replace("  image: AlmaLinux-9\n  flavor: m1.small\nworkers:",
                           f"  image: Debian-13\n  os: {master}\n  flavor: m1.small\nworkers:")
    text = text.replace("workers:\n  image: AlmaLinux-9",
                        f"workers:\n  image: Debian-13\n  os: {workers}")
    if version is not None:
        text = text.replace("  pool_name: mini", f'  pool_name: mini\n  version: "{version}"')
    return text


def test_debian13_takes_its_own_htcondor_23_9(tmp_path: Path) -> None:
    path = tmp_path / "site.yaml"
    path.write_text(_debian(version="23.9"))
    site = load_site(path)
    assert (site.master.os.value, site.workers.os.value) == ("debian13", "debian13")
    assert site.condor.version == "23.9"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            _debian(),
            ['condor.version: must be "23.9" with os: debian13 (Debian 13 ships HTCondor 23.9) '
             "(got '24.0')"],
        ),
        (
            _debian(version="24.x"),
            ['condor.version: must be "23.9" with os: debian13 (Debian 13 ships HTCondor 23.9) '
             "(got '24.x')"],
        ),
        (
            _debian(version="23.0"),
            ["condor.version: must be 24.0 or newer: the boot payload relies on HTCondor 24's "
             'token-only security (the one exception is "23.9" with os: debian13, Debian 13\'s '
             "own HTCondor) (got '23.0')"],
        ),
        (
            MINIMAL.replace("  pool_name: mini", '  pool_name: mini\n  version: "23.9"'),
            ['condor.version: "23.9" needs os: debian13 on the master and the workers (Debian '
             "13's own HTCondor); el9 needs 24.0 or newer (got '23.9')"],
        ),
        (
            _debian(master="el9", workers="ubuntu24.04", version="23.9"),
            ['condor.version: "23.9" needs os: debian13 on the master and the workers (Debian '
             "13's own HTCondor); el9 and ubuntu24.04 need 24.0 or newer (got '23.9')"],
        ),
        (
            _debian(workers="el9", version="23.9"),
            ["workers.os: must be debian13 on both the master and the workers or on neither: "
             'Debian 13 ships only HTCondor "23.9", the other images need 24.0 or newer, and '
             "the pool runs one condor.version (got 'el9' with master.os 'debian13')"],
        ),
        (
            _debian(master="ubuntu22.04", version="24.0"),
            ["workers.os: must be debian13 on both the master and the workers or on neither: "
             'Debian 13 ships only HTCondor "23.9", the other images need 24.0 or newer, and '
             "the pool runs one condor.version (got 'debian13' with master.os 'ubuntu22.04')"],
        ),
        (
            _debian(master="debian12", version="23.9"),
            ["master.os: must be 'el9', 'ubuntu22.04', 'ubuntu24.04' or 'debian13' "
             "(got 'debian12')"],
        ),
    ],
    ids=["debian-default-24", "debian-24x", "debian-23.0", "el9-23.9", "el9-ubuntu-23.9",
         "mixed-debian-master", "mixed-debian-workers", "unknown-os"],
)
def test_debian13_and_the_condor_version_go_together(
    tmp_path: Path, text: str, expected: list[str]
) -> None:
    assert _problems(tmp_path, text) == expected


def test_retirement_time_defaults_to_a_day(tmp_path: Path) -> None:
    assert load_site(EXAMPLES / "minimal.yaml").condor.retirement_time == 86400
    path = tmp_path / "site.yaml"
    path.write_text(MINIMAL.replace("  pool_name: mini", "  pool_name: mini\n"
                                    "  retirement_time: 2592000"))
    assert load_site(path).condor.retirement_time == 30 * 86400


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0", "condor.retirement_time: must be greater than 0 (got 0)"),
        ("2592001", "condor.retirement_time: must be less than or equal to 2592000 (got 2592001)"),
        ("1.5", "condor.retirement_time: must be a valid integer (got 1.5)"),
        ("true", "condor.retirement_time: must be a valid integer (got True)"),
    ],
)
def test_retirement_time_bounds(tmp_path: Path, value: str, expected: str) -> None:
    text = MINIMAL.replace("  pool_name: mini", f"  pool_name: mini\n  retirement_time: {value}")
    assert _problems(tmp_path, text) == [expected]


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    text = (
        MINIMAL.replace("site: mini-grid", "site: -x")
        .replace("  vcpus: 1", "  vcpus: 0")
        .replace("  desired: 1", "  desired: 9")
    ) + "autoscaling:\n  cpu_low: 60\n"
    assert len(_problems(tmp_path, text)) == 4


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("site: [unclosed\n",
         "line 2, column 1: invalid YAML: expected ',' or ']', but got '<stream end>'"),
        ("site: a\nsite: b\n", "line 2, column 1: invalid YAML: duplicate key 'site'"),
        ("site: !!python/object:os.system ls\n",
         "line 1, column 7: invalid YAML: could not determine a constructor for the tag "
         "'tag:yaml.org,2002:python/object:os.system'"),
        ("- a\n- b\n", "the file must hold a mapping of fields (got list)"),
        ("", "the file must hold a mapping of fields (got None)"),
        ("a: " + "[" * 40 + "]" * 40 + "\n",
         "line 1, column 35: invalid YAML: nested deeper than 32 levels"),
    ],
    ids=["unclosed", "duplicate-key", "python-tag", "list", "empty", "deep"],
)
def test_bad_yaml_reports_the_line(tmp_path: Path, text: str, expected: str) -> None:
    assert _problems(tmp_path, text) == [expected]


def test_billion_laughs_is_rejected_quickly(tmp_path: Path) -> None:
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, 10):
        refs = ",".join([f"*a{i-1}"] * 9)
        lines.append(f"a{i}: &a{i} [{refs}]")
    problems = _problems(tmp_path, "\n".join(lines) + "\n")
    assert problems == ["line 5, column 30: invalid YAML: more than 32 aliases"]


def test_anchors_for_repeated_values_are_fine(tmp_path: Path) -> None:
    text = MINIMAL.replace("  image: AlmaLinux-9\n  flavor: m1.small\nworkers:",
                           "  image: &img AlmaLinux-9\n  flavor: m1.small\nworkers:")
    text = text.replace("workers:\n  image: AlmaLinux-9", "workers:\n  image: *img")
    path = tmp_path / "site.yaml"
    path.write_text(text)
    assert load_site(path).workers.image == "AlmaLinux-9"


def test_unreadable_and_non_utf8_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_site(tmp_path / "nope.yaml")
    expected = f"{tmp_path / 'nope.yaml'}: cannot read the file (No such file or directory)"
    assert str(caught.value) == expected
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"site: caf\xe9\n")
    with pytest.raises(ConfigError) as caught:
        load_site(path)
    assert str(caught.value) == f"{path}: not UTF-8 text (byte 9)"


def test_cli_bad_config_exits_2_writes_nothing_no_traceback(tmp_path: Path, capsys: Any) -> None:
    site = tmp_path / "site.yaml"
    site.write_text(MINIMAL.replace("  max: 3", "  max: 0"))
    out = tmp_path / "out"
    assert main(["render", str(site), "-o", str(out)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    expected = f"{site}: workers.max: must be greater than or equal to 1 (got 0)"
    assert captured.err.splitlines()[0] == expected
    assert "Traceback" not in captured.err
    assert not out.exists()


def test_schema_command_prints_the_json_schema(capsys: Any) -> None:
    assert main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema["title"] == "heatgen site config"
    assert set(schema["required"]) == {"site", "keypair", "network", "master", "condor"}
    # exactly one of the two forms of the worker groups
    assert schema["oneOf"] == [{"required": ["workers"]}, {"required": ["worker_groups"]}]
    assert schema["additionalProperties"] is False
    # The schema accepts what the loader accepts: every example validates against it.
    jsonschema = pytest.importorskip("jsonschema")
    for example in EXAMPLES.glob("*.yaml"):
        data = yaml.safe_load(example.read_text())
        data["heat_template_version"] = str(data.get("heat_template_version", "2021-04-16"))
        jsonschema.validate(data, schema)
