"""The request slots of the gthread and tornado workers (servekit.backends.gunicorn.workers.slots)."""

from __future__ import annotations

import threading

import pytest

from servekit.backends.gunicorn.workers.slots import Away, Slots


def test_a_wait_gives_its_slot_to_the_next_request_and_takes_one_back() -> None:
    woken: list[int] = []
    slots = Slots(1, lambda: woken.append(1), away_max=2)
    slots.take()
    assert slots.step_away()
    assert slots.away == 1 and woken == [1]
    slots.take()  # the next request gets the slot at once
    back = threading.Thread(target=slots.step_back)
    back.start()
    back.join(0.2)
    assert back.is_alive() and slots.away == 1  # waits for a slot, still counted away
    slots.give()
    back.join(2)
    assert not back.is_alive() and slots.away == 0


def test_past_away_max_a_wait_keeps_its_slot() -> None:
    slots = Slots(3, lambda: None, away_max=2)
    for _ in range(3):
        slots.take()
    assert slots.step_away() and slots.step_away()
    assert not slots.step_away()
    assert slots.away == 2


def test_away_steps_back_only_if_it_stepped() -> None:
    slots = Slots(1, lambda: None, away_max=1)
    slots.take()
    kept = Away(slots)
    kept.back()  # never stepped away: takes nothing (it would block on the held slot)
    given = Away(slots)
    given.now()
    given.now()  # once only
    assert slots.away == 1
    given.back()
    assert slots.away == 0
    assert Away(None).stepped is False


def test_the_stated_number_of_waits_without_a_slot() -> None:
    """README and ``explain`` state 256 per worker."""
    from servekit.backends.gunicorn import Gthread, Tornado
    from servekit.backends.gunicorn.workers.slots import AWAY_MAX

    assert AWAY_MAX == 256
    assert Slots(3, lambda: None).pool_size == 3 + AWAY_MAX  # the pool has room for them
    for adapter in (Gthread, Tornado):
        assert adapter.advice is not None and f"up to {AWAY_MAX} per worker" in adapter.advice


def test_a_request_back_from_its_client_goes_on_when_no_slot_frees(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The request in the slot may wait for the one coming back (an app lock held across
    a slow upload): after BACK_WAIT the latter goes on, and the slot count stays right."""
    from servekit.backends.gunicorn.workers import slots as module

    monkeypatch.setattr(module, "BACK_WAIT", 0.2)
    slots = Slots(1, lambda: None)
    slots.take()  # A
    assert slots.step_away()
    slots.take()  # B, which would wait for A's lock
    back = threading.Thread(target=slots.step_back)
    back.start()
    back.join(3)
    assert not back.is_alive() and slots.away == 0  # A went on without a slot
    slots.give()  # B ends: pays A's slot back
    slots.give()  # A ends
    assert slots._free.acquire(timeout=0)
    assert not slots._free.acquire(timeout=0)  # one slot, as there was
