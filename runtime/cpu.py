"""What this CPU offers int8 models, and which onnxruntime kernel path flower-edge picks for it.

    python -m flower_edge.runtime.cpu          # {"machine": "x86_64", "vnni": true, ..., "int8_path": "fast"}
    describe_machine()                         # the CPU's name, cores, int8 features: what benchmarks record

onnxruntime's x86 int8 kernels multiply uint8 activations by int8 weights. With VNNI (AVX512-VNNI,
AVX-VNNI or AMX) the products are summed in 32 bits: exact and fast. Without it (AVX2 only) the fast
kernel sums pairs of products in 16 bits with saturation, which overflows with 8-bit weights, so
there flower-edge asks for onnxruntime's exact path (``session.x64quantprecision``), slower but
giving the answers of every other CPU. Arm CPUs (phones, Apple silicon, Graviton) have no such
kernel and always run exactly.

``FLOWER_EDGE_INT8_PATH=exact|fast|auto`` overrides the choice for every session of the process.
"""

from __future__ import annotations

import functools
import json
import os
import platform
from dataclasses import asdict, dataclass
from datetime import UTC
from pathlib import Path

from flower_edge.common.errors import ConfigError

INT8_PATHS = ("auto", "exact", "fast")
ENV = "FLOWER_EDGE_INT8_PATH"
_VNNI_FLAGS = {"avx512_vnni", "avx_vnni", "amx_int8"}
"""/proc/cpuinfo names of the instructions that give onnxruntime's u8s8 kernels 32-bit sums."""


@dataclass(frozen=True)
class CpuInt8:
    machine: str
    """``platform.machine()``: x86_64, AMD64, arm64, aarch64, ..."""
    model: str
    avx2: bool
    vnni: bool
    """AVX512-VNNI, AVX-VNNI or AMX-INT8: exact 32-bit sums in the fast kernels."""
    arm_dot: bool
    """Arm's int8 dot product (sdot/udot)."""
    int8_path: str
    """What ``auto`` chooses here: ``exact`` (x86 without VNNI) or ``fast``."""
    why: str

    def to_dict(self) -> dict:
        return asdict(self)


def is_x86(machine: str) -> bool:
    return machine.lower() in ("x86_64", "amd64", "i386", "i686", "x86")


def needs_exact_int8(machine: str, vnni: bool) -> bool:
    """True where onnxruntime's fast uint8 x int8 kernel would saturate: x86 without VNNI."""
    return is_x86(machine) and not vnni


@functools.lru_cache(maxsize=1)
def cpu_int8() -> CpuInt8:
    """This CPU's int8 features, read once per process (Linux: /proc/cpuinfo; elsewhere, on x86, by running
    onnxruntime's kernel on ``fast_kernel_saturates``' probe, numpy's feature list where it cannot)."""
    machine = platform.machine() or "unknown"
    flags, model = _linux_flags()
    if flags is None:
        features = _numpy_features()
        avx2 = features.get("AVX2", False)
        saturates = fast_kernel_saturates() if is_x86(machine) else None
        vnni = features.get("AVX512VNNI", False) if saturates is None else not saturates
        arm_dot = features.get("ASIMDDP", False)
    else:
        avx2 = "avx2" in flags
        vnni = bool(flags & _VNNI_FLAGS)
        arm_dot = "asimddp" in flags
    if needs_exact_int8(machine, vnni):
        path, why = "exact", "x86 without VNNI: the fast u8s8 kernel saturates 16-bit sums"
    elif is_x86(machine):
        path, why = "fast", "x86 with VNNI: the fast kernel sums in 32 bits, exactly"
    else:
        path, why = "fast", f"{machine}: no saturating int8 kernel"
    return CpuInt8(machine, model or platform.processor() or "unknown", avx2, vnni, arm_dot, path, why)


def describe_machine() -> dict:
    """This machine as every benchmark records it: the CPU's name (as ``lscpu`` gives it), its
    cores, its int8 features and path, the Python version and the date."""
    from datetime import datetime

    cpu = cpu_int8()
    return {
        "cpu": cpu.model,
        "cores": os.cpu_count(),
        "machine": cpu.machine,
        "int8": cpu.to_dict(),
        "python": platform.python_version(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def int8_path(requested: str | None = None) -> str:
    """The kernel path a session takes: ``requested``, else $FLOWER_EDGE_INT8_PATH, else this CPU's."""
    choice = requested or os.environ.get(ENV) or "auto"
    if choice not in INT8_PATHS:
        source = "int8 path" if requested else ENV
        raise ConfigError(f"{source} must be one of {', '.join(INT8_PATHS)}, found {choice!r}")
    return cpu_int8().int8_path if choice == "auto" else choice


def _linux_flags() -> tuple[set[str] | None, str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None, ""
    flags: set[str] = set()
    model = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key in ("flags", "Features") and not flags:  # x86 / Arm; the first CPU speaks for all
            flags = set(value.split())
        elif key == "model name" and not model:
            model = value.strip()
    return (flags or None), model


# One ONNX graph, MatMulInteger (opset 13) of a row of 64 uint8 255s by a column of 64 int8 127s, as
# onnx.helper serializes it (tests/runtime/test_cpu.py builds it again and compares): runtime/ does
# not depend on the onnx package.
_PROBE_K = 64
_SATURATION_PROBE = (
    b'\x08\x08\x12\x0bflower-edge:\x9d\x01\n\x18\n\x01a\n\x01w\x12\x01y"\rMatMulInteger\x12\nsaturation'
    b"*K\x08@\x08\x01\x10\x03B\x01wJ@"
    + b"\x7f"
    * _PROBE_K
    + b"Z\x13\n\x01a\x12\x0e\n\x0c\x08\x02\x12\x08\n\x02\x08\x01\n\x02\x08@"
    b"b\x13\n\x01y\x12\x0e\n\x0c\x08\x06\x12\x08\n\x02\x08\x01\n\x02\x08\x01B\x04\n\x00\x10\r"
)


def fast_kernel_saturates() -> bool | None:
    """Whether onnxruntime's default uint8 x int8 kernel saturates on this CPU, found by running it:
    x86 without VNNI sums pairs of products in 16 bits, so 64 x 255 x 127 comes back clipped
    (32 x 32,767) instead of exact. None where onnxruntime cannot run the probe. Away from Linux
    this replaces numpy's feature list, which has no AVX-VNNI entry."""
    import numpy as np

    try:
        import onnxruntime

        session = onnxruntime.InferenceSession(_SATURATION_PROBE, providers=["CPUExecutionProvider"])
        got = int(session.run(None, {"a": np.full((1, _PROBE_K), 255, np.uint8)})[0][0, 0])
    except Exception:  # an onnxruntime that cannot load or run it
        return None
    return got != 255 * 127 * _PROBE_K


def _numpy_features() -> dict[str, bool]:
    try:
        from numpy._core._multiarray_umath import __cpu_features__  # type: ignore[import-not-found]
    except ImportError:  # numpy < 2
        try:
            from numpy.core._multiarray_umath import __cpu_features__  # type: ignore[no-redef]
        except ImportError:
            return {}
    return dict(__cpu_features__)


if __name__ == "__main__":
    print(json.dumps({**cpu_int8().to_dict(), "selected": int8_path()}, indent=2))
