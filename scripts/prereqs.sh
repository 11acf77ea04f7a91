#!/usr/bin/env bash
# Installs and starts what Warden's tests and demo need on a Debian machine with the Docker engine
# running: Debian's OCI registry (docker-registry), PostgreSQL, gcc, sqlite3, and the Python packages of the
# independent test peers. Idempotent; safe to run again. Sourced by scripts/test and .ci/run.

warden_need_root() {
    if [ "$(id -u)" -ne 0 ]; then
        echo "error: installing prerequisites needs root (apt-get); run as root or install: $*" >&2
        return 1
    fi
}

# Starts the Docker engine when it is installed but not running (a machine booted without its
# service manager, or an engine that was stopped), and waits up to a minute for its socket.
warden_start_dockerd() {
    command -v dockerd >/dev/null ||
        { echo "error: the Docker engine is not reachable and dockerd is not installed (docker.io)" >&2; return 1; }
    warden_need_root "a running Docker engine (dockerd)" || return 1
    echo "starting the Docker engine (log: /var/log/dockerd.log)"
    setsid nohup dockerd >>/var/log/dockerd.log 2>&1 </dev/null &
    disown
    for _ in $(seq 1 120); do
        docker version --format '{{.Server.Version}}' >/dev/null 2>&1 && return 0
        sleep 0.5
    done
    echo "error: the Docker engine did not come up within a minute; see /var/log/dockerd.log" >&2
    return 1
}

warden_prereqs() {
    local missing=()
    command -v docker >/dev/null || { echo "error: the docker CLI is missing; install docker.io and start dockerd" >&2; return 1; }
    docker version --format '{{.Server.Version}}' >/dev/null 2>&1 || warden_start_dockerd || return 1
    [ -x /usr/bin/docker-registry ] || missing+=(docker-registry)
    command -v pg_ctlcluster >/dev/null || missing+=(postgresql)
    command -v gcc >/dev/null || missing+=(gcc)
    # the lying-server tests edit the server's SQLite database directly, as its operator could
    command -v sqlite3 >/dev/null || missing+=(sqlite3)
    # gcc and static glibc: crates/node/build.rs compiles the isolation probe built into warden
    # (algorithms/hostile/probe.c, `cc -static`); the tests build static C programs too
    [ -e /usr/lib/x86_64-linux-gnu/libc.a ] || missing+=(libc6-dev)
    # the web console's browser tests (crates/cli/tests/console_ui.rs): headless Chromium over WebDriver
    [ -x /usr/bin/chromium ] || missing+=(chromium)
    command -v chromedriver >/dev/null || missing+=(chromium-driver)
    # the terminal test of `warden task create --wait`'s live display (crates/cli/tests/progress_cli.rs)
    command -v tmux >/dev/null || missing+=(tmux)
    # `warden algorithm base python` and its tests (crates/cli/tests/base_image_cli.rs, the
    # Python algorithm tests): the Python base image's root from Debian packages
    command -v debootstrap >/dev/null || missing+=(debootstrap)
    # the fault harness (crates/faults, scripts/soak): HAProxy balances the server replicas and
    # relays each node's link
    [ -x /usr/sbin/haproxy ] || missing+=(haproxy)
    # the fault harness's slow and lossy link: a network namespace and a veth pair (ip), a rate
    # limit (tc tbf) and random drops (iptables' statistic match) in it
    command -v tc >/dev/null || missing+=(iproute2)
    command -v iptables >/dev/null || missing+=(iptables)
    if [ ${#missing[@]} -gt 0 ]; then
        warden_need_root "${missing[*]}" || return 1
        echo "installing: ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
    # Debian starts a registry service on :5000 on some setups; the tests start their own.
    python3 -c 'import cryptography, nacl' 2>/dev/null ||
        python3 -m pip install -q cryptography pynacl
    # the DSSE peer (tests/peers/dsse_peer.py): an independent DSSE implementation
    python3 -c 'import securesystemslib.dsse, securesystemslib.signer' 2>/dev/null ||
        python3 -m pip install -q 'securesystemslib[crypto]'
    # the Python package's build (maturin), its tests (pytest) and their independent HPKE (pyhpke)
    python3 -c 'import maturin, pytest, pyhpke' 2>/dev/null ||
        python3 -m pip install -q maturin pytest pyhpke
    # the server's OpenAPI document against the running server (crates/server/tests/schemathesis.rs)
    [ "$(schemathesis --version 2>/dev/null)" = "schemathesis, version 4.32.5" ] ||
        python3 -m pip install -q 'schemathesis==4.32.5'
}

# Starts the local PostgreSQL cluster and makes sure the `warden` test role exists.
# Prints the URL the storage tests use.
warden_postgres() {
    local version
    version=$(ls /etc/postgresql 2>/dev/null | sort -n | tail -1)
    [ -n "$version" ] || { echo "error: no PostgreSQL cluster found under /etc/postgresql" >&2; return 1; }
    # its start prints ("Removed stale pid file.") go to stderr: stdout carries only the URL
    pg_ctlcluster "$version" main status >/dev/null 2>&1 || pg_ctlcluster "$version" main start >&2
    for _ in $(seq 1 50); do
        su postgres -c "psql -qAtc 'select 1'" >/dev/null 2>&1 && break
        sleep 0.2
    done
    su postgres -c "psql -qAtc \"select 1 from pg_roles where rolname = 'warden'\"" | grep -q 1 ||
        su postgres -c "psql -qc \"create role warden login superuser password 'warden'\"" >/dev/null
    su postgres -c "psql -qAtc \"select 1 from pg_database where datname = 'warden'\"" | grep -q 1 ||
        su postgres -c "createdb -O warden warden" >&2
    echo "postgres://warden:warden@127.0.0.1:5432/warden"
}
