"""What changed between two runs (``cs336-exp diff A B``): hyperparameters, code, data,
environment, and the headline results side by side.

:func:`diff_runs` returns the comparison as data (sections of ``(field, A, B)`` rows); the
renderers print it as aligned text or as a Markdown table for the experiment log. Results
come from ``ExperimentLog.results()`` (the numbers every listing shows); code, data and
environment from each run's ``provenance`` (recorded at start: a run without one says "not
recorded"). By default a section shows only what differs (and counts what is the same);
results are always shown whole.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from ..core.log import ExperimentLog
from ..core.text import fmt, format_duration, table

NOT_RECORDED = "not recorded"
_MISSING = object()


@dataclass
class Section:
    """One part of the comparison: its rows ``(field, A's value, B's value)``, and how many
    fields were the same and left out."""

    title: str
    rows: list[tuple[str, Any, Any]] = field(default_factory=list)
    same: int = 0
    note: str = ""


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    return bool(a == b)


def _section(
    title: str, a: dict[str, Any], b: dict[str, Any], everything: bool, note: str = ""
) -> Section:
    section = Section(title, note=note)
    keys = list(a) + [k for k in b if k not in a]
    for key in keys:
        va, vb = a.get(key, _MISSING), b.get(key, _MISSING)
        if va is not _MISSING and vb is not _MISSING and _same(va, vb) and not everything:
            section.same += 1
            continue
        section.rows.append(
            (key, "(absent)" if va is _MISSING else va, "(absent)" if vb is _MISSING else vb)
        )
    return section


def _code(provenance: dict[str, Any]) -> dict[str, Any]:
    git = provenance.get("git")
    if not isinstance(git, dict):
        return {"git": NOT_RECORDED}
    if git.get("error"):
        return {"git": git["error"]}
    out = {
        "commit": git.get("commit"),
        "branch": git.get("branch"),
        "dirty": git.get("dirty"),
        "diff sha256": git.get("diff_sha256"),
        "diff bytes": git.get("diff_bytes"),
        "diff file": git.get("diff_file"),
        "untracked files": git.get("untracked_files"),
        "repository": git.get("repository"),
    }
    return out


def _data(provenance: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, data in (provenance.get("data") or {}).items():
        if not isinstance(data, dict):
            continue
        if data.get("error"):
            out[f"{name} file"] = f"{data.get('path')}: {data['error']}"
            continue
        out[f"{name} fingerprint"] = data.get("fingerprint")
        out[f"{name} size"] = data.get("size")
        out[f"{name} path"] = data.get("path")
    return out


def _environment(provenance: dict[str, Any]) -> dict[str, Any]:
    packages = provenance.get("packages") or {}
    out: dict[str, Any] = {
        "python": provenance.get("python"),
        "platform": provenance.get("platform"),
    }
    for name in ("torch", "cuda", "wandb", "numpy", "cs336_basics"):
        if name in packages:
            out[name] = packages[name]
    out["host"] = provenance.get("host")
    out["gpus"] = ", ".join(map(str, provenance.get("gpus") or [])) or "none seen"
    out["command"] = " ".join(map(str, provenance.get("command") or []))
    return out


def diff_runs(a: ExperimentLog, b: ExperimentLog, everything: bool = False) -> list[Section]:
    """The comparison of run ``a`` with run ``b`` (see the module docstring)."""
    pa, pb = a.provenance, b.provenance
    unrecorded = [log.run_id or log.experiment_name for log in (a, b) if not log.provenance]
    note = f"provenance not recorded for {', '.join(unrecorded)}" if unrecorded else ""
    run = {
        "run id": (a.run_id, b.run_id),
        "started": (a.start_time, b.start_time),
        "group": (a.group, b.group),
        "tags": (", ".join(a.tags), ", ".join(b.tags)),
    }
    ra, rb = a.results().to_dict(), b.results().to_dict()
    for duration in (ra, rb):
        duration["duration_seconds"] = format_duration(duration["duration_seconds"])
    sections = [
        Section("run", [(k, x, y) for k, (x, y) in run.items()]),
        _section("hyperparameters", a.config.to_dict(), b.config.to_dict(), everything),
        _section(
            "code",
            _code(pa) if pa else {"git": NOT_RECORDED},
            _code(pb) if pb else {"git": NOT_RECORDED},
            everything,
            note,
        ),
        _section("data", _data(pa), _data(pb), everything, note),
        _section(
            "environment",
            _environment(pa) if pa else {"versions": NOT_RECORDED},
            _environment(pb) if pb else {"versions": NOT_RECORDED},
            everything,
            note,
        ),
        _section("results", ra, rb, everything=True),
    ]
    return sections


def _cell(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str):
        return value if value else "-"
    return fmt(value)


def _summary_line(section: Section) -> str:
    parts = []
    if section.same:
        parts.append(f"{section.same} the same")
    if section.note:
        parts.append(section.note)
    if not section.rows and not parts:
        parts.append("nothing to compare")
    return f"({'; '.join(parts)})" if parts else ""


def render_text(sections: list[Section], names: tuple[str, str]) -> str:
    """The comparison as aligned text tables, one per section."""
    out: list[str] = []
    for section in sections:
        out.append(f"{section.title}:")
        if section.rows:
            rows = [
                [key, _cell(a), _cell(b), "" if _same(a, b) else "*"] for key, a, b in section.rows
            ]
            body = table(["", names[0], names[1], ""], rows)
            out.extend("  " + line.rstrip() for line in body.splitlines())
        else:
            out.append("  no differences")
        line = _summary_line(section)
        if line:
            out.append(f"  {line}")
        out.append("")
    out.append("(* marks a value that differs)")
    return "\n".join(out)


def _md(value: Any) -> str:
    return _cell(value).replace("|", "\\|").replace("\n", " ")


def render_markdown(sections: list[Section], names: tuple[str, str]) -> str:
    """The comparison as one Markdown table (for the experiment log)."""
    lines = [
        f"| | {_md(names[0])} | {_md(names[1])} |",
        "|---|---|---|",
    ]
    for section in sections:
        extra = _summary_line(section)
        lines.append(f"| **{section.title}** {extra} | | |".replace("  ", " "))
        for key, a, b in section.rows:
            mark = "" if _same(a, b) else " **≠**"
            lines.append(f"| {_md(key)}{mark} | {_md(a)} | {_md(b)} |")
        if not section.rows:
            lines.append("| no differences | | |")
    return "\n".join(lines)


def as_json(sections: list[Section]) -> list[dict[str, Any]]:
    """The comparison as JSON-ready data."""
    return [
        {
            "section": s.title,
            "rows": [{"field": k, "a": a, "b": b, "same": _same(a, b)} for k, a, b in s.rows],
            "same_omitted": s.same,
            "note": s.note,
        }
        for s in sections
    ]
