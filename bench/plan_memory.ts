/**
 * The planner's memory (`--profile denotron`) against the native allocator, rank by
 * rank, for every layout of bench/model_parallel.ts.
 *
 *   deno run -A bench/plan_memory.ts [--model gpt2|tiny|llama-tiny] [--layers L] [--m 4]
 *                                    [--seq 64] [--breakdown]
 *
 * Each rank builds the model as bench/model_parallel.ts does, then reads the CPU caching
 * allocator's bytes in use after each phase: the parameters; the tensors held after a
 * forward pass, beyond the parameters (the most over the step's forwards); the step's peak
 * (one step of M micro-batches, no optimizer: what model_parallel.ts measures); and the
 * peak of a second step followed by an AdamW update (the moments allocated first, as a
 * trainer does). The table puts the planner's terms beside each, on the fullest rank;
 * `--breakdown` also prints the planner's tensors of each layout's fullest rank.
 */
import { parseFlags } from "../lib/cli_args.ts";
import { device } from "../lib/device.ts";
import { GPT_PRESETS, type GPTConfig, gptConfigWithDefaults } from "../lib/nn/gpt.ts";
import { AdamW } from "../lib/optim/adamw.ts";
import { initDistributed, initParallelGroups } from "../lib/parallel/init.ts";
import { PipelineGPT, runPipeline } from "../lib/parallel/pipeline.ts";
import {
  allocatorBlockBytes,
  IMPLEMENTATION_PROFILES,
  type MemoryBreakdown,
  memoryPerStage,
  type ModelConfig,
  modelConfigOf,
  type ParallelLayout,
  rankTensors,
} from "../lib/plan/mod.ts";
import { launchLayoutRanks, syntheticMicroBatches } from "./common.ts";

const { values: a } = parseFlags({
  args: Deno.args,
  options: {
    model: { type: "string", default: "gpt2" },
    layers: { type: "string" },
    m: { type: "string", default: "4" },
    seq: { type: "string", default: "64" },
    breakdown: { type: "boolean", default: false },
    tp: { type: "string", default: "1" },
    pp: { type: "string", default: "1" },
    vp: { type: "string", default: "1" },
    rank: { type: "boolean", default: false },
    out: { type: "string" },
  },
});
const M = Number(a.m), T = Number(a.seq);

/** The benchmark's model: the preset at T tokens, vocabulary padded to a multiple of 128. */
function benchConfig(): GPTConfig {
  const preset = GPT_PRESETS[a.model!];
  const config = { ...preset, blockSize: T, vocabSize: Math.ceil(preset.vocabSize / 128) * 128 };
  if (a.layers) config.nLayer = Number(a.layers);
  return config;
}

/** The same model in the planner's terms (Megatron's names). */
function plannerModel(g: GPTConfig): ModelConfig {
  return { ...modelConfigOf(gptConfigWithDefaults(g), T), name: a.model };
}

/** What one rank measured, bytes. */
interface RankFigures {
  /** Pipeline rank. */
  stage: number;
  /** In use once the model is built. */
  parameters: number;
  /** The most in use after a forward pass, less the parameters. */
  held: number;
  /** The allocator's peak after one step without optimizer. */
  stepPeak: number;
  /** The peak after a second step and an AdamW update. */
  adamPeak: number;
}

/** One rank: one step, then one step with AdamW; writes its figures to `${out}.${rank}`. */
async function rank(): Promise<void> {
  await using dist = await initDistributed({ timeoutMs: 600_000 });
  const groups = await initParallelGroups(dist, { tp: Number(a.tp), pp: Number(a.pp) });
  const config = benchConfig();
  const dev = device();
  const model = new PipelineGPT(config, {
    tensor: groups.tensor,
    pipeline: groups.pipeline,
    embedding: groups.embedding,
    virtualSize: Number(a.vp),
  });
  const parameters = dev.memoryStats().inUse;
  const batches = syntheticMicroBatches(M, T, config.vocabSize);
  let held = 0, measuring = true;
  const step = () => {
    dist.world.barrier();
    runPipeline(model, batches, {
      lossScale: 1 / M,
      onCompute: (action) => {
        if (measuring && action.kind === "forward") {
          held = Math.max(held, dev.memoryStats().inUse - parameters);
        }
      },
    });
    model.syncGrads();
  };
  step();
  const stepPeak = dev.memoryStats().peak;
  measuring = false;
  model.params.zeroGrad();
  const adam = new AdamW(model.params, { lr: 1e-4 });
  step();
  adam.step();
  const figures: RankFigures = {
    stage: groups.pipeline.rank,
    parameters,
    held,
    stepPeak,
    adamPeak: dev.memoryStats().peak,
  };
  await Deno.writeTextFile(`${a.out}.${dist.rank}`, JSON.stringify(figures));
  adam.dispose();
  model.dispose();
  for (const b of batches) {
    b.tokens.dispose();
    b.targets.dispose();
  }
}

