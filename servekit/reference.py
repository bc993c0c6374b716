"""The option reference, generated from the config models (the README's table comes from here).

``python -m servekit.reference`` prints the Markdown table and
``python -m servekit.reference --write README.md`` refreshes the README's copy; a
test fails when the README's copy differs.
"""

from __future__ import annotations

from typing import Any, Literal, get_args, get_origin

from servekit.resolver import ENV_PREFIX, all_options, applies_to

__all__ = ["option_reference", "render_markdown"]


def option_reference() -> list[dict[str, Any]]:
    """Every option as documented: name, type, default, env var, CLI flag, strategies, help."""
    from servekit.backends import REGISTRY, load_strategy
    from servekit.config import AutoConfig, StrategyConfig

    models: list[type[StrategyConfig]] = [load_strategy(n).config for n in REGISTRY]
    models.append(AutoConfig)
    rows = []
    for name in all_options():
        info = next(m.model_fields[name] for m in models if name in m.model_fields)
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        rows.append(
            {
                "name": name,
                "type": _type_name(info.annotation),
                "default": str(extra.get("default_doc", "")),
                "env": ENV_PREFIX + name.upper(),
                "flag": _flag(name, info.annotation),
                "strategies": applies_to(name),
                "help": info.description or "",
            }
        )
    return rows


def _type_name(annotation: Any) -> str:
    """``int``, ``bool``, ``'a' | 'b'``: the annotation without its ``None``."""
    args = [a for a in get_args(annotation) if a is not type(None)] or [annotation]
    inner = args[0]
    if get_origin(inner) is Literal:
        return " | ".join(repr(v) for v in get_args(inner))
    return str(getattr(inner, "__name__", inner))


def _is_bool(annotation: Any) -> bool:
    return "bool" in str(annotation)


def _flag(name: str, annotation: Any) -> str:
    dashed = name.replace("_", "-")
    return f"--{dashed} / --no-{dashed}" if _is_bool(annotation) else f"--{dashed}"


def render_markdown() -> str:
    """The reference as a Markdown table."""
    lines = [
        "| option | type | default | env var | CLI flag | strategies | meaning |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    every = set(applies_to("host"))
    for row in option_reference():
        strategies = "all" if set(row["strategies"]) == every else ", ".join(row["strategies"])
        cells = [
            f"`{row['name']}`",
            row["type"].replace("|", "\\|"),
            row["default"].replace("|", "\\|"),
            f"`{row['env']}`",
            f"`{row['flag']}`",
            strategies,
            row["help"].replace("|", "\\|"),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_readme(path: str) -> None:
    """Replace the table between the README's ``reference`` markers with a fresh one."""
    import re
    from pathlib import Path

    readme = Path(path)
    text = readme.read_text()
    start = re.search(r"<!-- reference:start[^>]*-->\n", text)
    end = text.index("<!-- reference:end -->")
    if start is None:
        msg = f"{path} has no '<!-- reference:start -->' marker"
        raise SystemExit(msg)
    readme.write_text(text[: start.end()] + render_markdown() + "\n" + text[end:])


if __name__ == "__main__":  # pragma: no cover
    import sys

    if sys.argv[1:2] == ["--write"]:
        write_readme(sys.argv[2] if len(sys.argv) > 2 else "README.md")
    else:
        print(render_markdown())
