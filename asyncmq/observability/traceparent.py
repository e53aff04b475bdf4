"""The W3C `traceparent` a traced producer stores in each job's `meta`, read without the
OpenTelemetry API: metrics need only its trace id and sampled flag (for exemplars) and must
work where OpenTelemetry is not installed; tracing needs the same reading on its fast path."""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Any, NamedTuple

__all__ = ["TraceParent", "parse_traceparent", "sampled_trace_id"]

#: version, trace id, parent span id, flags; a later version may append fields after a dash.
_FORMAT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?", re.DOTALL)


class TraceParent(NamedTuple):
    trace_id: str  # 32 lower-case hex digits
    span_id: str  # 16 lower-case hex digits
    sampled: bool


@functools.lru_cache(maxsize=1024)
def parse_traceparent(value: str) -> TraceParent | None:
    """The fields of a valid traceparent, or None for anything the W3C format rejects (an
    all-zero id, version `ff`, extra fields in version `00`). Cached: the jobs of one bulk
    add share their producer's traceparent."""
    match = _FORMAT.fullmatch(value)
    if match is None:
        return None
    version, trace_id, span_id, flags, rest = match.groups()
    if version == "ff" or (version == "00" and rest is not None):
        return None
    if not int(trace_id, 16) or not int(span_id, 16):
        return None
    return TraceParent(trace_id, span_id, bool(int(flags, 16) & 1))


def sampled_trace_id(meta: Mapping[str, Any]) -> str | None:
    """The trace id (32 hex digits) of a job whose stored trace is sampled: an exemplar must
    point to a trace that a tracing backend keeps."""
    value = meta.get("traceparent")
    if not isinstance(value, str):
        return None
    parent = parse_traceparent(value)
    return parent.trace_id if parent is not None and parent.sampled else None
