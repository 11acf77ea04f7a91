#!/usr/bin/env python3
"""A Python algorithm's start-up overhead over the Rust one: `partial_mean` of
algorithms/mean-py (python3.11 FROM scratch, python/tests/pyimage.py) and of algorithms/mean
(static binary FROM scratch) at the same real node, ROUNDS runs each, alternated. Per run: the
node's own time from start to finish as the server records it (`started_at` -> `finished_at`:
container created, started, exited, output read), and the researcher's create -> checked result.

    CARGO_TARGET_DIR=... WARDEN_STATIC_TARGET_DIR=... python3 python/bench/algorithm_startup.py [ROUNDS]
"""

import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

import pyimage  # noqa: E402
from conftest import ROOT, start_federation  # noqa: E402
from test_mean_py import rust_mean_binary  # noqa: E402

ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 10
ORG = "hospital-b"


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="warden-bench-") as tmp:
        tmp = Path(tmp)
        (tmp / "fed").mkdir()
        gen = start_federation(tmp / "fed")
        fed = next(gen)
        try:
            run(fed, tmp)
        finally:
            gen.close()


def run(fed, tmp: Path) -> None:
    rust_ctx = tmp / "rust"
    rust_ctx.mkdir()
    shutil.copy(rust_mean_binary(), rust_ctx / "mean")
    (rust_ctx / "Dockerfile").write_text(
        'FROM scratch\nCOPY mean /mean\nUSER 65534:65534\nENTRYPOINT ["/mean"]\n')
    images = {"rust": f"{fed.registry}/pytest/mean:1.0", "python": f"{fed.registry}/pytest/mean-py:1.0"}
    fed.push_signed(images["rust"], rust_ctx)
    fed.push_signed(images["python"], pyimage.build(tmp / "py", {
        "/app/mean.py": ROOT / "algorithms/mean-py/mean.py",
    }, ["/app/mean.py"]))
    client = fed.client()
    node, total = {k: [] for k in images}, {k: [] for k in images}
    args = {"column": "age", "data": "records"}

    def once(kind: str) -> None:
        t = time.perf_counter()
        task = client.task.create(image=images[kind], organizations=[ORG], function="partial_mean",
                                  arguments=args)
        r = client.wait_for_results(task.id, timeout=120)
        total[kind].append(time.perf_counter() - t)
        assert r.ok
        run_ = client.task.get(task.id).runs[0]
        detail = fed.get(f"/api/runs/{run_.id}")
        from datetime import datetime
        s = datetime.fromisoformat(detail["started_at"].replace("Z", "+00:00"))
        f = datetime.fromisoformat(detail["finished_at"].replace("Z", "+00:00"))
        node[kind].append((f - s).total_seconds())

    once("rust"); once("python")  # the node pulls each image once
    for k in images:
        node[k].clear(); total[k].clear()
    for i in range(ROUNDS):
        for kind in (("rust", "python") if i % 2 == 0 else ("python", "rust")):
            once(kind)
    print("| partial_mean | node: start -> finish, median ms (min-max) | create -> checked result, median ms |")
    print("|---|---|---|")
    for k in images:
        ms = [x * 1000 for x in node[k]]
        print(f"| {k} | {statistics.median(ms):.0f} ({min(ms):.0f}-{max(ms):.0f}) | "
              f"{statistics.median(total[k]) * 1000:.0f} |")
    d = statistics.median(node["python"]) - statistics.median(node["rust"])
    print(f"\npython - rust at the node (medians): {d * 1000:+.0f} ms")


if __name__ == "__main__":
    main()
