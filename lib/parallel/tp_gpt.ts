/**
 * defines: validateTensorParallel, ParallelAttention, ParallelMLP, ParallelBlock,
 *          VocabParallelTable, vocabParallelLogits, parallelMaskedLMHead, makeDrop, runLayers
 *
 * The transformer of lib/nn/gpt.ts (GPT-2, a Llama-family config, or BERT's post-LN
 * encoder layers and masked-LM head) with its layers split across a tensor-parallel
 * group: query heads and their key/value groups per rank, MLP columns per rank (SwiGLU's gate and up each split alike), the vocabulary per rank (of
 * the tied token table or the untied head), and optionally the normalisation/dropout/
 * residual regions split along the token rows (sequence parallelism). Parameter names and
 * full shapes are those of the single-process GPT, and each rank's values are its slices
 * of that model's weights.
 *
 * One layer, tensor-parallel (tp ranks; SP adds the bracketed parts):
 *
 *   x ─ ln1 ─ [all-gather] ─ qkv (column) ─ [rope] ─ attention (heads/tp) ─ proj (row) ─
 *     all-reduce [reduce-scatter] ─ dropout ─ + x ─ ln2 ─ [all-gather] ─ fc (column) ─
 *     GELU or SwiGLU ─ proj (row) ─ all-reduce [reduce-scatter] ─ dropout ─ +
 *
 * (Post-LN, BERT: the same regions, each norm after its residual add instead.) The
 * models built of these layers are in lib/parallel/pipeline.ts: `PipelineGPT`, and
 * `TensorParallelGPT`, its one-stage form.
 *
 * @module
 */
