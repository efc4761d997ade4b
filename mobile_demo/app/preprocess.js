// The card's preprocessing in JavaScript, pixel for pixel what flower_edge.runtime.image does with
// Pillow and numpy: shorter side resized with Pillow's own resampling (separable, fixed-point,
// horizontal pass first, rounded to 8 bits in between), centre crop, scale to [0, 1], normalize.
// A canvas drawImage() resize would be a different filter, and the phone would see other pixels.

const PRECISION_BITS = 32 - 8 - 2;
const FILTERS = {
  bilinear: { support: 1.0, f: (x) => { x = Math.abs(x); return x < 1.0 ? 1.0 - x : 0.0; } },
  bicubic: {
    support: 2.0,
    f: (x) => {
      const a = -0.5; x = Math.abs(x);
      if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
      if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
      return 0.0;
    },
  },
};

// Pillow's precompute_coeffs + normalize_coeffs_8bpc (libImaging/Resample.c).
function coefficients(inSize, outSize, filter) {
  const scale = inSize / outSize;
  const filterscale = Math.max(scale, 1.0);
  const support = filter.support * filterscale;
  const ksize = Math.ceil(support) * 2 + 1;
  const bounds = new Int32Array(outSize * 2);
  const kk = new Int32Array(outSize * ksize);
  const ss = 1.0 / filterscale;
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale;
    let xmin = Math.trunc(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    let xmax = Math.trunc(center + support + 0.5);
    if (xmax > inSize) xmax = inSize;
    xmax -= xmin;
    const k = new Float64Array(ksize);
    let w = 0.0;
    for (let x = 0; x < xmax; x++) {
      const v = filter.f((x + xmin - center + 0.5) * ss);
      k[x] = v;
      w += v;
    }
    for (let x = 0; x < xmax; x++) {
      const v = w !== 0.0 ? k[x] / w : k[x];
      kk[xx * ksize + x] = Math.trunc(v < 0 ? -0.5 + v * (1 << PRECISION_BITS) : 0.5 + v * (1 << PRECISION_BITS));
    }
    bounds[xx * 2] = xmin;
    bounds[xx * 2 + 1] = xmax;
  }
  return { bounds, kk, ksize };
}

const clip8 = (v) => { const x = v >> PRECISION_BITS; return x < 0 ? 0 : x > 255 ? 255 : x; };

// One pass of Pillow's resampling along x ("h") or y ("v"). ``src``: {data, w, h, ch, x0, y0}, pixels
// of ch bytes whose first column and row are at (x0, y0) of the image the pass reads. It computes the
// output positions [from, from + count) along the axis, for the src's lines [other, other + lines)
// across it; the result's (x0, y0) is where it lies in the image the pass writes.
function pass(src, axis, coeffs, from, count, other, lines) {
  const { bounds, kk, ksize } = coeffs;
  const half = 1 << (PRECISION_BITS - 1);
  const h = axis === "h", outW = h ? count : lines, outH = h ? lines : count, d = src.data, ch = src.ch;
  const out = new Uint8Array(outW * outH * 3);
  for (let y = 0; y < outH; y++) {
    for (let x = 0; x < outW; x++) {
      const o = from + (h ? x : y), n = bounds[o * 2 + 1], k = o * ksize;
      const first = bounds[o * 2] - (h ? src.x0 : src.y0);
      let r = half, g = half, b = half;
      for (let t = 0; t < n; t++) {
        const i = h ? ((y + other) * src.w + first + t) * ch : ((first + t) * src.w + x + other) * ch;
        const c = kk[k + t];
        r += d[i] * c; g += d[i + 1] * c; b += d[i + 2] * c;
      }
      const j = (y * outW + x) * 3;
      out[j] = clip8(r); out[j + 1] = clip8(g); out[j + 2] = clip8(b);
    }
  }
  return { data: out, w: outW, h: outH, ch: 3, x0: h ? from : src.x0 + other, y0: h ? src.y0 + other : from };
}

// The source lines [first, last) that output positions [from, from + count) read.
function span(coeffs, from, count) {
  let last = 0;
  for (let o = from; o < from + count; o++) last = Math.max(last, coeffs.bounds[o * 2] + coeffs.bounds[o * 2 + 1]);
  return [coeffs.bounds[from * 2], last];
}

