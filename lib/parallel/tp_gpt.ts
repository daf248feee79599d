/**
 * defines: TensorParallelGPTOptions, TensorParallelGPT, validateTensorParallel
 *
 * GPT-2 (the architecture of lib/nn/gpt.ts) with its layers split across a
 * tensor-parallel group: heads and MLP columns per rank, the vocabulary per rank, and
 * optionally the layernorm/dropout/residual regions split along the token rows
 * (sequence parallelism). Parameter names and full shapes are those of the
 * single-process GPT, and each rank's values are its slices of that model's weights.
 *
 * One layer, tensor-parallel (tp ranks; SP adds the bracketed parts):
 *
 *   x ─ ln1 ─ [all-gather] ─ qkv (column) ─ attention (heads/tp) ─ proj (row) ─
 *     all-reduce [reduce-scatter] ─ dropout ─ + x ─ ln2 ─ [all-gather] ─ fc (column) ─
 *     GELU ─ proj (row) ─ all-reduce [reduce-scatter] ─ dropout ─ +
 *
 * @module
 */
import { attention } from "../ops/attention.ts";
import { add, addScaled, dropout } from "../ops/elementwise.ts";
import { linear, linearGelu } from "../ops/matmul.ts";
import { type Device, device as getDevice } from "../device.ts";
import { DenotronError } from "../errors.ts";
import { type GPTConfig, gptConfigWithDefaults, type GPTOptions } from "../nn/gpt.ts";
import { LayerNorm } from "../nn/layers.ts";
import { FlatParameters, Module } from "../nn/module.ts";
import { Generator } from "../random.ts";
import { Tensor } from "../tensor.ts";
import { PAD_LOGIT, padRows, vocabParallelCrossEntropy } from "./cross_entropy.ts";
import { copyToTensorRegion, gatherFromSequenceRegion, sequenceShard } from "./mappings.ts";
import type { ProcessGroup } from "./process_group.ts";
import { checkpoint, recomputeGroups, type RecomputeOptions } from "../nn/recompute.ts";
import {
  ColumnParallelLinear,
  initTensorParallelParams,
  recordOwner,
  RowParallelLinear,
  setTensorParallelInfo,
  syncTensorParallelGrads,
  VocabParallelEmbedding,
} from "./tp_layers.ts";

/** Options of a {@linkcode TensorParallelGPT}. */
export interface TensorParallelGPTOptions extends GPTOptions {
  /** The tensor-parallel group (a group of one runs the same code unsplit). */
  group: ProcessGroup;
  /** Split the layernorm and dropout regions along the token rows. @default false */
  sequenceParallel?: boolean;
  /** Activation recomputation. @default none */
  recompute?: RecomputeOptions | null;
}

/**
 * Throws a sentence when `tp` cannot split `config`.
 *
 * @example
 * ```ts
 * import { validateTensorParallel } from "./tp_gpt.ts";
 * try {
 *   validateTensorParallel({ vocabSize: 64, blockSize: 8, nLayer: 2, nHead: 16, nEmbd: 32 }, 3);
 * } catch (e) {
 *   console.log((e as Error).message); // tensorModelParallelSize 3 does not divide numAttentionHeads 16 ...
 * }
 * ```
 */
export function validateTensorParallel(config: GPTConfig, tp: number): void {
  if ((config.vocabMultiple ?? 1) !== 1) {
    throw new DenotronError(
      `vocabMultiple ${config.vocabMultiple} applies to single-device models; tensor and ` +
        `pipeline parallelism split (and pad) the vocabulary themselves: leave it at 1`,
    );
  }
  const hidden = config.ffnHidden ?? 4 * config.nEmbd;
  const checks: [string, number][] = [
    ["numAttentionHeads", config.nHead],
    ["ffnHiddenSize", hidden],
  ];
  for (const [name, v] of checks) {
    if (v % tp !== 0) {
      throw new DenotronError(
        `tensorModelParallelSize ${tp} does not divide ${name} ${v}; choose a size that divides it`,
      );
    }
  }
}

/** Dropout on a residual branch (knows the stream's position and this rank's rows). */
export type Drop = (x: Tensor) => Tensor;

