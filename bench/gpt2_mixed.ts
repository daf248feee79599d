/**
 * GPT-2 124M, one training step on the CPU in fp32 and in bf16 (bf16 parameters and
 * activations, fp32 main gradients, main parameters and moments), batch 4 × sequence
 * 64 by default. Each precision builds its own model and optimizer and reports the
 * median step time, tokens/s, the peak native memory of the run, and the bytes per
 * parameter held by the parameter, gradient and optimizer buffers.
 *
 *   deno task bench:mixed [--steps 5] [--threads 2] [--batch 4] [--seq 64] [--model gpt2]
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
  syntheticBatch,
} from "./common.ts";

const { values } = parseFlags({
  args: Deno.args,
  options: {
    steps: { type: "string", default: "5" },
    threads: { type: "string", default: "2" },
    batch: { type: "string", default: "4" },
    seq: { type: "string", default: "64" },
    model: { type: "string", default: "gpt2" },
    json: { type: "boolean", default: false },
  },
});
const steps = Number(values.steps), B = Number(values.batch), T = Number(values.seq);
const config = presetOrThrow(values.model);

const dev = getDevice();
dev.numThreads = Number(values.threads);
console.log(`# ${dev.info()}`);

const { tokens, targets } = syntheticBatch(config.vocabSize, B, T);

function run(dtype: "f32" | "bf16") {
  dev.lib.check(dev.lib.sym.dn_empty_cache(), "dn_empty_cache");
  const base = dev.memoryStats();
  const model = new GPT(config, { device: dev, seed: 1, dtype });
  const x = Tensor.fromArray(tokens, [B, T], { device: dev });
  const y = Tensor.fromArray(targets, [B, T], { device: dev });
  const opt = benchOptimizer(model);
  const state = dev.memoryStats().inUse - base.inUse;
  const step = () => benchStep(model, opt, () => model.loss(x, y));
  step(); // warm-up
  const times: number[] = [];
  let loss = 0;
  for (let i = 0; i < steps; i++) {
    const t0 = performance.now();
    loss = step();
    times.push((performance.now() - t0) / 1e3);
  }
  const peak = dev.memoryStats().peak - base.inUse;
  const nParams = model.numParameters();
  const result = {
    dtype,
    params: nParams,
    medianStepS: median(times),
    tokensPerS: (B * T) / median(times),
    modelFlopS: modelFlopsPerStep(config, B * T, T, nParams) / median(times),
    loss,
    stateBytes: state,
    stateBytesPerParam: state / nParams,
    peakBytes: peak,
  };
  x.dispose();
  y.dispose();
  opt.dispose();
  model.dispose();
  return result;
}

// bf16 first: the allocator's peak is a high-water mark that never resets, and the fp32
// run's is the higher one, so each run's peak is read correctly in this order.
const [b, f] = [run("bf16"), run("f32")];
const results = [f, b];
const MB = 2 ** 20;
console.log(
  `${values.model}, batch ${B} x seq ${T}, ${dev.numThreads} threads, ${steps} timed steps each`,
);
for (const r of results) {
  console.log(
    `${r.dtype.padEnd(5)} step ${(r.medianStepS * 1e3).toFixed(0).padStart(6)} ms  ` +
      `${r.tokensPerS.toFixed(1).padStart(7)} tok/s  ${(r.modelFlopS / 1e9).toFixed(1)} GFLOP/s  ` +
      `params+grads+optimizer ${(r.stateBytes / MB).toFixed(0)} MiB ` +
      `(${r.stateBytesPerParam.toFixed(2)} B/param)  peak ${(r.peakBytes / MB).toFixed(0)} MiB  ` +
      `loss ${r.loss.toFixed(4)}`,
  );
}
console.log(
  `bf16 / fp32: time x${(b.medianStepS / f.medianStepS).toFixed(2)}, ` +
    `state memory x${(b.stateBytes / f.stateBytes).toFixed(3)}, peak memory x${
      (b.peakBytes / f.peakBytes).toFixed(3)
    }`,
);
if (values.json) console.log(JSON.stringify(results));
