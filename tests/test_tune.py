"""`servekit tune`: flags, plan, sizing, and real runs on three apps whose nature is known."""

from __future__ import annotations

import json
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

import pytest

from servekit.errors import ConfigError
from servekit.tune import SCHEMA, TuneSettings, dry_run, validate
from servekit.tune.measure import Cell
from servekit.tune.probe import Probe, classify
from servekit.tune.recommend import recommend
from servekit.tune.report import finish, to_json
from servekit.tune.schema import render_markdown
from servekit.tune.settings import parse_memory, parse_url
from servekit.tune.sizing import Sizing, size
from servekit.tune.trials import Trial
from tests.conftest import ROOT, run_cli

CPU_APP = "tests.apps.tune_cpu:app"
IO_APP = "tests.apps.tune_io:app"
MIXED_APP = "tests.apps.tune_mixed:app"
#: strategies that run a CPU-bound app on several processes without greenlets
PROCESS_BASED = {"sync", "gthread", "processes", "granian"}  # granian: processes x few threads
COOPERATIVE_OR_THREADED = {"gevent", "eventlet", "gthread", "threaded", "tornado", "granian"}


def tune_json(*args: str, timeout: float = 120.0) -> tuple[dict[str, Any], float]:
    """Run `servekit tune ... --json`; return the document and the run's wall time."""
    started = time.monotonic()
    out = run_cli("tune", *args, "--json", timeout=timeout)
    elapsed = time.monotonic() - started
    assert out.returncode == 0, out.stderr
    doc: dict[str, Any] = json.loads(out.stdout)
    assert validate(doc) == [], validate(doc)
    return doc, elapsed


def _app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Length", "2")])
    return [b"ok"]


