// flower-edge on the phone: the exported model, its card and onnxruntime-web, all from this folder.
// Every step of preprocessing comes from card.json (see preprocess.js); nothing is sent anywhere.
import * as ort from "./ort/ort.wasm.min.mjs";
import { preprocess } from "./preprocess.js";

const $ = (id) => document.getElementById(id);
const TOP_K = 5;
const MAX_PIXELS = 64_000_000;  // the runtime's decompression-bomb cap

const RELOADED = "flower-edge-isolation-reload";

ort.env.wasm.wasmPaths = new URL("./ort/", import.meta.url).href;
// Threads need a cross-origin isolated page (COOP/COEP headers: flower-bundle --serve sends them, and
// sw.js adds them on any other host); otherwise one thread, still SIMD.
ort.env.wasm.numThreads = self.crossOriginIsolated ? Math.min(4, navigator.hardwareConcurrency || 1) : 1;

function reloadIsolated() {  // once per tab: a browser that will not isolate the page still runs it
  if (self.crossOriginIsolated || sessionStorage.getItem(RELOADED)) return false;
  sessionStorage.setItem(RELOADED, "1");
  location.reload();
  return true;
}

async function load() {
  const bundle = await (await fetch("bundle.json")).json();
  const card = await (await fetch("card.json")).json();
  const session = await ort.InferenceSession.create(bundle.model, { executionProviders: ["wasm"] });
  const threads = ort.env.wasm.numThreads;
  $("status").textContent = `Ready: ${card.labels.length} flowers, ${bundle.model} (${bundle.model_mb} MB), ` +
    `onnxruntime-web WASM SIMD, ${threads} thread${threads > 1 ? "s" : ""}` +
    `${self.crossOriginIsolated ? "" : " (page not cross-origin isolated)"}, offline`;
  $("about").textContent = `${card.arch} · input ${card.crop_size}px · onnxruntime-web ${ort.env.versions?.web ?? ""}`;
  return { bundle, card, session };
}

async function decode(file) {
  const bitmap = await createImageBitmap(file, { imageOrientation: "from-image", colorSpaceConversion: "none", premultiplyAlpha: "none" });
  if (bitmap.width * bitmap.height > MAX_PIXELS) throw new Error(`${bitmap.width}x${bitmap.height} is over the 64 MP limit`);
  const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  ctx.drawImage(bitmap, 0, 0);
  const image = ctx.getImageData(0, 0, bitmap.width, bitmap.height);
  const d = image.data;
  for (let i = 0; i < d.length; i += 4) {  // transparent pixels on white, as the runtime shows them
    const a = d[i + 3];
    if (a < 255) for (let c = 0; c < 3; c++) d[i + c] = Math.round((d[i + c] * a + 255 * (255 - a)) / 255);
  }
  return image;
}

function topK(logits, card) {
  const probs = card.output === "probabilities" ? Array.from(logits) : softmax(logits);
  return probs.map((p, i) => ({ index: i, label: card.labels[i], prob: p }))
    .sort((a, b) => b.prob - a.prob).slice(0, TOP_K).map((t, r) => ({ rank: r + 1, ...t }));
}

function softmax(z) {
  const m = Math.max(...z);
  const e = Array.from(z, (v) => Math.exp(v - m));
  const s = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / s);
}

function show(file, top, ms) {
  const img = document.createElement("img");
  img.src = URL.createObjectURL(file);
  img.alt = file.name;
  $("preview").replaceChildren(img);
  $("results").replaceChildren(...top.map((t) => {
    const li = document.createElement("li");
    li.innerHTML = `<span class="label"></span><span class="prob"></span><span class="bar"><span></span></span>`;
    li.querySelector(".label").textContent = t.label;
    li.querySelector(".prob").textContent = `${(t.prob * 100).toFixed(1)}%`;
    li.querySelector(".bar span").style.width = `${(t.prob * 100).toFixed(1)}%`;
    return li;
  }));
  $("timing").textContent = `${ms.toFixed(0)} ms on this device`;
}

async function classify(model, file) {
  const { card, session } = model;
  const start = performance.now();
  const x = preprocess(await decode(file), card);
  const uint8 = card.input_dtype === "uint8";
  const shape = uint8 ? [1, card.crop_size, card.crop_size, 3] : [1, 3, card.crop_size, card.crop_size];
  const input = new ort.Tensor(uint8 ? "uint8" : "float32", x, shape);
  const output = await session.run({ [session.inputNames[0]]: input });
  const top = topK(output[session.outputNames[0]].data, card);
  const ms = performance.now() - start;
  return { image: file.name, top_k: top, ms };
}

const ready = load();
window.flowerEdge = { ready, results: [] };
ready.catch((e) => { $("status").textContent = `Could not load the model: ${e.message}`; });

for (const input of [$("camera"), $("gallery")]) {
  input.addEventListener("change", async () => {
    const file = input.files[0];
    if (!file) return;
    const model = await ready;
    try {
      const result = await classify(model, file);
      show(file, result.top_k, result.ms);
      window.flowerEdge.results.push(result);
    } catch (e) {
      $("results").replaceChildren();
      $("timing").textContent = `${file.name}: ${e.message}`;
      window.flowerEdge.results.push({ image: file.name, error: e.message });
    }
    input.value = "";
  });
}

if ("serviceWorker" in navigator && location.protocol !== "file:") {
  // A page loaded before the worker controlled it has no COOP/COEP headers: reload once it does.
  if (navigator.serviceWorker.controller) reloadIsolated();
  else navigator.serviceWorker.addEventListener("controllerchange", reloadIsolated);
  navigator.serviceWorker.register("sw.js").catch(() => {});
}
