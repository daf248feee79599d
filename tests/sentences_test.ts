import assert from "assert";
import { sentenceBreaks, splitSentences, streamSentences } from "../lib/data/sentences.ts";
import { preprocess } from "../lib/data/preprocess.ts";
import { IndexedDataset } from "../lib/data/indexed_dataset.ts";
import { ByteTokenizer } from "../lib/data/tokenizer.ts";
import { WordPieceTokenizer } from "../lib/data/wordpiece.ts";
import { Rng } from "../lib/data/gpt_dataset.ts";

Deno.test("splitSentences: . ? ! before whitespace and a capital or a quote end a sentence", () => {
  assert.deepEqual(splitSentences("Hello there. How are you? Fine! Thanks."), [
    "Hello there.",
    "How are you?",
    "Fine!",
    "Thanks.",
  ]);
  assert.deepEqual(splitSentences('He said "Stop." Then he ran.'), [
    'He said "Stop."',
    "Then he ran.",
  ]);
  assert.deepEqual(splitSentences('It ended. "Really?" she asked.'), [
    "It ended.",
    '"Really?" she asked.',
  ]);
  assert.deepEqual(splitSentences("Wait... What?! (Yes.) No."), [
    "Wait...",
    "What?!",
    "(Yes.)",
    "No.",
  ]);
  assert.deepEqual(splitSentences("Élan. Über alles."), ["Élan.", "Über alles."], "any upper case");
});

Deno.test("splitSentences: no break before lower case, digits, or inside numbers", () => {
  assert.deepEqual(splitSentences("Version 2.0 is out. it works."), [
    "Version 2.0 is out. it works.",
  ]);
  assert.deepEqual(splitSentences("It costs 5. 3 people paid."), ["It costs 5. 3 people paid."]);
  assert.deepEqual(splitSentences("A line\ncontinues here."), ["A line\ncontinues here."]);
});

Deno.test("splitSentences: abbreviations, initials and dotted acronyms end no sentence", () => {
  assert.deepEqual(splitSentences("I met Dr. Who. He said hi."), ["I met Dr. Who.", "He said hi."]);
  assert.deepEqual(splitSentences("Mr. and Mrs. Smith came. So did (Prof. X)."), [
    "Mr. and Mrs. Smith came.",
    "So did (Prof. X).",
  ]);
  assert.deepEqual(splitSentences("Use tools, e.g. Hammers, i.e. Heavy ones, etc. Then stop."), [
    "Use tools, e.g. Hammers, i.e. Heavy ones, etc. Then stop.",
  ]);
  assert.deepEqual(splitSentences("John F. Kennedy spoke. The U.S. Army won."), [
    "John F. Kennedy spoke.",
    "The U.S. Army won.",
  ]);
  assert.deepEqual(
    splitSentences("Really? Dr. No!"),
    ["Really?", "Dr. No!"],
    "? is no abbreviation",
  );
});

Deno.test("splitSentences: a blank line ends a sentence; empty text has none", () => {
  assert.deepEqual(splitSentences("Title\n\nFirst part. Second\n \n\nthird"), [
    "Title",
    "First part.",
    "Second",
    "third",
  ]);
  assert.deepEqual(splitSentences(""), []);
  assert.deepEqual(splitSentences(" \n\n\t "), []);
  assert.deepEqual(sentenceBreaks("Hi there. Dr. Who? Yes."), [9, 18]);
});

const TEXT = Array.from({ length: 60 }, (_, i) =>
  [
    `Sentence ${i} is here.`,
    `Dr. Jones asked "why?" Nobody knew!`,
    i % 7 === 0 ? "\n\nA heading\n\n" : " ",
    "It is e.g. Fine... ",
  ].join(" ")).join("");

async function* pieces(text: string, rng: Rng, longest = 40): AsyncGenerator<string> {
  for (let at = 0; at < text.length;) {
    const n = 1 + rng.below(longest);
    yield text.slice(at, at + n);
    at += n;
  }
}

