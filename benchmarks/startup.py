"""Section 2: start-up (process start to first 200 OK) and import / ``explain`` wall time."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.common import Settings, median, quantiles, rounds, say
from benchmarks.procs import ROOT, Server
from benchmarks.specs import APP, BIN, gunicorn_spec, servekit_spec

__all__ = ["importtime_tree", "run_imports", "run_startup"]

PYTHON = str(BIN / "python")
STARTUP_STRATEGIES = ("sync", "gthread", "gevent")
SETTLE_SECONDS = 1.0

#: what ``servekit run`` imports before gunicorn's arbiter starts, and what it resolves
RUN_PATH = (
    "import servekit.cli, servekit.backends.gunicorn.app; "
    f"servekit.resolver.resolve({APP!r}, 'gthread', source='cli', workers=2)"
)


def run_startup(settings: Settings, log_dir: Path) -> list[dict[str, Any]]:
    """``servekit run`` vs ``gunicorn``: seconds from ``Popen`` to the first 200 OK."""
    out = []
    for strategy in STARTUP_STRATEGIES:
        specs = [servekit_spec(strategy, workers=2), gunicorn_spec(strategy, workers=2)]
        times: dict[str, list[float]] = {spec.key: [] for spec in specs}
        for order in rounds(specs, settings.startup_rounds):
            for spec in order:
                server = Server.start(spec, log_dir)
                try:
                    times[spec.key].append(server.wait_ready(interval=0.005))
                    # A worker still booting loses a SIGTERM (gevent and eventlet workers
                    # then hang until graceful_timeout): let every worker boot first.
                    time.sleep(SETTLE_SECONDS)
                finally:
                    server.stop(timeout=5.0)
        a, b = (spec.key for spec in specs)
        ratios = [x / y for x, y in zip(times[a], times[b], strict=True)]
        row: dict[str, Any] = {
            "strategy": strategy,
            "commands": {spec.key: spec.shell() for spec in specs},
            "servekit_s": median(times[a]),
            "gunicorn_s": median(times[b]),
            "ratio": median(ratios),
            "ratio_range": quantiles(ratios),
            "samples": times,
        }
        say(
            f"startup {strategy}: servekit {row['servekit_s'] * 1000:.0f} ms, "
            f"gunicorn {row['gunicorn_s'] * 1000:.0f} ms, ratio {row['ratio']:.3f}"
        )
        out.append(row)
    return out


def _wall(argv: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, cwd=ROOT, capture_output=True, check=True, timeout=60)
    return time.perf_counter() - started


def _in_process(code: str) -> float:
    """Seconds ``code`` takes inside a fresh interpreter (interpreter start excluded)."""
    timed = f"import time; _t = time.perf_counter()\n{code}\nprint(time.perf_counter() - _t)"
    out = subprocess.run(
        [PYTHON, "-c", timed], cwd=ROOT, capture_output=True, text=True, check=True, timeout=60
    )
    return float(out.stdout.strip().splitlines()[-1])


_LINE = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)")


def importtime_tree(code: str) -> list[dict[str, Any]]:
    """``python -X importtime -c code`` as rows: module, self and cumulative us, depth, parent."""
    out = subprocess.run(
        [PYTHON, "-X", "importtime", "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    rows: list[dict[str, Any]] = []
    pending: dict[int, list[dict[str, Any]]] = {}
    for line in out.stderr.splitlines():
        match = _LINE.match(line)
        if not match:
            continue
        depth = (len(match.group(3)) - 1) // 2
        row = {
            "module": match.group(4),
            "self_us": int(match.group(1)),
            "cumulative_us": int(match.group(2)),
            "depth": depth,
            "parent": None,
        }
        # importtime prints children before their parent, one level deeper.
        for child in pending.pop(depth + 1, []):
            child["parent"] = row["module"]
        pending.setdefault(depth, []).append(row)
        rows.append(row)
    return rows


def _top(name: str) -> str:
    return name.split(".")[0]


def _dependency_costs(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Where an import crosses into another package: who imports it, what it costs."""
    edges = []
    for row in rows:
        parent = row["parent"]
        if parent is None or _top(parent) == _top(row["module"]):
            continue
        if row["cumulative_us"] < 2000:
            continue
        edges.append(
            {"module": row["module"], "imported_by": parent, "cumulative_us": row["cumulative_us"]}
        )
    edges.sort(key=lambda e: -e["cumulative_us"])
    return edges


