/**
 * Float64 reference implementations of every fused op, forward and backward, written
 * plainly from the formulas. Shapes are row-major; `g` is the gradient of the output.
 */

type F = Float64Array;

/** y(M,N) = x(M,K) Wᵀ + b, W (N,K). */
export function linearRef(x: F, w: F, b: F | null, M: number, K: number, N: number): F {
  const y = new Float64Array(M * N);
  for (let i = 0; i < M; i++) {
    for (let j = 0; j < N; j++) {
      let s = b ? b[j] : 0;
      for (let k = 0; k < K; k++) s += x[i * K + k] * w[j * K + k];
      y[i * N + j] = s;
    }
  }
  return y;
}

export function linearBackRef(
  x: F,
  w: F,
  g: F,
  M: number,
  K: number,
  N: number,
): { dx: F; dw: F; db: F } {
  const dx = new Float64Array(M * K), dw = new Float64Array(N * K), db = new Float64Array(N);
  for (let i = 0; i < M; i++) {
    for (let j = 0; j < N; j++) {
      const gij = g[i * N + j];
      db[j] += gij;
      for (let k = 0; k < K; k++) {
        dx[i * K + k] += gij * w[j * K + k];
        dw[j * K + k] += gij * x[i * K + k];
      }
    }
  }
  return { dx, dw, db };
}

/** Element (i,j) of op(X) where X is stored (rows, cols) and op may transpose. */
export function opAt(x: F, cols: number, trans: boolean, i: number, j: number): number {
  return trans ? x[j * cols + i] : x[i * cols + j];
}

/** The shapes of a batched matmul test: stored (batch,)M×K or K×M, and so on. */
export interface MatmulCase {
  batch: number;
  M: number;
  N: number;
  K: number;
  transA: boolean;
  transB: boolean;
  bBatched: boolean;
}

/** Transposes, batches and a shared B: the cases every backend's matmul is tested on. */
export const MATMUL_CASES: MatmulCase[] = [
  { batch: 1, M: 9, N: 11, K: 13, transA: false, transB: false, bBatched: false },
  { batch: 1, M: 9, N: 11, K: 13, transA: true, transB: false, bBatched: false },
  { batch: 1, M: 9, N: 11, K: 13, transA: false, transB: true, bBatched: false },
  { batch: 3, M: 7, N: 5, K: 6, transA: true, transB: true, bBatched: true },
  { batch: 2, M: 7, N: 5, K: 6, transA: false, transB: false, bBatched: false },
  { batch: 2, M: 16, N: 24, K: 32, transA: true, transB: false, bBatched: true },
];

/** d/dA and d/dB (as stored) of Σ g · matmulRef(a, b, c). */
export function matmulBackRef(a: F, b: F, c: MatmulCase, g: F): [F, F] {
  const dA = new Float64Array(a.length), dB = new Float64Array(b.length);
  const aCols = c.transA ? c.M : c.K, bCols = c.transB ? c.K : c.N;
  for (let q = 0; q < c.batch; q++) {
    const bOff = c.bBatched ? q * c.K * c.N : 0;
    for (let i = 0; i < c.M; i++) {
      for (let j = 0; j < c.N; j++) {
        const gij = g[q * c.M * c.N + i * c.N + j];
        for (let k = 0; k < c.K; k++) {
          const ai = q * c.M * c.K + (c.transA ? k * aCols + i : i * aCols + k);
          const bi = bOff + (c.transB ? j * bCols + k : k * bCols + j);
          dA[ai] += gij * b[bi];
          dB[bi] += gij * a[ai];
        }
      }
    }
  }
  return [dA, dB];
}

/** out[b] = op(A_b) op(B_b) for stored shapes; B may be shared (bBatched false). */
export function matmulRef(a: F, b: F, o: MatmulCase): F {
  const { batch, M, N, K, transA, transB, bBatched } = o;
  const out = new Float64Array(batch * M * N);
  const aCols = transA ? M : K, bCols = transB ? K : N;
  for (let q = 0; q < batch; q++) {
    const A = a.subarray(q * M * K, (q + 1) * M * K);
    const B = bBatched ? b.subarray(q * K * N, (q + 1) * K * N) : b;
    for (let i = 0; i < M; i++) {
      for (let j = 0; j < N; j++) {
        let s = 0;
        for (let k = 0; k < K; k++) {
          s += opAt(A, aCols, transA, i, k) * opAt(B, bCols, transB, k, j);
        }
        out[q * M * N + i * N + j] = s;
      }
    }
  }
  return out;
}

