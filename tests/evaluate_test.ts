import assert from "assert";
import { join } from "node:path";
import { noGrad } from "../lib/autograd.ts";
import { IndexedDatasetWriter } from "../lib/data/indexed_dataset.ts";
import { ByteTokenizer } from "../lib/data/tokenizer.ts";
import {
  continuationScore,
  type EvalModel,
  gptEvalModel,
  multipleChoiceScore,
  streamNll,
} from "../lib/eval/scoring.ts";
import { evaluateTask, readJsonl } from "../lib/eval/tasks.ts";
import { GPT, type GPTConfig } from "../lib/nn/gpt.ts";
import { Tensor } from "../lib/tensor.ts";
import { saveByteRun } from "./helpers.ts";

const CONFIG: GPTConfig = { vocabSize: 257, blockSize: 16, nLayer: 2, nHead: 2, nEmbd: 16 };
const tok = new ByteTokenizer();
const TEXT = "the nation is strong and the union is stronger still, said the president.";

function tinyModel(): GPT {
  const model = new GPT(CONFIG, { seed: 3 });
  for (const [, t] of model.namedParameters()) {
    if (t.ndim === 2) t.copyFromHost((t.toArray() as Float32Array).map((x) => x * 5));
  }
  return model.eval();
}

/** Token cross-entropy in float64 from the model's own logits: -log softmax(row)[target]. */
function refCe(model: GPT, context: number[], target: number): number {
  const logits = noGrad(() => {
    using t = Tensor.fromArray(Int32Array.from(context), [1, context.length]);
    using out = model.forward(t);
    return out.toArray() as Float32Array;
  });
  const V = CONFIG.vocabSize;
  const row = Array.from(logits.subarray((context.length - 1) * V, context.length * V));
  const max = Math.max(...row);
  const lse = max + Math.log(row.reduce((s, x) => s + Math.exp(x - max), 0));
  return lse - row[target];
}

function near(actual: number, expected: number, what: string, tol = 1e-5): void {
  assert.ok(
    Math.abs(actual - expected) <= tol * Math.max(1, Math.abs(expected)),
    `${what}: ${actual} != ${expected}`,
  );
}

async function inTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "denotron_eval_" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("streamNll() with stride 1 scores each token after its last blockSize tokens", () => {
  using model = tinyModel();
  const ids = [tok.eotId, ...tok.encode(TEXT.slice(0, 40))];
  let ref = 0;
  for (let j = 1; j < ids.length; j++) {
    ref += refCe(model, ids.slice(Math.max(0, j - CONFIG.blockSize), j), ids[j]);
  }
  const got = streamNll(gptEvalModel(model), ids, 1);
  assert.equal(got.tokens, ids.length - 1);
  near(got.nll, ref, "nll");
});

Deno.test("perplexity on a text file is exp(mean token CE) and bits per byte is NLL/ln2/bytes", async () => {
  using model = tinyModel();
  await inTempDir(async (dir) => {
    const path = join(dir, "valid.txt");
    await Deno.writeTextFile(path, TEXT);
    const stride = 5;
    const ids = [tok.eotId, ...tok.encode(TEXT)];
    // Independently: window starts 0, 5, 10, ...; each target j is scored in the first
    // window that holds it, with context from that window's start.
    let ref = 0;
    for (let j = 1; j < ids.length; j++) {
      const start = Math.max(0, Math.ceil((j - CONFIG.blockSize) / stride) * stride);
      ref += refCe(model, ids.slice(start, j), ids[j]);
    }
    const n = ids.length - 1;
    const r = await evaluateTask(gptEvalModel(model), tok, {
      kind: "perplexity",
      format: "text",
      path,
      stride,
    });
    near(r.metrics.perplexity, Math.exp(ref / n), "perplexity");
    near(r.metrics.bits_per_byte, ref / Math.LN2 / new TextEncoder().encode(TEXT).length, "bpb");
    assert.equal(r.metrics.tokens, n);
  });
});

Deno.test("perplexity on an indexed dataset scores each document after end-of-text", async () => {
  using model = tinyModel();
  await inTempDir(async (dir) => {
    const prefix = join(dir, "docs");
    const docs = ["hello there", "a second document, longer than the context"];
    const w = await IndexedDatasetWriter.create(prefix, { vocabSize: tok.vocabSize });
    for (const d of docs) await w.addDocument(tok.encode(d), tok.eotId);
    await w.finalize();
    const stride = CONFIG.blockSize;
    let ref = 0;
    let n = 0;
    let bytes = 0;
    for (const d of docs) {
      const ids = [tok.eotId, ...tok.encode(d)];
      for (let j = 1; j < ids.length; j++) {
        const start = Math.floor((j - 1) / stride) * stride; // disjoint windows
        ref += refCe(model, ids.slice(start, j), ids[j]);
      }
      n += ids.length - 1;
      bytes += d.length;
    }
    const r = await evaluateTask(gptEvalModel(model), tok, {
      kind: "perplexity",
      format: "indexed",
      path: prefix,
    });
    assert.equal(r.examples, 2);
    assert.equal(r.metrics.tokens, n);
    near(r.metrics.loss, ref / n, "loss");
    near(r.metrics.bits_per_byte, ref / Math.LN2 / bytes, "bpb");
  });
});

