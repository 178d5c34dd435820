"""Rendering: a site config in, the HOT set of an elastic HTCondor grid out, checked."""

from __future__ import annotations

from heatgen.render.grid import (
    CLOUD_CONFIGS,
    ENVIRONMENT,
    HOT_FILES,
    MAIN_TEMPLATE,
    MASTER_BOOT,
    MEMBER_TEMPLATE,
    OUTPUT_FILES,
    WORKER_BOOT,
    WORKER_TYPE,
    RenderedGrid,
    check_rendered,
    cloud_configs,
    hot_files,
    output_files,
    render_site,
    write_rendered,
)
from heatgen.render.parameters import (
    PARAMETER_MAP,
    alarm_query_template,
    alarm_threshold,
    alarms_for,
    heat_parameters,
)

__all__ = [
    "CLOUD_CONFIGS", "ENVIRONMENT", "HOT_FILES", "MAIN_TEMPLATE", "MASTER_BOOT",
    "MEMBER_TEMPLATE", "OUTPUT_FILES", "PARAMETER_MAP", "WORKER_BOOT", "WORKER_TYPE",
    "RenderedGrid", "alarm_query_template", "alarm_threshold", "alarms_for", "check_rendered",
    "cloud_configs", "heat_parameters", "hot_files", "output_files", "render_site",
    "write_rendered",
]
