"""Golden files: each example renders exactly to its checked-in output under tests/golden/.

Regenerate after an intended template change with ``pytest tests/test_render_golden.py
--regen-golden`` and review the diff.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from heatgen.config import load_site
from heatgen.render import output_files, render_site

from .conftest import REPO, example_paths

GOLDEN = REPO / "tests" / "golden"


@pytest.mark.parametrize("example", example_paths(), ids=lambda p: p.stem)
def test_example_matches_golden(example: Path, regen_golden: bool) -> None:
    grid = render_site(load_site(example))
    expected_dir = GOLDEN / example.stem
    if regen_golden:
        shutil.rmtree(expected_dir, ignore_errors=True)
        expected_dir.mkdir(parents=True)
        for name, text in grid.files.items():
            (expected_dir / name).write_text(text, encoding="utf-8")
    names = output_files(grid.site)
    assert sorted(p.name for p in expected_dir.iterdir()) == sorted(names)
    for name in names:
        expected = (expected_dir / name).read_text(encoding="utf-8")
        assert grid.files[name] == expected, f"{example.stem}/{name} differs from golden"


def test_every_example_has_a_golden_case() -> None:
    stems = {p.stem for p in example_paths()}
    assert {"minimal", "thesis", "prometheus", "manual", "volume", "groups",
            "groups-prometheus"} <= stems
    assert stems == {p.name for p in GOLDEN.iterdir() if p.is_dir()}
