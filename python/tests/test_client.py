"""The `warden` package against a real federation (conftest.py): server, nodes, registry and
Docker, all from the built `warden` binary."""

from __future__ import annotations

import base64
import importlib.util
import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

import warden
from conftest import PASSWORD, ROOT, STUDY, http

A, B, C = "hospital-a", "hospital-b", "hospital-c"


def test_a_task_at_two_organizations_completes_with_checked_json_results(federation, capsys):
    client = federation.client()
    args = {"column": "age", "weights": [1, 2.5], "note": "ünïcode"}
    task = client.task.create(image=federation.image, organizations=[A, B],
                              function="partial_mean", arguments=args, name="py-mean")
    assert task.id > 0 and task.name == "py-mean" and len(task.runs) == 2
    assert task.image == federation.image and task.nonce
    assert {r.state for r in task.runs} <= {"pending", "admitted", "running", "completed"}

    results = client.wait_for_results(task.id, progress=True, timeout=120)
    assert results.ok, (results, federation.node_logs())
    assert [r.organization for r in results] == [A, B]
    for r in results:
        # json_out writes the input's args back: the value went through sealing at the client,
        # opening at the node, the algorithm, sealing at the node and opening here.
        assert r.value == args and r.state == "completed" and r.reason is None
        assert json.loads(r.raw) == args and r.digest and r.digest.startswith("sha256:")
    assert results[A].value == args and results.values == {A: args, B: args}
    # Progress went to stderr as text (not a terminal here): one line per change, the last
    # one with every run final.
    err = capsys.readouterr().err
    assert f"task {task.id}: 2/2 final" in err and "hospital-a completed" in err, err

    got = client.task.get(task.id)
    assert got.id == task.id and [r.state for r in got.runs] == ["completed", "completed"]
    assert {r.organization for r in got.runs} == {A, B}
    listed = client.task.list()
    assert task.id in [t.id for t in listed]
    assert all(t.collaboration_id == federation.collaboration_id for t in listed)
    assert task.id in [t.id for t in client.task.list(mine=True)]

    if importlib.util.find_spec("pandas") is not None:
        df = results.to_pandas()
        assert list(df["organization"]) == [A, B] and list(df["column"]) == ["age", "age"]
    else:
        with pytest.raises(ImportError, match="pip install pandas"):
            results.to_pandas()


def test_a_profile_by_name_and_another_process_waits_with_the_record(federation, monkeypatch):
    conf = federation.dir / "xdg"
    (conf / "warden").mkdir(parents=True, exist_ok=True)
    text = federation.profile.read_text()
    rd = federation.profile.parent
    text = (text.replace('"rita.key"', f'"{rd / "rita.key"}"')
            .replace('"rita.cert"', f'"{rd / "rita.cert"}"')
            .replace('"rita.pw"', f'"{rd / "rita.pw"}"'))
    (conf / "warden" / "cardio.toml").write_text(text)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(conf))
    monkeypatch.setenv("XDG_STATE_HOME", str(federation.dir / "xdg-state"))
    client = warden.Client.from_profile("cardio")
    assert client.username == "rita" and client.url == federation.base
    task = client.task.create(image=federation.image, organizations=[B], function="f",
                              arguments=[1, None, True])
    # A second session (as another process would) finds the task record this one wrote.
    other = warden.Client.from_profile(str(conf / "warden" / "cardio.toml"))
    results = other.wait_for_results(task, timeout=120)
    assert results[B].value == [1, None, True]
    # The `warden` CLI reads the same record.
    out = subprocess.run([str(federation.bin), "task", "wait", "--profile", "cardio", "--json",
                          str(task.id)], capture_output=True, text=True,
                         env={**os.environ, "XDG_CONFIG_HOME": str(conf),
                              "XDG_STATE_HOME": str(federation.dir / "xdg-state")})
    assert out.returncode == 0 and "no local record" not in out.stderr, out.stderr
    assert json.loads(json.loads(out.stdout)["runs"][0]["result"]) == [1, None, True]


def test_a_denied_image_comes_back_rejected_with_the_node_reason(federation):
    client = federation.client()
    task = client.task.create(image=federation.experimental, organizations=[B], function="f",
                              arguments={})
    with pytest.raises(warden.Rejected) as e:
        client.wait_for_results(task.id, timeout=120)
    assert e.value.organizations == [B]
    reason = e.value.reasons[B]
    assert reason and "deny" in reason, (reason, federation.node_logs())
    assert e.value.results[B].state == "rejected" and e.value.results[B].value is None
    assert B in str(e.value) and isinstance(e.value, warden.WardenError)
    # Without raising, the same outcome is returned.
    results = client.wait_for_results(task.id, raise_on_failure=False)
    assert not results.ok and results.reasons == {B: reason}


