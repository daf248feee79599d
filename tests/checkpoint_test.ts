import assert from "assert";
import {
  CHECKPOINT_FORMAT_VERSION,
  latestCheckpoint,
  listCheckpoints,
} from "../lib/io/checkpoint.ts";
import { loadCheckpoint, saveCheckpoint } from "../lib/train/checkpoint.ts";
import { GPT, GPT_PRESETS } from "../lib/nn/gpt.ts";
import { AdamW } from "../lib/optim/adamw.ts";
import { tinyConfig, tinyCorpus, tinyTrainer } from "./train_helpers.ts";

const corpus = await tinyCorpus();

/** A tiny model and optimizer with non-trivial state (a few steps taken). */
function trainedPair(seed = 1) {
  const model = new GPT(GPT_PRESETS.tiny, { seed });
  const optimizer = new AdamW(model.params, { lr: 1e-3 });
  model.params.grad.copyFromHost(
    Float32Array.from({ length: model.params.grad.numel }, (_, i) => Math.sin(i + seed)),
  );
  optimizer.step();
  optimizer.step();
  model.rng.take(1234);
  return { model, optimizer };
}

function disposeAll(...xs: { dispose(): void }[]): void {
  for (const x of xs) x.dispose();
}

async function entries(dir: string): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(dir)) out.push(e.name);
  return out.sort();
}

Deno.test("saveCheckpoint() then loadCheckpoint() restores weights, moments, step, RNG and position", async () => {
  const dir = await Deno.makeTempDir();
  const a = trainedPair(1);
  const path = await saveCheckpoint(dir, {
    ...a,
    iteration: 7,
    consumedSamples: 28,
    config: { note: "kept" },
  });
  assert.equal(path, `${dir}/iter_0000007`);
  assert.deepEqual(await entries(path), [
    "model.safetensors",
    "optimizer.safetensors",
    "state.json",
  ]);
  assert.equal(await latestCheckpoint(dir), path);

  const b = trainedPair(2);
  const state = await loadCheckpoint(dir, b);
  assert.equal(state.formatVersion, CHECKPOINT_FORMAT_VERSION);
  assert.equal(state.iteration, 7);
  assert.equal(state.consumedSamples, 28);
  assert.deepEqual(state.config, { note: "kept" });
  assert.deepEqual(b.model.params.data.toArray(), a.model.params.data.toArray());
  assert.deepEqual(b.optimizer.m.toArray(), a.optimizer.m.toArray());
  assert.deepEqual(b.optimizer.v.toArray(), a.optimizer.v.toArray());
  assert.equal(b.optimizer.stepCount, 2);
  assert.deepEqual(b.model.rng.state(), a.model.rng.state());
  disposeAll(a.optimizer, a.model, b.optimizer, b.model);
});

Deno.test("a resumed run's losses equal the uninterrupted run's, bit for bit", async () => {
  // Dropout and accumulation on, so the RNG stream and the data position both matter.
  const config = tinyConfig({ dropout: 0.1, globalBatchSize: 8, trainIters: 6 });
  const straight = tinyTrainer(corpus, config);
  const expected = Array.from({ length: 6 }, () => straight.step().loss);
  straight.dispose();

  const dir = await Deno.makeTempDir();
  const first = tinyTrainer(corpus, config);
  const losses = Array.from({ length: 3 }, () => first.step().loss);
  await first.save(dir);
  first.dispose();
  const second = tinyTrainer(corpus, config);
  const state = await second.load(dir);
  assert.equal(state.iteration, 3);
  assert.equal(second.consumedSamples, 24);
  for (let i = 0; i < 3; i++) losses.push(second.step().loss);
  second.dispose();
  assert.deepEqual(losses, expected);
});

Deno.test("saveCheckpoint() keeps only the newest keepLast checkpoints", async () => {
  const dir = await Deno.makeTempDir();
  const a = trainedPair();
  for (let it = 1; it <= 5; it++) {
    await saveCheckpoint(dir, {
      ...a,
      iteration: it * 10,
      consumedSamples: 0,
      config: {},
      keepLast: 2,
    });
  }
  assert.deepEqual((await listCheckpoints(dir)).map((c) => c.iteration), [40, 50]);
  assert.equal(await latestCheckpoint(dir), `${dir}/iter_0000050`);
  assert.deepEqual(await entries(dir), ["iter_0000040", "iter_0000050", "latest"]);
  disposeAll(a.optimizer, a.model);
});

