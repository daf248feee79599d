import assert from "assert";
import { attentionDecode, kvAppend } from "../lib/ops/kvcache.ts";
import { attention } from "../lib/ops/attention.ts";
import { Tensor } from "../lib/tensor.ts";
import { DenotronError } from "../lib/errors.ts";

/** Seeded values in [-1, 1) (a 32-bit LCG; only needs to be deterministic). */
function seeded(n: number, seed: number): Float32Array {
  let s = seed >>> 0;
  return Float32Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2147483648 - 1;
  });
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

/**
 * float64 reference: queries of qkv (B,Tn,3C) at positions pos.. attend over the
 * keys/values of the whole sequence seq (B,L,3C), L >= pos + Tn, causally.
 */
function decodeRef(
  q: Float32Array,
  seq: Float32Array,
  B: number,
  Tn: number,
  L: number,
  C: number,
  NH: number,
  pos: number,
): Float64Array {
  const HS = C / NH, out = new Float64Array(B * Tn * C);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < NH; h++) {
      for (let i = 0; i < Tn; i++) {
        const n = pos + i + 1;
        const s = new Float64Array(n);
        for (let j = 0; j < n; j++) {
          let d = 0;
          for (let e = 0; e < HS; e++) {
            d += q[(b * Tn + i) * 3 * C + h * HS + e] * seq[(b * L + j) * 3 * C + C + h * HS + e];
          }
          s[j] = d / Math.sqrt(HS);
        }
        const mx = Math.max(...s);
        let sum = 0;
        for (let j = 0; j < n; j++) sum += s[j] = Math.exp(s[j] - mx);
        for (let e = 0; e < HS; e++) {
          let acc = 0;
          for (let j = 0; j < n; j++) {
            acc += (s[j] / sum) * seq[(b * L + j) * 3 * C + 2 * C + h * HS + e];
          }
          out[(b * Tn + i) * C + h * HS + e] = acc;
        }
      }
    }
  }
  return out;
}

/** Rows [t0, t1) of every batch of x (B,L,W). */
function rows(x: Float32Array, B: number, L: number, W: number, t0: number, t1: number) {
  const out = new Float32Array(B * (t1 - t0) * W);
  for (let b = 0; b < B; b++) {
    out.set(x.subarray((b * L + t0) * W, (b * L + t1) * W), b * (t1 - t0) * W);
  }
  return out;
}

Deno.test("kvAppend() writes k and v of the new positions at pos and nothing else", () => {
  const B = 2, Tn = 3, C = 4, maxT = 6, pos = 2;
  const host = seeded(B * Tn * 3 * C, 1);
  using qkv = Tensor.fromArray(host, [B, Tn, 3 * C]);
  using k = Tensor.full([B, maxT, C], 7);
  using v = Tensor.full([B, maxT, C], 7);
  kvAppend(k, v, qkv, 2, pos);
  const kh = k.toArray(), vh = v.toArray();
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < maxT; t++) {
      for (let c = 0; c < C; c++) {
        const at = (b * maxT + t) * C + c;
        const inside = t >= pos && t < pos + Tn;
        const src = (b * Tn + t - pos) * 3 * C + c;
        assert.equal(kh[at], inside ? host[src + C] : 7, `k[${b},${t},${c}]`);
        assert.equal(vh[at], inside ? host[src + 2 * C] : 7, `v[${b},${t},${c}]`);
      }
    }
  }
});

