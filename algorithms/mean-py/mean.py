"""`mean-py`: the federated mean and count in Python (warden_algorithm), the counterpart of
algorithms/mean (Rust) with the same functions, arguments, results and reading of the data:

- ``partial_mean {"column", "data"}``: ``{"sum", "count", "skipped"}`` of the column's numeric
  cells in the CSV data source (a file, or a directory holding ``data.csv``); cells are trimmed,
  empty or non-numeric ones (and inf, nan) are skipped; the sum is compensated (Neumaier).
- ``central_mean {"column", "data", "organizations"?, "timeout_seconds"?}``: ``partial_mean``
  subtasks at the listed organizations (default: all of the collaboration), combined into
  ``{"mean", "count", "organizations"}``; every problem is named with its organization.
- ``count {"data"}``: ``{"count": rows}``.
"""

from __future__ import annotations

import csv
import math
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from warden_algorithm import Algorithm, Context, Organization, ResultError, SubtaskResult

DIRECTORY_TABLE = "data.csv"
DEFAULT_WAIT = 1800.0

algorithm = Algorithm()


class Sum:
    """Neumaier's compensated sum, as algorithms/mean's stats::Sum."""

    def __init__(self) -> None:
        self.sum = 0.0
        self.compensation = 0.0

    def add(self, v: float) -> None:
        t = self.sum + v
        if abs(self.sum) >= abs(v):
            self.compensation += (self.sum - t) + v
        else:
            self.compensation += (v - t) + self.sum
        self.sum = t

    def value(self) -> float:
        return self.sum + self.compensation


def parse_number(cell: str) -> Optional[float]:
    """A finite number as Rust's f64 parser reads it (ASCII only, no `_`), else None."""
    text = cell.strip()
    if not text or not text.isascii() or "_" in text:
        return None
    try:
        v = float(text)
    except ValueError:
        return None
    return v if math.isfinite(v) else None


def table_file(path: Path) -> Path:
    if path.is_dir():
        f = path / DIRECTORY_TABLE
        if not f.is_file():
            raise ValueError(f"data source {path} is a directory without {DIRECTORY_TABLE}; put "
                             f"the table in {DIRECTORY_TABLE} or name a CSV file")
        return f
    return path


def rows(path: Path):
    try:
        f = open(path, newline="", encoding="utf-8")
    except OSError as e:
        raise ValueError(f"cannot open {path}: {e.strerror}; check the data source in the node's "
                         "configuration") from None
    with f:
        reader = csv.reader(f, strict=True)
        try:
            header = next(reader, None)
            if header is None or header == [] or header == [""]:
                raise ValueError(f"{path} has no header row; the first line must name the columns")
            header = [h.strip() for h in header]
            yield header
            for n, row in enumerate(reader, 2):
                if not row:
                    continue
                if len(row) != len(header):
                    raise ValueError(f"{path} is not valid CSV: record {n} has {len(row)} fields, "
                                     f"but the header has {len(header)}")
                yield row
        except csv.Error as e:
            raise ValueError(f"{path} is not valid CSV: {e}") from None


def column_stats(path: Path, column: str) -> Dict[str, Any]:
    it = rows(path)
    header = next(it)
    matches = [i for i, h in enumerate(header) if h == column]
    if not matches:
        raise ValueError(f"{path} has no column {column!r}; its columns are: "
                         + ", ".join(repr(h) for h in header))
    if len(matches) > 1:
        raise ValueError(f"{path} has the column {column!r} more than once; rename one of them")
    index = matches[0]
    s, count, skipped = Sum(), 0, 0
    for row in it:
        v = parse_number(row[index])
        if v is None:
            skipped += 1
        else:
            s.add(v)
            count += 1
    total = s.value()
    if not math.isfinite(total):
        raise ValueError(f"the sum of column {column!r} in {path} overflows a 64-bit float")
    return {"sum": total, "count": count, "skipped": skipped}


