import assert from "assert";
import { generate, generateStream } from "../lib/infer/generate.ts";
import { forwardCached, KVCache } from "../lib/infer/kv_cache.ts";
import { argmax, filterDistribution, sampleToken, uniform } from "../lib/infer/sampling.ts";
import { Rng } from "../lib/data/gpt_dataset.ts";
import { GPT, type GPTConfig } from "../lib/nn/gpt.ts";
import { noGrad } from "../lib/autograd.ts";
import { Tensor } from "../lib/tensor.ts";

const CONFIG: GPTConfig = { vocabSize: 61, blockSize: 16, nLayer: 2, nHead: 2, nEmbd: 16 };
const PROMPT = [3, 14, 15, 9, 26];

/**
 * A tiny model whose matrices are scaled up from the init, so that logits differ
 * clearly between tokens and greedy decoding does not just repeat one token.
 */
function tinyModel(seed = 5, config: GPTConfig = CONFIG): GPT {
  const model = new GPT(config, { seed });
  for (const [, t] of model.namedParameters()) {
    if (t.ndim === 2) t.copyFromHost((t.toArray() as Float32Array).map((x) => x * 15));
  }
  return model.eval();
}

/** model.forward over the whole sequence, one row of logits per position, (T,V). */
function fullLogits(model: GPT, tokens: number[]): Float32Array {
  return noGrad(() => {
    using t = Tensor.fromArray(Int32Array.from(tokens), [1, tokens.length]);
    using logits = model.forward(t);
    return logits.toArray() as Float32Array;
  });
}

Deno.test("forwardCached() gives the full forward's logits at every position", () => {
  using model = tinyModel();
  const seq = [...PROMPT, 40, 2, 33, 60, 0, 7, 12, 1, 5, 9, 44]; // 16 = blockSize
  const full = fullLogits(model, seq);
  using cache = new KVCache(model);
  const V = CONFIG.vocabSize;
  // Prefill a chunk of 5, then 1 at a time, then a chunk of 3, then 1 at a time.
  const chunks = [5, 1, 1, 3, 1, 1, 1, 1, 1, 1];
  let at = 0, worst = 0;
  for (const n of chunks) {
    using t = Tensor.fromArray(Int32Array.from(seq.slice(at, at + n)), [1, n]);
    using logits = forwardCached(model, t, cache);
    const got = logits.toArray();
    for (let i = 0; i < n * V; i++) {
      const want = full[at * V + i];
      worst = Math.max(worst, Math.abs(got[i] - want) / Math.max(1, Math.abs(want)));
    }
    at += n;
  }
  assert.equal(at, seq.length);
  assert.equal(cache.length, seq.length);
  assert.ok(worst < 1e-4, `worst error ${worst}`);
});

Deno.test("forwardCached() with lastOnly returns the last position's logits", () => {
  using model = tinyModel();
  const full = fullLogits(model, PROMPT);
  using cache = new KVCache(model);
  using t = Tensor.fromArray(Int32Array.from(PROMPT), [1, PROMPT.length]);
  using last = forwardCached(model, t, cache, { lastOnly: true });
  assert.deepEqual(last.shape, [1, 1, CONFIG.vocabSize]);
  const V = CONFIG.vocabSize, got = last.toArray();
  for (let i = 0; i < V; i++) {
    assert.ok(Math.abs(got[i] - full[(PROMPT.length - 1) * V + i]) < 1e-4, `logit ${i}`);
  }
});

Deno.test("forwardCached() refuses tokens beyond the cache with a way out", () => {
  using model = tinyModel();
  using cache = new KVCache(model, 1, 4);
  using t = Tensor.fromArray(new Int32Array(5), [1, 5]);
  assert.throws(
    () => forwardCached(model, t, cache),
    /5 new tokens do not fit after position 0 in a cache of 4 positions; reset the cache/,
  );
  assert.throws(() => new KVCache(model, 1, 17), /maxT must be an integer in \[1, 16\]/);
});

