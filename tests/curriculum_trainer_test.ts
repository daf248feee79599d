/**
 * The curriculum inside the trainer: the lengths and batch sizes actually fed to
 * the model per step, tokens and FLOPs counted at those sizes, evaluation
 * untouched, a user-written schedule driving `train()`, and the data curriculum.
 */
import assert from "assert";
import type { SampleDataset } from "../lib/data/gpt_dataset.ts";
import { GptBatchIterator } from "../lib/data/gpt_dataset.ts";
import { Curriculum } from "../lib/curriculum/curriculum.ts";
import {
  DifficultyBatchIterator,
  type DifficultyBatchOptions,
  longestDocumentRun,
  rareTokenShare,
  tokenCounts,
} from "../lib/curriculum/data.ts";
import { truncateBatch } from "../lib/curriculum/seqlen.ts";
import type { GPT, LayerPlan } from "../lib/nn/gpt.ts";
import type { Tensor } from "../lib/tensor.ts";
import type { TrainConfig } from "../lib/train/config.ts";
import { ProgressLogger } from "../lib/train/logging.ts";
import { train, Trainer } from "../lib/train/trainer.ts";
import { tinyConfig, tinyCorpus, tinyTrainer } from "./train_helpers.ts";

const corpus = await tinyCorpus();

/** Records the (B, T) shape and layer plan of every forward the model runs. */
function spy(trainer: Trainer) {
  const calls: { shape: number[]; layers?: LayerPlan; training: boolean }[] = [];
  const model = trainer.model as GPT; // one process: the engine's whole GPT
  const forward = model.forward.bind(model);
  model.forward = (tokens: Tensor, layers?: LayerPlan) => {
    calls.push({ shape: [...tokens.shape], layers, training: model.training });
    return forward(tokens, layers);
  };
  return calls;
}

Deno.test("the sequence-length curriculum feeds each step its length (fixed_discrete from config)", () => {
  const t = tinyTrainer(
    corpus,
    tinyConfig({
      curriculumLearning: true,
      scheduleType: "fixed_discrete",
      minDifficulty: 4,
      difficulty: "4,8,16",
      maxStep: "2,4",
      trainIters: 6,
    }),
  );
  const calls = spy(t);
  const results = Array.from({ length: 6 }, () => t.step());
  // DeepSpeed evaluates the schedule at step + 1: steps 1-2 → 4, 3-4 → 8, then 16
  assert.deepEqual(calls.map((c) => c.shape), [4, 4, 8, 8, 16, 16].map((T) => [4, T]));
  assert.deepEqual(results.map((r) => r.seqLength), [4, 4, 8, 8, 16, 16]);
  assert.deepEqual(results.map((r) => r.tokens), [16, 16, 32, 32, 64, 64]);
  assert.equal(t.consumedTokens, 16 + 16 + 32 + 32 + 64 + 64);
  assert.equal(t.consumedSamples, 24);
  // FLOPs at the step's length: below the full-length figure, equal at full length
  assert.ok(results[0].flops! < t.flopsPerStep / 3);
  assert.ok(Math.abs(results[5].flops! / t.flopsPerStep - 1) < 1e-12);
  t.dispose();
});

Deno.test("truncateBatch keeps the first T' inputs and targets of every row", () => {
  const t = tinyTrainer(corpus, tinyConfig());
  const full = new GptBatchIterator(t.trainData as SampleDataset, { microBatchSize: 3 }).next();
  const cut = truncateBatch(full, 5);
  assert.equal(cut.seqLength, 5);
  for (let b = 0; b < 3; b++) {
    assert.deepEqual(
      cut.inputs.subarray(b * 5, b * 5 + 5),
      full.inputs.subarray(b * 16, b * 16 + 5),
    );
    assert.deepEqual(
      cut.targets.subarray(b * 5, b * 5 + 5),
      full.targets.subarray(b * 16, b * 16 + 5),
    );
  }
  assert.equal(truncateBatch(full, 16), full);
  assert.throws(() => truncateBatch(full, 17), /length 17 is outside 1..16/);
  t.dispose();
});

Deno.test("batch-size ramp-up: micro-batches per step follow [4, 4, 24] up to 12", () => {
  const t = tinyTrainer(
    corpus,
    tinyConfig({
      microBatchSize: 4,
      globalBatchSize: 12,
      rampupBatchSize: "4,4,24",
      trainIters: 7,
    }),
  );
  const calls = spy(t);
  const sizes = Array.from({ length: 7 }, () => t.step().globalBatchSize);
  assert.deepEqual(sizes, [4, 4, 4, 8, 8, 12, 12]);
  assert.equal(calls.length, 1 + 1 + 1 + 2 + 2 + 3 + 3);
  assert.equal(t.consumedSamples, 52);
  t.dispose();
});

