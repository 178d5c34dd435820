"""The templates and arguments of bench/heat_pacing.py (no sandbox)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from heatclient.common import template_format

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

from heat_pacing import MEMBER, grid_template, shares, sizes  # noqa: E402


@pytest.mark.parametrize(("members", "groups", "expected"), [
    (100, 1, [100]), (100, 5, [20] * 5), (151, 5, [31, 30, 30, 30, 30]), (3, 3, [1, 1, 1]),
])
def test_members_are_shared_evenly(members: int, groups: int, expected: list[int]) -> None:
    assert shares(members, groups) == expected
    assert sum(sizes(members, groups).values()) == members


@pytest.mark.parametrize("shape", ["nested", "bare"])
@pytest.mark.parametrize("groups", [1, 5])
def test_the_templates_parse_as_heat_reads_them(shape: str, groups: int) -> None:
    grid = template_format.parse(yaml.safe_dump(grid_template(shape, groups)))
    asgs = {name: r for name, r in grid["resources"].items()
            if r["type"] == "OS::Heat::AutoScalingGroup"}
    assert sorted(asgs) == [f"workers_{k}" for k in range(groups)]
    assert sorted(grid["parameters"]) == sorted(sizes(10 * groups, groups))
    member_types = {r["properties"]["resource"]["type"] for r in asgs.values()}
    assert member_types == ({"member.yaml"} if shape == "nested" else {"OS::Nova::Server"})
    member = template_format.parse(yaml.safe_dump(MEMBER))
    assert {r["type"] for r in member["resources"].values()} == {
        "OS::Neutron::Port", "OS::Nova::Server"}


@pytest.mark.parametrize(("argv", "named"), [
    (["--groups", "0"], "--groups"), (["--groups", "a,b"], "--groups"),
    (["--members", "4", "--groups", "5"], "--groups"), (["--shapes", "flat"], "--shapes"),
    (["--members", "0"], "--members"),
])
def test_bad_arguments_are_named_before_any_sandbox(argv: list[str], named: str) -> None:
    done = subprocess.run([sys.executable, str(BENCH / "heat_pacing.py"), *argv],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert f"error: {named}" in done.stderr
    assert "Traceback" not in done.stderr
    assert "starting a sandbox" not in done.stdout