export function embeddingRef(tok: Int32Array, wte: F, wpe: F, B: number, T: number, C: number): F {
  const out = new Float64Array(B * T * C);
  for (let bt = 0; bt < B * T; bt++) {
    for (let c = 0; c < C; c++) out[bt * C + c] = wte[tok[bt] * C + c] + wpe[(bt % T) * C + c];
  }
  return out;
}

export function embeddingBackRef(
  tok: Int32Array,
  g: F,
  V: number,
  P: number,
  B: number,
  T: number,
  C: number,
): {
  dwte: F;
  dwpe: F;
} {
  const dwte = new Float64Array(V * C), dwpe = new Float64Array(P * C);
  for (let bt = 0; bt < B * T; bt++) {
    for (let c = 0; c < C; c++) {
      dwte[tok[bt] * C + c] += g[bt * C + c];
      dwpe[(bt % T) * C + c] += g[bt * C + c];
    }
  }
  return { dwte, dwpe };
}

export function layernormRef(x: F, w: F, b: F, N: number, C: number, eps = 1e-5): F {
  const out = new Float64Array(N * C);
  for (let i = 0; i < N; i++) {
    let m = 0;
    for (let c = 0; c < C; c++) m += x[i * C + c];
    m /= C;
    let v = 0;
    for (let c = 0; c < C; c++) v += (x[i * C + c] - m) ** 2;
    v /= C;
    const r = 1 / Math.sqrt(v + eps);
    for (let c = 0; c < C; c++) out[i * C + c] = (x[i * C + c] - m) * r * w[c] + b[c];
  }
  return out;
}

export function layernormBackRef(
  x: F,
  w: F,
  g: F,
  N: number,
  C: number,
  eps = 1e-5,
): { dx: F; dw: F; db: F } {
  const dx = new Float64Array(N * C), dw = new Float64Array(C), db = new Float64Array(C);
  for (let i = 0; i < N; i++) {
    let m = 0;
    for (let c = 0; c < C; c++) m += x[i * C + c];
    m /= C;
    let v = 0;
    for (let c = 0; c < C; c++) v += (x[i * C + c] - m) ** 2;
    v /= C;
    const r = 1 / Math.sqrt(v + eps);
    const xhat = (c: number) => (x[i * C + c] - m) * r;
    let mean1 = 0, mean2 = 0;
    for (let c = 0; c < C; c++) {
      const d = g[i * C + c] * w[c];
      mean1 += d / C;
      mean2 += (d * xhat(c)) / C;
      dw[c] += g[i * C + c] * xhat(c);
      db[c] += g[i * C + c];
    }
    for (let c = 0; c < C; c++) dx[i * C + c] = r * (g[i * C + c] * w[c] - mean1 - xhat(c) * mean2);
  }
  return { dx, dw, db };
}

const K_GELU = Math.sqrt(2 / Math.PI);
export const geluRef = (u: number) => 0.5 * u * (1 + Math.tanh(K_GELU * (u + 0.044715 * u ** 3)));
export function geluGradRef(u: number): number {
  const t = Math.tanh(K_GELU * (u + 0.044715 * u ** 3));
  return 0.5 * (1 + t) + 0.5 * u * (1 - t * t) * K_GELU * (1 + 3 * 0.044715 * u * u);
}

/** gelu(x + bias) over (N,C). */
export function biasGeluRef(x: F, b: F | null, N: number, C: number): F {
  return Float64Array.from({ length: N * C }, (_, i) => geluRef(x[i] + (b ? b[i % C] : 0)));
}

/** gelu(x Wᵀ + b): x (M,K), w (N,K), b (N) or null. */
export function linearGeluRef(x: F, w: F, b: F | null, M: number, K: number, N: number): F {
  return linearRef(x, w, b, M, K, N).map(geluRef);
}

/** Gradients of Σ g · gelu(x Wᵀ + b) with respect to x, w and b. */
export function linearGeluBackRef(
  x: F,
  w: F,
  b: F | null,
  g: F,
  M: number,
  K: number,
  N: number,
): { dx: F; dw: F; db: F } {
  const pre = linearRef(x, w, b, M, K, N);
  return linearBackRef(x, w, pre.map((u, i) => g[i] * geluGradRef(u)), M, K, N);
}

