/**
 * A curriculum written as a script: sequence-length warmup, progressive layer
 * dropping and a hand-written LR schedule on the built-in corpus, with hooks
 * that print what each step did.
 *
 *   deno run -A examples/curriculum.ts
 *
 * The same calls work in a notebook cell: build a Trainer, set
 * `trainer.curriculum`, then `await train(trainer, { hooks })` or call
 * `trainer.step()` yourself.
 *
 * @module
 */

import { Curriculum } from "../lib/curriculum/curriculum.ts";
import { pldTheta } from "../lib/curriculum/layer_drop.ts";
import { seqLenAt } from "../lib/curriculum/seqlen.ts";
import { buildGptDatasets } from "../lib/data/gpt_dataset.ts";
import { IndexedDataset } from "../lib/data/indexed_dataset.ts";
import { prepareSotuCorpus } from "../lib/data/sotu.ts";
import { ByteTokenizer } from "../lib/data/tokenizer.ts";
import { applyOverrides, DEFAULT_CONFIG } from "../lib/train/config.ts";
import { train, Trainer } from "../lib/train/trainer.ts";

const config = applyOverrides(DEFAULT_CONFIG, {
  trainIters: 200,
  evalInterval: 50,
  save: null,
  logInterval: 20,
}, "example");
const tokenizer = new ByteTokenizer();
using data = await IndexedDataset.open(await prepareSotuCorpus(".cache", tokenizer));
const t = config.training;
const { train: trainData, valid } = buildGptDatasets(data, {
  split: config.data.split,
  seqLength: config.model.seqLength,
  seed: t.seed,
  numSamples: [t.trainIters * t.globalBatchSize, undefined, undefined],
});

using trainer = new Trainer({ config, train: trainData!, valid, tokenizer });
trainer.curriculum = new Curriculum({
  // DeepSpeed's fixed_root schedule: 8 → 64 tokens over the first 100 steps
  seqLength: (step) =>
    seqLenAt({
      minDifficulty: 8,
      maxDifficulty: 64,
      scheduleType: "fixed_root",
      totalCurriculumStep: 100,
      difficultyStep: 8,
      rootDegree: 2,
    }, step + 1),
  // keep level falling from 1 towards 0.5, faster than the paper's default for a short run
  layerKeep: (step) => pldTheta(step, { theta: 0.5, gamma: 0.01 }),
  // any function of the step: here 20 steps of warmup, then a linear decay
  lr: (step) => 3e-3 * Math.min((step + 1) / 20, 1 - 0.9 * step / 200),
});

const summary = await train(trainer, {
  runDir: null,
  hooks: {
    afterStep: (_, r) => {
      if (r.iteration % 50 === 0) {
        console.log(
          `step ${r.iteration}: length ${r.seqLength}, layers ${r.keptLayers}, ` +
            `lr ${r.lr.toExponential(2)}, loss ${r.loss.toFixed(3)}`,
        );
      }
    },
  },
});
console.log(`validation: ${summary.lastEval?.bitsPerByte.toFixed(3)} bits per byte`);
