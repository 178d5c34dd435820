from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"

# Variables through which a user's own clouds, sandbox or pool recordings would leak in.
_USER_VARIABLES = ("OS_CLOUD", "OS_AUTH_URL", "OS_AUTH_TYPE", "OS_USERNAME", "OS_PASSWORD",
                   "OS_PROJECT_NAME", "OS_TOKEN", "OS_CLIENT_SECURE_FILE", "HEATGEN_SANDBOX_DIR",
                   "HEATGEN_POOL_RECORDING", "HEATGEN_CLOUD")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--regen-golden",
        action="store_true",
        help="rewrite tests/golden/ from the current templates instead of comparing",
    )
    parser.addoption(
        "--config-both-paths",
        action="store_true",
        help="validate every config a test validates on both paths (the fast check and the "
             "pydantic models) and fail the test on any difference in verdict or site",
    )


def pytest_configure(config: pytest.Config) -> None:
    """Tests never see the user's sandbox, clouds.yaml, OS_* variables or stack locks: the XDG
    homes point at an empty directory of this run, and an empty clouds.yaml comes first in
    openstacksdk's search path. Tests that need a cloud set their own (subprocesses inherit
    all of it)."""
    home = Path(tempfile.mkdtemp(prefix="heatgen-tests-home-"))
    for name in [n for n in os.environ if n.startswith("OS_") or n in _USER_VARIABLES]:
        del os.environ[name]
    os.environ["XDG_CONFIG_HOME"] = str(home / "config")
    os.environ["XDG_DATA_HOME"] = str(home / "data")
    os.environ["XDG_STATE_HOME"] = str(home / "state")  # the stack ids heatgen remembers
    # heatgen's stack locks too: fake stacks of two test runs at once share their ids.
    os.environ["XDG_RUNTIME_DIR"] = str(home / "run")
    clouds = home / "clouds.yaml"
    clouds.write_text("clouds: {}\n", encoding="utf-8")
    os.environ["OS_CLIENT_CONFIG_FILE"] = str(clouds)
    config.stash[_HOME] = home
    if config.getoption("--config-both-paths"):
        _validate_on_both_paths()


def _validate_on_both_paths() -> None:
    """heatgen.config.validate_site (and so load_site) checks each config on both paths: the
    tests then see the pydantic path's verdict (its site, its error), after the fast check's
    has been compared with it (tests/test_config_check.py's comparison)."""
    from heatgen import config
    from heatgen.config import load, validate

    from .test_config_check import agree

    def both(data: object, source: str) -> config.Site:
        agree(data)
        return validate.validate_site(data, source)

    load.validate_site = both  # type: ignore[assignment]
    config.validate_site = both  # type: ignore[assignment]


_HOME = pytest.StashKey[Path]()


def pytest_unconfigure(config: pytest.Config) -> None:
    import shutil

    home = config.stash.get(_HOME, None)
    if home is not None:
        shutil.rmtree(home, ignore_errors=True)


def _selected(config: pytest.Config, marker: str) -> bool:
    """Whether ``-m`` asks for ``marker`` itself (``-m slow``), not only excludes it."""
    expression = config.getoption("markexpr") or ""
    return marker in expression.replace(f"not {marker}", "")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Full-size runs (``slow``) only when asked for by name: ``pytest -m slow``."""
    if _selected(config, "slow"):
        return
    skip = pytest.mark.skip(reason="slow: run with `pytest -m slow`")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def regen_golden(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--regen-golden"))


def example_paths() -> list[Path]:
    return sorted(EXAMPLES.glob("*.yaml"))
