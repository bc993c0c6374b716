"""Run every benchmark and write ``BENCHMARKS.md`` and ``benchmarks/results/``.

Usage (from the repository root)::

    make bench                              # installs benchmarks/requirements.txt, then this
    python -m benchmarks.run                # the same, about 15 minutes
    python -m benchmarks.run --quick        # a smoke test (about 3 minutes; output in /tmp)
    python -m benchmarks.run --only ceiling # some sections; the others keep their last results
    python -m benchmarks.run --report-only  # rewrite BENCHMARKS.md from results/results.json

Servers run on 127.0.0.1 in their own process groups and are all stopped at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: python benchmarks/run.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import Settings, say
from benchmarks.machine import machine_info

__all__ = ["main"]

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
SECTIONS = ("imports", "startup", "overhead", "ceiling", "cpu", "granian")


def _run_section(name: str, settings: Settings, log_dir: Path) -> Any:
    if name == "imports":
        from benchmarks.startup import run_imports

        return run_imports(settings)
    if name == "startup":
        from benchmarks.startup import run_startup

        return run_startup(settings, log_dir)
    if name == "overhead":
        from benchmarks.memory import import_rss, worker_sweep
        from benchmarks.overhead import run_overhead

        return {
            "pairs": run_overhead(settings, log_dir),
            "import_rss": import_rss(),
            "worker_sweep": worker_sweep(log_dir, repeat=settings.memory_repeat),
        }
    if name == "ceiling":
        from benchmarks.ceiling import run_ceiling

        return run_ceiling(settings, log_dir)
    if name == "granian":
        from benchmarks.granian import run_granian

        return run_granian(settings, log_dir)
    from benchmarks.cpu import run_cpu

    return run_cpu(settings, log_dir)


def main(argv: list[str] | None = None) -> None:
    """Parse the command line, run the chosen sections, save and report."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="short runs (a smoke test)")
    parser.add_argument("--only", default=",".join(SECTIONS), help="comma-separated sections")
    parser.add_argument("--report-only", action="store_true", help="only rewrite the report")
    parser.add_argument(
        "--output",
        type=Path,
        default=HERE.parent / "BENCHMARKS.md",
        help="where the report goes (default: BENCHMARKS.md at the repository root)",
    )
    args = parser.parse_args(argv)
    only = tuple(s.strip() for s in args.only.split(",") if s.strip())
    unknown = [s for s in only if s not in SECTIONS]
    if unknown:
        parser.error(f"unknown section(s) {unknown}; choose from {', '.join(SECTIONS)}")
    # A smoke test's results stay out of the repository.
    results_dir = Path(tempfile.gettempdir()) / "servekit-bench-quick" if args.quick else RESULTS
    results_dir.mkdir(exist_ok=True)
    results_path = results_dir / "results.json"
    previous: dict[str, Any] = {}
    if results_path.exists():
        previous = json.loads(results_path.read_text())
    if not args.report_only:
        settings = Settings.quick(only) if args.quick else Settings(sections=only)
        data: dict[str, Any] = dict(previous)
        data.setdefault("sections", {})
        started = time.time()
        data["machine"] = machine_info()
        data["settings"] = {k: v for k, v in vars(settings).items() if k != "extra"}
        data["quick"] = args.quick
        log_dir = Path(tempfile.mkdtemp(prefix="servekit-bench-"))
        try:
            for name in SECTIONS:
                if name not in only:
                    continue
                say(f"section {name}")
                section_started = time.time()
                data["sections"][name] = _run_section(name, settings, log_dir)
                data.setdefault("section_seconds", {})[name] = time.time() - section_started
                results_path.write_text(json.dumps(data, indent=1, default=str))
        finally:
            if os.environ.get("SERVEKIT_BENCH_KEEP_LOGS"):
                say(f"server logs kept in {log_dir}")
            else:
                shutil.rmtree(log_dir, ignore_errors=True)
        data["machine"]["load_average_end"] = os.getloadavg()
        data["wall_seconds"] = time.time() - started
        results_path.write_text(json.dumps(data, indent=1, default=str))
    else:
        data = previous
    from benchmarks.report import write_report

    chart = results_dir / "ceiling.png"
    output = args.output if not args.quick else results_dir / "BENCHMARKS.md"
    write_report(data, output, chart)
    say(f"wrote {output} and {chart}")


if __name__ == "__main__":
    main()
