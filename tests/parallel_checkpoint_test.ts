/**
 * Layout-independent checkpoints: weights saved as full tensors at TP 2 × PP 2 load into
 * the plain single-process GPT, at TP 4 × PP 1 and at PP 2 with two virtual stages, with
 * identical parameters, the same held-out loss and identical logits for a fixed batch.
 */
import assert from "assert";
import { runFixtureJson } from "./parallel_helpers.ts";

interface Run {
  evalLoss: number;
  params: Record<string, number[]>;
  /** The full logits (B,T,V) of one held-out micro-batch. */
  logits: number[];
}

const tmp = await Deno.makeTempDir({ prefix: "denotron-ckpt-mp-" });

function run(n: number, args: string[]): Promise<Run> {
  return runFixtureJson<Run>(n, "train_mp.ts", args, tmp);
}

Deno.test("a checkpoint saved at TP 2 × PP 2 loads at TP 1 × PP 1, TP 4 and interleaved PP 2", async () => {
  const dir = `${tmp}/ckpt`;
  await Deno.mkdir(dir);
  const saved = await run(4, ["--tp", "2", "--pp", "2", "--steps", "2", "--save", dir]);
  const names = [...Deno.readDirSync(dir)].map((e) => e.name).sort();
  assert.deepEqual(names, [
    "model-00001-of-00002.safetensors",
    "model-00002-of-00002.safetensors",
    "model.safetensors.index.json",
  ]);
  const layouts: [number, string[]][] = [
    [1, ["--mode", "single"]],
    [4, ["--tp", "4"]],
    [2, ["--pp", "2", "--vp", "2"]],
  ];
  for (const [n, flags] of layouts) {
    const got = await run(n, [...flags, "--steps", "0", "--load", dir]);
    const what = flags.join(" ");
    assert.deepEqual(Object.keys(got.params).sort(), Object.keys(saved.params).sort());
    for (const [name, values] of Object.entries(saved.params)) {
      assert.deepEqual(got.params[name], values, `${what}: ${name} differs after loading`);
    }
    const e = Math.abs(got.evalLoss - saved.evalLoss) / saved.evalLoss;
    assert.ok(e < 1e-6, `${what}: held-out loss ${got.evalLoss}, saved run ${saved.evalLoss}`);
    assert.equal(saved.logits.length, 8 * 63);
    assert.equal(got.logits.length, saved.logits.length, `${what}: logits' size`);
    // Identical up to fp32 summation order (TP splits the reductions differently).
    let worst = 0;
    for (let i = 0; i < saved.logits.length; i++) {
      const d = Math.abs(got.logits[i] - saved.logits[i]) / Math.max(1, Math.abs(saved.logits[i]));
      worst = Math.max(worst, d);
    }
    assert.ok(worst < 1e-5, `${what}: logits differ from the saved run's by ${worst}`);
  }
});
