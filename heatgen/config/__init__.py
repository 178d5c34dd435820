"""The site config: its model, hardened YAML loading and validation with clear messages.

Nothing imported here imports pydantic: only an invalid config (or `heatgen schema`) does."""

from __future__ import annotations

from heatgen.config.load import load_site, site_json_schema, validate_site
from heatgen.config.loader import parse_document, parse_yaml
from heatgen.config.model import (
    Autoscaling,
    Condor,
    Group,
    GroupAutoscaling,
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

__all__ = [
    "Autoscaling", "Condor", "Group", "GroupAutoscaling", "Master", "Mode", "Network", "OsFamily",
    "ScaleIn", "Site", "Telemetry", "WorkerGroup", "Workers", "load_site", "parse_document",
    "parse_yaml", "site_json_schema", "validate_site",
]
