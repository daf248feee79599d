/**
 * `deno task export-hf`: a GPT-2 checkpoint trained at TP2 and a Llama-style one trained
 * become Hugging Face directories whose weights load back to the
 * checkpoint's logits bit for bit (sharded when asked); bad arguments are one line.
 */
import assert from "assert";
import { noGrad } from "../lib/autograd.ts";
import { fromCheckpoint } from "../lib/infer/sources.ts";
import { loadHf } from "../lib/io/hf.ts";
import { Tensor, tidy } from "../lib/tensor.ts";
import {
  launchTrain,
  LLAMA_TINY_ARGS,
  runScript,
  tinyCorpus,
  TRAIN_SCRIPT,
  trainCliArgs,
} from "./train_helpers.ts";

const EXPORT = decodeURIComponent(new URL("../tools/export_hf.ts", import.meta.url).pathname);
const tmp = await Deno.makeTempDir({ prefix: "denotron-export-hf-" });
const corpus = await tinyCorpus();
corpus.data.close?.();

function logits(model: { forward(t: Tensor): Tensor }, vocab: number): number[] {
  const ids = Int32Array.from({ length: 8 }, (_, i) => (i * 37 + 5) % vocab);
  return noGrad(() =>
    tidy(() => Array.from(model.forward(Tensor.fromArray(ids, [1, 8], { dtype: "i32" })).toArray()))
  );
}

async function exportsExactly(ckpt: string, out: string, extra: string[] = []) {
  const r = await runScript(EXPORT, ["--checkpoint", ckpt, "--output", out, ...extra]);
  assert.equal(r.code, 0, r.out);
  const src = await fromCheckpoint(ckpt);
  using hf = await loadHf(out);
  try {
    const V = src.model.config.vocabSize;
    assert.deepEqual(logits(hf, V), logits(src.model, V));
  } finally {
    src.model.dispose();
  }
}

Deno.test("a GPT-2 checkpoint trained at TP2 exports to a Hugging Face directory with its logits", async () => {
  const save = `${tmp}/tp2`;
  const { code, output } = await launchTrain(
    2,
    trainCliArgs(corpus.data.prefix, save, 2, ["--tensor-model-parallel-size", "2"]),
  );
  assert.equal(code, 0, output);
  await exportsExactly(save, `${tmp}/hf-gpt2`);
  const config = JSON.parse(await Deno.readTextFile(`${tmp}/hf-gpt2/config.json`));
  assert.equal(config.model_type, "gpt2");
  // the run's byte tokenizer: end-of-text 256 for both, as GPT-2 uses its end-of-text
  assert.deepEqual([config.bos_token_id, config.eos_token_id], [256, 256]);
});

Deno.test("a Llama-style checkpoint exports sharded", async () => {
  const save = `${tmp}/llama`;
  const r = await runScript(TRAIN_SCRIPT, [
    ...trainCliArgs(corpus.data.prefix, save, 2),
    ...LLAMA_TINY_ARGS,
  ]);
  assert.equal(r.code, 0, r.out);
  const out = `${tmp}/hf-llama`;
  await exportsExactly(save, out, ["--max-shard-size", "20000"]);
  const files = [...Deno.readDirSync(out)].map((e) => e.name).sort();
  assert.ok(files.includes("model.safetensors.index.json"), files.join(" "));
  assert.ok(files.filter((f) => /^model-\d+-of-\d+\.safetensors$/.test(f)).length > 1);
  const config = JSON.parse(await Deno.readTextFile(`${out}/config.json`));
  assert.equal(config.model_type, "llama");
  assert.equal(config.num_key_value_heads, 2);
  // the byte tokenizer has no beginning-of-text token
  assert.deepEqual([config.bos_token_id, config.eos_token_id], [null, 256]);
});

Deno.test("export-hf: missing arguments and a missing checkpoint are one line, exit 2", async () => {
  const none = await runScript(EXPORT, ["--output", `${tmp}/x`]);
  assert.equal(none.code, 2, none.out);
  assert.match(none.out, /^error: give --checkpoint and --output/);
  const missing = await runScript(EXPORT, ["--checkpoint", `${tmp}/nope`, "--output", `${tmp}/x`]);
  assert.equal(missing.code, 2, missing.out);
  assert.match(missing.out, /^error: .*nope/);
  assert.equal(missing.out.trim().split("\n").length, 1, missing.out);
});
