/**
 * Every user error of the command-line tools is one line, `error: …`, exit status 2,
 * naming the flag, file or field; the stack trace only with DENOTRON_DEBUG=1. The train
 * cases are the ones a probe found ending in stack traces, hangs or allocation failures.
 */
import assert from "assert";
import { IndexedDatasetWriter } from "../lib/data/indexed_dataset.ts";
import { joinNegativeValues } from "../tools/cli.ts";
import { TRAIN_SCRIPT } from "./train_helpers.ts";

const GENERATE_SCRIPT = decodeURIComponent(
  new URL("../tools/generate.ts", import.meta.url).pathname,
);
const dir = await Deno.makeTempDir({ prefix: "denotron-cli-" });

// A dataset of 1000-token ids: out of the byte tokenizer's vocabulary of 257.
const oov = `${dir}/oov`;
{
  const w = await IndexedDatasetWriter.create(oov, { vocabSize: 1000 });
  for (let d = 0; d < 30; d++) {
    await w.addDocument(Array.from({ length: 80 }, (_, i) => (i * 37 + d) % 1000), 0);
  }
  await w.finalize();
}
const aFile = `${dir}/a-file`;
await Deno.writeTextFile(aFile, "not a directory\n");

async function run(script: string, args: string[], env: Record<string, string> = {}) {
  const r = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", script, ...args],
    env: { DENOTRON_NUM_THREADS: "1", NO_COLOR: "1", ...env },
    stdout: "piped",
    stderr: "piped",
  }).output();
  return {
    code: r.code,
    stdout: new TextDecoder().decode(r.stdout),
    stderr: new TextDecoder().decode(r.stderr),
  };
}

/** A short run on the tiny OOV-free corpus unless the case says otherwise. */
const base = (save: string) => [
  "--train-iters",
  "2",
  "--lr-warmup-iters",
  "0",
  "--eval-iters",
  "1",
  "--save",
  save,
  "--n-layer",
  "1",
  "--n-embd",
  "16",
  "--n-head",
  "1",
  "--seq-length",
  "8",
  "--micro-batch-size",
  "2",
  "--global-batch-size",
  "2",
]; // deno-fmt-ignore

/** [case, extra flags, what the line must say] */
const TRAIN_CASES: [string, string[], RegExp][] = [
  ["--dropout 1", ["--dropout", "1"], /dropout: expected a number < 1.*\(--dropout\)/],
  ["--seed 1e20", ["--seed", "1e20"], /seed: expected an integer <= 9007199254740991.*--seed/],
  ["--seed 1.5", ["--seed", "1.5"], /seed: expected an integer, got '1\.5'/],
  ["--seed -1", ["--seed", "-1"], /seed: expected an integer >= 0, got '-1'/],
  ["a missing --data-path", ["--data-path", `${dir}/missing`], /missing\.idx: cannot open/],
  [
    "out-of-vocabulary tokens in a dataset",
    ["--data-path", oov, "--tokenizer", "byte"],
    /oov\.bin: sequence \d+ holds token \d+ at position \d+, outside the model's vocabulary/,
  ],
  ["--save pointing at a file", ["--save", aFile], /a-file: exists and is not a directory/],
  ["--load of a file", ["--load", aFile], /a-file: not a checkpoint directory/],
  ["--seq-length 1e9", ["--seq-length", "1e9"], /seqLength: expected an integer <= 1048576/],
  ["--train-iters 2^53+1", ["--train-iters", "9007199254740993"], /trainIters: expected an/],
  ["--train-iters 1e12", ["--train-iters", "1e12"], /trainIters: expected an integer <= 1000000000/],
  ["--global-batch-size 1e9", ["--global-batch-size", "1e9"], /globalBatchSize: expected/],
  ["--vocab-size 2^58", ["--vocab-size", "288230376151711808"], /vocabSize: expected an/],
  ["--num-layers 2^31", ["--num-layers", "2147483648"], /nLayer: expected an integer <= 4096/],
  ["--lr abc", ["--lr", "abc"], /lr: expected a number, got 'abc' \(--lr\)/],
  ["an unknown flag", ["--hidden-sise", "3"], /unknown option --hidden-sise; did you mean --hidden-size\?/],
  ["a missing --config file", ["--config", `${dir}/none.yaml`], /none\.yaml: cannot read/],
  ["--tokenizer nope", ["--tokenizer", "nope"], /tokenizer "nope" is not "gpt2", "byte", "bert-base-uncased", the path/],
  ["--split 0,0,0", ["--split", "0,0,0"], /split "0,0,0": weights sum to 0/],
  ["a missing --init-from-hf", ["--init-from-hf", `${dir}/hf`], /hf\/config\.json: cannot read/],
  [
    "--lr 1e30 (divergence)",
    ["--lr", "1e30", "--data-path", oov, "--tokenizer", "gpt2", "--train-iters", "20"],
    /iteration \d+: the (loss|gradient norm) is (NaN|-?Infinity); training stopped before/,
  ],
];

