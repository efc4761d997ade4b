"""The int8 kernel path: exact only where this CPU needs it, fast elsewhere and for 7-bit models."""

import json
import subprocess
import sys

import numpy as np
import pytest

from flower_edge.common.errors import ConfigError
from flower_edge.runtime import cpu
from flower_edge.runtime.session import kernel_path, open_session, seven_bit_weights


@pytest.mark.parametrize(
    "machine, vnni, exact",
    [
        ("x86_64", False, True),
        ("AMD64", False, True),
        ("x86_64", True, False),
        ("aarch64", False, False),
        ("arm64", False, False),
    ],
)
def test_only_x86_without_vnni_needs_the_exact_path(machine, vnni, exact):
    assert cpu.needs_exact_int8(machine, vnni) is exact


def test_this_cpu_is_described_and_consistent():
    info = cpu.cpu_int8()
    assert info.int8_path == ("exact" if cpu.needs_exact_int8(info.machine, info.vnni) else "fast")
    assert info.why and info.model
    flags = open("/proc/cpuinfo").read().split() if sys.platform == "linux" else []
    if flags:
        assert info.vnni == any(f in flags for f in ("avx512_vnni", "avx_vnni", "amx_int8"))
        assert info.avx2 == ("avx2" in flags)


def test_environment_and_argument_override_the_choice(monkeypatch):
    monkeypatch.setenv(cpu.ENV, "exact")
    assert cpu.int8_path() == "exact"
    assert cpu.int8_path("fast") == "fast"  # an explicit argument wins
    monkeypatch.setenv(cpu.ENV, "fastest")
    with pytest.raises(ConfigError, match="FLOWER_EDGE_INT8_PATH must be one of auto, exact, fast"):
        cpu.int8_path()
    monkeypatch.delenv(cpu.ENV)
    assert cpu.int8_path() == cpu.cpu_int8().int8_path


def test_the_module_prints_its_verdict_as_json():
    done = subprocess.run([sys.executable, "-m", "flower_edge.runtime.cpu"], capture_output=True, text=True, check=True)
    doc = json.loads(done.stdout)
    assert doc["selected"] == doc["int8_path"] and "torch" not in done.stderr


def _avx2_only(monkeypatch):
    fake = cpu.CpuInt8("x86_64", "an AVX2-only CPU", True, False, False, "exact", "test")
    monkeypatch.setattr(cpu, "cpu_int8", lambda: fake)


def test_sessions_take_the_path_this_cpu_needs(tiny_models, monkeypatch):
    int8 = tiny_models / "model.int8.onnx"
    assert kernel_path(open_session(int8)) == cpu.cpu_int8().int8_path
    assert kernel_path(open_session(int8, int8_path="exact")) == "exact"
    assert kernel_path(open_session(int8, int8_path="fast")) == "fast"
    _avx2_only(monkeypatch)
    assert not seven_bit_weights(open_session(int8))
    assert kernel_path(open_session(int8)) == "exact"


def test_a_seven_bit_model_takes_the_fast_path_on_an_avx2_cpu(tiny_models, monkeypatch):
    """The card says 7-bit (flower-export --reduce-range: tests/export/test_int8.py checks it writes so)."""
    model = tiny_models / "model.7bit.int8.onnx"
    _avx2_only(monkeypatch)
    session = open_session(model)
    assert seven_bit_weights(session) and kernel_path(session) == "fast"
    assert kernel_path(open_session(model, int8_path="exact")) == "exact"
    x = np.random.default_rng(0).uniform(-1, 1, (4, 3, 64, 64)).astype(np.float32)
    fast = session.run(None, {"image": x})[0]
    exact = open_session(model, int8_path="exact").run(None, {"image": x})[0]
    # 7-bit weights cannot saturate, so the fast kernels answer as the exact ones, up to the
    # rounding of a requantization (a saturated sum would move logits by a large part of their range)
    assert np.abs(fast - exact).max() <= 0.05 * np.ptp(exact)


def test_the_saturation_probe_is_the_graph_onnx_builds():
    """runtime/cpu.py carries the probe's bytes (runtime/ does not need the onnx package): they are
    exactly this graph, MatMulInteger of 64 uint8 255s by 64 int8 127s."""
    from onnx import TensorProto, helper, numpy_helper

    k = 64
    graph = helper.make_graph(
        [helper.make_node("MatMulInteger", ["a", "w"], ["y"])],
        "saturation",
        [helper.make_tensor_value_info("a", TensorProto.UINT8, [1, k])],
        [helper.make_tensor_value_info("y", TensorProto.INT32, [1, 1])],
        [numpy_helper.from_array(np.full((k, 1), 127, np.int8), "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="flower-edge")
    model.ir_version = 8
    assert model.SerializeToString() == cpu._SATURATION_PROBE


@pytest.mark.skipif(sys.platform != "linux", reason="compares the probe with /proc/cpuinfo's flags")
def test_the_probe_agrees_with_this_cpus_flags():
    info = cpu.cpu_int8()  # on Linux: from /proc/cpuinfo
    if not cpu.is_x86(info.machine):
        pytest.skip("no saturating int8 kernel off x86")
    assert cpu.fast_kernel_saturates() is cpu.needs_exact_int8(info.machine, info.vnni)


def test_away_from_linux_the_probe_decides_and_numpy_is_the_fallback(monkeypatch):
    monkeypatch.setattr(cpu, "_linux_flags", lambda: (None, ""))
    monkeypatch.setattr(cpu.platform, "machine", lambda: "AMD64")
    monkeypatch.setattr(cpu, "_numpy_features", lambda: {"AVX2": True, "AVX512VNNI": False})
    for saturates, vnni, path in ((True, False, "exact"), (False, True, "fast"), (None, False, "exact")):
        monkeypatch.setattr(cpu, "fast_kernel_saturates", lambda s=saturates: s)
        cpu.cpu_int8.cache_clear()
        info = cpu.cpu_int8()
        assert (info.vnni, info.int8_path) == (vnni, path), saturates
    cpu.cpu_int8.cache_clear()


def test_on_an_avx2_cpu_without_vnni_the_probe_finds_the_saturating_kernel():
    """QEMU's x86-64 user mode as a Haswell (AVX2, no VNNI), where one is installed beside the arm64
    one (.ci/run sets QEMU 10 up): onnxruntime's fast kernel there clips the probe's sums."""
    import os
    import shutil
    import site
    from pathlib import Path

    arm = os.environ.get("FLOWER_EDGE_QEMU", "")
    qemu = str(Path(arm).with_name("qemu-x86_64")) if arm else shutil.which("qemu-x86_64")
    if not qemu or not Path(qemu).is_file() or not cpu.is_x86(cpu.platform.machine()):
        pytest.skip("no qemu-x86_64 to run an AVX2-only CPU")
    code = (
        "import site\n"
        + "".join(f"site.addsitedir({p!r})\n" for p in site.getsitepackages())
        + "from flower_edge.runtime import cpu\nprint(cpu.fast_kernel_saturates())"
    )
    done = subprocess.run(
        [qemu, "-cpu", "Haswell", sys.executable, "-c", code], capture_output=True, text=True, timeout=300
    )
    assert done.stdout.strip() == "True", done.stderr[-1000:]
