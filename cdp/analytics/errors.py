"""Analytics refusals, importable without the numerical libraries (the CLI's audit wrapper needs them)."""

from __future__ import annotations

from cdp.errors import CdpError


class AnalyticsError(CdpError):
    """An analysis that cannot run as asked (unknown analysis, not enough data to fit a model)."""


class SegmentNotFound(CdpError):
    pass


class SegmentConflict(CdpError):
    """A segment name that is taken, or a change based on an outdated version."""