def test_a_key_that_differs_from_its_pin_is_refused_and_nothing_is_created(federation):
    before = federation.task_count()
    pins = dict(federation.pins)
    pins[B] = federation.orgs[A].fingerprint  # the server's key for B is not this one
    client = federation.client(organizations=pins)
    with pytest.raises(warden.PinMismatch) as e:
        client.task.create(image=federation.image, organizations=[A, B], function="f", arguments=1)
    assert e.value.organization == B
    assert e.value.pinned == federation.orgs[A].fingerprint
    assert e.value.got == federation.orgs[B].fingerprint
    assert "nothing was sent" in str(e.value)
    # An organization without a pin.
    del pins[B]
    client = federation.client(organizations=pins)
    with pytest.raises(warden.PinMismatch, match="no pinned key") as e:
        client.task.create(image=federation.image, organizations=[B], function="f", arguments=1)
    assert e.value.organization == B and e.value.pinned is None
    assert federation.task_count() == before


def test_bad_logins_inputs_and_targets_raise_clear_errors(federation):
    with pytest.raises(warden.AuthError, match="refused"):
        federation.client(password="not the password")
    with pytest.raises(warden.ConfigError, match="fingerprint"):
        federation.client(organizations={A: "sha256:abc"})
    with pytest.raises(warden.ConfigError, match="http"):
        warden.Client("ftp://x", "rita", PASSWORD, key=federation.rita_key,
                      certificate=federation.rita_cert, collaboration=STUDY, organizations={})
    with pytest.raises(warden.ConfigError, match="no-such.cert.*cannot read"):
        federation.client(certificate=federation.dir / "no-such.cert")
    client = federation.client()
    before = federation.task_count()
    with pytest.raises(warden.InputError, match="not JSON"):
        client.task.create(image=federation.image, organizations=[A], function="f",
                           arguments={"x": float("nan")})
    with pytest.raises(warden.InputError, match="not a member"):
        client.task.create(image=federation.image, organizations=["nowhere"], function="f")
    with pytest.raises(warden.InputError, match="twice"):
        client.task.create(image=federation.image, organizations=[A, A], function="f")
    with pytest.raises(warden.InputError, match="image reference"):
        client.task.create(image="Not An Image", organizations=[A], function="f")
    with pytest.raises(warden.InputError, match="list of names"):
        client.task.create(image=federation.image, organizations=A, function="f")
    with pytest.raises(warden.InputError, match="resolve"):
        client.task.create(image=f"{federation.registry}/pytest/absent:1.0", organizations=[A],
                           function="f")
    assert federation.task_count() == before
    with pytest.raises(warden.ServerError) as e:
        client.task.get(999999)
    assert e.value.status == 404
    with pytest.raises(warden.ConfigError, match="not a valid profile name|profile"):
        warden.Client.from_profile(".hidden")


def test_a_wait_times_out_releases_the_gil_and_calls_progress(federation):
    client = federation.client()
    # hospital-c has no node: its run stays pending.
    task = client.task.create(image=federation.image, organizations=[C], function="f")
    ticks = []
    stop = threading.Event()

    def count() -> None:
        while not stop.is_set():
            ticks.append(1)
            time.sleep(0.01)

    t = threading.Thread(target=count)
    t.start()
    seen = []
    start = time.monotonic()
    try:
        with pytest.raises(warden.WaitTimeout) as e:
            client.wait_for_results(task.id, timeout=1.0, progress=seen.append)
    finally:
        stop.set()
        t.join()
    elapsed = time.monotonic() - start
    assert e.value.task_id == task.id and "1 run(s) not final" in str(e.value)
    assert 1.0 <= elapsed < 5.0
    # The other thread ran while the wait held no GIL (~100 ticks in 1 s).
    assert len(ticks) > 30, len(ticks)
    assert seen and seen[0][0]["organization"] == C and seen[0][0]["state"] == "pending"
    assert seen[0][0]["final"] is False


def test_ctrl_c_stops_a_wait(federation):
    client = federation.client()
    task = client.task.create(image=federation.image, organizations=[C], function="f")
    script = textwrap.dedent(f"""
        import sys, time, warden
        c = warden.Client({federation.base!r}, "rita", {PASSWORD!r}, key={str(federation.rita_key)!r},
                          certificate={str(federation.rita_cert)!r}, collaboration={STUDY!r},
                          organizations={federation.pins!r},
                          records_dir={str(federation.state_home / "records")!r})
        print("waiting", flush=True)
        start = time.monotonic()
        try:
            c.wait_for_results({task.id}, timeout=300)
        except KeyboardInterrupt:
            print("interrupted after %.2f" % (time.monotonic() - start), flush=True)
            sys.exit(0)
        sys.exit(5)
    """)
    p = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                         cwd=str(ROOT / "python" / "tests"))
    assert p.stdout is not None
    assert p.stdout.readline().strip() == "waiting"
    time.sleep(1.0)
    sent = time.monotonic()
    p.send_signal(signal.SIGINT)
    code = p.wait(timeout=10)
    took = time.monotonic() - sent
    out = p.stdout.read()
    assert code == 0 and "interrupted after" in out, out
    assert took < 3.0, took


