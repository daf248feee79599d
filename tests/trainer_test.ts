import assert from "assert";
import { ByteTokenizer } from "../lib/data/tokenizer.ts";
import { ProgressLogger, readMetrics } from "../lib/train/logging.ts";
import { LrSchedule } from "../lib/train/lr_schedule.ts";
import { lossCurveSvg, niceTicks } from "../lib/train/plot.ts";
import { textBytes, train } from "../lib/train/trainer.ts";
import { ThreadTuner } from "../lib/train/threads.ts";
import { tinyConfig, tinyCorpus, tinyTrainer } from "./train_helpers.ts";

const corpus = await tinyCorpus();
const quiet = () => new ProgressLogger({ totalIterations: 1, terminal: false, write: () => {} });

function relDiff(a: Float32Array | Int32Array, b: Float32Array | Int32Array): number {
  let num = 0, den = 0;
  for (let i = 0; i < a.length; i++) (num += (a[i] - b[i]) ** 2, den += a[i] ** 2);
  return Math.sqrt(num / den);
}

Deno.test("two micro-batches of B/2 make the same update as one of B", () => {
  const config = (micro: number) =>
    tinyConfig({ microBatchSize: micro, globalBatchSize: 8, lrWarmupIters: 0, clipGrad: 0.5 });
  const whole = tinyTrainer(corpus, config(8));
  const split = tinyTrainer(corpus, config(4));
  const start = whole.model.params.data.toArray();
  assert.deepEqual(split.model.params.data.toArray(), start);
  const a = whole.step();
  const b = split.step();
  assert.ok(Math.abs(a.loss - b.loss) <= 1e-6 * a.loss, `loss ${a.loss} vs ${b.loss}`);
  assert.ok(
    Math.abs(a.gradNorm - b.gradNorm) <= 1e-6 * a.gradNorm,
    `norm ${a.gradNorm} vs ${b.gradNorm}`,
  );
  assert.ok(a.gradNorm > 0.5, "the clip is active, so its factor is part of the comparison");
  // After one step AdamW's first moment is 0.1 × the (scaled, clipped) gradient it applied.
  const m = relDiff(whole.optimizer.update.m.toArray(), split.optimizer.update.m.toArray());
  assert.ok(m <= 1e-6, `applied gradients differ by ${m} (relative)`);
  // The weights moved the same way. Adam's first step is lr·g/(|g| + eps), which turns
  // rounding-level differences of gradients near eps into visible ones: a looser bound.
  const pa = whole.model.params.data.toArray();
  const pb = split.model.params.data.toArray();
  const moved = Math.hypot(...pa.map((v, i) => v - start[i]));
  const apart = Math.hypot(...pb.map((v, i) => v - pa[i]));
  assert.ok(apart <= 1e-4 * moved, `updates differ by ${apart / moved} (relative)`);
  whole.dispose();
  split.dispose();
});

Deno.test("Trainer.step() uses the schedule's rate for each iteration", () => {
  const config = tinyConfig({
    lr: 2e-2,
    minLr: 2e-3,
    lrWarmupIters: 2,
    trainIters: 6,
    lrDecayStyle: "linear",
  });
  const t = tinyTrainer(corpus, config);
  const want = new LrSchedule({
    lr: 2e-2,
    minLr: 2e-3,
    warmupIters: 2,
    decayIters: 6,
    decayStyle: "linear",
  });
  const got = Array.from({ length: 6 }, () => t.step().lr);
  assert.deepEqual(got, [0, 1, 2, 3, 4, 5].map((s) => want.at(s)));
  assert.deepEqual(got.slice(0, 3), [0, 1e-2, 2e-2]);
  assert.equal(t.iteration, 6);
  t.dispose();
});

Deno.test("Trainer.step() follows the config's WSD keys: warmup, stable, decay", () => {
  const t = tinyTrainer(
    corpus,
    tinyConfig({
      lr: 1e-2,
      minLr: 1e-3,
      lrWarmupIters: 1,
      trainIters: 6,
      lrDecayStyle: "WSD",
      lrWsdDecayIters: 2,
      lrWsdDecayStyle: "linear",
    }),
  );
  // step 0 warms up from 0, steps 1-4 hold lr, step 5 is half way down the 2-step decay
  const got = Array.from({ length: 6 }, () => t.step().lr);
  const want = [0, 1e-2, 1e-2, 1e-2, 1e-2, 5.5e-3];
  got.forEach((lr, i) => assert.ok(Math.abs(lr - want[i]) < 1e-15, `step ${i}: ${lr}`));
  t.dispose();
});