Deno.test("progressive layer drop in the trainer: plans reach the model, FLOPs count kept layers", () => {
  const t = tinyTrainer(corpus, tinyConfig({ nLayer: 4, trainIters: 20 }));
  t.curriculum = new Curriculum({ layerKeep: () => 0.3 });
  const calls = spy(t);
  let dropped = 0;
  for (let i = 0; i < 20; i++) {
    const r = t.step();
    const plan = calls[calls.length - 1].layers!;
    assert.equal(r.keptLayers, plan.keep.filter((k) => k).length);
    assert.ok(Math.abs(r.flops! - t.stepFlops(16, 4, r.keptLayers)) < 1e-6);
    dropped += 4 - r.keptLayers!;
  }
  assert.ok(dropped > 10, `only ${dropped} layer drops in 20 steps at theta 0.3`);
  assert.ok(t.stepFlops(16, 4, 2) < t.stepFlops(16, 4, 4));
  t.dispose();
});

Deno.test("evaluation is unaffected by the curriculum: full length, every layer, same result", () => {
  const config = tinyConfig({
    curriculumLearning: true,
    minDifficulty: 4,
    totalCurriculumStep: 50,
  });
  const plain = tinyTrainer(corpus, tinyConfig());
  const cur = tinyTrainer(corpus, config);
  cur.curriculum = new Curriculum({ ...cur.curriculum!.schedules, layerKeep: () => 0.2 });
  assert.deepEqual(cur.evaluate(), plain.evaluate());
  cur.step();
  const calls = spy(cur);
  cur.evaluate();
  assert.ok(calls.length > 0);
  for (const c of calls) {
    assert.deepEqual(c.shape, [4, 16]);
    assert.equal(c.training, false, "eval mode, in which GPT ignores any plan");
  }
  plain.dispose();
  cur.dispose();
});

Deno.test("a user-written schedule drives train(): length, LR and layer drop per step, logged", async () => {
  const t = tinyTrainer(corpus, tinyConfig({ nLayer: 3, trainIters: 6, logInterval: 1 }));
  t.curriculum = new Curriculum({
    seqLength: (step) => [6, 8, 12, 16][Math.min(step, 3)],
    lr: (step) => 1e-3 * (step + 1),
    layerKeep: (step) => (step % 2 ? 0.4 : 1),
  });
  const before: number[] = [];
  const seen: { seq: number; lr: number; kept: number }[] = [];
  const lines: string[] = [];
  const logger = new ProgressLogger({
    totalIterations: 6,
    terminal: false,
    write: (s) => lines.push(s),
  });
  const summary = await train(t, {
    runDir: null,
    logger,
    hooks: {
      beforeStep: (tr) => void before.push(tr.nextPlan().seqLength),
      afterStep: (_, r) => void seen.push({ seq: r.seqLength!, lr: r.lr, kept: r.keptLayers! }),
    },
  });
  assert.equal(summary.iterations, 6);
  assert.deepEqual(before, [6, 8, 12, 16, 16, 16]);
  assert.deepEqual(seen.map((s) => s.seq), [6, 8, 12, 16, 16, 16]);
  assert.deepEqual(seen.map((s) => s.lr), [1, 2, 3, 4, 5, 6].map((k) => 1e-3 * k));
  assert.equal(seen[0].kept, 3, "theta 1 keeps every layer");
  const logged = lines.join("\n");
  assert.match(logged, /step 1\/6 .*seq 6 .*layers 3/);
  assert.match(logged, /step 3\/6 .*seq 12/);
  t.dispose();
});

Deno.test("step() overrides: a one-off plan for a single step", () => {
  const t = tinyTrainer(corpus, tinyConfig());
  const r = t.step({ seqLength: 8, lr: 5e-3 });
  assert.deepEqual([r.seqLength, r.lr, r.tokens], [8, 5e-3, 32]);
  assert.throws(() => t.step({ seqLength: 32 }), /seqLength 32 is outside 1..16/);
  assert.throws(
    () => t.step({ globalBatchSize: 6 }),
    /globalBatchSize 6 is not a positive multiple/,
  );
  t.dispose();
});

function allowedSamples(
  data: SampleDataset,
  it: DifficultyBatchIterator,
  batches: number,
): number[] {
  const seen: number[] = [];
  const metric = longestDocumentRun(corpus.tokenizer.eotId);
  for (let i = 0; i < batches; i++) {
    const b = it.next();
    for (let r = 0; r < b.batchSize; r++) {
      const row = new Int32Array(data.seqLength + 1);
      row.set(b.inputs.subarray(r * data.seqLength, (r + 1) * data.seqLength));
      row[data.seqLength] = b.targets[(r + 1) * data.seqLength - 1];
      seen.push(metric(row));
    }
  }
  return seen;
}