Deno.test("deno task train: each bad input is one 'error:' line with exit status 2", async () => {
  const results = [];
  // two at a time: the machine has two cores
  for (let i = 0; i < TRAIN_CASES.length; i += 2) {
    results.push(
      ...await Promise.all(
        TRAIN_CASES.slice(i, i + 2).map(async ([name, flags, want], j) => {
          const save = `${dir}/save-${i + j}`;
          return { name, want, r: await run(TRAIN_SCRIPT, [...base(save), ...flags]) };
        }),
      ),
    );
  }
  const problems: string[] = [];
  for (const { name, want, r } of results) {
    const lines = r.stderr.trim().split("\n").filter((l) => !l.startsWith("step "));
    const last = lines.at(-1) ?? "";
    const errorLines = lines.filter((l) => l.startsWith("error:"));
    if (r.code !== 2 || errorLines.length !== 1 || !want.test(last) || /\n\s+at /.test(r.stderr)) {
      problems.push(`${name}: exit ${r.code}, stderr:\n${r.stderr.slice(-800)}`);
    }
  }
  assert.deepEqual(problems, []);
});

Deno.test("DENOTRON_DEBUG=1 shows where an error came from", async () => {
  const r = await run(TRAIN_SCRIPT, ["--lr", "abc"], { DENOTRON_DEBUG: "1" });
  assert.equal(r.code, 2);
  assert.match(r.stderr, /ConfigError: command line: lr: expected a number/);
  assert.match(r.stderr, /\n\s+at /);
});

Deno.test("deno task generate refuses bad seeds and reads --flag -1 as a negative number", async () => {
  const cases: [string[], RegExp][] = [
    [["--seed", "-1"], /--seed must be an integer in \[0, 9007199254740991\], got "-1"/],
    [["--seed", "1.5"], /--seed must be an integer in \[0, 9007199254740991\], got "1\.5"/],
    [["--seed", "1e20"], /--seed must be an integer in \[0, 9007199254740991\], got "1e20"/],
    [["--temperature", "-1"], /--temperature must be a number in \[0, 1000000\], got "-1"/],
    [["--top-k", "2.5"], /--top-k must be an integer/],
    [["--max-new-tokens", "abc"], /--max-new-tokens must be an integer/],
    [["--bogus"], /error: unknown option --bogus; --help lists them/],
  ];
  for (const [flags, want] of cases) {
    const r = await run(GENERATE_SCRIPT, ["--checkpoint", `${dir}/nothing`, ...flags]);
    assert.equal(r.code, 2, `${flags.join(" ")}: ${r.stderr}`);
    const line = r.stderr.trim();
    assert.ok(!line.includes("\n") && line.startsWith("error: "), `${flags}: ${r.stderr}`);
    assert.match(line, want);
  }
});

Deno.test("joinNegativeValues() joins a negative number to its flag and leaves the rest", () => {
  assert.deepEqual(
    joinNegativeValues(["--seed", "-1", "--temperature", "-.5", "--no-stop", "--x", "-inf"]),
    ["--seed=-1", "--temperature=-.5", "--no-stop", "--x=-inf"],
  );
  assert.deepEqual(joinNegativeValues(["--a=-1", "--b", "--c"]), ["--a=-1", "--b", "--c"]);
});
