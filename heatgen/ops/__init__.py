"""Operations on a deployed grid over a :class:`~heatgen.cloud.Cloud`: deploy (plan, apply),
scale, inspect, delete; the waiting, locking and look-before-retry writes they share.

The library never prints and never exits: progress goes to a
:class:`~heatgen.ops.report.Reporter`, results come back as values, failures as
:class:`~heatgen.errors.HeatgenError`.
"""