import { attention } from "../ops/attention.ts";
import { gradOf, needsGrad, record } from "../autograd.ts";
import { accumulateInto, add, addScaled, dropout } from "../ops/elementwise.ts";
import { gatherRows } from "../ops/embedding.ts";
import { linear, linearActivation } from "../ops/matmul.ts";
import { rope } from "../ops/rope.ts";
import { swiglu } from "../ops/swiglu.ts";
import type { Device } from "../device.ts";
import { DenotronError } from "../errors.ts";
import type { GPTConfig, GPTOptions } from "../nn/gpt.ts";
import type { SequenceLayout } from "../nn/attention.ts";
import { MaskedLMHead } from "../nn/heads.ts";
import { makeNorm, type Norm } from "../nn/layers.ts";
import { Module } from "../nn/module.ts";
import { Generator } from "../random.ts";
import { Tensor } from "../tensor.ts";
import { PAD_LOGIT } from "./cross_entropy.ts";
import { copyToTensorRegion, gatherFromSequenceRegion, sequenceShard } from "./mappings.ts";
import type { ProcessGroup } from "./process_group.ts";
import { checkpoint, recomputeGroups, type RecomputeOptions } from "../nn/recompute.ts";
import {
  ColumnParallelLinear,
  localShape,
  RowParallelLinear,
  setTensorParallelInfo,
  ShardedModule,
  vocabSpec,
} from "./tp_layers.ts";

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
  const groups = config.nKvHead ?? config.nHead;
  if (groups !== config.nHead && tp > groups) {
    throw new DenotronError(
      `tensorModelParallelSize ${tp} is more than numQueryGroups ${groups}: each rank needs ` +
        `at least one key/value group of its own; use a tensor-parallel size of at most ${groups}`,
    );
  }
  const checks: [string, number][] = [
    ["numAttentionHeads", config.nHead],
    ["numQueryGroups", groups],
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

/**
 * Causal self-attention with this rank's query heads and the key/value groups they read:
 * q, k, v column-split (each its own block, so the rank's rows are its queries, then its
 * keys, then its values), the output row-split.
 */
export class ParallelAttention extends Module {
  /** (C → (nHead + 2·nKvHead)·hs/tp): the q, k and v of this rank's heads */
  readonly qkv: ColumnParallelLinear;
  /** (C/tp → C): the output projection, summed over the group */
  readonly proj: RowParallelLinear;
  /** Query heads on this rank: nHead/tp. */
  readonly nHeadLocal: number;
  /** Key/value heads on this rank: nKvHead/tp. */
  readonly nKvHeadLocal: number;
  /** The model's rotary frequencies, or null with learned positions. */
  readonly rope: Tensor | null;
  /** Selective recomputation: keep only qkv and rerun the core attention in backward. */
  recomputeCoreAttention = false;
  /** Builds the layer of `c` for the group and device of `o`. */
  constructor(c: Required<GPTConfig>, o: LayerOpts) {
    super();
    const hs = c.nEmbd / c.nHead;
    this.nHeadLocal = c.nHead / o.group.size;
    this.nKvHeadLocal = c.nKvHead / o.group.size;
    this.rope = o.rope;
    const blocks = [c.nHead * hs, c.nKvHead * hs, c.nKvHead * hs];
    this.qkv = this.child(
      "qkv",
      new ColumnParallelLinear(c.nEmbd, (c.nHead + 2 * c.nKvHead) * hs, {
        ...o,
        blocks,
        bias: c.bias,
      }),
    );
    this.proj = this.child(
      "proj",
      new RowParallelLinear(c.nEmbd, c.nEmbd, { ...o, std: o.projStd, bias: c.bias }),
    );
  }
  /**
   * (B,T,C), or (B·T/tp, C) under SP → the same; `full` is the full (B,T,C); `layout`:
   * packed documents (positions and key ranges of the full rows).
   */
  forward(x: Tensor, full: readonly number[], layout?: SequenceLayout): Tensor {
    let qkv = this.qkv.forward(x, full); // (B,T,·): this rank's heads' q, k, v
    // every rank holds whole sequences here, so positions are the token indices (or
    // the packed documents' own)
    if (this.rope) {
      const heads = { nHead: this.nHeadLocal, nKvHead: this.nKvHeadLocal, invFreq: this.rope };
      qkv = rope(qkv, layout ? { ...heads, positions: layout.positions } : heads);
    }
    const core = (q: Tensor) => attention(q, this.nHeadLocal, this.nKvHeadLocal, layout?.spans);
    const y = this.recomputeCoreAttention ? checkpoint(qkv, core) : core(qkv); // (B,T,C/tp)
    return this.proj.forward(y); // (B,T,C), or (B·T/tp, C) under SP
  }
}

/**
 * The feed-forward layer: the first linear column-split (SwiGLU: gate and up each split,
 * so a rank holds its gate columns then its up columns), the second row-split.
 */
export class ParallelMLP extends Module {
  /** (C → ffnHidden/tp), or (C → 2·ffnHidden/tp) with SwiGLU */
  readonly fc: ColumnParallelLinear;
  /** (ffnHidden/tp → C), summed over the group */
  readonly proj: RowParallelLinear;
  /** "gelu" or "swiglu". */
  readonly activation: "gelu" | "swiglu";
  /** The GELU's form: GPT-2's tanh approximation, or BERT's exact erf. */
  readonly gelu: "tanh" | "erf";
  /** Builds the layer of `c` for the group and device of `o`. */
  constructor(c: Required<GPTConfig>, o: LayerOpts) {
    super();
    this.activation = c.activation;
    this.gelu = c.gelu;
    const h = c.ffnHidden;
    const fc = c.activation === "swiglu"
      ? new ColumnParallelLinear(c.nEmbd, 2 * h, { ...o, blocks: [h, h], bias: c.bias })
      : new ColumnParallelLinear(c.nEmbd, h, { ...o, bias: c.bias });
    this.fc = this.child("fc", fc);
    this.proj = this.child(
      "proj",
      new RowParallelLinear(h, c.nEmbd, { ...o, std: o.projStd, bias: c.bias }),
    );
  }
  /** (B,T,C), or (B·T/tp, C) under SP → the same; `full` is the full (B,T,C). */
  forward(x: Tensor, full: readonly number[]): Tensor {
    const h = this.fc.enter(x, full);
    // (B,T,hidden/tp): this rank's columns; GELU's with fc and its bias in one call
    const a = this.activation === "swiglu"
      ? swiglu(linear(h, this.fc.weight, this.fc.bias))
      : linearActivation(h, this.fc.weight, this.fc.bias, `gelu-${this.gelu}`);
    return this.proj.forward(a);
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
  /** The model's rotary frequencies (owned by the model), or null. */
  rope: Tensor | null;
}

/** A replicated normalisation (the config's kind) whose gradient is summed over the group under SP. */
export function parallelNorm(c: Required<GPTConfig>, o: LayerOpts): Norm {
  const ln = makeNorm(c.normalization, c.nEmbd, {
    eps: c.layerNormEps,
    device: o.device,
    dtype: o.dtype,
  });
  // Under SP each rank normalises only its rows, so each holds part of the gradient.
  for (const t of "bias" in ln ? [ln.weight, ln.bias] : [ln.weight]) {
    setTensorParallelInfo(t, {
      fullShape: t.shape,
      spec: { kind: "replicated" },
      sumGrad: o.sequenceParallel,
    });
  }
  return ln;
}

/**
 * One transformer layer split across the tensor-parallel group, normalising before each
 * branch (GPT-2, Llama) or after each residual (BERT), as lib/nn/block.ts does.
 */
export class ParallelBlock extends Module {
  /** Normalisation of the attention branch: before it (pre-norm), or after its residual. */
  readonly ln1: Norm;
  /** The tensor-parallel attention. */
  readonly attn: ParallelAttention;
  /** Normalisation of the MLP branch: before it (pre-norm), or after its residual. */
  readonly ln2: Norm;
  /** The tensor-parallel MLP. */
  readonly mlp: ParallelMLP;
  /** Where the block normalises. */
  readonly normPosition: "pre" | "post";
  /** Builds the layer of `c` for the group and device of `o`. */
  constructor(c: Required<GPTConfig>, o: LayerOpts) {
    super();
    this.normPosition = c.normPosition;
    this.ln1 = this.child("ln1", parallelNorm(c, o));
    this.attn = this.child("attn", new ParallelAttention(c, o));
    this.ln2 = this.child("ln2", parallelNorm(c, o));
    this.mlp = this.child("mlp", new ParallelMLP(c, o));
  }
  /**
   * Pre-norm: x + attn(ln1(x)), then + mlp(ln2(·)); post-norm: ln1(x + attn(x)), then
   * ln2(· + mlp(·)); each branch through `drop`: (B,T,C), or (B·T/tp, C) under SP; `full`
   * is the full (B,T,C). `branchScale` multiplies both residual branches (progressive
   * layer dropping's 1 / keep probability); `layout`: packed documents or padding.
   */
  forward(
    x: Tensor,
    full: readonly number[],
    drop: Drop,
    branchScale = 1,
    layout?: SequenceLayout,
  ): Tensor {
    const residual = (r: Tensor, f: Tensor) =>
      branchScale === 1 ? add(r, f) : addScaled(r, f, branchScale);
    if (this.normPosition === "post") {
      const x1 = this.ln1.forward(residual(x, drop(this.attn.forward(x, full, layout))));
      return this.ln2.forward(residual(x1, drop(this.mlp.forward(x1, full))));
    }
    const x1 = residual(x, drop(this.attn.forward(this.ln1.forward(x), full, layout)));
    return residual(x1, drop(this.mlp.forward(this.ln2.forward(x1), full)));
  }
}

/**
 * A (V, C) table cut by vocabulary rows (padded to a multiple of the group size): the
 * untied output layer, or a last pipeline stage's copy of the tied token table.
 */
export class VocabParallelTable extends ShardedModule {
  /** (V/tp, C), this rank's rows */
  readonly weight: Tensor;
  /**
   * Declares this rank's rows.
   *
   * @param name the parameter's name in the single-process model ("weight" of `head`,
   *   "wte" of `emb`)
   */
  constructor(V: number, C: number, name: string, o: LayerOpts) {
    super();
    const init = { kind: "normal", std: 0.02 } as const;
    this.weight = this.sharded(name, [V, C], vocabSpec(V, o.group.size), init, o);
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
 * The output layer: the final activation enters the tensor-parallel region and meets
 * this rank's extended vocabulary shard (of the tied token table or the untied head).
 * An encoder's masked-LM head reads only some rows (`rows`, the masked positions) and
 * transforms them first (`head`, replicated: each rank's columns give part of its
 * gradient), and adds its bias, cut by vocabulary like the table.
 *
 * @param x (B,T,C), or this rank's rows under SP
 * @param wext `padRows` of the vocabulary shard (tied token table or untied head), (V/tp+1, C)
 * @param realColumns this rank's columns that are real tokens; the rest (vocabulary
 *   padding) are pinned to PAD_LOGIT like the pad column, so the softmax is the unpadded one
 * @param o `rows`: int32 (M) flat (B·T) rows to keep (default all); `head`: the masked-LM
 *   head (see {@linkcode parallelMaskedLMHead}) @default neither
 * @returns (B,T,V/tp+1), or (M,V/tp+1) with `rows`, the pad column pinned to PAD_LOGIT
 */
export function vocabParallelLogits(
  x: Tensor,
  wext: Tensor,
  group: ProcessGroup,
  sequenceParallel: boolean,
  full: readonly number[],
  realColumns: number = wext.shape[0] - 1,
  o: { rows?: Tensor; head?: MaskedLMHead } = {},
): Tensor {
  let h = sequenceParallel
    ? gatherFromSequenceRegion(x, group, full)
    : copyToTensorRegion(x, group);
  if (o.rows) h = gatherRows(h, o.rows);
  if (o.head) h = o.head.transform(h);
  const padBias = new Float32Array(wext.shape[0]);
  padBias.fill(PAD_LOGIT, Math.min(Math.max(0, realColumns), wext.shape[0] - 1));
  let bias = Tensor.fromArray(padBias, [padBias.length], { device: h.device });
  if (h.dtype !== "f32") bias = bias.cast(h.dtype);
  return linear(h, wext, o.head ? plusShardBias(bias, o.head.bias) : bias);
}

/**
 * [b; 0] + pad: a vocabulary shard's bias (V/tp) extended by the pad column and added to
 * the pinned columns' bias; the gradient of the first V/tp columns goes to b.
 */
function plusShardBias(pad: Tensor, b: Tensor): Tensor {
  const out = Tensor.empty(pad.shape, { dtype: pad.dtype, device: pad.device }).copy_(pad);
  const head = out.view(b.shape);
  accumulateInto(head, b);
  head.dispose();
  return record(out, {
    name: "plusShardBias",
    inputs: [b],
    backward(g) {
      if (!needsGrad(b)) return;
      const gb = g.view(b.shape);
      accumulateInto(gradOf(b), gb);
      gb.dispose();
    },
  });
}

/**
 * BERT's masked-LM head for a tensor-parallel group: the transform (dense, GELU,
 * LayerNorm) replicated, its gradient summed over the group (each rank's vocabulary
 * columns give part of it); the logits' bias cut by vocabulary rows like the token table.
 *
 * @param c the model's config
 * @param o the group, device and dtype
 * @returns the head, named as the single-process model's `mlm`
 */
export function parallelMaskedLMHead(c: Required<GPTConfig>, o: LayerOpts): MaskedLMHead {
  const spec = vocabSpec(c.vocabSize, o.group.size);
  const [rows] = localShape([c.vocabSize], spec, o.group.size, "mlm.bias");
  const head = new MaskedLMHead(c.nEmbd, rows, {
    eps: c.layerNormEps,
    gelu: c.gelu,
    device: o.device,
    dtype: o.dtype,
  });
  for (const [, t] of head.namedParameters()) {
    setTensorParallelInfo(
      t,
      t === head.bias
        ? { fullShape: [c.vocabSize], spec, sumGrad: false }
        : { fullShape: t.shape, spec: { kind: "replicated" }, sumGrad: true },
    );
  }
  return head;
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
 * counters). `scales`, if given, holds each block's residual-branch scale; `layout`, the
 * packed documents of the rows.
 */
export function runLayers(
  blocks: readonly ParallelBlock[],
  x: Tensor,
  full: readonly number[],
  drop: Drop,
  rng: Generator,
  recompute: RecomputeOptions | null,
  scales?: readonly number[],
  layout?: SequenceLayout,
): Tensor {
  const groups = new Map(recomputeGroups(blocks.length, recompute).map((g) => [g[0], g]));
  const run = (j: number, a: Tensor) => blocks[j].forward(a, full, drop, scales?.[j] ?? 1, layout);
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
