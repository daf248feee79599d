/**
 * `deno task preprocess`: text files or JSON lines to a Megatron indexed
 * dataset (`PREFIX.bin` + `PREFIX.idx`).
 *
 * ```
 * deno task preprocess --input a.jsonl --input b.txt --output-prefix data/corpus \
 *   --tokenizer gpt2 --append-eod
 * deno task preprocess --input a.jsonl --output-prefix data/llama \
 *   --tokenizer path/to/tokenizer.json --prepend-bos --append-eod
 * deno task preprocess --input a.jsonl --output-prefix data/bert --split-sentences \
 *   --tokenizer-type BertWordPieceLowerCase --vocab-file vocab.txt
 * ```
 *
 * @module
 */

import { parseFlags } from "../lib/cli_args.ts";
import { preprocess, type PreprocessStats } from "../lib/data/preprocess.ts";
import { loadTokenizer } from "../lib/data/tokenizer.ts";
import { isWordPieceName } from "../lib/data/wordpiece.ts";
import { runMain } from "./cli.ts";

const USAGE = `usage: deno task preprocess --input FILE [--input FILE...] --output-prefix PREFIX
  [--tokenizer gpt2|byte|PATH/tokenizer.json|PATH/vocab.txt] [--json-key text] [--append-eod]
  [--prepend-bos] [--split-sentences] [--vocab-file F --merge-file F]
  [--tokenizer-type BertWordPieceLowerCase|BertWordPieceCase --vocab-file vocab.txt]

  .jsonl/.json inputs hold one JSON object per line (the text under --json-key);
  any other input is one plain-text document. A Hugging Face tokenizer.json (or
  its directory) reads the tokenizer_config.json beside it for bos/eos tokens;
  --append-eod appends its eos, --prepend-bos starts each document with its bos.
  --split-sentences writes each sentence as one sequence of its document (BERT data).
  --tokenizer-type is Megatron's name for --tokenizer.`;

const encoder = new TextEncoder();

function formatBytes(n: number): string {
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) (n /= 1000, i++);
  return `${n.toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
}

function progressLine(s: PreprocessStats): string {
  const pct = s.bytesTotal > 0 ? (100 * s.bytesRead / s.bytesTotal).toFixed(1) : "100.0";
  const rate = s.seconds > 0 ? s.bytesRead / s.seconds : 0;
  return `${formatBytes(s.bytesRead)} / ${formatBytes(s.bytesTotal)} (${pct}%)  ` +
    `${formatBytes(rate)}/s  ${s.documents} docs  ${s.tokens} tokens`;
}

async function main(args: string[]): Promise<number> {
  const { values } = parseFlags({
    args,
    options: {
      input: { type: "string", multiple: true },
      "output-prefix": { type: "string" },
      tokenizer: { type: "string", default: "gpt2" },
      "tokenizer-type": { type: "string" },
      "split-sentences": { type: "boolean", default: false },
      "json-key": { type: "string", default: "text" },
      "append-eod": { type: "boolean", default: false },
      "prepend-bos": { type: "boolean", default: false },
      "vocab-file": { type: "string" },
      "merge-file": { type: "string" },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const inputs = values.input ?? [];
  const outputPrefix = values["output-prefix"];
  if (inputs.length === 0 || outputPrefix === undefined) {
    console.error(`preprocess: --input and --output-prefix are required\n${USAGE}`);
    return 2;
  }
  const vocab = values["vocab-file"];
  const merges = values["merge-file"];
  const name = values["tokenizer-type"] ?? values.tokenizer!;
  if (!isWordPieceName(name) && (vocab === undefined) !== (merges === undefined)) {
    console.error("preprocess: give both --vocab-file and --merge-file, or neither");
    return 2;
  }
  const tokenizer = await loadTokenizer(name, vocab !== undefined ? { vocab, merges } : undefined);
  const tty = Deno.stderr.isTerminal();
  let lastLine = 0;
  const stats = await preprocess({
    inputs,
    outputPrefix,
    tokenizer,
    jsonKey: values["json-key"],
    appendEod: values["append-eod"],
    prependBos: values["prepend-bos"],
    splitSentences: values["split-sentences"],
    onProgress: (s) => {
      // On a terminal, redraw one line; in a log, a line every 10 s is enough.
      if (tty) Deno.stderr.writeSync(encoder.encode(`\r\x1b[2Kpreprocess: ${progressLine(s)}`));
      else if (s.seconds - lastLine >= 10) {
        lastLine = s.seconds;
        console.error(`preprocess: ${progressLine(s)}`);
      }
    },
  });
  if (tty) Deno.stderr.writeSync(encoder.encode("\r\x1b[2K"));
  console.error(
    `preprocess: wrote ${outputPrefix}.bin/.idx: ${progressLine(stats)} in ` +
      `${stats.seconds.toFixed(1)} s (tokenizer ${tokenizer.name})`,
  );
  return 0;
}

if (import.meta.main) await runMain(() => main(Deno.args));
