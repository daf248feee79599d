/**
 * defines: ShardSpec, TensorParallelInfo, tensorParallelInfo, shardIndices,
 *          ColumnParallelLinear, RowParallelLinear, VocabParallelEmbedding,
 *          initTensorParallelParams, syncTensorParallelGrads
 *
 * Tensor-parallel layers. Every sharded parameter records how it was cut from the full
 * tensor of the single-process model ({@linkcode ShardSpec}); one function,
 * {@linkcode shardIndices}, turns that into the full-tensor index of each local element,
 * and serves initialisation (carve the shard out of the full tensor drawn from the
 * parameter's own stream, so the weights do not depend on the TP size), gradient checks
 * and layout-independent checkpoints.
 *
 * @module
 */
import type { Device } from "../device.ts";
import { DenotronError, fmtShape } from "../errors.ts";
import { add } from "../ops/elementwise.ts";
import { embedding } from "../ops/embedding.ts";
import { linear } from "../ops/matmul.ts";
import type { Norm } from "../nn/layers.ts";
import { type FlatParameters, type Init, Module } from "../nn/module.ts";
import { hashString } from "../random.ts";
import { type DType, DTYPE_CODE, Tensor } from "../tensor.ts";
import { vocabShardTargets } from "./cross_entropy.ts";
import {
  copyToTensorRegion,
  gatherFromSequenceRegion,
  reduceFromTensorRegion,
  scatterToSequenceRegion,
} from "./mappings.ts";
import type { ProcessGroup } from "./process_group.ts";

/**
 * How a local parameter was cut from the full one.
 * - `replicated`: every rank holds the full tensor.
 * - `rows`: dim 0 is consecutive blocks of `blocks` rows each (default one block of every
 *   row; a fused projection's parts, e.g. q, k and v, which differ under grouped-query
 *   attention), each cut into `size` chunks; a rank holds its chunk of every block, blocks
 *   in order. With `paddedRows` (one block only), dim 0 is first padded to that many rows,
 *   so a vocabulary need not divide by the group size; padding rows exist on the ranks only.
 * - `cols`: dim 1 is cut into `size` chunks.
 */
export type ShardSpec =
  | { kind: "replicated" }
  | { kind: "rows"; blocks?: readonly number[]; paddedRows?: number }
  | { kind: "cols" };

/** A parameter's place in the full model. */
export interface TensorParallelInfo {
  /** The single-process shape. */
  fullShape: readonly number[];
  /** How the full tensor is cut across the tensor-parallel group. */
  spec: ShardSpec;
  /**
   * Replicated, but each rank's gradient is only a part (e.g. a bias added on one rank,
   * or a layernorm on a sequence-parallel chunk): {@linkcode syncTensorParallelGrads}
   * sums it over the group.
   */
  sumGrad: boolean;
}

const infos = new WeakMap<Tensor, TensorParallelInfo>();

/** The shard information of `t` (a replicated parameter when none was recorded). */
export function tensorParallelInfo(t: Tensor): TensorParallelInfo {
  return infos.get(t) ?? { fullShape: t.shape, spec: { kind: "replicated" }, sumGrad: false };
}

/** Records `t`'s shard information. @internal */
export function setTensorParallelInfo(t: Tensor, info: TensorParallelInfo): Tensor {
  infos.set(t, info);
  return t;
}

