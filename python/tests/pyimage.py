"""An algorithm image on the Python base image of `warden algorithm base python` (Debian
bookworm's python3 from debootstrap, numpy from PyPI, `warden_algorithm`, USER 65534:65534,
ENTRYPOINT ["/usr/bin/python3", "-s", "-B"]) for the tests and benches that run a Python
algorithm through a real node. The base is built once per machine: the command reuses the
image under BASE_TAG while its content key (recipe, warden version, options) is unchanged.
Building it needs root (debootstrap), the Debian mirror and PyPI; no registry is pulled from."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Dict, List

from conftest import warden_bin

BASE_TAG = "warden-test/python-base:numpy"
#: The base's options, the same everywhere so that one image serves every test (its key).
BASE_ARGS = ["--wheel", "numpy==1.26.4", "--cache-dir", "/var/cache/warden/debootstrap"]


def base() -> dict:
    """Builds (or finds, by its content key) the base image; returns `--json`'s document."""
    out = subprocess.run([str(warden_bin()), "algorithm", "base", "python", "--tag", BASE_TAG,
                          *BASE_ARGS, "--json"], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"warden algorithm base python failed: {out.stderr}")
    return json.loads(out.stdout)


def build(ctx: Path, app: Dict[str, Path], cmd: List[str]) -> Path:
    """Writes the build context in `ctx`: rootfs/ (the `app` files: a path inside the image,
    e.g. "/app/mean.py", to a file or folder here) and a Dockerfile FROM the base with
    `CMD cmd` (the arguments of the base's python3 entry point). Returns `ctx`."""
    base()
    root = ctx / "rootfs"
    root.mkdir(parents=True)
    for inside, here in app.items():
        dst = root / inside.lstrip("/")
        dst.parent.mkdir(parents=True, exist_ok=True)
        if here.is_dir():
            shutil.copytree(here, dst, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy2(here, dst)
    c = ", ".join(json.dumps(a) for a in cmd)
    (ctx / "Dockerfile").write_text(f"FROM {BASE_TAG}\nCOPY rootfs/ /\nCMD [{c}]\n")
    return ctx
