/**
 * The ops of packed sequences. RoPE with per-token positions gives the bits of RoPE from
 * pos0, and a packed row the bits of its documents rotated alone. Attention with a key
 * range per query (spans): forward and backward against a float64
 * reference written here and finite differences, for grouped and multi-head key/value
 * heads and ranges of every kind (document starts, padding, empty); causal spans give the
 * bits of plain attention; packed documents give the bits of each document run alone, in
 * fp32 and bf16; bad spans are refused with the query named.
 */
import assert from "assert";
import { device } from "../lib/device.ts";
import { attention, documentSpans } from "../lib/ops/attention.ts";
import { rope, ropeInvFreq } from "../lib/ops/rope.ts";
import { Tensor, tidy } from "../lib/tensor.ts";
import { checkOp, randomArray } from "./helpers.ts";
import { type GqaCase, spansAttentionRef } from "./reference.ts";

type Case = GqaCase;
const width = (c: Case) => (c.NH + 2 * c.NKV) * c.HS;

/** Spans of every kind for B rows of T: packed documents, a padded encoder row, empties. */
function mixedSpans(B: number, T: number): Int32Array {
  const spans = documentSpans(Array.from({ length: B }, (_, b) => [0, 2 + b, T - 2]), T);
  // the last row: bidirectional over its first T-3 tokens, padding (no keys) after
  const r = (B - 1) * T;
  for (let t = 0; t < T; t++) spans.set(t < T - 3 ? [0, T - 3] : [t, t], 2 * (r + t));
  return spans;
}

const CASES: Case[] = [
  { B: 2, T: 7, NH: 4, NKV: 2, HS: 3 },
  { B: 3, T: 9, NH: 2, NKV: 2, HS: 4 },
  { B: 2, T: 8, NH: 3, NKV: 1, HS: 5 },
];

for (const dev of ["cpu", "cpu:builtin"]) {
  Deno.test(`attention() with spans on ${dev} matches the float64 reference and finite differences`, () => {
    for (const c of CASES) {
      const spans = mixedSpans(c.B, c.T);
      checkOp({
        name: `attention spans B${c.B} T${c.T} NH${c.NH} NKV${c.NKV}`,
        device: device(dev),
        inputs: [
          {
            name: "qkv",
            shape: [c.B, c.T, width(c)],
            data: randomArray(c.B * c.T * width(c), 5 + c.T, 1.5),
          },
          { name: "spans", shape: [c.B, c.T, 2], ints: spans },
        ],
        run: ([qkv, s]) => attention(qkv, c.NH, c.NKV, s),
        forward: ([qkv]) => spansAttentionRef(qkv as Float64Array, spans, c).out,
        backward: ([qkv], g) => [spansAttentionRef(qkv as Float64Array, spans, c, g).dqkv],
      });
    }
  });
}

Deno.test("causal spans [0, t] give the bits of plain attention, forward and backward", () => {
  const c = CASES[0];
  const data = randomArray(c.B * c.T * width(c), 3, 1.5);
  const run = (withSpans: boolean) =>
    tidy(() => {
      const qkv = Tensor.fromArray(data, [c.B, c.T, width(c)], { requiresGrad: true });
      const spans = withSpans
        ? Tensor.fromArray(documentSpans([[0], [0]], c.T), [c.B, c.T, 2])
        : undefined;
      const y = attention(qkv, c.NH, c.NKV, spans);
      y.backward(Tensor.fromArray(randomArray(c.B * c.T * c.NH * c.HS, 4), y.shape));
      return [y.toArray(), qkv.grad!.toArray()];
    });
  assert.deepEqual(run(true), run(false));
});

for (const dtype of ["f32", "bf16"] as const) {
  Deno.test(`${dtype}: a packed row gives the bits of its documents run one by one`, () => {
    const c = { B: 1, T: 12, NH: 4, NKV: 2, HS: 8 };
    const starts = [0, 5, 9];
    const data = randomArray(c.T * width(c), 8, 1.5);
    const gOut = randomArray(c.T * c.NH * c.HS, 9);
    const [packed, packedGrad] = tidy(() => {
      const qkv = Tensor.fromArray(data, [1, c.T, width(c)], { requiresGrad: true, dtype });
      const spans = Tensor.fromArray(documentSpans([starts], c.T), [1, c.T, 2]);
      const y = attention(qkv, c.NH, c.NKV, spans);
      y.backward(Tensor.fromArray(gOut, y.shape, { dtype }));
      return [y.toArray(), qkv.grad!.toArray()];
    });
    const bounds = [...starts, c.T];
    for (let d = 0; d < starts.length; d++) {
      const [t0, t1] = [bounds[d], bounds[d + 1]], n = t1 - t0;
      const [alone, aloneGrad] = tidy(() => {
        const part = data.slice(t0 * width(c), t1 * width(c));
        const qkv = Tensor.fromArray(part, [1, n, width(c)], { requiresGrad: true, dtype });
        const y = attention(qkv, c.NH, c.NKV);
        const gPart = gOut.slice(t0 * c.NH * c.HS, t1 * c.NH * c.HS);
        y.backward(Tensor.fromArray(gPart, y.shape, { dtype }));
        return [y.toArray(), qkv.grad!.toArray()];
      });
      const C = c.NH * c.HS, W = width(c);
      assert.deepEqual(
        Array.from(packed.slice(t0 * C, t1 * C)),
        Array.from(alone),
        `document ${d}`,
      );
      assert.deepEqual(
        Array.from(packedGrad.slice(t0 * W, t1 * W)),
        Array.from(aloneGrad),
        `document ${d} gradient`,
      );
    }
  });
}