/** Local shape of `fullShape` cut by `spec` among `size` ranks (errors name the misfit). */
export function localShape(
  fullShape: readonly number[],
  spec: ShardSpec,
  size: number,
  name = "parameter",
): number[] {
  if (spec.kind === "replicated") return [...fullShape];
  if (spec.kind === "rows" && spec.paddedRows !== undefined) {
    if (
      (spec.blocks ?? [fullShape[0]]).length !== 1 || spec.paddedRows < fullShape[0] ||
      spec.paddedRows % size !== 0
    ) {
      throw new DenotronError(
        `${name} ${fmtShape(fullShape)}: ${spec.paddedRows} padded rows must be at least ${
          fullShape[0]
        } and divisible by tensorModelParallelSize ${size}`,
      );
    }
    return [spec.paddedRows / size, ...fullShape.slice(1)];
  }
  const out = [...fullShape];
  if (spec.kind === "rows") {
    const blocks = rowBlocks(fullShape, spec, name);
    const bad = blocks.find((b) => b % size !== 0);
    if (bad !== undefined) {
      throw new DenotronError(
        `${name} ${fmtShape(fullShape)}: ${
          blocks.length > 1 ? `its block of ${bad} rows (of ${blocks.join(" + ")})` : "dimension 0"
        } is not divisible by tensorModelParallelSize ${size}`,
      );
    }
    out[0] = fullShape[0] / size;
    return out;
  }
  if (fullShape[1] % size !== 0) {
    throw new DenotronError(
      `${name} ${fmtShape(fullShape)}: dimension 1 (${
        fullShape[1]
      }) is not divisible by tensorModelParallelSize ${size}`,
    );
  }
  out[1] = fullShape[1] / size;
  return out;
}

/** The row counts of a `rows` spec's blocks (checked to cover dim 0). */
function rowBlocks(
  fullShape: readonly number[],
  spec: { blocks?: readonly number[] },
  name: string,
): readonly number[] {
  const blocks = spec.blocks ?? [fullShape[0]];
  if (blocks.reduce((a, b) => a + b, 0) !== fullShape[0]) {
    throw new DenotronError(
      `${name} ${fmtShape(fullShape)}: row blocks ${blocks.join(" + ")} do not cover dimension 0`,
    );
  }
  return blocks;
}

/**
 * The full-tensor flat index of each element of rank `rank`'s shard (−1 for the padding
 * rows of a `paddedRows` spec, which have no full element).
 *
 * @example
 * ```ts
 * import { shardIndices } from "./tp_layers.ts";
 * // (4,2) cut by columns between 2 ranks: rank 1 holds column 1
 * console.log(shardIndices([4, 2], { kind: "cols" }, 1, 2)); // Int32Array [1, 3, 5, 7]
 * ```
 */
export function shardIndices(
  fullShape: readonly number[],
  spec: ShardSpec,
  rank: number,
  size: number,
): Int32Array {
  const numel = fullShape.reduce((a, b) => a * b, 1);
  if (spec.kind === "replicated") return Int32Array.from({ length: numel }, (_, i) => i);
  const local = localShape(fullShape, spec, size);
  const out = new Int32Array(local.reduce((a, b) => a * b, 1));
  let k = 0;
  if (spec.kind === "rows" && spec.paddedRows !== undefined) {
    const rowLen = numel / fullShape[0];
    const first = rank * local[0];
    for (let r = first; r < first + local[0]; r++) {
      for (let j = 0; j < rowLen; j++) out[k++] = r < fullShape[0] ? r * rowLen + j : -1;
    }
  } else if (spec.kind === "rows") {
    const rowLen = numel / fullShape[0];
    let start = 0;
    for (const block of rowBlocks(fullShape, spec, "parameter")) {
      const chunk = block / size;
      const first = (start + rank * chunk) * rowLen;
      for (let i = 0; i < chunk * rowLen; i++) out[k++] = first + i;
      start += block;
    }
  } else {
    const [rows, cols] = fullShape;
    const w = local[1];
    const rest = numel / (rows * cols);
    for (let r = 0; r < rows; r++) {
      for (let c = rank * w; c < (rank + 1) * w; c++) {
        for (let j = 0; j < rest; j++) out[k++] = (r * cols + c) * rest + j;
      }
    }
  }
  return out;
}

/** Options shared by the tensor-parallel layers. */
export interface LayerOptions {
  /** The tensor-parallel group the parameters are sharded over. */
  group: ProcessGroup;
  /** Where the parameters live. */
  device: Device;
  /** Parameter dtype. */
  dtype?: DType;
  /** Standard deviation of the normal initialisation. @default 0.02 */
  std?: number;
  /** Whether activations outside the region are split along the token rows. @default false */
  sequenceParallel?: boolean;
}