/** Causal self-attention with this rank's heads: q, k, v column-split, the output row-split. */
export class ParallelAttention extends Module {
  /** (C, 3C/tp): the q, k and v of this rank's heads */
  readonly qkv: ColumnParallelLinear;
  /** (C/tp → C): the output projection, summed over the group */
  readonly proj: RowParallelLinear;
  /** Heads on this rank: nHead/tp. */
  readonly nHeadLocal: number;
  /** Selective recomputation: keep only qkv and rerun the core attention in backward. */
  recomputeCoreAttention = false;
  /** Builds the layer of `c` for the group and device of `o`. */
  constructor(c: Required<GPTConfig>, o: LayerOpts) {
    super();
    this.nHeadLocal = c.nHead / o.group.size;
    this.qkv = this.child(
      "qkv",
      new ColumnParallelLinear(c.nEmbd, 3 * c.nEmbd, { ...o, parts: 3 }),
    );
    this.proj = this.child(
      "proj",
      new RowParallelLinear(c.nEmbd, c.nEmbd, { ...o, std: o.projStd }),
    );
  }
  /** (B,T,C), or (B·T/tp, C) under SP → the same; `full` is the full (B,T,C). */
  forward(x: Tensor, full: readonly number[]): Tensor {
    const qkv = this.qkv.forward(x, full); // (B,T,3C/tp): this rank's heads' q, k, v
    const core = (q: Tensor) => attention(q, this.nHeadLocal);
    const y = this.recomputeCoreAttention ? checkpoint(qkv, core) : core(qkv); // (B,T,C/tp)
    return this.proj.forward(y); // (B,T,C), or (B·T/tp, C) under SP
  }
}

/** The GELU feed-forward layer: the first linear column-split, the second row-split. */
export class ParallelMLP extends Module {
  /** (C → ffnHidden/tp) */
  readonly fc: ColumnParallelLinear;
  /** (ffnHidden/tp → C), summed over the group */
  readonly proj: RowParallelLinear;
  /** Builds the layer of `c` for the group and device of `o`. */
  constructor(c: Required<GPTConfig>, o: LayerOpts) {
    super();
    this.fc = this.child("fc", new ColumnParallelLinear(c.nEmbd, c.ffnHidden, o));
    this.proj = this.child(
      "proj",
      new RowParallelLinear(c.ffnHidden, c.nEmbd, { ...o, std: o.projStd }),
    );
  }
  /** (B,T,C), or (B·T/tp, C) under SP → the same; `full` is the full (B,T,C). */
  forward(x: Tensor, full: readonly number[]): Tensor {
    // (B,T,hidden/tp): this rank's columns of fc, bias and GELU in one call
    return this.proj.forward(linearGelu(this.fc.enter(x, full), this.fc.weight, this.fc.bias));
  }
}

/** What every tensor-parallel layer of a GPT is built with. */
export interface LayerOpts {
  /** The tensor-parallel group. */
  group: ProcessGroup;
  /** Where the parameters live. */
  device: Device;
  /** Whether activations outside the TP regions are split along the token rows. */
  sequenceParallel: boolean;
  /** Initialisation std of the output projections (0.02/√(2·nLayer)). */
  projStd: number;
  /** Parameter dtype. */
  dtype?: GPTOptions["dtype"];
}

/** A replicated layernorm whose gradient is summed over the group under SP. */
export function parallelLayerNorm(width: number, eps: number, o: LayerOpts): LayerNorm {
  const ln = new LayerNorm(width, { eps, device: o.device, dtype: o.dtype });
  // Under SP each rank normalises only its rows, so each holds part of the gradient.
  for (const t of [ln.weight, ln.bias]) {
    setTensorParallelInfo(t, {
      fullShape: t.shape,
      spec: { kind: "replicated" },
      sumGrad: o.sequenceParallel,
    });
  }
  return ln;
}

/** One pre-LN transformer layer split across the tensor-parallel group. */
export class ParallelBlock extends Module {
  /** Layernorm before attention. */
  readonly ln1: LayerNorm;
  /** The tensor-parallel attention. */
  readonly attn: ParallelAttention;
  /** Layernorm before the MLP. */
  readonly ln2: LayerNorm;
  /** The tensor-parallel MLP. */
  readonly mlp: ParallelMLP;
  /** Builds the layer of `c` for the group and device of `o`. */
  constructor(c: Required<GPTConfig>, o: LayerOpts) {
    super();
    this.ln1 = this.child("ln1", parallelLayerNorm(c.nEmbd, c.layerNormEps, o));
    this.attn = this.child("attn", new ParallelAttention(c, o));
    this.ln2 = this.child("ln2", parallelLayerNorm(c.nEmbd, c.layerNormEps, o));
    this.mlp = this.child("mlp", new ParallelMLP(c, o));
  }
  /**
   * x + attn(ln1(x)), then + mlp(ln2(·)), each branch through `drop`: (B,T,C), or
   * (B·T/tp, C) under SP; `full` is the full (B,T,C). `branchScale` multiplies both
   * residual branches (progressive layer dropping's 1 / keep probability).
   */
  forward(x: Tensor, full: readonly number[], drop: Drop, branchScale = 1): Tensor {
    const residual = (r: Tensor, f: Tensor) =>
      branchScale === 1 ? add(r, f) : addScaled(r, f, branchScale);
    const x1 = residual(x, drop(this.attn.forward(this.ln1.forward(x), full)));
    return residual(x1, drop(this.mlp.forward(this.ln2.forward(x1), full)));
  }
}

