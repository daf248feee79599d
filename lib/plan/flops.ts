/**
 * Floating-point operations of a training step (Narayanan et al. 2021).
 *
 * defines: layerForwardFlops, logitForwardFlops, flopsPerStep, narayananFlops
 *
 * @module
 */

import type { Recompute } from "./layout.ts";
import { type ModelConfig, outputRows, resolveModel } from "./model.ts";

/** Forward FLOPs of one layer for a batch of `b` sequences, split by kind. */
export interface LayerFlops {
  /** Weight GEMMs: QKV, attention output, FFN. 24·b·s·h² for a GPT layer. */
  dense: number;
  /** Attention scores and their product with values: 4·b·s²·h. */
  attention: number;
  /** Sum of the two. */
  total: number;
}

/**
 * Forward FLOPs of one transformer layer (2 FLOPs per multiply-add). The attention term
 * is the full s×s: a decoder's causal mask is not credited, as in the paper, and an
 * encoder's bidirectional attention computes all of it.
 *
 * @param model the model
 * @param batch sequences `b`
 * @returns FLOPs by kind
 * @example
 * ```ts
 * import { layerForwardFlops } from "./flops.ts";
 * const f = layerForwardFlops({ numLayers: 1, hiddenSize: 8, numAttentionHeads: 2, vocabSize: 1, seqLength: 4 }, 1);
 * console.assert(f.dense === 24 * 4 * 64 && f.attention === 4 * 16 * 8);
 * ```
 */
export function layerForwardFlops(model: ModelConfig, batch: number): LayerFlops {
  const m = resolveModel(model);
  const h = m.hiddenSize;
  const s = m.seqLength;
  const kv = (m.numQueryGroups * h) / m.numAttentionHeads;
  const ffnIn = m.ffnHiddenSize * (m.swiglu ? 2 : 1);
  const dense = 2 * batch * s * (h * (h + 2 * kv) + h * h + h * ffnIn + m.ffnHiddenSize * h);
  const attention = 4 * batch * s * s * h;
  return { dense, attention, total: dense + attention };
}

/**
 * Forward FLOPs of what follows the last layer. A decoder's logit layer: 2·b·s·h·V. An
 * encoder's masked-LM head at its `R = outputRows(b·s)` masked rows, dense and output
 * layer: 2·R·h·(h + V); and on each sequence's first token the pooler 2·b·h² and the
 * binary head 2·b·h·2.
 *
 * @param model the model
 * @param batch sequences `b`
 * @returns FLOPs
 * @example
 * ```ts
 * import { logitForwardFlops } from "./flops.ts";
 * const m = { numLayers: 1, hiddenSize: 8, numAttentionHeads: 2, vocabSize: 10, seqLength: 4 };
 * console.assert(logitForwardFlops(m, 1) === 640);
 * // an encoder: one masked row of the 4, then the pooler and binary head of the one sequence
 * console.assert(logitForwardFlops({ ...m, encoder: {} }, 1) === 2 * 8 * 18 + 2 * 64 + 2 * 16);
 * ```
 */
export function logitForwardFlops(model: ModelConfig, batch: number): number {
  const m = resolveModel(model);
  const h = m.hiddenSize;
  const rows = outputRows(m, batch * m.seqLength);
  const e = m.encoder;
  if (!e) return 2 * rows * h * m.vocabSize;
  const pooled = (e.pooler ? h * h : 0) + (e.binaryHead ? 2 * h : 0);
  return 2 * rows * h * (h + m.vocabSize) + 2 * batch * pooled;
}

/** FLOPs of one training step over the whole global batch. */
export interface StepFlops {
  /** Model FLOPs: forward + backward (3× forward), what MFU counts. */
  model: number;
  /** Hardware FLOPs: model FLOPs plus recomputation, what HFU counts. */
  hardware: number;
}

/**
 * FLOPs of one step. Backward costs twice the forward; full recomputation repeats each
 * layer's forward (not the logit layer's); selective recomputation repeats the attention
 * scores and their product with values.
 *
 * @param model the model
 * @param globalBatchSize sequences per step `B`
 * @param recompute the recomputation mode
 * @default recompute "none"
 * @returns model and hardware FLOPs
 * @example
 * ```ts
 * import { flopsPerStep, narayananFlops } from "./flops.ts";
 * import { MODEL_PRESETS } from "./model.ts";
 * const m = MODEL_PRESETS["megatron-1t"];
 * const f = flopsPerStep(m, 3072, "full");
 * console.assert(Math.abs(f.hardware / narayananFlops(m, 3072, true) - 1) < 1e-12);
 * ```
 */
export function flopsPerStep(
  model: ModelConfig,
  globalBatchSize: number,
  recompute: Recompute = "none",
): StepFlops {
  const m = resolveModel(model);
  const layer = layerForwardFlops(m, globalBatchSize);
  const forward = m.numLayers * layer.total + logitForwardFlops(m, globalBatchSize);
  const modelFlops = 3 * forward;
  const extra = recompute === "full"
    ? m.numLayers * layer.total
    : recompute === "selective"
    ? m.numLayers * layer.attention
    : 0;
  return { model: modelFlops, hardware: modelFlops + extra };
}

/**
 * Narayanan et al. 2021's closed form for a GPT with FFN 4h: without recomputation
 * 72·B·s·l·h²·(1 + s/(6h) + V/(12·l·h)); with full recomputation
 * 96·B·s·l·h²·(1 + s/(6h) + V/(16·l·h)).
 *
 * @param model the model (its FFN size is taken to be 4h)
 * @param globalBatchSize `B`
 * @param fullRecompute whether every layer's forward is repeated
 * @returns FLOPs per step
 * @example
 * ```ts
 * import { narayananFlops } from "./flops.ts";
 * const m = { numLayers: 1, hiddenSize: 6, numAttentionHeads: 1, vocabSize: 12, seqLength: 6 };
 * console.assert(narayananFlops(m, 1, false) === 72 * 6 * 36 * (1 + 1 / 6 + 12 / 72));
 * ```
 */
export function narayananFlops(
  model: ModelConfig,
  globalBatchSize: number,
  fullRecompute: boolean,
): number {
  const m = resolveModel(model);
  const B = globalBatchSize;
  const s = m.seqLength;
  const l = m.numLayers;
  const h = m.hiddenSize;
  const V = m.vocabSize;
  return fullRecompute
    ? 96 * B * s * l * h * h * (1 + s / (6 * h) + V / (16 * l * h))
    : 72 * B * s * l * h * h * (1 + s / (6 * h) + V / (12 * l * h));
}
