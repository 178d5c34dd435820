"""Read and validate a site config into a :class:`~heatgen.config.model.Site`.

A valid config is checked and built by :mod:`heatgen.config.check`, without pydantic; any
other goes to the pydantic models (:mod:`heatgen.config.validate`), which report every problem
at once as ``FILE: field.path: what is wrong (got X)`` (and accept what the fast check left to
them, if it was valid after all).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from heatgen.config.check import check_site
from heatgen.config.loader import parse_yaml
from heatgen.config.model import Site
from heatgen.errors import ConfigError

MAX_CONFIG_BYTES = 1 << 20


def validate_site(data: Any, source: str) -> Site:
    """Validate parsed YAML into a :class:`Site`; :class:`ConfigError` lists every problem."""
    site = check_site(data)
    if site is not None:
        return site
    from heatgen.config import validate

    return validate.validate_site(data, source)


def load_site(path: str | Path) -> Site:
    """Read, parse and validate a site config file."""
    source = str(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as error:
        raise ConfigError(source, [f"cannot read the file ({error.strerror})"]) from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(source, [f"file is larger than {MAX_CONFIG_BYTES} bytes"])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ConfigError(source, [f"not UTF-8 text (byte {error.start})"]) from None
    return validate_site(parse_yaml(text, source), source)


def site_json_schema() -> dict[str, Any]:
    """The JSON Schema of the site config, for editors (from the pydantic models)."""
    from heatgen.config import validate

    return validate.site_json_schema()
