"""The schema of ``servekit tune --json``: a JSON Schema, a checker, and the README's table.

``python -m servekit.tune.schema --write README.md`` regenerates the table between the
README's ``tune-schema`` markers (a test keeps them in sync).
"""

from __future__ import annotations

from typing import Any

__all__ = ["SCHEMA", "render_markdown", "validate", "write_readme"]

_NUM = {"type": "number"}
_INT = {"type": "integer"}
_STR = {"type": "string"}


def _obj(properties: dict[str, Any], doc: str = "") -> dict[str, Any]:
    return {
        "type": "object",
        "description": doc,
        "properties": properties,
        "required": sorted(properties),
        "additionalProperties": False,
    }


def _d(schema: dict[str, Any], doc: str, nullable: bool = False) -> dict[str, Any]:
    out = dict(schema, description=doc)
    if nullable:
        kinds = out["type"] if isinstance(out["type"], list) else [out["type"]]
        out["type"] = [*kinds, "null"]
    return out


_OPTIONS = {"type": "object", "additionalProperties": {"type": ["integer", "string", "boolean"]}}
_POINT = _obj(
    {
        "concurrency": _d(_INT, "connections kept busy"),
        "requests": _d(_INT, "requests answered"),
        "seconds": _d(_NUM, "time under load"),
        "throughput_rps": _d(_NUM, "answered requests per second"),
        "p50_ms": _d(_NUM, "median latency"),
        "p99_ms": _d(_NUM, "99th percentile latency"),
        "errors": _d(_INT, "answers outside 2xx/3xx, timeouts and connection failures"),
        "statuses": {"type": "object", "additionalProperties": _INT, "description": "status -> count"},
        "failures": {"type": "object", "additionalProperties": _INT, "description": "kind -> count"},
        "cpu_ms_per_request": _d(_NUM, "server CPU (process tree) per request"),
        "served_at_once": _d(_INT, "the most connections the server had accepted at once"),
        "rss_mib_per_worker": _d(_NUM, "resident memory of one worker", nullable=True),
    }
)
_POINTS = {"type": "array", "items": _POINT}

SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "servekit tune --json",
    **_obj(
        {
            "schema": {"const": "servekit-tune/1", "description": "this schema's name and version"},
            "app": _d(_STR, "the app as given"),
            "dry_run": _d({"type": "boolean"}, "true for --dry-run: nothing was started, nothing measured"),
            "requests": _obj(
                {
                    "method": _STR,
                    "paths": {"type": "array", "items": _obj({"path": _STR, "weight": _INT})},
                    "body_bytes": _INT,
                    "headers": {"type": "array", "items": _STR},
                },
                "what each request is (header names only)",
            ),
            "limits": _obj(
                {
                    "duration_s": _NUM,
                    "time_limit_s": _NUM,
                    "max_concurrency": _INT,
                    "request_timeout_s": _NUM,
                },
                "the bounds the run kept to",
            ),
            "machine": _obj(
                {
                    "cpus": _INT,
                    "memory_budget_bytes": _INT,
                    "memory_source": _STR,
                    "load_average": {"type": "array", "items": _NUM},
                    "others_cpu": {"type": ["number", "null"]},
                },
                "usable CPUs, the memory budget and its source, the load average at the start, "
                "CPUs other processes used while tune measured",
            ),
            "plan": _obj(
                {
                    "probe_strategy": _STR,
                    "probe_options": _OPTIONS,
                    "probe_levels": {"type": "array", "items": _INT},
                    "probe_step_s": _NUM,
                    "candidates": {"type": "array", "items": _STR},
                    "estimated_s": _NUM,
                },
                "the plan of the run: what --dry-run shows, measuring nothing",
            ),
            "probe": {
                **_obj(
                    {
                        "strategy": _STR,
                        "options": _OPTIONS,
                        "levels": _POINTS,
                        "stopped": _STR,
                        "server_ms_per_request": _NUM,
                        "cpu_ms_per_request": _NUM,
                        "knee_concurrency": _INT,
                        "rss_mib_per_worker": {"type": ["number", "null"]},
                    }
                ),
                "type": ["object", "null"],
                "description": "the probe's points; a request's server time and CPU at concurrency 1",
            },
            "classification": {
                "enum": ["cpu-bound", "io-bound", "mixed", None],
                "description": "cpu_fraction >= 0.7: cpu-bound; <= 0.3: io-bound; else mixed",
            },
            "cpu_fraction": _d(_NUM, "share of a request's server time spent on a CPU", nullable=True),
            "io_fraction": _d(_NUM, "1 - cpu_fraction: the share spent waiting", nullable=True),
            "p99_target_ms": _d(_NUM, "the p99 the recommendation had to meet", nullable=True),
            "p99_target_source": {"enum": ["probe", "--p99-ms", None], "description": "where the target came from"},
            "trials": {
                "type": "array",
                "description": "one per candidate: options, capacity as explain states it, points",
                "items": _obj(
                    {
                        "strategy": _STR,
                        "options": _OPTIONS,
                        "capacity": {"type": ["integer", "null"]},
                        "capacity_text": _STR,
                        "measured_capacity": {"type": ["integer", "null"]},
                        "levels": _POINTS,
                        "skipped": {"type": ["string", "null"]},
                    }
                ),
            },
            "recommendation": {
                **_obj(
                    {
                        "strategy": _STR,
                        "options": _OPTIONS,
                        "env": {"type": "array", "items": _STR},
                        "capacity": {"type": ["integer", "null"]},
                        "capacity_text": _STR,
                        "measured_capacity": {"type": ["integer", "null"]},
                        "concurrency": _INT,
                        "throughput_rps": _NUM,
                        "p50_ms": _NUM,
                        "p99_ms": _NUM,
                        "met_target": {"type": "boolean"},
                        "reason": _STR,
                    }
                ),
                "type": ["object", "null"],
                "description": "the SERVEKIT_* lines (env), the capacity explain states, the winning point, the reason",
            },
            "warnings": _d({"type": "array", "items": _STR}, "errors seen, a busy machine, an app object for a cooperative strategy"),
            "notes": _d({"type": "array", "items": _STR}, "what was skipped or shortened"),
            "elapsed_s": _d(_NUM, "the run's length"),
        }
    ),
}

