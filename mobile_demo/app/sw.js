// Offline after the first visit: the app, the model and the runtimes' scripts are cached on install;
// the WASM build a browser loads (one of LiteRT.js's three) and a fallback runtime's model are cached
// the first time they are fetched. Everything is served from the cache first. A new bundle changes
// VERSION (written by flower-bundle).
// Every response it serves carries the COOP/COEP headers that make the page cross-origin isolated
// (the coi-serviceworker technique), so onnxruntime-web gets threads on any static host: a plain
// file server, GitHub Pages, a Capacitor shell. app.js reloads once on the first visit, when the
// page was loaded before this worker controlled it.
const VERSION = "flower-edge-__VERSION__";
const FILES = __FILES__;

self.addEventListener("install", (event) => {
  event.waitUntil(caches.open(VERSION).then((cache) => cache.addAll(FILES)).then(() => self.skipWaiting()));
});

self.addEventListener("activate", (event) => {
  event.waitUntil(caches.keys()
    .then((keys) => Promise.all(keys.filter((k) => k !== VERSION).map((k) => caches.delete(k))))
    .then(() => self.clients.claim()));
});

function isolated(response) {
  if (!response || response.status === 0 || response.type === "opaque") return response;
  const headers = new Headers(response.headers);
  headers.set("Cross-Origin-Opener-Policy", "same-origin");
  headers.set("Cross-Origin-Embedder-Policy", "require-corp");
  headers.set("Cross-Origin-Resource-Policy", "same-origin");
  return new Response(response.body, { status: response.status, statusText: response.statusText, headers });
}

self.addEventListener("fetch", (event) => {
  if (event.request.method !== "GET" || new URL(event.request.url).origin !== self.location.origin) return;
  event.respondWith(caches.open(VERSION).then(async (cache) => {
    const hit = await cache.match(event.request, { ignoreSearch: true });
    if (hit) return isolated(hit);
    const response = await fetch(event.request);
    if (response.ok && response.type === "basic") await cache.put(event.request, response.clone());
    return isolated(response);
  }));
});
