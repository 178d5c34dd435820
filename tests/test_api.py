"""The public API drives heatgen without its CLI (here over the fake cloud)."""

from __future__ import annotations

import subprocess
import sys

import pytest

import heatgen

from .conftest import EXAMPLES
from .fakecloud import FakeClock, FakeCloud


def test_a_script_renders_deploys_scales_reads_and_deletes_a_grid() -> None:
    site = heatgen.load_site(EXAMPLES / "thesis.yaml")
    grid = heatgen.render_site(site)
    cloud = FakeCloud()
    quiet = heatgen.SilentReporter()
    created = heatgen.deploy(cloud, grid, heatgen.DeployOptions(), quiet, clock=FakeClock())
    assert created.action == "created" and created.stack is not None
    scaled = heatgen.scale(cloud, site, heatgen.ScaleRequest(workers=3), quiet,
                           clock=FakeClock())
    assert scaled.action == "scaled" and scaled.parameters == {"worker_desired": 3}
    report = heatgen.status(cloud, site)
    assert report.as_dict()["stack"]["name"] == "bergen-grid"
    assert heatgen.delete(cloud, site, timeout=60, report=quiet, clock=FakeClock()) is None
    with pytest.raises(heatgen.NotDeployed) as missing:
        heatgen.status(cloud, site)
    assert isinstance(missing.value, heatgen.HeatgenError)
    assert missing.value.exit_status == heatgen.ExitStatus.USAGE


def test_the_api_lists_what_it_offers_and_import_stays_cheap() -> None:
    assert {"load_site", "render_site", "open_cloud", "deploy", "scale", "status", "delete",
            "HeatgenError"} <= set(dir(heatgen))
    with pytest.raises(AttributeError):
        heatgen.no_such_thing  # noqa: B018
    code = ("import sys, heatgen; heavy = [m for m in ('pydantic', 'jinja2', 'heatclient', "
            "'keystoneauth1', 'heatgen.ops') if m in sys.modules]; print(heavy)")
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           check=True)
    assert shown.stdout.strip() == "[]"
