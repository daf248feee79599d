/**
 * GPT-2 124M, one training step (forward, backward, clip, AdamW) on the CUDA device at
 * batch 16 × sequence 1024. --dtype bf16 (the default) trains the model in bf16 with fp32
 * main weights, gradients and moments (MixedPrecisionAdamW), bf16 cuBLAS GEMMs with fp32
 * accumulation and, for head size 64, tensor-core attention (DENOTRON_CUDA_ATTENTION=simple
 * selects the fp32-inside kernel); --dtype f32 keeps fp32 weights with TF32 GEMMs. Prints the median step time, tokens/s, model
 * FLOP/s, MFU against the card's bf16 dense peak (--peak TFLOP/s; default from the GPU
 * name: H100 SXM 989, H200 989, A100 312), and the share of a step spent outside
 * kernels: one more step with a device timestamp (CUDA event) before and after every
 * native call and nothing synchronised, the calls' spans against the step's whole device
 * span; the gaps are the GPU waiting for the host. The same profile lists time per
 * symbol and every GEMM shape with its TFLOP/s.
 *
 *   deno run -A bench/gpt2_cuda.ts [--steps 5] [--batch 16] [--seq 1024] [--dtype bf16]
 *     [--peak 989] [--device cuda] [--vocab-multiple 128]
 *
 * The vocabulary is padded to a multiple of --vocab-multiple (GPT-2: 50304, as llm.c
 * does; 1 turns it off); model FLOPs count the unpadded model only.
 *
 * @module
 */
import { parseFlags } from "../lib/cli_args.ts";
import { device as getDevice } from "../lib/device.ts";
import { GPT, paddedVocabSize } from "../lib/nn/gpt.ts";
import { Tensor } from "../lib/tensor.ts";
import "../lib/autograd.ts";
import { DataParallel } from "../lib/parallel/ddp.ts";
import { newProcessGroup } from "../lib/parallel/process_group.ts";
import { StoreClient, StoreServer } from "../lib/parallel/store.ts";
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
    batch: { type: "string", default: "16" },
    seq: { type: "string", default: "1024" },
    model: { type: "string", default: "gpt2" },
    peak: { type: "string", default: "" },
    dtype: { type: "string", default: "bf16" },
    device: { type: "string", default: "cuda" },
    "vocab-multiple": { type: "string", default: "128" },
    // data parallelism over a one-rank group with a real communicator (nccl on cuda):
    // the step with every gradient bucket's all-reduce, against the plain step
    "dp-group": { type: "boolean", default: false },
  },
});
const steps = Number(values.steps), B = Number(values.batch), T = Number(values.seq);
const config = { ...presetOrThrow(values.model), vocabMultiple: Number(values["vocab-multiple"]) };
const dtype = values.dtype;
if (dtype !== "bf16" && dtype !== "f32") {
  throw new Error(`--dtype ${dtype}: expected bf16 or f32`);
}

const dev = getDevice(values.device); // "cpu" only to try the script without a GPU
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
const opt = benchOptimizer(model);
// the padding rows are not the model's: FLOPs and the parameter count leave them out
const nParams = model.numParameters() -
  (paddedVocabSize(config) - config.vocabSize) * config.nEmbd;
const { tokens, targets } = syntheticBatch(config.vocabSize, B, T);
const x = Tensor.fromArray(tokens, [B, T], { device: dev });
const y = Tensor.fromArray(targets, [B, T], { device: dev });

const dp = values["dp-group"] ? await oneRankDataParallel() : null;

/** DataParallel over a group of one rank that still communicates (its backend's path). */
async function oneRankDataParallel(): Promise<DataParallel> {
  const auth = { secret: "bench" };
  const server = StoreServer.listen("127.0.0.1", 0, auth);
  const store = await StoreClient.connect("127.0.0.1", server.port, auth);
  const group = await newProcessGroup(store, `bench${Date.now() % 100000}`, 0, [0], "dp", {
    device: dev,
    communicatorForOne: true,
  });
  store.close();
  await server.close();
  console.log(`# data parallel over a one-rank ${group!.backend} group`);
  return new DataParallel(model.params, group!);
}

