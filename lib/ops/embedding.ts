/**
 * defines: embedding — token + position embedding, backward a deterministic scatter-add;
 * gatherRows — rows of an activation picked by index, on the same kernels.
 *
 * @module
 */
import { gradOf, needsGrad, record } from "../autograd.ts";
import { DenotronError, fmtShape } from "../errors.ts";
import { DTYPE_CODE, Tensor } from "../tensor.ts";
import {
  big,
  dtypeWithGrad,
  expectDevice,
  expectRank,
  expectSameDeviceAndDtype,
  expectTensor,
} from "./check.ts";

/**
 * out[b,t] = wte[tokens[b,t]] + wpe[t].
 *
 * @param tokens int32 (B,T), each in [0, V)
 * @param wte (rows,C) token embedding, rows >= V
 * @param wpe (maxT,C) position embedding, maxT >= T; null: none (rotary positions)
 * @param vocabSize V, the tokens that exist; rows past it are vocabulary padding, which no
 *   token may select @default the rows of wte
 * @returns (B,T,C)
 */
export function embedding(
  tokens: Tensor,
  wte: Tensor,
  wpe: Tensor | null,
  vocabSize: number = wte.shape[0],
): Tensor {
  const op = "embedding";
  expectTensor(op, "tokens", tokens, ["i32"]);
  expectTensor(op, "wte", wte, ["f32", "bf16", "f16"]);
  if (wpe) {
    expectTensor(op, "wpe", wpe, ["f32", "bf16", "f16"]);
    expectSameDeviceAndDtype(op, { wte, wpe });
    expectRank(op, "wpe", wpe, 2);
  }
  expectDevice(op, "tokens", tokens, wte);
  expectRank(op, "tokens", tokens, 2);
  expectRank(op, "wte", wte, 2);
  const [B, T] = tokens.shape;
  const [rows, C] = wte.shape;
  const V = vocabSize;
  if (!Number.isInteger(V) || V < 1 || V > rows) {
    throw new DenotronError(
      `${op}: vocabSize ${V} must be an integer in [1, ${rows}] (the rows of wte ${
        fmtShape(wte.shape)
      })`,
    );
  }
  if (wpe && wpe.shape[1] !== C) {
    throw new DenotronError(
      `${op}: wpe ${fmtShape(wpe.shape)} and wte ${fmtShape(wte.shape)} differ in width`,
    );
  }
  if (wpe && T > wpe.shape[0]) {
    throw new DenotronError(
      `${op}: sequence length ${T} exceeds the ${wpe.shape[0]} positions of wpe`,
    );
  }
  const out = Tensor.empty([B, T, C], { dtype: wte.dtype, device: wte.device });
  const lib = out.device.lib;
  lib.check(
    lib.sym.dn_embedding_forward(
      DTYPE_CODE[out.dtype],
      out.ptr,
      tokens.ptr,
      wte.ptr,
      wpe ? wpe.ptr : null,
      ...big(B, T, C, V),
    ),
    op,
  );
  return record(out, {
    name: op,
    inputs: wpe ? [wte, wpe] : [wte],
    backward(g) {
      const dwte = needsGrad(wte) ? gradOf(wte) : null;
      const dwpe = wpe && needsGrad(wpe) ? gradOf(wpe) : null;
      const run = (a: Tensor | null, b: Tensor | null) =>
        lib.check(
          lib.sym.dn_embedding_backward(
            dtypeWithGrad(g.dtype, (a ?? b)?.dtype ?? g.dtype),
            a ? a.ptr : null,
            b ? b.ptr : null,
            g.ptr,
            tokens.ptr,
            ...big(B, T, C, V),
          ),
          `${op} backward`,
        );
      // One call for both, unless their gradients differ in dtype (a 16-bit derived
      // token table, such as a tensor-parallel shard, beside an fp32 main gradient).
      if (dwte && dwpe && dwte.dtype !== dwpe.dtype) {
        run(dwte, null);
        run(null, dwpe);
      } else {
        run(dwte, dwpe);
      }
    },
  });
}

/**
 * out[i] = x[index[i]], with x seen as N rows of its last dimension C: the embedding
 * kernels with x as the table, so backward is the same deterministic scatter-add into x's
 * gradient. BERT's pooler reads each sequence's first token with it.
 *
 * @param x (..., C) float
 * @param index int32 (M), each in [0, N) where N = x.numel / C
 * @returns (M, C)
 * @example
 * ```ts
 * import { gatherRows } from "./embedding.ts";
 * import { Tensor } from "../tensor.ts";
 * using x = Tensor.fromArray([1, 2, 3, 4, 5, 6], [1, 3, 2]); // 3 rows of 2
 * using i = Tensor.fromArray(new Int32Array([2, 0]), [2]);
 * using y = gatherRows(x, i);
 * console.log(y.toArray()); // [5, 6, 1, 2]
 * ```
 */
export function gatherRows(x: Tensor, index: Tensor): Tensor {
  const op = "gatherRows";
  expectTensor(op, "x", x, ["f32", "bf16", "f16"]);
  expectTensor(op, "index", index, ["i32"]);
  expectDevice(op, "index", index, x);
  expectRank(op, "index", index, 1);
  const C = x.shape[x.ndim - 1] ?? 0;
  if (x.ndim < 1 || C === 0 || x.numel === 0) {
    throw new DenotronError(`${op}: x ${fmtShape(x.shape)} has no rows`);
  }
  const N = x.numel / C, M = index.shape[0];
  const out = Tensor.empty([M, C], { dtype: x.dtype, device: x.device });
  if (M === 0) return out;
  const lib = x.device.lib;
  // (1, M) "tokens" into an (N, C) "table"
  lib.check(
    lib.sym.dn_embedding_forward(
      DTYPE_CODE[x.dtype],
      out.ptr,
      index.ptr,
      x.ptr,
      null,
      ...big(1, M, C, N),
    ),
    op,
  );
  return record(out, {
    name: op,
    inputs: [x],
    backward(g) {
      const dx = gradOf(x);
      lib.check(
        lib.sym.dn_embedding_backward(
          dtypeWithGrad(g.dtype, dx.dtype),
          dx.ptr,
          null,
          g.ptr,
          index.ptr,
          ...big(1, M, C, N),
        ),
        `${op} backward`,
      );
    },
  });
}
