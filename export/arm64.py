"""--verify-on arm64: the phone files run on arm64 kernels, in an emulated arm64 Python, against PyTorch.

    problem = missing()                          # None, or the one line that says what to install
    env = Arm64Env.ensure(progress)              # built once, cached under ~/.cache/flower-edge/arm64
    logits = env.run({"onnx-int8": path, ...}, x, raw, progress)    # {key: (N, classes)}

Phones run ARM CPUs, whose int8 kernels are not x86's (onnxruntime's ARM requantization rounds
differently; XNNPACK's are the same code on both), so a file proven on the build machine is not
proven on a phone. Without a phone, QEMU's user-mode emulation runs the real arm64 builds of the
runtimes on the real files:
- QEMU 8 or newer (Debian 12's 7.2 crashes onnxruntime's import: it shows programs the host's
  x86 /proc/cpuinfo), with ``-cpu neoverse-n1`` (a phone-class core with the dot-product
  instructions onnxruntime's and XNNPACK's int8 kernels use; QEMU's default ``max`` sends
  onnxruntime to SME kernels it runs 7x slower);
- a Debian 12 arm64 tree unpacked, not booted (``mmdebstrap --variant=extract``, about 5 s and
  80 MB): its Python 3.11 and C++ library;
- the arm64 wheels of the runtimes, installed by the host's pip (``--platform ..._aarch64``), the
  same versions as the build machine's, and numpy: 265 MB in all, built in 13 s here;
- export/arm64_worker.py, run by that Python, which imports nothing else.
ExecuTorch's Python runtime needs torch, whose arm64 wheels bring 5.6 GB of CUDA packages, so the
``.pte`` files are left out (their XNNPACK kernels are the ones LiteRT's int8 files run).
Emulated, an int8 Lite0 photo takes about 0.7 s and a float one about 3.5 s.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from importlib import metadata
from pathlib import Path

import numpy as np

from flower_edge.common.errors import ExportError

from .verify import Parity

ARCH = "arm64"
CPU = "neoverse-n1"
SUITE = "bookworm"
PYTHON = "3.11"
"""Debian 12's Python; the wheels are chosen for it."""
PLATFORMS = ["manylinux2014_aarch64"] + [f"manylinux_2_{v}_aarch64" for v in (17, 24, 27, 28, 31, 34, 36)]
"""manylinux tags glibc 2.36 (Debian 12) runs: LiteRT's wheel is tagged 2_27, onnxruntime's 2_17 and 2_28."""
PACKAGES = {"onnx": "onnxruntime", "tflite": "ai-edge-litert"}
"""The runtime each kind of file needs, pinned to the build machine's version."""
KINDS = {"onnxruntime": "onnx", "litert": "tflite"}
"""The formats' runtimes (export/formats.py) that the emulated Python has, and its runner for each."""
MIN_QEMU = (8, 0)
PHOTOS = 50
"""Verification photos run on arm64 by default (--arm64-photos): a float Lite0 file takes about
3.5 s a photo emulated."""
MAX_PHOTOS = 2000
INSTALL = (
    "install QEMU 8 or newer and mmdebstrap (Debian 12: apt-get install mmdebstrap, and "
    "qemu-user from bookworm-backports, or its .deb unpacked with dpkg -x and FLOWER_EDGE_QEMU "
    "set to its usr/bin/qemu-aarch64)"
)


def kind(fmt) -> str | None:
    """'onnx' or 'tflite' for a format the emulated Python runs; None for the others."""
    return KINDS.get(fmt.runtime)


def qemu() -> Path | None:
    """The qemu-aarch64 to use: $FLOWER_EDGE_QEMU, else the first on PATH."""
    named = os.environ.get("FLOWER_EDGE_QEMU")
    if named:
        return Path(named) if Path(named).is_file() else None
    found = shutil.which("qemu-aarch64") or shutil.which("qemu-aarch64-static")
    return Path(found) if found else None


def qemu_version(binary: Path) -> tuple[int, int] | None:
    try:
        done = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    found = re.search(r"version (\d+)\.(\d+)", done.stdout)
    return (int(found[1]), int(found[2])) if found else None


def missing() -> str | None:
    """None when this machine can build and run the emulated environment, else the one line that
    says why not and what to install."""
    binary = qemu()
    if binary is None:
        where = (
            f"FLOWER_EDGE_QEMU={os.environ['FLOWER_EDGE_QEMU']} is not a file"
            if os.environ.get("FLOWER_EDGE_QEMU")
            else "no qemu-aarch64 on PATH"
        )
        return (
            f"--verify-on arm64 runs the phone files under QEMU's arm64 emulation, and this machine has "
            f"{where}: {INSTALL}"
        )
    version = qemu_version(binary)
    if version is None or version < MIN_QEMU:
        shown = "an unknown version" if version is None else f"version {version[0]}.{version[1]}"
        return f"--verify-on arm64: {binary} is {shown}, and QEMU before 8 crashes the runtimes: {INSTALL}"
    if not Arm64Env.at(cache_root()).ready() and shutil.which("mmdebstrap") is None:
        return f"--verify-on arm64 builds an arm64 Debian tree once with mmdebstrap, which is not on PATH: {INSTALL}"
    return None


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    name = f"debian-{SUITE}-py{PYTHON}-" + "-".join(f"{p}{_version(p)}" for p in PACKAGES.values())
    return Path(base) / "flower-edge" / ARCH / name


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "none"


