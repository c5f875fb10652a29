"""A job for the process executor in tests/test_tracing.py (imported in the worker)."""

from __future__ import annotations

from opentelemetry import trace

from horae.tracing import traceparent


def trace_seen() -> dict[str, str | None]:
    """What the worker sees of the run's trace: the header and the current span's ids."""
    context = trace.get_current_span().get_span_context()
    return {
        "traceparent": traceparent(),
        "trace_id": f"{context.trace_id:032x}",
        "span_id": f"{context.span_id:016x}",
        "remote": str(context.is_remote),
    }