Deno.test("attentionDecode() matches the float64 reference, one chunk at a time", () => {
  const B = 2, L = 9, C = 12, NH = 3, maxT = 11;
  const seq = seeded(B * L * 3 * C, 2);
  using k = Tensor.zeros([B, maxT, C]);
  using v = Tensor.zeros([B, maxT, C]);
  // A prompt of 4, then one token, then a chunk of 3, then one: every path of generation.
  for (const [t0, t1] of [[0, 4], [4, 5], [5, 8], [8, 9]]) {
    const chunk = rows(seq, B, L, 3 * C, t0, t1);
    using qkv = Tensor.fromArray(chunk, [B, t1 - t0, 3 * C]);
    kvAppend(k, v, qkv, NH, t0);
    using out = attentionDecode(qkv, k, v, NH, t0);
    const ref = decodeRef(chunk, seq, B, t1 - t0, L, C, NH, t0);
    const err = maxAbsDiff(out.toArray(), ref);
    assert.ok(err < 1e-5, `positions [${t0}, ${t1}): max error ${err}`);
  }
});

Deno.test("attentionDecode() from position 0 equals the fused attention forward", () => {
  const B = 1, T = 7, C = 8, NH = 2;
  using qkv = Tensor.fromArray(seeded(B * T * 3 * C, 3), [B, T, 3 * C]);
  using k = Tensor.zeros([B, T, C]);
  using v = Tensor.zeros([B, T, C]);
  kvAppend(k, v, qkv, NH, 0);
  using cached = attentionDecode(qkv, k, v, NH, 0);
  using full = attention(qkv, NH);
  assert.deepEqual(cached.toArray(), full.toArray());
});

Deno.test("kvAppend() and attentionDecode() reject bad inputs with a sentence", () => {
  using qkv = Tensor.zeros([1, 3, 12]);
  using k = Tensor.zeros([1, 4, 4]);
  using v = Tensor.zeros([1, 4, 4]);
  using wide = Tensor.zeros([1, 4, 8]);
  using other = Tensor.zeros([2, 4, 4]);
  assert.throws(() => kvAppend(k, v, qkv, 1, 2), /positions \[2, 5\) do not fit in a cache of 4/);
  assert.throws(() => kvAppend(k, v, qkv, 1, -1), /positions \[-1, 2\)/);
  assert.throws(() => kvAppend(k, wide, qkv, 1, 0), /vCache \[1, 4, 8\] differs from kCache/);
  assert.throws(
    () => kvAppend(other, other, qkv, 1, 0),
    /kCache \[2, 4, 4\] does not fit qkv \[1, 3, 12\] \(nKvHead 1 heads of size 4\): expected \[1, maxT, 4\]/,
  );
  assert.throws(
    () => attentionDecode(qkv, k, v, 3, 0),
    /attentionDecode: qkv \[1, 3, 12\] must have a last dimension of \(nHead \+ 2·nKvHead\)·headSize = 9·headSize/,
  );
  using ids = Tensor.fromArray(new Int32Array(36), [1, 3, 12]);
  assert.throws(() => kvAppend(k, v, ids, 1, 0), DenotronError);
});

Deno.test("the native kernels report bad sizes themselves", () => {
  using qkv = Tensor.zeros([1, 3, 12]);
  using k = Tensor.zeros([1, 4, 4]);
  const lib = qkv.device.lib;
  // B=1 Tn=3 NH=1 NKV=1 HS=4 max_T=4 pos=2
  const st = lib.sym.dn_kv_append(0, k.ptr, k.ptr, qkv.ptr, 1n, 3n, 1n, 1n, 4n, 4n, 2n);
  assert.equal(st, 1);
  const msg = Deno.UnsafePointerView.getCString(lib.sym.dn_last_error()!);
  assert.match(msg, /attention\.h:\d+: dn_kv_append: positions \[2, 5\) do not fit/);
  assert.equal(
    lib.sym.dn_attention_decode(0, k.ptr, qkv.ptr, k.ptr, null, 1n, 3n, 2n, 2n, 2n, 4n, 0n),
    1,
  );
  assert.match(Deno.UnsafePointerView.getCString(lib.sym.dn_last_error()!), /NULL pointer/);
  assert.equal(
    lib.sym.dn_attention_decode(3, k.ptr, qkv.ptr, k.ptr, k.ptr, 1n, 3n, 2n, 2n, 2n, 4n, 0n),
    3,
  );
});
