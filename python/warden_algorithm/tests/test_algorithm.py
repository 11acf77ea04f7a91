"""warden_algorithm against real files and a real HTTP/1.1 server on a Unix socket that speaks
the proxy's routes (docs/algorithm-contract.md) with its token check."""

from __future__ import annotations

import base64
import json
import os
import socketserver
import subprocess
import sys
import tempfile
import textwrap
import threading
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, Dict, List

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import warden_algorithm as wa  # noqa: E402

TOKEN = "run-token-0123456789"


class FakeNodeProxy:
    """The proxy's routes, served over a Unix socket; `script` lists the answers of the results
    route in order (the last one repeats)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.requests: List[Dict[str, Any]] = []
        self.results_script: List[Any] = [{"complete": True, "runs": []}]
        self.refuse_next: List[int] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a: Any) -> None:
                pass

            def answer(self, status: int, body: Any) -> None:
                raw = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def error(self, status: int, code: str, message: str) -> None:
                self.answer(status, {"error": {"code": code, "message": message}})

            def handle_one(self, method: str) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                owner.requests.append({"method": method, "path": self.path,
                                       "auth": self.headers.get("Authorization"),
                                       "body": json.loads(body) if body else None})
                if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                    return self.error(401, "unauthenticated", "bad token")
                if owner.refuse_next:
                    return self.error(owner.refuse_next.pop(0), "rate_limited", "slow down")
                if method == "GET" and self.path == "/v1/organizations":
                    return self.answer(200, {"organizations": [{"id": 1, "name": "a"},
                                                               {"id": 2, "name": "b"}]})
                if method == "POST" and self.path == "/v1/subtasks":
                    return self.answer(200, {"task_id": 17})
                if method == "GET" and self.path.startswith("/v1/subtasks/17/results?wait="):
                    script = owner.results_script
                    return self.answer(200, script.pop(0) if len(script) > 1 else script[0])
                return self.error(404, "not_found", f"no route {method} {self.path}")

            def do_GET(self) -> None:
                self.handle_one("GET")

            def do_POST(self) -> None:
                self.handle_one("POST")

        class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
            daemon_threads = True

            def get_request(self) -> Any:
                conn, _ = super().get_request()
                return conn, ("local", 0)

        self.server = Server(str(path), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def run_dirs(tmp_path: Path) -> Dict[str, Any]:
    for d in ("input", "data", "output", "proxy"):
        (tmp_path / d).mkdir()
    (tmp_path / "data" / "records").write_text("age\n30\n50\n")
    env = {
        wa.ENV_INPUT_DIR: str(tmp_path / "input"),
        wa.ENV_DATA_DIR: str(tmp_path / "data"),
        wa.ENV_OUTPUT: str(tmp_path / "output" / "output"),
        wa.ENV_PROXY_SOCKET: str(tmp_path / "proxy" / "proxy.sock"),
        wa.ENV_TOKEN: TOKEN,
        wa.ENV_RUN_ID: "5",
        wa.ENV_TASK_ID: "4",
        wa.ENV_ORGANIZATION_ID: "2",
        wa.ENV_COLLABORATION_ID: "1",
    }
    return {"dir": tmp_path, "env": env}


@pytest.fixture
def proxy_server(run_dirs: Dict[str, Any]):
    s = FakeNodeProxy(Path(run_dirs["env"][wa.ENV_PROXY_SOCKET]))
    yield s
    s.close()


def write_input(run_dirs: Dict[str, Any], value: Any) -> None:
    raw = value if isinstance(value, bytes) else json.dumps(value).encode()
    (run_dirs["dir"] / "input" / "input").write_bytes(raw)


def output(run_dirs: Dict[str, Any]) -> Path:
    return run_dirs["dir"] / "output" / "output"


def test_the_environment_reads_the_contract_variables_and_defaults(run_dirs):
    e = wa.Environment.from_environ(run_dirs["env"])
    assert (e.run_id, e.task_id, e.organization_id, e.collaboration_id) == (5, 4, 2, 1)
    assert e.output == output(run_dirs) and e.token == TOKEN
    assert TOKEN not in repr(e) and "<redacted>" in repr(e)
    d = wa.Environment.from_environ({})
    assert d.input_path == Path("/mnt/input/input") and d.output == Path("/mnt/output/output")
    assert d.proxy_socket == Path("/mnt/proxy/proxy.sock") and d.token is None and d.run_id is None
    for bad in ("-1", "1.5", "x", "١"):
        with pytest.raises(wa.EnvError, match="WARDEN_RUN_ID"):
            wa.Environment.from_environ({wa.ENV_RUN_ID: bad})


def test_main_dispatches_on_the_function_and_writes_the_output_atomically(run_dirs):
    alg = wa.Algorithm()
    seen = {}

    @alg.function("partial_mean")
    def partial_mean(ctx, args):
        seen["args"] = args
        rows = ctx.data_path("records").read_text().split()[1:]
        return {"sum": sum(map(int, rows)), "count": len(rows), "org": ctx.organization_id}

    @alg.function()
    def raw(ctx, args):
        return b"\x00\xffbytes"

    @alg.function()
    def nothing(ctx, args):
        return None

    write_input(run_dirs, {"function": "partial_mean", "args": {"column": "age"}})
    assert alg.main(run_dirs["env"]) == 0
    assert seen["args"] == {"column": "age"}
    assert output(run_dirs).read_bytes() == b'{"sum":80,"count":2,"org":2}'
    # Only the output is left in the directory: the temporary file was renamed over it.
    assert os.listdir(run_dirs["dir"] / "output") == ["output"]
    write_input(run_dirs, {"function": "raw"})
    assert alg.main(run_dirs["env"]) == 0 and output(run_dirs).read_bytes() == b"\x00\xffbytes"
    output(run_dirs).unlink()
    write_input(run_dirs, {"function": "nothing", "args": None})
    assert alg.main(run_dirs["env"]) == 0 and not output(run_dirs).exists()
    assert alg.function_names == ["nothing", "partial_mean", "raw"]


def test_failures_print_the_reason_and_exit_1_without_output(run_dirs, capsys):
    alg = wa.Algorithm()

    @alg.function()
    def boom(ctx, args):
        raise ZeroDivisionError("division by zero")

    @alg.function()
    def nan(ctx, args):
        return {"x": float("nan")}

    @alg.function()
    def data(ctx, args):
        return str(ctx.data_path(args))

    cases = [
        ({"function": "missing"}, "unknown function 'missing': this algorithm offers boom, data, nan"),
        ({"function": "boom"}, "boom failed: ZeroDivisionError: division by zero"),
        ({"function": "nan"}, "cannot serialise the output of nan"),
        ({"function": "data", "args": "absent"}, "data source 'absent' is not mounted"),
        ({"function": "data", "args": "../etc"}, "not a data source name"),
        ({"function": "data", "args": ".."}, "not a data source name"),
        ({"function": ""}, "empty function"),
        ({"function": "boom", "extra": 1}, "unknown field(s) 'extra'"),
        ([1, 2], "not a JSON object"),
        (b"\xff\xfe", "is not {\"function\""),
        (b'{"function": "boom"} trailing', "is not {\"function\""),
    ]
    for inp, needle in cases:
        write_input(run_dirs, inp)
        assert alg.main(run_dirs["env"]) == 1, inp
        err = capsys.readouterr().err
        assert err.startswith("error: ") and needle in err, (inp, err)
        assert not output(run_dirs).exists()
    (run_dirs["dir"] / "input" / "input").unlink()
    assert alg.main(run_dirs["env"]) == 1
    assert "cannot read the input" in capsys.readouterr().err
    # The data source listing names what is offered.
    with pytest.raises(wa.EnvError, match="this node offers: records"):
        wa.Environment.from_environ(run_dirs["env"]).data_path("other")


def test_an_output_that_cannot_be_written_leaves_nothing_behind(run_dirs, capsys):
    env = dict(run_dirs["env"])
    env[wa.ENV_OUTPUT] = str(run_dirs["dir"] / "no-such-dir" / "output")
    write_input(run_dirs, {"function": "f"})
    assert wa.Algorithm().add("f", lambda c, a: 1).main(env) == 1
    assert "cannot write the output" in capsys.readouterr().err
    assert os.listdir(run_dirs["dir"] / "output") == []


def test_the_proxy_lists_organizations_and_creates_subtasks_with_the_token(run_dirs, proxy_server):
    ctx = wa.Context(wa.Environment.from_environ(run_dirs["env"]))
    assert ctx.proxy.organizations() == [wa.Organization(1, "a"), wa.Organization(2, "b")]
    assert ctx.proxy.create_subtask("partial_mean", {"column": "age"}, [1, 2], name="p") == 17
    get, post = proxy_server.requests
    assert get["auth"] == f"Bearer {TOKEN}" and get["path"] == "/v1/organizations"
    assert post["body"] == {"function": "partial_mean", "args": {"column": "age"},
                            "organizations": [1, 2], "name": "p"}
    # Without a name, none is sent.
    ctx.proxy.create_subtask("f", None, [2])
    assert proxy_server.requests[-1]["body"] == {"function": "f", "args": None, "organizations": [2]}


def test_results_are_decoded_and_waited_for(run_dirs, proxy_server):
    proxy = wa.Context(wa.Environment.from_environ(run_dirs["env"])).proxy
    b64 = base64.b64encode(b'{"sum": 3}').decode()
    proxy_server.results_script = [
        {"complete": False, "runs": [{"organization_id": 1, "state": "running"},
                                     {"organization_id": 2, "state": "awaiting_release"}]},
        {"complete": True, "runs": [
            {"organization_id": 1, "state": "completed", "result": b64, "reason": None},
            {"organization_id": 2, "state": "rejected", "result": None, "reason": "denied by rule x"},
            {"organization_id": 3, "state": "completed"},
        ]},
    ]
    runs = proxy.wait_results(17, timeout=30)
    assert [r.state for r in runs] == ["completed", "rejected", "completed"]
    assert runs[0].json() == {"sum": 3} and runs[0].bytes() == b'{"sum": 3}'
    assert runs[2].bytes() == b""
    with pytest.raises(wa.ResultError, match="organization 2 ended rejected: denied by rule x"):
        runs[1].json()
    with pytest.raises(wa.ResultError, match="not the JSON expected"):
        runs[2].json()
    paths = [r["path"] for r in proxy_server.requests]
    assert len(paths) == 2 and all(p.startswith("/v1/subtasks/17/results?wait=") for p in paths)
    assert all(0 < int(p.rsplit("=", 1)[1]) <= 60 for p in paths)


def test_the_proxy_refusals_and_bad_answers_are_errors(run_dirs, proxy_server):
    proxy = wa.Proxy(run_dirs["env"][wa.ENV_PROXY_SOCKET], TOKEN)
    with pytest.raises(wa.ProxyRefused) as e:
        proxy._call("GET", "/v1/elsewhere")
    assert (e.value.status, e.value.code) == (404, "not_found")
    bad = wa.Proxy(run_dirs["env"][wa.ENV_PROXY_SOCKET], "another-token")
    with pytest.raises(wa.ProxyRefused, match="401"):
        bad.organizations()
    # 429 and 503 are retried by wait_results, other refusals are not.
    proxy_server.refuse_next = [429, 503]
    proxy_server.results_script = [{"complete": True, "runs": []}]
    assert proxy.wait_results(17, timeout=30) == []
    proxy_server.refuse_next = [403]
    with pytest.raises(wa.ProxyRefused, match="403"):
        proxy.wait_results(17, timeout=30)
    proxy_server.results_script = [{"complete": True, "runs": [
        {"organization_id": 1, "state": "completed", "result": "not base64!"}]}]
    with pytest.raises(wa.ProxyError, match="not base64"):
        proxy.results(17)
    proxy_server.results_script = [{"complete": True, "runs": [
        {"organization_id": 1, "state": "running"}]}]
    with pytest.raises(wa.ProxyError, match="complete, yet the run of organization 1 is running"):
        proxy.results(17)
    proxy_server.results_script = [{"complete": "yes", "runs": []}]
    with pytest.raises(wa.ProxyError, match="missing or bad field"):
        proxy.results(17)
    proxy_server.results_script = [{"complete": False, "runs": [
        {"organization_id": 1, "state": "pending"}]}]
    with pytest.raises(wa.ProxyTimeout, match="1 of 1 runs"):
        proxy.wait_results(17, timeout=0.2)


def test_a_token_or_socket_that_cannot_work_is_a_clear_error(run_dirs, tmp_path):
    for token in ("", "has space", "tab\t", "é"):
        with pytest.raises(wa.ProxyError, match="token is unusable"):
            wa.Proxy(tmp_path / "s", token)
    env = dict(run_dirs["env"])
    del env[wa.ENV_TOKEN]
    with pytest.raises(wa.ProxyError, match="WARDEN_TOKEN is not set"):
        wa.Context(wa.Environment.from_environ(env)).proxy
    with pytest.raises(wa.ProxyError, match="cannot reach the node's proxy"):
        wa.Proxy(tmp_path / "absent.sock", TOKEN).organizations()


def test_an_algorithm_process_talks_to_the_proxy(run_dirs, proxy_server):
    """A whole algorithm as the node runs it: its own process, the contract's environment, a
    central function that creates a subtask and combines the results."""
    b64 = base64.b64encode(b'{"sum": 80, "count": 2}').decode()
    proxy_server.results_script = [{"complete": True, "runs": [
        {"organization_id": 1, "state": "completed", "result": b64},
        {"organization_id": 2, "state": "completed", "result": b64}]}]
    script = run_dirs["dir"] / "alg.py"
    script.write_text(textwrap.dedent("""
        from warden_algorithm import Algorithm
        alg = Algorithm()

        @alg.function()
        def central_mean(ctx, args):
            orgs = [o.id for o in ctx.proxy.organizations()]
            task = ctx.proxy.create_subtask("partial_mean", args, orgs)
            parts = [r.json() for r in ctx.proxy.wait_results(task, timeout=30)]
            total = sum(p["sum"] for p in parts); count = sum(p["count"] for p in parts)
            return {"mean": total / count, "count": count, "organizations": len(parts)}

        raise SystemExit(alg.main())
    """))
    write_input(run_dirs, {"function": "central_mean", "args": {"column": "age"}})
    env = {**os.environ, **run_dirs["env"],
           "PYTHONPATH": str(Path(wa.__file__).resolve().parents[1])}
    p = subprocess.run([sys.executable, "-B", str(script)], env=env,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert json.loads(output(run_dirs).read_text()) == {"mean": 40.0, "count": 4, "organizations": 2}
    assert [r["method"] + " " + r["path"].split("?")[0] for r in proxy_server.requests] == [
        "GET /v1/organizations", "POST /v1/subtasks", "GET /v1/subtasks/17/results"]