Deno.test("continuationScore() on a GPT is minus the summed token CE, context cut from the left", () => {
  using model = tinyModel();
  const context = tok.encode(TEXT.slice(0, 20)); // 20 + 3 > blockSize 16
  const cont = tok.encode(" is");
  const input = [...context, ...cont].slice(-CONFIG.blockSize);
  let ref = 0;
  for (let i = 0; i < cont.length; i++) {
    const j = input.length - cont.length + i;
    ref += refCe(model, input.slice(0, j), input[j]);
  }
  near(continuationScore(gptEvalModel(model), context, cont).logProb, -ref, "logProb");
});

/**
 * A hand-made bigram "model" over bytes: after byte `a` it gives logit L to NEXT[a] and 0
 * to every other id; after a byte not in NEXT all logits are 0. So a predicted byte
 * has log-probability HIT, any other MISS, and every byte after an unknown one UNIFORM.
 */
const L = 5;
const V = 257;
const HIT = L - Math.log(Math.exp(L) + V - 1);
const MISS = -Math.log(Math.exp(L) + V - 1);
const UNIFORM = -Math.log(V);
const NEXT: Record<string, string> = { b: " ", " ": "c", c: "d", d: "e", e: "f" };
const bigram: EvalModel = {
  vocabSize: V,
  contextLength: 32,
  logits(tokens) {
    const out = new Float32Array(tokens.length * V);
    tokens.forEach((t, i) => {
      const next = NEXT[String.fromCharCode(t)];
      if (next !== undefined) out[i * V + next.charCodeAt(0)] = L;
    });
    return out;
  },
};

Deno.test("continuationScore() sums the continuation's log-probabilities", () => {
  const s = continuationScore(bigram, tok.encode("ab"), tok.encode(" cdz"));
  near(s.logProb, 3 * HIT + MISS, "logProb"); // ' ', c, d hit; z missed
  assert.equal(s.greedy, false);
  assert.equal(continuationScore(bigram, tok.encode("ab"), tok.encode(" cd")).greedy, true);
});

Deno.test("LAMBADA accuracy on a hand-made file: a word is right when greedy gives all of it", async () => {
  await inTempDir(async (dir) => {
    const path = join(dir, "lambada.jsonl");
    // "ab cdef": after b the model says " ", then c, d, e, f: right.
    // "ab cx": x is missed: wrong.
    await Deno.writeTextFile(path, `{"text": "ab cdef"}\n\n{"text": "ab cx"}\n`);
    const r = await evaluateTask(bigram, tok, { kind: "lambada", path });
    assert.equal(r.examples, 2);
    assert.equal(r.metrics.acc, 0.5);
    // 5 + 3 tokens: " cdef" all hits; " cx" two hits and a miss.
    near(r.metrics.perplexity, Math.exp(-(7 * HIT + MISS) / 8), "perplexity");
  });
});

Deno.test("HellaSwag acc and acc_norm on a hand-made file pick by sum and by sum per byte", async () => {
  // After "ab": " x" = HIT + MISS (-7.0) beats " cdefx" = 5 HIT + UNIFORM (-10.6) by sum,
  // but per byte " cdefx" (-1.76) beats " x" (-3.5).
  const s = multipleChoiceScore(bigram, (t) => tok.encode(t), tok.eotId, "ab", ["cdefx", "x"]);
  near(s.logProbs[0], 5 * HIT + UNIFORM, "ending 0");
  near(s.logProbs[1], HIT + MISS, "ending 1");
  assert.equal(s.pick, 1);
  assert.equal(s.pickNorm, 0);
  await inTempDir(async (dir) => {
    const path = join(dir, "hellaswag.jsonl");
    const rows = [
      { ctx: "ab", endings: ["cdefx", "x"], label: 0 }, // acc wrong, acc_norm right
      { ctx: "ab", endings: ["cdefx", "x"], label: "1" }, // acc right, acc_norm wrong
      { ctx: "ab", endings: ["cd", "q", "zz"], label: 0 }, // both right
    ];
    await Deno.writeTextFile(path, rows.map((r) => JSON.stringify(r)).join("\n"));
    const r = await evaluateTask(bigram, tok, { kind: "hellaswag", path });
    assert.equal(r.metrics.acc, 2 / 3);
    assert.equal(r.metrics.acc_norm, 2 / 3);
  });
});

