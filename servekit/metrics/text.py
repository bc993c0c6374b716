"""Rendering the counters in Prometheus's text exposition format (version 0.0.4)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from servekit.metrics.exporter import Exporter

__all__ = ["render"]


def _labels(base: dict[str, str], **extra: str) -> str:
    items = {**base, **extra}
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in items.items())
    return "{" + inner + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer():
        return str(int(value))
    return repr(float(value))


def _family(lines: list[str], name: str, kind: str, help_text: str) -> None:
    lines.append(f"# HELP {name} {help_text}")
    lines.append(f"# TYPE {name} {kind}")


def render(exporter: Exporter, snap: dict[str, Any]) -> str:
    """Every servekit metric for one scrape."""
    base = exporter.labels
    lines: list[str] = []
    capacity = math.inf if exporter.capacity is None else exporter.capacity
    gauges = [
        ("servekit_capacity", "Requests this config serves at once (+Inf: no fixed limit).", capacity),
        ("servekit_in_flight", "Requests being served now.", snap["in_flight"]),
        (
            "servekit_waiting_on_clients",
            "Of those in flight, requests waiting on a slow client without holding a thread "
            "(gthread, tornado): they take none of the capacity.",
            snap["away"],
        ),
        ("servekit_workers", "Worker processes alive.", exporter.sources.workers()),
    ]
    queue = exporter.queue()
    if queue is not None:
        gauges += [
            (
                "servekit_listen_queue",
                "Connections accepted by the kernel and not yet by a worker.",
                queue[0],
            ),
            ("servekit_listen_queue_max", "The limit of that queue (backlog).", queue[1]),
        ]
    for name, help_text, value in gauges:
        _family(lines, name, "gauge", help_text)
        lines.append(f"{name}{_labels(base)} {_number(value)}")
    _family(
        lines,
        "servekit_worker_restarts_total",
        "counter",
        "Workers that ended and were replaced, by how they ended (exit: status 0, e.g. "
        "max_requests; error: a non-zero status; signal: killed).",
    )
    for reason, count in exporter.sources.restarts.items():
        lines.append(f"servekit_worker_restarts_total{_labels(base, reason=reason)} {count}")
    _family(lines, "servekit_requests_total", "counter", "Requests served, by status class.")
    for klass, count in snap["requests"].items():
        lines.append(f"servekit_requests_total{_labels(base, status_class=klass)} {count}")
    name = "servekit_request_duration_seconds"
    _family(lines, name, "histogram", "Time from the app's call to the end of the response.")
    for bound, count in snap["buckets"]:
        lines.append(f"{name}_bucket{_labels(base, le=_number(bound))} {count}")
    lines.append(f"{name}_bucket{_labels(base, le='+Inf')} {snap['count']}")
    lines.append(f"{name}_sum{_labels(base)} {_number(round(snap['sum'], 6))}")
    lines.append(f"{name}_count{_labels(base)} {snap['count']}")
    return "\n".join(lines) + "\n"