class TestFlags:
    def test_url_weights(self) -> None:
        """A trailing `=N` is a weight only after a whole path; a query's own `=` stays."""
        assert parse_url("/") == ("/", 1)
        assert parse_url("/a=3") == ("/a", 3)
        assert parse_url("/sleep?s=0.05") == ("/sleep?s=0.05", 1)
        assert parse_url("/search?page=2") == ("/search?page=2", 1)
        assert parse_url("/search?page=2=3") == ("/search?page=2", 3)

    def test_memory_sizes(self) -> None:
        """Memory sizes take binary units with or without 'iB'."""
        assert parse_memory("512M") == 512 << 20
        assert parse_memory("1.5GiB") == 3 << 29
        assert parse_memory("4096") == 4096

    @pytest.mark.parametrize(
        ("flags", "words"),
        [
            (["--duration", "abc"], "--duration 'abc'"),
            (["--strategies", "gvent"], "did you mean 'gevent'"),
            (["--url", "http://example.com/"], "--url"),
            (["--memory", "12X"], "--memory '12X'"),
            (["--max-concurrency", "0"], "--max-concurrency"),
        ],
    )
    def test_bad_value_is_one_line_and_exit_2(self, flags: list[str], words: str) -> None:
        """A bad flag value prints one line naming the flag, exits 2, and starts nothing."""
        out = run_cli("tune", IO_APP, *flags)
        assert out.returncode == 2
        assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr
        assert out.stderr.startswith("servekit: error: ") and words in out.stderr

    def test_missing_package_for_a_named_strategy_is_an_error(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A strategy named in --strategies whose package is missing is the usual ConfigError."""
        import importlib.util

        from servekit import resolver

        real = importlib.util.find_spec
        monkeypatch.setattr(
            resolver, "find_spec", lambda name, *a: None if name == "gevent" else real(name, *a)
        )
        with pytest.raises(ConfigError, match="gevent"):
            dry_run(TuneSettings(app=IO_APP, strategies=("gevent",)))


class TestPlan:
    def test_dry_run_starts_nothing(self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
        """--dry-run prints the plan as schema-valid JSON without starting a process."""
        import os

        from servekit import cli

        def refuse(*args: Any, **kwargs: Any) -> Any:
            raise AssertionError("--dry-run started a process")

        monkeypatch.setattr(subprocess, "Popen", refuse)
        monkeypatch.setattr(os, "fork", refuse)
        cli.main(["tune", IO_APP, "--dry-run", "--json", "--strategies", "sync,gthread"])
        doc = json.loads(capsys.readouterr().out)
        assert validate(doc) == []
        assert doc["dry_run"] is True and doc["probe"] is None and doc["trials"] == []
        assert doc["plan"]["candidates"] == ["sync", "gthread"]
        assert doc["plan"]["estimated_s"] <= doc["limits"]["time_limit_s"]

    def test_app_object_warns_for_cooperative_strategies(self) -> None:
        """An app given as an object is warned about for gevent (imported before the patch), not for sync."""
        result = dry_run(TuneSettings(app=_app, strategies=("sync", "gevent")))
        assert any(w.startswith("gevent: ") and "as an object" in w for w in result.plan.warnings)
        assert not any(w.startswith("sync: ") for w in result.plan.warnings)

    def test_sizes_follow_the_cpu_share(self) -> None:
        """CPU-bound work gets a process or two per CPU and few threads; waiting work gets more."""
        cpu = Sizing(cpus=2, cpu_fraction=0.97, max_concurrency=64, memory_budget=8 << 30, rss_per_worker=30 << 20)
        io = Sizing(cpus=2, cpu_fraction=0.05, max_concurrency=64, memory_budget=8 << 30, rss_per_worker=30 << 20)
        assert size("sync", cpu) == {"workers": 3}
        assert size("gthread", cpu) == {"workers": 2, "threads": 2}
        assert size("gthread", io) == {"workers": 2, "threads": 20}
        assert size("sync", io) == {"workers": 9}
        assert size("gevent", io) == {"workers": 2, "worker_connections": 32}

    def test_memory_budget_caps_workers(self) -> None:
        """Workers are capped so that they fit in 80% of the memory budget."""
        tight = Sizing(cpus=8, cpu_fraction=0.5, max_concurrency=64, memory_budget=200 << 20, rss_per_worker=40 << 20)
        assert size("sync", tight) == {"workers": 3}

    def test_classification_thresholds(self) -> None:
        """At least 70% on a CPU is CPU-bound, at most 30% I/O-bound, mixed between."""
        assert [classify(f) for f in (0.95, 0.7, 0.5, 0.3, 0.02)] == [
            "cpu-bound",
            "cpu-bound",
            "mixed",
            "io-bound",
            "io-bound",
        ]

    def test_readme_documents_the_json_schema(self) -> None:
        """The README's tune schema table is the one generated from SCHEMA (python -m servekit.tune.schema --write README.md)."""
        text = (ROOT / "README.md").read_text()
        start, end = "<!-- tune-schema:start -->\n", "<!-- tune-schema:end -->"
        assert text.split(start, 1)[1].split(end, 1)[0].strip() == render_markdown()
        assert set(SCHEMA["required"]) == set(SCHEMA["properties"])


def _cell(concurrency: int, latency: float, n: int, **extra: Any) -> Cell:
    """A measured point of ``n`` requests of ``latency`` seconds over one second."""
    return Cell(concurrency, seconds=1.0, latencies=[latency] * n, statuses=Counter({200: n}), **extra)


def _probed(cpu_ms: float = 1.0, latency: float = 0.03) -> Probe:
    probe = Probe("gthread", {"workers": 2, "threads": 8})
    probe.levels = [_cell(1, latency, 30, server_cpu=30 * cpu_ms / 1000)]
    return probe


class TestDecision:
    def test_most_throughput_within_the_target_wins(self) -> None:
        """A point over the p99 target does not count, however much it serves."""
        fast = Trial("gevent", {"workers": 2}, cells={8: _cell(8, 0.5, 900)})
        steady = Trial("gthread", {"workers": 2, "threads": 4}, cells={8: _cell(8, 0.04, 400)})
        rec = recommend([fast, steady], _probed(), target_ms=100)
        assert rec is not None and rec.trial is steady and rec.met_target
        assert rec.env == ["SERVEKIT_STRATEGY=gthread", "SERVEKIT_WORKERS=2", "SERVEKIT_THREADS=4"]
        assert "waiting on I/O" in rec.reason and rec.reason.endswith(".")

    def test_a_tie_in_throughput_goes_to_the_lower_p99(self) -> None:
        """Throughputs within 5% are a tie, broken by the lower p99."""
        sync = Trial("sync", {"workers": 3}, cells={4: _cell(4, 0.05, 100)})
        gthread = Trial("gthread", {"workers": 2, "threads": 2}, cells={4: _cell(4, 0.04, 97)})
        rec = recommend([sync, gthread], _probed(cpu_ms=29), target_ms=100)
        assert rec is not None and rec.trial is gthread
        assert "about the same throughput" in rec.reason and "on a CPU" in rec.reason

    def test_errors_disqualify_and_are_warned_about(self) -> None:
        """A point with over 1% errors is not eligible, and the errors are a warning."""
        failing = _cell(8, 0.03, 100)
        failing.statuses = Counter({200: 80, 500: 20})
        result = dry_run(TuneSettings(app=IO_APP, strategies=("sync", "gthread")))
        result.probe = _probed()
        result.trials = [
            Trial("sync", {"workers": 3}, cells={8: failing}),
            Trial("gthread", {"workers": 2, "threads": 4}, cells={8: _cell(8, 0.03, 50)}),
        ]
        result.target_ms = 100
        result.recommendation = recommend(result.trials, result.probe, 100)
        finish(result, 1.0)
        assert result.recommendation is not None and result.recommendation.trial.strategy == "gthread"
        assert "sync: 20 of 100 requests failed (status 500: 20)" in result.warnings
        assert validate(to_json(result)) == []

    def test_a_busy_machine_is_warned_about_with_its_load(self) -> None:
        """Other processes' CPU use while measuring is a warning that shows the load average."""
        result = dry_run(TuneSettings(app=IO_APP, strategies=("sync",)))
        result.probe = _probed()
        result.probe.levels[0].others_cpu = 1.5
        finish(result, 1.0)
        assert any("machine was busy" in w and "load average" in w for w in result.warnings)


@pytest.mark.server
class TestRuns:
    def test_cpu_app_is_cpu_bound_and_gets_processes(self) -> None:
        """The CPU loop is classified CPU-bound and gets processes with few threads each."""
        doc, _ = tune_json(CPU_APP, "--duration", "1", "--max-concurrency", "8")
        assert doc["classification"] == "cpu-bound", doc["cpu_fraction"]
        rec = doc["recommendation"]
        assert rec["strategy"] in PROCESS_BASED, rec
        assert rec["options"].get("threads", 1) <= 2
        assert rec["options"]["workers"] >= 2
        assert rec["env"][0] == f"SERVEKIT_STRATEGY={rec['strategy']}"
        assert doc["probe"]["cpu_ms_per_request"] > 10  # 15 ms of CPU per request, measured

    def test_io_app_is_io_bound_and_capacity_agrees_with_explain(self) -> None:
        """The sleeping app is I/O-bound, gets a cooperative or threaded strategy, and its
        measured capacity agrees with the one `explain` states for the printed lines."""
        doc, _ = tune_json(IO_APP, "--duration", "1", "--max-concurrency", "16")
        assert doc["classification"] == "io-bound", doc["cpu_fraction"]
        rec = doc["recommendation"]
        assert rec["strategy"] in COOPERATIVE_OR_THREADED, rec
        env = dict(line.split("=", 1) for line in rec["env"])
        explained = json.loads(run_cli("explain", IO_APP, "--json", env=env).stdout)
        assert explained["strategy"] == rec["strategy"]
        assert explained["capacity"] == rec["capacity"]
        assert 0.5 <= rec["measured_capacity"] / explained["capacity"] <= 1.5
        served = {t["strategy"]: t["levels"][-1]["throughput_rps"] for t in doc["trials"]}
        assert served[rec["strategy"]] >= 1.3 * served["sync"]  # sync's few workers queue

    def test_mixed_app_is_mixed(self) -> None:
        """Half computation, half waiting is classified mixed, with the fraction stated."""
        doc, _ = tune_json(MIXED_APP, "--duration", "1", "--max-concurrency", "4", "--strategies", "sync")
        assert doc["classification"] == "mixed"
        assert 0.3 < doc["cpu_fraction"] < 0.7
        assert abs(doc["cpu_fraction"] + doc["io_fraction"] - 1) < 0.01

    def test_run_keeps_its_time_limit(self) -> None:
        """A run given 12 s (its defaults want more) shortens its points and ends within the limit."""
        limit = 12.0
        doc, elapsed = tune_json(
            IO_APP, "--time-limit", str(limit), "--strategies", "sync,gthread", "--max-concurrency", "8"
        )
        assert elapsed / limit <= 1.5  # the CLI's own start-up and exit on a shared machine
        assert doc["elapsed_s"] / limit <= 1.1
        assert doc["recommendation"] is not None
        assert any("shortened" in note for note in doc["notes"])
