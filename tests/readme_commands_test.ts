/**
 * Every command the README shows runs as written, so none can rot: each `./denotron ...`
 * (and `bash ...`) in README.md is either run here, in a scratch directory standing for
 * the repository root, with its placeholder paths made real and flags that make it tiny
 * appended, or listed in SKIPPED with the reason it is not run. A command added to the
 * README that is neither fails this test.
 */
import assert from "assert";
import { device } from "../lib/device.ts";
import { IndexedDatasetWriter } from "../lib/data/indexed_dataset.ts";
import { ByteTokenizer } from "../lib/data/tokenizer.ts";
import { GPT } from "../lib/nn/gpt.ts";
import { saveHf } from "../lib/io/hf.ts";

const ROOT = decodeURIComponent(new URL("../", import.meta.url).pathname).replace(/\/$/, "");
const README = await Deno.readTextFile(`${ROOT}/README.md`);
const TASKS: Record<string, string> = JSON.parse(
  await Deno.readTextFile(`${ROOT}/deno.json`),
).tasks;

/** Commands shown but not run, and why. */
const SKIPPED: Record<string, string> = {
  "./denotron": "the launcher named in prose, not a command line",
  "./denotron run plan": "the planner named in prose; the README's plan command line is run",
  "./denotron test": "this suite is what it runs",
  "./denotron run check": "the first step of ./denotron test",
  "./denotron run notebooks": "run by ./denotron test after deno task test",
  "./denotron run TASK": "stands for any task",
  "./denotron deno jupyter --install": "installs a kernel into the user's Jupyter; checked below",
  "./denotron run serve --checkpoint runs/sotu":
    "a server runs until stopped; tests/serve_test.ts starts it on a checkpoint, asks and stops it",
  "./denotron run build": "rebuilding build/ under the other tests would pull it from under them",
  "bash bench/gpu_check.sh": "needs a GPU; its syntax is checked below",
};

/** The flags that make each tool's run tiny, appended after the README's own. */
const TRAIN_TINY = [
  "--train-iters",
  "2",
  "--eval-interval",
  "2",
  "--eval-iters",
  "1",
  "--log-interval",
  "1",
  "--save-interval",
  "2",
  "--lr-warmup-iters",
  "1",
];
const TINY: Record<string, string[]> = {
  train: TRAIN_TINY,
  launch: TRAIN_TINY,
  generate: ["--max-new-tokens", "4"],
  bench: ["--steps", "1", "--batch", "1", "--seq", "16"],
  finetune: [
    ...TRAIN_TINY,
    "--micro-batch-size",
    "2",
    "--rouge-limit",
    "2",
    "--max-new-tokens",
    "4",
  ],
};

/** Every command line the README shows: code spans and shell blocks. */
function readmeCommands(): string[] {
  const found = new Set<string>();
  for (const m of README.matchAll(/`((?:\.\/denotron|bash) [^`]*|\.\/denotron)`/g)) {
    found.add(m[1].trim());
  }
  for (const block of README.matchAll(/```sh\n([^`]*)```/g)) {
    for (const line of block[1].split("\n")) {
      if (/^(\.\/denotron|bash)\b/.test(line.trim())) found.add(line.trim());
    }
  }
  return [...found];
}

/** Words of a command line, double quotes grouping. */
function words(line: string): string[] {
  return [...line.matchAll(/"([^"]*)"|(\S+)/g)].map((m) => m[1] ?? m[2]);
}

/** The deno arguments a task stands for: `deno run -A tools/x.ts` with the path made absolute. */
function taskArgs(task: string): string[] {
  const body = TASKS[task];
  assert.ok(body, `deno.json has no task ${task}`);
  const w = words(body);
  assert.equal(w[0], "deno", `task ${task} is not a deno command: ${body}`);
  return w.slice(1).map((a) => /\.ts$/.test(a) ? `${ROOT}/${a}` : a);
}

const scratch = await Deno.makeTempDir({ prefix: "denotron-readme-" });
const tokenizer = new ByteTokenizer();