@dataclass(frozen=True)
class Arm64Env:
    root: Path
    """The cached environment: rootfs/ (Debian arm64), site/ (the wheels), ready (written last)."""

    @classmethod
    def at(cls, root: Path) -> Arm64Env:
        return cls(root)

    def ready(self) -> bool:
        return (self.root / "ready").is_file()

    @classmethod
    def ensure(cls, progress: Callable[[str], None] = lambda message: None) -> Arm64Env:
        """The environment, built first if it is not in the cache (under a minute, 265 MB, needing
        Debian's mirror and PyPI); a build is made in a temporary folder and renamed into place."""
        env = cls.at(cache_root())
        if env.ready():
            return env
        problem = missing()
        if problem:
            raise ExportError(problem)
        env.root.parent.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix=".build-", dir=env.root.parent) as tmp:
            build = Path(tmp)
            progress(f"arm64: unpacking Debian {SUITE} arm64 (python3, libstdc++) with mmdebstrap, once")
            _run(
                [
                    "mmdebstrap",
                    f"--arch={ARCH}",
                    "--variant=extract",
                    "--include=python3,libstdc++6,ca-certificates",
                    SUITE,
                    str(build / "rootfs"),
                ],
                "mmdebstrap",
            )
            wheels = [f"{p}=={_version(p)}" for p in PACKAGES.values() if _version(p) != "none"] + ["numpy"]
            progress(f"arm64: installing the aarch64 wheels of {', '.join(wheels)}")
            _run(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "install",
                    "-q",
                    "--disable-pip-version-check",
                    "--only-binary=:all:",
                    "--python-version",
                    PYTHON,
                    "--implementation",
                    "cp",
                    *[a for p in PLATFORMS for a in ("--platform", p)],
                    "--target",
                    str(build / "site"),
                    *wheels,
                ],
                "pip",
            )
            (build / "ready").write_text(json.dumps({"wheels": wheels, "seconds": round(time.perf_counter() - start)}))
            if env.root.exists():
                shutil.rmtree(env.root)
            os.replace(build, env.root)
        size = sum(p.stat().st_size for p in env.root.rglob("*") if p.is_file() and not p.is_symlink())
        progress(f"arm64: environment built in {time.perf_counter() - start:.0f} s, {size / 1e6:.0f} MB, in {env.root}")
        return env

    def run(
        self,
        files: dict[str, dict],
        x: np.ndarray,
        pixels: np.ndarray | None = None,
        progress: Callable[[str], None] = lambda message: None,
        threads: int = 2,
        timeout: float = 4 * 3600,
    ) -> dict[str, np.ndarray]:
        """Each file (``{key: {"path", "kind", "layout", "output", "takes_pixels"}}``) on ``x`` (or
        ``pixels``) in the emulated arm64 Python: its logits by key."""
        binary = qemu()
        if binary is None:
            raise ExportError(missing() or "no qemu-aarch64")
        with tempfile.TemporaryDirectory(prefix="flower-edge-arm64-") as tmp:
            tmp = Path(tmp)
            np.save(tmp / "x.npy", np.ascontiguousarray(x, np.float32))
            if pixels is not None:
                np.save(tmp / "pixels.npy", pixels)
            job = {
                "inputs": str(tmp / "x.npy"),
                "pixels": str(tmp / "pixels.npy") if pixels is not None else None,
                "files": {k: {**v, "path": str(Path(v["path"]).resolve())} for k, v in files.items()},
                "output": str(tmp / "out.npz"),
                "threads": threads,
            }
            (tmp / "job.json").write_text(json.dumps(job))
            python = self.root / "rootfs" / "usr" / "bin" / f"python{PYTHON}"
            cmd = [
                str(binary),
                "-cpu",
                CPU,
                "-L",
                str(self.root / "rootfs"),
                str(python),
                str(Path(__file__).with_name("arm64_worker.py")),
                str(tmp / "job.json"),
            ]
            environment = {
                "PATH": "/usr/bin:/bin",
                "PYTHONPATH": str(self.root / "site"),
                "PYTHONNOUSERSITE": "1",
                "HOME": str(tmp),
                "LANG": "C.UTF-8",
            }
            _stream(cmd, environment, progress, timeout)
            with np.load(tmp / "out.npz") as out:
                return {k: out[k] for k in out.files}


def _run(cmd: list[str], what: str) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines()
        raise ExportError(
            f"arm64: {what} failed building the emulated environment "
            f"({lines[-1][:300] if lines else f'exit {done.returncode}'}); it needs Debian's mirror "
            "and PyPI"
        )


def _stream(cmd: list[str], environment: dict, progress: Callable[[str], None], timeout: float) -> None:
    """Run the worker, relaying its lines as progress; its last error line if it fails."""
    start, tail = time.monotonic(), []
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=environment) as proc:
        for line in proc.stdout:
            line = line.strip()
            tail = ([*tail, line])[-5:]
            parts = line.split()
            if len(parts) == 3 and "/" in parts[1]:
                progress(f"arm64: {parts[0]}: {parts[1]} photos, {float(parts[2]):.0f} s")
            if time.monotonic() - start > timeout:
                proc.kill()
                raise ExportError(f"arm64: the emulated run took over {timeout:.0f} s")
        if proc.wait() != 0:
            error = next((t for t in reversed(tail) if t), f"exit {proc.returncode}")
            raise ExportError(f"arm64: the emulated runtime failed ({error[:300]})")


def parity(
    key: str, reference: np.ndarray, arm: np.ndarray, host: np.ndarray, probabilities: bool, fmt, check
) -> Parity:
    """The ``KEY (arm64)`` row: the arm64 run against PyTorch (log-softmax for a file that gives
    probabilities), held to the format's requirement on this machine, with its top-1 agreement
    with this machine's run of the same file."""
    from flower_edge.runtime.predict import log_softmax

    expected = log_softmax(reference) if probabilities else reference
    row = check.compare(f"{key} ({ARCH})", fmt, expected, arm)
    return replace(row, host_agreement=float((arm.argmax(1) == host.argmax(1)).mean()))
