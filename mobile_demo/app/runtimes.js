// The runtimes the app can run a model with, behind one interface:
//   const model = await open(entry, threads)   // entry: one of bundle.json's "runtimes"
//   const scores = await model.run(x)          // x: the card's preprocessed input; Float32Array out
// Each is loaded only when the chain reaches it (a dynamic import), so a phone downloads one runtime.
//
// LiteRT.js runs the .tflite files with XNNPACK's WASM kernels: about 20x faster than
// onnxruntime-web on the int8 model in chromium (benchmarks/scripts/browser_latency.py). Its
// threaded build needs a cross-origin isolated page and relaxed SIMD; its compat build runs where
// relaxed SIMD is missing (Safari), on one thread.

const here = (path) => new URL(path, import.meta.url).href;

let litert = null;  // the LiteRT.js module, loaded once (its WASM build cannot be changed after)

async function openLiteRt(entry, threads, accelerator) {
  if (!litert) {
    const module = await import("./litert/index.js");
    const relaxed = await module.supportsFeature("relaxedSimd").catch(() => false);
    const threaded = threads > 1 && self.crossOriginIsolated && relaxed;
    await module.loadLiteRt(here("./litert/wasm/"), { threads: threaded });
    litert = { module, threads: threaded ? threads : 1, simd: relaxed ? "relaxed SIMD" : "SIMD" };
  }
  const { module } = litert;
  const options = accelerator === "webgpu" ? { accelerator: "webgpu" }
    : { accelerator: "wasm", cpuOptions: { numThreads: litert.threads } };
  const compiled = await module.loadAndCompile(entry.model, options);
  const size = entry.crop_size;
  return {
    name: `LiteRT.js ${accelerator === "webgpu" ? "WebGPU" : `WASM ${litert.simd}`}`,
    threads: accelerator === "webgpu" ? 0 : litert.threads,
    async run(x) {
      const input = new module.Tensor(x, [1, size, size, 3]);
      const outputs = await compiled.run(input);
      input.delete();
      try {
        const first = outputs[0].accelerator === "wasm" ? outputs[0] : await outputs[0].moveTo("wasm");
        const scores = Float32Array.from(first.toTypedArray());
        if (first !== outputs[0]) first.delete();
        return scores;
      } finally {
        for (const t of outputs) t.delete();
      }
    },
  };
}

async function openOrt(entry, threads) {
  const ort = await import("./ort/ort.wasm.min.mjs");
  ort.env.wasm.wasmPaths = here("./ort/");
  ort.env.wasm.numThreads = self.crossOriginIsolated ? threads : 1;
  const session = await ort.InferenceSession.create(entry.model, { executionProviders: ["wasm"] });
  const size = entry.crop_size;
  return {
    name: "onnxruntime-web WASM SIMD",
    threads: ort.env.wasm.numThreads,
    async run(x) {
      const uint8 = entry.input_dtype === "uint8";
      const shape = uint8 || entry.layout === "NHWC" ? [1, size, size, 3] : [1, 3, size, size];
      const input = new ort.Tensor(uint8 ? "uint8" : "float32", x, shape);
      const output = await session.run({ [session.inputNames[0]]: input });
      return Float32Array.from(output[session.outputNames[0]].data);
    },
  };
}

export async function open(entry, threads) {
  if (entry.runtime === "litert") return openLiteRt(entry, threads, entry.accelerator || "wasm");
  if (entry.runtime === "onnxruntime") return openOrt(entry, threads);
  throw new Error(`unknown runtime ${entry.runtime}`);
}