/** Gradients of Σ g · gelu(x + b) over (N,C): [dx, db]. */
export function biasGeluBackRef(x: F, b: F, g: F, C: number): [F, F] {
  const dx = Float64Array.from(x, (v, i) => g[i] * geluGradRef(v + b[i % C]));
  const db = new Float64Array(C);
  dx.forEach((v, i) => (db[i % C] += v));
  return [dx, db];
}

/**
 * erfc(x) in float64 to about 1e-15 relative (JavaScript has no Math.erf): 1 - erf from
 * erf's Maclaurin series for |x| < 2.5, else erfc's continued fraction, so that the tail
 * keeps its relative accuracy.
 */
export function erfcRef(x: number): number {
  const a = Math.abs(x);
  if (a < 2.5) {
    let term = x, sum = x;
    for (let n = 1; n < 80 && Math.abs(term) > 1e-17 * Math.abs(sum); n++) {
      term *= -x * x / n;
      sum += term / (2 * n + 1);
    }
    return 1 - (2 / Math.sqrt(Math.PI)) * sum;
  }
  // erfc(a) = exp(-a²)/√π · 1/(a + (1/2)/(a + 1/(a + (3/2)/(a + 2/(a + ...))))), from the tail
  let f = a;
  for (let k = 60; k >= 1; k--) f = a + (k / 2) / f;
  const tail = Math.exp(-a * a) / Math.sqrt(Math.PI) / f;
  return x > 0 ? tail : 2 - tail;
}

/** erf(x) = 1 - erfc(x). */
export const erfRef = (x: number) => 1 - erfcRef(x);
/** The standard normal CDF Φ(u) = erfc(-u/√2)/2, accurate in the negative tail. */
const normalCdfRef = (u: number) => 0.5 * erfcRef(-u / Math.SQRT2);
/** The exact GELU u·Φ(u) = u/2 · (1 + erf(u/√2)). */
export const geluErfRef = (u: number) => u * normalCdfRef(u);
/** Its derivative Φ(u) + u·φ(u). */
export const geluErfGradRef = (u: number) =>
  normalCdfRef(u) + u * Math.exp(-0.5 * u * u) / Math.sqrt(2 * Math.PI);
/** tanh' = 1 - tanh². */
export const tanhGradRef = (u: number) => 1 - Math.tanh(u) ** 2;

/** act(x + bias) over (N,C) for a scalar `act`. */
export function biasActRef(x: F, b: F | null, C: number, act: (u: number) => number): F {
  return Float64Array.from(x, (v, i) => act(v + (b ? b[i % C] : 0)));
}

/** Gradients of Σ g · act(x + b) over (N,C), given act': [dx, db]. */
export function biasActBackRef(x: F, b: F, g: F, C: number, grad: (u: number) => number): [F, F] {
  const dx = Float64Array.from(x, (v, i) => g[i] * grad(v + b[i % C]));
  const db = new Float64Array(C);
  dx.forEach((v, i) => (db[i % C] += v));
  return [dx, db];
}

/** Causal attention over qkv (B,T,3C) → (B,T,C). */
export function attentionRef(qkv: F, B: number, T: number, C: number, NH: number): F {
  return attentionFull(qkv, B, T, C, NH).out;
}

function attentionFull(qkv: F, B: number, T: number, C: number, NH: number) {
  const HS = C / NH, scale = 1 / Math.sqrt(HS);
  const out = new Float64Array(B * T * C);
  const P = new Float64Array(B * NH * T * T);
  const at = (b: number, t: number, part: number, h: number, d: number) =>
    qkv[(b * T + t) * 3 * C + part * C + h * HS + d];
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < NH; h++) {
      for (let i = 0; i < T; i++) {
        const s: number[] = [];
        for (let j = 0; j <= i; j++) {
          let dot = 0;
          for (let d = 0; d < HS; d++) dot += at(b, i, 0, h, d) * at(b, j, 1, h, d);
          s.push(dot * scale);
        }
        const mx = Math.max(...s);
        const e = s.map((v) => Math.exp(v - mx));
        const sum = e.reduce((p, v) => p + v, 0);
        for (let j = 0; j <= i; j++) {
          const p = e[j] / sum;
          P[((b * NH + h) * T + i) * T + j] = p;
          for (let d = 0; d < HS; d++) out[(b * T + i) * C + h * HS + d] += p * at(b, j, 2, h, d);
        }
      }
    }
  }
  return { out, P };
}

