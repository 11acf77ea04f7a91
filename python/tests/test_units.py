"""The pure-Python parts of `warden`: progress rendering, results, unknown run states."""

from __future__ import annotations

import io
import json

import pytest

import warden
from warden import _Progress, _decode  # type: ignore[attr-defined]


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def runs(*states: str) -> str:
    return json.dumps([{"run_id": i, "organization_id": i, "organization": f"org-{i}",
                        "state": s, "final": s in warden.FINAL_STATES}
                       for i, s in enumerate(states, 1)])


def test_progress_redraws_one_line_in_a_terminal_and_writes_lines_elsewhere():
    tty = Tty()
    p = _Progress(7, tty)
    p(runs("pending", "running"))
    p(runs("pending", "running"))  # unchanged: nothing written
    p(runs("completed", "rejected"))
    assert tty.getvalue() == ("\r\x1b[2Ktask 7: 0/2 final (org-1 pending, org-2 running)"
                              "\r\x1b[2Ktask 7: 2/2 final (org-1 completed, org-2 rejected)\n")
    text = io.StringIO()
    p = _Progress(7, text)
    p(runs("awaiting_release"))
    p(runs("awaiting_release"))
    p(runs("completed"))
    assert text.getvalue() == ("task 7: 0/1 final (org-1 awaiting_release)\n"
                               "task 7: 1/1 final (org-1 completed)\n")


def test_a_state_this_version_does_not_know_is_shown_and_not_final():
    r = warden.Run._from({"id": 1, "task_id": 2, "organization_id": 3, "state": "awaiting_approval",
                          "has_result": False, "created_at": "2026-12-01T10:00:00Z"})
    assert r.state == "awaiting_approval" and not r.final and r.organization == "organization-3"
    assert r.created_at is not None and r.created_at.year == 2026


def test_values_decode_json_then_text_then_bytes():
    assert _decode(b'{"a": [1, 2.5]}') == {"a": [1, 2.5]}
    assert _decode("plain text".encode()) == "plain text"
    assert _decode(b"\xff\x00") == b"\xff\x00"
    assert _decode(None) is None and _decode(b"") == ""


def test_results_index_by_organization_and_collect_reasons():
    task = warden.Task(id=1, name="", image="i", collaboration_id=1, organization_id=1, nonce="n",
                       created_at=None)
    items = [warden.RunResult("a", 1, 10, "completed", None, {"x": 1}, b'{"x":1}', "sha256:0"),
             warden.RunResult("b", 2, 11, "failed", "out of memory", None, None, None)]
    res = warden.Results(task, items)
    assert res["a"].value == {"x": 1} and res[1].organization == "b" and len(res) == 2
    assert res.values == {"a": {"x": 1}} and res.reasons == {"b": "out of memory"} and not res.ok
    with pytest.raises(KeyError):
        res["c"]
    e = warden.Rejected("m", res.reasons, res)
    assert e.organizations == ["b"] and e.results is res and isinstance(e, warden.WardenError)
    assert issubclass(warden.InputError, ValueError) and issubclass(warden.WaitTimeout, TimeoutError)


def test_server_words_are_escaped_in_messages_but_kept_as_data():
    task = warden.Task(id=1, name="", image="i", collaboration_id=1, organization_id=1, nonce="n",
                       created_at=None)
    evil = "denied\n\x1b[2J\x1b[31mALL OK\u202e"
    res = warden.Results(task, [warden.RunResult("a\x1b[1m", 1, 10, "rejected", evil, None,
                                                 None, None)])
    for text in (repr(res), warden._safe(evil)):
        assert "\x1b" not in text and "\n" not in text and "\u202e" not in text, text
    assert "\\u{1b}" in warden._safe(evil) and "\\n" in warden._safe(evil)
    assert res.reasons == {"a\x1b[1m": evil}  # the data itself is unchanged