#: packages that only come with another one: counted as that one
_BROUGHT_BY = {
    "pydantic_core": "pydantic",
    "annotated_types": "pydantic",
    "typing_extensions": "pydantic",
    "typing_inspection": "pydantic",
}
_THIRD_PARTY = frozenset({"pydantic", "structlog", "gunicorn", "werkzeug", "servekit", "packaging"})


def _costs_by_dependency(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Self time of every module, summed by the dependency that brought it in.

    A module belongs to the outermost package (below servekit) on its import chain,
    so ``asyncio`` imported by ``structlog`` counts as structlog's. Standard-library
    modules that servekit or gunicorn import themselves are grouped as such.
    """
    parents = {row["module"]: row["parent"] for row in rows}
    totals: dict[str, int] = {}
    for row in rows:
        chain = [row["module"]]
        while parents.get(chain[-1]):
            chain.append(parents[chain[-1]])
        owner = "servekit"
        for name in reversed(chain):
            top = _BROUGHT_BY.get(_top(name), _top(name))
            if top != "servekit":
                owner = top if top in _THIRD_PARTY else f"standard library ({top} ...)"
                if top not in _THIRD_PARTY:
                    owner = "standard library, imported by servekit itself"
                break
        totals[owner] = totals.get(owner, 0) + int(row["self_us"])
    return [
        {"dependency": name, "self_us": total}
        for name, total in sorted(totals.items(), key=lambda item: -item[1])
    ]


def _modules_loaded(code: str) -> list[str]:
    probe = f"{code}\nimport sys, json; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [PYTHON, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True, timeout=60
    )
    loaded: list[str] = json.loads(out.stdout.strip().splitlines()[-1])
    return loaded


def run_imports(settings: Settings) -> dict[str, Any]:
    """Interpreter start, ``import servekit``, the ``run`` path and ``explain``, timed."""
    n = settings.import_rounds
    explain = [str(BIN / "servekit"), "explain", APP, "--strategy", "gthread", "--workers", "2"]
    cases: dict[str, list[float]] = {
        "python -c pass (process wall)": [],
        "import servekit (in-process)": [],
        "import gunicorn.app.base, gunicorn.arbiter (in-process)": [],
        "servekit run's imports + resolve (in-process)": [],
        "servekit explain (process wall)": [],
    }
    keys = list(cases)
    for order in rounds(keys, n):
        for key in order:
            if key.startswith("python -c pass"):
                value = _wall([PYTHON, "-c", "pass"])
            elif key.startswith("import servekit"):
                value = _in_process("import servekit")
            elif key.startswith("import gunicorn"):
                value = _in_process("import gunicorn.app.base, gunicorn.arbiter")
            elif key.startswith("servekit run"):
                value = _in_process(RUN_PATH)
            else:
                value = _wall(explain)
            cases[key].append(value)
    timings: dict[str, dict[str, Any]] = {
        key: {"median_s": median(v), "range_s": quantiles(v)} for key, v in cases.items()
    }
    trees = {"run": importtime_tree(RUN_PATH), "import": importtime_tree("import servekit")}
    loaded = _modules_loaded("import servekit")
    third_party = sorted(
        {
            _top(m)
            for m in loaded
            if _top(m)
            in {"pydantic", "pydantic_core", "structlog", "gunicorn", "werkzeug", "gevent"}
            | {"eventlet", "tornado", "asyncio", "email", "greenlet"}
        }
    )
    result = {
        "timings": timings,
        "explain_command": " ".join(["servekit", *explain[1:]]),
        "run_code": RUN_PATH,
        "import_loads": third_party,
        "import_module_count": len(loaded),
        "run_dependencies": _dependency_costs(trees["run"]),
        "run_by_dependency": _costs_by_dependency(trees["run"]),
        "run_total_us": sum(r["cumulative_us"] for r in trees["run"] if r["depth"] == 0),
        "python": sys.version.split()[0],
    }
    say(
        "imports: "
        + ", ".join(f"{k.split(' (')[0]} {v['median_s'] * 1000:.0f} ms" for k, v in timings.items())
    )
    return result