Deno.test("data curriculum: only samples the schedule allows, easiest first on request", () => {
  const t = tinyTrainer(corpus, tinyConfig());
  const data = t.trainData as SampleDataset;
  const metric = longestDocumentRun(corpus.tokenizer.eotId);
  const it = new DifficultyBatchIterator(data, {
    microBatchSize: 4,
    difficulty: metric,
    schedule: (step) => (step < 3 ? 14 : Infinity),
  });
  const hard = Array.from(it.difficulties).filter((d) => d > 14).length;
  assert.ok(hard > 0 && hard < data.length, "the tiny corpus has samples on both sides");
  it.step = 0;
  assert.ok(allowedSamples(data, it, 5).every((d) => d <= 14));
  it.step = 3;
  assert.ok(allowedSamples(data, it, 10).some((d) => d > 14));
  const sorted = new DifficultyBatchIterator(data, {
    microBatchSize: 4,
    difficulty: metric,
    order: "easiest-first",
  });
  const order = allowedSamples(data, sorted, 3);
  assert.deepEqual(order, [...order].sort((a, b) => a - b));
  const strict = new DifficultyBatchIterator(data, {
    microBatchSize: 1,
    difficulty: metric,
    schedule: () => 0,
  });
  assert.throws(() => strict.next(), /no sample has difficulty <= 0 at step 0/);
  // rare-token share: a metric built from corpus counts
  const counts = tokenCounts(data, 257);
  const rare = rareTokenShare(counts, 5);
  for (
    const d of new DifficultyBatchIterator(data, { microBatchSize: 1, difficulty: rare })
      .difficulties
  ) {
    assert.ok(d >= 0 && d <= 1);
  }
  t.dispose();
});

/**
 * A trainer that reads its batches from a data curriculum over the tiny corpus (samples
 * ranked by their longest document run) and sets the iterator's step each step.
 */
function dataCurriculumTrainer(
  config: TrainConfig,
  options: Omit<DifficultyBatchOptions, "microBatchSize" | "difficulty">,
): { t: Trainer; it: DifficultyBatchIterator } {
  const base = tinyTrainer(corpus, config);
  const it = new DifficultyBatchIterator(base.trainData as SampleDataset, {
    microBatchSize: config.training.microBatchSize,
    difficulty: longestDocumentRun(corpus.tokenizer.eotId),
    ...options,
  });
  const t = new Trainer({
    config,
    train: base.trainData,
    tokenizer: corpus.tokenizer,
    batches: it,
    curriculum: new Curriculum({ data: it }),
  });
  base.dispose();
  return { t, it };
}

Deno.test("data curriculum in the trainer: the curriculum sets the iterator's step", () => {
  const { t, it } = dataCurriculumTrainer(tinyConfig({ trainIters: 4 }), {
    schedule: (step) => (step < 2 ? 14 : Infinity),
  });
  const steps: number[] = [];
  const next = it.next.bind(it);
  it.next = () => (steps.push(it.step), next());
  for (let i = 0; i < 4; i++) t.step();
  assert.deepEqual(steps, [0, 1, 2, 3]);
  assert.equal(t.consumedSamples, 16);
  t.dispose();
});

Deno.test("load() restores the tokens consumed, so token-based LR resumes where it was", async () => {
  const dir = await Deno.makeTempDir({ prefix: "denotron-curriculum-" });
  const config = tinyConfig({
    curriculumLearning: true,
    scheduleType: "fixed_discrete",
    minDifficulty: 4,
    difficulty: "4,8,16",
    maxStep: "2,4",
    lrByTokens: true,
    trainIters: 6,
  });
  const a = tinyTrainer(corpus, config);
  for (let i = 0; i < 5; i++) a.step();
  await a.save(dir);
  const b = tinyTrainer(corpus, config);
  await b.load(dir);
  assert.equal(b.consumedTokens, a.consumedTokens);
  assert.equal(b.nextPlan().lr, a.nextPlan().lr);
  // token-based: after 16+16+32+32+64 tokens of 64-token full steps, the schedule is at 2.5
  assert.equal(a.nextPlan().lr, a.schedule.at(160 / 64));
  a.dispose();
  b.dispose();
  await Deno.remove(dir, { recursive: true });
});

Deno.test("a data-curriculum run resumes from its checkpoint with the uninterrupted run's losses", async () => {
  const dir = await Deno.makeTempDir({ prefix: "denotron-data-curriculum-" });
  const config = tinyConfig({ trainIters: 6 });
  const make = () =>
    dataCurriculumTrainer(config, {
      schedule: (step) => (step < 3 ? 14 : Infinity),
      order: "easiest-first",
    });
  const whole = make();
  const want = Array.from({ length: 6 }, () => whole.t.step().loss);
  const first = make();
  for (let i = 0; i < 3; i++) first.t.step();
  await first.t.save(dir);
  const state = JSON.parse(await Deno.readTextFile(`${dir}/iter_0000003/state.json`));
  assert.equal(state.dataState.consumed, 12);
  const resumed = make();
  await resumed.t.load(dir);
  assert.equal(resumed.t.consumedSamples, 12);
  const got = [...want.slice(0, 3), ...Array.from({ length: 3 }, () => resumed.t.step().loss)];
  assert.deepEqual(got, want);

  // a batch source that cannot restore its position is refused, not silently restarted
  const plain = make();
  const it = plain.it as { loadStateDict?: unknown };
  it.loadStateDict = undefined;
  await assert.rejects(() => plain.t.load(dir), /batch source has no loadStateDict\(\)/);
  assert.throws(
    () => resumed.it.loadStateDict({ cursor: 0, consumed: 0, step: 0, samples: 7 }),
    /does not fit this dataset of \d+ samples/,
  );
  for (const r of [whole, first, resumed, plain]) r.t.dispose();
  await Deno.remove(dir, { recursive: true });
});
