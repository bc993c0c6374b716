"""``BENCHMARKS.md`` and the chart, from the results of one run (``results/results.json``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

__all__ = ["chart", "goals", "write_report"]

ROOT = Path(__file__).resolve().parent.parent

OVERHEAD_GOAL = 0.98
LOG_GOAL = 0.90
STARTUP_GOAL = 1.15
IMPORT_GOAL_S = 0.150
CEILING_GOAL = 0.90
MEMORY_GOAL = 1.05
#: servers whose workers live for one request: no per-process CPU share to show
FORKS_PER_REQUEST = frozenset({"servekit-processes"})
#: servers measured for comparison only: no goal applies to them
REFERENCES = frozenset({"gunicorn-tornado", "eventlet-native"})
#: wrk's single thread above this share of a core may itself be the bottleneck
CLIENT_BUSY = 0.85


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def _mib(n: float) -> str:
    return f"{n / 1024 / 1024:.1f}"


def _yes(ok: bool) -> str:
    return "met" if ok else "**not met**"


def _table(head: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(" --- " for _ in head) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


# -- goals -------------------------------------------------------------------------


def _reached(row: dict[str, Any]) -> float:
    """How close a ceiling cell came: to its ceiling, or to the CPU it could use."""
    return float(max(row["efficiency"], row.get("cpu_saturation", 0.0)))


def goals(data: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """Each goal of the issue: what it asks, what was measured, whether it is met."""
    s = data.get("sections", {})
    out: list[tuple[str, str, bool]] = []
    overhead = s.get("overhead", {}).get("pairs", [])
    for pair in overhead:
        log = pair["access_log"]
        goal = LOG_GOAL if log else OVERHEAD_GOAL
        name = (
            f"overhead {pair['strategy']}, access log {'on' if log else 'off'}: rps ratio >= {goal}"
        )
        lo, hi = pair["rps_ratio_range"]
        measured = (
            f"{pair['rps_ratio']:.3f} (rounds {lo:.2f}-{hi:.2f}); "
            f"CPU per request {pair['cpu_ratio']:.3f}x"
        )
        out.append((name, measured, pair["rps_ratio"] >= goal))
    for row in s.get("startup", []):
        out.append(
            (
                f"start-up {row['strategy']}: servekit run / gunicorn <= {STARTUP_GOAL}",
                f"{row['ratio']:.2f} ({_ms(row['servekit_s'])} vs {_ms(row['gunicorn_s'])})",
                row["ratio"] <= STARTUP_GOAL,
            )
        )
    imports = s.get("imports")
    if imports:
        t = imports["timings"]["import servekit (in-process)"]["median_s"]
        out.append((f"import servekit <= {_ms(IMPORT_GOAL_S)}", _ms(t), t <= IMPORT_GOAL_S))
    ceiling = s.get("ceiling")
    if ceiling:
        for key in ceiling["labels"]:
            if key in REFERENCES:
                continue
            cells = [
                r for r in ceiling["rows"] if r["key"] == key and r["client_cpu"] < CLIENT_BUSY
            ]
            if not cells:
                continue
            worst = min(cells, key=_reached)
            note = ""
            if worst["efficiency"] < CEILING_GOAL <= worst["cpu_saturation"]:
                note = f", CPU-bound: {worst['cpu_saturation']:.0%} of the CPU it could use"
            out.append(
                (
                    f"ceiling {ceiling['labels'][key]}: >= {CEILING_GOAL:.0%} of ceiling",
                    f"lowest {worst['efficiency']:.0%} (at {worst['connections']} connections{note})",
                    _reached(worst) >= CEILING_GOAL,
                )
            )
    for pair in overhead:
        if pair["access_log"]:
            continue
        a = pair["memory_loaded"][f"servekit-{pair['strategy']}"]
        b = pair["memory_loaded"][f"gunicorn-{pair['strategy']}"]
        ratio = a["rss"] / b["rss"] if b["rss"] else 0.0
        out.append(
            (
                f"memory {pair['strategy']}: RSS master+workers within 5% of gunicorn",
                f"{ratio:.2f}x ({_mib(a['rss'])} vs {_mib(b['rss'])} MiB)",
                ratio <= MEMORY_GOAL,
            )
        )
    return out


#: which section of benchmarks/FINDINGS.md explains a goal, by the goal's first word
_FINDING_FOR = {"overhead": 1, "start-up": 2, "import": 2, "ceiling": 3, "memory": 5}


def _finding(goal: str) -> str:
    number = _FINDING_FOR.get(goal.split()[0])
    return f"Findings {number}" if number else ""


# -- sections ------------------------------------------------------------------------


def _machine(data: dict[str, Any]) -> str:
    m = data["machine"]
    v = m["versions"]
    load_end = m.get("load_average_end") or [0, 0, 0]
    lines = [
        f"- **When**: {m['date']}, servekit commit `{m['commit']}`"
        + (" (with uncommitted changes in `servekit/`)" if m.get("servekit_dirty") else ""),
        f"- **CPU**: {m['cpu_model']}, {m['cpus_usable']} usable of {m['cpus_online']} online; "
        f"**memory** {m['memory_gib']} GiB; Linux {m['kernel']}",
        f"- **Python** {v.get('python')}; gunicorn {v.get('gunicorn')}, werkzeug {v.get('werkzeug')}, "
        f"gevent {v.get('gevent')} (greenlet {v.get('greenlet')}), eventlet {v.get('eventlet')}, "
        f"tornado {v.get('tornado')}, structlog {v.get('structlog')}, pydantic {v.get('pydantic')}",
        f"- **Load generator**: {m['load_generator']}, one thread, in its own process on 127.0.0.1",
        f"- **Load average** (1/5/15 min) at the start {', '.join(f'{x:.2f}' for x in m['load_average_start'])}, "
        f"at the end {', '.join(f'{x:.2f}' for x in load_end)}: the machine is shared "
        "(other test suites ran at the same time), hence interleaved runs and medians.",
    ]
    wall = data.get("wall_seconds")
    if wall:
        per = ", ".join(f"{k} {v / 60:.1f}" for k, v in data.get("section_seconds", {}).items())
        lines.append(f"- **Duration** of this run: {wall / 60:.1f} min ({per} min)")
    return "\n".join(lines)


def _overhead(section: dict[str, Any]) -> str:
    rows = []
    for p in section["pairs"]:
        a, b = p["servekit"], p["gunicorn"]
        lo, hi = p["rps_ratio_range"]
        goal = LOG_GOAL if p["access_log"] else OVERHEAD_GOAL
        rows.append(
            [
                p["strategy"],
                "on" if p["access_log"] else "off",
                f"{a['rps']:.0f}",
                f"{b['rps']:.0f}",
                f"**{p['rps_ratio']:.3f}** ({lo:.2f}-{hi:.2f})",
                f"{a['p99_ms']:.2f} / {b['p99_ms']:.2f}",
                f"{a['cpu_us_per_request']:.0f} / {b['cpu_us_per_request']:.0f}",
                f"{p['cpu_ratio']:.3f}",
                f"{_yes(p['rps_ratio'] >= goal)} (>= {goal})",
            ]
        )
    head = [
        "strategy",
        "access log",
        "servekit req/s",
        "gunicorn req/s",
        "ratio (min-max of rounds)",
        "p99 ms servekit / gunicorn",
        "server CPU us/req servekit / gunicorn",
        "CPU/req ratio",
        "goal",
    ]
    return _table(head, rows)


def _startup(rows: list[dict[str, Any]], imports: dict[str, Any] | None) -> str:
    parts = []
    if rows:
        table = []
        for r in rows:
            lo, hi = r["ratio_range"]
            table.append(
                [
                    r["strategy"],
                    _ms(r["servekit_s"]),
                    _ms(r["gunicorn_s"]),
                    f"**{r['ratio']:.2f}** ({lo:.2f}-{hi:.2f})",
                    f"{_yes(r['ratio'] <= STARTUP_GOAL)} (<= {STARTUP_GOAL})",
                ]
            )
        parts.append(
            _table(
                ["strategy (2 workers)", "servekit run", "gunicorn CLI", "ratio (min-max)", "goal"],
                table,
            )
        )
    if imports:
        table = []
        for key, value in imports["timings"].items():
            lo, hi = value["range_s"]
            goal = ""
            if key.startswith("import servekit"):
                goal = f"{_yes(value['median_s'] <= IMPORT_GOAL_S)} (<= {_ms(IMPORT_GOAL_S)})"
            table.append([key, _ms(value["median_s"]), f"{_ms(lo)}-{_ms(hi)}", goal])
        parts.append(_table(["what", "median", "min-max", "goal"], table))
        loads = ", ".join(imports["import_loads"]) or "none of them"
        parts.append(
            f"`import servekit` loads {imports['import_module_count']} modules; of pydantic, "
            f"structlog, gunicorn, werkzeug, gevent, eventlet, tornado, asyncio, email and "
            f"greenlet it loads: {loads}."
        )
        by_dep = imports.get("run_by_dependency") or []
        if by_dep:
            parts.append(
                "The same imports, the self time of every module summed by the dependency "
                "that brought it in (a module imported by structlog, such as asyncio, counts "
                "as structlog's):\n\n"
                + _table(
                    ["dependency", "import time"],
                    [[d["dependency"], f"{d['self_us'] / 1000:.1f} ms"] for d in by_dep],
                )
            )
        deps = imports["run_dependencies"][:14]
        table = [
            [f"`{d['module']}`", f"`{d['imported_by']}`", f"{d['cumulative_us'] / 1000:.1f} ms"]
            for d in deps
        ]
        parts.append(
            "What `servekit run` imports before gunicorn's arbiter starts "
            f'(`python -X importtime -c "{imports["run_code"]}"`, total '
            f"{imports['run_total_us'] / 1000:.0f} ms), as imports that cross from one "
            "package into another, costliest first (cumulative, so nested rows overlap):\n\n"
            + _table(["module", "imported by", "cumulative"], table)
        )
    return "\n\n".join(parts)


def _ceiling(section: dict[str, Any], chart_rel: str) -> str:
    levels = sorted({r["connections"] for r in section["rows"]})
    by = {(r["key"], r["connections"]): r for r in section["rows"]}
    head = ["server (capacity)", *[f"c={c}" for c in levels]]
    rows = []
    for key, label in section["labels"].items():
        cap = section["capacities"][key]
        cells = [f"{label} ({'unbounded' if cap is None else cap})"]
        for c in levels:
            r = by[(key, c)]
            mark = "" if r["client_cpu"] < CLIENT_BUSY else " (wrk busy)"
            if r["efficiency"] < CEILING_GOAL <= r.get("cpu_saturation", 0.0):
                mark += f" CPU {r['cpu_saturation']:.0%}"
            cell = f"{r['rps']:.0f} / {r['ceiling_rps']:.0f} ({r['efficiency']:.0%}){mark}"
            if (
                _reached(r) < CEILING_GOAL
                and r["client_cpu"] < CLIENT_BUSY
                and key not in REFERENCES
            ):
                cell = f"**{cell}**"
            cells.append(cell)
        rows.append(cells)
    throughput = _table(head, rows)
    rows = []
    for key, label in section["labels"].items():
        cells = [label]
        for c in levels:
            r = by[(key, c)]
            cell = f"{r['p50_ms']:.0f} / {r['p99_ms']:.0f}; {r['server_cores']:.2f} cores"
            if "cpu_available" in r:
                cell += f" of {r['cpu_available']:.2f}"
            if section["processes"].get(key, 1) > 1 and key not in FORKS_PER_REQUEST:
                cell += f" ({r.get('busiest_share', 1.0):.0%} in one)"
            if r["timeouts"]:
                cell += f"; {r['timeouts']} t/o"
            cells.append(cell)
        rows.append(cells)
    latency = _table(["server", *[f"c={c}" for c in levels]], rows)
    rows = []
    for key, label in section["labels"].items():
        probes = section["probes"][key]
        rows.append(
            [label, *[f"{probes[str(c)]['rps']:.0f}" if str(c) in probes else "" for c in levels]]
        )
    limits = _table(["server", *[f"c={c}" for c in levels]], rows)
    return "\n\n".join(
        [
            f"![throughput vs concurrency]({chart_rel})",
            "Requests per second served / ceiling (share of the ceiling). `CPU n%`: below the "
            "ceiling but using n% of the CPU it could get (what it used plus what the machine "
            "left idle, at most one core per process), so bound by its real cost per request "
            "rather than by the 0 ms probe's. **Bold**: below "
            f"{CEILING_GOAL:.0%} of both, with wrk not the bottleneck:",
            throughput,
            "Latency p50 / p99 in ms, the server's CPU use in cores of the cores it could get "
            "(for several processes, the busiest one's share of its CPU), and `t/o`: requests "
            "wrk gave up on (5 s). Server CPU per request, in us, is in `results.json`:",
            latency,
            "CPU-bound limit (req/s with the sleep at 0 ms; measured at 32 connections, "
            "and at every level above 32 for servers whose capacity exceeds 32):",
            limits,
        ]
    )


def _pairs(section: dict[str, Any]) -> str:
    levels = sorted({r["connections"] for r in section["rows"]})
    by = {(r["key"], r["connections"]): r for r in section["rows"]}
    pairs = [
        (
            "servekit-tornado",
            "gunicorn-tornado",
            "servekit tornado (threads) / gunicorn -k tornado",
        ),
        ("servekit-eventlet-w1", "eventlet-native", "servekit eventlet w=1 / eventlet.wsgi.server"),
    ]
    rows = []
    for a, b, label in pairs:
        if (a, levels[0]) not in by or (b, levels[0]) not in by:
            continue
        cells = [label]
        for c in levels:
            x, y = by[(a, c)], by[(b, c)]
            ratio = f"{x['rps'] / y['rps']:.2f}" if y["rps"] >= 1 else "n/a"
            cells.append(
                f"{x['rps']:.0f} / {y['rps']:.0f} = {ratio} "
                f"({x['cpu_us_per_request']:.0f} / {y['cpu_us_per_request']:.0f} us CPU/req)"
            )
        rows.append(cells)
    return _table(["req/s", *[f"c={c}" for c in levels]], rows)


def _cpu(section: dict[str, Any]) -> str:
    rows = []
    for r in section["rows"]:
        rows.append(
            [
                r["label"],
                str(r["processes"]),
                f"{r['rps']:.0f}",
                f"{r['ideal_rps']:.0f}",
                f"{r['of_ideal']:.0%}",
                f"{r['p50_ms']:.0f} / {r['p99_ms']:.0f}",
                f"{r['server_cores']:.2f} (+{r.get('idle_cores', 0.0):.2f} idle)",
                f"{r['cpu_us_per_request'] / 1000:.1f}",
            ]
        )
    head = [
        "strategy",
        "processes",
        "req/s",
        "ideal min(processes, CPUs) / t",
        "of ideal",
        "p50 / p99 ms",
        "server cores (machine idle)",
        "server CPU ms/req",
    ]
    return _table(head, rows)


def _memory(section: dict[str, Any]) -> str:
    rows = []
    for p in section["pairs"]:
        if p["access_log"]:
            continue
        s = p["strategy"]
        for when in ("memory_booted", "memory_loaded"):
            a = p[when][f"servekit-{s}"]
            b = p[when][f"gunicorn-{s}"]
            rss_ratio = a["rss"] / b["rss"] if b["rss"] else 0.0
            pss_ratio = a["pss"] / b["pss"] if b["pss"] else 0.0
            aw = sum(a["worker_rss"]) / max(1, len(a["worker_rss"]))
            bw = sum(b["worker_rss"]) / max(1, len(b["worker_rss"]))
            rows.append(
                [
                    s,
                    "after boot" if when == "memory_booted" else "after load",
                    f"{_mib(a['master_rss'])} / {_mib(b['master_rss'])}",
                    f"{_mib(aw)} / {_mib(bw)}",
                    f"{_mib(a['rss'])} / {_mib(b['rss'])}",
                    f"**{rss_ratio:.2f}**",
                    f"{_mib(a['pss'])} / {_mib(b['pss'])}",
                    f"{pss_ratio:.2f}",
                    _yes(rss_ratio <= MEMORY_GOAL) if when == "memory_loaded" else "",
                ]
            )
    head = [
        "strategy (2 workers)",
        "when",
        "master RSS MiB servekit / gunicorn",
        "RSS per worker",
        "total RSS",
        "RSS ratio",
        "total PSS",
        "PSS ratio",
        "goal (<= 1.05)",
    ]
    parts = [_table(head, rows)]
    steps = section.get("import_rss") or []
    if steps:
        base = steps[1]["rss_kib"] if len(steps) > 1 else 0
        table = [
            [
                st["step"],
                f"{st['rss_kib'] / 1024:.1f}",
                f"{(st['rss_kib'] - base) / 1024:+.1f}" if i >= 1 else "",
                str(st["modules"]),
            ]
            for i, st in enumerate(steps)
        ]
        parts.append(
            "Where the difference comes from: RSS of a fresh interpreter after each import "
            "step (each worker is a fork of the master, so it starts with the master's modules):\n\n"
            + _table(["imported", "RSS MiB", "vs bare gunicorn", "modules"], table)
        )
    sweep = section.get("worker_sweep") or []
    if sweep:
        table = []
        for row in sweep:
            rss_extra = row["servekit_rss"] - row["gunicorn_rss"]
            pss_extra = row["servekit_pss"] - row["gunicorn_pss"]
            table.append(
                [
                    f"{row['strategy']}, {row['workers']} worker(s)",
                    f"{_mib(row['servekit_rss'])} / {_mib(row['gunicorn_rss'])}",
                    f"{rss_extra / 2**20:+.1f}",
                    f"{_mib(row['servekit_pss'])} / {_mib(row['gunicorn_pss'])}",
                    f"{pss_extra / 2**20:+.1f}",
                ]
            )
        parts.append(
            "Does the difference grow with the workers? Booted and warm (50 requests), median "
            "of the interleaved starts. RSS counts a page shared by the forked processes "
            "once per process; PSS splits it between them, so total PSS is the memory the "
            "server really takes:\n\n"
            + _table(
                [
                    "config",
                    "total RSS MiB servekit / gunicorn",
                    "RSS extra MiB",
                    "total PSS MiB servekit / gunicorn",
                    "PSS extra MiB",
                ],
                table,
            )
        )
    return "\n\n".join(parts)


def _commands(data: dict[str, Any]) -> str:
    s = data.get("sections", {})
    seen: dict[str, str] = {}
    for pair in s.get("overhead", {}).get("pairs", []):
        seen.update(pair["commands"])
    for row in s.get("startup", []):
        seen.update(row["commands"])
    for key in ("ceiling", "cpu"):
        if key in s:
            seen.update(s[key]["commands"])
    lines = [
        "```console",
        "$ make bench          # pip install -r benchmarks/requirements.txt; python -m benchmarks.run",
        "$ python -m benchmarks.run --only ceiling   # one section; the others keep their results",
        "```",
        "",
        "Each server runs from the repository root with its output in a log file; `$PORT` is a "
        "free port picked for the run. Loads are, per run (`$S` seconds, `$C` connections):",
        "",
        "```console",
        "$ wrk -t1 -c$C -d${S}s --timeout 5s -s benchmarks/report.lua http://127.0.0.1:$PORT/PATH",
        "```",
        "",
        "with PATH `/` (overhead), `/io?ms=50` (ceiling), `/io?ms=0` (CPU-bound limit), "
        f"`/cpu?loops={s.get('cpu', {}).get('loops', 80000)}` (CPU-bound). Servers:",
        "",
        "```console",
    ]
    for key, command in seen.items():
        lines.append(f"# {key}")
        lines.append(f"$ {command}")
    lines.append("```")
    imports = s.get("imports")
    if imports:
        lines += [
            "",
            'Import timings: `python -c pass`; `python -c "import servekit"` and the other '
            "in-process rows timed with `time.perf_counter()` around the code; "
            f"`{imports['explain_command']}` as a whole process.",
        ]
    return "\n".join(lines)


def chart(data: dict[str, Any], path: Path) -> bool:
    """Throughput vs concurrency per server, and share of the ceiling; False without matplotlib."""
    section = data.get("sections", {}).get("ceiling")
    if not section:
        return False
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, (left, right) = plt.subplots(1, 2, figsize=(14, 5.6))
    levels = sorted({r["connections"] for r in section["rows"]})
    cmap = plt.get_cmap("tab20")
    for index, (key, label) in enumerate(section["labels"].items()):
        rows = sorted(
            (r for r in section["rows"] if r["key"] == key), key=lambda r: r["connections"]
        )
        xs = [r["connections"] for r in rows]
        style = "--" if not key.startswith("servekit-") else "-"
        color = cmap(index % 20)
        left.plot(xs, [r["rps"] for r in rows], style, marker="o", color=color, label=label)
        right.plot(
            xs,
            [min(112.0, 100 * r["efficiency"]) for r in rows],
            style,
            marker="o",
            color=color,
            label=label,
        )
    ideal = [c / (section["io_ms"] / 1000) for c in levels]
    left.plot(levels, ideal, ":", color="grey", label="connections / 50 ms")
    for axis in (left, right):
        axis.set_xscale("log", base=2)
        axis.set_xticks(levels)
        axis.set_xticklabels([str(c) for c in levels])
        axis.set_xlabel("concurrent connections")
        axis.grid(True, which="both", alpha=0.3)
    left.set_yscale("log")
    left.set_ylabel("requests/s (median)")
    left.set_title(f"I/O-bound endpoint (sleep {section['io_ms']} ms): throughput")
    right.set_ylabel("% of ceiling min(capacity / 50 ms, CPU limit); capped at 112")
    right.set_title("share of each server's ceiling")
    right.axhline(100 * CEILING_GOAL, color="grey", linestyle=":")
    right.set_ylim(0, 115)
    left.legend(fontsize=7, loc="upper left")
    fig.suptitle(f"servekit strategies, {data['machine']['cpus_usable']} CPUs, dashed: references")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def write_report(data: dict[str, Any], output: Path, chart_path: Path) -> None:
    """Write the markdown report to ``output`` and the chart to ``chart_path``."""
    s = data.get("sections", {})
    drew = chart(data, chart_path)
    chart_rel = os.path.relpath(chart_path, output.parent)
    parts = [
        "# servekit benchmarks",
        "Generated by `make bench` (`python -m benchmarks.run`) from one run; the raw numbers "
        "are in `benchmarks/results/results.json`. Every load comes from `wrk` in a separate "
        "process on 127.0.0.1, every run is bounded in time, and the servers being compared "
        "take turns (A B, B A, ...) so that the shared machine's changing load falls on all "
        "of them alike; tables show medians.",
        "## Machine",
        _machine(data),
    ]
    g = goals(data)
    if g:
        parts += [
            "## Goals",
            _table(
                ["goal", "measured", "", "why, when not met"],
                [[a, b, _yes(c), "" if c else _finding(a)] for a, b, c in g],
            ),
        ]
    if "overhead" in s:
        st = data["settings"]
        parts += [
            "## 1. Overhead: servekit vs the gunicorn CLI",
            f"Trivial endpoint `/`, {st['overhead_workers']} workers (gthread: 4 threads, "
            f"`worker_connections` 4; gevent: 1000 connections), {st['overhead_connections']} "
            f"connections, {st['overhead_rounds']} rounds of {st['overhead_seconds']:g} s per "
            "server, interleaved. The ratio is servekit / gunicorn per round, then the median. "
            "Server CPU per request is the CPU time of master and workers (from `/proc`) over "
            "the requests served: it is far less sensitive to the machine's other load than "
            "requests/s. Access log on: servekit's structured `request` event as JSON lines "
            "(`--log-format json --access-log`) vs gunicorn's `--access-logfile -`, both to a file.",
            _overhead(s["overhead"]),
        ]
    if "startup" in s or "imports" in s:
        parts += [
            "## 2. Start-up and import time",
            "Process start (`Popen`) to the first `200 OK` on `/`, polled every 5 ms; "
            "servekit run vs the gunicorn CLI with the same settings, interleaved.",
            _startup(s.get("startup", []), s.get("imports")),
        ]
    if "ceiling" in s:
        c = s["ceiling"]
        parts += [
            "## 3. Ceiling: an I/O-bound endpoint at rising concurrency",
            f"`/io?ms={c['io_ms']}` sleeps {c['io_ms']} ms (`time.sleep`, cooperative under "
            "gevent and eventlet). Each strategy at servekit's default size for "
            f"{c['cpus']} CPUs. Ceiling = min(min(connections, capacity) / "
            f"{c['io_ms'] / 1000:g} s, CPU-bound limit).",
            _ceiling(c, chart_rel if drew else "benchmarks/results/ceiling.png"),
            "References, same app, same load: servekit's tornado worker (thread pool) vs "
            "gunicorn's own `-k tornado` (the app on the event loop), both 2 workers; servekit's "
            "eventlet worker with 1 worker vs `eventlet.wsgi.server` in one process:",
            _pairs(c),
        ]
    if "cpu" in s:
        c = s["cpu"]
        parts += [
            "## 4. CPU-bound endpoint",
            f"`/cpu?loops={c['loops']}`: {c['work_ms']:.1f} ms of pure Python per request "
            f"(measured alone), {c['connections']} connections, {c['cpus']} CPUs shared with wrk.",
            _cpu(c),
        ]
    if "overhead" in s:
        parts += [
            "## 5. Memory: master + workers",
            "RSS (and PSS, which splits pages shared between the forked processes) of every "
            "process of the server, from `/proc`, for the log-off servers of section 1: after "
            "boot and after their load.",
            _memory(s["overhead"]),
        ]
    if "granian" in s:
        from benchmarks.granian import render

        parts += ["## 7. granian", render(s["granian"])]
    findings = ROOT / "benchmarks" / "FINDINGS.md"
    if findings.exists() and not data.get("quick"):
        parts += [findings.read_text().strip()]
    parts += ["## Commands", _commands(data)]
    output.write_text("\n\n".join(parts) + "\n")
