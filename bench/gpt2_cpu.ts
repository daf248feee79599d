/**
 * One fp32 training step (forward, backward, clip, AdamW) on the CPU, for GPT-2 124M by
 * default at batch 4 × sequence 64, or for any preset: decoders on the next-token loss,
 * encoders (BERT) on the pretraining loss, masked LM plus the binary head. Prints the
 * sgemm rate, then for each model the median step time, tokens/s, model FLOP/s, their
 * ratio to that same-run sgemm, and a per-kernel time breakdown.
 *
 *   deno task bench [--steps 10] [--threads 2] [--batch 4] [--seq 64] [--model gpt2]
 *   deno task bench --model bert-base,gpt2 --batch 8 --seq 128   # side by side, one run
 *
 * defines: pretrainingBatch, encoderStep, disposeAll, measure, printPlan
 *
 * @module
 */
import { parseFlags } from "../lib/cli_args.ts";
import { type Device, device as getDevice } from "../lib/device.ts";
import { maskTokens } from "../lib/data/bert_masking.ts";
import { Rng } from "../lib/data/gpt_dataset.ts";
import { paddingLayout } from "../lib/nn/attention.ts";
import {
  GPT,
  type GPTConfig,
  isEncoder,
  paddedVocabSize,
  type PretrainingBatch,
} from "../lib/nn/gpt.ts";
import { Tensor } from "../lib/tensor.ts";
import "../lib/autograd.ts";
import {
  benchOptimizer,
  benchStep,
  median,
  modelFlopsPerStep,
  presetOrThrow,
  sgemmRate,
  syntheticBatch,
} from "./common.ts";
import { CLUSTER_PRESETS, MODEL_PRESETS, predictStep } from "../lib/plan/mod.ts";

const OPTIONS = {
  steps: { type: "string", default: "10" },
  threads: { type: "string", default: "2" },
  batch: { type: "string", default: "4" },
  seq: { type: "string", default: "64" },
  model: { type: "string", default: "gpt2" },
  json: { type: "boolean", default: false },
  help: { type: "boolean", default: false },
} as const;
const USAGE =
  `usage: deno task bench [--model gpt2] [--steps 10] [--batch 4] [--seq 64] [--threads 2] [--json]

  --model NAMES  presets of lib/nn/gpt.ts (gpt2, smollm2-135m, bert-base, ...), several
                 separated by commas, measured one after another against one sgemm [gpt2]
  --steps N      timed training steps (the median is reported) [10]
  --batch B      sequences per step [4]
  --seq T        tokens per sequence [64]
  --threads N    kernel and OpenBLAS threads [2]
  --json         also print each result as one JSON line`;

/** bert-base-uncased's special ids ([PAD] [UNK] [CLS] [SEP] [MASK]), for the synthetic batch. */
const BERT_SPECIALS = { pad: 0, unk: 100, cls: 101, sep: 102, mask: 103 };

/**
 * A BERT pretraining batch of synthetic tokens, shaped as Megatron's BERT dataset makes
 * them: [CLS] A [SEP] B [SEP] then padding, every fourth row a short one (3/4 of T
 * valid), token types 0 over [CLS] A [SEP] and 1 over B [SEP], 15% of the other tokens
 * masked by maskTokens (80/10/10), sentence labels alternating 0 and 1.
 *
 * @param vocabSize the model's vocabulary (≥ 104, above the special ids)
 * @param B rows
 * @param T tokens per row (≥ 5)
 * @param device where the tensors go
 * @returns the batch; the caller disposes its tensors
 */
