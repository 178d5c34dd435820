"""Plans on a sandbox tell what a real cloud would replace (stand-ins hide it from Heat)."""

from __future__ import annotations

import pytest

from heatgen.config import load_site
from heatgen.ops import fields as stackfields
from heatgen.ops.plan import reconciled_plan
from heatgen.ops.replacement import NOT_UPDATABLE, replaced_members, replaced_resources
from heatgen.render import render_site

from .conftest import EXAMPLES

SANDBOX = {"sandbox.yaml": stackfields.packaged_environment("sandbox.yaml")}
POOL = {"sandbox-pool.yaml": stackfields.packaged_environment("sandbox-pool.yaml")}


def _definition(extra: dict[str, str], **site_changes: object) -> object:
    site = load_site(EXAMPLES / "thesis.yaml")
    if site_changes:
        site = site.model_copy(update=site_changes)
    return stackfields.definition(render_site(site), parameters={"worker_desired": 2},
                                  extra_environments=extra)


@pytest.mark.parametrize("extra", [SANDBOX, POOL], ids=["stubbed", "pool"])
def test_a_keypair_change_replaces_the_master_and_every_worker(extra: dict[str, str]) -> None:
    old = _definition(extra)
    new = _definition(extra, keypair="other-key")
    assert replaced_resources(old, new) == {"master": ["key_name"]}  # type: ignore[arg-type]
    assert replaced_members(old, new, "workers") == {"server": ["key_name"]}  # type: ignore[arg-type]
    # Heat's preview on stand-ins calls both merely updated; the plan says what a cloud does.
    plan = reconciled_plan({"updated": ["master", "workers"], "unchanged": ["master_port"]},
                           old, new, group_now={"workers": 2})  # type: ignore[arg-type]
    assert plan.changes["replaced"] == ["master"]
    assert plan.replaces_protected == ["master"]
    assert "master" not in plan.changes["updated"]
    assert any(line.startswith("  members: every worker's server is replaced") for line in
               plan.lines())


def test_a_private_network_change_replaces_the_ports() -> None:
    site = load_site(EXAMPLES / "thesis.yaml")
    network = site.network.model_copy(update={"private_network": "other-net"})
    old = _definition(SANDBOX)
    new = _definition(SANDBOX, network=network)
    assert replaced_resources(old, new) == {"master_port": ["network"]}  # type: ignore[arg-type]
    assert replaced_members(old, new, "workers") == {"port": ["network"]}  # type: ignore[arg-type]


def test_a_threshold_change_replaces_nothing_and_a_real_cloud_is_left_to_heat() -> None:
    old = _definition(SANDBOX)
    autoscaling = load_site(EXAMPLES / "thesis.yaml").autoscaling.model_copy(
        update={"cpu_high": 60})
    assert replaced_resources(old, _definition(SANDBOX, autoscaling=autoscaling)) == {}  # type: ignore[arg-type]
    # Without stand-ins Heat's own preview knows: heatgen adds nothing.
    assert replaced_resources(_definition({}), _definition({}, keypair="x")) == {}  # type: ignore[arg-type]


def test_the_table_is_what_heats_plugins_say() -> None:
    pytest.importorskip("heat", reason="needs the sandbox extra (Heat itself)")
    from heat.engine import properties
    from heat.engine.resources.openstack.cinder import volume
    from heat.engine.resources.openstack.neutron import floatingip, port, security_group
    from heat.engine.resources.openstack.nova import server

    classes = {"OS::Nova::Server": server.Server, "OS::Neutron::Port": port.Port,
               "OS::Neutron::FloatingIP": floatingip.FloatingIP,
               "OS::Neutron::SecurityGroup": security_group.SecurityGroup,
               "OS::Cinder::Volume": volume.CinderVolume}
    for rtype, cls in classes.items():
        schemata = properties.schemata(cls.properties_schema)
        fixed = {name for name, schema in schemata.items() if not schema.update_allowed}
        assert NOT_UPDATABLE[rtype] == fixed, rtype
