/**
 * defines: kvAppend, attentionDecode — the two kernels of cached (incremental) decoding.
 * Inference only: neither records a gradient. The caches hold the key/value heads only,
 * (B,maxT,nKvHead·hs), so a grouped-query model's cache is nHead/nKvHead times smaller.
 *
 * @module
 */
import { DenotronError, fmtShape } from "../errors.ts";
import { DTYPE_CODE, Tensor } from "../tensor.ts";
import { qkvHeads } from "./attention.ts";
import { big, expectRank, expectSameDeviceAndDtype, expectTensor } from "./check.ts";

const FLOAT = ["f32", "bf16", "f16"] as const;

/** Checks qkv (B,Tn,(nHead+2·nKvHead)·hs) against caches (B,maxT,nKvHead·hs). */
function cacheSizes(
  op: string,
  qkv: Tensor,
  kCache: Tensor,
  vCache: Tensor,
  nHead: number,
  nKvHead: number,
  pos: number,
): { B: number; Tn: number; headSize: number; maxT: number } {
  expectTensor(op, "qkv", qkv, FLOAT);
  expectTensor(op, "kCache", kCache, FLOAT);
  expectTensor(op, "vCache", vCache, FLOAT);
  expectSameDeviceAndDtype(op, { qkv, kCache, vCache });
  const { B, T: Tn, headSize } = qkvHeads(op, qkv, nHead, nKvHead);
  expectRank(op, "kCache", kCache, 3);
  expectRank(op, "vCache", vCache, 3);
  const [cb, maxT, cw] = kCache.shape;
  if (cb !== B || cw !== nKvHead * headSize) {
    throw new DenotronError(
      `${op}: kCache ${fmtShape(kCache.shape)} does not fit qkv ${fmtShape(qkv.shape)} ` +
        `(nKvHead ${nKvHead} heads of size ${headSize}): expected [${B}, maxT, ${
          nKvHead * headSize
        }]`,
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
  return { B, Tn, headSize, maxT };
}

/**
 * Writes the keys and values of Tn new positions into the caches, in place.
 *
 * @param kCache (B,maxT,nKvHead·hs) keys of every position so far
 * @param vCache (B,maxT,nKvHead·hs) values
 * @param qkv (B,Tn,(nHead+2·nKvHead)·hs) the new positions' q | k | v, as the qkv
 *   projection makes them
 * @param nHead query heads
 * @param pos where the new positions start; pos + Tn <= maxT
 * @param nKvHead key/value heads; must divide nHead @default nHead
 */
export function kvAppend(
  kCache: Tensor,
  vCache: Tensor,
  qkv: Tensor,
  nHead: number,
  pos: number,
  nKvHead: number = nHead,
): void {
  const op = "kvAppend";
  const { B, Tn, headSize, maxT } = cacheSizes(op, qkv, kCache, vCache, nHead, nKvHead, pos);
  const lib = qkv.device.lib;
  lib.check(
    lib.sym.dn_kv_append(
      DTYPE_CODE[qkv.dtype],
      kCache.ptr,
      vCache.ptr,
      qkv.ptr,
      ...big(B, Tn, nHead, nKvHead, headSize, maxT, pos),
    ),
    op,
  );
}

/**
 * Causal attention of Tn new queries over the cached keys and values: query i (at
 * position pos + i) sees positions [0, pos + i], and query head h reads cache head
 * h / (nHead/nKvHead). Call {@linkcode kvAppend} for the same positions first.
 *
 * @param qkv (B,Tn,(nHead+2·nKvHead)·hs); only its query heads are read
 * @param kCache (B,maxT,nKvHead·hs)
 * @param vCache (B,maxT,nKvHead·hs)
 * @param nHead query heads
 * @param pos position of the first new query
 * @param nKvHead key/value heads; must divide nHead @default nHead
 * @returns (B,Tn,nHead·hs)
 */
export function attentionDecode(
  qkv: Tensor,
  kCache: Tensor,
  vCache: Tensor,
  nHead: number,
  pos: number,
  nKvHead: number = nHead,
): Tensor {
  const op = "attentionDecode";
  const { B, Tn, headSize, maxT } = cacheSizes(op, qkv, kCache, vCache, nHead, nKvHead, pos);
  const out = Tensor.empty([B, Tn, nHead * headSize], { dtype: qkv.dtype, device: qkv.device });
  const lib = qkv.device.lib;
  try {
    lib.check(
      lib.sym.dn_attention_decode(
        DTYPE_CODE[qkv.dtype],
        out.ptr,
        qkv.ptr,
        kCache.ptr,
        vCache.ptr,
        ...big(B, Tn, nHead, nKvHead, headSize, maxT, pos),
      ),
      op,
    );
  } catch (e) {
    out.dispose();
    throw e;
  }
  return out;
}
