"""The program export/arm64.py runs inside the emulated arm64 Python: each phone file on the inputs.

    python3 arm64_worker.py job.json        # job: {"inputs": "x.npy", "pixels": "raw.npy",
                                            #       "files": {"onnx-int8": {"path", "kind", ...}, ...},
                                            #       "output": "out.npz", "threads": 2}

It imports nothing of flower-edge (the emulated environment holds numpy, onnxruntime and the LiteRT
interpreter, nothing else) and does what the build machine's runners do (runtime/session.py,
export/tflite.py): ONNX files through onnxruntime's CPU provider, batch 1; .tflite files through
LiteRT's interpreter, NHWC, probabilities read as log-probabilities. One line per file and per
tenth of the photos goes to stdout, for the build machine's progress lines.
"""

import json
import sys
import time

import numpy as np


def onnx_runner(spec, threads):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(spec["path"], options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda x: session.run(None, {name: x})[0]


def tflite_runner(spec, threads):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=spec["path"], num_threads=threads)
    interpreter.allocate_tensors()
    source, target = interpreter.get_input_details()[0], interpreter.get_output_details()[0]

    def run(x):
        if spec.get("layout") == "NHWC":
            x = x.transpose(0, 2, 3, 1)
        interpreter.set_tensor(source["index"], quantized(x, source))
        interpreter.invoke()
        out = dequantized(interpreter.get_tensor(target["index"]), target)
        if spec.get("output") == "probabilities":
            out = np.log(np.maximum(out, np.finfo(np.float32).tiny))
        return out

    return run


def quantized(x, detail):
    if detail["dtype"] == np.float32:
        return np.ascontiguousarray(x, np.float32)
    scale, zero = detail["quantization"]
    info = np.iinfo(detail["dtype"])
    return np.clip(np.round(x / scale) + zero, info.min, info.max).astype(detail["dtype"])


def dequantized(y, detail):
    if detail["dtype"] == np.float32:
        return y.astype(np.float32)
    scale, zero = detail["quantization"]
    return ((y.astype(np.float32) - zero) * scale).astype(np.float32)


RUNNERS = {"onnx": onnx_runner, "tflite": tflite_runner}


def main():
    job = json.load(open(sys.argv[1]))
    x = np.load(job["inputs"])
    pixels = np.load(job["pixels"]) if job.get("pixels") else None
    outputs = {}
    for key, spec in job["files"].items():
        run = RUNNERS[spec["kind"]](spec, job.get("threads", 2))
        data = pixels if spec.get("takes_pixels") else x
        start, rows = time.time(), []
        for i in range(len(data)):
            rows.append(run(data[i : i + 1]))
            if (i + 1) % max(1, len(data) // 10) == 0 or i + 1 == len(data):
                print(f"{key} {i + 1}/{len(data)} {time.time() - start:.1f}", flush=True)
        outputs[key] = np.concatenate(rows).astype(np.float32)
    np.savez(job["output"], **outputs)


if __name__ == "__main__":
    main()