/** d qkv of sum(out · g). */
export function attentionBackRef(qkv: F, g: F, B: number, T: number, C: number, NH: number): F {
  const HS = C / NH, scale = 1 / Math.sqrt(HS);
  const { P } = attentionFull(qkv, B, T, C, NH);
  const d = new Float64Array(qkv.length);
  const idx = (b: number, t: number, part: number, h: number, e: number) =>
    (b * T + t) * 3 * C + part * C + h * HS + e;
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < NH; h++) {
      for (let i = 0; i < T; i++) {
        // dP_ij = g_i · v_j ; dS_ij = P_ij (dP_ij - sum_k P_ik dP_ik)
        const dP: number[] = [];
        for (let j = 0; j <= i; j++) {
          let s = 0;
          for (let e = 0; e < HS; e++) {
            s += g[(b * T + i) * C + h * HS + e] * qkv[idx(b, j, 2, h, e)];
          }
          dP.push(s);
        }
        let rowDot = 0;
        for (let j = 0; j <= i; j++) rowDot += P[((b * NH + h) * T + i) * T + j] * dP[j];
        for (let j = 0; j <= i; j++) {
          const p = P[((b * NH + h) * T + i) * T + j];
          const dS = p * (dP[j] - rowDot) * scale;
          for (let e = 0; e < HS; e++) {
            d[idx(b, i, 0, h, e)] += dS * qkv[idx(b, j, 1, h, e)];
            d[idx(b, j, 1, h, e)] += dS * qkv[idx(b, i, 0, h, e)];
            d[idx(b, j, 2, h, e)] += p * g[(b * T + i) * C + h * HS + e];
          }
        }
      }
    }
  }
  return d;
}

/** Sizes of a grouped-query qkv (B,T,(NH+2·NKV)·HS): NH query heads, NKV key/value heads. */
export interface GqaCase {
  B: number;
  T: number;
  NH: number;
  NKV: number;
  HS: number;
}

/**
 * The multi-head qkv (B,T,3·NH·HS) that a grouped-query qkv (B,T,(NH+2·NKV)·HS) means: the
 * key and value heads repeated, kv head h / (NH/NKV) for query head h. The reference forms
 * the repeated copy the kernels must not.
 */
export function repeatKvRef(qkv: F, c: GqaCase): F {
  const { B, T, NH, NKV, HS } = c, C = NH * HS, W = (NH + 2 * NKV) * HS, G = NH / NKV;
  const out = new Float64Array(B * T * 3 * C);
  for (let bt = 0; bt < B * T; bt++) {
    for (let h = 0; h < NH; h++) {
      const kv = Math.floor(h / G);
      for (let e = 0; e < HS; e++) {
        out[bt * 3 * C + h * HS + e] = qkv[bt * W + h * HS + e];
        out[bt * 3 * C + C + h * HS + e] = qkv[bt * W + C + kv * HS + e];
        out[bt * 3 * C + 2 * C + h * HS + e] = qkv[bt * W + C + (NKV + kv) * HS + e];
      }
    }
  }
  return out;
}

/**
 * Float64 attention over spans(B,T,2) for qkv (B,T,(NH+2·NKV)·HS): query i of row b reads
 * keys [lo, hi) (an empty range gives 0); out, and given g the d qkv of sum(out · g).
 */
export function spansAttentionRef(
  qkv: F,
  spans: Int32Array,
  c: GqaCase,
  g?: F,
): { out: F; dqkv: F } {
  const { B, T, NH, NKV, HS } = c, W = (NH + 2 * NKV) * HS, C = NH * HS, G = NH / NKV;
  const scale = 1 / Math.sqrt(HS);
  const out = new Float64Array(B * T * C), dqkv = new Float64Array(qkv.length);
  const at = (b: number, t: number, col: number) => (b * T + t) * W + col;
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < NH; h++) {
      const kc = NH * HS + Math.floor(h / G) * HS, vc = (NH + NKV) * HS + Math.floor(h / G) * HS;
      for (let i = 0; i < T; i++) {
        const lo = spans[2 * (b * T + i)], hi = spans[2 * (b * T + i) + 1];
        if (lo >= hi) continue;
        const s: number[] = [];
        for (let j = lo; j < hi; j++) {
          let d = 0;
          for (let e = 0; e < HS; e++) d += qkv[at(b, i, h * HS + e)] * qkv[at(b, j, kc + e)];
          s.push(d * scale);
        }
        const mx = Math.max(...s), ex = s.map((x) => Math.exp(x - mx));
        const sum = ex.reduce((a, x) => a + x, 0), p = ex.map((x) => x / sum);
        const o = (b * T + i) * C + h * HS;
        for (let j = lo; j < hi; j++) {
          for (let e = 0; e < HS; e++) out[o + e] += p[j - lo] * qkv[at(b, j, vc + e)];
        }
        if (!g) continue;
        const dp = p.map((_, k) => {
          let d = 0;
          for (let e = 0; e < HS; e++) d += g[o + e] * qkv[at(b, lo + k, vc + e)];
          return d;
        });
        const mean = p.reduce((a, pk, k) => a + pk * dp[k], 0);
        for (let k = 0, j = lo; j < hi; j++, k++) {
          const ds = p[k] * (dp[k] - mean) * scale;
          for (let e = 0; e < HS; e++) {
            dqkv[at(b, i, h * HS + e)] += ds * qkv[at(b, j, kc + e)];
            dqkv[at(b, j, kc + e)] += ds * qkv[at(b, i, h * HS + e)];
            dqkv[at(b, j, vc + e)] += p[k] * g[o + e];
          }
        }
      }
    }
  }
  return { out, dqkv };
}