/** A module that declares sharded parameters. */
export abstract class ShardedModule extends Module {
  /**
   * Declares parameter `name` as this rank's shard of a `fullShape` tensor cut by `spec`,
   * recording its {@linkcode TensorParallelInfo}.
   */
  protected sharded(
    name: string,
    fullShape: number[],
    spec: ShardSpec,
    init: Init,
    o: LayerOptions,
    sumGrad = false,
  ): Tensor {
    const shape = localShape(fullShape, spec, o.group.size, name);
    const t = this.param(name, shape, init, o.device, o.dtype);
    return setTensorParallelInfo(t, { fullShape, spec, sumGrad });
  }
}

/**
 * y = x Aᵀ + b with A's output rows split across the group: each rank computes its
 * columns of y, (..., nOut/tp). The input enters the region through
 * {@linkcode copyToTensorRegion} (or, under sequence parallelism, the all-gather of
 * {@linkcode gatherFromSequenceRegion}).
 */
export class ColumnParallelLinear extends ShardedModule {
  /** (nOut/tp, nIn) */
  readonly weight: Tensor;
  /** (nOut/tp) or null */
  readonly bias: Tensor | null;
  /** The tensor-parallel group. */
  readonly group: ProcessGroup;
  /** Whether activations outside the region are split along the token rows. */
  readonly sequenceParallel: boolean;
  /**
   * Declares this rank's rows of the weight and bias.
   *
   * @param nIn input features
   * @param nOut output features of the full layer
   * @param o group, device; `blocks`: dim 0's blocks, each cut separately (q, k and v, so
   *   each rank holds the queries, keys and values of its own heads; SwiGLU's gate and up)
   *   @default one block; `bias` @default true
   */
  constructor(
    nIn: number,
    nOut: number,
    o: LayerOptions & { blocks?: readonly number[]; bias?: boolean },
  ) {
    super();
    this.group = o.group;
    this.sequenceParallel = o.sequenceParallel ?? false;
    const spec: ShardSpec = o.blocks ? { kind: "rows", blocks: o.blocks } : { kind: "rows" };
    this.weight = this.sharded("weight", [nOut, nIn], spec, {
      kind: "normal",
      std: o.std ?? 0.02,
    }, o);
    this.bias = (o.bias ?? true) ? this.sharded("bias", [nOut], spec, { kind: "zeros" }, o) : null;
  }
  /**
   * The region's entry: replicated x → x (backward all-reduce), or under sequence
   * parallelism this rank's rows → the full activation of `fullShape`.
   */
  enter(x: Tensor, fullShape: readonly number[]): Tensor {
    return this.sequenceParallel
      ? gatherFromSequenceRegion(x, this.group, fullShape)
      : copyToTensorRegion(x, this.group);
  }
  /** (..., nIn) → (..., nOut/tp); `fullShape` is the input's full shape (for SP). */
  forward(x: Tensor, fullShape: readonly number[] = x.shape): Tensor {
    return linear(this.enter(x, fullShape), this.weight, this.bias);
  }
}

/**
 * y = x Aᵀ + b with A's input columns split across the group: each rank multiplies its
 * slice of the features, (..., nIn/tp), and the partial products leave the region through
 * {@linkcode reduceFromTensorRegion} (or, under sequence parallelism, the reduce-scatter of
 * {@linkcode scatterToSequenceRegion}). The bias is added once, by group rank 0, before
 * the sum; its gradient is summed over the group.
 */
export class RowParallelLinear extends ShardedModule {
  /** (nOut, nIn/tp) */
  readonly weight: Tensor;
  /** (nOut), replicated */
  readonly bias: Tensor | null;
  /** The tensor-parallel group. */
  readonly group: ProcessGroup;
  /** Whether activations outside the region are split along the token rows. */
  readonly sequenceParallel: boolean;
  /**
   * Declares this rank's columns of the weight, and the replicated bias.
   *
   * @param nIn input features of the full layer
   * @param nOut output features
   * @param o group, device; `bias`: whether to add one (default true)
   */
  constructor(nIn: number, nOut: number, o: LayerOptions & { bias?: boolean }) {
    super();
    this.group = o.group;
    this.sequenceParallel = o.sequenceParallel ?? false;
    this.weight = this.sharded("weight", [nOut, nIn], { kind: "cols" }, {
      kind: "normal",
      std: o.std ?? 0.02,
    }, o);
    this.bias = (o.bias ?? true)
      ? this.sharded("bias", [nOut], { kind: "replicated" }, { kind: "zeros" }, o, true)
      : null;
  }
  /**
   * (..., nIn/tp) → (..., nOut) summed over the group; under sequence parallelism
   * (B·T/tp, nOut), this rank's token rows.
   */
  forward(x: Tensor): Tensor {
    const partial = linear(x, this.weight, this.group.rank === 0 ? this.bias : null);
    return this.sequenceParallel
      ? scatterToSequenceRegion(partial, this.group)
      : reduceFromTensorRegion(partial, this.group);
  }
}

