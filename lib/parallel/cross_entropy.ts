/**
 * defines: padRows, paddedValues, padRowsView, PAD_LOGIT, vocabShardTargets,
 *          vocabParallelCrossEntropy, gatherVocabShards
 *
 * The vocabulary-parallel output: each tensor-parallel rank holds V/tp rows of the
 * token embedding and computes only its V/tp columns of the logits. The loss needs three
 * reductions over the group per token row — the maximum, the target's logit and the sum
 * of exponentials — and never the full (N,V) logits.
 *
 * Both the embedding and the loss use an extended shard with one extra row: tokens
 * owned by another rank look up that all-zero row, and the logit column it produces is
 * pinned to {@linkcode PAD_LOGIT} by a constant bias, so it adds nothing to a softmax and
 * can stand as the "target" of rows whose target lives elsewhere.
 *
 * @module
 */
import { gradOf, needsGrad, record } from "../autograd.ts";
import { DenotronError, fmtShape } from "../errors.ts";
import { big } from "../ops/check.ts";
import { DTYPE_CODE, Tensor } from "../tensor.ts";
import { accumulateInto } from "../ops/elementwise.ts";
import type { ProcessGroup } from "./process_group.ts";

/** The logit of the padding column: exp(PAD_LOGIT − anything finite) is 0. */
export const PAD_LOGIT: number = -1e30;

/**
 * [w; 0]: the shard with one zero row appended.
 * Forward: copy plus a zero row. Backward: the first rows' gradient goes to w; the pad
 * row's is dropped.
 *
 * @param w (R, C)
 * @returns (R+1, C)
 */
export function padRows(w: Tensor): Tensor {
  const values = paddedValues(w);
  try {
    return padRowsView(w, values);
  } finally {
    values.dispose(); // the view holds the storage
  }
}

/**
 * The values of [w; 0], with no gradient: one copy that several uses of the padded shard
 * read through {@linkcode padRowsView} (a pipeline step makes it once for the embedding,
 * the output layer and every micro-batch, rather than one copy per use). It holds w's
 * values when it is made: make it again once w changes.
 *
 * @param w (R, C)
 * @returns (R+1, C), not recorded for autograd
 */
export function paddedValues(w: Tensor): Tensor {
  const [R, C] = w.shape;
  if (w.ndim !== 2) throw new DenotronError(`padRows: w must be 2-D, got ${fmtShape(w.shape)}`);
  const out = Tensor.zeros([R + 1, C], { dtype: w.dtype, device: w.device });
  const head = out.view([R, C]);
  head.copy_(w);
  head.dispose();
  return out;
}

/**
 * [w; 0] read from `values` = {@linkcode paddedValues}(w), without a copy.
 * Forward: a view of `values`. Backward: as {@linkcode padRows}, the first rows'
 * gradient goes to w and the pad row's is dropped. Each call records its own node with
 * its own gradient, so each use adds its gradient to w once, exactly as a copy per use
 * would.
 *
 * @param w (R, C)
 * @param values (R+1, C), paddedValues(w) made while w held its current values
 * @returns (R+1, C), sharing values' storage
 */
export function padRowsView(w: Tensor, values: Tensor): Tensor {
  const [R, C] = w.shape;
  if (
    values.ndim !== 2 || values.shape[0] !== R + 1 || values.shape[1] !== C ||
    values.dtype !== w.dtype
  ) {
    throw new DenotronError(
      `padRowsView: ${values.describe()} is not the padded form of ${w.describe()}`,
    );
  }
  return record(values.view(values.shape), {
    name: "padRows",
    inputs: [w],
    backward(g) {
      if (!needsGrad(w)) return;
      const gh = g.view([R, C]);
      accumulateInto(gradOf(w), gh);
      gh.dispose();
    },
  });
}

/**
 * Maps global token ids to the rows of a rank's extended vocabulary shard.
 *
 * @param ids global ids (−1 kept as −1 when `keepIgnored`)
 * @param start the shard's first id
 * @param rows ids in the shard; ids outside it map to `rows` (the pad row)
 */
export function vocabShardTargets(
  ids: Int32Array,
  start: number,
  rows: number,
  keepIgnored: boolean,
): Int32Array {
  return ids.map((t) =>
    keepIgnored && t === -1 ? -1 : t >= start && t < start + rows ? t - start : rows
  );
}

/**
 * Mean cross-entropy over the rows whose target is not −1, from this rank's columns of
 * the logits. Forward: the local log-sum-exp of each row (one fused kernel), then
 * across the group the MAX of those, the SUM of their exponentials relative to it and
 * the SUM of the target logit (held by one rank): lse = max + log Σ, loss = lse − z_t.
 * Backward: softmax(z) − onehot(t) on this rank's columns, from the global lse.
 *
 * @param logits (..., Vl+1): this rank's Vl columns and the pad column
 * @param targets int32 (...), global ids or −1
 * @param group the tensor-parallel group
 * @param vocabStart the first id of this rank's shard
 * @returns a one-element tensor, the mean loss (the same on every rank)
 */