/** Grouped-query causal attention over qkv (B,T,(NH+2·NKV)·HS) → (B,T,NH·HS). */
export function gqaAttentionRef(qkv: F, c: GqaCase): F {
  return attentionRef(repeatKvRef(qkv, c), c.B, c.T, c.NH * c.HS, c.NH);
}

/** d qkv (B,T,(NH+2·NKV)·HS) of sum(out · g): the repeated heads' gradients summed back. */
export function gqaAttentionBackRef(qkv: F, g: F, c: GqaCase): F {
  const { B, T, NH, NKV, HS } = c, C = NH * HS, W = (NH + 2 * NKV) * HS, G = NH / NKV;
  const full = attentionBackRef(repeatKvRef(qkv, c), g, B, T, C, NH);
  const d = new Float64Array(B * T * W);
  for (let bt = 0; bt < B * T; bt++) {
    for (let h = 0; h < NH; h++) {
      const kv = Math.floor(h / G);
      for (let e = 0; e < HS; e++) {
        d[bt * W + h * HS + e] += full[bt * 3 * C + h * HS + e];
        d[bt * W + C + kv * HS + e] += full[bt * 3 * C + C + h * HS + e];
        d[bt * W + C + (NKV + kv) * HS + e] += full[bt * 3 * C + 2 * C + h * HS + e];
      }
    }
  }
  return d;
}

/** Mean cross-entropy over rows whose target is not -1. */
export function crossEntropyRef(z: F, t: Int32Array, N: number, V: number): number {
  let total = 0, count = 0;
  for (let i = 0; i < N; i++) {
    if (t[i] < 0) continue;
    const row = z.subarray(i * V, (i + 1) * V);
    const mx = Math.max(...row);
    const lse = mx + Math.log(row.reduce((s, v) => s + Math.exp(v - mx), 0));
    total += lse - row[t[i]];
    count++;
  }
  return count ? total / count : 0;
}

export function crossEntropyBackRef(z: F, t: Int32Array, N: number, V: number, g: number): F {
  const d = new Float64Array(N * V);
  const count = Array.from(t).filter((v) => v >= 0).length;
  for (let i = 0; i < N; i++) {
    if (t[i] < 0) continue;
    const row = z.subarray(i * V, (i + 1) * V);
    const mx = Math.max(...row);
    const sum = row.reduce((s, v) => s + Math.exp(v - mx), 0);
    for (let j = 0; j < V; j++) {
      d[i * V + j] = (Math.exp(row[j] - mx) / sum - (j === t[i] ? 1 : 0)) * g / count;
    }
  }
  return d;
}

/** The counter RNG of kernels/cpu/common.h, in BigInt arithmetic. */
const M64 = (1n << 64n) - 1n;
function mix64(z: bigint): bigint {
  z = ((z ^ (z >> 30n)) * 0xBF58476D1CE4E5B9n) & M64;
  z = ((z ^ (z >> 27n)) * 0x94D049BB133111EBn) & M64;
  return z ^ (z >> 31n);
}
export function rand64Ref(seed: number, counter: number): bigint {
  const golden = 0x9E3779B97F4A7C15n;
  return mix64((mix64((BigInt(seed) + golden) & M64) + BigInt(counter) * golden) & M64);
}
/** Whether dropout keeps element `counter` of stream `seed` at drop probability p. */
export function dropoutKeepRef(seed: number, counter: number, p: number): boolean {
  const u = Number(rand64Ref(seed, counter) >> 40n) / 16777216;
  return Math.fround(u) >= Math.fround(p);
}