/**
 * Token + position (+ token-type) embedding with the token table's rows split across the
 * group: a rank looks up only the tokens of its vocabulary range (the others hit the zero
 * pad row of the extended shard, see `padRows`) and the ranks' results are summed. The
 * position and token-type embeddings are added by group rank 0 only; their gradients are
 * summed over the group. A post-LN model (BERT) normalises the sum: `ln`, replicated, on
 * this rank's rows under sequence parallelism.
 */
export class VocabParallelEmbedding extends ShardedModule {
  /** (V/tp, C) */
  readonly wte: Tensor;
  /** (maxT, C), replicated; null without learned positions (maxPositions 0). */
  readonly wpe: Tensor | null;
  /** (token types, C), replicated; null without token types. */
  readonly wtt: Tensor | null;
  /** The sum's normalisation (BERT's embeddings.LayerNorm); null: none. */
  readonly ln: Norm | null;
  /** The tensor-parallel group. */
  readonly group: ProcessGroup;
  /** Whether activations outside the region are split along the token rows. */
  readonly sequenceParallel: boolean;
  /** The first token id of this rank's rows. */
  readonly vocabStart: number;
  /**
   * Declares this rank's rows of the token table, and the replicated position and
   * token-type tables.
   *
   * @param vocabSize rows of the full token table
   * @param maxPositions rows of the position table; 0: none (rotary positions)
   * @param width embedding width C
   * @param o group, device; `tokenTypes`: rows of the token-type table (default 0: none);
   *   `norm`: the replicated normalisation of the sum, built by the caller (default none)
   */
  constructor(
    vocabSize: number,
    maxPositions: number,
    width: number,
    o: LayerOptions & { tokenTypes?: number; norm?: Norm },
  ) {
    super();
    this.group = o.group;
    this.sequenceParallel = o.sequenceParallel ?? false;
    const init: Init = { kind: "normal", std: o.std ?? 0.02 };
    this.wte = this.sharded("wte", [vocabSize, width], vocabSpec(vocabSize, o.group.size), init, o);
    this.wpe = maxPositions > 0
      ? this.sharded("wpe", [maxPositions, width], { kind: "replicated" }, init, o, true)
      : null;
    const types = o.tokenTypes ?? 0;
    this.wtt = types > 0
      ? this.sharded("wtt", [types, width], { kind: "replicated" }, init, o, true)
      : null;
    this.ln = o.norm ? this.child("ln", o.norm) : null;
    this.vocabStart = this.wte.shape[0] * o.group.rank;
  }
  /**
   * Looks up this rank's tokens and sums the ranks' embeddings.
   *
   * @param tokens int32 (B,T), global ids
   * @param wext the extended shard `padRows(wte)`, (V/tp+1, C)
   * @param positions int32 (B,T): each token's position (packed documents restart at 0)
   *   @default 0..T-1 in every row
   * @param tokenTypes int32 (B,T): each token's segment @default all 0
   * @returns (B,T,C) replicated, or under sequence parallelism (B·T/tp, C)
   */
  forward(tokens: Tensor, wext: Tensor, positions?: Tensor, tokenTypes?: Tensor): Tensor {
    const [, T] = tokens.shape;
    const C = this.wte.shape[1];
    if (tokenTypes && !this.wtt) {
      throw new DenotronError("Embedding: tokenTypes given, but the model has no token types");
    }
    const ids = vocabShardTargets(
      tokens.toArray() as Int32Array,
      this.vocabStart,
      this.wte.shape[0],
      false,
    );
    const local = Tensor.fromArray(ids, tokens.shape, { dtype: "i32", device: tokens.device });
    // the positions and token types are added once, by rank 0, so the sum over the group
    // has them once
    const first = this.group.rank === 0;
    let partial: Tensor; // (B,T,C)
    if (positions && this.wpe) {
      partial = embedding(local, wext, null);
      if (first) partial = add(partial, embedding(positions, this.wpe, null));
    } else {
      const wpe = !this.wpe || first
        ? this.wpe
        : Tensor.zeros([T, C], { dtype: this.wpe.dtype, device: this.wpe.device });
      partial = embedding(local, wext, wpe);
    }
    if (this.wtt && first) {
      const types = tokenTypes ??
        Tensor.zeros(tokens.shape, { dtype: "i32", device: tokens.device });
      partial = add(partial, embedding(types, this.wtt, null));
    }
    const sum = this.sequenceParallel
      ? scatterToSequenceRegion(partial, this.group)
      : reduceFromTensorRegion(partial, this.group);
    return this.ln ? this.ln.forward(sum) : sum;
  }
}

