"""Reading the W3C traceparent stored with a job: exemplars and the unsampled fast path
trust only what the format allows."""

from __future__ import annotations

import pytest

from asyncmq.observability.traceparent import TraceParent, parse_traceparent, sampled_trace_id

TRACE = "0af7651916cd43dd8448eb211c80319c"
SPAN = "b7ad6b7169203331"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (f"00-{TRACE}-{SPAN}-01", TraceParent(TRACE, SPAN, sampled=True)),
        (f"00-{TRACE}-{SPAN}-00", TraceParent(TRACE, SPAN, sampled=False)),
        (f"00-{TRACE}-{SPAN}-02", TraceParent(TRACE, SPAN, sampled=False)),  # other flags only
        (f"01-{TRACE}-{SPAN}-01-later-fields", TraceParent(TRACE, SPAN, sampled=True)),
        (f"00-{TRACE}-{SPAN}-01-later-fields", None),  # version 00 has exactly four fields
        (f"ff-{TRACE}-{SPAN}-01", None),
        (f"00-{'0' * 32}-{SPAN}-01", None),
        (f"00-{TRACE}-{'0' * 16}-01", None),
        (f"00-{TRACE.upper()}-{SPAN}-01", None),
        (f"00-{TRACE}-{SPAN}-zz", None),
        (f"00-{TRACE}-{SPAN}-01\n", None),
        ("garbage", None),
        ("", None),
    ],
)
def test_only_a_valid_traceparent_is_parsed(value: str, expected: TraceParent | None) -> None:
    assert parse_traceparent(value) == expected


@pytest.mark.parametrize(
    ("meta", "expected"),
    [
        ({"traceparent": f"00-{TRACE}-{SPAN}-01"}, TRACE),
        ({"traceparent": f"00-{TRACE}-{SPAN}-00"}, None),
        ({"traceparent": "garbage"}, None),
        ({"traceparent": 42}, None),
        ({}, None),
    ],
)
def test_only_a_sampled_trace_gives_an_exemplar_trace_id(
    meta: dict[str, object], expected: str | None
) -> None:
    assert sampled_trace_id(meta) == expected
