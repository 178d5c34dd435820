"""The cloud seam: the :class:`Cloud` Protocol and its data, the OpenStack implementation
(:mod:`heatgen.cloud.openstack`, imported only on use) and how a cloud is chosen
(:mod:`heatgen.cloud.connect`)."""

from __future__ import annotations

from heatgen.cloud.interface import Alarm, Cloud, Definition, Event, Resource, Stack

__all__ = ["Alarm", "Cloud", "Definition", "Event", "Resource", "Stack"]
