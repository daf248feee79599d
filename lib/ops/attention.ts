/**
 * defines: attention — causal multi-head self-attention as one fused op per direction.
 *
 * @module
 */
import { gradOf, record } from "../autograd.ts";
import { DenotronError, fmtShape } from "../errors.ts";
import { DTYPE_CODE, Tensor } from "../tensor.ts";
import { big, expectRank, expectTensor } from "./check.ts";

/**
 * softmax(q kᵀ/√hs + causal mask) v for each head. Only the log-sum-exp of each score
 * row (B,nHead,T) is kept for backward, which recomputes the probabilities.
 *
 * @param qkv (B,T,3C): q, k and v side by side, each (B,T,nHead,hs)
 * @param nHead number of heads; must divide C
 * @returns (B,T,C)
 */
export function attention(qkv: Tensor, nHead: number): Tensor {
  const op = "attention";
  expectTensor(op, "qkv", qkv, ["f32", "bf16", "f16"]);
  expectRank(op, "qkv", qkv, 3);
  const [B, T, C3] = qkv.shape;
  if (C3 % 3 !== 0) {
    throw new DenotronError(`${op}: qkv ${fmtShape(qkv.shape)} must have a last dimension of 3·C`);
  }
  const C = C3 / 3;
  if (!Number.isInteger(nHead) || nHead < 1 || C % nHead !== 0) {
    throw new DenotronError(`${op}: nHead ${nHead} does not divide the width C = ${C}`);
  }
  const out = Tensor.empty([B, T, C], { dtype: qkv.dtype, device: qkv.device });
  const lse = Tensor.empty([B, nHead, T], { device: qkv.device });
  const lib = qkv.device.lib;
  lib.check(
    lib.sym.dn_attention_forward(
      DTYPE_CODE[qkv.dtype],
      out.ptr,
      lse.ptr,
      qkv.ptr,
      ...big(B, T, C, nHead),
    ),
    op,
  );
  const result = record(out, {
    name: op,
    inputs: [qkv],
    backward(g) {
      lib.check(
        lib.sym.dn_attention_backward(
          DTYPE_CODE[g.dtype],
          gradOf(qkv).ptr,
          g.ptr,
          qkv.ptr,
          out.ptr,
          lse.ptr,
          ...big(B, T, C, nHead),
        ),
        `${op} backward`,
      );
    },
  });
  if (!result.gradFn) lse.dispose();
  return result;
}
