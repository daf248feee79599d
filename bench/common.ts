/**
 * Shared pieces of the benchmarks: timing, the sgemm rate of this machine, the
 * model-FLOPs formula, and the measured training step.
 *
 * @module
 */
import type { Device } from "../lib/device.ts";
import { matmul } from "../lib/ops/matmul.ts";
import { Tensor, tidy } from "../lib/tensor.ts";
import { type GPT, GPT_PRESETS, type GPTConfig, paddedVocabSize } from "../lib/nn/gpt.ts";
import { DEFAULT_CONFIG } from "../lib/train/config.ts";
import { TrainOptimizer } from "../lib/train/optimizer.ts";
import { launch } from "../lib/parallel/launch.ts";
import type { MicroBatch } from "../lib/parallel/pipeline.ts";

/** The median of a list of numbers. */
export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/**
 * The best sgemm rate (FLOP/s) of `n`×`n`×`n` products on `device`, over `reps` runs.
 */
export function sgemmRate(device: Device, n = 2048, reps = 5): number {
  const a = Tensor.randn([n, n], { device, seed: 1 });
  const b = Tensor.randn([n, n], { device, seed: 2 });
  const times: number[] = [];
  for (let i = 0; i < reps + 1; i++) {
    const t0 = performance.now();
    tidy(() => {
      matmul(a, b);
    });
    if (i > 0) times.push((performance.now() - t0) / 1e3);
  }
  a.dispose();
  b.dispose();
  return (2 * n ** 3) / Math.min(...times);
}

/**
 * Model FLOPs of one training step (forward + backward), the PaLM-paper convention:
 * tokens × (6·N + 12·L·C·T), where N counts the parameters that are multiplied (all
 * but the position table; the tied token embedding counts once, as the output layer)
 * and 12·L·C·T is attention's score and weighted-sum products, without the causal
 * discount.
 */
export function modelFlopsPerStep(
  c: GPTConfig,
  tokens: number,
  seqLen: number,
  nParams: number,
): number {
  // Tables that are looked up, not multiplied: learned positions, and the token table of
  // an untied model (its output layer is a separate matrix).
  const positions = c.positionEmbedding === "rope" ? 0 : c.blockSize * c.nEmbd;
  const tokenTable = c.tieEmbeddings === false ? paddedVocabSize(c) * c.nEmbd : 0;
  const nMultiplied = nParams - positions - tokenTable;
  return tokens * (6 * nMultiplied + 12 * c.nLayer * c.nEmbd * seqLen);
}

/** The GPT preset named by a benchmark's `--model`, or an error listing the names. */
export function presetOrThrow(name: string | undefined): GPTConfig {
  const config = name === undefined ? undefined : GPT_PRESETS[name];
  if (!config) {
    throw new Error(`--model ${name}: expected one of ${Object.keys(GPT_PRESETS).join(", ")}`);
  }
  return config;
}

/**
 * A fixed, deterministic batch of token ids and targets, (B, T) each, spread over the
 * vocabulary (the step's cost does not depend on the values).
 */
export function syntheticBatch(vocabSize: number, B: number, T: number): {
  tokens: Int32Array;
  targets: Int32Array;
} {
  const tokens = new Int32Array(B * T), targets = new Int32Array(B * T);
  for (let i = 0; i < B * T; i++) {
    tokens[i] = (i * 7919 + 13) % vocabSize;
    targets[i] = (i * 104729 + 7) % vocabSize;
  }
  return { tokens, targets };
}

/**
 * The model-parallel benchmarks' input: M micro-batches of one sequence of T tokens,
 * deterministic and spread over the vocabulary.
 */
export function syntheticMicroBatches(M: number, T: number, vocabSize: number): MicroBatch[] {
  return [...Array(M).keys()].map((i) => {
    const ids = Int32Array.from({ length: T + 1 }, (_, j) => (j * 31 + i * 7) % vocabSize);
    return {
      tokens: Tensor.fromArray(ids.slice(0, T), [1, T], { dtype: "i32" }),
      targets: Tensor.fromArray(ids.slice(1), [1, T], { dtype: "i32" }),
    };
  });
}

/**
 * The optimizer of a benchmarked model, as training has it: AdamW (fp32 main weights for a
 * 16-bit model), global-norm clipping to 1.
 */
export function benchOptimizer(model: GPT): TrainOptimizer {
  return new TrainOptimizer(model.params, {
    training: { ...DEFAULT_CONFIG.training, lr: 1e-4, clipGrad: 1 },
    scaler: null,
    ownership: { ranges: [{ offset: 0, length: model.params.grad.numel }], group: null },
  });
}

/**
 * One measured training step: forward, backward, global-norm clipping to 1, the update
 * and zeroing the gradients; with `ddp`, its gradient reductions finish before the update.
 *
 * @param model the model
 * @param opt its optimizer
 * @param lossOf the forward pass: a decoder's `model.loss(x, y)`, an encoder's
 *   pretraining loss
 * @param ddp data parallelism whose reductions finish before the update
 * @returns the loss
 */
export function benchStep(
  model: GPT,
  opt: TrainOptimizer,
  lossOf: () => Tensor,
  ddp?: { finishGradSync(): void },
): number {
  const loss = tidy(() => {
    const l = lossOf();
    l.backward();
    return l.item();
  });
  ddp?.finishGradSync();
  opt.step(1e-4, 1);
  model.params.zeroGrad();
  return loss;
}

/**
 * Runs a layout benchmark's ranks: `script` again under the launcher on tp · pp ranks with
 * `--rank --tp --pp --vp --out FILE` after its own arguments, one kernel thread each, rank
 * output on stderr.
 *
 * @param script the benchmark's own path
 * @param args its command line
 * @param layout tensor, pipeline and virtual pipeline sizes
 * @returns the `--out` path the ranks write their figures to (the caller reads and removes it)
 * @throws Error when a rank fails
 */
export async function launchLayoutRanks(
  script: string,
  args: readonly string[],
  [tp, pp, vp]: readonly [number, number, number],
): Promise<string> {
  const out = await Deno.makeTempFile({ suffix: ".json" });
  const code = await launch({
    nprocPerNode: tp * pp,
    script,
    args: [...args, "--rank", "--tp", `${tp}`, "--pp", `${pp}`, "--vp", `${vp}`, "--out", out],
    env: { DENOTRON_NUM_THREADS: "1" },
    output: (r, _s, line) => console.error(`[rank ${r}] ${line}`),
    log: () => {},
    graceSeconds: 2,
  });
  if (code !== 0) throw new Error(`layout tp${tp} pp${pp} vp${vp} failed (${code})`);
  return out;
}