_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "null": (type(None),),
}


def _type_ok(value: Any, kinds: str | list[str]) -> bool:
    for kind in [kinds] if isinstance(kinds, str) else kinds:
        if isinstance(value, bool) and kind in ("integer", "number"):
            continue
        if isinstance(value, _TYPES[kind]):
            return True
    return False


def validate(value: Any, schema: dict[str, Any] = SCHEMA, where: str = "$") -> list[str]:
    """Where ``value`` departs from ``schema`` (the subset of JSON Schema used above)."""
    if "const" in schema and value != schema["const"]:
        return [f"{where}: {value!r} is not {schema['const']!r}"]
    if "enum" in schema and value not in schema["enum"]:
        return [f"{where}: {value!r} is not one of {schema['enum']!r}"]
    if "type" in schema and not _type_ok(value, schema["type"]):
        return [f"{where}: {type(value).__name__} is not {schema['type']}"]
    problems: list[str] = []
    if isinstance(value, dict):
        props = schema.get("properties", {})
        problems += [f"{where}: missing {k!r}" for k in schema.get("required", []) if k not in value]
        extra = schema.get("additionalProperties", True)
        for key, item in value.items():
            if key in props:
                problems += validate(item, props[key], f"{where}.{key}")
            elif extra is False:
                problems.append(f"{where}: unexpected {key!r}")
            elif isinstance(extra, dict):
                problems += validate(item, extra, f"{where}.{key}")
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            problems += validate(item, schema["items"], f"{where}[{i}]")
    return problems


def _kind(schema: dict[str, Any]) -> str:
    if "const" in schema:
        return f"`{schema['const']}`"
    if "enum" in schema:
        return " \\| ".join("null" if e is None else f"`{e}`" for e in schema["enum"])
    kinds = schema.get("type", "any")
    return " \\| ".join(kinds) if isinstance(kinds, list) else kinds


def render_markdown() -> str:
    """The top-level keys as a Markdown table (nested keys listed with each)."""
    lines = ["| key | type | meaning |", "| --- | --- | --- |"]
    for key, sub in SCHEMA["properties"].items():
        doc = sub.get("description", "")
        nested = sub.get("properties") or sub.get("items", {}).get("properties")
        if nested:
            doc += f" (keys: {', '.join(f'`{k}`' for k in nested)})"
        lines.append(f"| `{key}` | {_kind(sub)} | {doc.strip().replace('|', chr(92) + '|')} |")
    lines.append(
        "\nEach point (`probe.levels[]`, `trials[].levels[]`) has the keys "
        + ", ".join(f"`{k}`" for k in _POINT["properties"])
        + "."
    )
    return "\n".join(lines)


def write_readme(path: str) -> None:
    """Replace the table between the README's ``tune-schema`` markers with a fresh one."""
    from pathlib import Path

    readme = Path(path)
    text = readme.read_text()
    start, end = "<!-- tune-schema:start -->\n", "<!-- tune-schema:end -->"
    if start not in text or end not in text:
        raise SystemExit(f"{path} has no '<!-- tune-schema:start -->' marker")
    head, rest = text.split(start, 1)
    readme.write_text(head + start + render_markdown() + "\n" + end + rest.split(end, 1)[1])


if __name__ == "__main__":  # pragma: no cover
    import sys

    if sys.argv[1:2] == ["--write"]:
        write_readme(sys.argv[2] if len(sys.argv) > 2 else "README.md")
    else:
        print(render_markdown())
