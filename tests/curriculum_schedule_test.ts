/**
 * The curriculum's pure schedules, step by step against their formulas:
 * DeepSpeed's sequence-length schedules, progressive layer dropping's theta and
 * keep probabilities, Megatron's batch-size ramp-up, and the config keys.
 */
import assert from "assert";
import { rampupBatchSizeAt } from "../lib/curriculum/batch_rampup.ts";
import { Curriculum } from "../lib/curriculum/curriculum.ts";
import { keepProbability, pldTheta } from "../lib/curriculum/layer_drop.ts";
import {
  seqLenAt,
  type SeqLenCurriculumConfig,
  validateSeqLenCurriculum,
} from "../lib/curriculum/seqlen.ts";
import { ConfigError, loadConfig } from "../lib/train/config.ts";
import { LrSchedule } from "../lib/train/lr_schedule.ts";
import { curriculumFromConfig } from "../lib/train/step_plan.ts";

const linear: SeqLenCurriculumConfig = {
  minDifficulty: 8,
  maxDifficulty: 64,
  scheduleType: "fixed_linear",
  totalCurriculumStep: 100,
  difficultyStep: 8,
};

Deno.test("fixed_linear: floor(s/total · (max − min) + min), down to a multiple of the step", () => {
  // step: floor(s/100 · 56 + 8) → rounded down to a multiple of 8, capped at 64
  const table: [number, number][] = [
    [0, 8], // 8
    [1, 8], // 8.56 → 8
    [14, 8], // 15.84 → 15 → 8
    [15, 16], // 16.4 → 16
    [50, 32], // 36 → 32
    [72, 48], // 48.32 → 48
    [99, 56], // 63.44 → 63 → 56
    [100, 64],
    [1000, 64], // capped
  ];
  for (const [s, want] of table) assert.equal(seqLenAt(linear, s), want, `step ${s}`);
});

Deno.test("fixed_root: the root of the progress, then the same rounding", () => {
  const root = { ...linear, scheduleType: "fixed_root" as const, rootDegree: 2 };
  const table: [number, number][] = [
    [1, 8], // sqrt(.01) = .1 → 13.6 → 8
    [4, 16], // .2 → 19.2 → 16
    [9, 24], // .3 → 24.8 → 24
    [25, 32], // .5 → 36 → 32
    [64, 48], // .8 → 52.8 → 48
    [100, 64],
  ];
  for (const [s, want] of table) assert.equal(seqLenAt(root, s), want, `step ${s}`);
  // rootDegree 1 is fixed_linear
  const one = { ...root, rootDegree: 1 };
  for (let s = 0; s <= 120; s++) assert.equal(seqLenAt(one, s), seqLenAt(linear, s));
});

Deno.test("fixed_discrete: each length up to its maxStep, the last one after", () => {
  const c: SeqLenCurriculumConfig = {
    minDifficulty: 8,
    maxDifficulty: 32,
    scheduleType: "fixed_discrete",
    difficulty: [8, 16, 32],
    maxStep: [5, 10],
  };
  const got = Array.from({ length: 13 }, (_, i) => seqLenAt(c, i + 1));
  assert.deepEqual(got, [8, 8, 8, 8, 8, 16, 16, 16, 16, 16, 32, 32, 32]);
});

Deno.test("a length never falls below minDifficulty when min is not a multiple of the step", () => {
  const c = { ...linear, minDifficulty: 4 };
  assert.equal(seqLenAt(c, 0), 4); // DeepSpeed's rounding alone would give 0
  assert.equal(seqLenAt(c, 100), 64);
});

Deno.test("validateSeqLenCurriculum: sentences for bad settings, a warning off multiples of 8", () => {
  const warnings: string[] = [];
  validateSeqLenCurriculum({ ...linear, difficultyStep: 4 }, (m) => warnings.push(m));
  assert.equal(warnings.length, 1);
  assert.match(warnings[0], /difficultyStep 4 is not a multiple of 8/);
  validateSeqLenCurriculum(linear, (m) => warnings.push(m));
  assert.equal(warnings.length, 1);
  assert.throws(
    () => validateSeqLenCurriculum({ ...linear, minDifficulty: 80 }),
    /minDifficulty 80 is larger than maxDifficulty 64/,
  );
  assert.throws(
    () =>
      validateSeqLenCurriculum({
        ...linear,
        scheduleType: "fixed_discrete",
        difficulty: [8, 16],
        maxStep: [5, 10],
      }),
    /one more difficulty than maxStep/,
  );
  assert.throws(
    () => validateSeqLenCurriculum({ ...linear, totalCurriculumStep: undefined }),
    /totalCurriculumStep must be a positive integer/,
  );
});

Deno.test("pldTheta: (1 − theta_bar)·exp(−gamma·t) + theta_bar, defaults 0.5 and 0.001", () => {
  for (const t of [0, 1, 10, 100, 1000, 5000, 1e5]) {
    const want = 0.5 * Math.exp(-0.001 * t) + 0.5;
    assert.ok(Math.abs(pldTheta(t) - want) < 1e-15, `t=${t}`);
  }
  assert.equal(pldTheta(0), 1);
  assert.ok(Math.abs(pldTheta(1000) - 0.6839397205857212) < 1e-12);
  assert.ok(
    Math.abs(pldTheta(50, { theta: 0.2, gamma: 0.01 }) - (0.8 * Math.exp(-0.5) + 0.2)) < 1e-15,
  );
  assert.throws(() => pldTheta(0, { theta: 0 }), /theta must be in \(0, 1\]/);
});

