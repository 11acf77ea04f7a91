"""A real federation for the tests of the `warden` package: Debian's `docker-registry` on a free
loopback port, a FROM-scratch algorithm image (crates/node/tests/programs/json_out.c, static)
pushed there and signed with `warden image sign`, `warden server start` (SQLite), two
organizations with keys made by `warden keys`, a third one without a node (its runs stay
pending), the researcher `rita` of hospital-a with a certified personal key, and one
`warden node start` process per node organization, whose policy allows the signed image and
denies anything under `experimental/`.

Everything runs from the built `warden` binary (`$WARDEN_BIN`, else
`$CARGO_TARGET_DIR/debug/warden`, else target/debug/warden): build it with
`cargo build -p warden-cli`. A missing binary, Docker engine, registry or gcc fails the tests;
nothing is skipped.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import pytest

ROOT = Path(__file__).resolve().parents[2]
REGISTRY_BIN = "/usr/bin/docker-registry"
PASSWORD = "a long enough password"
ADMIN_PASSWORD = "admin password for the python tests"
KEY_PASSWORD = "key password for the python tests"
STUDY = "pystudy"
#: Each node's data source `records` (algorithms/mean reads column `age`): blanks and text are
#: skipped, as in the Rust mean.
RECORDS = {
    "hospital-a": "id,age\n1,30\n2, 50 \n3,\n4,unknown\n5,41.5\n",
    "hospital-b": "id,age\n1,47\n2,60\n3,inf\n",
}


def warden_bin() -> Path:
    if os.environ.get("WARDEN_BIN"):
        return Path(os.environ["WARDEN_BIN"])
    target = Path(os.environ.get("CARGO_TARGET_DIR") or ROOT / "target")
    return target / "debug" / "warden"


def run(*args: Any, **kw: Any) -> str:
    p = subprocess.run([str(a) for a in args], capture_output=True, text=True, **kw)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, args))} exited {p.returncode}:\n{p.stdout}\n{p.stderr}")
    return p.stdout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, what: str, proc: Optional[subprocess.Popen] = None, log: Optional[Path] = None,
              secs: float = 30.0) -> None:
    deadline = time.monotonic() + secs
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status < 500:
                    return
        except urllib.error.HTTPError as e:
            if e.code < 500:
                return
        except OSError:
            pass
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited: {log.read_text() if log else ''}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not answer {url} in {secs} s: {log.read_text() if log else ''}")
        time.sleep(0.05)


def http(method: str, url: str, token: Optional[str] = None, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            raw = r.read()
    except urllib.error.HTTPError as e:
        raise RuntimeError(f"{method} {url}: {e.code} {e.read()[:500]!r}") from None
    ctype = r.headers.get("Content-Type", "")
    return json.loads(raw) if "json" in ctype else raw


@dataclass
class Org:
    name: str
    id: int = 0
    dir: Path = Path()
    public_key: str = ""
    fingerprint: str = ""
    certifier_id: str = ""
    api_key: str = ""


@dataclass
class Federation:
    dir: Path
    bin: Path
    base: str
    registry: str
    image: str
    experimental: str
    orgs: Dict[str, Org]
    collaboration_id: int
    profile: Path
    rita_key: Path
    rita_cert: Path
    state_home: Path
    procs: List[subprocess.Popen] = field(default_factory=list)
    labels: List[str] = field(default_factory=list)
    images: List[str] = field(default_factory=list)

    @property
    def pins(self) -> Dict[str, str]:
        return {o.name: o.fingerprint for o in self.orgs.values()}

    def login(self, user: str = "rita", password: str = PASSWORD) -> str:
        v = http("POST", self.base + "/api/auth/login", body={"username": user, "password": password})
        return str(v["access_token"])

    def get(self, path: str, token: Optional[str] = None) -> Any:
        return http("GET", self.base + path, token or self.login())

    def client(self, **kw: Any) -> Any:
        import warden

        args: Dict[str, Any] = dict(
            key=self.rita_key, certificate=self.rita_cert, collaboration=STUDY,
            organizations=self.pins, records_dir=self.state_home / "records",
        )
        args.update(kw)
        password = args.pop("password", PASSWORD)
        return warden.Client(self.base, "rita", password, **args)

    def task_count(self) -> int:
        return len(self.get(f"/api/tasks?collaboration_id={self.collaboration_id}&limit=500")["items"])

    def push_signed(self, reference: str, context: Path) -> None:
        """Builds the Docker context as `reference` (which must be under REGISTRY/pytest/),
        pushes and signs it, and removes the local copy so the nodes pull it."""
        run("docker", "build", "--no-cache", "-q", "-t", reference, context,
            env={**os.environ, "DOCKER_BUILDKIT": "0"})
        self.images.append(reference)
        run("docker", "push", "-q", reference)
        run(self.bin, "image", "sign", "--key", self.dir / "image.key", "--password-file",
            self.dir / "key.pw", reference)
        subprocess.run(["docker", "image", "rm", "-f", reference], capture_output=True)

    def node_logs(self) -> str:
        return "\n".join(f"--- {o.name}\n{(o.dir / 'node.log').read_text(errors='replace')}"
                         for o in self.orgs.values() if (o.dir / "node.log").exists())


def build_image(fed_dir: Path, host: str, bin_path: Path) -> str:
    """The static json_out program FROM scratch, pushed as HOST/pytest/json:1.0; returns the
    reference."""
    ctx = fed_dir / "image"
    ctx.mkdir()
    shutil.copy(bin_path, ctx / "json_out")
    (ctx / "Dockerfile").write_text(
        'FROM scratch\nCOPY json_out /json_out\nUSER 65534:65534\nENTRYPOINT ["/json_out"]\n')
    return str(ctx)


def node_config(o: Org, base: str, pins: str, certifiers: str, label: str) -> str:
    return f"""[server]
