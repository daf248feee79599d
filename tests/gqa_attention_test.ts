/**
 * Grouped-query attention (nKvHead key/value heads shared by nHead query heads; MHA and
 * MQA are its two ends): forward and backward against the float64 reference of
 * tests/reference.ts (which repeats the key/value heads, as the kernels must not) and
 * finite differences, 16-bit against fp32, cached decoding against the full forward, and
 * bad sizes refused on both sides of the ABI.
 */
import assert from "assert";
import { device } from "../lib/device.ts";
import { DenotronError } from "../lib/errors.ts";
import { CausalSelfAttention } from "../lib/nn/attention.ts";
import { FlatParameters } from "../lib/nn/module.ts";
import { attention } from "../lib/ops/attention.ts";
import { attentionDecode, kvAppend } from "../lib/ops/kvcache.ts";
import { Tensor, tidy } from "../lib/tensor.ts";
import { assertClose, checkOp, randomArray } from "./helpers.ts";
import { checkMixed } from "./mixed_helpers.ts";
import * as ref from "./reference.ts";

type Case = ref.GqaCase & { what: string };

const CASES: Case[] = [
  { what: "GQA", B: 2, T: 5, NH: 4, NKV: 2, HS: 3 },
  { what: "GQA", B: 1, T: 17, NH: 6, NKV: 2, HS: 4 },
  { what: "MQA", B: 2, T: 7, NH: 4, NKV: 1, HS: 4 },
  { what: "MQA", B: 1, T: 9, NH: 3, NKV: 1, HS: 5 },
  { what: "MHA", B: 2, T: 6, NH: 2, NKV: 2, HS: 4 },
];

const width = (c: ref.GqaCase) => (c.NH + 2 * c.NKV) * c.HS;
const name = (c: Case) => `${c.what} B${c.B} T${c.T} NH${c.NH} NKV${c.NKV} HS${c.HS}`;

for (const dev of ["cpu", "cpu:builtin"]) {
  Deno.test(`attention() on ${dev} with grouped, single and per-head key/value heads matches the float64 reference`, () => {
    for (const c of CASES) {
      checkOp({
        name: `attention ${name(c)}`,
        device: device(dev),
        inputs: [{
          name: "qkv",
          shape: [c.B, c.T, width(c)],
          data: randomArray(c.B * c.T * width(c), 11 + c.T, 1.5),
        }],
        run: ([qkv]) => attention(qkv, c.NH, c.NKV),
        forward: ([qkv]) => ref.gqaAttentionRef(qkv as Float64Array, c),
        backward: ([qkv], g) => [ref.gqaAttentionBackRef(qkv as Float64Array, g, c)],
      });
    }
  });

  Deno.test(`attention() on ${dev} gives the bits of multi-head attention over the repeated key/value heads`, () => {
    for (const c of CASES.slice(0, 4)) {
      const data = randomArray(c.B * c.T * width(c), 3 + c.T, 1.5);
      const [grouped, repeated] = tidy(() => {
        const opts = { device: device(dev) };
        const q = Tensor.fromArray(data, [c.B, c.T, width(c)], opts);
        const full = ref.repeatKvRef(Float64Array.from(q.toArray()), c);
        const r = Tensor.fromArray(full, [c.B, c.T, 3 * c.NH * c.HS], opts);
        return [attention(q, c.NH, c.NKV).toArray(), attention(r, c.NH).toArray()];
      });
      assert.deepEqual(grouped, repeated, name(c));
    }
  });
}

for (const dtype of ["bf16", "f16"] as const) {
  Deno.test(`${dtype}: grouped-query and multi-query attention match fp32`, () => {
    for (const c of [CASES[1], CASES[2], { what: "GQA", B: 2, T: 33, NH: 8, NKV: 2, HS: 16 }]) {
      checkMixed(`attention ${name(c)}`, dtype, [{
        name: "qkv",
        shape: [c.B, c.T, width(c)],
        data: randomArray(c.B * c.T * width(c), 21 + c.T, 1.5),
      }], ([qkv]) => attention(qkv, c.NH, c.NKV));
    }
  });
}