Deno.test("ROUGE task scores each generated text against its reference", async () => {
  await inTempDir(async (dir) => {
    const path = join(dir, "sum.jsonl");
    await Deno.writeTextFile(
      path,
      `{"prompt": "p1", "reference": "the cat sat"}\n{"prompt": "p2", "reference": "a b"}\n`,
    );
    const r = await evaluateTask(bigram, tok, {
      kind: "rouge",
      path,
      generate: (p) => (p === "p1" ? "the cat sat" : "c d"),
    });
    assert.equal(r.metrics.rouge1_f1, 0.5);
    assert.equal(r.metrics.rougeL_f1, 0.5);
  });
});

Deno.test("bad JSONL names the file, the line and the field", async () => {
  await inTempDir(async (dir) => {
    const path = join(dir, "bad.jsonl");
    const check = async (body: string, pattern: RegExp) => {
      await Deno.writeTextFile(path, body);
      await assert.rejects(
        () => readJsonl(path, { ctx: "string", endings: "string[]", label: "integer" }),
        pattern,
      );
    };
    await check(
      `{"ctx":"a","endings":["b"],"label":0}\n{oops\n`,
      /bad\.jsonl:2: not a JSON object/,
    );
    await check(`{"endings":["b"],"label":0}\n`, /bad\.jsonl:1: field "ctx" is missing/);
    await check(`{"ctx":"a","endings":"b","label":0}\n`, /bad\.jsonl:1: field "endings" is not/);
    await check(`{"ctx":"a","endings":["b"],"label":1.5}\n`, /:1: field "label" is not an integer/);
    await assert.rejects(
      () => readJsonl(join(dir, "missing.jsonl"), {}),
      /missing\.jsonl: cannot read the file/,
    );
    await check("\n", /bad\.jsonl: no examples/);
    await Deno.writeTextFile(path, `{"text":"oneword"}\n`);
    await assert.rejects(
      () => evaluateTask(bigram, tok, { kind: "lambada", path }),
      /bad\.jsonl: example 1: field "text": .*no last word/,
    );
    await Deno.writeTextFile(path, `{"ctx":"a","endings":["b"],"label":3}\n`);
    await assert.rejects(
      () => evaluateTask(bigram, tok, { kind: "hellaswag", path }),
      /example 1: field "label" 3 is not an index into its 1 endings/,
    );
  });
});

const EVALUATE = decodeURIComponent(new URL("../tools/evaluate.ts", import.meta.url).pathname);

async function cli(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", EVALUATE, ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const d = new TextDecoder();
  return { code: out.code, stdout: d.decode(out.stdout), stderr: d.decode(out.stderr) };
}

Deno.test("deno task evaluate: --help, a missing file, and a checkpoint's table and JSON", async () => {
  const help = await cli("--help");
  assert.equal(help.code, 0);
  for (const flag of ["--checkpoint", "--hf", "--perplexity-data", "--lambada", "--hellaswag"]) {
    assert.ok(help.stdout.includes(flag), flag);
  }
  assert.match(help.stdout, /default: 64/);
  await inTempDir(async (dir) => {
    const missing = await cli("--hf", dir, "--lambada", join(dir, "nope.jsonl"));
    assert.notEqual(missing.code, 0);
    assert.match(missing.stderr, /--lambada: .*nope\.jsonl does not exist/);
    assert.equal(missing.stderr.trim().split("\n").length, 1);
    // A bad line is found before any model is looked for.
    const badPath = join(dir, "bad.jsonl");
    await Deno.writeTextFile(badPath, `{"ctx": "a", "endings": ["b"]}\n`);
    const bad = await cli("--hf", dir, "--hellaswag", badPath);
    assert.match(bad.stderr.trim(), /^error: .*bad\.jsonl:1: field "label" is missing[^\n]*$/);

    using model = tinyModel();
    const save = join(dir, "run");
    await saveByteRun(save, model);
    const text = join(dir, "valid.txt");
    await Deno.writeTextFile(text, TEXT);
    const lambada = join(dir, "lambada.jsonl");
    await Deno.writeTextFile(lambada, `{"text": "the nation is strong"}\n`);
    const summaries = join(dir, "sum.jsonl");
    await Deno.writeTextFile(summaries, `{"prompt": "the nation", "reference": "is strong"}\n`);
    const output = join(dir, "out.json");
    const run = await cli(
      "--checkpoint",
      save,
      "--perplexity-text",
      text,
      "--lambada",
      lambada,
      "--rouge",
      summaries,
      "--max-new-tokens",
      "4",
      "--output",
      output,
    );
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /perplexity\(text\)/);
    const json = JSON.parse(await Deno.readTextFile(output));
    const lib = await evaluateTask(gptEvalModel(model), tok, {
      kind: "perplexity",
      format: "text",
      path: text,
    });
    near(json.results[0].metrics.perplexity, lib.metrics.perplexity, "cli perplexity");
    assert.equal(json.results[1].task, "lambada");
    assert.equal(json.results[2].task, "rouge");
    assert.ok(json.results[2].metrics.rougeL_f1 >= 0 && json.results[2].metrics.rougeL_f1 <= 1);
  });
});
