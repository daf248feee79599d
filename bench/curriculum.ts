/**
 * `deno task bench:curriculum`: wall time to reach a validation bits-per-byte on
 * the default run (built-in corpus, byte tokenizer, the default 4-layer model),
 * with and without sequence-length warmup and progressive layer dropping.
 *
 *   deno task bench:curriculum [--target 2.8] [--cap 100] [--eval-every 20]
 *                              [--ramp 150] [--gamma 0.01]
 *
 * Each variant trains from the same initial weights on the same data order and
 * evaluates the same validation batches every `--eval-every` steps; it stops at
 * the first evaluation at or below the target, or after `--cap` seconds of
 * training. Times are training time only (evaluation excluded); FLOP/s are the
 * model FLOPs actually run (shorter sequences, skipped layers) per second.
 *
 * @module
 */

import { parseFlags } from "../lib/cli_args.ts";
import { Curriculum } from "../lib/curriculum/curriculum.ts";
import { pldTheta } from "../lib/curriculum/layer_drop.ts";
import { seqLenAt } from "../lib/curriculum/seqlen.ts";
import { buildGptDatasets } from "../lib/data/gpt_dataset.ts";
import { IndexedDataset } from "../lib/data/indexed_dataset.ts";
import { prepareSotuCorpus } from "../lib/data/sotu.ts";
import { ByteTokenizer } from "../lib/data/tokenizer.ts";
import { applyOverrides, DEFAULT_CONFIG } from "../lib/train/config.ts";
import { formatSi } from "../lib/train/logging.ts";
import { Trainer } from "../lib/train/trainer.ts";

const { values } = parseFlags({
  args: Deno.args,
  options: {
    target: { type: "string", default: "2.8" },
    cap: { type: "string", default: "100" },
    "eval-every": { type: "string", default: "20" },
    ramp: { type: "string", default: "150" },
    gamma: { type: "string", default: "0.01" },
  },
});
const target = Number(values.target);
const capSeconds = Number(values.cap);
const evalEvery = Number(values["eval-every"]);
const ramp = Number(values.ramp);
const gamma = Number(values.gamma);

const config = applyOverrides(DEFAULT_CONFIG, { save: null, evalIters: 10 }, "bench");
const tokenizer = new ByteTokenizer();
using data = await IndexedDataset.open(await prepareSotuCorpus(".cache", tokenizer));
const t = config.training;
const { train: trainData, valid } = buildGptDatasets(data, {
  split: config.data.split,
  seqLength: config.model.seqLength,
  seed: t.seed,
  numSamples: [t.trainIters * t.globalBatchSize, undefined, undefined],
});

const T = config.model.seqLength;
const warmup = (step: number) =>
  seqLenAt({
    minDifficulty: 8,
    maxDifficulty: T,
    scheduleType: "fixed_linear",
    totalCurriculumStep: ramp,
    difficultyStep: 8,
  }, step + 1);
const drop = (step: number) => pldTheta(step, { theta: 0.5, gamma });

const variants: { name: string; curriculum: Curriculum | null }[] = [
  { name: "baseline", curriculum: null },
  {
    name: `seqlen warmup 8→${T} over ${ramp} steps`,
    curriculum: new Curriculum({ seqLength: warmup }),
  },
  {
    name: `layer drop (theta 0.5, gamma ${gamma})`,
    curriculum: new Curriculum({ layerKeep: drop }),
  },
  {
    name: "both",
    curriculum: new Curriculum({ seqLength: warmup, layerKeep: drop }),
  },
];

interface Row {
  name: string;
  reached: boolean;
  steps: number;
  seconds: number;
  tokens: number;
  flops: number;
  bitsPerByte: number;
}

const rows: Row[] = [];
for (const v of variants) {
  using trainer = new Trainer({
    config,
    train: trainData!,
    valid,
    tokenizer,
    curriculum: v.curriculum,
  });
  let seconds = 0, tokens = 0, flops = 0, bpb = NaN, reached = false;
  while (trainer.iteration < t.trainIters && seconds < capSeconds) {
    const r = trainer.step();
    seconds += r.seconds;
    tokens += r.tokens;
    flops += r.flops ?? trainer.flopsPerStep;
    if (trainer.iteration % evalEvery === 0) {
      bpb = trainer.evaluate().bitsPerByte;
      console.log(
        `${v.name}: step ${trainer.iteration}, ${seconds.toFixed(1)} s, ${
          bpb.toFixed(3)
        } bits/byte`,
      );
      if (bpb <= target) {
        reached = true;
        break;
      }
    }
  }
  // Capped between evaluations: measure where it stopped.
  if (!reached && trainer.iteration % evalEvery !== 0) bpb = trainer.evaluate().bitsPerByte;
  rows.push({
    name: v.name,
    reached,
    steps: trainer.iteration,
    seconds,
    tokens,
    flops,
    bitsPerByte: bpb,
  });
}

const base = rows[0];
console.log(
  `\ntarget ${target} bits/byte on validation (${config.eval.evalIters} batches), ` +
    `cap ${capSeconds} s of training per variant, evaluated every ${evalEvery} steps\n`,
);
console.log(
  "| variant | reached | steps | train time | vs baseline | tokens | model FLOP/s | bits/byte |",
);
console.log("| --- | --- | --- | --- | --- | --- | --- | --- |");
for (const r of rows) {
  const speed = base.reached && r.reached ? `${(base.seconds / r.seconds).toFixed(2)}×` : "–";
  console.log(
    `| ${r.name} | ${r.reached ? "yes" : "no"} | ${r.steps} | ${
      r.seconds.toFixed(1)
    } s | ${speed} | ` +
      `${formatSi(r.tokens)} | ${formatSi(r.flops / r.seconds)} | ${r.bitsPerByte.toFixed(3)} |`,
  );
}
