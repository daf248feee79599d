/**
 * GPT-2 124M, one training step (forward, backward, clip, AdamW) on the CUDA device at
 * batch 16 × sequence 1024. --dtype bf16 (the default) trains the model in bf16 with fp32
 * main weights, gradients and moments (MixedPrecisionAdamW), bf16 cuBLAS GEMMs with fp32
 * accumulation and, for head size 64, tensor-core attention (DENOTRON_CUDA_ATTENTION=simple
 * selects the fp32-inside kernel); --dtype f32 keeps fp32 weights with TF32 GEMMs. Prints the median step time, tokens/s, model
 * FLOP/s, MFU against the card's bf16 dense peak (--peak TFLOP/s; default from the GPU
 * name: H100 SXM 989, H200 989, A100 312), and the share of a step spent outside
 * kernels: a normal step's wall time against the sum of per-call times measured with a
 * device synchronisation after every native call.
 *
 *   deno run -A bench/gpt2_cuda.ts [--steps 5] [--batch 16] [--seq 1024] [--dtype bf16]
 *     [--peak 989]
 *
 * @module
 */
import { parseArgs } from "parse-args";
import { device as getDevice } from "../lib/device.ts";
import { GPT } from "../lib/nn/gpt.ts";
import { AdamW } from "../lib/optim/adamw.ts";
import { clipFactor, gradNorm } from "../lib/optim/clip.ts";
import { MixedPrecisionAdamW, mixedPrecisionStep } from "../lib/optim/mixed_precision.ts";
import { Tensor, tidy } from "../lib/tensor.ts";
import "../lib/autograd.ts";
import { median, modelFlopsPerStep, presetOrThrow, syntheticBatch } from "./common.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    steps: { type: "string", default: "5" },
    batch: { type: "string", default: "16" },
    seq: { type: "string", default: "1024" },
    model: { type: "string", default: "gpt2" },
    peak: { type: "string", default: "" },
    dtype: { type: "string", default: "bf16" },
  },
});
const steps = Number(values.steps), B = Number(values.batch), T = Number(values.seq);
const config = presetOrThrow(values.model);
const dtype = values.dtype;
if (dtype !== "bf16" && dtype !== "f32") {
  throw new Error(`--dtype ${dtype}: expected bf16 or f32`);
}

const dev = getDevice("cuda");
const info = dev.info();
console.log(`# ${info}`);
const name = /name=([^=]*?) sm=/.exec(info)?.[1] ?? "";
const peakTflops = values.peak
  ? Number(values.peak)
  : /H100|H200|GH200/.test(name)
  ? 989
  : /A100/.test(name)
  ? 312
  : NaN;

const model = new GPT(config, { device: dev, seed: 1, dtype });
const opt = dtype === "f32"
  ? new AdamW(model.params, { lr: 1e-4 })
  : new MixedPrecisionAdamW(model.params, { lr: 1e-4 });
const nParams = model.numParameters();
const { tokens, targets } = syntheticBatch(config.vocabSize, B, T);
const x = Tensor.fromArray(tokens, [B, T], { device: dev });
const y = Tensor.fromArray(targets, [B, T], { device: dev });

function step(): number {
  const loss = tidy(() => {
    const l = model.loss(x, y);
    l.backward();
    return l.item();
  });
  if (opt instanceof MixedPrecisionAdamW) {
    mixedPrecisionStep(opt, { lr: 1e-4, scaler: null, clipGrad: 1 });
  } else {
    opt.step(1e-4, clipFactor(gradNorm(model.params.grad), 1.0));
  }
  model.params.zeroGrad();
  dev.lib.check(dev.lib.sym.dn_synchronize(), "dn_synchronize");
  return loss;
}

step(); // warm-up: cuBLAS load, allocator fill
const times: number[] = [];
let loss = 0;
for (let i = 0; i < steps; i++) {
  const t0 = performance.now();
  loss = step();
  times.push((performance.now() - t0) / 1e3);
}
dev.lib.startProfile(true);
step();
const profile = dev.lib.stopProfile();

const stepS = median(times);
const flops = modelFlopsPerStep(config, B * T, T, nParams);
const inCalls = [...profile.values()].reduce((s, t) => s + t.ms, 0) / 1e3;
const mfu = flops / stepS / (peakTflops * 1e12);
const attn = Deno.env.get("DENOTRON_CUDA_ATTENTION") === "simple" || dtype === "f32"
  ? "simple"
  : "mma";
console.log(
  `params ${nParams.toLocaleString("en-US")}, batch ${B} x seq ${T}, ` +
    (dtype === "f32"
      ? "fp32 weights, TF32 GEMM"
      : "bf16 weights (fp32 main weights, grads, moments), bf16 GEMM") +
    `, ${attn} attention`,
);
console.log(
  `median step ${(stepS * 1e3).toFixed(1)} ms over ${steps} steps, loss ${loss.toFixed(4)}`,
);
console.log(`tokens/s ${((B * T) / stepS).toFixed(0)}`);
console.log(
  `model FLOP/s ${(flops / stepS / 1e12).toFixed(1)} T (${(flops / 1e12).toFixed(2)} TFLOP/step)`,
);
console.log(
  `MFU ${(100 * mfu).toFixed(1)}% of ${peakTflops} TFLOP/s bf16 dense (${name || "unknown GPU"})`,
);
console.log(
  `outside kernels ${(100 * Math.max(0, 1 - inCalls / stepS)).toFixed(1)}% ` +
    `(step ${(stepS * 1e3).toFixed(1)} ms vs synced per-call sum ${(inCalls * 1e3).toFixed(1)} ms)`,
);
const rows = [...profile].sort((a, b) => b[1].ms - a[1].ms).slice(0, 10);
for (const [sym, t] of rows) {
  console.log(
    `  ${sym.padEnd(26)} ${t.ms.toFixed(1).padStart(8)} ms ${String(t.calls).padStart(5)} calls`,
  );
}
console.log(
  `RESULT dtype=${dtype} attention=${attn} tokens_per_s=${((B * T) / stepS).toFixed(0)} step_ms=${
    (stepS * 1e3).toFixed(1)
  } ` +
    `mfu=${(100 * mfu).toFixed(1)} outside=${(100 * Math.max(0, 1 - inCalls / stepS)).toFixed(1)}`,
);
x.dispose();
y.dispose();
opt.dispose();
model.dispose();
