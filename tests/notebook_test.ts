/**
 * Notebook support: the MIME bundles, the in-place display's text fallback, and the
 * inspection helpers checked against the fused kernels they re-derive.
 */
import assert from "assert";
import { attention } from "../lib/ops/attention.ts";
import { gradNorm } from "../lib/optim/clip.ts";
import { GPT, GPT_PRESETS } from "../lib/nn/gpt.ts";
import { noGrad } from "../lib/autograd.ts";
import { Tensor, tidy } from "../lib/tensor.ts";
import {
  configBundle,
  inJupyter,
  JUPYTER_DISPLAY,
  LiveDisplay,
  metricsBundle,
  moduleBundle,
  tensorBundle,
} from "../lib/notebook/display.ts";
import { activationStats, attentionMaps, gradNormsByLayer } from "../lib/notebook/inspect.ts";
import { LiveTraining } from "../lib/notebook/live_training.ts";
import { ProgressLogger, readMetrics } from "../lib/train/logging.ts";
import { train } from "../lib/train/trainer.ts";
import { tinyConfig, tinyCorpus, tinyTrainer } from "./train_helpers.ts";

Deno.test("tensors and modules carry a Jupyter MIME bundle with their text form", () => {
  using t = Tensor.fromArray(new Float32Array([1, 2, 3, 4, 5, 6]), [2, 3]);
  const b = (t as unknown as Record<symbol, () => Record<string, string>>)[JUPYTER_DISPLAY]();
  assert.equal(b["text/plain"], t.toString());
  assert.match(b["text/html"], /min 1 · max 6 · mean 3\.5 · std 1\.708/);
  assert.match(b["text/html"], /<td[^>]*>6<\/td>/);
  using model = new GPT(GPT_PRESETS.tiny);
  const m = moduleBundle(model);
  assert.equal(m["text/plain"], model.toString());
  const rows = m["text/html"]!.match(/<tr>/g)!.length - 1; // less the header row
  assert.equal(rows, model.namedParameters().length);
  // A subclass of Module finds the formatter registered for Module.
  assert.deepEqual(model[JUPYTER_DISPLAY](), m);
});

Deno.test("without lib/notebook loaded, a tensor's Jupyter bundle is its text alone", async () => {
  const code = `import { Tensor } from "./lib/tensor.ts";
    using t = Tensor.fromArray(new Float32Array([1, 2, 3]), [3]);
    console.log(JSON.stringify([t[Symbol.for("Jupyter.display")](), t.toString()]));`;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["eval", "--ext=ts", code],
    cwd: decodeURIComponent(new URL("..", import.meta.url).pathname),
    stdout: "piped",
    stderr: "piped",
  }).output();
  const d = new TextDecoder();
  assert.ok(out.success, d.decode(out.stderr));
  const [bundle, text] = JSON.parse(d.decode(out.stdout));
  assert.deepEqual(bundle, { "text/plain": text });
});

Deno.test("a disposed tensor still displays", () => {
  const t = Tensor.zeros([2]);
  t.dispose();
  assert.match(tensorBundle(t)["text/plain"], /disposed/);
});

Deno.test("configBundle() lists every leaf as section.key = value", () => {
  const text = String(configBundle({ model: { nLayer: 2, name: "x" }, seed: 3 }));
  assert.equal(text, 'model.nLayer = 2\nmodel.name = "x"\nseed = 3');
});

Deno.test("metricsBundle() plots train and eval records and reports the latest", () => {
  const m = metricsBundle([
    {
      kind: "train",
      iteration: 1,
      loss: 4,
      lr: 1e-3,
      gradNorm: 2,
      tokensPerSecond: 100,
      flopsPerSecond: 1,
      elapsed: 1,
    },
    { kind: "eval", iteration: 1, loss: 3.9, perplexity: 49.4, bitsPerByte: 5.6, elapsed: 1.5 },
  ]);
  const b = m[JUPYTER_DISPLAY]();
  assert.match(
    b["text/plain"],
    /^iteration 1 \| loss 4\.0000 .*\| valid loss 3\.9000 \| bits\/byte 5\.6000$/,
  );
  assert.match(b["text/html"]!, /<svg[^>]*>[\s\S]*<circle/);
});

Deno.test("outside Jupyter a LiveDisplay writes each update's text as one line", async () => {
  assert.equal(inJupyter(), false);
  const lines: string[] = [];
  const live = new LiveDisplay({ write: (s) => lines.push(s) });
  await live.update({ "text/plain": "a", "text/html": "<b>a</b>" });
  await live.update({ "text/plain": "b" });
  assert.deepEqual(lines, ["a\n", "b\n"]);
});