Deno.test("keepProbability: 1 − (i/L)(1 − theta), i from 1: the top layer keeps theta", () => {
  assert.deepEqual([1, 2, 3, 4].map((i) => keepProbability(i, 4, 0.5)), [0.875, 0.75, 0.625, 0.5]);
  assert.deepEqual([1, 2].map((i) => keepProbability(i, 2, 1)), [1, 1]);
  assert.throws(() => keepProbability(0, 4, 0.5), /outside 1..4 \(1-based\)/);
});

Deno.test("rampupBatchSizeAt: Megatron's ramp-up, consumed samples to batch size", () => {
  // [4, 4, 24] to 12: two increments, 12 samples each
  let consumed = 0;
  const sizes: number[] = [];
  for (let i = 0; i < 7; i++) {
    const b = rampupBatchSizeAt([4, 4, 24], 12, consumed, 4);
    sizes.push(b);
    consumed += b;
  }
  assert.deepEqual(sizes, [4, 4, 4, 8, 8, 12, 12]);
  assert.deepEqual(
    [0, 99, 100, 199, 200, 299, 300, 301].map((c) => rampupBatchSizeAt([8, 8, 300], 32, c)),
    [8, 8, 16, 16, 24, 24, 32, 32],
  );
  assert.throws(() => rampupBatchSizeAt([8, 5, 300], 32, 0), /increment does not divide/);
  assert.throws(() => rampupBatchSizeAt([6, 2, 300], 32, 0, 4), /multiples of microBatchSize 4/);
});

Deno.test("Curriculum.plan(): user-written functions of the step, layer drops at theta < 1", () => {
  const c = new Curriculum({
    seqLength: (s) => 8 * (1 + Math.min(s, 7)),
    lr: (s, ctx) => 1e-3 * ctx.consumedTokens / 1000 + s * 0,
    globalBatchSize: (_, ctx) => (ctx.consumedSamples < 100 ? 4 : 8),
    layerKeep: (s) => (s < 2 ? 1 : 0.5),
  });
  const at = (iteration: number, consumedSamples: number, consumedTokens: number) =>
    c.plan({ iteration, consumedSamples, consumedTokens }, { numLayers: 6, seed: 3 });
  const p0 = at(0, 0, 0);
  assert.deepEqual([p0.seqLength, p0.lr, p0.globalBatchSize, p0.layers], [8, 0, 4, null]);
  const p3 = at(3, 120, 2000);
  assert.deepEqual([p3.seqLength, p3.lr, p3.globalBatchSize], [32, 2e-3, 8]);
  assert.equal(p3.layers!.keep.length, 6);
  assert.deepEqual(at(3, 120, 2000).layers, p3.layers, "a pure function of (seed, step)");
});

Deno.test("config keys: the curriculum sections, DeepSpeed's snake_case, typo hints", async () => {
  const c = await loadConfig({
    args: [
      "--curriculum-learning",
      "--min_difficulty",
      "16",
      "--schedule-type",
      "fixed_root",
      "--total-curriculum-step",
      "300",
      "--progressive-layer-drop",
      "--pld-theta",
      "0.6",
      "--micro-batch-size",
      "8",
      "--rampup-batch-size",
      "8,8,320",
      "--lr-by-tokens",
    ],
  });
  assert.equal(c.curriculum!.curriculumLearning, true);
  assert.equal(c.curriculum!.minDifficulty, 16);
  assert.equal(c.curriculum!.scheduleType, "fixed_root");
  assert.equal(c.layerDrop!.pldTheta, 0.6);
  assert.deepEqual(c.training.rampupBatchSize, [8, 8, 320]);
  const cur = curriculumFromConfig(c, new LrSchedule({ lr: 1e-3, decayIters: 800 }))!;
  assert.ok(cur.schedules.seqLength && cur.schedules.layerKeep && cur.schedules.globalBatchSize);
  assert.ok(cur.schedules.lr);
  await assert.rejects(
    () => loadConfig({ args: ["--min-dificulty", "8"] }),
    (e: Error) => e instanceof ConfigError && /did you mean --min-difficulty\?/.test(e.message),
  );
  await assert.rejects(
    () => loadConfig({ args: ["--curriculum-learning", "--max-difficulty", "128"] }),
    /maxDifficulty 128 is longer than seqLength 64/,
  );
  await assert.rejects(
    () => loadConfig({ args: ["--rampup-batch-size", "8,7,100"] }),
    /increment does not divide/,
  );
  await assert.rejects(
    () => loadConfig({ args: ["--pld-theta", "1.5"] }),
    /pldTheta: expected a number <= 1/,
  );
  const none = await loadConfig({ args: [] });
  assert.equal(curriculumFromConfig(none, new LrSchedule({ lr: 1e-3, decayIters: 8 })), null);
});
