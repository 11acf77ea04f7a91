"""Warden for researchers, in Python.

A thin layer over the Rust client (``warden-client``, in the native module ``warden._native``),
which does everything that matters for security: the profile, the login and its session, the
check of each organization's key against the fingerprint you pin, the digest of the image, the
input sealed for each organization with your certified key, and the checks of the task and of
every result. Python only turns its answers into objects.

    import warden
    client = warden.Client.from_profile("cardio")
    task = client.task.create(image="registry.example.org/warden/mean:1.0",
                              organizations=["hospital-a", "hospital-b"],
                              function="central_mean", arguments={"column": "age"})
    results = client.wait_for_results(task.id, progress=True)
    for r in results:
        print(r.organization, r.state, r.value)

See docs/python.md.
"""

from __future__ import annotations

import datetime as _dt
import json as _json
import os as _os
import sys as _sys
import warnings as _warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Union

from . import _native
from .errors import (
    AuthError,
    ConfigError,
    InputError,
    PinMismatch,
    Rejected,
    ServerError,
    VerificationError,
    WaitTimeout,
    WardenError,
)

__all__ = [
    "Client",
    "Task",
    "Run",
    "RunResult",
    "Results",
    "TaskAPI",
    "WardenError",
    "AuthError",
    "ConfigError",
    "InputError",
    "PinMismatch",
    "Rejected",
    "ServerError",
    "VerificationError",
    "WaitTimeout",
    "FINAL_STATES",
]

#: States after which a run never changes. Any other state, including one this version does not
#: know (a newer server may add some), counts as not final yet.
FINAL_STATES = frozenset({"completed", "failed", "rejected", "cancelled"})


def _safe(text: str) -> str:
    """``text`` (from the server or an algorithm) made safe to print: control characters, line
    breaks, escape sequences and bidirectional controls escaped, as the CLI prints them."""
    return str(_native.safe_text(str(text)))


def _time(s: Optional[str]) -> Optional[_dt.datetime]:
    if s is None:
        return None
    return _dt.datetime.fromisoformat(s.replace("Z", "+00:00"))


@dataclass(frozen=True)
class Run:
    """One run of a task at one organization, as the server shows it now."""

    id: int
    task_id: int
    organization_id: int
    organization: str
    state: str
    reason: Optional[str]
    digest: Optional[str]
    has_result: bool
    created_at: Optional[_dt.datetime] = None
    finished_at: Optional[_dt.datetime] = None

    @property
    def final(self) -> bool:
        return self.state in FINAL_STATES

    @classmethod
    def _from(cls, d: Mapping[str, Any], organization: Optional[str] = None) -> "Run":
        org = organization or d.get("organization") or f"organization-{d['organization_id']}"
        return cls(
            id=d["id"],
            task_id=d["task_id"],
            organization_id=d["organization_id"],
            organization=org,
            state=str(d["state"]),
            reason=d.get("reason"),
            digest=d.get("digest"),
            has_result=bool(d.get("has_result")),
            created_at=_time(d.get("created_at")),
            finished_at=_time(d.get("finished_at")),
        )


@dataclass(frozen=True)
class Task:
    """A task: the image it runs, its collaboration, its runs (as the server showed them when
    this object was made)."""

    id: int
    name: str
    image: str
    collaboration_id: int
    organization_id: int
    nonce: Optional[str]
    created_at: Optional[_dt.datetime]
    parent_task_id: Optional[int] = None
    creator_username: Optional[str] = None
    runs: List[Run] = field(default_factory=list)
    cancelled_at: Optional[_dt.datetime] = None
    cancelled_by: Optional[str] = None

    @classmethod
    def _from(cls, d: Mapping[str, Any]) -> "Task":
        t = d["task"] if "task" in d else d
        runs = [Run._from(r) for r in d.get("runs", [])] if "task" in d else []
        return cls(
            id=t["id"],
            name=t.get("name", ""),
            image=t["image"],
            collaboration_id=t["collaboration_id"],
            organization_id=t["organization_id"],
            nonce=t.get("nonce"),
            created_at=_time(t.get("created_at")),
            parent_task_id=t.get("parent_task_id"),
            creator_username=t.get("creator_username"),
            runs=runs,
            cancelled_at=_time(t.get("cancelled_at")),
            cancelled_by=t.get("cancelled_by"),
        )