url = "{base}"
api_key_file = "node.key"
poll_secs = 1
max_backoff_secs = 1

[node]
policy = "policy.toml"
secret_key = "org.key"
spool_dir = "spool"
probe = "probe"
name = "{label}"

[audit]
dir = "audit"
signing_key = "audit.key"
password_file = "key.pw"

[organizations]
{pins}
[certifiers]
{certifiers}
[data]
records = "records.csv"

[limits]
timeout_secs = 60
memory_bytes = 134217728
"""


def remove_containers(label: str) -> None:
    for lab in (label, f"{label}-probe"):
        out = subprocess.run(["docker", "ps", "-aq", "--filter", f"label=org.warden.node={lab}"],
                             capture_output=True, text=True).stdout
        for cid in out.split():
            subprocess.run(["docker", "rm", "-f", "-v", cid], capture_output=True)


@pytest.fixture(scope="session")
def federation(tmp_path_factory: pytest.TempPathFactory) -> Any:
    yield from start_federation(tmp_path_factory.mktemp("federation"))


def start_federation(d: Path) -> Iterator[Federation]:
    """Starts the federation in the empty folder `d`, yields it, and stops and removes
    everything it started (also python/bench/create_wait.py)."""
    bin_path = warden_bin()
    if not bin_path.exists():
        pytest.fail(f"{bin_path} is missing: build it with `cargo build -p warden-cli` "
                    "(or set WARDEN_BIN)", pytrace=False)
    if subprocess.run(["docker", "version", "--format", "{{.Server.Version}}"],
                      capture_output=True).returncode != 0:
        pytest.fail("the Docker engine is not reachable: start dockerd", pytrace=False)
    if not Path(REGISTRY_BIN).exists():
        pytest.fail(f"{REGISTRY_BIN} is missing: apt-get install docker-registry", pytrace=False)
    procs: List[subprocess.Popen] = []
    labels: List[str] = []
    images: List[str] = []
    tag = uuid.uuid4().hex[:8]
    try:
        # The registry.
        port = free_port()
        host = f"127.0.0.1:{port}"
        (d / "registry.yml").write_text(
            f"version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\n"
            f"storage:\n  filesystem:\n    rootdirectory: {d / 'registry'}\n"
            f"http:\n  addr: {host}\n")
        reg_log = d / "registry.log"
        procs.append(subprocess.Popen([REGISTRY_BIN, "serve", str(d / "registry.yml")],
                                      stdout=reg_log.open("w"), stderr=subprocess.STDOUT))
        wait_http(f"http://{host}/v2/", "the registry", procs[-1], reg_log)

        # The algorithm: FROM scratch around a static program, pushed and signed.
        prog = d / "json_out"
        run("gcc", "-static", "-O2", "-o", prog, ROOT / "crates/node/tests/programs/json_out.c")
        image = f"{host}/pytest/json:1.0"
        experimental = f"{host}/experimental/json:1.0"
        ctx = build_image(d, host, prog)
        run("docker", "build", "--no-cache", "-q", "-t", image, ctx, env={**os.environ, "DOCKER_BUILDKIT": "0"})
        run("docker", "tag", image, experimental)
        images += [image, experimental]
        run("docker", "push", "-q", image)
        run("docker", "push", "-q", experimental)
        (d / "key.pw").write_text(KEY_PASSWORD + "\n")
        w = str(bin_path)
        run(w, "keys", "generate", "--kind", "ecdsa-p256", "--out", d / "image", "--password-file", d / "key.pw")
        run(w, "image", "sign", "--key", d / "image.key", "--password-file", d / "key.pw", image)
        subprocess.run(["docker", "image", "rm", "-f", image, experimental], capture_output=True)

        # The server.
        sport = free_port()
        base = f"http://127.0.0.1:{sport}"
        (d / "admin.pw").write_text(ADMIN_PASSWORD + "\n")
        (d / "server.toml").write_text(
            f'[http]\nlisten = "127.0.0.1:{sport}"\n[database]\nurl = "sqlite://server.db"\n'
            f'[bootstrap]\nadmin_password_file = "admin.pw"\n'
            f'[auth]\nlogin_rate_per_minute = 100000\nlogin_burst = 100000\n')
        slog = d / "server.log"
        procs.append(subprocess.Popen([w, "server", "start", "--config", str(d / "server.toml")],
                                      stdout=slog.open("w"), stderr=subprocess.STDOUT))
        wait_http(base + "/api/health", "the server", procs[-1], slog)
        admin = http("POST", base + "/api/auth/login",
                     body={"username": "admin", "password": ADMIN_PASSWORD})["access_token"]

        # Organizations (hospital-c has no node), keys made by `warden keys`.
        orgs: Dict[str, Org] = {}
        for name in ("hospital-a", "hospital-b", "hospital-c"):
            o = Org(name=name, dir=d / name)
            o.dir.mkdir()
            k = json.loads(run(w, "keys", "generate", "--kind", "x25519", "--out", o.dir / "org.key"))
            o.fingerprint = k["fingerprint"]
            o.public_key = (o.dir / "org.key.pub").read_text().strip()
            c = json.loads(run(w, "keys", "generate", "--kind", "ed25519", "--out", o.dir / "cert",
                               "--password-file", d / "key.pw"))
            o.certifier_id = c["key_id"]
            o.id = http("POST", base + "/api/organizations", admin,
                        {"name": name, "public_key": o.public_key})["id"]
            orgs[name] = o
        collab = http("POST", base + "/api/collaborations", admin,
                      {"name": STUDY, "organizations": [o.id for o in orgs.values()],
                       "encrypted": True})["id"]
        for o in orgs.values():
            o.api_key = http("POST", base + "/api/nodes", admin,
                             {"organization_id": o.id, "collaboration_id": collab})["api_key"]
        http("POST", base + "/api/users", admin,
             {"username": "rita", "password": PASSWORD, "role": "researcher",
              "organization_id": orgs["hospital-a"].id})

        # Rita's key, certified by hospital-a.
        rd = d / "rita"
        rd.mkdir()
        run(w, "keys", "generate", "--kind", "x25519", "--out", rd / "rita.key")
        run(w, "keys", "certify", "--certifier", orgs["hospital-a"].dir / "cert.key",
            "--password-file", d / "key.pw", "--org", "hospital-a", "--user", "rita",
            "--key", rd / "rita.key.pub", "--days", "2", "--out", rd / "rita.cert")
        (rd / "rita.pw").write_text(PASSWORD + "\n")
        pins = "".join(f'{o.name} = "{o.fingerprint}"\n' for o in orgs.values())
        profile = rd / "rita.toml"
        profile.write_text(
            f'[server]\nurl = "{base}"\nusername = "rita"\npassword_file = "rita.pw"\n\n'
            f'[researcher]\nkey = "rita.key"\ncertificate = "rita.cert"\n\n'
            f'[collaboration]\nname = "{STUDY}"\n\n[organizations]\n{pins}')

        # The nodes of hospital-a and hospital-b.
        probe = d / "probe"
        run("gcc", "-static", "-O2", "-o", probe, ROOT / "algorithms/hostile/probe.c")
        certifiers = "".join(f'{o.name} = "{o.certifier_id}"\n' for o in orgs.values())
        for name in ("hospital-a", "hospital-b"):
            o = orgs[name]
            (o.dir / "node.key").write_text(o.api_key + "\n")
            shutil.copy(d / "image.pub", o.dir / "image.pub")
            shutil.copy(probe, o.dir / "probe")
            shutil.copy(d / "key.pw", o.dir / "key.pw")
            run(w, "keys", "generate", "--kind", "ecdsa-p256", "--out", o.dir / "audit",
                "--password-file", d / "key.pw")
            (o.dir / "records.csv").write_text(RECORDS[name])
            allowed = re.escape(f"{host}/pytest/") + ".+"
            (o.dir / "policy.toml").write_text(
                f"version = 1\n\n[[allow]]\nrepository_regex = '{allowed}'\n"
                f'signed_by = {{ keys = ["image.pub"], threshold = 1 }}\n\n'
                f"[[deny]]\nrepository_regex = '.+/experimental/.+'\n")
            label = f"py{tag}-{name}"
            labels.append(label)
            (o.dir / "node.toml").write_text(node_config(o, base, pins, certifiers, label))
            log = o.dir / "node.log"
            procs.append(subprocess.Popen([w, "node", "start", "--config", str(o.dir / "node.toml")],
                                          stdout=log.open("w"), stderr=subprocess.STDOUT,
                                          env={**os.environ, "WARDEN_LOG": "info"}))
        fed = Federation(dir=d, bin=bin_path, base=base, registry=host, image=image,
                         experimental=experimental, orgs=orgs, collaboration_id=collab,
                         profile=profile, rita_key=rd / "rita.key", rita_cert=rd / "rita.cert",
                         state_home=d / "state", procs=procs, labels=labels, images=images)
        yield fed
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in reversed(procs):
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for label in labels:
            remove_containers(label)
        listed = subprocess.run(["docker", "images", "--format", "{{.Repository}} {{.ID}}"],
                                capture_output=True, text=True).stdout.splitlines()
        ids = [line.split()[1] for line in listed
               if images and line.startswith(images[0].split("/", 1)[0] + "/")]
        for ref in images + ids:
            subprocess.run(["docker", "image", "rm", "-f", ref], capture_output=True)
