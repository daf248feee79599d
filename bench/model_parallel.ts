/**
 * Model-parallel layouts on this machine: step time, peak memory per rank, and the
 * pipeline bubble measured against (p − 1)/(m·v).
 *
 *   deno run -A bench/model_parallel.ts [--model tiny|gpt2] [--layers L] [--m 4] [--seq 64]
 *                                       [--steps 3]
 *
 * launches each layout (one thread per rank) and prints a markdown table. A rank's
 * bubble is (step time − time in its forward and backward passes) / that busy time; the
 * table shows the mean over ranks. On a machine with fewer cores than ranks the ranks
 * also wait for a core, which this counts as bubble.
 */
import { parseFlags } from "../lib/cli_args.ts";
import { device } from "../lib/device.ts";
import { GPT_PRESETS } from "../lib/nn/gpt.ts";
import { initDistributed, initParallelGroups } from "../lib/parallel/init.ts";
import { PipelineGPT, runPipeline } from "../lib/parallel/pipeline.ts";
import { Tensor } from "../lib/tensor.ts";
import { launchLayoutRanks, syntheticMicroBatches } from "./common.ts";

const { values: a } = parseFlags({
  args: Deno.args,
  options: {
    model: { type: "string", default: "tiny" },
    layers: { type: "string" },
    m: { type: "string", default: "4" },
    seq: { type: "string", default: "64" },
    steps: { type: "string", default: "3" },
    tp: { type: "string", default: "1" },
    pp: { type: "string", default: "1" },
    vp: { type: "string", default: "1" },
    rank: { type: "boolean", default: false },
    out: { type: "string" },
  },
});
const M = Number(a.m), T = Number(a.seq), steps = Number(a.steps);

/** One rank: trains `steps` steps of M micro-batches of one sequence, reports figures. */
async function rank(): Promise<void> {
  await using dist = await initDistributed({ timeoutMs: 600_000 });
  const groups = await initParallelGroups(dist, { tp: Number(a.tp), pp: Number(a.pp) });
  const preset = GPT_PRESETS[a.model!];
  // Megatron pads the vocabulary to a multiple of 128 (--make-vocab-size-divisible-by).
  const config = { ...preset, blockSize: T, vocabSize: Math.ceil(preset.vocabSize / 128) * 128 };
  if (a.layers) config.nLayer = Number(a.layers);
  const model = new PipelineGPT(config, {
    tensor: groups.tensor,
    pipeline: groups.pipeline,
    embedding: groups.embedding,
    virtualSize: Number(a.vp),
  });
  const batches = syntheticMicroBatches(M, T, config.vocabSize);
  const times: number[] = [], bubbles: number[] = [];
  for (let s = 0; s < steps; s++) {
    let busy = 0;
    dist.world.barrier();
    const t0 = performance.now();
    runPipeline(model, batches, { lossScale: 1 / M, onCompute: (_, ms) => (busy += ms) });
    model.syncGrads();
    const wall = performance.now() - t0;
    model.params.zeroGrad();
    times.push(wall);
    bubbles.push((wall - busy) / busy);
  }
  // Drop the first step (allocator warm-up) when there are more.
  const kept = steps > 1 ? 1 : 0;
  const mean = (x: number[]) => x.slice(kept).reduce((p, q) => p + q, 0) / (x.length - kept);
  const figures = Tensor.zeros([3 * dist.worldSize]);
  const mine = new Float32Array(3 * dist.worldSize);
  mine.set([mean(times), mean(bubbles), device().memoryStats().peak / 2 ** 20], 3 * dist.rank);
  figures.copyFromHost(mine);
  dist.world.allReduce(figures);
  if (dist.rank === 0 && a.out) {
    const f = Array.from(figures.toArray());
    const per = [...Array(dist.worldSize).keys()].map((r) => f.slice(3 * r, 3 * r + 3));
    await Deno.writeTextFile(
      a.out,
      JSON.stringify({
        stepMs: Math.max(...per.map((x) => x[0])),
        bubble: per.reduce((p, x) => p + x[1], 0) / per.length,
        peakMiB: Math.max(...per.map((x) => x[2])),
      }),
    );
  }
  model.dispose();
}

/** Runs every layout and prints the table. */
async function driver(): Promise<void> {
  device();
  const layouts: [number, number, number][] = [[1, 1, 1], [2, 1, 1], [1, 2, 1], [1, 2, 2], [
    2,
    2,
    1,
  ], [1, 4, 1]];
  console.log(
    `${a.model} (vocabulary padded to a multiple of 128), ${M} micro-batches of 1 × ${T} tokens, ` +
      `${steps} steps, one thread per rank\n`,
  );
  console.log(
    "| TP | PP | VP | ranks | step ms | peak MiB / rank | bubble measured | (p−1)/(m·v) |",
  );
  console.log(
    "| -- | -- | -- | ----- | ------- | --------------- | --------------- | ----------- |",
  );
  const nLayer = Number(a.layers ?? GPT_PRESETS[a.model!].nLayer);
  for (const [tp, pp, vp] of layouts) {
    if (nLayer % (pp * vp) !== 0) continue;
    const n = tp * pp;
    const out = await launchLayoutRanks(
      decodeURIComponent(new URL(import.meta.url).pathname),
      Deno.args,
      [tp, pp, vp],
    );
    const r = JSON.parse(await Deno.readTextFile(out));
    const ideal = (pp - 1) / (M * vp);
    console.log(
      `| ${tp} | ${pp} | ${vp} | ${n} | ${r.stepMs.toFixed(0)} | ${r.peakMiB.toFixed(1)} | ${
        (100 * r.bubble).toFixed(0)
      } % | ${(100 * ideal).toFixed(0)} % |`,
    );
  }
}

if (a.rank) await rank();
else await driver();
