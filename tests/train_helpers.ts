/**
 * Shared set-up of the training tests: a tiny corpus as an indexed dataset,
 * a tiny configuration, and trainers built over them.
 */
import assert from "assert";
import { device } from "../lib/device.ts";
import { launch } from "../lib/parallel/launch.ts";
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

/** tools/train.ts, for the tests that run it as a command. */
export const TRAIN_SCRIPT = decodeURIComponent(
  new URL("../tools/train.ts", import.meta.url).pathname,
);

/**
 * The command line of a tiny tools/train.ts run: `nLayer` layers, 4 steps of a global
 * batch of 8 (micro-batch 2), logged every step, evaluated and saved every 2. `dataPath`
 * is one prefix or a blend's words ("0.3", "a", "0.7", "b").
 */
export function trainCliArgs(
  dataPath: string | readonly string[],
  save: string,
  nLayer: number,
  extra: string[] = [],
): string[] {
  return [
    "--data-path",
    ...[dataPath].flat(),
    "--tokenizer",
    "byte",
    "--split",
    "80,20,0",
    "--n-layer",
    String(nLayer),
    "--n-head",
    "2",
    "--n-embd",
    "32",
    "--seq-length",
    "16",
    "--dropout",
    "0",
    "--micro-batch-size",
    "2",
    "--global-batch-size",
    "8",
    "--train-iters",
    "4",
    "--lr",
    "1e-2",
    "--min-lr",
    "1e-3",
    "--lr-warmup-iters",
    "1",
    "--lr-decay-iters",
    "4",
    "--eval-interval",
    "2",
    "--eval-iters",
    "2",
    "--log-interval",
    "1",
    "--save-interval",
    "2",
    "--keep-last",
    "5",
    "--save",
    save,
    ...extra,
  ]; // deno-fmt-ignore
}

/** What a tools/train.ts run logged in its metrics.jsonl, with the output for failures. */
export interface CliRun {
  losses: number[];
  /** Loss scale and skipped steps of each logged step (fp16). */
  scales: [number, number][];
  evals: number[];
  output: string;
}

/** Reads the metrics a run wrote under `save`. */
export async function readCliRun(save: string, output: string): Promise<CliRun> {
  const lines = (await Deno.readTextFile(`${save}/metrics.jsonl`)).trim().split("\n");
  const recs = lines.map((l) => JSON.parse(l));
  const train = recs.filter((r) => r.kind === "train");
  return {
    losses: train.map((r) => r.loss),
    scales: train.map((r) => [r.lossScale, r.skippedSteps]),
    evals: recs.filter((r) => r.kind === "eval").map((r) => r.loss),
    output,
  };
}

/** A sequence-length curriculum for trainCliArgs runs: length 8 at step 1, 16 from step 2 on. */
export const LENGTH_CURRICULUM = [
  "--curriculum-learning",
  "true",
  "--min-difficulty",
  "8",
  "--max-difficulty",
  "16",
  "--total-curriculum-step",
  "2",
];

/**
 * llama-tiny's architecture (RMSNorm, RoPE, SwiGLU, 2 KV heads for 4 query heads, no
 * biases, untied head) at trainCliArgs' width.
 */
export const LLAMA_TINY_ARGS = [
  "--model",
  "llama-tiny",
  "--n-head",
  "4",
  "--num-query-groups",
  "2",
  "--ffn-hidden-size",
  "48",
];

/** Runs a Deno script in one process (one kernel thread) and returns its exit code and output. */
export async function runScript(
  script: string,
  argv: string[],
): Promise<{ code: number; out: string }> {
  device();
  const r = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", script, ...argv],
    env: { DENOTRON_NUM_THREADS: "1", NO_COLOR: "1" },
  }).output();
  return {
    code: r.code,
    out: new TextDecoder().decode(r.stdout) + new TextDecoder().decode(r.stderr),
  };
}

/**
 * Runs tools/train.ts (or another command built on it) under the launcher on n ranks (one
 * thread each); output prefixed by rank.
 */
export async function launchTrain(
  n: number,
  argv: string[],
  env: Record<string, string> = {},
  script: string = TRAIN_SCRIPT,
): Promise<{ code: number; output: string }> {
  device();
  const lines: string[] = [];
  const code = await launch({
    nprocPerNode: n,
    script,
    args: argv,
    env: { DENOTRON_NUM_THREADS: "1", NO_COLOR: "1", ...env },
    output: (rank, _s, line) => lines.push(`[rank ${rank}] ${line}`),
    log: (line) => lines.push(line),
    graceSeconds: 2,
  });
  return { code, output: lines.join("\n") };
}

/**
 * Trains with tools/train.ts in one process (n = 1) or under the launcher on n ranks,
 * asserts it succeeded, and reads what it logged under `save`.
 *
 * @param n ranks
 * @param argv the training flags (they must save to `save`)
 * @param save the run's save directory
 */
export async function trainRun(n: number, argv: string[], save: string): Promise<CliRun> {
  if (n === 1) {
    const { code, out } = await runScript(TRAIN_SCRIPT, argv);
    assert.equal(code, 0, out);
    return await readCliRun(save, out);
  }
  const { code, output } = await launchTrain(n, argv);
  assert.equal(code, 0, output);
  return await readCliRun(save, output);
}

/** Asserts two sequences agree element by element within a relative tolerance. */
export function assertCloseSeq(got: number[], want: number[], what: string, tol = 1e-5): void {
  assert.equal(got.length, want.length, `${what}: ${got.length} values, expected ${want.length}`);
  got.forEach((g, i) => {
    const e = Math.abs(g - want[i]) / Math.abs(want[i]);
    assert.ok(e < tol, `${what}: value ${i + 1} is ${g}, expected ${want[i]} (relative ${e})`);
  });
}
