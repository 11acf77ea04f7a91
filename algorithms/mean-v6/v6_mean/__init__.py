"""`mean-v6`: the federated mean of algorithms/mean written the vantage6 4.x way, against the
published vantage6-algorithm-tools 4.x and nothing of Warden's. It runs unchanged on a vantage6
4.x node and, under a policy rule with ``contract = "vantage6"``, on a Warden node
(docs/vantage6.md).

- ``partial(df, column)`` (``@data(1)``): ``{"sum", "count", "skipped"}`` of the column's numeric
  cells of the first database, read as algorithms/mean reads them: cells trimmed; empty,
  non-numeric, inf and nan cells skipped; the sum compensated (Neumaier).
- ``central(client, column, organizations=None)`` (``@algorithm_client``): one ``partial``
  subtask at the listed organizations (default: every organization of the collaboration),
  waits for it, and combines the partial results into ``{"mean", "count", "organizations"}``.
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Optional

import pandas as pd
from vantage6.algorithm.client import AlgorithmClient
from vantage6.algorithm.tools.decorators import algorithm_client, data
from vantage6.algorithm.tools.util import info


class _Sum:
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


def _number(cell: Any) -> Optional[float]:
    text = "" if cell is None else str(cell).strip()
    if not text or not text.isascii() or "_" in text:
        return None
    try:
        v = float(text)
    except ValueError:
        return None
    return v if math.isfinite(v) else None


@data(1)
def partial(df: pd.DataFrame, column: str) -> Dict[str, Any]:
    if column not in df.columns:
        raise ValueError(f"no column {column!r}; the columns are {list(df.columns)}")
    s, count, skipped = _Sum(), 0, 0
    for cell in df[column].tolist():
        v = _number(cell)
        if v is None:
            skipped += 1
        else:
            s.add(v)
            count += 1
    info(f"partial: {count} values, {skipped} skipped")
    return {"sum": s.value(), "count": count, "skipped": skipped}


@algorithm_client
def central(client: AlgorithmClient, column: str,
            organizations: Optional[List[int]] = None) -> Dict[str, Any]:
    if organizations is None:
        organizations = [o["id"] for o in client.organization.list()]
    info(f"central: partial at organizations {organizations}")
    task = client.task.create(
        input_={"method": "partial", "kwargs": {"column": column}},
        organizations=organizations,
        name="partial mean",
    )
    results = client.wait_for_results(task_id=task.get("id"))
    if len(results) != len(organizations):
        raise ValueError(f"{len(results)} partial results for {len(organizations)} organizations")
    s, n = _Sum(), 0
    for r in results:
        s.add(float(r["sum"]))
        n += int(r["count"])
    if n == 0:
        raise ValueError("no organization had a numeric value in the column")
    return {"mean": s.value() / n, "count": n, "organizations": len(results)}