def _args(args: Any, required: Sequence[str], optional: Sequence[str] = ()) -> Dict[str, Any]:
    if not isinstance(args, dict):
        raise ValueError("the arguments must be an object")
    unknown = sorted(set(args) - set(required) - set(optional))
    if unknown:
        raise ValueError(f"unknown field(s) {', '.join(unknown)}")
    for k in required:
        if not isinstance(args.get(k), str):
            raise ValueError(f"missing string field {k!r}")
    return args


@algorithm.function("partial_mean")
def partial_mean(ctx: Context, args: Any) -> Dict[str, Any]:
    a = _args(args, ("column", "data"))
    stats = column_stats(table_file(ctx.data_path(a["data"])), a["column"])
    print(f"partial_mean: column {a['column']!r} of {a['data']!r}: {stats['count']} values, "
          f"{stats['skipped']} skipped", file=sys.stderr)
    return stats


@algorithm.function("count")
def count(ctx: Context, args: Any) -> Dict[str, Any]:
    a = _args(args, ("data",))
    it = rows(table_file(ctx.data_path(a["data"])))
    next(it)
    return {"count": sum(1 for _ in it)}


def select(collaboration: List[Organization], listed: Optional[List[int]]) -> List[Organization]:
    if listed is None:
        if not collaboration:
            raise ValueError('"organizations" is empty; list at least one organization or leave it '
                             "out for all")
        return list(collaboration)
    if not listed:
        raise ValueError('"organizations" is empty; list at least one organization or leave it '
                         "out for all")
    out, seen = [], set()
    for i in listed:
        if i in seen:
            raise ValueError(f'organization {i} is listed twice in "organizations"')
        seen.add(i)
        found = [o for o in collaboration if o.id == i]
        if not found:
            known = ", ".join(f"{o.id} ({o.name})" for o in collaboration) or "none"
            raise ValueError(f"organization {i} is not in the collaboration; its organizations "
                             f"are: {known}")
        out.append(found[0])
    return out


def gather(targets: List[Organization], runs: List[SubtaskResult]) -> Dict[str, Any]:
    problems, partials = [], []
    for org in targets:
        mine = [r for r in runs if r.organization_id == org.id]
        who = f"organization {org.id} ({org.name})"
        if not mine:
            problems.append(f"{who}: no run was reported")
        elif len(mine) > 1:
            problems.append(f"{who}: {len(mine)} runs were reported, expected one")
        else:
            run = mine[0]
            if run.state != "completed":
                problems.append(f"{who}: {run.state}: {run.reason or 'no reason given'}")
                continue
            try:
                p = run.json()
                if not (isinstance(p, dict) and set(p) == {"sum", "count", "skipped"}):
                    raise ResultError("not {sum, count, skipped}")
                partials.append(p)
            except ResultError as e:
                problems.append(f"{who}: its result is not a partial mean: {e}")
    for run in runs:
        if not any(o.id == run.organization_id for o in targets):
            problems.append(f"organization {run.organization_id}: a run was reported but the "
                            "subtask was not sent there")
    if problems:
        raise ValueError("the partial means did not all arrive: " + "; ".join(problems))
    s, n = Sum(), 0
    for p in partials:
        s.add(float(p["sum"]))
        n += int(p["count"])
    if n == 0:
        raise ValueError("no organization had a numeric value in the column; check the column "
                         "name and data")
    total = s.value()
    if not math.isfinite(total):
        raise ValueError("the combined sum overflows a 64-bit float")
    return {"mean": total / n, "count": n, "organizations": len(partials)}


@algorithm.function("central_mean")
def central_mean(ctx: Context, args: Any) -> Dict[str, Any]:
    a = _args(args, ("column", "data"), ("organizations", "timeout_seconds"))
    targets = select(ctx.proxy.organizations(), a.get("organizations"))
    ids = [o.id for o in targets]
    task = ctx.proxy.create_subtask("partial_mean", {"column": a["column"], "data": a["data"]}, ids)
    print(f"central_mean: subtask {task} at organizations {ids}", file=sys.stderr)
    wait = float(a["timeout_seconds"]) if a.get("timeout_seconds") is not None else DEFAULT_WAIT
    return gather(targets, ctx.proxy.wait_results(task, wait))


if __name__ == "__main__":
    raise SystemExit(algorithm.main())
