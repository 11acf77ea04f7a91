"""algorithms/mean-py (Python, warden_algorithm) against algorithms/mean (Rust) through the
same real nodes: the same central_mean -> partial_mean subtasks over each node's `records`,
the same answer."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pyimage
from conftest import ROOT

A, B = "hospital-a", "hospital-b"
TRIPLE = "x86_64-unknown-linux-gnu"


def rust_mean_binary() -> Path:
    target = Path(os.environ.get("WARDEN_STATIC_TARGET_DIR") or ROOT / "target" / "static")
    subprocess.run(["cargo", "build", "--release", "--quiet", "--target", TRIPLE,
                    "-p", "warden-algorithm-mean", "--bin", "mean", "--target-dir", str(target)],
                   check=True, cwd=ROOT,
                   env={**os.environ, "RUSTFLAGS": "-C target-feature=+crt-static"})
    return target / TRIPLE / "release" / "mean"


def test_the_python_mean_gives_the_rust_mean_through_real_nodes(federation, tmp_path):
    host = federation.registry
    rust_ctx = tmp_path / "rust"
    rust_ctx.mkdir()
    shutil.copy(rust_mean_binary(), rust_ctx / "mean")
    (rust_ctx / "Dockerfile").write_text(
        'FROM scratch\nCOPY mean /mean\nUSER 65534:65534\nENTRYPOINT ["/mean"]\n')
    rust = f"{host}/pytest/mean:1.0"
    federation.push_signed(rust, rust_ctx)
    py_ctx = pyimage.build(tmp_path / "py", {
        "/app/mean.py": ROOT / "algorithms/mean-py/mean.py",
    }, ["/app/mean.py"])
    py = f"{host}/pytest/mean-py:1.0"
    federation.push_signed(py, py_ctx)

    client = federation.client()
    ids = [federation.orgs[A].id, federation.orgs[B].id]
    args = {"column": "age", "data": "records", "organizations": ids, "timeout_seconds": 120}
    answers = {}
    partials = {}
    for image in (rust, py):
        task = client.task.create(image=image, organizations=[A], function="central_mean",
                                  arguments=args)
        r = client.wait_for_results(task.id, timeout=180, raise_on_failure=False)
        assert r.ok, (image, r.reasons, federation.node_logs())
        answers[image] = r[A].value
        task = client.task.create(image=image, organizations=[B], function="partial_mean",
                                  arguments={"column": "age", "data": "records"})
        r = client.wait_for_results(task.id, timeout=180, raise_on_failure=False)
        assert r.ok, (image, r.reasons, federation.node_logs())
        partials[image] = r[B].value
    # hospital-a: 30, 50, 41.5 (a blank and `unknown` skipped); hospital-b: 47, 60 (inf skipped)
    expected = {"mean": (30 + 50 + 41.5 + 47 + 60) / 5, "count": 5, "organizations": 2}
    assert answers[rust] == expected, answers
    assert answers[py] == answers[rust]
    assert partials[py] == partials[rust] == {"sum": 107.0, "count": 2, "skipped": 1}
    # A function the Python algorithm does not offer fails the run with exit status 1 (its
    # words stay in the node's run log: an algorithm's logs never reach the server).
    task = client.task.create(image=py, organizations=[B], function="median",
                              arguments={"column": "age", "data": "records"})
    r = client.wait_for_results(task.id, timeout=120, raise_on_failure=False)
    assert r[B].state == "failed" and "exited with code 1" in (r[B].reason or ""), r[B]
    assert "median" not in (r[B].reason or "")