def _decode(raw: Optional[bytes]) -> Any:
    """A result's value: the JSON it holds decoded, else its text, else the bytes."""
    if raw is None:
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw
    try:
        return _json.loads(text)
    except ValueError:
        return text


@dataclass(frozen=True)
class RunResult:
    """The outcome of one run: its state, the node's reason when it was rejected or failed, and
    the value of its result (opened with your key and checked: sealed by the organization's
    pinned key, bound to this task, this run and the image digest). ``value`` is the result's
    JSON decoded (else its text, else its bytes); ``raw`` is its bytes."""

    organization: str
    organization_id: int
    run_id: int
    state: str
    reason: Optional[str]
    value: Any
    raw: Optional[bytes]
    digest: Optional[str]

    @property
    def ok(self) -> bool:
        return self.state == "completed"


class Results(Sequence[RunResult]):
    """The outcomes of a task's runs, one per organization, in the server's order."""

    def __init__(self, task: Task, items: List[RunResult]) -> None:
        self.task = task
        self._items = list(items)

    def __getitem__(self, i: Any) -> Any:  # type: ignore[override]
        if isinstance(i, str):
            for r in self._items:
                if r.organization == i:
                    return r
            raise KeyError(i)
        return self._items[i]

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[RunResult]:
        return iter(self._items)

    def __repr__(self) -> str:
        parts = ", ".join(f"{_safe(r.organization)}: {_safe(r.state)}" for r in self._items)
        return f"<Results task {self.task.id}: {parts}>"

    @property
    def values(self) -> Dict[str, Any]:
        """Each completed organization's value, by organization."""
        return {r.organization: r.value for r in self._items if r.ok}

    @property
    def reasons(self) -> Dict[str, Optional[str]]:
        """Each rejected or failed organization's reason, by organization."""
        return {r.organization: r.reason for r in self._items if r.state in ("rejected", "failed")}

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self._items)

    def to_pandas(self) -> Any:
        """A ``pandas.DataFrame`` with one row per run: organization, organization_id, run_id,
        state, reason, and the value; a value that is a JSON object adds one column per key.
        Needs pandas (``pip install pandas``)."""
        try:
            import pandas as pd  # type: ignore[import-not-found]
        except ImportError as e:
            raise ImportError("to_pandas() needs pandas: pip install pandas") from e
        rows = []
        for r in self._items:
            row: Dict[str, Any] = {
                "organization": r.organization,
                "organization_id": r.organization_id,
                "run_id": r.run_id,
                "state": r.state,
                "reason": r.reason,
            }
            if isinstance(r.value, dict):
                for k, v in r.value.items():
                    row.setdefault(str(k), v)
            else:
                row["value"] = r.value
            rows.append(row)
        return pd.DataFrame(rows)


def _in_notebook() -> bool:
    shell = getattr(_sys.modules.get("IPython"), "get_ipython", lambda: None)()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


class _Progress:
    """Shows the runs' states while a task is waited for: one line redrawn in a terminal, a
    new line of text whenever a state changes elsewhere (Jupyter, a log file)."""

    def __init__(self, task_id: int, stream: Any = None) -> None:
        self.task_id = task_id
        self.stream = stream if stream is not None else _sys.stderr
        isatty = getattr(self.stream, "isatty", lambda: False)
        self.redraw = bool(isatty()) and not _in_notebook()
        self.last: Optional[str] = None

    def __call__(self, runs_json: str) -> None:
        runs = _json.loads(runs_json)
        done = sum(1 for r in runs if r["final"])
        states = ", ".join(f"{r['organization']} {r['state']}" for r in runs)
        line = f"task {self.task_id}: {done}/{len(runs)} final ({states})"
        if line == self.last:
            return
        self.last = line
        if self.redraw:
            self.stream.write("\r\x1b[2K" + line)
            if done == len(runs):
                self.stream.write("\n")
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