Deno.test("streamSentences: pieces cut anywhere give the sentences of the whole text", async () => {
  const whole = splitSentences(TEXT);
  assert.ok(whole.length > 150);
  for (const seed of [1, 2, 3]) {
    const got: string[] = [];
    for await (const s of streamSentences(pieces(TEXT, new Rng(seed)))) got.push(s);
    assert.deepEqual(got, whole, `seed ${seed}`);
  }
  const capped: string[] = [];
  for await (const s of streamSentences(pieces("a b c d e f g h", new Rng(1), 3), 4)) {
    capped.push(s);
  }
  assert.ok(capped.length > 1, "an unbroken run is given out once it passes maxHeld");
  assert.equal(capped.join(" ").replace(/\s+/g, ""), "abcdefgh");
});

const VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hi", ".", "yo", "!", "so"];
const wordpiece = new WordPieceTokenizer(VOCAB);

async function inTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "denotron_sent_" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** The dataset's documents as lists of sentences' tokens. */
function documents(ds: IndexedDataset): number[][][] {
  return Array.from({ length: ds.documentCount }, (_, d) => {
    const out: number[][] = [];
    for (let s = ds.documentIndices[d]; s < ds.documentIndices[d + 1]; s++) {
      out.push([...ds.read(s)]);
    }
    return out;
  });
}

Deno.test("preprocess splitSentences: one sequence per sentence, documents kept, empty ones dropped", async () => {
  await inTempDir(async (dir) => {
    await Deno.writeTextFile(
      `${dir}/a.jsonl`,
      '{"text": "Hi. Yo! So hi."}\n{"text": "Yo."}\n{"text": "Hi.\\n\\n\\u0000\\n\\nYo."}\n',
    );
    await preprocess({
      inputs: [`${dir}/a.jsonl`],
      outputPrefix: `${dir}/out`,
      tokenizer: wordpiece,
      splitSentences: true,
      appendEod: true,
    });
    using ds = await IndexedDataset.open(`${dir}/out`);
    // [SEP] (3) is WordPiece's end of document; a sentence of only a control character is empty
    assert.deepEqual(documents(ds), [
      [[5, 6], [7, 8], [9, 5, 6, 3]],
      [[7, 6, 3]],
      [[5, 6], [7, 6, 3]],
    ]);
  });
});

Deno.test("preprocess splitSentences: plain text streamed in chunks keeps every sentence whole", async () => {
  await inTempDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/a.txt`, TEXT.replaceAll(" ", "\n"));
    await preprocess({
      inputs: [`${dir}/a.txt`],
      outputPrefix: `${dir}/out`,
      tokenizer: new ByteTokenizer(),
      splitSentences: true,
      chunkChars: 50,
    });
    using ds = await IndexedDataset.open(`${dir}/out`);
    const want = splitSentences(TEXT.replaceAll(" ", "\n"))
      .map((s) => [...new TextEncoder().encode(s)]);
    assert.deepEqual(documents(ds), [want]);
  });
});

Deno.test("deno task preprocess --split-sentences --tokenizer-type BertWordPieceLowerCase", async () => {
  await inTempDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/vocab.txt`, VOCAB.join("\n") + "\n");
    await Deno.writeTextFile(`${dir}/a.jsonl`, '{"text": "HI. So yo!"}\n');
    const tool = decodeURIComponent(new URL("../tools/preprocess.ts", import.meta.url).pathname);
    const args = [
      "--input",
      `${dir}/a.jsonl`,
      "--output-prefix",
      `${dir}/out`,
      "--split-sentences",
    ];
    const wp = ["--tokenizer-type", "BertWordPieceLowerCase", "--vocab-file", `${dir}/vocab.txt`];
    const run = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", tool, ...args, ...wp],
    })
      .output();
    assert.equal(run.code, 0, new TextDecoder().decode(run.stderr));
    using ds = await IndexedDataset.open(`${dir}/out`);
    assert.deepEqual(documents(ds), [[[5, 6], [9, 7, 8]]]);
  });
});