/** Rows [t0, t1) of every sequence of x (B,L,W). */
function rows(x: Float64Array, B: number, L: number, W: number, t0: number, t1: number) {
  const out = new Float64Array(B * (t1 - t0) * W);
  for (let b = 0; b < B; b++) {
    out.set(x.subarray((b * L + t0) * W, (b * L + t1) * W), b * (t1 - t0) * W);
  }
  return out;
}

Deno.test("attentionDecode() with grouped key/value heads equals the full forward, chunk by chunk, from a cache of nKvHead heads", () => {
  for (const c of [CASES[1], CASES[3], { what: "GQA", B: 2, T: 9, NH: 4, NKV: 2, HS: 6 }]) {
    const { B, T, NH, NKV, HS } = c, W = width(c), maxT = T + 2;
    const seq = Float64Array.from(Float32Array.from(randomArray(B * T * W, 5 + T, 1.5)));
    const expected = ref.gqaAttentionRef(seq, c);
    tidy(() => {
      const full = attention(Tensor.fromArray(seq, [B, T, W]), NH, NKV).toArray();
      // The caches hold the key/value heads only: NH/NKV times narrower than the queries.
      const k = Tensor.zeros([B, maxT, NKV * HS]), v = Tensor.zeros([B, maxT, NKV * HS]);
      const cuts = [0, Math.min(4, T - 3), T - 3, T - 2, T];
      for (let s = 0; s + 1 < cuts.length; s++) {
        const [t0, t1] = [cuts[s], cuts[s + 1]];
        const qkv = Tensor.fromArray(rows(seq, B, T, W, t0, t1), [B, t1 - t0, W]);
        kvAppend(k, v, qkv, NH, t0, NKV);
        const out = attentionDecode(qkv, k, v, NH, t0, NKV).toArray();
        const what = `${name(c)} positions [${t0}, ${t1})`;
        assertClose(out, rows(expected, B, T, NH * HS, t0, t1), `${what} vs float64`);
        assertClose(out, rows(Float64Array.from(full), B, T, NH * HS, t0, t1), what, {
          rtol: 1e-6,
          atol: 1e-7,
        });
      }
      // The cache holds exactly the key/value columns of every position so far.
      const kh = k.toArray(), vh = v.toArray(), C = NH * HS;
      for (let b = 0; b < B; b++) {
        for (let t = 0; t < T; t++) {
          for (let e = 0; e < NKV * HS; e++) {
            const at = (b * maxT + t) * NKV * HS + e, src = (b * T + t) * W + C + e;
            assert.equal(kh[at], seq[src], `k[${b},${t},${e}]`);
            assert.equal(vh[at], seq[src + NKV * HS], `v[${b},${t},${e}]`);
          }
        }
      }
    });
  }
});

Deno.test("attentionDecode() with grouped heads from position 0 gives the bits of attention(), f32 and bf16", () => {
  const c = { B: 2, T: 7, NH: 6, NKV: 2, HS: 4 }, W = width(c);
  for (const dtype of ["f32", "bf16"] as const) {
    tidy(() => {
      const opts = { dtype };
      const qkv = Tensor.fromArray(randomArray(c.B * c.T * W, 8), [c.B, c.T, W], opts);
      const k = Tensor.zeros([c.B, c.T, c.NKV * c.HS], opts);
      const v = Tensor.zeros([c.B, c.T, c.NKV * c.HS], opts);
      kvAppend(k, v, qkv, c.NH, 0, c.NKV);
      assert.deepEqual(
        attentionDecode(qkv, k, v, c.NH, 0, c.NKV).toArray(),
        attention(qkv, c.NH, c.NKV).toArray(),
        dtype,
      );
    });
  }
});

Deno.test("CausalSelfAttention with nKvHead projects to (nHead + 2·nKvHead)·headSize and runs", () => {
  const dev = device();
  const attn = new CausalSelfAttention(16, 4, { projStd: 0.02, device: dev, nKvHead: 2 });
  const flat = new FlatParameters(attn, dev, 1);
  assert.deepEqual(attn.qkv.weight.shape, [32, 16]);
  assert.equal(attn.headSize, 4);
  using x = Tensor.fromArray(randomArray(2 * 3 * 16, 4), [2, 3, 16]);
  tidy(() => assert.deepEqual(attn.forward(x).shape, [2, 3, 16]));
  flat.dispose();
  assert.throws(
    () => new CausalSelfAttention(16, 4, { projStd: 0.02, device: dev, nKvHead: 3 }),
    /CausalSelfAttention: nKvHead 3 must be a positive divisor of nHead 4/,
  );
});

