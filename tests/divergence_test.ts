/**
 * Issue 15's checkpoint and divergence defects, each written to fail on the code before
 * it: a diverging run stops naming its step and keeps its good checkpoints; nothing
 * non-finite is saved or generated from; checksums catch a damaged file; what a killed
 * save leaves is cleaned; `--load` falls back to the newest complete checkpoint; a
 * resumed run's metrics.jsonl has no repeated steps.
 */
import assert from "assert";
import {
  CheckpointError,
  expectFinite,
  listCheckpoints,
  readCheckpoint,
  writeCheckpoint,
} from "../lib/io/checkpoint.ts";
import { readSafetensors, tensorEntry, writeSafetensors } from "../lib/io/safetensors.ts";
import { fromCheckpoint, fromHfGpt2 } from "../lib/infer/sources.ts";
import { saveHfGpt2 } from "../lib/io/hf_gpt2.ts";
import { GPT, GPT_PRESETS } from "../lib/nn/gpt.ts";
import { train, TrainingDivergedError } from "../lib/train/trainer.ts";
import { ProgressLogger, readMetrics } from "../lib/train/logging.ts";
import type { Trainer } from "../lib/train/trainer.ts";
import { tinyConfig, tinyCorpus, tinyTrainer } from "./train_helpers.ts";

const corpus = await tinyCorpus();
const quiet = { write: () => {} };

async function names(dir: string): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(dir)) out.push(e.name);
  return out.sort();
}

/** Trains 4 healthy iterations into `dir` (iter_0000002 and iter_0000004). */
async function healthyRun(dir: string, overrides: Record<string, unknown> = {}): Promise<void> {
  using t = tinyTrainer(
    corpus,
    tinyConfig({ save: dir, trainIters: 4, saveInterval: 2, keepLast: 2, ...overrides }),
  );
  await quietTrain(t);
}

async function quietTrain(t: Trainer) {
  return await train(t, { logger: new ProgressLogger({ totalIterations: 20, ...quiet }) });
}

async function expectAllFinite(dir: string): Promise<void> {
  for (const c of await listCheckpoints(dir)) {
    const ck = await readCheckpoint(c.path, { optimizer: true, note: () => {} });
    expectFinite(ck.weights, c.path);
    expectFinite(ck.optimizer!, c.path);
  }
}

/**
 * A healthy run saved into `dir` (iter_2, iter_4), then a trainer resumed from it at
 * lr 1e30 that saves every step: it diverges within a few iterations.
 */
async function divergingRun(dir: string, overrides: Record<string, unknown>): Promise<Trainer> {
  await healthyRun(dir);
  const t = tinyTrainer(
    corpus,
    tinyConfig({
      save: dir,
      lr: 1e30,
      minLr: 1e30,
      lrWarmupIters: 0,
      trainIters: 20,
      saveInterval: 1,
      ...overrides,
    }),
  );
  await t.load(dir);
  return t;
}

Deno.test("lr 1e30: training stops with an error naming the step, and the good checkpoints stay", async () => {
  const dir = await Deno.makeTempDir();
  using t = await divergingRun(dir, { keepLast: 2 });
  await assert.rejects(
    quietTrain(t),
    (e: Error) =>
      e instanceof TrainingDivergedError &&
      /^iteration \d+: the (loss|gradient norm) is (NaN|-?Infinity); training stopped/.test(
        e.message,
      ) && !e.message.includes("\n"),
  );
  const left = (await listCheckpoints(dir)).map((c) => c.iteration);
  // The update of iteration 5 (lr 1e30) is finite, the next loss is not: iter_4 is kept.
  assert.ok(left.includes(4), `checkpoints left: ${left}`);
  assert.ok(left.every((i) => i <= 5), `a checkpoint after the divergence: ${left}`);
  await expectAllFinite(dir);
});

