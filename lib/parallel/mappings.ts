/**
 * defines: copyToTensorRegion, reduceFromTensorRegion, scatterToLastDim, gatherFromLastDim,
 *          scatterToSequenceRegion, gatherFromSequenceRegion, sequenceShard
 *
 * The communication ops at the edges of a tensor-parallel region, each an autograd op
 * whose backward is the dual of its forward. A region holds a model-parallel computation
 * (column-parallel linear ... row-parallel linear); these ops are its entry and exit.
 *
 * Sequence parallelism splits activations outside the region along their token rows:
 * activations here are (B,T,C), so the B·T rows are cut into `group.size` contiguous
 * chunks (Megatron's [s,b,h] layout cuts the same way along its slowest dimension).
 * Per-token ops (layernorm, dropout, the residual add) then run on 1/tp of the rows.
 *
 * @module
 */
import { gradOf, needsGrad, record } from "../autograd.ts";
import { DenotronError, fmtShape } from "../errors.ts";
import { accumulateInto } from "../ops/elementwise.ts";
import { Tensor } from "../tensor.ts";
import type { ProcessGroup } from "./process_group.ts";

function fresh(like: Tensor, shape: readonly number[] = like.shape): Tensor {
  return Tensor.empty(shape, { dtype: like.dtype, device: like.device });
}

/**
 * Entry of a tensor-parallel region whose input is replicated.
 * Forward: identity (every rank already holds x). Backward: all-reduce (sum) of the
 * gradient over `group`, since each rank's column-parallel part contributes to dx.
 *
 * @param x replicated activation, e.g. (B,T,C)
 * @param group the tensor-parallel group
 * @returns x's values, recorded as a new node
 */
export function copyToTensorRegion(x: Tensor, group: ProcessGroup): Tensor {
  if (group.size === 1) return x;
  const out = fresh(x).copy_(x);
  return record(out, {
    name: "copyToTensorRegion",
    inputs: [x],
    backward(g) {
      group.allReduce(g);
      if (needsGrad(x)) accumulateInto(gradOf(x), g);
    },
  });
}

/**
 * Exit of a tensor-parallel region into a replicated activation.
 * Forward: all-reduce (sum) of the ranks' partial results (a row-parallel linear's
 * outputs). Backward: identity (the sum's gradient is the same for every addend).
 *
 * @param x this rank's partial sum, e.g. (B,T,C)
 * @param group the tensor-parallel group
 * @returns the sum over the group
 */
export function reduceFromTensorRegion(x: Tensor, group: ProcessGroup): Tensor {
  if (group.size === 1) return x;
  const out = fresh(x).copy_(x);
  group.allReduce(out);
  return record(out, {
    name: "reduceFromTensorRegion",
    inputs: [x],
    backward(g) {
      if (needsGrad(x)) accumulateInto(gradOf(x), g);
    },
  });
}

function lastDimShard(x: Tensor, group: ProcessGroup, what: string): number {
  const n = x.shape[x.ndim - 1];
  if (n % group.size !== 0) {
    throw new DenotronError(
      `${what}: last dimension ${n} of ${
        fmtShape(x.shape)
      } is not divisible by the group size ${group.size}`,
    );
  }
  return n / group.size;
}

/** Copies column block `q` of width w between a (rows, w·k) and a (rows, w) host array. */
function columnBlock(
  full: Float32Array,
  part: Float32Array,
  rows: number,
  w: number,
  k: number,
  q: number,
  toPart: boolean,
): void {
  for (let r = 0; r < rows; r++) {
    const f = r * w * k + q * w, p = r * w;
    if (toPart) part.set(full.subarray(f, f + w), p);
    else full.set(part.subarray(p, p + w), f);
  }
}

/**
 * Splits a replicated activation along its last dimension, keeping this rank's block.
 * Forward: slice. Backward: all-gather of the blocks' gradients along the last dim.
 * The strided copies pass through the host: this op is for layer outputs that must be
 * reassembled (tests, `gatherOutput`), not for the training path of GPT.
 *
 * @param x replicated (..., n)
 * @param group the tensor-parallel group; its size divides n
 * @returns (..., n/size)
 */
export function scatterToLastDim(x: Tensor, group: ProcessGroup): Tensor {
  if (group.size === 1) return x;
  const w = lastDimShard(x, group, "scatterToLastDim");
  const rows = x.numel / (w * group.size);
  const part = new Float32Array(rows * w);
  columnBlock(x.toArray() as Float32Array, part, rows, w, group.size, group.rank, true);
  const out = fresh(x, [...x.shape.slice(0, -1), w]).copyFromHost(part);
  return record(out, {
    name: "scatterToLastDim",
    inputs: [x],
    backward(g) {
      if (!needsGrad(x)) return;
      const gathered = gatherLastDimValues(g, group);
      accumulateInto(gradOf(x), gathered);
      gathered.dispose();
    },
  });
}