Deno.test("a failed save leaves the previous checkpoints and the latest pointer intact", async () => {
  const dir = await Deno.makeTempDir();
  const a = trainedPair();
  await saveCheckpoint(dir, { ...a, iteration: 1, consumedSamples: 4, config: {} });
  const before = await Deno.readFile(`${dir}/iter_0000001/model.safetensors`);
  // A BigInt cannot be written as JSON: the save fails after the weights were written.
  const bad = { big: 1n };
  for (const iteration of [2, 1]) {
    await assert.rejects(
      saveCheckpoint(dir, { ...a, iteration, consumedSamples: 8, config: bad, keepLast: 1 }),
      /BigInt/,
    );
  }
  assert.deepEqual(await entries(dir), ["iter_0000001", "latest"]);
  assert.equal(await latestCheckpoint(dir), `${dir}/iter_0000001`);
  assert.deepEqual(await Deno.readFile(`${dir}/iter_0000001/model.safetensors`), before);
  const state = await loadCheckpoint(dir, a);
  assert.equal(state.consumedSamples, 4);
  disposeAll(a.optimizer, a.model);
});

Deno.test("saving the same iteration again replaces the old checkpoint", async () => {
  const dir = await Deno.makeTempDir();
  const a = trainedPair();
  await saveCheckpoint(dir, { ...a, iteration: 3, consumedSamples: 1, config: {} });
  await saveCheckpoint(dir, { ...a, iteration: 3, consumedSamples: 2, config: {} });
  assert.deepEqual(await entries(dir), ["iter_0000003", "latest"]);
  assert.equal((await loadCheckpoint(dir, a)).consumedSamples, 2);
  disposeAll(a.optimizer, a.model);
});

Deno.test("loading a checkpoint of another shape names the tensor and both shapes, and changes nothing", async () => {
  const dir = await Deno.makeTempDir();
  const a = trainedPair();
  await saveCheckpoint(dir, { ...a, iteration: 1, consumedSamples: 0, config: {} });
  const wider = new GPT({ ...GPT_PRESETS.tiny, nEmbd: 48 });
  const opt = new AdamW(wider.params);
  const weights = wider.params.data.toArray();
  await assert.rejects(
    loadCheckpoint(dir, { model: wider, optimizer: opt }),
    (e: Error) => {
      assert.match(e.message, /model\.safetensors/);
      assert.match(e.message, /'emb\.wte'/);
      assert.match(e.message, /\[257, 32\]/);
      assert.match(e.message, /\[257, 48\]/);
      return true;
    },
  );
  assert.deepEqual(wider.params.data.toArray(), weights);
  assert.equal(opt.stepCount, 0);
  disposeAll(opt, wider, a.optimizer, a.model);
});

Deno.test("a damaged or missing checkpoint file is named in the error", async () => {
  const a = trainedPair();
  const fresh = async () => {
    const dir = await Deno.makeTempDir();
    return await saveCheckpoint(dir, { ...a, iteration: 1, consumedSamples: 0, config: {} });
  };
  let path = await fresh();
  await Deno.writeTextFile(`${path}/state.json`, "{ not json");
  await assert.rejects(loadCheckpoint(path, a), /state\.json: not valid JSON/);

  path = await fresh();
  await Deno.writeTextFile(`${path}/state.json`, JSON.stringify({ formatVersion: 99 }));
  await assert.rejects(loadCheckpoint(path, a), /state\.json: format version 99/);

  path = await fresh();
  const bytes = await Deno.readFile(`${path}/model.safetensors`);
  await Deno.writeFile(`${path}/model.safetensors`, bytes.subarray(0, bytes.length - 100));
  await assert.rejects(loadCheckpoint(path, a), /model\.safetensors/);

  path = await fresh();
  await Deno.remove(`${path}/optimizer.safetensors`);
  await assert.rejects(loadCheckpoint(path, a), /optimizer\.safetensors/);

  await assert.rejects(loadCheckpoint(`${path}/nowhere`, a), /nowhere: no such checkpoint/);
  const empty = await Deno.makeTempDir();
  await assert.rejects(loadCheckpoint(empty, a), /"latest"/);
  disposeAll(a.optimizer, a.model);
});