Deno.test("generate() with topK = 1 equals greedy argmax of the full forward", () => {
  using model = tinyModel();
  const out = generate(model, PROMPT, { maxNewTokens: 8, topK: 1, seed: 3 });
  const seq = [...PROMPT];
  const V = CONFIG.vocabSize;
  for (let i = 0; i < 8; i++) {
    const logits = fullLogits(model, seq);
    seq.push(argmax(logits.subarray((seq.length - 1) * V)));
  }
  assert.deepEqual(out, seq.slice(PROMPT.length));
  assert.deepEqual(generate(model, PROMPT, { maxNewTokens: 8, temperature: 0 }), out);
});

Deno.test("generate() is deterministic for a seed and differs across seeds", () => {
  using model = tinyModel();
  const opts = { maxNewTokens: 12, temperature: 1.5, topK: 30, topP: 0.95 };
  const a = generate(model, PROMPT, { ...opts, seed: 11 });
  const b = generate(model, PROMPT, { ...opts, seed: 11 });
  const c = generate(model, PROMPT, { ...opts, seed: 12 });
  assert.deepEqual(a, b);
  assert.notDeepEqual(a, c);
});

Deno.test("generate() with a padded vocabulary samples only real tokens, as the unpadded model does", () => {
  using plain = tinyModel();
  using padded = tinyModel(5, { ...CONFIG, vocabMultiple: 64 }); // 61 → 64 logits
  const opts = { maxNewTokens: 12, temperature: 2, topK: 0, topP: 1, seed: 3 };
  const a = generate(plain, PROMPT, opts), b = generate(padded, PROMPT, opts);
  assert.deepEqual(b, a);
  assert.ok(b.every((t) => t < CONFIG.vocabSize));
});

Deno.test("generate() stops at an end-of-text token and streams every token", async () => {
  using model = tinyModel();
  const greedy = generate(model, PROMPT, { maxNewTokens: 8, temperature: 0 });
  // Pretend the first token that is not the first one drawn is end-of-text.
  const eot = greedy.find((t) => t !== greedy[0])!;
  const streamed: number[] = [];
  const out = generate(model, PROMPT, {
    maxNewTokens: 8,
    temperature: 0,
    stopAt: [60, eot],
    onToken: (t) => streamed.push(t),
  });
  const cut = greedy.indexOf(eot) + 1;
  assert.ok(cut > 1 && cut < 8, `the test needs a stop in the middle (at ${cut})`);
  assert.deepEqual(out, greedy.slice(0, cut));
  assert.deepEqual(streamed, out);
  const iterated: number[] = [];
  for await (const t of generateStream(model, PROMPT, { maxNewTokens: 8, temperature: 0 })) {
    iterated.push(t);
  }
  assert.deepEqual(iterated, greedy);
});

Deno.test("generate() runs past the context length by rebuilding the cache", () => {
  using model = tinyModel();
  const out = generate(model, PROMPT, { maxNewTokens: 30, temperature: 0.9, seed: 4 });
  assert.equal(out.length, 30);
  assert.ok(out.every((t) => Number.isInteger(t) && t >= 0 && t < CONFIG.vocabSize));
  assert.ok(model.training === false);
});

Deno.test("generate() rejects an empty prompt and out-of-vocabulary tokens", () => {
  using model = tinyModel();
  assert.throws(() => generate(model, [], { maxNewTokens: 1 }), /prompt is empty/);
  assert.throws(
    () => generate(model, [1, 61], { maxNewTokens: 1 }),
    /prompt token 61 at index 1 is outside the vocabulary \[0, 61\)/,
  );
  assert.throws(() => generate(model, [1], { maxNewTokens: 1, topP: 0 }), /topP must be in/);
});

