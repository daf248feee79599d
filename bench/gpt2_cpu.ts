/**
 * GPT-2 124M, fp32, one training step (forward, backward, clip, AdamW) on the CPU at
 * batch 4 × sequence 64. Prints the median step time, tokens/s, model FLOP/s, the sgemm
 * rate measured in the same run, their ratio, and a per-kernel time breakdown.
 *
 *   deno task bench [--steps 10] [--threads 2] [--batch 4] [--seq 64] [--model gpt2]
 *
 * @module
 */
import { parseFlags } from "../lib/cli_args.ts";
import { device as getDevice } from "../lib/device.ts";
import { GPT } from "../lib/nn/gpt.ts";
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

  --model NAME   a preset of lib/nn/gpt.ts (gpt2, smollm2-135m, llama-tiny, ...) [gpt2]
  --steps N      timed training steps (the median is reported) [10]
  --batch B      sequences per step [4]
  --seq T        tokens per sequence [64]
  --threads N    kernel and OpenBLAS threads [2]
  --json         also print the result as one JSON line`;
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
const config = presetOrThrow(values.model);

const dev = getDevice();
dev.numThreads = Number(values.threads);
console.log(`# ${dev.info()}`);

const sgemm = sgemmRate(dev);
console.log(`sgemm 2048^3: ${(sgemm / 1e9).toFixed(1)} GFLOP/s`);

const model = new GPT(config, { device: dev, seed: 1 });
const opt = benchOptimizer(model);
const nParams = model.numParameters();
const { tokens, targets } = syntheticBatch(config.vocabSize, B, T);
const x = Tensor.fromArray(tokens, [B, T], { device: dev });
const y = Tensor.fromArray(targets, [B, T], { device: dev });

const step = () => benchStep(model, opt, x, y);

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
const flops = modelFlopsPerStep(config, B * T, T, nParams);
const result = {
  model: values.model,
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
console.log(
  `params ${nParams.toLocaleString("en-US")}, batch ${B} x seq ${T}, ${dev.numThreads} threads`,
);
console.log(
  `median step ${(stepS * 1e3).toFixed(0)} ms over ${steps} steps (min ${
    (Math.min(...times) * 1e3).toFixed(0)
  }, max ${(Math.max(...times) * 1e3).toFixed(0)})`,
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
for (const [name, t] of rows) {
  inKernels += t.ms;
  if (t.ms < 0.05 * profiledMs / 100) continue;
  console.log(
    `  ${name.padEnd(26)} ${t.ms.toFixed(1).padStart(8)} ms ${
      (100 * t.ms / profiledMs).toFixed(1).padStart(5)
    }%  ${String(t.calls).padStart(5)} calls`,
  );
}
console.log(
  `  ${"(outside kernels)".padEnd(26)} ${(profiledMs - inKernels).toFixed(1).padStart(8)} ms ${
    (100 * (profiledMs - inKernels) / profiledMs).toFixed(1).padStart(5)
  }%`,
);

// The planner's prediction for this machine, beside the measurement (docs/planner.md).
const planModel = values.model === "gpt2" ? MODEL_PRESETS["gpt2-124m"] : undefined;
if (planModel) {
  const plan = predictStep({
    model: { ...planModel, seqLength: T },
    layout: { microBatchSize: B, globalBatchSize: B, precision: "fp32", flashAttention: true },
    cluster: CLUSTER_PRESETS.cpu,
  });
  const peakMiB = plan.memory.peak.total / 2 ** 20;
  const ours = (result.memory.peak) / 2 ** 20;
  console.log(`\nplanner (cluster preset "cpu") vs measured:`);
  console.log(
    `  step time     ${(plan.stepSeconds * 1e3).toFixed(0).padStart(7)} ms  vs ${
      (stepS * 1e3).toFixed(0).padStart(7)
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
    } MiB (native allocator peak)`,
  );
}
if (values.json) console.log(JSON.stringify(result));
x.dispose();
y.dispose();
opt.dispose();
model.dispose();
