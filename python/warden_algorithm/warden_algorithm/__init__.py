"""Write Warden algorithms in Python, with the standard library alone.

The contract is docs/algorithm-contract.md; this is the Python counterpart of the Rust SDK
(crates/sdk) and behaves as it does::

    from warden_algorithm import Algorithm

    algorithm = Algorithm()

    @algorithm.function("partial_mean")
    def partial_mean(ctx, args):
        rows = read_csv(ctx.data_path("records"))
        return {"sum": ..., "count": ...}

    if __name__ == "__main__":
        raise SystemExit(algorithm.main())

``main`` reads ``$WARDEN_INPUT_DIR/input``, calls the function it names with its ``args``,
writes what the function returns to ``$WARDEN_OUTPUT`` (atomically: a temporary file beside it,
fsync, rename), and on any failure prints the reason to stderr (the node keeps the last lines of
the log) and returns 1. A function returns a JSON value (written as compact JSON), ``bytes``
(written as they are) or ``None`` (no output file: an empty result).

The node's proxy (``ctx.proxy``) is HTTP/1.1 over the Unix socket ``$WARDEN_PROXY_SOCKET`` with
the run's token: the collaboration's organizations, subtasks of this run's task, and their
results.
"""

from __future__ import annotations

import base64
import binascii
import http.client
import json
import os
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Union

__all__ = [
    "Algorithm",
    "Context",
    "Environment",
    "Input",
    "Organization",
    "Proxy",
    "SubtaskResult",
    "SubtaskResults",
    "AlgorithmError",
    "EnvError",
    "ProxyError",
    "ProxyRefused",
    "ProxyTimeout",
    "ResultError",
    "run",
    "FINAL_STATES",
]

DEFAULT_INPUT_DIR = "/mnt/input"
DEFAULT_DATA_DIR = "/mnt/data"
DEFAULT_OUTPUT = "/mnt/output/output"
DEFAULT_PROXY_SOCKET = "/mnt/proxy/proxy.sock"
INPUT_FILE = "input"
MAX_DATA_NAME_LEN = 255

ENV_INPUT_DIR = "WARDEN_INPUT_DIR"
ENV_DATA_DIR = "WARDEN_DATA_DIR"
ENV_OUTPUT = "WARDEN_OUTPUT"
ENV_PROXY_SOCKET = "WARDEN_PROXY_SOCKET"
ENV_TOKEN = "WARDEN_TOKEN"
ENV_RUN_ID = "WARDEN_RUN_ID"
ENV_TASK_ID = "WARDEN_TASK_ID"
ENV_ORGANIZATION_ID = "WARDEN_ORGANIZATION_ID"
ENV_COLLABORATION_ID = "WARDEN_COLLABORATION_ID"

ORGANIZATIONS_PATH = "/v1/organizations"
SUBTASKS_PATH = "/v1/subtasks"
#: The proxy waits at most this long in one results request.
MAX_WAIT_PER_REQUEST = 60.0
#: Time allowed for one request (plus the wait asked for).
DEFAULT_TIMEOUT = 30.0
WAIT_SLACK = 10.0
MIN_POLL_INTERVAL = 0.5
MAX_RETRY_BACKOFF = 8.0
#: Largest answer read from the proxy.
DEFAULT_MAX_ANSWER_BYTES = 64 << 20
MAX_ERROR_EXCERPT = 200

#: States after which a run never changes; any other (a newer node may add some) is not final.
FINAL_STATES = frozenset({"completed", "failed", "rejected"})


class AlgorithmError(Exception):
    """Base class of this package's errors."""


class EnvError(AlgorithmError):
    """The run's environment or files are not as the contract says."""


class ProxyError(AlgorithmError):
    """A request to the node's proxy failed."""


class ProxyRefused(ProxyError):
    """The proxy answered with an error: ``status``, ``code`` and the proxy's ``message``."""

    def __init__(self, request: str, status: int, code: str, message: str) -> None:
        super().__init__(f"the proxy refused {request} with status {status} ({code}): {message}")
        self.request, self.status, self.code, self.message = request, status, code, message


class ProxyTimeout(ProxyError):
    """A subtask's runs were not all final in time."""

    def __init__(self, task_id: int, waited: float, pending: int, total: int) -> None:
        super().__init__(
            f"subtask {task_id} was not complete after {waited:.1f} s: {pending} of {total} runs "
            "have not finished; wait longer or look at the nodes that have not answered")
        self.task_id, self.waited, self.pending, self.total = task_id, waited, pending, total