const MiB = (x: number) => (x / 2 ** 20).toFixed(2);
const pct = (predicted: number, measured: number) => {
  const e = 100 * (predicted / measured - 1);
  return `${e >= 0 ? "+" : "−"}${Math.abs(e).toFixed(1)} %`;
};

// The planner's figures of one stage, matched to what a rank measures.
function predicted(s: MemoryBreakdown) {
  const parameters = s.weights + s.gradients;
  const held = s.activations + s.vocabularyCopies;
  const stepPeak = parameters + held + s.workspace;
  return { parameters, held, stepPeak, adamPeak: stepPeak + s.optimizer };
}

/** Runs every layout and prints the table. */
async function driver(): Promise<void> {
  device();
  // The layouts of bench/model_parallel.ts.
  const layouts: [number, number, number][] = [
    [1, 1, 1],
    [2, 1, 1],
    [1, 2, 1],
    [1, 2, 2],
    [2, 2, 1],
    [1, 4, 1],
  ];
  const config = benchConfig();
  const model = plannerModel(config);
  console.log(
    `${a.model}, ${config.nLayer} layers (vocabulary padded to ${config.vocabSize}), ${M} micro-batches ` +
      `of 1 × ${T} tokens, fp32; planner: memoryPerStage(--profile denotron); MiB on the fullest rank\n`,
  );
  console.log(
    "| TP | PP | VP | parameters MiB pred / meas | held after forwards pred / meas | step peak pred / meas | error | Megatron's count | with AdamW pred / meas | error |",
  );
  console.log(
    "| -- | -- | -- | -------------------------- | ------------------------------- | --------------------- | ----- | ---------------- | ---------------------- | ----- |",
  );
  const breakdowns: string[] = [];
  for (const [tp, pp, vp] of layouts) {
    if (config.nLayer % (pp * vp) !== 0) continue;
    const n = tp * pp;
    const out = await launchLayoutRanks(
      decodeURIComponent(new URL(import.meta.url).pathname),
      Deno.args,
      [tp, pp, vp],
    );
    const ranks: RankFigures[] = [];
    for (let r = 0; r < n; r++) {
      ranks.push(JSON.parse(await Deno.readTextFile(`${out}.${r}`)));
      await Deno.remove(`${out}.${r}`);
    }
    await Deno.remove(out);
    const layout: ParallelLayout = {
      tensorModelParallelSize: tp,
      pipelineModelParallelSize: pp,
      virtualPipelineModelParallelSize: vp,
      microBatchSize: 1,
      globalBatchSize: M,
      precision: "fp32",
      sequenceParallel: false,
    };
    const stages = memoryPerStage(model, layout, IMPLEMENTATION_PROFILES.denotron).map(predicted);
    // What the planner said before (megatron-lm's count), without the optimizer state.
    const megatron = Math.max(
      ...memoryPerStage(model, layout).map((s) => s.total - s.optimizer),
    );
    // The fullest rank by measurement, and the planner's figures for its stage.
    const worst = ranks.reduce((x, y) => (y.stepPeak > x.stepPeak ? y : x));
    const mine = stages[worst.stage];
    const adamWorst = ranks.reduce((x, y) => (y.adamPeak > x.adamPeak ? y : x));
    const adamMine = stages[adamWorst.stage];
    console.log(
      `| ${tp} | ${pp} | ${vp} | ${MiB(mine.parameters)} / ${MiB(worst.parameters)} | ${
        MiB(mine.held)
      } / ${MiB(worst.held)} | ${MiB(mine.stepPeak)} / ${MiB(worst.stepPeak)} | ${
        pct(mine.stepPeak, worst.stepPeak)
      } | ${MiB(megatron)} (${pct(megatron, worst.stepPeak)}) | ${MiB(adamMine.adamPeak)} / ${
        MiB(adamWorst.adamPeak)
      } | ${pct(adamMine.adamPeak, adamWorst.adamPeak)} |`,
    );
    if (a.breakdown) {
      const held = rankTensors(model, layout, worst.stage);
      breakdowns.push(`\nTP ${tp} PP ${pp} VP ${vp}, stage ${worst.stage}:`);
      for (const [kind, list] of Object.entries(held)) {
        // The same tensor of every layer and chunk on one line.
        const merged = new Map<string, { count: number; block: number }>();
        for (const x of list) {
          const key = `${x.name} ${x.bytes}`;
          const entry = merged.get(key) ?? { count: 0, block: allocatorBlockBytes(x.bytes) };
          entry.count += x.count;
          merged.set(key, entry);
        }
        for (const [key, { count, block }] of merged) {
          const name = key.slice(0, key.lastIndexOf(" "));
          breakdowns.push(
            `  ${kind.padEnd(16)} ${name.padEnd(90)} ${String(count).padStart(4)} x ${
              (block / 1024).toFixed(1).padStart(9)
            } KiB = ${MiB(count * block).padStart(8)} MiB`,
          );
        }
      }
    }
  }
  for (const line of breakdowns) console.log(line);
}

if (a.rank) await rank();
else await driver();
