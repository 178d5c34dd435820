"""The HTCondor pool as scale-in sees it: machines, their idleness, and how to ask a pool."""

from __future__ import annotations

from heatgen.pool.classad import (
    SERVER_ID_ATTRIBUTE,
    STARTD_ATTRIBUTES,
    Expression,
    parse_classad_json,
    parse_condor_status_json,
    parse_sinful,
    parse_startd_ads,
)
from heatgen.pool.model import Machine, PoolQuery, Slot

__all__ = [
    "SERVER_ID_ATTRIBUTE", "STARTD_ATTRIBUTES", "Expression", "Machine", "PoolQuery", "Slot",
    "parse_classad_json", "parse_condor_status_json", "parse_sinful", "parse_startd_ads",
]