class ResultError(AlgorithmError):
    """A subtask's run did not complete, or its result is not what was expected."""


def _excerpt(body: bytes) -> str:
    text = "".join(c for c in body.decode("utf-8", "replace") if c.isprintable())
    return text[:MAX_ERROR_EXCERPT] + ("..." if len(text) > MAX_ERROR_EXCERPT else "")


@dataclass(frozen=True)
class Input:
    """The run's input: the function to call and its arguments."""

    function: str
    args: Any = None

    @classmethod
    def from_bytes(cls, raw: bytes) -> "Input":
        v = json.loads(raw.decode("utf-8"))
        if not isinstance(v, dict):
            raise ValueError("the input is not a JSON object")
        unknown = sorted(set(v) - {"function", "args"})
        if unknown:
            raise ValueError(f"unknown field(s) {', '.join(map(repr, unknown))}; expected "
                             "`function` and `args`")
        if "function" not in v:
            raise ValueError("missing field `function`")
        if not isinstance(v["function"], str):
            raise ValueError("`function` is not a string")
        return cls(function=v["function"], args=v.get("args"))


@dataclass(frozen=True)
class Environment:
    """Where the run's files are and the IDs the node gave, from the environment variables of
    the contract (with the contract's paths as defaults)."""

    input_dir: Path = Path(DEFAULT_INPUT_DIR)
    data_dir: Path = Path(DEFAULT_DATA_DIR)
    output: Path = Path(DEFAULT_OUTPUT)
    proxy_socket: Path = Path(DEFAULT_PROXY_SOCKET)
    token: Optional[str] = None
    run_id: Optional[int] = None
    task_id: Optional[int] = None
    organization_id: Optional[int] = None
    collaboration_id: Optional[int] = None

    def __repr__(self) -> str:
        token = None if self.token is None else "<redacted>"
        return (f"Environment(input_dir={self.input_dir!r}, data_dir={self.data_dir!r}, "
                f"output={self.output!r}, proxy_socket={self.proxy_socket!r}, token={token}, "
                f"run_id={self.run_id}, task_id={self.task_id}, "
                f"organization_id={self.organization_id}, "
                f"collaboration_id={self.collaboration_id})")

    @classmethod
    def from_environ(cls, environ: Optional[Mapping[str, str]] = None) -> "Environment":
        env = os.environ if environ is None else environ

        def path(name: str, default: str) -> Path:
            return Path(env.get(name) or default)

        def ident(name: str) -> Optional[int]:
            v = env.get(name)
            if not v:
                return None
            if not (v.isascii() and v.isdigit()):
                raise EnvError(f"{name} is {v!r}, not a decimal id; the node sets it")
            return int(v)

        return cls(
            input_dir=path(ENV_INPUT_DIR, DEFAULT_INPUT_DIR),
            data_dir=path(ENV_DATA_DIR, DEFAULT_DATA_DIR),
            output=path(ENV_OUTPUT, DEFAULT_OUTPUT),
            proxy_socket=path(ENV_PROXY_SOCKET, DEFAULT_PROXY_SOCKET),
            token=env.get(ENV_TOKEN) or None,
            run_id=ident(ENV_RUN_ID),
            task_id=ident(ENV_TASK_ID),
            organization_id=ident(ENV_ORGANIZATION_ID),
            collaboration_id=ident(ENV_COLLABORATION_ID),
        )

    @property
    def input_path(self) -> Path:
        return self.input_dir / INPUT_FILE

    def read_input(self) -> Input:
        p = self.input_path
        try:
            raw = p.read_bytes()
        except OSError as e:
            raise EnvError(f"cannot read the input {p}: {e.strerror or e}; is the input "
                           "directory mounted?") from None
        try:
            inp = Input.from_bytes(raw)
        except (ValueError, UnicodeDecodeError) as e:
            raise EnvError(f"the input {p} is not {{\"function\": ..., \"args\": ...}}: {e}") from None
        if not inp.function:
            raise EnvError("the input names an empty function; fix the task's input")
        return inp

    def data_names(self) -> List[str]:
        try:
            return sorted(e.name for e in os.scandir(self.data_dir))
        except OSError:
            return []

    def data_path(self, name: str) -> Path:
        """The path of data source ``name`` (a file or a directory), which must exist."""
        if (not name or name in (".", "..") or len(name.encode()) > MAX_DATA_NAME_LEN
                or "/" in name or "\0" in name):
            raise EnvError(f"{name!r} is not a data source name: one path component, at most "
                           f"{MAX_DATA_NAME_LEN} bytes")
        p = self.data_dir / name
        if p.exists():
            return p
        offered = ", ".join(self.data_names()) or "none"
        raise EnvError(f"data source {name!r} is not mounted at {p}; this node offers: {offered}")

    def write_output(self, data: bytes) -> None:
        """Writes ``data`` to the output atomically: a temporary file in the same directory,
        fsync, then rename over the output."""
        out = self.output
        tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                view = memoryview(data)
                while view:
                    n = os.write(fd, view)
                    view = view[n:]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, out)
        except OSError as e:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise EnvError(f"cannot write the output {out}: {e.strerror or e}; is the output "
                           "directory mounted writable?") from None

    def write_json(self, value: Any) -> None:
        self.write_output(_dumps(value))