def read_peer():
    spec = importlib.util.spec_from_file_location("hpke_peer", ROOT / "tests/peers/hpke_peer.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_a_result_sealed_by_the_node_opens_with_pyhpke_and_the_organization_key(federation):
    """An independent check of sealed format v2 (docs/encryption.md) with pyhpke, a separate
    HPKE implementation: the node's result opens in auth mode with the researcher's key and
    the organization's public key, and carries the body and the binding the client checked."""
    from cryptography.hazmat.primitives import serialization
    from pyhpke import AEADId, CipherSuite, KDFId, KEMId, KEMKey

    client = federation.client()
    task = client.task.create(image=federation.image, organizations=[A], function="f",
                              arguments={"sealed": "by the node"})
    results = client.wait_for_results(task.id, timeout=120)
    run = results[A]
    sealed = http("GET", f"{federation.base}/api/runs/{run.run_id}/result", federation.login())
    assert isinstance(sealed, bytes)
    # Header: version 2, kind 2 (result), sender kind 2 (organization key), u16 length, key.
    assert sealed[0] == 2 and sealed[1] == 2 and sealed[2] == 2
    n = int.from_bytes(sealed[3:5], "big")
    header, rest = sealed[:5 + n], sealed[5 + n:]
    org_key = base64.b64decode(federation.orgs[A].public_key)
    assert header[5:] == org_key
    enc, ct = rest[:32], rest[32:]

    peer = read_peer()
    rita = peer.read_key(str(federation.rita_key))
    raw = rita.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                             serialization.NoEncryption())
    suite = CipherSuite.new(KEMId.DHKEM_X25519_HKDF_SHA256, KDFId.HKDF_SHA256,
                            AEADId.CHACHA20_POLY1305)
    skr = suite.kem.deserialize_private_key(raw)
    pks = suite.kem.deserialize_public_key(org_key)
    ctx = suite.create_recipient_context(enc, skr, info=b"warden/sealed/v2" + header, pks=pks)
    plaintext = ctx.open(ct, aad=b"")
    blen = int.from_bytes(plaintext[-4:], "big")
    body, binding = plaintext[:-4 - blen], json.loads(plaintext[-4 - blen:-4])
    assert body == run.raw and json.loads(body) == {"sealed": "by the node"}
    assert binding["run_id"] == run.run_id and binding["organization"] == A
    assert binding["nonce"] == task.nonce and binding["digest"] == run.digest

    # Attack: the same message claimed as sealed by another organization does not open.
    other = suite.kem.deserialize_public_key(base64.b64decode(federation.orgs[B].public_key))
    ctx = suite.create_recipient_context(enc, skr, info=b"warden/sealed/v2" + header, pks=other)
    with pytest.raises(Exception):
        ctx.open(ct, aad=b"")


def test_a_task_is_cancelled_through_the_rust_client_and_again_changes_nothing(federation):
    client = federation.client()
    # hospital-c has no node: its run stays pending until it is cancelled.
    task = client.task.create(image=federation.image, organizations=[C], function="f")
    cancelled = client.task.cancel(task.id)
    assert cancelled.id == task.id and cancelled.cancelled_by == "rita"
    assert cancelled.cancelled_at is not None
    assert [(r.organization, r.state, r.final) for r in cancelled.runs] == [(C, "cancelled", True)]
    again = client.task.cancel(task.id)
    assert again.cancelled_at == cancelled.cancelled_at
    assert client.task.get(task.id).runs[0].state == "cancelled"
    # A task whose runs had all ended is refused with the server's reason.
    done = client.task.create(image=federation.image, organizations=[A], function="f")
    client.wait_for_results(done.id, timeout=120, raise_on_failure=False)
    with pytest.raises(warden.ServerError, match="nothing to cancel") as e:
        client.task.cancel(done.id)
    assert e.value.status == 409
    with pytest.raises(warden.ServerError) as e:
        client.task.cancel(999999)
    assert e.value.status == 404


def test_waiting_for_a_cancelled_task_raises_rejected_naming_the_cancellation(federation):
    client = federation.client()
    task = client.task.create(image=federation.image, organizations=[C], function="f")
    client.task.cancel(task.id)
    with pytest.raises(warden.Rejected, match="cancelled") as e:
        client.wait_for_results(task.id, timeout=30)
    assert e.value.reasons == {C: "the run was cancelled"}
    results = client.wait_for_results(task.id, timeout=30, raise_on_failure=False)
    assert [(r.organization, r.state, r.ok) for r in results] == [(C, "cancelled", False)]