Deno.test("with the check off, a NaN model is never saved: the save is refused and nothing is deleted", async () => {
  const dir = await Deno.makeTempDir();
  using t = await divergingRun(dir, { keepLast: 1, checkForNanInLossAndGrad: false });
  await assert.rejects(
    quietTrain(t),
    (e: Error) =>
      e instanceof CheckpointError &&
      /iter_\d+: not written: tensor '[^']+' holds (NaN|-?Infinity) at element \d+/.test(e.message),
  );
  const left = await listCheckpoints(dir);
  assert.ok(left.length >= 1);
  const latest = (await Deno.readTextFile(`${dir}/latest`)).trim();
  assert.equal(latest, left.at(-1)!.path.split("/").at(-1));
  await expectAllFinite(dir);
});

Deno.test("bf16 without a loss scaler: non-finite gradients stop the run instead of being skipped", async () => {
  using t = tinyTrainer(
    corpus,
    tinyConfig({ bf16: true, lr: 1e30, minLr: 1e30, lrWarmupIters: 0, trainIters: 20 }),
  );
  await assert.rejects(quietTrain(t), TrainingDivergedError);
  assert.equal(t.skippedSteps, 0);
});

Deno.test("fp16's overflow skips stay skips, not errors", async () => {
  // A loss scale of 2^40 overflows the fp16 gradients at first; the scaler backs off.
  using t = tinyTrainer(corpus, tinyConfig({ fp16: true, initialLossScale: 2 ** 40 }));
  const s = await quietTrain(t);
  assert.equal(s.iterations, 6);
  assert.ok(t.skippedSteps > 0, "expected skipped steps");
});

/** A written checkpoint with a tiny model's tensors. */
async function smallCheckpoint(dir: string, iteration = 3): Promise<string> {
  const weights = new Map([
    ["a", { shape: [4], data: new Float32Array([1, 2, 3, 4]) }],
    ["b", { shape: [2, 2], data: new Float32Array([5, 6, 7, 8]) }],
  ]);
  const optimizer = new Map([
    ["m.a", { shape: [4], data: new Float32Array(4) }],
    ["v.a", { shape: [4], data: new Float32Array(4) }],
  ]);
  const state = {
    iteration,
    optimizerStepCount: iteration,
    rng: { seed: 1, offset: 0 },
    consumedSamples: 4 * iteration,
    config: {},
  };
  return await writeCheckpoint(dir, { weights, optimizer, state });
}

Deno.test("state.json records a SHA-256 per tensor file, and a flipped bit is an error naming the file", async () => {
  const dir = await Deno.makeTempDir();
  const path = await smallCheckpoint(dir);
  const state = JSON.parse(await Deno.readTextFile(`${path}/state.json`));
  assert.match(state.checksums["model.safetensors"], /^sha256:[0-9a-f]{64}$/);
  assert.match(state.checksums["optimizer.safetensors"], /^sha256:[0-9a-f]{64}$/);
  await readCheckpoint(path, { optimizer: true }); // intact: loads

  for (const file of ["model.safetensors", "optimizer.safetensors"]) {
    const p = `${path}/${file}`;
    const bytes = await Deno.readFile(p);
    const at = bytes.length - 3; // inside the last tensor's data: the header still parses
    bytes[at] ^= 0x10;
    await Deno.writeFile(p, bytes);
    await assert.rejects(
      readCheckpoint(path, { optimizer: true }),
      (e: Error) => e instanceof CheckpointError && e.message.startsWith(`${p}: checksum mismatch`),
    );
    bytes[at] ^= 0x10;
    await Deno.writeFile(p, bytes);
  }
  await readCheckpoint(path, { optimizer: true });
});

Deno.test("a save removes what killed saves left: .tmp-iter_*, .parts-iter_*, latest.tmp-*", async () => {
  const dir = await Deno.makeTempDir();
  await smallCheckpoint(dir, 1);
  // What a kill -9 during a save leaves (another, dead, process's names)
  await Deno.mkdir(`${dir}/.tmp-iter_0000002-999999-0badcafe`);
  await Deno.writeTextFile(`${dir}/.tmp-iter_0000002-999999-0badcafe/model.safetensors`, "x");
  await Deno.mkdir(`${dir}/.tmp-iter_0000002-999998-12345678-old`);
  await Deno.mkdir(`${dir}/.parts-iter_0000002`);
  await Deno.writeTextFile(`${dir}/latest.tmp-999999-abcdef12`, "iter_0000002\n");
  // ... and this process's own temporaries, which another save here may still be using
  const mine = `.tmp-iter_0000009-${Deno.pid}-00000000`;
  await Deno.mkdir(`${dir}/${mine}`);
  await smallCheckpoint(dir, 3);
  assert.deepEqual(await names(dir), [mine, "iter_0000001", "iter_0000003", "latest"].sort());
});