// Pillow's resize (libImaging/Resample.c, Pillow 13), computed only where the centre crop needs it:
// two separable passes, 8 bits in between, the vertical one first when the height shrinks more than
// twice as much as the width. Each output pixel depends on its own window alone, so this is what
// resizing the whole photo and cropping gives, bit for bit. RGBA in (w x h), the crop's RGB out.
function resampleCrop(rgba, w, h, outW, outH, interpolation, left, top, crop) {
  if (interpolation === "nearest") return nearestCrop(rgba, w, h, outW, outH, left, top, crop);
  const filter = FILTERS[interpolation];
  const H = outW !== w ? coefficients(w, outW, filter) : null;
  const V = outH !== h ? coefficients(h, outH, filter) : null;
  let img = { data: rgba, w, h, ch: 4, x0: 0, y0: 0 };
  if (!(h - outH > 0 && h - outH > (w - outW) * 2)) {  // horizontal first
    const [r0, r1] = V ? span(V, top, crop) : [top, top + crop];
    if (H) img = pass(img, "h", H, left, crop, r0, r1 - r0);
    if (V) img = pass(img, "v", V, top, crop, H ? 0 : left, crop);
  } else {
    const [c0, c1] = H ? span(H, left, crop) : [left, left + crop];
    img = pass(img, "v", V, top, crop, c0, c1 - c0);
    if (H) img = pass(img, "h", H, left, crop, 0, crop);
  }
  const out = new Uint8Array(crop * crop * 3);  // the crop, wherever img's origin lies
  for (let y = 0; y < crop; y++) {
    for (let x = 0; x < crop; x++) {
      const i = ((top + y - img.y0) * img.w + left + x - img.x0) * img.ch, j = (y * crop + x) * 3;
      out[j] = img.data[i]; out[j + 1] = img.data[i + 1]; out[j + 2] = img.data[i + 2];
    }
  }
  return out;
}

// Pillow's NEAREST resize is no convolution but an affine scale (Geometry.c ImagingScaleAffine): the
// source of output x is trunc(x0 + s/2 + x s), s = w / outW, the sum accumulated in doubles as there.
function positions(size, outSize, from, count) {
  const step = size / outSize, at = new Int32Array(count);
  let v = step * 0.5;
  for (let o = 0; o < from + count; o++, v += step) if (o >= from) at[o - from] = Math.trunc(v);
  return at;
}

function nearestCrop(rgba, w, h, outW, outH, left, top, crop) {
  const xs = positions(w, outW, left, crop), ys = positions(h, outH, top, crop);
  const out = new Uint8Array(crop * crop * 3);
  for (let y = 0; y < crop; y++) {
    for (let x = 0; x < crop; x++) {
      const i = (ys[y] * w + xs[x]) * 4, j = (y * crop + x) * 3;
      out[j] = rgba[i]; out[j + 1] = rgba[i + 1]; out[j + 2] = rgba[i + 2];
    }
  }
  return out;
}

// The card's pipeline: RGBA ImageData-like {data, width, height} -> model input (the card's layout).
export function preprocess(image, card) {
  const { width: w, height: h } = image;
  // resize_shorter: the shorter side becomes resize_size, the longer keeps the aspect (truncated)
  const size = card.resize_size;
  let nw, nh;
  if (w <= h) { nw = size; nh = Math.trunc(size * h / w); } else { nh = size; nw = Math.trunc(size * w / h); }
  // center_crop: Python's round() of half-integers goes to even
  const crop = card.crop_size;
  const top = roundHalfEven((nh - crop) / 2), left = roundHalfEven((nw - crop) / 2);
  const rgb = resampleCrop(image.data, w, h, nw, nh, card.interpolation, left, top, crop);
  if (card.input_dtype === "uint8") return rgb;  // NHWC raw pixels
  const nhwc = card.layout === "NHWC";  // the .tflite files take NHWC, the ONNX files NCHW
  const tables = normalizeTables(card.mean, card.std);
  const out = new Float32Array(3 * crop * crop);
  const plane = crop * crop;
  for (let p = 0; p < plane; p++) {
    for (let c = 0; c < 3; c++) out[nhwc ? p * 3 + c : c * plane + p] = tables[c][rgb[p * 3 + c]];
  }
  return out;
}

// (v / 255 - mean) / std in float32, as a 256-entry table per channel, as runtime/image.py does;
// made once per card, not per photo.
const TABLES = new Map();
function normalizeTables(mean, std) {
  const key = `${mean}/${std}`;
  if (!TABLES.has(key)) {
    TABLES.set(key, [0, 1, 2].map((c) => {
      const m = Math.fround(mean[c]), s = Math.fround(std[c]);
      return Float32Array.from({ length: 256 }, (_, v) => Math.fround(Math.fround(Math.fround(v / 255) - m) / s));
    }));
  }
  return TABLES.get(key);
}

function roundHalfEven(v) {
  const f = Math.floor(v), d = v - f;
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}