function step(): number {
  const loss = benchStep(model, opt, () => model.loss(x, y), dp ?? undefined);
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
// One more step with a device timestamp before and after every native call (nothing
// synchronised): the calls' device spans against the step's whole device span. The gaps
// are the device waiting for the host: TypeScript, FFI, launches and host reads.
const gemmFlops = new Map<string, number>();
dev.lib.startProfile("events", (sym, args) => {
  if (sym !== "dn_matmul") return sym;
  const [ta, tb, M, N, K] = args.slice(1, 6).map(Number), batch = Number(args[18]);
  const label = `gemm ${M}x${N}x${K}${ta ? " tA" : ""}${tb ? " tB" : ""}` +
    `${batch > 1 ? ` x${batch}` : ""}${args[17] ? " +bias" : ""}`;
  gemmFlops.set(label, 2 * M * N * K * batch);
  return label;
});
const tp = performance.now();
step();
const profiledMs = performance.now() - tp;
const profile = dev.lib.stopProfile();

const stepS = median(times);
const flops = modelFlopsPerStep(config, B * T, T, nParams);
const inCalls = profile.totalMs / 1e3;
const outside = Math.max(0, 1 - profile.totalMs / profile.spanMs);
const mfu = flops / stepS / (peakTflops * 1e12);
const attn = Deno.env.get("DENOTRON_CUDA_ATTENTION") === "simple" || dtype === "f32"
  ? "simple"
  : "mma";
console.log(
  `params ${nParams.toLocaleString("en-US")}, batch ${B} x seq ${T}, ` +
    (dtype === "f32"
      ? "fp32 weights, TF32 GEMM"
      : "bf16 weights (fp32 main weights, grads, moments), bf16 GEMM") +
    `, ${attn} attention, vocabulary padded to ${paddedVocabSize(config)}`,
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
  `outside kernels ${(100 * outside).toFixed(1)}% of the profiled step's device span ` +
    `(${profile.spanMs.toFixed(1)} ms, of which calls ${(inCalls * 1e3).toFixed(1)} ms; ` +
    `that step took ${profiledMs.toFixed(1)} ms of wall time with the timestamps)`,
);
// by symbol (GEMMs together), then the GEMMs by shape with their rate
const bySymbol = new Map<string, { ms: number; calls: number }>();
let gemmMs = 0, gemmTotal = 0;
for (const [label, t] of profile) {
  const sym = label.startsWith("gemm ") ? "dn_matmul" : label;
  const e = bySymbol.get(sym) ?? { ms: 0, calls: 0 };
  e.ms += t.ms;
  e.calls += t.calls;
  bySymbol.set(sym, e);
  if (gemmFlops.has(label)) {
    gemmMs += t.ms;
    gemmTotal += gemmFlops.get(label)! * t.calls;
  }
}
for (const [sym, t] of [...bySymbol].sort((a, b) => b[1].ms - a[1].ms).slice(0, 12)) {
  console.log(
    `  ${sym.padEnd(26)} ${t.ms.toFixed(2).padStart(8)} ms ${String(t.calls).padStart(5)} calls`,
  );
}
console.log(
  `GEMMs: ${gemmMs.toFixed(2)} ms, ${(gemmTotal / gemmMs / 1e9).toFixed(1)} TFLOP/s overall`,
);
// Attention's useful FLOPs per layer with the causal half only: QKᵀ and PV forward (2 GEMMs
// of B·NH·T²/2·HS multiply-adds each), and 2.5× that backward (dV, dP, dS·K, dSᵀ·Q).
const attnFwd = 2 * 2 * B * T * T / 2 * config.nEmbd * config.nLayer;
for (
  const [sym, flopsOf] of [["dn_attention_forward", attnFwd], [
    "dn_attention_backward",
    2.5 * attnFwd,
  ]] as const
) {
  const e = bySymbol.get(sym);
  if (e) {
    console.log(
      `${sym}: ${e.ms.toFixed(2)} ms, ${(flopsOf / e.ms / 1e9).toFixed(1)} TFLOP/s (causal)`,
    );
  }
}
for (
  const [label, t] of [...profile].filter(([l]) => gemmFlops.has(l)).sort((a, b) =>
    b[1].ms - a[1].ms
  )
) {
  const rate = gemmFlops.get(label)! * t.calls / t.ms / 1e9;
  console.log(
    `  ${label.padEnd(34)} ${t.ms.toFixed(2).padStart(8)} ms ${
      String(t.calls).padStart(4)
    } calls ` +
      `${rate.toFixed(1).padStart(6)} TFLOP/s`,
  );
}
console.log(
  `RESULT dtype=${dtype} attention=${attn} tokens_per_s=${((B * T) / stepS).toFixed(0)} step_ms=${
    (stepS * 1e3).toFixed(1)
  } ` +
    `mfu=${(100 * mfu).toFixed(1)} outside=${(100 * outside).toFixed(1)}`,
);
x.dispose();
y.dispose();
opt.dispose();
model.dispose();
