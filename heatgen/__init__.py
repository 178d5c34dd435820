"""heatgen: render, deploy and resize elastic HTCondor grids on OpenStack Heat."""

from __future__ import annotations

__version__ = "0.1.0"