function pretrainingBatch(
  vocabSize: number,
  B: number,
  T: number,
  device: Device,
): Required<PretrainingBatch> {
  const { tokens: words } = syntheticBatch(vocabSize - 104, B, T);
  const vocab = { name: "synthetic", vocabSize, ...BERT_SPECIALS, isContinuation: () => false };
  const rng = new Rng(1);
  const tokens = new Int32Array(B * T), types = new Int32Array(B * T);
  const targets = new Int32Array(B * T).fill(-1);
  const validLengths: number[] = [];
  const labels = new Int32Array(B);
  for (let b = 0; b < B; b++) {
    const n = b % 4 === 3 ? Math.floor((3 * T) / 4) : T;
    const sepA = n >> 1; // [CLS] at 0, A's [SEP] here, B's [SEP] at n - 1
    const row = new Int32Array(T).fill(BERT_SPECIALS.pad);
    for (let t = 0; t < n; t++) row[t] = 104 + words[b * T + t];
    row[0] = BERT_SPECIALS.cls;
    row[sepA] = row[n - 1] = BERT_SPECIALS.sep;
    const masked = maskTokens(row, vocab, rng);
    tokens.set(masked.tokens, b * T);
    targets.set(masked.labels, b * T);
    types.fill(1, b * T + sepA + 1, b * T + n);
    validLengths.push(n);
    labels[b] = b % 2;
  }
  const on = { device };
  return {
    tokens: Tensor.fromArray(tokens, [B, T], on),
    tokenTypes: Tensor.fromArray(types, [B, T], on),
    layout: paddingLayout(validLengths, T, device),
    mlmTargets: Tensor.fromArray(targets, [B, T], on),
    mlmTargetValues: targets,
    sentenceLabels: Tensor.fromArray(labels, [B], on),
  };
}

/** Tensors of one model's batch, to free after its measurement. */
function disposeAll(ts: Tensor[]): void {
  for (const t of ts) t.dispose();
}

/**
 * Measures one model's training step and prints the figures against `sgemm`.
 *
 * @returns the figures, as `--json` prints them
 */
function measure(
  name: string,
  config: GPTConfig,
  dev: Device,
  sgemm: number,
  o: { B: number; T: number; steps: number; first: boolean },
) {
  const { B, T, steps } = o;
  const model = new GPT(config, { device: dev, seed: 1 });
  const opt = benchOptimizer(model);
  const nParams = model.numParameters();
  let step: () => number;
  let inputs: Tensor[];
  // an encoder's output layer (the MLM transform and the tied token table) runs only at
  // the masked positions: the rows it skips are not the model's FLOPs
  let skippedRows = 0;
  if (isEncoder(config)) {
    const batch = pretrainingBatch(config.vocabSize, B, T, dev);
    skippedRows = (batch.mlmTargets.toArray() as Int32Array).filter((t) => t === -1).length;
    step = () => benchStep(model, opt, () => model.pretrainingLoss(batch).loss);
    inputs = [
      batch.tokens,
      batch.tokenTypes,
      batch.layout.positions,
      batch.layout.spans,
      batch.mlmTargets,
      batch.sentenceLabels,
    ];
  } else {
    const { tokens, targets } = syntheticBatch(config.vocabSize, B, T);
    const x = Tensor.fromArray(tokens, [B, T], { device: dev });
    const y = Tensor.fromArray(targets, [B, T], { device: dev });
    step = () => benchStep(model, opt, () => model.loss(x, y));
    inputs = [x, y];
  }

  step(); // warm-up: first-touch of every buffer, allocator fill
  const times: number[] = [];
  let loss = 0;
  for (let i = 0; i < steps; i++) {
    const t0 = performance.now();
    loss = step();
    times.push((performance.now() - t0) / 1e3);
  }
  dev.lib.startProfile();
  const tp0 = performance.now();
  step();
  const profiledMs = performance.now() - tp0;
  const profile = dev.lib.stopProfile();

  const stepS = median(times);
  const C = config.nEmbd;
  const flops = modelFlopsPerStep(config, B * T, T, nParams) -
    6 * skippedRows * (paddedVocabSize(config) * C + C * C);
  const result = {
    model: name,
    params: nParams,
    batch: B,
    seq: T,
    threads: dev.numThreads,
    steps,
    medianStepS: stepS,
    tokensPerS: (B * T) / stepS,
    modelFlopsPerStep: flops,
    modelFlopS: flops / stepS,
    sgemmFlopS: sgemm,
    ratio: flops / stepS / sgemm,
    loss,
    memory: dev.memoryStats(),
  };
  console.log(`\n## ${name}${isEncoder(config) ? " (encoder: masked LM + binary head)" : ""}`);
  console.log(
    `params ${nParams.toLocaleString("en-US")}, batch ${B} x seq ${T}, ${dev.numThreads} threads`,
  );
  console.log(
    `median step ${(stepS * 1e3).toFixed(0)} ms over ${steps} steps (min ${
      (Math.min(...times) * 1e3).toFixed(0)
    }, max ${(Math.max(...times) * 1e3).toFixed(0)}), loss ${loss.toFixed(3)}`,
  );
  console.log(`tokens/s ${result.tokensPerS.toFixed(1)}`);
  console.log(
    `model FLOP/s ${(result.modelFlopS / 1e9).toFixed(1)} G  (= ${
      (flops / 1e9).toFixed(1)
    } GFLOP/step: tokens x (6 N' + 12 L C T), N' = params - positions)`,
  );
  console.log(
    `sgemm FLOP/s ${(sgemm / 1e9).toFixed(1)} G  ->  ratio ${(result.ratio * 100).toFixed(1)}%`,
  );
  console.log(`\nper-kernel time, one profiled step (${profiledMs.toFixed(0)} ms):`);
  const rows = [...profile].sort((a, b) => b[1].ms - a[1].ms);
  let inKernels = 0;
  for (const [kernel, t] of rows) {
    inKernels += t.ms;
    if (t.ms < 0.05 * profiledMs / 100) continue;
    console.log(
      `  ${kernel.padEnd(26)} ${t.ms.toFixed(1).padStart(8)} ms ${
        (100 * t.ms / profiledMs).toFixed(1).padStart(5)
      }%  ${String(t.calls).padStart(5)} calls`,
    );
  }
  console.log(
    `  ${"(outside kernels)".padEnd(26)} ${(profiledMs - inKernels).toFixed(1).padStart(8)} ms ${
      (100 * (profiledMs - inKernels) / profiledMs).toFixed(1).padStart(5)
    }%`,
  );
  if (name === "gpt2") printPlan(result, B, T, o.first);
  disposeAll(inputs);
  opt.dispose();
  model.dispose();
  return result;
}

