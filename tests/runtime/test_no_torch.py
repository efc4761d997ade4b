import subprocess
import sys


def test_runtime_import_leaves_torch_out():
    code = (
        "import sys, flower_edge.runtime, flower_edge.runtime.image, flower_edge.runtime.card\n"
        "heavy = [m for m in ('torch', 'torchvision', 'onnx') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
