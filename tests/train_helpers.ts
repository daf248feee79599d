/**
 * Shared set-up of the training tests: a tiny corpus as an indexed dataset,
 * a tiny configuration, and trainers built over them.
 */
import { buildGptDatasets } from "../lib/data/gpt_dataset.ts";
import { IndexedDataset, IndexedDatasetWriter } from "../lib/data/indexed_dataset.ts";
import { ByteTokenizer } from "../lib/data/tokenizer.ts";
import { applyOverrides, DEFAULT_CONFIG, type TrainConfig } from "../lib/train/config.ts";
import { Trainer } from "../lib/train/trainer.ts";

const SENTENCES = [
  "The state of the union is strong.",
  "Congress shall make no law respecting an establishment of religion.",
  "We the people, in order to form a more perfect union, establish justice.",
  "The revenue of the year exceeded the expenditure by a modest sum.",
  "Our relations with foreign nations continue to be peaceful and friendly.",
];

/** A tokenizer and a ~6 KB byte-level corpus of 24 documents, written once per test file. */
export async function tinyCorpus(): Promise<{ tokenizer: ByteTokenizer; data: IndexedDataset }> {
  const tokenizer = new ByteTokenizer();
  const prefix = `${await Deno.makeTempDir({ prefix: "denotron-train-" })}/corpus`;
  const writer = await IndexedDatasetWriter.create(prefix, { vocabSize: tokenizer.vocabSize });
  for (let d = 0; d < 24; d++) {
    const text = Array.from({ length: 2 }, (_, i) => SENTENCES[(d + i) % SENTENCES.length])
      .join(" ");
    await writer.addDocument(tokenizer.encode(text), tokenizer.eotId);
  }
  await writer.finalize();
  return { tokenizer, data: await IndexedDataset.open(prefix) };
}

/** A two-layer, width-32 run of a few iterations; overrides use config keys. */
export function tinyConfig(overrides: Record<string, unknown> = {}): TrainConfig {
  return applyOverrides(DEFAULT_CONFIG, {
    nLayer: 2,
    nHead: 2,
    nEmbd: 32,
    seqLength: 16,
    dropout: 0,
    microBatchSize: 4,
    globalBatchSize: 4,
    trainIters: 6,
    lr: 1e-2,
    minLr: 1e-3,
    lrWarmupIters: 2,
    evalInterval: 3,
    evalIters: 2,
    logInterval: 2,
    saveInterval: 3,
    save: null,
    exitDurationInMins: null,
    split: "80,20,0",
    ...overrides,
  }, "test");
}

/** A trainer over the tiny corpus. */
export function tinyTrainer(
  corpus: { tokenizer: ByteTokenizer; data: IndexedDataset },
  config: TrainConfig,
): Trainer {
  const t = config.training;
  const { train, valid } = buildGptDatasets(corpus.data, {
    split: config.data.split,
    seqLength: config.model.seqLength,
    seed: t.seed,
    numSamples: [t.trainIters * t.globalBatchSize, undefined, undefined],
  });
  return new Trainer({ config, train: train!, valid, tokenizer: corpus.tokenizer });
}
