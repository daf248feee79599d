/**
 * defines: kvAppend, attentionDecode — the two kernels of cached (incremental) decoding.
 * Inference only: neither records a gradient.
 *
 * @module
 */
import { DenotronError, fmtShape } from "../errors.ts";
import { DTYPE_CODE, Tensor } from "../tensor.ts";
import { big, expectRank, expectSameDeviceAndDtype, expectTensor } from "./check.ts";

const FLOAT = ["f32", "bf16", "f16"] as const;

/** Checks qkv (B,Tn,3C) against caches (B,maxT,C) and returns the sizes. */
function cacheSizes(
  op: string,
  qkv: Tensor,
  kCache: Tensor,
  vCache: Tensor,
  pos: number,
): { B: number; Tn: number; C: number; maxT: number } {
  expectTensor(op, "qkv", qkv, FLOAT);
  expectTensor(op, "kCache", kCache, FLOAT);
  expectTensor(op, "vCache", vCache, FLOAT);
  expectSameDeviceAndDtype(op, { qkv, kCache, vCache });
  expectRank(op, "qkv", qkv, 3);
  expectRank(op, "kCache", kCache, 3);
  expectRank(op, "vCache", vCache, 3);
  const [B, Tn, C3] = qkv.shape;
  const [cb, maxT, C] = kCache.shape;
  if (C3 !== 3 * C || cb !== B) {
    throw new DenotronError(
      `${op}: qkv ${fmtShape(qkv.shape)} does not fit a cache ${
        fmtShape(kCache.shape)
      } (expected [${cb}, Tn, ${3 * C}])`,
    );
  }
  if (vCache.shape.some((d, i) => d !== kCache.shape[i])) {
    throw new DenotronError(
      `${op}: vCache ${fmtShape(vCache.shape)} differs from kCache ${fmtShape(kCache.shape)}`,
    );
  }
  if (!Number.isInteger(pos) || pos < 0 || pos + Tn > maxT) {
    throw new DenotronError(
      `${op}: positions [${pos}, ${pos + Tn}) do not fit in a cache of ${maxT} positions`,
    );
  }
  return { B, Tn, C, maxT };
}

/**
 * Writes the keys and values of Tn new positions into the caches, in place.
 *
 * @param kCache (B,maxT,C) keys of every position so far
 * @param vCache (B,maxT,C) values
 * @param qkv (B,Tn,3C) the new positions' q | k | v, as the qkv projection makes them
 * @param pos where the new positions start; pos + Tn <= maxT
 */
export function kvAppend(kCache: Tensor, vCache: Tensor, qkv: Tensor, pos: number): void {
  const op = "kvAppend";
  const { B, Tn, C, maxT } = cacheSizes(op, qkv, kCache, vCache, pos);
  const lib = qkv.device.lib;
  lib.check(
    lib.sym.dn_kv_append(
      DTYPE_CODE[qkv.dtype],
      kCache.ptr,
      vCache.ptr,
      qkv.ptr,
      ...big(B, Tn, C, maxT, pos),
    ),
    op,
  );
}

/**
 * Causal attention of Tn new queries over the cached keys and values: query i (at
 * position pos + i) sees positions [0, pos + i]. Call {@linkcode kvAppend} for the same
 * positions first.
 *
 * @param qkv (B,Tn,3C); only its q part is read
 * @param kCache (B,maxT,C)
 * @param vCache (B,maxT,C)
 * @param nHead heads; must divide C
 * @param pos position of the first new query
 * @returns (B,Tn,C)
 */
export function attentionDecode(
  qkv: Tensor,
  kCache: Tensor,
  vCache: Tensor,
  nHead: number,
  pos: number,
): Tensor {
  const op = "attentionDecode";
  const { B, Tn, C, maxT } = cacheSizes(op, qkv, kCache, vCache, pos);
  if (!Number.isInteger(nHead) || nHead < 1 || C % nHead !== 0) {
    throw new DenotronError(`${op}: nHead ${nHead} does not divide the width C = ${C}`);
  }
  const out = Tensor.empty([B, Tn, C], { dtype: qkv.dtype, device: qkv.device });
  const lib = qkv.device.lib;
  try {
    lib.check(
      lib.sym.dn_attention_decode(
        DTYPE_CODE[qkv.dtype],
        out.ptr,
        qkv.ptr,
        kCache.ptr,
        vCache.ptr,
        ...big(B, Tn, C, nHead, maxT, pos),
      ),
      op,
    );
  } catch (e) {
    out.dispose();
    throw e;
  }
  return out;
}
