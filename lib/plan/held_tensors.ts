/**
 * The memory of Denotron's own pipeline engine, tensor by tensor: what one rank of
 * `runPipeline` (lib/parallel/pipeline.ts) allocates for each micro-batch, what its
 * backward adds for a moment, and the caching allocator's rounding of every block.
 * Checked against the allocator's peak by bench/plan_memory.ts.
 *
 * Three things make it differ from Megatron's count (memory.ts):
 *
 * - **Lifetime.** `runPipeline` runs the whole step inside one `tidy()` scope, so every
 *   tensor a forward pass creates lives until the step ends, not until its backward: a
 *   rank holds all m micro-batches (Megatron: p − k in flight), and all of them, not only
 *   what backward reads (each layer's outputs, e.g. both residual sums).
 * - **Vocabulary copies.** `padRows` (lib/parallel/cross_entropy.ts) copies the vocabulary
 *   shard with a zero row appended, `(V/t + 1)·h`, for the embedding and again for the
 *   output layer in every micro-batch; each copy's gradient, the same size, exists while
 *   the backward of the layer that used it runs.
 * - **Size classes.** kernels/cpu/runtime.c rounds each block up to 64-byte steps below
 *   4 KiB and to eight classes per power of two above: up to 12.5% more per block.
 *
 * defines: allocatorBlockBytes, HeldTensor, RankTensors, rankTensors, heldBytes
 *
 * @module
 */

import { type ParallelLayout, type ResolvedLayout, resolveLayout } from "./layout.ts";
import { type ModelConfig, type ResolvedModel, resolveModel } from "./model.ts";

/**
 * Bytes the CPU caching allocator counts for a request (kernels/cpu/runtime.c
 * `size_class`): multiples of 64 up to 4 KiB; above, for 2^k < bytes ≤ 2^(k+1), the next
 * multiple of 2^(k−3).
 *
 * @param bytes the request
 * @returns the block size counted in use
 * @example
 * ```ts
 * import { allocatorBlockBytes } from "./held_tensors.ts";
 * console.assert(allocatorBlockBytes(100) === 128);
 * // a (50305, 768) fp32 copy of GPT-2's padded vocabulary: 147.4 MiB in a 160 MiB block
 * console.assert(allocatorBlockBytes(50305 * 768 * 4) === 160 * 2 ** 20);
 * ```
 */
export function allocatorBlockBytes(bytes: number): number {
  if (bytes <= 4096) return Math.max(1, Math.ceil(bytes / 64)) * 64;
  const k = Math.floor(Math.log2(bytes - 1));
  const step = 2 ** (k - 3);
  return Math.ceil(bytes / step) * step;
}

/** Tensors of one kind that a rank holds. */
export interface HeldTensor {
  /** What it is and which code allocates it. */
  name: string;
  /** Bytes of one tensor, as requested. */
  bytes: number;
  /** How many the rank holds at its peak. */
  count: number;
}

/** What one rank of Denotron's pipeline engine holds at its peak, by kind. */
export interface RankTensors {
  /** Forward tensors of every micro-batch, alive until the step ends (vocabulary copies apart). */
  activations: HeldTensor[];
  /** `padRows` copies of the vocabulary shard, one per use per micro-batch. */
  vocabularyCopies: HeldTensor[];
  /** The largest set of gradients one backward pass holds at once. */
  workspace: HeldTensor[];
}

/**
 * Allocator bytes of a list of tensors: each block rounded by {@linkcode allocatorBlockBytes}.
 *
 * @param tensors the tensors
 * @returns bytes counted in use
 * @example
 * ```ts
 * import { heldBytes } from "./held_tensors.ts";
 * console.assert(heldBytes([{ name: "x", bytes: 100, count: 3 }]) === 384);
 * ```
 */
export function heldBytes(tensors: readonly HeldTensor[]): number {
  return tensors.reduce((sum, x) => sum + x.count * allocatorBlockBytes(x.bytes), 0);
}

/** The shapes one micro-batch of one rank works with. */
interface Shape {
  m: ResolvedModel;
  l: ResolvedLayout;
  /** Tokens of a micro-batch, b·s. */
  n: number;
  /** Bytes per activation element. */
  e: number;
  t: number;
  h: number;
  /** Width per token outside the TP region: h, or h/t under sequence parallelism. */
  r: number;
  /** Rows of this rank's extended vocabulary shard: ceil(V/t) + 1. */
  vocabRows: number;
}