Deno.test("Trainer.step() reduces the loss and clipping bounds the update", () => {
  const t = tinyTrainer(corpus, tinyConfig({ trainIters: 30, lrWarmupIters: 0, lr: 3e-3 }));
  const first = t.step();
  let last = first;
  for (let i = 1; i < 30; i++) last = t.step();
  assert.ok(last.loss < first.loss - 1, `loss ${first.loss} -> ${last.loss}`);
  assert.ok(Math.abs(first.loss - Math.log(257)) < 0.1, `initial loss ${first.loss}`);
  t.dispose();
});

Deno.test("Trainer.evaluate() reports loss, perplexity and bits per byte", () => {
  const t = tinyTrainer(corpus, tinyConfig());
  const e = t.evaluate(2);
  assert.equal(e.tokens, 2 * 4 * 16);
  assert.ok(e.bytes > 0 && e.bytes <= e.tokens);
  assert.ok(Math.abs(e.perplexity - Math.exp(e.loss)) < 1e-9);
  assert.ok(
    Math.abs(e.bitsPerByte - (e.loss / Math.LN2) * (e.tokens / e.bytes)) < 1e-12,
  );
  // The same batches every time, and evaluation leaves the model in training mode.
  assert.equal(t.evaluate(2).loss, e.loss);
  assert.equal(t.model.training, true);
  t.dispose();
});

Deno.test("textBytes() counts the UTF-8 bytes of the text, end-of-text excluded", () => {
  const tok = new ByteTokenizer();
  assert.equal(textBytes(tok, tok.encode("héllo")), 6);
  assert.equal(textBytes(tok, [...tok.encode("ab"), tok.eotId, ...tok.encode("c")]), 3);
});

Deno.test("train() logs metrics.jsonl, evaluates, checkpoints and plots the loss", async () => {
  const dir = await Deno.makeTempDir();
  const t = tinyTrainer(corpus, tinyConfig({ save: dir, trainIters: 6, keepLast: 1 }));
  const seen: number[] = [];
  const summary = await train(t, {
    logger: quiet(),
    hooks: { afterStep: (_, r) => void seen.push(r.iteration) },
  });
  assert.deepEqual(seen, [1, 2, 3, 4, 5, 6]);
  assert.equal(summary.iterations, 6);
  assert.equal(summary.stoppedBy, "iterations");
  assert.equal(summary.checkpoint, `${dir}/iter_0000006`);
  const records = await readMetrics(`${dir}/metrics.jsonl`);
  const at = (kind: string) => records.filter((r) => r.kind === kind).map((r) => r.iteration);
  assert.deepEqual(at("train"), [2, 4, 6]);
  assert.deepEqual(at("eval"), [3, 6]);
  for (const r of records) {
    assert.ok(Number.isFinite(r.loss) && r.elapsed >= 0);
    if (r.kind === "train") assert.ok(r.tokensPerSecond > 0 && r.flopsPerSecond > 0);
    else assert.ok(r.bitsPerByte > 0 && r.perplexity > 1);
  }
  const svg = await Deno.readTextFile(`${dir}/loss.svg`);
  assertWellFormedSvg(svg);
  assert.equal((svg.match(/<path /g) ?? []).length, 2);
  assert.match(svg, /validation loss/);
  t.dispose();
});

Deno.test("train() stops on a signal after the step, with a checkpoint", async () => {
  const dir = await Deno.makeTempDir();
  const t = tinyTrainer(corpus, tinyConfig({ save: dir, trainIters: 100 }));
  const stop = new AbortController();
  const summary = await train(t, {
    logger: quiet(),
    signal: stop.signal,
    hooks: { afterStep: (tr) => void (tr.iteration === 2 && stop.abort()) },
  });
  assert.equal(summary.stoppedBy, "signal");
  assert.equal(summary.iterations, 2);
  assert.equal(summary.checkpoint, `${dir}/iter_0000002`);
  t.dispose();
});

