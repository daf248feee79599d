/**
 * Large, odd-sized 16-bit GEMMs on both CPU builds: the OpenBLAS build's K-panel path
 * (panels of op(A) and op(B) widened to fp32, cblas_sgemm accumulating over panels)
 * and the built-in GEMM agree with a float64 product of the same 16-bit inputs, for
 * every transpose combination and with a K that leaves a partial last panel.
 */
import assert from "assert";
import { device } from "../lib/device.ts";
import { matmul } from "../lib/ops/mod.ts";
import { Tensor, tidy } from "../lib/tensor.ts";
import { randomArray } from "./helpers.ts";

const [M, K, N] = [67, 1031, 45]; // K: two full 384-wide panels and a partial one

/** C = op(A) @ op(B) in float64 over the stored (already rounded) values. */
function reference(
  a: ArrayLike<number>,
  b: ArrayLike<number>,
  transA: boolean,
  transB: boolean,
): Float64Array {
  const c = new Float64Array(M * N);
  for (let i = 0; i < M; i++) {
    for (let j = 0; j < N; j++) {
      let s = 0;
      for (let k = 0; k < K; k++) {
        s += a[transA ? k * M + i : i * K + k] * b[transB ? j * K + k : k * N + j];
      }
      c[i * N + j] = s;
    }
  }
  return c;
}

for (const dtype of ["bf16", "f16"] as const) {
  Deno.test(`${dtype}: a ${M}x${K}x${N} GEMM matches float64 on the OpenBLAS and built-in builds`, () => {
    const tol = dtype === "bf16" ? 8e-3 : 1e-3; // one rounding of C to 16 bits
    for (const devName of ["cpu", "cpu:builtin"]) {
      const dev = device(devName);
      for (const [transA, transB] of [[false, false], [true, false], [false, true], [true, true]]) {
        tidy(() => {
          const a = Tensor.fromArray(randomArray(M * K, 11), transA ? [K, M] : [M, K], {
            device: dev,
            dtype,
          });
          const b = Tensor.fromArray(randomArray(K * N, 12), transB ? [N, K] : [K, N], {
            device: dev,
            dtype,
          });
          const want = reference(a.toArray(), b.toArray(), transA, transB);
          const got = matmul(a, b, { transA, transB }).toArray();
          let num = 0, den = 0;
          for (let i = 0; i < want.length; i++) {
            num += (got[i] - want[i]) ** 2;
            den += want[i] ** 2;
          }
          const e = Math.sqrt(num / den);
          assert.ok(
            e < tol,
            `${devName} transA=${transA} transB=${transB}: relative error ${e.toExponential(2)}`,
          );
        });
      }
    }
  });
}
