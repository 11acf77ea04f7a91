"""An algorithm image with a Python interpreter, built FROM scratch from this machine's Debian
python3.11 (the interpreter, the shared libraries `ldd` names, the standard library without its
tests and GUI parts) plus `warden_algorithm` and the algorithm's files, for the tests that run a
Python algorithm through a real node. No registry is pulled from. (The debootstrap-built base
image of issue 13 is not built yet; this stands in for it in the tests.)"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Dict, List

PYTHON = Path("/usr/bin/python3.11")
STDLIB = Path("/usr/lib/python3.11")
SKIP = {"test", "idlelib", "tkinter", "turtledemo", "lib2to3", "ensurepip", "site-packages",
        "dist-packages", "config-3.11-x86_64-linux-gnu", "pydoc_data", "unittest", "distutils"}
DYNLOAD = ("_json", "_queue", "_contextvars", "_decimal", "_typing", "_asyncio", "_bz2", "_lzma",
           "mmap", "resource", "_zoneinfo")


def libs(binary: Path) -> List[Path]:
    out = subprocess.run(["ldd", str(binary)], capture_output=True, text=True).stdout
    found = []
    for line in out.splitlines():
        m = re.search(r"(/\S+) \(0x", line)
        if m:
            found.append(Path(m.group(1)))
    return found


def copy(src: Path, root: Path) -> None:
    dst = root / src.relative_to("/")
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(src.resolve(), dst)


def build(ctx: Path, app: Dict[str, Path], entrypoint: List[str]) -> Path:
    """Writes the build context in `ctx`: rootfs/ and a Dockerfile. `app` maps a path inside
    the image (e.g. "/app/mean.py") to a file here. Returns `ctx`."""
    if not PYTHON.exists():
        raise RuntimeError(f"{PYTHON} is missing: apt-get install python3")
    root = ctx / "rootfs"
    root.mkdir(parents=True)
    needed = {PYTHON}
    needed.update(libs(PYTHON))
    dyn = STDLIB / "lib-dynload"
    for name in DYNLOAD:
        for so in dyn.glob(f"{name}.cpython-311-*.so"):
            needed.add(so)
            needed.update(libs(so))
    for p in needed:
        copy(p, root)
    for dirpath, dirnames, filenames in os.walk(STDLIB):
        rel = Path(dirpath).relative_to(STDLIB)
        if rel.parts and rel.parts[0] in SKIP | {"lib-dynload"}:
            dirnames[:] = []
            continue
        for f in filenames:
            if f.endswith((".py", ".pyc")):
                copy(Path(dirpath) / f, root)
    for inside, here in app.items():
        dst = root / inside.lstrip("/")
        dst.parent.mkdir(parents=True, exist_ok=True)
        if here.is_dir():
            shutil.copytree(here, dst, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy2(here, dst)
    ep = ", ".join(f'"{a}"' for a in entrypoint)
    (ctx / "Dockerfile").write_text(
        "FROM scratch\nCOPY rootfs/ /\nENV PYTHONDONTWRITEBYTECODE=1\nUSER 65534:65534\n"
        f"ENTRYPOINT [{ep}]\n")
    return ctx