/** The README's placeholders, made real in the scratch root. */
async function placeholders(): Promise<void> {
  await Deno.mkdir(`${scratch}/data`, { recursive: true });
  const texts = [
    "Fellow citizens, the union is strong and the revenue is sound.",
    "Our relations with foreign nations continue to be peaceful.",
  ];
  await Deno.writeTextFile(
    `${scratch}/a.jsonl`,
    Array.from({ length: 40 }, (_, i) => JSON.stringify({ text: texts[i % 2].repeat(3) }))
      .join("\n") + "\n",
  );
  await Deno.writeTextFile(`${scratch}/my.yaml`, "lr: 1.0e-3\nseq-length: 64\n");
  await Deno.writeTextFile(
    `${scratch}/chats.jsonl`,
    Array.from({ length: 20 }, (_, i) =>
      JSON.stringify(
        i % 2 ? { prompt: `What is ${i} + 1?`, response: ` ${i + 1}.` } : {
          messages: [
            { role: "user", content: `Say ${i}.` },
            { role: "assistant", content: `${i}` },
          ],
        },
      )).join("\n") + "\n",
  );
  await Deno.writeTextFile(`${scratch}/notes.txt`, texts.join("\n").repeat(4) + "\n");
  for (const [name, text] of [["a", "abcdefghij"], ["b", "0123456789"]]) {
    const w = await IndexedDatasetWriter.create(`${scratch}/data/${name}`, {
      vocabSize: tokenizer.vocabSize,
    });
    for (let d = 0; d < 200; d++) {
      await w.addDocument(tokenizer.encode(text.repeat(10)), tokenizer.eotId);
    }
    await w.finalize();
  }
  // A GPT-2-shaped Hugging Face directory with GPT-2's vocabulary, tiny otherwise.
  using model = new GPT(
    { vocabSize: 50257, blockSize: 64, nLayer: 1, nHead: 2, nEmbd: 16 },
    { seed: 3 },
  );
  await saveHf(model, `${scratch}/path/to/gpt2`);
}

/** The deno (or bash) command a README line stands for, tiny, run from the scratch root. */
function commandFor(line: string): { cmd: string; args: string[] } {
  const w = words(line);
  if (w[0] === "bash") return { cmd: "bash", args: w.slice(1) };
  const [, sub, ...rest] = w;
  if (sub === "doctor") return { cmd: `${ROOT}/denotron`, args: ["doctor"] };
  if (sub === "deno") return { cmd: Deno.execPath(), args: rest };
  const task = sub === "train" ? "train" : rest.shift()!;
  assert.ok(sub === "train" || sub === "run", line);
  const script = taskArgs(task);
  // The launcher's script is given relative to the repository root.
  const args = rest.map((a) => /^tools\/.*\.ts$/.test(a) ? `${ROOT}/${a}` : a);
  if (args.includes("--help")) return { cmd: Deno.execPath(), args: [...script, ...args] };
  const tiny = [...(TINY[task] ?? [])];
  // A resumed run goes one step further than the run it resumes.
  if (args.includes("--load") && tiny.length) tiny[1] = "3";
  return {
    cmd: Deno.execPath(),
    args: [
      ...script.slice(0, 1),
      "--config",
      `${ROOT}/deno.json`,
      ...script.slice(1),
      ...args,
      ...tiny,
    ],
  };
}

/** The order they run in: what makes data and checkpoints first, then the README's order. */
function rank(line: string): number {
  if (line.includes("run preprocess")) return 0;
  if (line === "./denotron train") return 1;
  if (line.includes("--load runs/sotu")) return 2;
  // reads the checkpoint the default run left, before later runs save over it
  if (line.includes("run evaluate")) return 2;
  // the bases the summarisation and spam fine-tunes start from
  if (line.includes("--save runs/sotu-256") || line.includes("--save runs/bert-tiny")) return 2;
  return 3;
}

Deno.test("every README command is run here or skipped with a reason", () => {
  const shown = readmeCommands();
  assert.ok(shown.length > 20, `only ${shown.length} commands found`);
  for (const s of Object.keys(SKIPPED)) assert.ok(shown.includes(s), `${s} is no longer shown`);
});

Deno.test("the README's commands run as written (tiny), from a root with its placeholders", async () => {
  device();
  await placeholders();
  const lines = readmeCommands().filter((l) => !(l in SKIPPED));
  lines.sort((a, b) => rank(a) - rank(b));
  for (const line of lines) {
    const { cmd, args } = commandFor(line);
    const r = await new Deno.Command(cmd, {
      args,
      cwd: scratch,
      env: { NO_COLOR: "1", DENOTRON_NUM_THREADS: "1" },
      stdin: "null",
    }).output();
    const out = new TextDecoder().decode(r.stdout) + new TextDecoder().decode(r.stderr);
    assert.equal(r.code, 0, `${line}\n${out}`);
    assert.ok(!/^error: /m.test(out), `${line}\n${out}`);
    if (/tools\/train\.ts|^\.\/denotron train/.test(line) && !line.includes("--help")) {
      assert.match(out, /done: \d+ iterations/, `${line}\n${out}`);
    }
  }
});

Deno.test("the commands not run: the GPU script parses, and deno jupyter exists", async () => {
  const bash = await new Deno.Command("bash", { args: ["-n", `${ROOT}/bench/gpu_check.sh`] })
    .output();
  assert.equal(bash.code, 0, new TextDecoder().decode(bash.stderr));
  const jupyter = await new Deno.Command(Deno.execPath(), { args: ["jupyter", "--help"] })
    .output();
  assert.equal(jupyter.code, 0);
  assert.match(new TextDecoder().decode(jupyter.stdout), /--install/);
});