Deno.test("LiveTraining records every step and redraws at most once per interval", async () => {
  const lines: string[] = [];
  const live = new LiveTraining({
    refreshSeconds: 3600,
    display: new LiveDisplay({ write: (s) => lines.push(s) }),
  });
  const hooks = live.hooks();
  const trainer = { config: { training: { trainIters: 3 } }, flopsPerStep: 1, iteration: 0 };
  for (let i = 1; i <= 3; i++) {
    const r = {
      iteration: i,
      loss: 5 - i,
      lr: 1e-3,
      gradNorm: 1,
      tokens: 10,
      seconds: 0.1,
      flops: 1,
    };
    await hooks.afterStep!(trainer as never, r);
  }
  assert.equal(live.records.length, 3);
  assert.equal(lines.length, 2); // the first step, then the last (forced)
  assert.match(lines[1], /^iteration 3 \| loss 2\.0000/);
});

Deno.test("LiveTraining's FLOP/s equals train()'s under a length curriculum", async () => {
  const corpus = await tinyCorpus();
  const save = await Deno.makeTempDir({ prefix: "denotron-live-" });
  const config = tinyConfig({
    trainIters: 4,
    logInterval: 1,
    evalIters: 0,
    save,
    saveInterval: 100,
    curriculumLearning: true,
    minDifficulty: 8,
    maxDifficulty: 16,
    totalCurriculumStep: 3,
  });
  using trainer = tinyTrainer(corpus, config);
  const live = new LiveTraining({ refreshSeconds: 3600, display: new LiveDisplay({ write() {} }) });
  const quiet = new ProgressLogger({ totalIterations: 4, terminal: false, write: () => {} });
  await train(trainer, { hooks: live.hooks(), logger: quiet });
  const logged = (await readMetrics(`${save}/metrics.jsonl`)).filter((r) => r.kind === "train");
  const shown = live.records.filter((r) => r.kind === "train");
  assert.equal(shown.length, 4);
  const lengths = new Set(logged.map((r) => (r as { seqLength?: number }).seqLength));
  assert.ok(lengths.size > 1, "the curriculum changed the length");
  for (let i = 0; i < 4; i++) {
    const a = (shown[i] as { flopsPerSecond: number }).flopsPerSecond;
    const b = (logged[i] as { flopsPerSecond: number }).flopsPerSecond;
    assert.ok(Math.abs(a - b) <= 1e-9 * b, `step ${i + 1}: live ${a} vs train() ${b}`);
  }
});

Deno.test("attentionMaps() times v reproduces the fused attention kernel", () => {
  using model = new GPT(GPT_PRESETS.tiny, { seed: 5 });
  const tokens = [10, 200, 33, 7, 7, 120];
  const T = tokens.length, C = model.config.nEmbd, nHead = model.config.nHead, hs = C / nHead;
  const maps = attentionMaps(model, tokens);
  assert.equal(maps.length, model.config.nLayer);
  // Block 0's input is the embedding: recompute its qkv and the kernel's output.
  const [qkv, y] = noGrad(() =>
    tidy(() => {
      const ids = Tensor.fromArray(Int32Array.from(tokens), [1, T]);
      const block = model.blocks[0];
      const q = block.attn.qkv.forward(block.ln1.forward(model.emb.forward(ids)));
      return [q.toArray(), attention(q, nHead).toArray()];
    })
  );
  for (let h = 0; h < nHead; h++) {
    const p = maps[0][h];
    for (let i = 0; i < T; i++) {
      let rowSum = 0;
      for (let j = 0; j < T; j++) rowSum += p[i * T + j];
      assert.ok(Math.abs(rowSum - 1) < 1e-5, `row ${i} of head ${h} sums to ${rowSum}`);
      for (let j = i + 1; j < T; j++) assert.equal(p[i * T + j], 0);
      for (let d = 0; d < hs; d++) {
        let want = 0;
        for (let j = 0; j <= i; j++) want += p[i * T + j] * qkv[j * 3 * C + 2 * C + h * hs + d];
        const got = y[i * C + h * hs + d];
        assert.ok(Math.abs(got - want) < 1e-5, `y[${i}, ${h}, ${d}] = ${got}, P·v = ${want}`);
      }
    }
  }
});

Deno.test("activationStats() has one entry per depth and gradNormsByLayer() adds up to the global norm", () => {
  using model = new GPT(GPT_PRESETS.tiny, { seed: 2 });
  const stats = activationStats(model, [1, 2, 3, 4]);
  assert.deepEqual(stats.map((s) => s.layer), [-1, 0, 1]);
  for (const s of stats) assert.ok(s.std > 0 && s.maxAbs >= s.std);
  tidy(() => {
    const x = Tensor.fromArray(new Int32Array([5, 6, 7, 8, 9, 10, 11, 12]), [1, 8]);
    model.loss(x, x).backward();
  });
  const parts = gradNormsByLayer(model);
  assert.deepEqual(parts.map(([p]) => p), ["emb", "h.0", "h.1", "lnf"]);
  const total = Math.sqrt(parts.reduce((s, [, n]) => s + n * n, 0));
  const global = gradNorm(model.params.grad);
  assert.ok(Math.abs(total - global) / global < 1e-4, `${total} vs ${global}`);
});
