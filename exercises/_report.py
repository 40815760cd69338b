"""What the grader prints and writes: the tables, the class CSV and the JSON, written atomically.

Every message in these comes from exercises/_session.py, already cleaned of control characters;
`_wire.clean` runs once more on anything that reaches a terminal or a file, so a student's text
can never carry a terminal escape sequence to the instructor.
"""
from __future__ import annotations

import csv
import io
import json
import os
import tempfile
import time
from pathlib import Path

from exercises._wire import clean


def _pts(x: float | None) -> str:
    return "—" if x is None else f"{x:g}"


def format_submission(sub: dict) -> str:
    """The table of one submission: exercise, check, points earned/possible, message; and the total."""
    rows = [("exercise", "check", "points", "message")]
    for r in sub["exercises"]:
        if r["manual"]:
            rows.append((r["exercise"], "written answer", f"manual/{_pts(r['possible'])}", r["message"]))
            continue
        if all(c["message"].startswith("not run") for c in r["checks"]):    # nothing ran: say why, once
            rows.append((r["exercise"], "(the file)", f"0/{_pts(r['possible'])}", r["message"]))
            continue
        for c in r["checks"]:
            rows.append((r["exercise"], c["check"].removeprefix("check_"), f"{_pts(c['earned'])}/{_pts(c['points'])}",
                         c["message"]))
        status = f"{r['status']}: {r['message']}" if r["message"] else r["status"]
        rows.append((r["exercise"], "= subtotal", f"{_pts(r['earned'])}/{_pts(r['possible'])}", status))
    rows = [tuple(clean(cell, 2000) for cell in row) for row in rows]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row[:3], widths)) + "  " + row[3] for row in rows]
    lines.insert(1, "-" * min(120, sum(widths) + 12))
    manual = f"  (+ {_pts(sub['manual_possible'])} points of written answers, graded by hand)" if sub["manual_possible"] else ""
    lines.append(f"TOTAL {clean(sub['submission'], 200)}: {_pts(sub['total'])}/{_pts(sub['possible'])} autograded points{manual}")
    return "\n".join(line.rstrip() for line in lines)


def _notes(sub: dict) -> str:
    """What an instructor should know about a submission, briefly: missing, unstarted or broken files."""
    notes = []
    for r in sub["exercises"]:
        if r["status"] in ("missing", "not started"):
            notes.append(f"{r['exercise']}: {r['status']}")
        elif r["status"] == "error":
            notes.append(f"{r['exercise']}: {r['message']}")
        elif r["manual"] and "words written" not in r["message"]:
            notes.append(f"{r['exercise']}: no answer written yet")
    return clean("; ".join(notes), 3000)


def format_class(subs: list[dict], exercises: list) -> str:
    header = ["student", *(e.name for e in exercises), "total"]
    rows = [header]
    for s in subs:
        cells = [clean(s["submission"], 200)]
        for r in s["exercises"]:
            cells.append("manual" if r["manual"] else f"{_pts(r['earned'])}/{_pts(r['possible'])}")
        cells.append(f"{_pts(s['total'])}/{_pts(s['possible'])}")
        rows.append(cells)
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    notes = [f"  {clean(s['submission'], 200)}: {_notes(s)}" for s in subs if _notes(s)]
    return "\n".join(lines + (["", "notes:", *notes] if notes else []))


def _atomic_write(path: Path, text: str) -> None:
    """Write to a temporary file beside `path`, then rename it over: a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, subs: list[dict], exercises: list, timeout: float) -> None:
    payload = {"graded_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "timeout_s": timeout,
               "exercises": [{"exercise": e.name, "title": e.title, "points": e.points, "manual": e.manual}
                             for e in exercises],
               "submissions": subs}
    _atomic_write(path, json.dumps(payload, indent=2) + "\n")


def class_csv(subs: list[dict], exercises: list) -> str:
    """One row per student: autograded points per exercise, an empty column per written exercise
    (for the instructor's mark), the autograded total and maximum, and notes on broken files."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["student", *(e.name for e in exercises), "auto_total", "auto_possible", "notes"])
    for s in subs:
        writer.writerow([clean(s["submission"], 200), *("" if r["manual"] else _pts(r["earned"]) for r in s["exercises"]),
                         _pts(s["total"]), _pts(s["possible"]), _notes(s)])
    return out.getvalue()
