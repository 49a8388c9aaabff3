"""The comparison table: logsieve against each peer, per benchmark group.

Reads a pytest-benchmark JSON file (`pytest benches --benchmark-only --benchmark-json=out.json`)
and prints, for every group, each tool's best time, MB/s, lines/s and how many times slower
than logsieve it is, plus the project's targets checked against the numbers. The same table ends
every benchmark run (benches/conftest.py).

    python benches/report.py out.json [more.json ...] [--markdown]
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path
from typing import Any


def _seconds(row: dict[str, Any]) -> float:
    """Inner (in-subprocess) seconds when a probe reported them, else the best round."""
    info = row.get("extra_info", {})
    return float(info.get("inner_seconds") or row["stats"]["min"])


def _tool(row: dict[str, Any]) -> str:
    info = row.get("extra_info", {})
    tool = info.get("tool") or row.get("param") or row["name"]
    return f"{tool} (fallback)" if info.get("failed") else str(tool)


def _grouped(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[row.get("group") or "ungrouped"].append(row)
    return dict(sorted(groups.items()))


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def table(rows: list[dict[str, Any]]) -> list[list[str]]:
    """One line per benchmark: group, tool, seconds, MB/s, lines/s, ratio, CPU seconds (all
    threads, the least load-sensitive number on a shared machine), peak RSS, note."""
    out = [
        ["group", "tool", "best s", "MB/s", "lines/s", "x logsieve", "CPU s", "peak RSS MB", "note"]
    ]
    for group, members in _grouped(rows).items():
        base = next((_seconds(r) for r in members if str(_tool(r)).startswith("logsieve")), None)
        for row in sorted(members, key=_seconds):
            info = row.get("extra_info", {})
            secs = _seconds(row)
            nbytes, lines = info.get("bytes"), info.get("lines")
            ratio = secs / base if base else None
            note = "FAILED outright: " + info["failed"][:60] if info.get("failed") else ""
            if info.get("valid") is not None and info.get("valid") != info.get("expected_valid"):
                note += f" valid {info['valid']} != {info.get('expected_valid')}"
            if info.get("speedup") is not None:
                note += f" speedup {info['speedup']:.2f}x vs sequential"
            if info.get("python_progress") is not None:
                note += f", Python thread ran at {info['python_progress']:.0%} during process"
            out.append(
                [
                    group,
                    _tool(row),
                    f"{secs:.3f}",
                    _fmt(nbytes / 1e6 / secs if nbytes else None, ".0f"),
                    _fmt(lines / secs if lines else None, ",.0f"),
                    _fmt(ratio, ".2f"),
                    _fmt(info.get("cpu_seconds"), ".2f"),
                    _fmt(info.get("peak_rss_mb"), ".0f"),
                    note.strip(),
                ]
            )
    return out


_ALTERNATING = "core: 5% invalid vs clean, alternating"
_VS_POLARS = "core: clean vs polars, alternating"


def targets(rows: list[dict[str, Any]]) -> list[str]:
    """The project's targets, each with the measured value (only those the run can answer)."""
    by: dict[tuple[str, str], float] = {}
    rss: dict[str, float] = {}
    for row in rows:
        tool = str(row.get("extra_info", {}).get("tool") or row.get("param"))
        by[(row.get("group") or "", tool)] = _seconds(row)
        if row.get("extra_info", {}).get("peak_rss_mb") is not None:
            rss[tool] = row["extra_info"]["peak_rss_mb"]
    lines: list[str] = []

    def times(what: str, value: float, goal: float) -> None:
        ok = "met" if value >= goal else "MISSED"
        lines.append(f"{what}: {value:.2f}x (target >= {goal:g}x) {ok}")

    def ratio(group: str, peer: str, goal: float, what: str) -> None:
        if (group, "logsieve") in by and (group, peer) in by:
            times(what, by[(group, peer)] / by[(group, "logsieve")], goal)

    ratio("core: clean", "polars", 4, "core clean vs polars")
    head_to_head = next((r for r in rows if r.get("group") == _VS_POLARS), None)
    if head_to_head:
        info = head_to_head["extra_info"]
        what = "core clean vs polars, alternating in one process"
        times(what, info["polars_s"] / info["logsieve_s"], 4)
    ratio("core: 5% invalid", "polars", 4, "core 5% invalid vs polars")
    clean = next((r for r in rows if _is(r, "core: clean", "logsieve")), None)
    dirty = next((r for r in rows if _is(r, "core: 5% invalid", "logsieve")), None)
    if clean and dirty:
        speed = _lines_per_s(dirty) / _lines_per_s(clean)
        ok = "met" if speed >= 0.9 else "MISSED"
        lines.append(f"5% invalid vs clean speed (lines/s): {speed:.0%} (target >= 90%) {ok}")
    pair = next((r for r in rows if r.get("group") == _ALTERNATING), None)
    if pair:
        info = pair["extra_info"]
        speed = (info["dirty_lines"] / info["dirty_s"]) / (info["clean_lines"] / info["clean_s"])
        ok = "met" if speed >= 0.9 else "MISSED"
        lines.append(
            f"5% invalid vs clean speed, alternating in one process (lines/s): {speed:.0%} "
            f"(target >= 90%) {ok}"
        )
    ratio("end to end: 5% invalid", "polars", 2.5, "end to end vs polars")
    ratio("end to end: 5% invalid", "seed", 50, "end to end vs seed")
    ratio("whole command: clean", "polars", 2.5, "whole command, clean, vs the polars script")
    ratio("whole command: clean", "seed", 28, "whole command, clean, vs the seed's program")
    whole = {
        name: next((r for r in rows if _is(r, f"whole command: {name}", "logsieve")), None)
        for name in ("clean", "5% invalid")
    }
    if whole["clean"] and whole["5% invalid"]:
        speed = _bytes_per_s(whole["5% invalid"]) / _bytes_per_s(whole["clean"])
        ok = "met" if speed >= 0.95 else "MISSED"
        lines.append(f"whole command, 5% invalid vs clean (bytes/s): {speed:.0%} (>= 95%) {ok}")
    for row in rows:
        if _is(row, "whole command: empty file (start-up)", "logsieve process (empty file)"):
            ms = _seconds(row) * 1000
            ok = "met" if ms <= 150 else "MISSED"
            lines.append(f"logsieve process on an empty file: {ms:.0f} ms (<= 150 ms) {ok}")
    small = {
        r["extra_info"].get("inputs"): r
        for r in rows
        if r.get("group") == "whole command: many small files"
    }
    if 1 in small and len(small) == 2:
        files = max(small)
        each = (_seconds(small[files]) - _seconds(small[1])) / files * 1000
        ok = "met" if each <= 2 else "MISSED"
        lines.append(f"per-file overhead, {files} small files: {each:.2f} ms a file (<= 2 ms) {ok}")
    gib = "logsieve process (1 GiB file)"
    if gib in rss:
        ok = "met" if rss[gib] <= 300 else "MISSED"
        lines.append(f"{gib} peak RSS: {rss.pop(gib):.0f} MB (target <= 300 MB) {ok}")
    for tool, mb in sorted(rss.items()):
        if tool.startswith("logsieve") and "empty file" not in tool:
            ok = "met" if mb <= 400 else "MISSED"
            lines.append(f"{tool} peak RSS: {mb:.0f} MB (target <= 400 MB) {ok}")
    return lines


def _is(row: dict[str, Any], group: str, tool: str) -> bool:
    return row.get("group") == group and row.get("extra_info", {}).get("tool") == tool


def _bytes_per_s(row: dict[str, Any]) -> float:
    return row["extra_info"]["bytes"] / _seconds(row)


def _lines_per_s(row: dict[str, Any]) -> float:
    return row["extra_info"]["lines"] / _seconds(row)


def render(rows: list[dict[str, Any]], markdown: bool = False) -> str:
    cells = table(rows)
    if markdown:
        head, *body = cells
        text = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        text += ["| " + " | ".join(r) + " |" for r in body]
    else:
        widths = [max(len(r[i]) for r in cells) for i in range(len(cells[0]))]
        text = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
    goals = targets(rows)
    if goals:
        text += ["", "Targets:"] + [f"- {g}" for g in goals]
    return "\n".join(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("json_files", type=Path, nargs="+", help="one or more runs, merged")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    rows = [row for f in args.json_files for row in json.loads(f.read_text())["benchmarks"]]
    print(render(rows, markdown=args.markdown))


if __name__ == "__main__":
    main()