def _dumps(value: Any) -> bytes:
    try:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False,
                          allow_nan=False).encode("utf-8")
    except (TypeError, ValueError) as e:
        raise AlgorithmError(f"cannot serialise the output as JSON: {e}") from None


@dataclass(frozen=True)
class Organization:
    id: int
    name: str


@dataclass(frozen=True)
class SubtaskResult:
    """One run of a subtask: its organization, state, result bytes (for a completed run) and
    the node's reason (for a failed or rejected one)."""

    organization_id: int
    state: str
    result: Optional[bytes]
    reason: Optional[str]

    def bytes(self) -> bytes:
        if self.state == "completed":
            return self.result or b""
        raise ResultError(
            f"the run at organization {self.organization_id} ended {self.state}: "
            f"{self.reason or 'no reason given'}; check that node's policy and logs")

    def json(self) -> Any:
        raw = self.bytes()
        try:
            return json.loads(raw.decode("utf-8"))
        except (ValueError, UnicodeDecodeError) as e:
            raise ResultError(f"the result of organization {self.organization_id} is not the "
                              f"JSON expected: {e}; do the algorithm versions match?") from None


@dataclass(frozen=True)
class SubtaskResults:
    complete: bool
    runs: List[SubtaskResult]


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        try:
            s.connect(self._path)
        except OSError:
            s.close()
            raise
        self.sock = s