Deno.test("bad spans are refused: the shape, and a range outside the sequence naming the query", () => {
  tidy(() => {
    const qkv = Tensor.zeros([1, 4, 24]);
    assert.throws(
      () => attention(qkv, 2, 2, Tensor.fromArray(new Int32Array(6), [1, 3, 2])),
      /spans \[1, 3, 2\] must be \(B,T,2\) = \[1, 4, 2\]/,
    );
    const bad = documentSpans([[0]], 4);
    bad[2 * 2 + 1] = 5;
    assert.throws(
      () => attention(qkv, 2, 2, Tensor.fromArray(bad, [1, 4, 2])),
      /span of query 2 of sequence 0 is \[0, 5\), outside \[0, 4\]/,
    );
    assert.throws(
      () => attention(qkv, 2, 2, Tensor.zeros([1, 4, 2])),
      /spans/,
    );
  });
});

Deno.test("rope() with positions: pos0 + t gives the bits of pos0, a packed row those of its documents alone", () => {
  const [NH, NKV, HS, T] = [4, 2, 8, 10];
  const W = (NH + 2 * NKV) * HS;
  const data = randomArray(2 * T * W, 12, 1.5), gOut = randomArray(2 * T * W, 13);
  const run = (
    x: Float64Array,
    B: number,
    n: number,
    opts: { pos0?: number; positions?: number[] },
  ) =>
    tidy(() => {
      const invFreq = Tensor.fromArray(ropeInvFreq(HS, 10000), [HS / 2]);
      const qkv = Tensor.fromArray(x, [B, n, W], { requiresGrad: true });
      const positions = opts.positions
        ? Tensor.fromArray(new Int32Array(opts.positions), [B, n])
        : undefined;
      const y = rope(qkv, { nHead: NH, nKvHead: NKV, invFreq, pos0: opts.pos0, positions });
      y.backward(Tensor.fromArray(gOut.slice(0, B * n * W), y.shape));
      return [Array.from(y.toArray()), Array.from(qkv.grad!.toArray())];
    });
  const shifted = Array.from({ length: 2 * T }, (_, i) => 7 + (i % T));
  assert.deepEqual(run(data, 2, T, { positions: shifted }), run(data, 2, T, { pos0: 7 }));
  // one row of two documents, [0, 6) and [6, 10): positions restart at 0
  const packed = run(data.slice(0, T * W), 1, T, { positions: [0, 1, 2, 3, 4, 5, 0, 1, 2, 3] });
  const first = run(data.slice(0, 6 * W), 1, 6, {});
  assert.deepEqual(packed[0].slice(0, 6 * W), first[0]);
  assert.deepEqual(packed[1].slice(0, 6 * W), first[1]);
  // the second document alone, with its own gradient slice
  const second = tidy(() => {
    const invFreq = Tensor.fromArray(ropeInvFreq(HS, 10000), [HS / 2]);
    const qkv = Tensor.fromArray(data.slice(6 * W, T * W), [1, 4, W], { requiresGrad: true });
    const y = rope(qkv, { nHead: NH, nKvHead: NKV, invFreq });
    y.backward(Tensor.fromArray(gOut.slice(6 * W, T * W), y.shape));
    return [Array.from(y.toArray()), Array.from(qkv.grad!.toArray())];
  });
  assert.deepEqual(packed[0].slice(6 * W), second[0]);
  assert.deepEqual(packed[1].slice(6 * W), second[1]);
  tidy(() => {
    const invFreq = Tensor.fromArray(ropeInvFreq(HS, 10000), [HS / 2]);
    const qkv = Tensor.zeros([1, 3, W]);
    const bad = (positions: Tensor, pos0?: number) =>
      rope(qkv, { nHead: NH, nKvHead: NKV, invFreq, positions, pos0 });
    assert.throws(() => bad(Tensor.fromArray(new Int32Array(2), [1, 2])), /positions/);
    assert.throws(
      () => bad(Tensor.fromArray(new Int32Array([0, -1, 2]), [1, 3])),
      /position -1 at flat index 1 is negative/,
    );
    assert.throws(
      () => bad(Tensor.fromArray(new Int32Array(3), [1, 3]), 2),
      /positions or pos0, not both/,
    );
  });
});