Deno.test("filterDistribution() keeps the nucleus of a hand-made distribution", () => {
  const probs = [0.05, 0.4, 0.1, 0.25, 0.2]; // ranked: 1, 3, 4, 2, 0
  const logits = probs.map(Math.log);
  const near = (got: Float64Array, want: number[]) =>
    want.forEach((w, i) => assert.ok(Math.abs(got[i] - w) < 1e-12, `p[${i}] = ${got[i]} != ${w}`));
  // 0.4 + 0.25 = 0.65 < 0.7, so the third token (0.2) joins: mass 0.85.
  near(filterDistribution(logits, { topP: 0.7 }), [0, 0.4 / 0.85, 0, 0.25 / 0.85, 0.2 / 0.85]);
  near(filterDistribution(logits, { topP: 0.65 }), [0, 0.4 / 0.65, 0, 0.25 / 0.65, 0]);
  near(filterDistribution(logits, { topP: 0.1 }), [0, 1, 0, 0, 0]);
  near(filterDistribution(logits, { topK: 2 }), [0, 0.4 / 0.65, 0, 0.25 / 0.65, 0]);
  // top-p is measured within the top-k set: 0.4/0.85 < 0.5 <= 0.65/0.85.
  near(filterDistribution(logits, { topK: 3, topP: 0.5 }), [0, 0.4 / 0.65, 0, 0.25 / 0.65, 0]);
  near(filterDistribution(logits, {}), probs);
  // Temperature 2 takes the square root of each probability before normalising.
  const root = probs.map(Math.sqrt), z = root.reduce((s, x) => s + x, 0);
  near(filterDistribution(logits, { temperature: 2 }), root.map((x) => x / z));
});

Deno.test("filterDistribution() on a large vocabulary equals ranking every id", () => {
  const V = 5000;
  const logits = Float32Array.from({ length: V }, (_, i) => Math.sin(i * 12.9898) * 4);
  for (const opts of [{ topK: 50 }, { topK: 50, topP: 0.6 }, { topP: 0.3 }]) {
    const got = filterDistribution(logits, opts);
    const full = filterDistribution(logits, {});
    const ranked = Array.from({ length: V }, (_, i) => i).sort((a, b) =>
      full[b] - full[a] || a - b
    );
    const top = ranked.slice(0, opts.topK ?? V);
    const mass = top.reduce((s, i) => s + full[i], 0);
    let keep = top.length, acc = 0;
    for (let r = 0; r < top.length && opts.topP; r++) {
      acc += full[top[r]];
      if (acc >= opts.topP * mass) {
        keep = r + 1;
        break;
      }
    }
    const kept = new Set(top.slice(0, keep));
    const z = [...kept].reduce((s, i) => s + full[i], 0);
    for (let i = 0; i < V; i++) {
      const want = kept.has(i) ? full[i] / z : 0;
      assert.ok(Math.abs(got[i] - want) < 1e-12, `${JSON.stringify(opts)}: p[${i}]`);
    }
  }
});

Deno.test("sampleToken() draws in proportion to the filtered probabilities", () => {
  const logits = [0.05, 0.4, 0.1, 0.25, 0.2].map(Math.log);
  const rng = new Rng(9);
  const counts = [0, 0, 0, 0, 0];
  const n = 20000;
  for (let i = 0; i < n; i++) counts[sampleToken(logits, { topP: 0.7 }, rng)]++;
  assert.equal(counts[0] + counts[2], 0);
  for (const [i, p] of [[1, 0.4 / 0.85], [3, 0.25 / 0.85], [4, 0.2 / 0.85]]) {
    assert.ok(Math.abs(counts[i] / n - p) < 0.02, `token ${i}: ${counts[i] / n} vs ${p}`);
  }
});

Deno.test("uniform() gives the same stream for the same seed, in [0, 1)", () => {
  const a = new Rng(123), b = new Rng(123), c = new Rng(124);
  const xs = Array.from({ length: 1000 }, () => uniform(a));
  assert.deepEqual(xs, Array.from({ length: 1000 }, () => uniform(b)));
  assert.notDeepEqual(xs, Array.from({ length: 1000 }, () => uniform(c)));
  assert.ok(xs.every((x) => x >= 0 && x < 1));
  const mean = xs.reduce((s, x) => s + x, 0) / xs.length;
  assert.ok(Math.abs(mean - 0.5) < 0.05, `mean ${mean}`);
});
