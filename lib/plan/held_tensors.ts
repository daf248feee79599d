/**
 * The memory of Denotron's own pipeline engine, tensor by tensor: what one rank of
 * `runPipeline` (lib/parallel/pipeline.ts) allocates for each micro-batch, what its
 * backward adds for a moment, and the caching allocator's rounding of every block.
 * Checked against the allocator's peak by bench/plan_memory.ts.
 *
 * Three things make it differ from Megatron's count (memory.ts):
 *
 * - **Every forward tensor.** A micro-batch's forward tensors live until its backward
 *   has run (then `runPipeline` frees them, as Megatron does), so a rank holds the
 *   micro-batches in flight in its schedule (1F1B: p − k on stage k) — but all of what
 *   their forwards made, not only what backward reads (each layer's outputs, e.g. both
 *   residual sums).
 * - **Vocabulary copies.** The embedding and the output layer read the vocabulary shard
 *   with a zero row appended, `(V/t + 1)·h`: one copy per table per step
 *   (`PipelineGPT.vocabTables`, lib/parallel/cross_entropy.ts `paddedValues`), one for a
 *   tied table that one rank uses twice; each use's gradient, the same size, exists while
 *   the backward of the layer that used it runs.
 * - **Size classes.** kernels/cpu/runtime.c rounds each block up to 64-byte steps below
 *   4 KiB and to eight classes per power of two above: up to 12.5% more per block.
 *
 * defines: allocatorBlockBytes, HeldTensor, RankTensors, rankTensors, heldBytes
 *
 * @module
 */

import { type ParallelLayout, type ResolvedLayout, resolveLayout } from "./layout.ts";
import { type ModelConfig, outputRows, type ResolvedModel, resolveModel } from "./model.ts";

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
  /**
   * The forward tensors of the micro-batches in flight at the peak (vocabulary copies
   * apart), and the step's micro-batch inputs.
   */
  activations: HeldTensor[];
  /** The step's padded copies of the vocabulary shard, one per table. */
  vocabularyCopies: HeldTensor[];
  /** The gradients the backward pass of the peak holds at once. */
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
  return [...normOutput(x, name), ...tensorRegionEntry(x, `${name} output`)];
}

