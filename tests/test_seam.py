"""The seams hold: the fake cloud is the Cloud Protocol, the contract names what is rendered."""

from __future__ import annotations

import inspect
from typing import Protocol

import pytest

from heatgen import contract
from heatgen.cloud.interface import Cloud
from heatgen.config import load_site
from heatgen.render import MAIN_TEMPLATE, render_site

from .conftest import example_paths
from .fakecloud import FakeCloud


def _methods(cls: type) -> dict[str, inspect.Signature]:
    return {
        name: inspect.signature(member)
        for name, member in inspect.getmembers(cls, inspect.isfunction)
        if not name.startswith("_")
    }


def _protocol_methods() -> dict[str, inspect.Signature]:
    return {name: sig for name, sig in _methods(Cloud).items()
            if name not in _methods(Protocol)}  # type: ignore[arg-type]


@pytest.mark.parametrize("implementation", ["fake", "openstack"])
def test_implementations_have_every_protocol_method_with_its_parameters(
    implementation: str,
) -> None:
    if implementation == "openstack":
        openstack = pytest.importorskip("heatgen.cloud.openstack")
        cls: type = openstack.OpenStackCloud
    else:
        cls = FakeCloud
    wanted = _protocol_methods()
    assert len(wanted) >= 15
    have = _methods(cls)
    for name, signature in wanted.items():
        assert name in have, f"{cls.__name__} lacks {name}"
        assert list(have[name].parameters) == list(signature.parameters), name


@pytest.mark.parametrize("example", example_paths(), ids=lambda p: p.stem)
def test_contract_names_every_output_and_resource_the_grid_renders(example: object) -> None:
    from heatclient.common import template_format

    site = load_site(example)  # type: ignore[arg-type]
    grid = render_site(site)
    template = template_format.parse(grid.files[MAIN_TEMPLATE])
    outputs = set(template["outputs"])
    # Every output is the contract's: the grid's own, and each group's under its names.
    groups = [g.names for g in site.groups]
    shared = set(contract.OUTPUTS) - set(contract.GROUP_OUTPUTS)
    expected = shared | {g.output(name) for g in groups for name in contract.GROUP_OUTPUTS}
    optional = {g.output(name) for g in groups for name in contract.OPTIONAL_OUTPUTS}
    assert outputs <= expected
    assert expected - outputs <= optional
    resources = set(template["resources"])
    named = {contract.WAIT_HANDLE, contract.WAIT_CONDITION, *(g.resource for g in groups)}
    assert named | contract.PROTECTED_RESOURCES <= resources
    # The deployed template tells which groups it has, whatever the site says now.
    assert set(contract.worker_group_resources(template)) == {g.resource for g in groups}
    # Secret outputs are known as secrets under every group's name.
    assert {key for key in outputs if contract.secret_output(key)} == {
        g.output(name) for g in groups for name in contract.SECRET_OUTPUTS}


def test_grid_outputs_read_heat_values_and_tolerate_nulls() -> None:
    read = contract.GridOutputs.of({
        "worker_count": "3", "master_floating_ip": None,
        "worker_server_ids": {"a": "id-a", "b": None}, "worker_private_ips": None,
    })
    assert read.worker_count == 3
    assert read.master_floating_ip is None
    assert read.worker_server_ids == {"a": "id-a"}
    assert read.worker_private_ips == {}


def test_every_environment_and_stand_in_parses_and_points_at_files_that_ship() -> None:
    from heatclient.common import environment_format, template_format

    from .conftest import REPO

    shipped = {path.name: path.read_text() for path in (REPO / "environments").glob("*.yaml")}
    environments = {name: text for name, text in shipped.items()
                    if "heat_template_version" not in text}
    templates = {name: text for name, text in shipped.items() if name not in environments}
    assert {"sandbox.yaml", "sandbox-pool.yaml", "sandbox-pool-telemetry.yaml"} <= set(
        environments)
    for name, text in templates.items():
        parsed = template_format.parse(text)
        assert "heatgen sandbox stand-in: " in " ".join(parsed["description"].split()), name
        assert "OS::stack_id" in parsed["outputs"], name
    for name, text in environments.items():
        registry = environment_format.parse(text).get("resource_registry", {})
        for rtype, target in registry.items():
            assert target == "OS::Heat::None" or target in templates, (name, rtype, target)


def test_stand_ins_have_every_attribute_heat_requires_of_the_real_type() -> None:
    pytest.importorskip("heat", reason="needs the sandbox extra (Heat itself)")
    from heat.engine import resource
    from heat.engine.resources.openstack.neutron import floatingip, port
    from heat.engine.resources.openstack.nova import server
    from heatclient.common import template_format

    from .conftest import REPO

    for name, cls in (("sandbox-pool-server.yaml", server.Server),
                      ("sandbox-pool-port.yaml", port.Port),
                      ("sandbox-pool-floating-ip.yaml", floatingip.FloatingIP)):
        outputs = template_format.parse((REPO / "environments" / name).read_text())["outputs"]
        required = set(cls.attributes_schema) - set(resource.Resource.base_attributes_schema)
        assert required <= set(outputs), (name, sorted(required - set(outputs)))
