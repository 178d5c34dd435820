"""The site config: its model, hardened YAML loading and validation with clear messages."""

from __future__ import annotations

from heatgen.config.loader import parse_document, parse_yaml
from heatgen.config.model import (
    Autoscaling,
    Condor,
    Group,
    Master,
    Mode,
    Network,
    OsFamily,
    ScaleIn,
    Site,
    Telemetry,
    WorkerGroup,
    Workers,
)
from heatgen.config.validate import load_site, site_json_schema, validate_site

__all__ = [
    "Autoscaling", "Condor", "Group", "Master", "Mode", "Network", "OsFamily", "ScaleIn", "Site",
    "Telemetry", "WorkerGroup", "Workers", "load_site", "parse_document", "parse_yaml",
    "site_json_schema", "validate_site",
]