function normOutput(x: Shape, name: string): HeldTensor[] {
  const rows = (x.n * x.r) / x.h;
  return [
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
}

// With t > 1, an activation's copy into the TP region (all-gather under SP).
function tensorRegionEntry(x: Shape, name: string): HeldTensor[] {
  if (x.t === 1) return [];
  return [{
    name: `${name} entering the TP region (copyToTensorRegion or the SP all-gather)`,
    bytes: x.n * x.h * x.e,
    count: 1,
  }];
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

// The gradients alive in a layer's MLP backward, beside the layer output's. GeLU: the
// GeLU output's gradient and dpre inside linearGelu's backward, while it forms the ln2
// output's. SwiGLU, two ops: the fc output's gradient (gate and up) beside the SwiGLU
// output's, then beside the ln2 output's; the larger pair counts.
function layerBackward(x: Shape): HeldTensor[] {
  const hidden = (x.n * x.m.ffnHiddenSize * x.e) / x.t;
  const output = { name: "gradient of the layer output", bytes: x.n * x.r * x.e, count: 1 };
  const ln2 = { name: "gradient of the ln2 output", bytes: x.n * x.h * x.e, count: 1 };
  if (!x.m.swiglu) {
    return [
      output,
      { name: "gradients of the GeLU output and pre-activation", bytes: hidden, count: 2 },
      ln2,
    ];
  }
  const fc = { name: "gradient of the fc output, gate and up", bytes: 2 * hidden, count: 1 };
  const swiglu = { name: "gradient of the SwiGLU output", bytes: hidden, count: 1 };
  return heldBytes([swiglu]) >= heldBytes([ln2]) ? [output, fc, swiglu] : [output, fc, ln2];
}

/** What a stage's forward makes for one micro-batch, and the gradients its backward holds. */
interface StagePart {
  made: HeldTensor[];
  gradients: HeldTensor[];
}

// The first stage's embedding (lib/parallel/tp_layers.ts VocabParallelEmbedding): the
// shard's token ids, the lookup, and an encoder's token types (added on TP rank 0) and
// post-LN norm of the sum.
function embeddingTensors(x: Shape, vocabGradient: HeldTensor): StagePart {
  const { m, n, e, h, r } = x;
  const made: HeldTensor[] = [
    { name: "token ids in the vocabulary shard (int32)", bytes: 4 * n, count: 1 },
    { name: "embedding output (lib/ops/embedding.ts)", bytes: n * h * e, count: 1 },
  ];
  if (m.encoder) {
    made.push({
      name: "token-type embedding output and its sum with the tokens' (TP rank 0)",
      bytes: n * h * e,
      count: 2,
    });
  }
  if (x.t > 1) {
    made.push({ name: "embedding reduced over the TP group", bytes: n * r * e, count: 1 });
    if (m.maxPositionEmbeddings > 0) {
      // TP ranks other than 0 add a zero position table (rank 0 adds the real one).
      made.push({
        name: "zero position table of TP ranks > 0",
        bytes: m.seqLength * h * e,
        count: 1,
      });
    }
  }
  if (m.encoder?.postNorm) made.push(...normOutput(x, "embedding norm"));
  const gradients = [
    { name: "gradient of the embedding output", bytes: n * h * e, count: 1 },
    vocabGradient,
  ];
  return { made, gradients };
}

// The last stage's output layer (lib/parallel/tp_gpt.ts vocabParallelLogits): a decoder's
// final norm and logits over every token; an encoder's masked-LM head over the R masked
// rows (gathered, dense + GeLU, LayerNorm, the logits with the head's bias), and its
// pooler and binary head on each sequence's first token.
function outputTensors(x: Shape, vocabGradient: HeldTensor): StagePart {
  const { m, n, e, h } = x;
  const rows = outputRows(m, n);
  const made: HeldTensor[] = m.encoder?.postNorm
    ? tensorRegionEntry(x, "last hidden state")
    : norm(x, "final norm");
  if (m.encoder) {
    const b = x.l.microBatchSize;
    made.push(
      {
        name: "masked rows and their labels (int32, lib/nn/heads.ts maskedRows)",
        bytes: 4 * rows,
        count: 2,
      },
      { name: "hidden states of the masked rows (gatherRows)", bytes: rows * h * e, count: 1 },
      {
        name: "masked-LM dense pre-activation and GeLU output (linearActivation)",
        bytes: rows * h * e,
        count: 2,
      },
      ...normOutput({ ...x, n: rows, r: h }, "masked-LM LayerNorm"),
      {
        name: "masked-LM bias with the pad column (plusShardBias)",
        bytes: x.vocabRows * e,
        count: 1,
      },
    );
    if (m.encoder.pooler) {
      if (x.r !== h) {
        made.push({
          name: "hidden states gathered for the pooler (SP)",
          bytes: n * h * e,
          count: 1,
        });
      }
      made.push(
        { name: "first-token rows (int32)", bytes: 4 * b, count: 1 },
        { name: "first tokens, pooler pre-activation and tanh output", bytes: b * h * e, count: 3 },
      );
    }
    if (m.encoder.binaryHead) made.push({ name: "binary-head logits", bytes: 2 * b * e, count: 1 });
  }
  made.push(
    { name: "pad-column bias of the logits", bytes: 4 * x.vocabRows, count: 1 },
    { name: "logits (rows, V/t + 1)", bytes: rows * x.vocabRows * e, count: 1 },
    { name: "cross-entropy targets and log-sum-exp rows", bytes: 4 * rows, count: 2 },
  );
  const gradients: HeldTensor[] = [
    { name: "gradient of the logits", bytes: rows * x.vocabRows * e, count: 1 },
  ];
  if (m.encoder) {
    gradients.push({
      name: "gradient of the masked-LM LayerNorm output",
      bytes: rows * h * e,
      count: 1,
    });
  }
  gradients.push(
    {
      name: m.encoder?.postNorm
        ? "gradient of the last hidden state"
        : "gradient of the final norm output",
      bytes: n * h * e,
      count: 1,
    },
    vocabGradient,
  );
  return { made, gradients };
}

function scale(list: HeldTensor[], times: number): HeldTensor[] {
  return list.map((x) => ({ ...x, count: x.count * times }));
}

/** One backward pass of a rank's schedule: its model chunk, and what is in flight. */
interface BackwardPass {
  /** The chunk whose backward runs. */
  chunk: number;
  /** Micro-batches whose forward has run and backward has not ended, per chunk. */
  inFlight: number[];
  /** The chunk of the forward that comes next (steady state), or null (cooldown). */
  nextForward: number | null;
}

/**
 * The backward passes of stage `k`, in order, with what each finds in flight — the
 * order of lib/parallel/schedules.ts: without virtual stages 1F1B (p − k − 1 forwards,
 * then one forward before each backward; one stage: forward, backward, ...), with them
 * the interleaved 1F1B, whose j-th forward runs chunk ⌊(j mod p·v)/p⌋ and j-th backward
 * the same position's chunk counted from the last, after a warmup of
 * 2·(p − k − 1) + (v − 1)·p forwards (all of them when m = p).
 */
function backwardPasses(p: number, v: number, m: number, k: number): BackwardPass[] {
  const total = m * v;
  const forwardChunk = (j: number) => Math.floor((j % (p * v)) / p);
  const warmup = v === 1
    ? Math.min(p - k - 1, m)
    : m === p
    ? total
    : Math.min(2 * (p - k - 1) + (v - 1) * p, total);
  const inFlight: number[] = new Array(v).fill(0);
  let forwards = 0;
  while (forwards < warmup) inFlight[forwardChunk(forwards++)]++;
  const passes: BackwardPass[] = [];
  for (let i = 0; i < total; i++) {
    // steady state: one forward before each backward; cooldown: backwards only
    if (forwards < total) inFlight[forwardChunk(forwards++)]++;
    const chunk = v - 1 - forwardChunk(i);
    const nextForward = forwards < total ? forwardChunk(forwards) : null;
    passes.push({ chunk, inFlight: [...inFlight], nextForward });
    inFlight[chunk]--;
  }
  return passes;
}

/**
 * What one rank of Denotron's pipeline engine holds at the peak of a step, tensor by
 * tensor: the forward tensors of the micro-batches in flight (`runPipeline` frees each
 * after its backward), the step's vocabulary copies, and the gradients of one backward
 * pass. The peak is the backward pass where these add up to the most: with one stage, any
 * micro-batch's, in the output layer's backward (the logits' gradient and the output
 * weight copy's). An encoder's first stage adds its token types and embedding norm, its
 * last stage the masked-LM head at the masked rows only, the pooler and the binary head
 * (these follow the code; no encoder run has been measured against the allocator).
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
 * // one padded copy of the tied vocabulary for the step, 160 MiB
 * console.assert(heldBytes(r.vocabularyCopies) === 160 * 2 ** 20);
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
  const last = p * v - 1;
  const vocabGradient = (what: string) => ({
    name: `gradient of the ${what} copy`,
    bytes: x.vocabRows * h * e,
    count: 1,
  });
  const layers = m.numLayers / (p * v);
  const layer = l.recomputeGranularity === "full"
    ? [{ name: "checkpointed layer output (lib/nn/recompute.ts)", bytes: n * r * e, count: 1 }]
    : layerTensors(x);
  // The layers' backward: with full recomputation, the rerun of one layer inside its own
  // tidy() beside its gradients.
  const layersBackward = l.recomputeGranularity === "full"
    ? [...layerTensors(x), ...layerBackward(x)]
    : layerBackward(x);
  // What one micro-batch's forward of each chunk creates, and its backward holds at once.
  const forward: HeldTensor[][] = [];
  const backward: HeldTensor[][] = [];
  for (let chunk = 0; chunk < v; chunk++) {
    const virtual = chunk * p + stage;
    const made = scale(layer, layers);
    const gradients: HeldTensor[][] = [layersBackward];
    // An encoder's attention layout (lib/nn/attention.ts paddingLayout), made for each
    // micro-batch that brings none: positions (int32) and spans (two int32) per token.
    if (m.encoder) made.push({ name: "attention layout (paddingLayout)", bytes: 12 * n, count: 1 });
    if (virtual === 0) {
      const part = embeddingTensors(x, vocabGradient("word-embedding"));
      made.push(...part.made);
      gradients.push(part.gradients);
    } else {
      made.push({ name: "received activation", bytes: n * r * e, count: 1 });
    }
    if (virtual === last) {
      const part = outputTensors(x, vocabGradient("output-weight"));
      made.push(...part.made);
      gradients.push(part.gradients);
    }
    // The next stage's gradient is held through the whole backward pass.
    const received = virtual === last
      ? []
      : [{ name: "received gradient", bytes: n * r * e, count: 1 }];
    forward.push(made);
    backward.push([
      ...received,
      ...gradients.reduce((a, g) => (heldBytes(g) > heldBytes(a) ? g : a)),
    ]);
  }
  // The caller's micro-batches (bench/model_parallel.ts makes them on every rank).
  const inputs = [{ name: "micro-batch tokens and targets (int32)", bytes: 4 * n, count: 2 * mb }];
  if (m.encoder) inputs.push({ name: "micro-batch token types (int32)", bytes: 4 * n, count: mb });
  if (m.encoder?.binaryHead) {
    inputs.push({
      name: "micro-batch sentence labels (int32)",
      bytes: 4 * l.microBatchSize,
      count: mb,
    });
  }
  let peak: { activations: HeldTensor[]; workspace: HeldTensor[] } | null = null;
  let most = -1;
  for (const pass of backwardPasses(p, v, mb, stage)) {
    const activations = [
      ...inputs,
      ...pass.inFlight.flatMap((count, c) => scale(forward[c], count)),
    ];
    // The previous stage runs ahead: in the steady state the next forward's input has
    // usually arrived before this backward starts.
    const early = pass.nextForward !== null && pass.nextForward * p + stage > 0
      ? [{ name: "received activation of the next forward", bytes: n * r * e, count: 1 }]
      : [];
    const workspace = [...backward[pass.chunk], ...early];
    const bytes = heldBytes(activations) + heldBytes(workspace);
    if (bytes > most) [most, peak] = [bytes, { activations, workspace }];
  }
  // One padded copy per table for the step: the token table on the first stage, the
  // output layer's rows on the last, one copy when a rank uses one table for both.
  const shared = p === 1 && m.tiedEmbeddings;
  const copy = (what: string) => ({
    name: `padded copy of the ${what} (PipelineGPT.vocabTables)`,
    bytes: x.vocabRows * h * e,
    count: 1,
  });
  const vocabularyCopies = shared
    ? [copy("tied vocabulary, read by the embedding and the output layer")]
    : [
      ...(stage === 0 ? [copy("word-embedding shard")] : []),
      ...(stage === p - 1 ? [copy(m.tiedEmbeddings ? "tied output weights" : "output layer")] : []),
    ];
  return { ...peak!, vocabularyCopies };
}