/**
 * A tensor-parallel GPT. Every rank of `group` builds it with the same config and seed.
 *
 * @example
 * ```ts
 * import { SingleProcessGroup } from "./process_group.ts";
 * import { TensorParallelGPT } from "./tp_gpt.ts";
 * const group = new SingleProcessGroup("tp", 0);
 * const m = new TensorParallelGPT(
 *   { vocabSize: 64, blockSize: 8, nLayer: 1, nHead: 2, nEmbd: 16 },
 *   { group },
 * );
 * console.log(m.numParameters());
 * m.dispose();
 * ```
 */
export class TensorParallelGPT extends Module {
  /** The model config with defaults filled in. */
  readonly config: Required<GPTConfig>;
  /** Token (vocabulary-split) and position embeddings. */
  readonly emb: VocabParallelEmbedding;
  /** The transformer layers. */
  readonly blocks: ParallelBlock[];
  /** The final layernorm. */
  readonly lnf: LayerNorm;
  /** This rank's parameters, in one flat buffer. */
  readonly params: FlatParameters;
  /** The dropout stream; it advances by the full tensor's counters on every rank. */
  readonly rng: Generator;
  /** The tensor-parallel group. */
  readonly group: ProcessGroup;
  /** Whether activations outside the TP regions are split along the token rows. */
  readonly sequenceParallel: boolean;
  /** Activation recomputation, or null for none. */
  readonly recompute: RecomputeOptions | null;

  /** Builds this rank's shard of the model of `config` (same config and seed on every rank). */
  constructor(config: GPTConfig, opts: TensorParallelGPTOptions) {
    super();
    const c = gptConfigWithDefaults(config);
    validateTensorParallel(config, opts.group.size);
    this.config = c;
    this.group = opts.group;
    this.sequenceParallel = opts.sequenceParallel ?? false;
    const device = opts.device ?? getDevice();
    const seed = opts.seed ?? 1337;
    const o: LayerOpts = {
      group: opts.group,
      device,
      dtype: opts.dtype,
      sequenceParallel: this.sequenceParallel,
      projStd: 0.02 / Math.sqrt(2 * c.nLayer),
    };
    this.emb = this.child("emb", new VocabParallelEmbedding(c.vocabSize, c.blockSize, c.nEmbd, o));
    this.blocks = [];
    for (let i = 0; i < c.nLayer; i++) {
      this.blocks.push(this.child(`h.${i}`, new ParallelBlock(c, o)));
    }
    this.lnf = this.child("lnf", parallelLayerNorm(c.nEmbd, c.layerNormEps, o));
    recordOwner(this, opts.group);
    this.params = new FlatParameters(this, device, seed);
    initTensorParallelParams(this.params, seed);
    this.rng = new Generator(seed);
    this.recompute = opts.recompute ?? null;
    setSelectiveRecompute(this.blocks, this.recompute);
  }

  /** Where the parameters live. */
  get device(): Device {
    return this.params.data.device;
  }

  /**
   * This rank's columns of the logits.
   *
   * @param tokens int32 (B,T)
   * @returns (B,T,V/tp+1): this rank's vocabulary columns and the pad column
   */
  forward(tokens: Tensor): Tensor {
    const [B, T] = tokens.shape;
    const C = this.config.nEmbd;
    const full = [B, T, C];
    const p = this.training ? this.config.dropout : 0;
    const drop = makeDrop(this.rng, p, B * T * C, C, this.sequenceParallel ? this.group : null);
    const wext = padRows(this.emb.wte); // (V/tp+1, C)
    let x = drop(this.emb.forward(tokens, wext));
    x = runLayers(this.blocks, x, full, drop, this.rng, this.recompute);
    return vocabParallelLogits(
      this.lnf.forward(x),
      wext,
      this.group,
      this.sequenceParallel,
      full,
      this.config.vocabSize - this.emb.vocabStart,
    );
  }

