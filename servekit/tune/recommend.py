"""The recommendation: the most throughput within the p99 target, and why, in one sentence.

Throughputs within 5% of each other count as equal (a shared machine moves a
measurement that much from one run to the next); the lower p99 decides between them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from servekit.resolver import ENV_PREFIX
from servekit.tune.measure import Cell
from servekit.tune.probe import Probe
from servekit.tune.trials import Trial

__all__ = ["MAX_ERROR_RATE", "TIE", "Recommendation", "best_point", "recommend"]

#: a point with more errors than this is not eligible
MAX_ERROR_RATE = 0.01
TIE = 0.05


@dataclass(frozen=True)
class Recommendation:
    """The chosen trial, the point that won it, and the reason."""

    trial: Trial
    cell: Cell
    met_target: bool
    reason: str

    @property
    def env(self) -> list[str]:
        """The exact ``SERVEKIT_*`` lines to deploy."""
        lines = [f"{ENV_PREFIX}STRATEGY={self.trial.strategy}"]
        lines += [f"{ENV_PREFIX}{k.upper()}={v}" for k, v in self.trial.options.items()]
        return lines

    def describe(self) -> dict[str, Any]:
        """As plain data (the JSON ``recommendation``)."""
        return {
            "strategy": self.trial.strategy,
            "options": dict(self.trial.options),
            "env": self.env,
            "capacity": self.trial.capacity,
            "capacity_text": self.trial.capacity_text,
            "measured_capacity": self.trial.measured_capacity,
            "concurrency": self.cell.concurrency,
            "throughput_rps": round(self.cell.throughput, 1),
            "p50_ms": round(self.cell.latency_ms(50), 2),
            "p99_ms": round(self.cell.latency_ms(99), 2),
            "met_target": self.met_target,
            "reason": self.reason,
        }


def _eligible(cell: Cell, target_ms: float) -> bool:
    return cell.requests > 0 and cell.error_rate <= MAX_ERROR_RATE and cell.latency_ms(99) <= target_ms


def best_point(trial: Trial, target_ms: float) -> Cell | None:
    """The trial's highest-throughput point within the target and without errors."""
    points = [c for c in trial.levels if _eligible(c, target_ms)]
    return max(points, key=lambda c: c.throughput) if points else None


def _nature(probe: Probe) -> str:
    cpu = round(probe.cpu_fraction * 100)
    if probe.classification == "cpu-bound":
        return f"{cpu}% of each request is spent on a CPU"
    if probe.classification == "io-bound":
        return f"{100 - cpu}% of each request is spent waiting on I/O"
    return f"each request spends {cpu}% of its time on a CPU and {100 - cpu}% waiting"


def _pair(a: float, b: float) -> tuple[str, str]:
    """Two figures, with as many decimals (up to 2) as it takes to tell them apart."""
    for digits in (0, 1, 2):
        x, y = f"{a:.{digits}f}", f"{b:.{digits}f}"
        if x != y:
            break
    return x, y


def _ratio(a: float, b: float) -> str:
    ratio = a / b if b else float("inf")
    return f"{ratio:.2f}x" if ratio < 2 else f"{ratio:.1f}x"


def _reason(probe: Probe, win: Trial, cell: Cell, rival: tuple[Trial, Cell | None] | None) -> str:
    nature = _nature(probe)
    p99 = cell.latency_ms(99)
    if rival is None:
        return f"{nature}: {win.strategy} was the only candidate measured ({cell.throughput:.0f} req/s, p99 {p99:.0f} ms)."
    other, other_cell = rival
    if other_cell is None:
        return (
            f"{nature}: {win.strategy} serves {cell.throughput:.0f} req/s at p99 {p99:.0f} ms, "
            f"and {other.strategy} met the p99 target at no load tried."
        )
    mine, theirs = _pair(p99, other_cell.latency_ms(99))
    if other_cell.throughput >= (1 - TIE) * cell.throughput:
        return (
            f"{nature}: {win.strategy} and {other.strategy} serve about the same throughput "
            f"({cell.throughput:.0f} and {other_cell.throughput:.0f} req/s), and {win.strategy}'s "
            f"p99 is lower ({mine} ms against {theirs} ms)."
        )
    return (
        f"{nature}: {win.strategy} serves {_ratio(cell.throughput, other_cell.throughput)} "
        f"{other.strategy}'s throughput within the p99 target ({mine} ms against {theirs} ms)."
    )


#: strategies whose greenlets never yield while a request runs Python
_COOPERATIVE = ("gevent", "eventlet")


def _pick(points: list[tuple[Trial, Cell]], probe: Probe) -> tuple[Trial, Cell]:
    top = max(cell.throughput for _, cell in points)
    tied = [(t, c) for t, c in points if c.throughput >= (1 - TIE) * top]
    if probe.classification == "cpu-bound":
        # On a tie, CPU-bound work goes to processes and threads: a greenlet busy on the
        # CPU holds every other request of its worker (the p99 shows it under more load).
        uncooperative = [(t, c) for t, c in tied if t.strategy not in _COOPERATIVE]
        tied = uncooperative or tied
    return min(tied, key=lambda tc: tc[1].latency_ms(99))


def recommend(trials: list[Trial], probe: Probe, target_ms: float) -> Recommendation | None:
    """The trial that serves the most within ``target_ms`` (or, if none does, the lowest p99)."""
    measured = [t for t in trials if t.skipped is None and t.cells]
    points = [(t, c) for t in measured if (c := best_point(t, target_ms)) is not None]
    met = bool(points)
    if not met:
        clean = [(t, c) for t in measured for c in t.levels if c.requests and c.error_rate <= MAX_ERROR_RATE]
        if not clean:
            return None
        win, cell = min(clean, key=lambda tc: tc[1].latency_ms(99))
        reason = (
            f"{_nature(probe)}: no candidate met the p99 target of {target_ms:.0f} ms; "
            f"{win.strategy} came closest (p99 {cell.latency_ms(99):.0f} ms at concurrency "
            f"{cell.concurrency})."
        )
        return Recommendation(win, cell, False, reason)
    win, cell = _pick(points, probe)
    others = [(t, best_point(t, target_ms)) for t in measured if t.strategy != win.strategy]
    others.sort(key=lambda tc: -(tc[1].throughput if tc[1] is not None else -1.0))
    rival = others[0] if others else None
    reason = _reason(probe, win, cell, rival)
    return Recommendation(win, cell, True, reason)