Deno.test("--load DIR without a latest file takes the newest complete iter_*, and says so", async () => {
  const dir = await Deno.makeTempDir();
  await healthyRun(dir, { keepLast: 5 });
  await Deno.remove(`${dir}/latest`);
  // An incomplete directory under a final name (no state.json) is passed over.
  await Deno.mkdir(`${dir}/iter_0000009`);
  const notes: string[] = [];
  const ck = await readCheckpoint(dir, { note: (m) => notes.push(m) });
  assert.equal(ck.dir, `${dir}/iter_0000004`);
  assert.deepEqual(notes, [
    `note: ${dir} has no "latest" file; using its newest checkpoint ${dir}/iter_0000004`,
  ]);
  using t = tinyTrainer(corpus, tinyConfig({ save: null }));
  const state = await t.load(dir);
  assert.equal(state.iteration, 4);
  // An empty save directory is still an error, not a silent fresh start.
  const empty = await Deno.makeTempDir();
  await assert.rejects(readCheckpoint(empty), /neither a checkpoint/);
});

Deno.test("metrics.jsonl of a resumed run has each step once (the replayed ones are dropped)", async () => {
  const dir = await Deno.makeTempDir();
  const config = tinyConfig({
    save: dir,
    trainIters: 6,
    saveInterval: 2,
    logInterval: 1,
    keepLast: 5,
  });
  {
    using t = tinyTrainer(corpus, config);
    await quietTrain(t);
  }
  // Resume from iteration 2 (as after a crash at step 5), then finish.
  using t = tinyTrainer(corpus, config);
  await t.load(`${dir}/iter_0000002`);
  await quietTrain(t);
  const recs = await readMetrics(`${dir}/metrics.jsonl`);
  const steps = recs.filter((r) => r.kind === "train").map((r) => r.iteration);
  assert.deepEqual(steps, [1, 2, 3, 4, 5, 6]);
  const evals = recs.filter((r) => r.kind === "eval").map((r) => r.iteration);
  assert.deepEqual(evals, [3, 6]);
});

Deno.test("generation refuses a checkpoint or Hugging Face directory holding NaN weights, naming the tensor", async () => {
  const dir = await Deno.makeTempDir();
  await healthyRun(dir);
  // Poison iter_4's weights the way an older version could have saved them (no checksum).
  const ck = `${dir}/iter_0000004`;
  const st = await readSafetensors(`${ck}/model.safetensors`);
  const poisoned = new Map();
  for (const [n, t] of st.tensors) {
    const data = new Float32Array(t.data.slice().buffer);
    if (n === "h.1.mlp.fc.weight") data[7] = NaN;
    poisoned.set(n, tensorEntry("F32", t.shape, data));
  }
  await writeSafetensors(`${ck}/model.safetensors`, { tensors: poisoned, metadata: {} });
  const state = JSON.parse(await Deno.readTextFile(`${ck}/state.json`));
  delete state.checksums;
  await Deno.writeTextFile(`${ck}/state.json`, JSON.stringify(state));
  await assert.rejects(
    fromCheckpoint(dir),
    (e: Error) =>
      e instanceof CheckpointError &&
      e.message.startsWith(`${ck}/model.safetensors: tensor 'h.1.mlp.fc.weight' holds NaN`),
  );

  const hf = await Deno.makeTempDir();
  const model = new GPT({ ...GPT_PRESETS.tiny, vocabSize: 50257 });
  const data = model.params.data.toArray() as Float32Array;
  data[model.params.entries[3].offset] = Infinity;
  model.params.data.copyFromHost(data);
  await saveHfGpt2(model, hf);
  model.dispose();
  await assert.rejects(
    fromHfGpt2(hf),
    (e: Error) => e.message.startsWith(`${hf}: tensor '`) && / holds Infinity /.test(e.message),
  );
});