function gatherLastDimValues(x: Tensor, group: ProcessGroup): Tensor {
  const w = x.shape[x.ndim - 1];
  const rows = x.numel / w;
  // Rank-major blocks first (contiguous for allGather), then interleave the columns.
  const stacked = Tensor.empty([group.size * x.numel], { dtype: "f32", device: x.device });
  const mine = stacked.view([x.numel], group.rank * x.numel);
  mine.copy_(x);
  group.allGather(mine, stacked);
  mine.dispose();
  const host = stacked.toArray() as Float32Array;
  stacked.dispose();
  const full = new Float32Array(rows * w * group.size);
  for (let q = 0; q < group.size; q++) {
    columnBlock(
      full,
      host.subarray(q * rows * w, (q + 1) * rows * w),
      rows,
      w,
      group.size,
      q,
      false,
    );
  }
  return fresh(x, [...x.shape.slice(0, -1), w * group.size]).copyFromHost(full);
}

/**
 * Joins the ranks' blocks along the last dimension.
 * Forward: all-gather along the last dim. Backward: slice (each rank keeps the gradient
 * of its own block). Host copies, as in {@linkcode scatterToLastDim}.
 *
 * @param x this rank's block (..., w)
 * @param group the tensor-parallel group
 * @returns (..., w·size), the same on every rank
 */
export function gatherFromLastDim(x: Tensor, group: ProcessGroup): Tensor {
  if (group.size === 1) return x;
  if (x.dtype !== "f32") {
    throw new DenotronError(`gatherFromLastDim: only f32 activations, got ${x.describe()}`);
  }
  const out = gatherLastDimValues(x, group);
  const w = x.shape[x.ndim - 1];
  const rows = x.numel / w;
  return record(out, {
    name: "gatherFromLastDim",
    inputs: [x],
    backward(g) {
      if (!needsGrad(x)) return;
      const part = new Float32Array(rows * w);
      columnBlock(g.toArray() as Float32Array, part, rows, w, group.size, group.rank, true);
      const mine = fresh(x).copyFromHost(part);
      accumulateInto(gradOf(x), mine);
      mine.dispose();
    },
  });
}

/**
 * This rank's chunk of `rows` token rows under sequence parallelism.
 *
 * @returns the first row and the row count
 */
export function sequenceShard(rows: number, group: ProcessGroup): { start: number; rows: number } {
  if (rows % group.size !== 0) {
    throw new DenotronError(
      `sequence parallelism: ${rows} token rows (micro-batch × sequence length) are not divisible by the tensor-parallel size ${group.size}`,
    );
  }
  const n = rows / group.size;
  return { start: n * group.rank, rows: n };
}

/**
 * Exit of a tensor-parallel region into a sequence-parallel one.
 * Forward: reduce-scatter (sum over the group, each rank keeping its chunk of token
 * rows). Backward: all-gather of the chunks' gradients.
 *
 * @param x this rank's partial (B,T,C)
 * @param group the tensor-parallel group
 * @returns (B·T/size, C), this rank's rows of the sum
 */
export function scatterToSequenceRegion(x: Tensor, group: ProcessGroup): Tensor {
  const C = x.shape[x.ndim - 1];
  const rows = x.numel / C;
  const { rows: n } = sequenceShard(rows, group);
  const out = fresh(x, [n, C]);
  group.reduceScatter(x, out);
  return record(out, {
    name: "scatterToSequenceRegion",
    inputs: [x],
    backward(g) {
      if (!needsGrad(x)) return;
      const full = fresh(g, x.shape);
      group.allGather(g, full);
      accumulateInto(gradOf(x), full);
      full.dispose();
    },
  });
}

/**
 * Entry of a tensor-parallel region from a sequence-parallel one.
 * Forward: all-gather of the token-row chunks into the full (B,T,C). Backward:
 * reduce-scatter (each rank's column-parallel part contributes to every row's gradient;
 * the sum is kept for this rank's rows only) — or, when every rank computes the same
 * thing from the full activation (BERT's pooler and its heads), so that each holds the
 * whole gradient already, this rank's rows of it.
 *
 * @param x this rank's rows (B·T/size, C)
 * @param group the tensor-parallel group
 * @param shape the full shape, e.g. [B, T, C]
 * @param gradient "partial": each rank's gradient is a part of the sum; "replicated":
 *   every rank holds the whole gradient @default "partial"
 * @returns the full activation, the same on every rank
 */
export function gatherFromSequenceRegion(
  x: Tensor,
  group: ProcessGroup,
  shape: readonly number[],
  gradient: "partial" | "replicated" = "partial",
): Tensor {
  const out = fresh(x, shape);
  if (out.numel !== x.numel * group.size) {
    throw new DenotronError(
      `gatherFromSequenceRegion: ${group.size} chunks of ${fmtShape(x.shape)} do not make ${
        fmtShape(shape)
      }`,
    );
  }
  group.allGather(x, out);
  return record(out, {
    name: "gatherFromSequenceRegion",
    inputs: [x],
    backward(g) {
      if (!needsGrad(x)) return;
      if (gradient === "replicated") {
        const mine = g.view(x.shape, group.rank * x.numel);
        accumulateInto(gradOf(x), mine);
        mine.dispose();
        return;
      }
      const mine = fresh(x);
      group.reduceScatter(g, mine);
      accumulateInto(gradOf(x), mine);
      mine.dispose();
    },
  });
}
