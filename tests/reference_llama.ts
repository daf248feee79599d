/**
 * float64 references of the Llama-family ops (RMSNorm, rotary embedding, SwiGLU), written
 * from their definitions and independently of the kernels: RoPE here is Hugging Face's
 * formulation x·cos + rotate_half(x)·sin over whole heads, where the kernels turn pairs.
 */
type F = Float64Array;

/** y(N,C) = x / √(mean(x²) + eps) · w */
export function rmsnormRef(x: F, w: F, N: number, C: number, eps = 1e-5): F {
  const out = new Float64Array(N * C);
  for (let i = 0; i < N; i++) {
    const row = x.subarray(i * C, (i + 1) * C);
    const r = 1 / Math.sqrt(row.reduce((s, v) => s + v * v, 0) / C + eps);
    for (let c = 0; c < C; c++) out[i * C + c] = row[c] * r * w[c];
  }
  return out;
}

/** Gradients of sum(rmsnorm(x, w) · g). */
export function rmsnormBackRef(
  x: F,
  w: F,
  g: F,
  N: number,
  C: number,
  eps = 1e-5,
): { dx: F; dw: F } {
  const dx = new Float64Array(N * C), dw = new Float64Array(C);
  for (let i = 0; i < N; i++) {
    let ms = 0;
    for (let c = 0; c < C; c++) ms += x[i * C + c] ** 2 / C;
    const r = 1 / Math.sqrt(ms + eps);
    // d r / d x_k = -r³ x_k / C
    let gwx = 0;
    for (let c = 0; c < C; c++) gwx += g[i * C + c] * w[c] * x[i * C + c];
    for (let k = 0; k < C; k++) {
      dx[i * C + k] = g[i * C + k] * w[k] * r - gwx * r ** 3 * x[i * C + k] / C;
      dw[k] += g[i * C + k] * x[i * C + k] * r;
    }
  }
  return { dx, dw };
}

/** The layout of a packed qkv (B,T,(nHead+2·nKvHead)·hs) and its positions. */
export interface RopeCase {
  B: number;
  T: number;
  nHead: number;
  nKvHead: number;
  hs: number;
  pos0: number;
}

/**
 * Hugging Face's rotary embedding on every q and k head of qkv, v copied:
 * x·cos + rotate_half(x)·sin, cos/sin of [θ, θ] with θ_j = (pos0 + t)·invFreq_j and
 * rotate_half([x1, x2]) = [−x2, x1]. `sign` −1 turns the other way (the inverse).
 */
export function ropeRef(qkv: F, invFreq: F, c: RopeCase, sign = 1): F {
  const { B, T, nHead, nKvHead, hs, pos0 } = c;
  const half = hs / 2, width = (nHead + 2 * nKvHead) * hs;
  const out = Float64Array.from(qkv);
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < T; t++) {
      const theta = [...invFreq, ...invFreq].map((f) => (pos0 + t) * f);
      for (let head = 0; head < nHead + nKvHead; head++) {
        const base = (b * T + t) * width + head * hs;
        const x = qkv.subarray(base, base + hs);
        const rotated = Array.from(
          { length: hs },
          (_, i) => (i < half ? -x[i + half] : x[i - half]),
        );
        for (let i = 0; i < hs; i++) {
          out[base + i] = x[i] * Math.cos(theta[i]) + sign * rotated[i] * Math.sin(theta[i]);
        }
      }
    }
  }
  return out;
}

/** The gradient of sum(rope(qkv) · g): the rotation is orthogonal, so its transpose is
 * the rotation by −θ; the v heads pass g through. */
export function ropeBackRef(g: F, invFreq: F, c: RopeCase): F {
  return ropeRef(g, invFreq, c, -1);
}

const sigmoid = (v: number) => 1 / (1 + Math.exp(-v));

/** out(N,F) = silu(gate) · up for h(N,2F) = [gate | up] */
export function swigluRef(h: F, N: number, F: number): F {
  const out = new Float64Array(N * F);
  for (let i = 0; i < N; i++) {
    for (let j = 0; j < F; j++) {
      const gate = h[i * 2 * F + j], up = h[i * 2 * F + F + j];
      out[i * F + j] = gate * sigmoid(gate) * up;
    }
  }
  return out;
}

/** The gradient of sum(swiglu(h) · g) with respect to h(N,2F). */
export function swigluBackRef(h: F, g: F, N: number, F: number): F {
  const dh = new Float64Array(N * 2 * F);
  for (let i = 0; i < N; i++) {
    for (let j = 0; j < F; j++) {
      const gate = h[i * 2 * F + j], up = h[i * 2 * F + F + j], s = sigmoid(gate);
      dh[i * 2 * F + j] = g[i * F + j] * up * (s + gate * s * (1 - s));
      dh[i * 2 * F + F + j] = g[i * F + j] * gate * s;
    }
  }
  return dh;
}