function shapeOf(model: ModelConfig, layout: ResolvedLayout): Shape {
  const m = resolveModel(model);
  const t = layout.tensorModelParallelSize;
  const h = m.hiddenSize;
  const sp = layout.sequenceParallel && t > 1;
  return {
    m,
    l: layout,
    n: layout.microBatchSize * m.seqLength,
    e: layout.precision === "fp32" ? 4 : 2,
    t,
    h,
    r: sp ? h / t : h,
    vocabRows: Math.ceil(m.vocabSize / t) + 1,
  };
}

// A normalisation's output and its per-row statistics (LayerNorm: mean, rstd; RMSNorm:
// rstd), then, with t > 1, its copy into the TP region (all-gather under SP).
function norm(x: Shape, name: string): HeldTensor[] {
  const rows = (x.n * x.r) / x.h;
  const out: HeldTensor[] = [
    {
      name: `${name} output (lib/ops/${x.m.normalization.toLowerCase()}.ts)`,
      bytes: x.n * x.r * x.e,
      count: 1,
    },
    {
      name: `${name} row statistics`,
      bytes: 4 * rows,
      count: x.m.normalization === "RMSNorm" ? 1 : 2,
    },
  ];
  if (x.t > 1) {
    out.push({
      name: `${name} output entering the TP region (copyToTensorRegion or the SP all-gather)`,
      bytes: x.n * x.h * x.e,
      count: 1,
    });
  }
  return out;
}

// A row-parallel linear's partial sum, (n, h), and with t > 1 its all-reduced copy
// (reduce-scatter under SP), then the residual sum.
function rowParallelExit(x: Shape, name: string): HeldTensor[] {
  const out: HeldTensor[] = [{
    name: `${name} partial sum (lib/ops/matmul.ts linear)`,
    bytes: x.n * x.h * x.e,
    count: 1,
  }];
  if (x.t > 1) {
    out.push({
      name: `${name} reduced over the TP group (reduceFromTensorRegion or the SP reduce-scatter)`,
      bytes: x.n * x.r * x.e,
      count: 1,
    });
  }
  out.push({ name: `residual sum after ${name}`, bytes: x.n * x.r * x.e, count: 1 });
  return out;
}

/** Every tensor one transformer layer's forward creates for one micro-batch (dropout 0). */
function layerTensors(x: Shape): HeldTensor[] {
  const { m, n, e, t, h } = x;
  const kv = (m.numQueryGroups * h) / m.numAttentionHeads;
  const qkv = (n * (h + 2 * kv) * e) / t;
  const f = m.ffnHiddenSize;
  const out = [...norm(x, "ln1"), { name: "qkv (column-parallel linear)", bytes: qkv, count: 1 }];
  if (m.maxPositionEmbeddings === 0) {
    out.push({ name: "rotated qkv (lib/ops/rope.ts)", bytes: qkv, count: 1 });
  }
  out.push({ name: "attention output (lib/ops/attention.ts)", bytes: (n * h * e) / t, count: 1 });
  // Selective recomputation reruns the core attention inside its own tidy(): only its
  // output stays, the log-sum-exp rows go.
  if (x.l.recomputeGranularity !== "selective") {
    out.push({
      name: "attention log-sum-exp rows",
      bytes: (4 * n * m.numAttentionHeads) / t,
      count: 1,
    });
  }
  out.push(...rowParallelExit(x, "attention projection"), ...norm(x, "ln2"));
  if (m.swiglu) {
    out.push(
      { name: "fc output, gate and up (linear)", bytes: (2 * n * f * e) / t, count: 1 },
      { name: "SwiGLU output (lib/ops/swiglu.ts)", bytes: (n * f * e) / t, count: 1 },
    );
  } else {
    out.push({
      name: "fc pre-activation and GeLU output (linearGelu)",
      bytes: (n * f * e) / t,
      count: 2,
    });
  }
  out.push(...rowParallelExit(x, "MLP projection"));
  return out;
}

// The gradients alive in a layer's MLP backward: the layer output's and the hidden
// activation's (the GeLU output's gradient and dpre, or SwiGLU's gate and up), and the
// norm output's being formed.
function layerBackward(x: Shape): HeldTensor[] {
  const f = x.m.ffnHiddenSize;
  return [
    { name: "gradient of the layer output", bytes: x.n * x.r * x.e, count: 1 },
    {
      name: "gradients of the MLP's hidden activations",
      bytes: (x.n * f * x.e) / x.t,
      count: x.m.swiglu ? 3 : 2,
    },
    { name: "gradient of the ln2 output", bytes: x.n * x.h * x.e, count: 1 },
  ];
}

function scale(list: HeldTensor[], times: number): HeldTensor[] {
  return list.map((x) => ({ ...x, count: x.count * times }));
}