/**
 * Overwrites every sharded, normally-initialised parameter with its slice of the full
 * tensor drawn from the parameter's stream hash(name) ^ seed — the values the
 * single-process model gets — so weights do not depend on the TP size.
 */
export function initTensorParallelParams(flat: FlatParameters, seed: number): void {
  for (const e of flat.entries) {
    const info = tensorParallelInfo(e.tensor);
    if (e.init.kind !== "normal" || info.spec.kind === "replicated") continue;
    const full = Tensor.empty(info.fullShape, { dtype: e.tensor.dtype, device: e.tensor.device });
    const lib = full.device.lib;
    lib.check(
      lib.sym.dn_fill_normal(
        DTYPE_CODE[full.dtype],
        full.ptr,
        BigInt(full.numel),
        0,
        e.init.std,
        BigInt((hashString(e.name) ^ seed) >>> 0),
        0n,
      ),
      `initialising ${e.name}`,
    );
    const values = full.toArray() as Float32Array;
    full.dispose();
    const group = infoGroupSize(e.tensor, info);
    const idx = shardIndices(info.fullShape, info.spec, group.rank, group.size);
    e.tensor.copyFromHost(Float32Array.from(idx, (i) => (i < 0 ? 0 : values[i])));
  }
}

/** Which slice of the group a parameter belongs to: recorded when the model is built. */
const owners = new WeakMap<Tensor, { rank: number; size: number }>();

/** Records the tensor-parallel rank and size a module's parameters were cut for. */
export function recordOwner(m: Module, group: ProcessGroup): void {
  for (const [, t] of m.namedParameters()) owners.set(t, { rank: group.rank, size: group.size });
}

function infoGroupSize(t: Tensor, info: TensorParallelInfo): { rank: number; size: number } {
  const o = owners.get(t);
  if (!o) {
    throw new DenotronError(
      `parameter ${t.describe()} is sharded ${info.spec.kind} but no group was recorded for it`,
    );
  }
  return o;
}

/** The tensor-parallel rank and size of `t`'s shard ({rank 0, size 1} when unsharded). */
export function shardOwner(t: Tensor): { rank: number; size: number } {
  return owners.get(t) ?? { rank: 0, size: 1 };
}

/**
 * Sums over the group the gradients of replicated parameters that each rank only saw
 * part of (row-parallel biases, the position embedding, and under sequence parallelism
 * the layernorms). Call after backward, before clipping and the optimizer step.
 */
export function syncTensorParallelGrads(model: Module, group: ProcessGroup): void {
  if (group.size === 1) return;
  for (const [, t] of model.namedParameters()) {
    if (tensorParallelInfo(t).sumGrad && t.grad) group.allReduce(t.grad);
  }
}

/**
 * The token table's cut: rows padded to the next multiple of the group size (the padding
 * rows are never looked up, and their logits are pinned to PAD_LOGIT).
 */
export function vocabSpec(vocabSize: number, size: number): ShardSpec {
  const padded = Math.ceil(vocabSize / size) * size;
  return padded === vocabSize ? { kind: "rows" } : { kind: "rows", paddedRows: padded };
}
