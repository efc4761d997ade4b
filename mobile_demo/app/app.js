// flower-edge on the phone: the exported model, its card and its web runtimes, all from this folder.
// Every step of preprocessing comes from card.json (see preprocess.js); nothing is sent anywhere.
// At its first start the app runs the export's golden photos through the very path of a user's
// photo and keeps the first runtime of bundle.json's chain that answers them as the checkpoint did;
// the status line says which, and what failed. ?runtime=onnxruntime|litert|webgpu puts one first.
import { preprocess } from "./preprocess.js";
import { open } from "./runtimes.js";

const $ = (id) => document.getElementById(id);
const TOP_K = 5;
const MAX_PIXELS = 64_000_000;  // the runtime's decompression-bomb cap
// A golden photo passes when its top-1 is the checkpoint's and its probability within PROB_TOL of it.
// Golden photos are answered with a margin of 0.5 or more, and a faithful int8 model moves the
// top-1 probability by up to 0.16 on them (Flowers102, model.int8.onnx); a wrong model or kernel
// changes the answer.
const PROB_TOL = 0.25;
const RELOADED = "flower-edge-isolation-reload";
const THREADS = Math.min(4, navigator.hardwareConcurrency || 1);

function reloadIsolated() {  // once per tab: a browser that will not isolate the page still runs it
  if (self.crossOriginIsolated || sessionStorage.getItem(RELOADED)) return false;
  sessionStorage.setItem(RELOADED, "1");
  location.reload();
  return true;
}

const fetchJson = async (url) => {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`${url}: ${response.status}`);
  return response.json();
};

function chainOf(bundle) {
  const chain = bundle.runtimes ?? [{ runtime: "onnxruntime", name: "onnxruntime-web", model: bundle.model }];
  const asked = new URLSearchParams(location.search).get("runtime");
  if (asked === "webgpu") {
    const litert = chain.find((e) => e.runtime === "litert");
    return litert ? [{ ...litert, accelerator: "webgpu", name: "LiteRT.js WebGPU" }, ...chain] : chain;
  }
  return asked ? [...chain.filter((e) => e.runtime === asked), ...chain.filter((e) => e.runtime !== asked)] : chain;
}

async function load() {
  const [bundle, card] = await Promise.all([fetchJson("bundle.json"), fetchJson("card.json")]);
  const golden = bundle.golden ? await fetchJson("golden/golden.json") : [];
  const notes = [];
  let unverified = null;
  for (const entry of chainOf(bundle)) {
    const spec = { ...card, ...entry };  // the model's own layout, output and input type
    let runtime;
    try {
      runtime = await open(spec, THREADS);
    } catch (e) {
      notes.push(`${entry.name} could not start (${e.message})`);
      continue;
    }
    const state = { bundle, card: spec, runtime, golden, notes };
    state.check = await selfCheck(state);
    if (state.check.passed || !golden.length) return showStatus(state);
    notes.push(`${runtime.name} (${entry.model}) failed its self-check: ${state.check.same}/${state.check.total}`);
    unverified ??= state;
  }
  if (!unverified) throw new Error(notes.join("; "));
  return showStatus(unverified);
}

// The golden photos through classify(), as a user's photo goes: same decode, preprocessing, runtime.
async function selfCheck(state) {
  const rows = [];
  for (const g of state.golden) {
    const want = g.top_k[0];
    try {
      const blob = await (await fetch(`golden/${g.name}`)).blob();
      const got = (await classify(state, blob)).top_k[0];
      rows.push({ name: g.name, expected: want.label, got: got.label,
                  ok: got.index === want.index && Math.abs(got.prob - want.prob) <= PROB_TOL });
    } catch (e) {
      rows.push({ name: g.name, expected: want.label, got: null, error: e.message, ok: false });
    }
  }
  const same = rows.filter((r) => r.ok).length;
  return { same, total: rows.length, passed: rows.length > 0 && same === rows.length, rows };
}

function showStatus(state) {
  const { bundle, card, runtime, check, notes } = state;
  const threads = runtime.threads ? `${runtime.threads} thread${runtime.threads > 1 ? "s" : ""}` : "GPU";
  const isolated = self.crossOriginIsolated ? "" : " (page not cross-origin isolated)";
  const verdict = !check.total ? "not checked on this device (the bundle has no golden photos)"
    : check.passed ? `answers as the checkpoint on this device: ${check.same}/${check.total}`
    : `does NOT answer as the checkpoint on this device (${check.same}/${check.total}); answers are unverified`;
  state.trusted = check.total ? check.passed : null;  // null: nothing to check against
  $("status").textContent = `${card.labels.length} flowers, ${card.model}, ${runtime.name}, ${threads}${isolated}, ` +
    `offline. Self-check: ${verdict}.${notes.length ? ` ${notes.join("; ")}.` : ""}`;
  $("status").className = check.passed ? "trusted" : check.total ? "untrusted" : "";
  $("about").textContent = `${card.arch} · input ${card.crop_size}px · ${bundle.created}`;
  window.flowerEdge.state = { runtime: runtime.name, model: card.model, threads: runtime.threads, check, notes,
                              trusted: state.trusted };
  return state;
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

function show(file, top, ms, trusted) {
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
  const warning = trusted === false ? " · unverified: this device's runtime failed its self-check" : "";
  $("timing").textContent = `${ms.toFixed(0)} ms on this device${warning}`;
}

async function classify(state, file) {
  const { card, runtime } = state;
  const start = performance.now();
  const image = await decode(file);
  const decoded = performance.now();
  const x = preprocess(image, card);
  const preprocessed = performance.now();
  const top = topK(await runtime.run(x), card);
  const end = performance.now();
  return { image: file.name, top_k: top, ms: end - start, runtime: runtime.name, trusted: state.trusted ?? null,
           stages_ms: { decode: decoded - start, preprocess: preprocessed - decoded, inference: end - preprocessed } };
}

window.flowerEdge = { results: [], state: null };
// A first visit on a host without COOP/COEP reloads once the service worker controls the page:
// wait for that rather than load a runtime twice (3 s at most: a browser may refuse the worker).
const reloading = !self.crossOriginIsolated && "serviceWorker" in navigator && location.protocol !== "file:" &&
  !sessionStorage.getItem(RELOADED);
const ready = (reloading ? new Promise((resolve) => setTimeout(resolve, 3000)) : Promise.resolve()).then(load);
window.flowerEdge.ready = ready;
ready.catch((e) => { $("status").textContent = `Could not load the model: ${e.message}`; $("status").className = "untrusted"; });

// The model's input for a photo at ``url``, as the app computes it (tests compare it with flower-run's).
window.flowerEdge.tensor = async (url) => {
  const state = await ready;
  return Array.from(preprocess(await decode(await (await fetch(url)).blob()), state.card));
};

$("check").addEventListener("click", async () => {
  const state = await ready;
  $("status").textContent = "Checking this device against the golden photos…";
  state.check = await selfCheck(state);
  showStatus(state);
});

for (const input of [$("camera"), $("gallery")]) {
  input.addEventListener("change", async () => {
    const file = input.files[0];
    if (!file) return;
    const model = await ready;
    try {
      const result = await classify(model, file);
      show(file, result.top_k, result.ms, result.trusted);
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