class TaskAPI:
    """``client.task``: create, list and read tasks."""

    def __init__(self, client: "Client") -> None:
        self._client = client

    def create(
        self,
        image: str,
        organizations: Sequence[str],
        function: str,
        arguments: Any = None,
        *,
        name: str = "",
    ) -> Task:
        """Creates a task running ``function(arguments)`` of ``image`` at each organization
        (by name). Before anything is sent: the input must be strict JSON, every organization a
        member of the collaboration whose key from the server matches its pin
        (:class:`PinMismatch` otherwise), and the image's tag is resolved to its digest at the
        registry. The input is sealed for each organization with your certified key."""
        if isinstance(organizations, str):
            raise InputError("organizations must be a list of names, e.g. ['hospital-a']")
        if not isinstance(function, str) or not function:
            raise InputError("function must be the name of a function of the algorithm")
        try:
            body = _json.dumps({"function": function, "args": arguments}, allow_nan=False,
                               ensure_ascii=False)
        except (TypeError, ValueError) as e:
            raise InputError(f"the arguments are not JSON: {e}; pass dicts, lists, strings, "
                             "numbers, booleans and None") from e
        text, warns = self._client._native.create(image, list(organizations), body.encode(),
                                                  name)
        for w in warns:
            _warnings.warn(w, stacklevel=2)
        return Task._from(_json.loads(text))

    def get(self, task_id: int) -> Task:
        """The task and its runs as they are now (checked against what this machine sent when
        it created the task; no result is downloaded)."""
        return Task._from(_json.loads(self._client._native.task(int(task_id))))

    def cancel(self, task_id: int) -> Task:
        """Cancels the task: its runs that have not ended become ``cancelled`` and their nodes
        stop them (a running container is killed; nothing of the run leaves its node); runs
        that had ended keep their state. Cancelling it again changes nothing. Raises
        :class:`AuthError` (``status`` 403) unless you requested the task or administer its
        organization, and :class:`ServerError` (``status`` 409) when every run had ended
        before; the message is the server's reason."""
        return Task._from(_json.loads(self._client._native.cancel(int(task_id))))

    def list(self, *, all_collaborations: bool = False, mine: bool = False) -> List[Task]:
        """The tasks of your collaboration (every page); ``all_collaborations=True`` lists every
        task this account may see, ``mine=True`` only those you created."""
        items = _json.loads(self._client._native.tasks(all_collaborations, mine))
        return [Task._from(t) for t in items]


ProgressArg = Union[bool, Callable[[List[Dict[str, Any]]], None], None]