export function vocabParallelCrossEntropy(
  logits: Tensor,
  targets: Tensor,
  group: ProcessGroup,
  vocabStart: number,
): Tensor {
  const op = "vocabParallelCrossEntropy";
  const V1 = logits.shape[logits.ndim - 1];
  const N = targets.numel;
  if (logits.numel !== N * V1 || targets.dtype !== "i32") {
    throw new DenotronError(
      `${op}: targets ${targets.describe()} do not match logits ${logits.describe()}`,
    );
  }
  const local = vocabShardTargets(targets.toArray() as Int32Array, vocabStart, V1 - 1, true);
  const localTargets = Tensor.fromArray(local, [N], { dtype: "i32", device: logits.device });
  const losses = Tensor.empty([N], { device: logits.device });
  const lse = Tensor.empty([N], { device: logits.device });
  const mean = new Float64Array(1);
  const count = new BigInt64Array(1);
  const lib = logits.device.lib;
  lib.check(
    lib.sym.dn_crossentropy_forward(
      DTYPE_CODE[logits.dtype],
      losses.ptr,
      lse.ptr,
      logits.ptr,
      localTargets.ptr,
      ...big(N, V1, V1),
      mean,
      count,
    ),
    op,
  );
  const lseLocal = lse.toArray() as Float32Array;
  const lossLocal = losses.toArray() as Float32Array;
  losses.dispose();
  // max over the group
  const m = Tensor.fromArray(lseLocal, [N], { device: logits.device });
  group.allReduce(m, "max");
  const max = m.toArray() as Float32Array;
  // Σ exp(lse_r − max) and the target logit z_t = lse_r − loss_r (only its owner adds it)
  const sums = new Float32Array(2 * N);
  for (let i = 0; i < N; i++) {
    sums[i] = Math.exp(lseLocal[i] - max[i]);
    sums[N + i] = local[i] >= 0 && local[i] < V1 - 1 ? lseLocal[i] - lossLocal[i] : 0;
  }
  const s = Tensor.fromArray(sums, [2 * N], { device: logits.device });
  group.allReduce(s);
  const reduced = s.toArray() as Float32Array;
  s.dispose();
  let total = 0, counted = 0;
  const lseGlobal = new Float32Array(N);
  for (let i = 0; i < N; i++) {
    lseGlobal[i] = max[i] + Math.log(reduced[i]);
    if (local[i] === -1) continue;
    total += max[i] + Math.log(reduced[i]) - reduced[N + i];
    counted++;
  }
  m.copyFromHost(lseGlobal);
  lse.dispose();
  const out = Tensor.fromArray([counted ? total / counted : 0], [1], { device: logits.device });
  const result = record(out, {
    name: op,
    inputs: [logits],
    backward(g) {
      if (!needsGrad(logits) || counted === 0) return;
      lib.check(
        lib.sym.dn_crossentropy_backward(
          DTYPE_CODE[logits.dtype],
          gradOf(logits).ptr,
          logits.ptr,
          m.ptr,
          localTargets.ptr,
          ...big(N, V1, V1),
          g.item() / counted,
          1,
        ),
        `${op} backward`,
      );
    },
  });
  if (!result.gradFn) {
    m.dispose();
    localTargets.dispose();
  }
  return result;
}

/**
 * The full logits (N, V) on the host, from each tensor-parallel rank's extended
 * vocabulary shard (N, V/tp+1): all-gathered over the group, the pad columns dropped
 * (rank q's real columns are tokens q·V/tp onwards). Collective; for evaluation and tests.
 *
 * @param logits this rank's shard, (..., V/tp+1)
 * @param group the tensor-parallel group
 * @param vocabSize V
 * @returns (N·V) row-major
 */
export function gatherVocabShards(
  logits: Tensor,
  group: ProcessGroup,
  vocabSize: number,
): Float32Array {
  const w = logits.shape[logits.ndim - 1], Vs = w - 1, tp = group.size;
  const N = logits.numel / w;
  const mine = Tensor.fromArray(logits.toArray(), [N * w], { device: logits.device });
  const all = Tensor.zeros([tp * N * w], { device: logits.device });
  group.allGather(mine, all);
  const g = all.toArray() as Float32Array;
  mine.dispose();
  all.dispose();
  const out = new Float32Array(N * vocabSize);
  for (let q = 0; q < tp; q++) {
    for (let i = 0; i < N; i++) {
      for (let j = 0; j < Vs && q * Vs + j < vocabSize; j++) {
        out[i * vocabSize + q * Vs + j] = g[q * N * w + i * w + j];
      }
    }
  }
  return out;
}