class Proxy:
    """The node's proxy: HTTP/1.1 over its Unix socket, the run's token on every request."""

    def __init__(self, socket_path: Union[str, "os.PathLike[str]"], token: str, *,
                 timeout: float = DEFAULT_TIMEOUT,
                 max_answer_bytes: int = DEFAULT_MAX_ANSWER_BYTES) -> None:
        if not token:
            raise ProxyError("the proxy token is unusable: it is empty; the node sets "
                             "WARDEN_TOKEN for each run")
        if not all(33 <= ord(c) <= 126 for c in token):
            raise ProxyError("the proxy token is unusable: it holds spaces, control or non-ASCII "
                             "characters; pass WARDEN_TOKEN unchanged")
        self.socket_path = os.fspath(socket_path)
        self._authorization = f"Bearer {token}"
        self.timeout = timeout
        self.max_answer_bytes = max_answer_bytes

    def __repr__(self) -> str:
        return f"Proxy(socket={self.socket_path!r}, timeout={self.timeout})"

    def _call(self, method: str, path: str, body: Any = None, timeout: Optional[float] = None) -> Any:
        request = f"{method} {path}"
        data = None if body is None else _dumps(body)
        headers = {"Authorization": self._authorization, "Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        conn = _UnixConnection(self.socket_path, timeout or self.timeout)
        try:
            try:
                conn.request(method, path, body=data, headers=headers)
                resp = conn.getresponse()
                raw = resp.read(self.max_answer_bytes + 1)
            except (OSError, http.client.HTTPException) as e:
                raise ProxyError(f"cannot reach the node's proxy at {self.socket_path} for "
                                 f"{request}: {e}; is the proxy socket mounted?") from None
        finally:
            conn.close()
        if len(raw) > self.max_answer_bytes:
            raise ProxyError(f"the proxy's answer to {request} is over {self.max_answer_bytes} "
                             "bytes")
        if not 200 <= resp.status < 300:
            code, message = "unknown", _excerpt(raw)
            try:
                err = json.loads(raw)["error"]
                code, message = str(err["code"]), str(err["message"])
            except (ValueError, KeyError, TypeError):
                pass
            raise ProxyRefused(request, resp.status, code, message)
        try:
            return json.loads(raw)
        except ValueError as e:
            raise ProxyError(f"unexpected answer from the proxy to {request}: not JSON: {e}") from None

    @staticmethod
    def _bad(request: str, detail: str) -> ProxyError:
        return ProxyError(f"unexpected answer from the proxy to {request}: {detail}")

    def organizations(self) -> List[Organization]:
        """The organizations of the collaboration."""
        v = self._call("GET", ORGANIZATIONS_PATH)
        try:
            return [Organization(id=int(o["id"]), name=str(o["name"])) for o in v["organizations"]]
        except (KeyError, TypeError, ValueError) as e:
            raise self._bad(f"GET {ORGANIZATIONS_PATH}", f"missing or bad field {e}") from None

    def create_subtask(self, function: str, args: Any, organizations: Sequence[int], *,
                       name: Optional[str] = None) -> int:
        """Creates a subtask running ``function(args)`` of this run's image at the given
        organizations (ids); returns its task id."""
        body: Dict[str, Any] = {"function": function, "args": args,
                                "organizations": [int(o) for o in organizations]}
        if name is not None:
            body["name"] = name
        v = self._call("POST", SUBTASKS_PATH, body)
        try:
            return int(v["task_id"])
        except (KeyError, TypeError, ValueError) as e:
            raise self._bad(f"POST {SUBTASKS_PATH}", f"missing or bad field {e}") from None

    def results(self, task_id: int, wait: float = 0.0) -> SubtaskResults:
        """The subtask's runs as they are, after the proxy waited up to ``wait`` seconds (at
        most 60) for all of them to be final."""
        wait = min(max(wait, 0.0), MAX_WAIT_PER_REQUEST)
        secs = int(wait) + (1 if wait > int(wait) else 0)
        path = f"{SUBTASKS_PATH}/{int(task_id)}/results?wait={secs}"
        v = self._call("GET", path, timeout=self.timeout + secs + WAIT_SLACK)
        request = f"GET {path}"
        try:
            complete = v["complete"]
            runs_in = v["runs"]
            if not isinstance(complete, bool) or not isinstance(runs_in, list):
                raise TypeError("complete or runs")
            runs = []
            for r in runs_in:
                state = str(r["state"])
                result: Optional[bytes] = None
                if state == "completed":
                    b64 = r.get("result")
                    try:
                        result = b"" if b64 is None else base64.b64decode(b64, validate=True)
                    except (binascii.Error, TypeError) as e:
                        raise self._bad(request, f"the result of organization "
                                        f"{r['organization_id']} is not base64: {e}") from None
                runs.append(SubtaskResult(organization_id=int(r["organization_id"]), state=state,
                                          result=result, reason=r.get("reason")))
        except (KeyError, TypeError, ValueError) as e:
            raise self._bad(request, f"missing or bad field {e}") from None
        if complete:
            for r in runs:
                if r.state not in FINAL_STATES:
                    raise self._bad(request, f"complete, yet the run of organization "
                                    f"{r.organization_id} is {r.state}")
        return SubtaskResults(complete=complete, runs=runs)

    def wait_results(self, task_id: int, timeout: float = 3600.0) -> List[SubtaskResult]:
        """Waits until every run of the subtask is final (at most ``timeout`` seconds, else
        :class:`ProxyTimeout`); retries while the proxy answers 429 or 503."""
        started = time.monotonic()
        deadline = started + timeout
        backoff = MIN_POLL_INTERVAL
        while True:
            poll_started = time.monotonic()
            try:
                answer = self.results(task_id, max(deadline - poll_started, 0.0))
            except ProxyRefused as e:
                if e.status in (429, 503) and time.monotonic() < deadline:
                    time.sleep(min(backoff, max(deadline - time.monotonic(), 0.0)))
                    backoff = min(backoff * 2, MAX_RETRY_BACKOFF)
                    continue
                raise
            if answer.complete:
                return answer.runs
            backoff = MIN_POLL_INTERVAL
            now = time.monotonic()
            if now >= deadline:
                pending = sum(1 for r in answer.runs if r.state not in FINAL_STATES)
                raise ProxyTimeout(task_id, now - started, pending, len(answer.runs))
            since = now - poll_started
            if since < MIN_POLL_INTERVAL:
                time.sleep(min(MIN_POLL_INTERVAL - since, deadline - now))


class Context:
    """What a function sees of its run: the environment and the proxy."""

    def __init__(self, env: Environment, proxy: Optional[Proxy] = None) -> None:
        self.env = env
        self._proxy = proxy
        self._proxy_problem: Optional[str] = None
        if proxy is None:
            if env.token is None:
                self._proxy_problem = f"{ENV_TOKEN} is not set; the node sets it for each run"
            else:
                try:
                    self._proxy = Proxy(env.proxy_socket, env.token)
                except ProxyError as e:
                    self._proxy_problem = str(e)

    @property
    def proxy(self) -> Proxy:
        """The node's proxy (:class:`ProxyError` when there is none: no token)."""
        if self._proxy is None:
            raise ProxyError(f"the proxy token is unusable: {self._proxy_problem or 'no proxy'}")
        return self._proxy

    def data_path(self, name: str) -> Path:
        return self.env.data_path(name)

    @property
    def organization_id(self) -> Optional[int]:
        return self.env.organization_id


Function = Callable[[Context, Any], Any]


def _output_bytes(function: str, value: Any) -> Optional[bytes]:
    if value is None:
        return None
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    try:
        return _dumps(value)
    except AlgorithmError as e:
        raise AlgorithmError(f"cannot serialise the output of {function}: {e}") from None


class Algorithm:
    """Named functions, dispatched on the input's ``function``."""

    def __init__(self) -> None:
        self._functions: Dict[str, Function] = {}

    def function(self, name: Optional[str] = None) -> Callable[[Function], Function]:
        """Registers the decorated ``f(ctx, args)`` under ``name`` (default: its own name); a
        later registration of the same name replaces the earlier one."""

        def register(f: Function) -> Function:
            self._functions[name or f.__name__] = f
            return f

        return register

    def add(self, name: str, f: Function) -> "Algorithm":
        self._functions[name] = f
        return self

    @property
    def function_names(self) -> List[str]:
        return sorted(self._functions)

    def call(self, ctx: Context, inp: Input) -> Any:
        f = self._functions.get(inp.function)
        if f is None:
            offered = ", ".join(self.function_names) or "no functions"
            raise AlgorithmError(f"unknown function {inp.function!r}: this algorithm offers "
                                 f"{offered}; fix the task's input")
        try:
            return f(ctx, inp.args)
        except AlgorithmError:
            raise
        except Exception as e:  # the function's own failure, reported with its type
            raise AlgorithmError(f"{inp.function} failed: {type(e).__name__}: {e}") from e

    def run_in(self, ctx: Context) -> None:
        inp = ctx.env.read_input()
        data = _output_bytes(inp.function, self.call(ctx, inp))
        if data is not None:
            ctx.env.write_output(data)

    def main(self, environ: Optional[Mapping[str, str]] = None) -> int:
        """The whole of an algorithm's main: returns the exit status (0 success, 1 failure,
        the reason printed to stderr)."""
        return _exit(lambda: self.run_in(Context(Environment.from_environ(environ))))


def run(f: Callable[[Context, Input], Any], environ: Optional[Mapping[str, str]] = None) -> int:
    """For algorithms that dispatch themselves: ``f(ctx, input)``'s return value is written as
    the output; returns the exit status."""

    def go() -> None:
        ctx = Context(Environment.from_environ(environ))
        inp = ctx.env.read_input()
        try:
            value = f(ctx, inp)
        except AlgorithmError:
            raise
        except Exception as e:
            raise AlgorithmError(f"{inp.function} failed: {type(e).__name__}: {e}") from e
        data = _output_bytes(inp.function, value)
        if data is not None:
            ctx.env.write_output(data)

    return _exit(go)


def _exit(go: Callable[[], None]) -> int:
    try:
        go()
    except AlgorithmError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        return 1
    return 0
