import subprocess
import sys


def test_runtime_and_common_imports_leave_torch_out():
    """What runs a model (runtime/) and what every command shares (common/) never import torch or onnx."""
    code = (
        "import sys, flower_edge.runtime, flower_edge.runtime.image, flower_edge.runtime.card\n"
        "import flower_edge.runtime.predict, flower_edge.runtime.session, flower_edge.runtime.cli\n"
        "import flower_edge.common.errors, flower_edge.common.files, flower_edge.common.processes\n"
        "import flower_edge.common.progress, flower_edge.common.output, flower_edge.common.options\n"
        "heavy = [m for m in ('torch', 'torchvision', 'onnx') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
