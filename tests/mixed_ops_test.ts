/**
 * Every op in bf16 and fp16 against the same op in fp32 on the same (rounded) inputs:
 * forward outputs and every input gradient, by normwise relative error
 * ‖x₁₆ − x₃₂‖ / ‖x₃₂‖. The bounds are a few units of the format's rounding
 * (bf16: 2⁻⁹ ≈ 2.0e-3, fp16: 2⁻¹¹ ≈ 4.9e-4), since the kernels compute in fp32 and round
 * each stored tensor once: bf16 ≤ 1e-2, fp16 ≤ 2.5e-3.
 * Also: fp32 "main" gradients of 16-bit weights (DN_DTYPE_WITH_GRAD) match fp32 more
 * tightly, since they are never rounded to 16 bits.
 */
import assert from "assert";
import {
  add,
  attention,
  biasGelu,
  crossEntropy,
  dropout,
  embedding,
  layernorm,
  linear,
  linearGelu,
  matmul,
} from "../lib/ops/mod.ts";
import { Generator } from "../lib/random.ts";
import { type DType, Tensor, tidy } from "../lib/tensor.ts";
import { randomArray, randomInts } from "./helpers.ts";
import { checkMixed, relErr, TOL } from "./mixed_helpers.ts";

for (const dtype of ["bf16", "f16"] as const) {
  Deno.test(`${dtype}: linear, linearGelu and matmul (transposes, batches) match fp32`, () => {
    for (const devName of ["cpu", "cpu:builtin"]) {
      for (const [M, K, N] of [[5, 7, 3], [37, 64, 70], [131, 259, 33]]) {
        checkMixed(
          `linear ${M}x${K}x${N} on ${devName}`,
          dtype,
          [
            { name: "x", shape: [M, K], data: randomArray(M * K, 1) },
            { name: "w", shape: [N, K], data: randomArray(N * K, 2) },
            { name: "b", shape: [N], data: randomArray(N, 3) },
          ],
          ([x, w, b]) => linear(x, w, b),
          { devName },
        );
      }
    }
    for (const [M, K, N] of [[5, 7, 3], [37, 64, 72]]) {
      checkMixed(
        `linearGelu ${M}x${K}x${N}`,
        dtype,
        [
          { name: "x", shape: [M, K], data: randomArray(M * K, 11) },
          { name: "w", shape: [N, K], data: randomArray(N * K, 12) },
          { name: "b", shape: [N], data: randomArray(N, 13) },
        ],
        ([x, w, b]) => linearGelu(x, w, b),
      );
    }
    for (const [transA, transB] of [[false, false], [true, false], [false, true], [true, true]]) {
      const [B, M, K, N] = [3, 9, 13, 11];
      checkMixed(`matmul transA=${transA} transB=${transB}`, dtype, [
        { name: "a", shape: transA ? [B, K, M] : [B, M, K], data: randomArray(B * M * K, 4) },
        { name: "b", shape: transB ? [B, N, K] : [B, K, N], data: randomArray(B * K * N, 5) },
      ], ([a, b]) => matmul(a, b, { transA, transB }));
    }
  });

  Deno.test(`${dtype}: embedding, layernorm, biasGelu match fp32`, () => {
    const [B, T, C, V] = [2, 5, 40, 9];
    checkMixed("embedding", dtype, [
      { name: "tokens", shape: [B, T], ints: randomInts(B * T, 6, V) },
      { name: "wte", shape: [V, C], data: randomArray(V * C, 7) },
      { name: "wpe", shape: [T + 2, C], data: randomArray((T + 2) * C, 8) },
    ], ([t, wte, wpe]) => embedding(t, wte, wpe));
    checkMixed("layernorm", dtype, [
      { name: "x", shape: [6, 70], data: randomArray(420, 9, 3) },
      { name: "w", shape: [70], data: randomArray(70, 10) },
      { name: "b", shape: [70], data: randomArray(70, 11) },
    ], ([x, w, b]) => layernorm(x, w, b));
    checkMixed("biasGelu", dtype, [
      { name: "x", shape: [9, 70], data: randomArray(630, 12, 3) },
      { name: "b", shape: [70], data: randomArray(70, 13) },
    ], ([x, b]) => biasGelu(x, b));
  });

  Deno.test(`${dtype}: attention, crossEntropy, add, dropout match fp32`, () => {
    for (const [B, T, C, NH] of [[2, 7, 16, 2], [1, 33, 24, 3]]) {
      checkMixed(`attention B${B} T${T}`, dtype, [
        { name: "qkv", shape: [B, T, 3 * C], data: randomArray(B * T * 3 * C, 14, 1.5) },
      ], ([qkv]) => attention(qkv, NH));
    }
    const [N, V] = [7, 300];
    checkMixed("crossEntropy", dtype, [
      { name: "logits", shape: [N, V], data: randomArray(N * V, 15, 5) },
      { name: "targets", shape: [N], ints: Int32Array.from([3, -1, 0, 299, 5, 17, 2]) },
    ], ([l, t]) => crossEntropy(l, t));
    checkMixed("add", dtype, [
      { name: "a", shape: [3, 40], data: randomArray(120, 16) },
      { name: "b", shape: [3, 40], data: randomArray(120, 17) },
    ], ([a, b]) => add(a, b));
    checkMixed("dropout", dtype, [
      { name: "x", shape: [5000], data: randomArray(5000, 18) },
    ], ([x]) => dropout(x, 0.3, new Generator(5)));
  });

  Deno.test(`${dtype} weights accumulate fp32 main gradients directly`, () => {
    const [M, K, N, C] = [33, 40, 24, 40];
    tidy(() => {
      const xd = randomArray(M * K, 21), wd = randomArray(N * K, 22), bd = randomArray(N, 23);
      const lnw = randomArray(C, 24), lnb = randomArray(C, 25);
      const round = (d: Float64Array) => Tensor.fromArray(d, [d.length], { dtype }).toArray();
      const build = (dt: DType, mainGrads: boolean) => {
        const mk = (d: Float64Array, shape: number[]) => {
          const t = Tensor.fromArray(round(d), shape, { dtype: dt, requiresGrad: true });
          if (mainGrads) t.grad = Tensor.zeros(shape); // an fp32 main gradient
          return t;
        };
        const x = Tensor.fromArray(round(xd), [M, K], { dtype: dt });
        const p = {
          w: mk(wd, [N, K]),
          b: mk(bd, [N]),
          lnw: mk(lnw, [C]),
          lnb: mk(lnb, [C]),
        };
        const y = linear(layernorm(x, p.lnw, p.lnb), p.w, p.b);
        // two micro-batches: the second adds onto the first in fp32
        for (let i = 0; i < 2; i++) {
          const yy = i === 0 ? y : linear(layernorm(x, p.lnw, p.lnb), p.w, p.b);
          yy.backward(Tensor.fromArray(randomArray(M * N, 26 + i), [M, N], { dtype: dt }));
        }
        return p;
      };
      const ref = build("f32", false), mixed = build(dtype, true);
      for (const k of ["w", "b", "lnw", "lnb"] as const) {
        assert.equal(mixed[k].grad!.dtype, "f32");
        const e = relErr(mixed[k].grad!.toArray(), ref[k].grad!.toArray());
        assert.ok(e <= TOL[dtype], `d${k}: relative error ${e.toExponential(2)}`);
      }
    });
  });
}
