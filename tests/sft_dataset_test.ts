/**
 * Fine-tuning data (lib/data/sft_dataset.ts): JSONL examples and their one-line errors,
 * the segments a chat template gives, packing (document starts, the targets that count),
 * batches through the iterator and the length curriculum, and the loss mask through the
 * model: prompt positions get exactly zero gradient, and a packed row's loss is the
 * float64 mean over its response targets.
 */
import assert from "assert";
import {
  buildSftDatasets,
  packExamples,
  parseSftJsonl,
  segmentsOf,
  tokenizeExample,
} from "../lib/data/sft_dataset.ts";
import { GptBatchIterator } from "../lib/data/gpt_dataset.ts";
import { ByteTokenizer } from "../lib/data/tokenizer.ts";
import { truncateBatch } from "../lib/curriculum/seqlen.ts";
import { crossEntropy } from "../lib/ops/crossentropy.ts";
import { GPT, GPT_PRESETS } from "../lib/nn/gpt.ts";
import { sequenceLayout } from "../lib/nn/attention.ts";
import { Tensor, tidy } from "../lib/tensor.ts";
import { DenotronError } from "../lib/errors.ts";

const tok = new ByteTokenizer();
const plain = (ms: { role: string; content: string }[]) =>
  ms.map((m) => `<${m.role}>${m.content}`).join("") + "<assistant>";

Deno.test("parseSftJsonl reads both forms and names the file, line and field of a bad one", () => {
  const ok = parseSftJsonl(
    '{"prompt": "a", "response": "b"}\n\n{"messages": [{"role": "user", "content": "hi"}, ' +
      '{"role": "assistant", "content": "yo"}]}\n',
    "f.jsonl",
  );
  assert.equal(ok.length, 2);
  const bad: [string, RegExp][] = [
    ["{nope", /^f\.jsonl:1: not JSON/],
    ["[1, 2]", /^f\.jsonl:1: expected an object/],
    [
      '{"prompt": "a"}',
      /^f\.jsonl:1: expected "prompt" and "response", or "messages" \(got "prompt"\)/,
    ],
    ['{"prompt": 3, "response": "b"}', /^f\.jsonl:1: "prompt" must be a string, got 3/],
    ['{"messages": []}', /"messages" must be a non-empty list/],
    ['{"messages": [{"role": "bot", "content": "x"}]}', /"messages\[0\]\.role" must be one of/],
    ['{"messages": [{"role": "user", "content": 1}]}', /"messages\[0\]\.content" must be a string/],
    ['{"messages": [{"role": "user", "content": "x"}]}', /no assistant message/],
    ["\n", /^f\.jsonl: no examples/],
  ];
  for (const [line, re] of bad) {
    assert.throws(() => parseSftJsonl(line, "f.jsonl"), (e) => {
      assert.ok(e instanceof DenotronError, String(e));
      assert.match(e.message, re);
      assert.ok(!e.message.includes("\n"), e.message);
      return true;
    });
  }
  assert.throws(
    () => parseSftJsonl('{"prompt": "a", "response": "b"}\n{"prompt": 1, "response": "b"}', "g"),
    /^DenotronError: g:2: "prompt"/,
  );
});

Deno.test("segmentsOf trains each assistant message and keeps the template's text as context", () => {
  const ex = {
    messages: [
      { role: "system", content: "S" },
      { role: "user", content: "U1" },
      { role: "assistant", content: "A1" },
      { role: "user", content: "U2" },
      { role: "assistant", content: "A2" },
    ],
  };
  const segs = segmentsOf(ex, plain);
  assert.deepEqual(segs, [
    { text: "<system>S<user>U1<assistant>", trained: false },
    { text: "A1", trained: true },
    { text: "<user>U2<assistant>", trained: false },
    { text: "A2", trained: true },
  ]);
  assert.deepEqual(segmentsOf({ prompt: "P", response: "R" }, plain), [
    { text: "P", trained: false },
    { text: "R", trained: true },
  ]);
  // a template that rewrites earlier turns cannot be split into context and answers
  const shifting = (ms: { role: string; content: string }[]) => `${ms.length}:` + plain(ms);
  assert.throws(
    () => segmentsOf(ex, shifting, "f.jsonl example 3"),
    /^DenotronError: f\.jsonl example 3: the chat template/,
  );
});

Deno.test("tokenizeExample opens with end-of-text and marks the response and the closing end-of-text as trained", () => {
  const t = tokenizeExample(segmentsOf({ prompt: "ab", response: "c" }, plain), tok);
  assert.deepEqual([...t.tokens], [tok.eotId, 97, 98, 99, tok.eotId]);
  assert.deepEqual([...t.trained], [0, 0, 0, 1, 1]);
});

