#!/usr/bin/env python3
"""The Python client against the Rust CLI: time to create a trivial task and wait for its
checked result, on the federation of python/tests/conftest.py (real registry, server, two nodes,
Docker). Prints a Markdown table for BENCHMARKS.md.

    CARGO_TARGET_DIR=... python3 python/bench/create_wait.py [ROUNDS]

Each round, in an alternating order so drift hits both alike:
  cli create+wait   `warden task create --wait --json` (a process: login, pins, digest, create,
                    poll, open results), wall clock around the process
  py create+wait    `warden.Client.from_profile` + `task.create` + `wait_for_results` in this
                    interpreter (login included, as the CLI does), wall clock
  cli create        `warden task create` without --wait (the client's own work, no node run)
  py create         from_profile + task.create
  py create (session)  task.create on a logged-in client
  cli wait (final task)  `warden task wait --json` of a task whose run is already final (login,
                    one poll, download, open and check the result)
  py wait (final task)   from_profile + wait_for_results of the same task
"""

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

import warden  # noqa: E402
from conftest import start_federation  # noqa: E402

ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 20
INPUT = {"function": "f", "args": {"n": 1}}


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="warden-bench-") as tmp:
        gen = start_federation(Path(tmp))
        fed = next(gen)
        try:
            run(fed)
        finally:
            gen.close()


def run(fed) -> None:
    env = {**os.environ, "XDG_STATE_HOME": str(fed.dir / "bench-state")}
    os.environ["XDG_STATE_HOME"] = env["XDG_STATE_HOME"]
    cli = [str(fed.bin), "task", "create", "--profile-file", str(fed.profile), "--image", fed.image,
           "--org", "hospital-a", "--input", json.dumps(INPUT)]
    times = {k: [] for k in ("cli create+wait", "py create+wait", "cli create", "py create",
                             "py create (session)", "cli wait (final task)",
                             "py wait (final task)")}
    done = []
    session = warden.Client.from_profile(fed.profile)

    def cli_wait():
        t = time.perf_counter()
        p = subprocess.run(cli + ["--wait", "--json"], env=env, capture_output=True, text=True)
        d = time.perf_counter() - t
        assert p.returncode == 0 and json.loads(p.stdout)["runs"][0]["state"] == "completed", p.stderr
        times["cli create+wait"].append(d)

    def py_wait():
        t = time.perf_counter()
        c = warden.Client.from_profile(fed.profile)
        task = c.task.create(image=fed.image, organizations=["hospital-a"], function="f",
                             arguments=INPUT["args"])
        r = c.wait_for_results(task.id)
        d = time.perf_counter() - t
        assert r["hospital-a"].value == INPUT["args"]
        times["py create+wait"].append(d)
        done.append(task.id)

    def cli_final():
        t = time.perf_counter()
        p = subprocess.run([str(fed.bin), "task", "wait", "--profile-file", str(fed.profile),
                            "--json", str(done[-1])], env=env, capture_output=True, text=True)
        times["cli wait (final task)"].append(time.perf_counter() - t)
        assert p.returncode == 0, p.stderr

    def py_final():
        t = time.perf_counter()
        c = warden.Client.from_profile(fed.profile)
        r = c.wait_for_results(done[-1])
        times["py wait (final task)"].append(time.perf_counter() - t)
        assert r.ok

    def cli_create():
        t = time.perf_counter()
        p = subprocess.run(cli, env=env, capture_output=True, text=True)
        times["cli create"].append(time.perf_counter() - t)
        assert p.returncode == 0, p.stderr

    def py_create():
        t = time.perf_counter()
        c = warden.Client.from_profile(fed.profile)
        c.task.create(image=fed.image, organizations=["hospital-a"], function="f",
                      arguments=INPUT["args"])
        times["py create"].append(time.perf_counter() - t)

    def py_session():
        t = time.perf_counter()
        session.task.create(image=fed.image, organizations=["hospital-a"], function="f",
                            arguments=INPUT["args"])
        times["py create (session)"].append(time.perf_counter() - t)

    # warm-up: the nodes pull the image once
    cli_wait(); py_wait()
    for k in times:
        times[k].clear()
    for i in range(ROUNDS):
        pair = (cli_wait, py_wait) if i % 2 == 0 else (py_wait, cli_wait)
        for f in pair + (cli_create, py_create, py_session, cli_final, py_final):
            f()
    print(f"| what | median ms | min ms | max ms | rounds |")
    print(f"|---|---|---|---|---|")
    for k, v in times.items():
        ms = [x * 1000 for x in v]
        print(f"| {k} | {statistics.median(ms):.1f} | {min(ms):.1f} | {max(ms):.1f} | {len(ms)} |")
    d = [(a - b) * 1000 for a, b in zip(times["py create+wait"], times["cli create+wait"])]
    print(f"\npy - cli, create+wait, paired by round: median {statistics.median(d):+.1f} ms")


if __name__ == "__main__":
    main()
