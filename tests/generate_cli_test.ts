import assert from "assert";
import { ByteTokenizer } from "../lib/data/tokenizer.ts";
import { generate } from "../lib/infer/generate.ts";
import { fromCheckpoint, fromHfGpt2 } from "../lib/infer/sources.ts";
import { saveHfGpt2 } from "../lib/io/hf_gpt2.ts";
import { GPT, type GPTConfig } from "../lib/nn/gpt.ts";
import { saveByteRun } from "./helpers.ts";

const CONFIG: GPTConfig = { vocabSize: 257, blockSize: 24, nLayer: 2, nHead: 2, nEmbd: 16 };

/** A byte-level model whose matrices are scaled up, so greedy output is not one byte. */
function byteModel(): GPT {
  const model = new GPT(CONFIG, { seed: 21 });
  for (const [, t] of model.namedParameters()) {
    if (t.ndim === 2) t.copyFromHost((t.toArray() as Float32Array).map((x) => x * 15));
  }
  return model;
}

async function inTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "denotron_gen_" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const saveRun = (dir: string, model: GPT) => saveByteRun(dir, model, 3);

async function cli(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      decodeURIComponent(new URL("../tools/generate.ts", import.meta.url).pathname),
      ...args,
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const d = new TextDecoder();
  return { code: out.code, stdout: d.decode(out.stdout), stderr: d.decode(out.stderr) };
}

Deno.test("fromCheckpoint() rebuilds the model and tokenizer of a training run", async () => {
  await inTempDir(async (dir) => {
    using model = byteModel();
    await saveRun(dir, model);
    const { model: loaded, tokenizer } = await fromCheckpoint(dir);
    using _ = loaded;
    assert.equal(tokenizer.name, "byte");
    assert.equal(loaded.training, false);
    const opts = { maxNewTokens: 10, temperature: 0.7, topK: 20, seed: 5 };
    assert.deepEqual(generate(loaded, [104, 105], opts), generate(model, [104, 105], opts));
  });
});

Deno.test("deno task generate --checkpoint streams the greedy continuation", async () => {
  await inTempDir(async (dir) => {
    using model = byteModel();
    await saveRun(dir, model);
    const tok = new ByteTokenizer();
    const greedy = generate(model, tok.encode("ab"), {
      maxNewTokens: 12,
      temperature: 0,
      stopAt: tok.eotId,
    }).filter((t) => t !== tok.eotId);
    const r = await cli(
      "--checkpoint",
      dir,
      "--prompt",
      "ab",
      "--max-new-tokens",
      "12",
      "--temperature",
      "0",
    );
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, "ab" + tok.decode(greedy) + "\n");
    assert.match(r.stderr, /tokens in .* s/);
  });
});

Deno.test("deno task generate --hf loads an exported GPT-2 with the GPT-2 tokenizer", async () => {
  await inTempDir(async (dir) => {
    const config = { ...CONFIG, vocabSize: 50257, nLayer: 1 };
    using model = new GPT(config, { seed: 2 });
    await saveHfGpt2(model, dir);
    const src = await fromHfGpt2(dir);
    using _ = src.model;
    assert.equal(src.tokenizer.eotId, 50256);
    const r = await cli("--hf", dir, "--prompt", "Hello", "--max-new-tokens", "4", "--seed", "3");
    assert.equal(r.code, 0, r.stderr);
    assert.ok(r.stdout.startsWith("Hello"), r.stdout);
  });
});

Deno.test("deno task generate explains a bad command line", async () => {
  const both = await cli("--checkpoint", "a", "--hf", "b");
  assert.equal(both.code, 2);
  assert.match(both.stderr, /give exactly one of --checkpoint and --hf/);
  const missing = await cli("--checkpoint", "/nonexistent/run");
  assert.equal(missing.code, 2);
  assert.match(missing.stderr, /^error: .*\/nonexistent\/run.*\n$/);
});
