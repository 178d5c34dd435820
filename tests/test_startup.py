"""A fast start: `heatgen --version` and `--help` import no command's libraries, a render
builds no more than it needs, and what it keeps between runs never changes its output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from heatgen.config import load_site

from .conftest import EXAMPLES

HEAVY = ("pydantic", "jinja2", "yaml", "heatclient", "keystoneauth1", "openstack",
         "heatgen.config", "heatgen.render", "heatgen.cloud", "heatgen.ops", "heatgen.sandbox")

PROBE = """
import contextlib, io, json, sys
from heatgen.cli import main
out = io.StringIO()
codes = []
for argv in (["--version"], ["--help"]):
    with contextlib.redirect_stdout(out):
        try:
            main(argv)
        except SystemExit as exited:
            codes.append(exited.code)
heavy = sorted(m for m in sys.modules if m.startswith(tuple(sys.argv[1:])))
print(json.dumps({"codes": codes, "out": out.getvalue(), "heavy": heavy}))
"""


def test_version_and_help_import_none_of_the_commands_libraries() -> None:
    done = subprocess.run([sys.executable, "-c", PROBE, *HEAVY], capture_output=True,
                          text=True, check=True, timeout=60)
    probe = json.loads(done.stdout)
    assert probe["codes"] == [0, 0]
    assert probe["out"].startswith("heatgen 0.1.0\nusage: heatgen [-h] [--version] [--debug]")
    assert probe["heavy"] == []


PLUGINS = """
import importlib.metadata as metadata, json, os, sys
scans = []
original = metadata.entry_points
metadata.entry_points = lambda *args, **kwargs: scans.append(kwargs) or original(*args, **kwargs)
from heatgen.config import load_site
load_site(sys.argv[1])
print(json.dumps({"scans": len(scans), "variable": os.environ.get("PYDANTIC_DISABLE_PLUGINS")}))
"""


def test_the_config_models_are_built_without_reading_every_distributions_metadata() -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYDANTIC_DISABLE_PLUGINS"}
    done = subprocess.run([sys.executable, "-c", PLUGINS, str(EXAMPLES / "thesis.yaml")],
                          capture_output=True, text=True, check=True, timeout=60, env=env)
    assert json.loads(done.stdout) == {"scans": 0, "variable": None}


@pytest.fixture
def cache_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    from heatgen.render import grid

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    grid._environment.cache_clear()
    yield tmp_path / "heatgen" / "jinja"
    grid._environment.cache_clear()


def test_compiled_templates_are_kept_and_never_change_the_output(cache_home: Path) -> None:
    from heatgen.render import grid, render_site

    site = load_site(EXAMPLES / "thesis.yaml")
    first = render_site(site).files
    entries = sorted(cache_home.iterdir())
    assert entries and (cache_home.stat().st_mode & 0o777) == 0o700
    for entry in entries:
        entry.write_bytes(entry.read_bytes()[:20])  # a torn write: compiled again
    grid._environment.cache_clear()
    assert render_site(site).files == first
    grid._environment.cache_clear()
    assert render_site(site).files == first


def test_a_cache_others_may_write_is_not_used(cache_home: Path) -> None:
    from heatgen.render import grid

    cache_home.mkdir(parents=True)
    cache_home.chmod(0o777)
    assert grid._bytecode_cache() is None
    cache_home.chmod(0o700)
    assert grid._bytecode_cache() is not None


def test_templates_compiled_with_other_options_are_not_loaded(
    cache_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from heatgen.render import grid, render_site

    site = load_site(EXAMPLES / "thesis.yaml")
    kept = render_site(site).files  # compiled and kept with heatgen's options
    monkeypatch.setitem(grid._OPTIONS, "keep_trailing_newline", False)
    grid._environment.cache_clear()
    cached = render_site(site).files
    monkeypatch.setattr(grid, "_bytecode_cache", lambda: None)
    grid._environment.cache_clear()
    assert cached == render_site(site).files != kept
    assert len({entry.name.split("-")[0] for entry in cache_home.iterdir()}) == 2


RENDER = """
import contextlib, io, json, sys
from heatgen.cli import main
with contextlib.redirect_stdout(io.StringIO()):
    code = main(["render", sys.argv[1], "-o", sys.argv[2]])
print(json.dumps({"code": code, "cli": sorted(m for m in sys.modules
                                              if m.startswith("heatgen.cli."))}))
"""


def test_a_render_builds_only_the_render_commands_parsers(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-c", RENDER, str(EXAMPLES / "minimal.yaml"),
                           str(tmp_path / "out")], capture_output=True, text=True, check=True,
                          timeout=60)
    probe = json.loads(done.stdout)
    assert probe == {"code": 0, "cli": ["heatgen.cli.render"]}, probe