/** The planner's prediction for this machine, beside the measurement (docs/planner.md). */
function printPlan(
  result: { medianStepS: number; modelFlopS: number; memory: { peak: number } },
  B: number,
  T: number,
  first: boolean,
): void {
  const plan = predictStep({
    model: { ...MODEL_PRESETS["gpt2-124m"], seqLength: T },
    layout: { microBatchSize: B, globalBatchSize: B, precision: "fp32", flashAttention: true },
    cluster: CLUSTER_PRESETS.cpu,
  });
  const peakMiB = plan.memory.peak.total / 2 ** 20;
  const ours = result.memory.peak / 2 ** 20;
  console.log(`\nplanner (cluster preset "cpu") vs measured:`);
  console.log(
    `  step time     ${(plan.stepSeconds * 1e3).toFixed(0).padStart(7)} ms  vs ${
      (result.medianStepS * 1e3).toFixed(0).padStart(7)
    } ms`,
  );
  console.log(
    `  model FLOP/s  ${(plan.modelFlopsPerGpu / 1e9).toFixed(1).padStart(7)} G   vs ${
      (result.modelFlopS / 1e9).toFixed(1).padStart(7)
    } G`,
  );
  console.log(
    `  peak memory   ${peakMiB.toFixed(0).padStart(7)} MiB vs ${
      ours.toFixed(0).padStart(7)
    } MiB (native allocator peak${first ? "" : " of this run, earlier models included"})`,
  );
}

let parsed;
try {
  parsed = parseFlags({ args: Deno.args, options: OPTIONS });
} catch (e) {
  console.error(`error: ${(e as Error).message}`);
  Deno.exit(2);
}
const { values } = parsed;
if (values.help) {
  console.log(USAGE);
  Deno.exit(0);
}
const steps = Number(values.steps), B = Number(values.batch), T = Number(values.seq);
const models = String(values.model).split(",").map((name) => ({
  name,
  config: presetOrThrow(name),
}));

const dev = getDevice();
dev.numThreads = Number(values.threads);
console.log(`# ${dev.info()}`);

const sgemm = sgemmRate(dev);
console.log(`sgemm 2048^3: ${(sgemm / 1e9).toFixed(1)} GFLOP/s`);

for (const [i, { name, config }] of models.entries()) {
  const result = measure(name, config, dev, sgemm, { B, T, steps, first: i === 0 });
  if (values.json) console.log(JSON.stringify(result));
}