Deno.test("packExamples keeps examples whole, starts each at its offset, and counts only response targets inside one example", () => {
  const ex = (prompt: string, response: string) =>
    tokenizeExample([{ text: prompt, trained: false }, { text: response, trained: true }], tok);
  // lengths 5, 4, 7 (end-of-text first and last); rows of T + 1 = 10 tokens
  const rows = packExamples([ex("ab", "c"), ex("d", "e"), ex("fgh", "ij")], 9, 0);
  assert.deepEqual(rows.starts, [[0, 5], [0, 7]]);
  const L = 10, E = tok.eotId;
  assert.deepEqual([...rows.tokens.subarray(0, L)], [E, 97, 98, 99, E, E, 100, 101, E, 0]);
  // input t predicts token t+1: counted where that is a response token of the same example
  assert.deepEqual([...rows.ignore.subarray(0, 9)], [1, 1, 0, 0, 1, 1, 0, 0, 1]);
  assert.deepEqual([...rows.tokens.subarray(L)], [E, 102, 103, 104, 105, 106, E, 0, 0, 0]);
  assert.deepEqual([...rows.ignore.subarray(9)], [1, 1, 1, 0, 0, 0, 1, 1, 1]);
  // unpacked: one example per row
  assert.deepEqual(packExamples([ex("ab", "c"), ex("d", "e")], 9, 0, false).starts, [[0, 5], [
    0,
    4,
  ]]);
  // too long: cut to the row; nothing trained left: dropped
  const cut = packExamples([ex("abcdef", "ghij"), ex("abcdefghij", "k")], 7, 0);
  assert.equal(cut.truncated, 2);
  assert.equal(cut.untrained, 1);
  assert.deepEqual(cut.starts, [[0]]);
  assert.deepEqual([...cut.ignore], [1, 1, 1, 1, 1, 1, 0]);
});

Deno.test("SFT batches carry their document starts and -1 targets, also cut by the length curriculum", async () => {
  const dir = await Deno.makeTempDir();
  const lines = Array.from(
    { length: 10 },
    (_, i) => JSON.stringify({ prompt: `q${i}?`, response: `a${i}.` }),
  );
  await Deno.writeTextFile(`${dir}/d.jsonl`, lines.join("\n"));
  const { train, valid } = await buildSftDatasets({ train: `${dir}/d.jsonl` }, tok, {
    seqLength: 15,
    split: "80,20,0",
    seed: 3,
    render: plain,
  });
  assert.ok(train && valid);
  assert.equal(train.examples, 8);
  assert.equal(valid.examples, 2);
  assert.match(train.describe(), /^train: 8 examples in 4 rows of 16 tokens, 32 trained targets$/);
  const it = new GptBatchIterator(train, { microBatchSize: 2 });
  const b = it.next();
  assert.ok(b.documentStarts);
  assert.equal(b.documentStarts.length, 2);
  for (let r = 0; r < 2; r++) {
    const row = b.inputs.subarray(r * 15, r * 15 + 15);
    const targets = b.targets.subarray(r * 15, r * 15 + 15);
    for (const s of b.documentStarts[r]) {
      // an example opens with end-of-text, then its prompt: no counted target there
      assert.equal(row[s], tok.eotId);
      assert.equal(targets[s], -1, "the prompt's first byte is not a target");
      assert.equal(targets[s + 1], -1, "nor its second");
    }
    // every counted target is a response byte or end-of-text
    targets.forEach((t) =>
      t !== -1 && assert.ok(/[a0-9.]/.test(String.fromCharCode(t)) || t === 256)
    );
  }
  const short = truncateBatch(b, 6);
  assert.ok(short.documentStarts!.every((row) => row.every((s) => s < 6)));
  await Deno.remove(dir, { recursive: true });
});

Deno.test("the SFT loss gives prompt positions zero gradient and is the float64 mean over response targets", () => {
  const exs = [
    tokenizeExample([{ text: "Qq: ", trained: false }, { text: "yes", trained: true }], tok),
    tokenizeExample([{ text: "Q: z", trained: false }, { text: "no", trained: true }], tok),
  ];
  const T = 19;
  const rows = packExamples(exs, T, tok.eotId);
  assert.equal(rows.starts.length, 1);
  const targets = Int32Array.from(
    rows.tokens.subarray(1, T + 1),
    (t, i) => rows.ignore[i] ? -1 : t,
  );
  using model = new GPT(GPT_PRESETS.tiny, { seed: 2 });
  tidy(() => {
    const x = Tensor.fromArray(rows.tokens.subarray(0, T), [1, T], { dtype: "i32" });
    const layout = sequenceLayout(rows.starts, T);
    const logits = model.forward(x, undefined, layout);
    const V = logits.shape[2];
    const leaf = Tensor.fromArray(logits.toArray() as Float32Array, [1, T, V], {
      requiresGrad: true,
    });
    const y = Tensor.fromArray(targets, [1, T], { dtype: "i32" });
    const loss = crossEntropy(leaf, y, { classes: model.config.vocabSize });
    loss.backward();
    const g = leaf.grad!.toArray() as Float32Array;
    const z = logits.toArray() as Float32Array;
    let sum = 0, n = 0;
    for (let t = 0; t < T; t++) {
      const row = g.subarray(t * V, (t + 1) * V);
      const zero = row.every((v) => v === 0);
      assert.equal(
        zero,
        targets[t] === -1,
        `position ${t}: gradient zero ${zero}, target ${targets[t]}`,
      );
      if (targets[t] === -1) continue;
      const zr = Array.from(z.subarray(t * V, t * V + model.config.vocabSize));
      const m = Math.max(...zr);
      const lse = m + Math.log(zr.reduce((a, v) => a + Math.exp(v - m), 0));
      sum += lse - zr[targets[t]];
      n++;
    }
    assert.equal(n, "yes".length + 1 + "no".length + 1);
    assert.ok(Math.abs(loss.item() - sum / n) < 1e-5, `${loss.item()} vs ${sum / n}`);
  });
});