  /**
   * Mean next-token cross-entropy, the same on every rank; the full logits are never
   * formed.
   */
  loss(tokens: Tensor, targets: Tensor): Tensor {
    return vocabParallelCrossEntropy(
      this.forward(tokens),
      targets,
      this.group,
      this.emb.vocabStart,
    );
  }

  /** Sums partial gradients of replicated parameters over the group (after backward). */
  syncGrads(): void {
    syncTensorParallelGrads(this, this.group);
  }

  /** Frees the parameters (idempotent). */
  dispose(): void {
    if (!this.params.data.disposed) this.params.dispose();
  }

  /** Same as {@linkcode TensorParallelGPT.dispose}. */
  [Symbol.dispose](): void {
    this.dispose();
  }
}

/**
 * Dropout for the residual branches: each rank takes the whole tensor's counters and,
 * under sequence parallelism, uses its rows' part, so the masks are those of the
 * unsplit run.
 *
 * @param rng the stream
 * @param p drop probability (0: identity, no counters taken)
 * @param numel elements of the full (B,T,C) activation
 * @param C the width
 * @param sequenceGroup the TP group under SP, else null
 */
export function makeDrop(
  rng: Generator,
  p: number,
  numel: number,
  C: number,
  sequenceGroup: ProcessGroup | null,
): Drop {
  const shard = sequenceGroup ? sequenceShard(numel / C, sequenceGroup) : null;
  return (x) => {
    if (p === 0 || !shard) return dropout(x, p, rng);
    const { seed, offset } = rng.take(numel);
    const g = new Generator(seed);
    g.offset = offset + shard.start * C;
    return dropout(x, p, g);
  };
}

/**
 * The tied output layer: the final activation enters the tensor-parallel region and
 * meets this rank's extended vocabulary shard.
 *
 * @param x (B,T,C), or this rank's rows under SP
 * @param wext `padRows(wte)`, (V/tp+1, C)
 * @param realColumns this rank's columns that are real tokens; the rest (vocabulary
 *   padding) are pinned to PAD_LOGIT like the pad column, so the softmax is the unpadded one
 * @returns (B,T,V/tp+1), the pad column pinned to PAD_LOGIT
 */
export function vocabParallelLogits(
  x: Tensor,
  wext: Tensor,
  group: ProcessGroup,
  sequenceParallel: boolean,
  full: readonly number[],
  realColumns: number = wext.shape[0] - 1,
): Tensor {
  const h = sequenceParallel
    ? gatherFromSequenceRegion(x, group, full)
    : copyToTensorRegion(x, group);
  const padBias = new Float32Array(wext.shape[0]);
  padBias.fill(PAD_LOGIT, Math.min(Math.max(0, realColumns), wext.shape[0] - 1));
  let bias = Tensor.fromArray(padBias, [padBias.length], { device: h.device });
  if (h.dtype !== "f32") bias = bias.cast(h.dtype);
  return linear(h, wext, bias);
}

/** Turns the core-attention checkpoint on in every block when recomputation is selective. */
export function setSelectiveRecompute(
  blocks: readonly ParallelBlock[],
  o: RecomputeOptions | null,
): void {
  for (const b of blocks) b.attn.recomputeCoreAttention = o?.granularity === "selective";
}

/**
 * Runs consecutive layers, each group of {@linkcode recomputeGroups} inside one
 * checkpoint (its input kept, its inside recomputed in backward with the same dropout
 * counters). `scales`, if given, holds each block's residual-branch scale.
 */
export function runLayers(
  blocks: readonly ParallelBlock[],
  x: Tensor,
  full: readonly number[],
  drop: Drop,
  rng: Generator,
  recompute: RecomputeOptions | null,
  scales?: readonly number[],
): Tensor {
  const groups = new Map(recomputeGroups(blocks.length, recompute).map((g) => [g[0], g]));
  const run = (j: number, a: Tensor) => blocks[j].forward(a, full, drop, scales?.[j] ?? 1);
  for (let i = 0; i < blocks.length;) {
    const g = groups.get(i);
    if (g) {
      x = checkpoint(x, (h) => g.reduce((a, j) => run(j, a), h), rng);
      i += g.length;
    } else {
      x = run(i++, x);
    }
  }
  return x;
}