/**
 * What one rank of Denotron's pipeline engine holds at the peak of a step, tensor by
 * tensor: all `m` micro-batches' forward tensors of its `v` model chunks (the step's
 * `tidy()` frees them at its end), the vocabulary copies, and the largest backward
 * workspace (the output layer's: the logits' gradient and the output weight copy's).
 * The peak comes in the last micro-batch's backward.
 *
 * @param model the model
 * @param layout the layout (even pipeline split; no CP, ZeRO-2/3 or FSDP: Denotron has none)
 * @param stage the pipeline rank, 0-based
 * @returns the tensors, by kind
 * @example
 * ```ts
 * import { heldBytes, rankTensors } from "./held_tensors.ts";
 * import { MODEL_PRESETS } from "./model.ts";
 * const r = rankTensors({ ...MODEL_PRESETS["gpt2-124m"], vocabSize: 50304, seqLength: 64 }, { precision: "fp32" }, 0);
 * // the embedding's and the output layer's copies of the vocabulary, 160 MiB each
 * console.assert(heldBytes(r.vocabularyCopies) === 320 * 2 ** 20);
 * ```
 */
export function rankTensors(
  model: ModelConfig,
  layout: ParallelLayout,
  stage: number,
): RankTensors {
  const l = resolveLayout(layout);
  const x = shapeOf(model, l);
  const { m, n, e, h, r } = x;
  const p = l.pipelineModelParallelSize;
  const v = l.virtualPipelineModelParallelSize;
  const mb = l.globalBatchSize / (l.dataParallelSize * l.microBatchSize);
  const copies: HeldTensor[] = [];
  const copy = (what: string) => ({
    name: `padRows copy of the ${what} (lib/parallel/cross_entropy.ts)`,
    bytes: x.vocabRows * h * e,
    count: mb,
  });
  const workspaces: HeldTensor[][] = [];
  const layers = m.numLayers / (p * v);
  const layer = l.recomputeGranularity === "full"
    ? [{ name: "checkpointed layer output (lib/nn/recompute.ts)", bytes: n * r * e, count: 1 }]
    : layerTensors(x);
  // The caller's micro-batches (bench/model_parallel.ts makes them on every rank).
  const perMicroBatch: HeldTensor[] = [
    { name: "micro-batch tokens and targets (int32)", bytes: 4 * n, count: 2 },
  ];
  for (let chunk = 0; chunk < v; chunk++) {
    const virtual = chunk * p + stage;
    perMicroBatch.push(...scale(layer, layers));
    if (virtual === 0) {
      perMicroBatch.push(
        { name: "token ids in the vocabulary shard (int32)", bytes: 4 * n, count: 1 },
        { name: "embedding output (lib/ops/embedding.ts)", bytes: n * h * e, count: 1 },
      );
      if (x.t > 1) {
        perMicroBatch.push({
          name: "embedding reduced over the TP group",
          bytes: n * r * e,
          count: 1,
        });
        if (m.maxPositionEmbeddings > 0) {
          // TP ranks other than 0 add a zero position table (rank 0 adds the real one).
          perMicroBatch.push({
            name: "zero position table of TP ranks > 0",
            bytes: m.seqLength * h * e,
            count: 1,
          });
        }
      }
      copies.push(copy("word-embedding shard"));
      workspaces.push([{
        name: "gradient of the word-embedding copy",
        bytes: x.vocabRows * h * e,
        count: 1,
      }]);
    } else {
      perMicroBatch.push({ name: "received activation", bytes: n * r * e, count: 1 });
    }
    if (virtual < p * v - 1) {
      perMicroBatch.push({ name: "received gradient", bytes: n * r * e, count: 1 });
      continue;
    }
    perMicroBatch.push(
      ...norm(x, "final norm"),
      { name: "pad-column bias of the logits", bytes: 4 * x.vocabRows, count: 1 },
      { name: "logits (b, s, V/t + 1)", bytes: n * x.vocabRows * e, count: 1 },
      { name: "cross-entropy targets and log-sum-exp rows", bytes: 4 * n, count: 2 },
    );
    copies.push(copy(m.tiedEmbeddings ? "tied output weights" : "output layer"));
    workspaces.push([
      { name: "gradient of the logits", bytes: n * x.vocabRows * e, count: 1 },
      { name: "gradient of the output-weight copy", bytes: x.vocabRows * h * e, count: 1 },
    ]);
  }
  if (l.recomputeGranularity === "full") {
    // The rerun of one layer, inside its own tidy(), during its backward.
    workspaces.push([...layerTensors(x), ...layerBackward(x)]);
  } else workspaces.push(layerBackward(x));
  const workspace = workspaces.reduce((a, w) => (heldBytes(w) > heldBytes(a) ? w : a));
  return { activations: scale(perMicroBatch, mb), vocabularyCopies: copies, workspace };
}
