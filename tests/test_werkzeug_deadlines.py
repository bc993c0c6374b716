"""The werkzeug strategies' slow-client deadlines, on explicit clock values (no server).

The servers themselves are tested in ``tests/test_reliability_slow_clients.py``.
"""

from __future__ import annotations

import io

import pytest

from servekit.backends.werkzeug.body import BodyTooLarge, ChunkedBody, open_body
from servekit.backends.werkzeug.deadlines import Limits, Pace, peer_text

LIMITS = Limits(header_timeout=2.0, body_min_rate=100, max_body_size=1000)


def test_a_partial_head_past_the_deadline_gets_408() -> None:
    """Bytes of a head, then the deadline: the reason ends with (408)."""
    pace = Pace(LIMITS, ("127.0.0.1", 5), now=0.0)
    assert pace.after_read(10, 0.1, 0.1, 1.0) is None
    reason = pace.after_read(0, 0.5, 0.5, 2.0)
    assert reason == "request head not complete within 2s (408)"


def test_nothing_by_the_deadline_is_a_quiet_close() -> None:
    """No byte at all by header_timeout: a close without a 408."""
    pace = Pace(LIMITS, ("127.0.0.1", 5), now=0.0)
    assert pace.after_read(0, 1.9, 1.9, 1.9) is None
    assert pace.after_read(0, 0.2, 2.1, 2.1) == "no request within 2s"


def test_the_head_deadline_holds_for_a_trickle() -> None:
    """A byte now and then does not move the deadline: it is not a silence limit."""
    pace = Pace(LIMITS, None, now=0.0)
    for step in range(1, 20):
        reason = pace.after_read(1, 0.1, 0.1, step * 0.1)
    assert reason is None
    assert pace.after_read(1, 0.1, 0.1, 2.0) == "request head not complete within 2s (408)"


def test_body_rate_counts_after_the_grace() -> None:
    """A slow body is let be for header_timeout seconds of waiting, then measured."""
    pace = Pace(LIMITS, None, now=0.0)
    pace.start_body()
    assert pace.after_read(10, 1.0, 1.0, 1.0) is None
    assert pace.after_read(10, 1.0, 1.0, 2.0) is None  # 2.0 s waited: not past the grace
    reason = pace.after_read(10, 0.5, 0.5, 2.5)
    assert reason == "request body slower than 100 bytes/s (30 bytes in 2.5s)"


def test_a_fast_body_is_not_cut_and_rate_zero_is_off() -> None:
    """Enough bytes for the time waited pass; body_min_rate=0 measures nothing."""
    pace = Pace(LIMITS, None, now=0.0)
    pace.start_body()
    assert pace.after_read(500, 3.0, 3.0, 3.0) is None
    off = Pace(Limits(header_timeout=2.0, body_min_rate=0), None, now=0.0)
    off.start_body()
    assert off.after_read(1, 30.0, 1.0, 30.0) is None


def test_no_single_wait_for_body_bytes_beyond_header_timeout() -> None:
    """A body that stops for header_timeout is cut, with or without a minimum rate."""
    pace = Pace(Limits(header_timeout=2.0, body_min_rate=0), None, now=0.0)
    pace.start_body()
    assert pace.after_read(0, 0.5, 1.5, 1.5) is None
    assert pace.after_read(0, 0.5, 2.0, 2.0) == "request body silent for 2s"


def test_peer_text() -> None:
    """HOST:PORT for TCP peers; a unix socket peer is named as such."""
    assert peer_text(("10.0.0.1", 4242)) == "10.0.0.1:4242"
    assert peer_text("") == "unix socket"


def test_chunked_body_past_max_body_size_is_refused() -> None:
    """A chunked body is refused (413) once more than the limit was read, not before."""
    chunk = b"190\r\n" + b"x" * 400 + b"\r\n"
    raw = chunk * 3 + b"0\r\n\r\n"
    body, _ = open_body(io.BufferedReader(io.BytesIO(raw)), None, 1000)
    assert len(body.read(800)) == 800
    with pytest.raises(BodyTooLarge) as info:
        body.read()
    assert info.value.status.value == 413
    unlimited = ChunkedBody(io.BufferedReader(io.BytesIO(raw)))
    assert len(io.BufferedReader(unlimited).read()) == 1200