class Client:
    """A logged-in session at a Warden server, with your key, your certificate and the pins of
    the organizations' keys. Make one with :meth:`from_profile` or with the constructor."""

    def __init__(
        self,
        url: str,
        username: str,
        password: Optional[str] = None,
        *,
        key: Union[str, "_os.PathLike[str]"],
        certificate: Union[str, "_os.PathLike[str]"],
        collaboration: Union[str, int],
        organizations: Mapping[str, str],
        insecure_registries: Sequence[str] = (),
        docker_config: Optional[Union[str, "_os.PathLike[str]"]] = None,
        records_dir: Optional[Union[str, "_os.PathLike[str]"]] = None,
    ) -> None:
        """Logs in at ``url`` as ``username`` (the password given, else ``WARDEN_PASSWORD``).
        ``key`` and ``certificate`` are your X25519 key file and the certificate your
        organization issued for it; ``organizations`` pins each organization's key fingerprint
        (``{"hospital-a": "sha256:..."}``), obtained from the organization itself."""
        self._native = _native.Native.login(
            url, username, password, _os.fspath(key), _os.fspath(certificate), collaboration,
            dict(organizations), list(insecure_registries),
            None if docker_config is None else _os.fspath(docker_config),
            None if records_dir is None else _os.fspath(records_dir),
        )
        self.task = TaskAPI(self)

    @classmethod
    def from_profile(
        cls,
        profile: Union[str, "_os.PathLike[str]"],
        *,
        password: Optional[str] = None,
        records_dir: Optional[Union[str, "_os.PathLike[str]"]] = None,
    ) -> "Client":
        """Logs in with a profile: a name (``$XDG_CONFIG_HOME/warden/NAME.toml``, else
        ``~/.config/warden/NAME.toml``) or a path to a profile file (docs/researcher.md)."""
        p = _os.fspath(profile)
        if _os.sep in p or p.endswith(".toml"):
            path = p
        else:
            try:
                path = _native.Native.profile_path(p)
            except ValueError as e:
                raise ConfigError(str(e)) from None
        self = cls.__new__(cls)
        self._native = _native.Native.from_profile(
            _os.fspath(path), password, None if records_dir is None else _os.fspath(records_dir))
        self.task = TaskAPI(self)
        return self

    @property
    def url(self) -> str:
        return str(self._native.url)

    @property
    def username(self) -> str:
        return str(self._native.username)

    def __repr__(self) -> str:
        return f"<warden.Client {self.username} at {self.url}>"

    def wait_for_results(
        self,
        task_id: Union[int, Task],
        *,
        progress: ProgressArg = False,
        timeout: float = 600.0,
        raise_on_failure: bool = True,
    ) -> Results:
        """Waits until every run of the task is final (polling, at most ``timeout`` seconds,
        else :class:`WaitTimeout`), then downloads, opens and checks every result
        (:class:`VerificationError` when one does not verify).

        ``progress=True`` shows the runs' states on stderr (a redrawn line in a terminal, text
        lines in Jupyter); a callable is called with the runs after each poll. The GIL is
        released while waiting and Ctrl-C stops the wait (``KeyboardInterrupt``).

        When a run was rejected or failed, :class:`Rejected` is raised with each node's reason
        and every outcome (``raise_on_failure=False`` returns the results instead)."""
        tid = task_id.id if isinstance(task_id, Task) else int(task_id)
        cb: Optional[Callable[[str], None]]
        if progress is True:
            cb = _Progress(tid)
        elif callable(progress):
            user = progress
            cb = lambda text: user(_json.loads(text))  # noqa: E731
        elif progress in (False, None):
            cb = None
        else:
            raise TypeError("progress must be True, False or a callable")
        text, outcomes, warns = self._native.wait(tid, float(timeout), cb)
        for w in warns:
            _warnings.warn(w, stacklevel=2)
        task = Task._from(_json.loads(text))
        items = []
        for run_text, org, raw in outcomes:
            run = Run._from(_json.loads(run_text), org)
            items.append(RunResult(
                organization=org,
                organization_id=run.organization_id,
                run_id=run.id,
                state=run.state,
                reason=run.reason,
                value=_decode(raw),
                raw=raw,
                digest=run.digest,
            ))
        results = Results(task, items)
        if raise_on_failure and not results.ok:
            reasons = {r.organization: r.reason or ("the run was cancelled"
                                                    if r.state == "cancelled" else None)
                       for r in results if not r.ok}
            # The server's words, escaped: the message may reach a terminal.
            shown = "; ".join(f"{_safe(org)}: {_safe(reason or '(no reason given)')}"
                              for org, reason in reasons.items())
            raise Rejected(f"task {tid}: {len(reasons)} run(s) rejected, failed or cancelled: "
                           f"{shown}", reasons, results)
        return results
