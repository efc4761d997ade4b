// The card's preprocessing in JavaScript, pixel for pixel what flower_edge.runtime.image does with
// Pillow and numpy: shorter side resized with Pillow's own resampling (separable, fixed-point,
// horizontal pass first, rounded to 8 bits in between), centre crop, scale to [0, 1], normalize.
// A canvas drawImage() resize would be a different filter, and the phone would see other pixels.

const PRECISION_BITS = 32 - 8 - 2;
const FILTERS = {
  nearest: { support: 0.5, f: (x) => (x >= -0.5 && x < 0.5 ? 1.0 : 0.0) },
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

// RGB (3 bytes per pixel) of w x h -> RGB of outW x outH.
function resample(rgb, w, h, outW, outH, interpolation) {
  const filter = FILTERS[interpolation];
  let src = rgb, sw = w;
  if (outW !== w) {
    const { bounds, kk, ksize } = coefficients(w, outW, filter);
    const tmp = new Uint8Array(outW * h * 3);
    for (let y = 0; y < h; y++) {
      for (let xx = 0; xx < outW; xx++) {
        const xmin = bounds[xx * 2], xmax = bounds[xx * 2 + 1];
        for (let c = 0; c < 3; c++) {
          let s = 1 << (PRECISION_BITS - 1);
          for (let x = 0; x < xmax; x++) s += src[(y * sw + x + xmin) * 3 + c] * kk[xx * ksize + x];
          tmp[(y * outW + xx) * 3 + c] = clip8(s);
        }
      }
    }
    src = tmp; sw = outW;
  }
  if (outH !== h) {
    const { bounds, kk, ksize } = coefficients(h, outH, filter);
    const out = new Uint8Array(sw * outH * 3);
    for (let yy = 0; yy < outH; yy++) {
      const ymin = bounds[yy * 2], ymax = bounds[yy * 2 + 1];
      for (let x = 0; x < sw; x++) {
        for (let c = 0; c < 3; c++) {
          let s = 1 << (PRECISION_BITS - 1);
          for (let y = 0; y < ymax; y++) s += src[((y + ymin) * sw + x) * 3 + c] * kk[yy * ksize + y];
          out[(yy * sw + x) * 3 + c] = clip8(s);
        }
      }
    }
    src = out;
  }
  return src;
}

// The card's pipeline: RGBA ImageData-like {data, width, height} -> model input.
export function preprocess(image, card) {
  const { width: w, height: h } = image;
  const rgb = new Uint8Array(w * h * 3);
  for (let i = 0, j = 0; i < w * h * 4; i += 4, j += 3) {
    rgb[j] = image.data[i]; rgb[j + 1] = image.data[i + 1]; rgb[j + 2] = image.data[i + 2];
  }
  // resize_shorter: the shorter side becomes resize_size, the longer keeps the aspect (truncated)
  const size = card.resize_size;
  let nw, nh;
  if (w <= h) { nw = size; nh = Math.trunc(size * h / w); } else { nh = size; nw = Math.trunc(size * w / h); }
  const resized = (nw === w && nh === h) ? rgb : resample(rgb, w, h, nw, nh, card.interpolation);
  // center_crop: Python's round() of half-integers goes to even
  const crop = card.crop_size;
  const top = roundHalfEven((nh - crop) / 2), left = roundHalfEven((nw - crop) / 2);
  const uint8 = card.input_dtype === "uint8";
  const out = uint8 ? new Uint8Array(crop * crop * 3) : new Float32Array(3 * crop * crop);
  const mean = card.mean.map(Math.fround), std = card.std.map(Math.fround);
  for (let y = 0; y < crop; y++) {
    for (let x = 0; x < crop; x++) {
      for (let c = 0; c < 3; c++) {
        const v = resized[((y + top) * nw + x + left) * 3 + c];
        if (uint8) out[(y * crop + x) * 3 + c] = v;  // NHWC raw pixels
        else out[c * crop * crop + y * crop + x] = Math.fround(Math.fround(Math.fround(v / 255) - mean[c]) / std[c]);
      }
    }
  }
  return out;
}

function roundHalfEven(v) {
  const f = Math.floor(v), d = v - f;
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}