Deno.test("ProgressLogger rewrites one line on a terminal and prints lines elsewhere", () => {
  const rec = {
    kind: "train" as const,
    iteration: 5,
    loss: 2.5,
    lr: 1e-3,
    gradNorm: 0.5,
    tokensPerSecond: 12345,
    flopsPerSecond: 6.7e9,
    elapsed: 10,
  };
  const term: string[] = [];
  const log = new ProgressLogger({
    totalIterations: 10,
    terminal: true,
    write: (s) => term.push(s),
  });
  log.train(rec, 10);
  log.train({ ...rec, iteration: 6 }, 8);
  log.close();
  assert.ok(term[0].startsWith("\r") && term[1].startsWith("\r") && term[2] === "\n");
  assert.match(term[0], /step 5\/10 \[█+░+\] \| loss 2\.5000 \| lr 1\.00e-3 \| grad norm 0\.500/);
  assert.match(term[0], /12\.3k tok\/s \| 6\.70GFLOP\/s \| elapsed 10s \| ETA 10s/);
  const plain: string[] = [];
  const log2 = new ProgressLogger({
    totalIterations: 10,
    terminal: false,
    write: (s) => plain.push(s),
  });
  log2.train(rec);
  assert.ok(plain[0].startsWith("step 5/10 | loss") && plain[0].endsWith("\n"));
});

Deno.test("lossCurveSvg() draws axes, labels and a legend; niceTicks() picks round steps", () => {
  assert.deepEqual(niceTicks(0, 1000, 5), [0, 200, 400, 600, 800, 1000]);
  assert.deepEqual(niceTicks(1.93, 2.41, 5), [2, 2.1, 2.2, 2.3, 2.4]);
  const svg = lossCurveSvg([
    { name: "a<b", color: "red", points: [[0, 1], [10, 2]] },
    { name: "empty", color: "blue", points: [] },
  ], { title: "T & U", xLabel: "iteration", yLabel: "loss" });
  assertWellFormedSvg(svg);
  assert.match(svg, /a&#60;b/);
  assert.match(svg, /T &#38; U/);
  assert.ok(!svg.includes("empty"));
});

/** Every tag closes in order, attributes are quoted, and the root is <svg>. */
function assertWellFormedSvg(svg: string): void {
  assert.ok(svg.startsWith('<?xml version="1.0" encoding="UTF-8"?>\n<svg '), "svg prologue");
  const body = svg.replace(/^<\?xml[^>]*\?>/, "");
  const stack: string[] = [];
  const tag = /<(\/?)([a-zA-Z]+)((?:\s+[a-zA-Z][a-zA-Z0-9:-]*="[^"<]*")*)\s*(\/?)>/g;
  let last = 0;
  let m: RegExpExecArray | null;
  while ((m = tag.exec(body))) {
    const between = body.slice(last, m.index);
    assert.ok(!/[<>]/.test(between), `stray markup before ${m[0]}: ${between.slice(0, 40)}`);
    assert.ok(!/&(?!#\d+;|amp;|lt;|gt;|quot;)/.test(between), `bare & in ${between}`);
    last = tag.lastIndex;
    if (m[1]) assert.equal(stack.pop(), m[2], `</${m[2]}> closes the wrong element`);
    else if (!m[4]) stack.push(m[2]);
    if (stack.length === 0 && !m[4]) assert.equal(m[2], "svg");
  }
  assert.ok(!/[<>]/.test(body.slice(last)), "markup that is not a well-formed tag");
  assert.deepEqual(stack, [], "unclosed elements");
}

Deno.test("ThreadTuner tries each count, keeps the fastest, and re-tries on a slowdown", () => {
  const tuner = new ThreadTuner({ candidates: [2, 1], trialSteps: 2, recheckEvery: 5 });
  const run = (secondsAt: Record<number, number>, steps: number) =>
    Array.from({ length: steps }, () => {
      const used = tuner.current;
      tuner.record(secondsAt[used]);
      return used;
    });
  // trial: two steps at 2 threads, two at 1; 2 is faster, kept for 5 steps, then a new trial
  assert.deepEqual(run({ 2: 0.5, 1: 0.9 }, 9), [2, 2, 1, 1, 2, 2, 2, 2, 2]);
  assert.ok(tuner.trying);
  // the machine gets busy: 2 threads slow down, the trial moves to 1
  assert.deepEqual(run({ 2: 3.0, 1: 0.9 }, 6), [2, 2, 1, 1, 1, 1]);
  assert.ok(!tuner.trying);
  // one slow step is noise; two in a row start a trial at once
  assert.deepEqual(run({ 2: 0.5, 1: 0.9 }, 1), [1]);
  assert.deepEqual(run({ 2: 0.5, 1: 2.0 }, 3), [1, 1, 2]);
  assert.ok(tuner.trying);
});