Deno.test("attention(), kvAppend() and attentionDecode() refuse bad head counts and widths with one line", () => {
  using qkv = Tensor.zeros([1, 3, 32]); // NH 4, NKV 2, HS 4
  using k = Tensor.zeros([1, 5, 8]);
  using v = Tensor.zeros([1, 5, 8]);
  using kWide = Tensor.zeros([1, 5, 16]); // sized for 4 heads, not 2
  const cases: [() => unknown, RegExp][] = [
    [() => attention(qkv, 4, 3), /^attention: nHead 4 is not a multiple of nKvHead 3;/],
    [() => attention(qkv, 3, 2), /^attention: nHead 3 is not a multiple of nKvHead 2;/],
    [
      () => attention(qkv, 6, 2),
      /^attention: qkv \[1, 3, 32\] must have a last dimension of \(nHead \+ 2·nKvHead\)·headSize = 10·headSize \(nHead 6, nKvHead 2\)$/,
    ],
    [() => attention(qkv, 4, 1.5), /^attention: nKvHead must be a positive integer, got 1.5$/],
    [() => kvAppend(k, v, qkv, 4, 0, 3), /^kvAppend: nHead 4 is not a multiple of nKvHead 3;/],
    [
      () => kvAppend(kWide, kWide, qkv, 4, 0, 2),
      /^kvAppend: kCache \[1, 5, 16\] does not fit qkv \[1, 3, 32\] \(nKvHead 2 heads of size 4\): expected \[1, maxT, 8\]$/,
    ],
    [
      () => attentionDecode(qkv, k, v, 4, 0, 4),
      /^attentionDecode: qkv \[1, 3, 32\] must have a last dimension of \(nHead \+ 2·nKvHead\)·headSize = 12·headSize/,
    ],
    [() => attentionDecode(qkv, k, v, 4, 3, 2), /^attentionDecode: positions \[3, 6\) do not fit/],
  ];
  for (const [call, re] of cases) {
    assert.throws(call, (e: Error) => {
      assert.ok(e instanceof DenotronError, e.message);
      assert.match(e.message, re);
      assert.ok(!e.message.includes("\n"), `one line: ${e.message}`);
      return true;
    });
  }
});

Deno.test("the native attention kernels refuse bad head counts themselves, naming them", () => {
  using qkv = Tensor.zeros([1, 3, 32]);
  using out = Tensor.zeros([1, 3, 16]);
  using lse = Tensor.zeros([1, 4, 3]);
  const lib = qkv.device.lib;
  const last = () => Deno.UnsafePointerView.getCString(lib.sym.dn_last_error()!);
  // B=1 T=3 NH=3 NKV=2 HS=4
  assert.equal(lib.sym.dn_attention_forward(0, out.ptr, lse.ptr, qkv.ptr, 1n, 3n, 3n, 2n, 4n), 1);
  assert.match(last(), /dn_attention_forward: NH=3 query heads are not a multiple of NKV=2/);
  assert.equal(
    lib.sym.dn_attention_backward(
      0,
      qkv.ptr,
      out.ptr,
      qkv.ptr,
      out.ptr,
      lse.ptr,
      1n,
      3n,
      4n,
      0n,
      4n,
    ),
    1,
  );
  assert.match(last(), /dn_attention_backward: sizes must be positive \(.*NKV=0 HS=4\)/);
  assert.equal(
    lib.sym.dn_kv_append(0, out.ptr, out.ptr, qkv.ptr, 1n, 3n, 4n, 3n, 4n, 3n, 0n),
    1,
  );
  assert.match(last(), /dn_kv_append: NH=4 query heads are not a multiple of NKV=3/);
  assert.equal(
    lib.sym.dn_attention_decode(0, out.ptr, qkv.ptr, out.ptr, out.ptr, 1n, 3n, 4n, 2n, -4n, 3n, 0n),
    1,
  );
  assert.match(last(), /dn_attention_decode: sizes must be positive/);
});
