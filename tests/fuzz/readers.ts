/**
 * The table of fuzzed readers (see reader.ts for what a reader is).
 *
 * defines: READERS, SELF_TEST_READERS, readerNamed
 *
 * @module
 */

import type { FileSet } from "./files.ts";
import type { Reader } from "./reader.ts";
import { cli, yaml } from "./readers_config.ts";
import { hfTokenizer, indexed, safetensors, tokenizer, wordpiece } from "./readers_data.ts";
import { checkpoint, hf, hfBert, hfLlama, resume } from "./readers_models.ts";
import type { Rng } from "./rng.ts";

/** Every reader, in table order. */
export const READERS: readonly Reader[] = [
  indexed,
  safetensors,
  checkpoint,
  resume,
  hf,
  hfLlama,
  hfBert,
  tokenizer,
  hfTokenizer,
  wordpiece,
  yaml,
  cli,
];

function spin(): never {
  for (;;) { /* until killed */ }
}

/**
 * Readers that misbehave on purpose, for the runner's own test: input 1 of
 * "selftest-crash" aborts its process (SIGABRT), input 2 of "selftest-hang" spins
 * forever; every other input is accepted.
 */
export const SELF_TEST_READERS: readonly Reader[] = (["crash", "hang"] as const).map((kind) => ({
  name: `selftest-${kind}`,
  about: `a reader that ${kind}es on purpose`,
  seeds: () => Promise.resolve([]),
  input: (_rng: Rng, _seeds: FileSet[], root: string) => {
    const i = Number(root.match(/in(\d+)$/)?.[1]);
    return Promise.resolve({
      what: `input ${i}`,
      mustName: [[root]],
      run() {
        // abort() in native code ends a process with SIGABRT; wait here until it lands
        if (kind === "crash" && i === 1) (Deno.kill(Deno.pid, "SIGABRT"), spin());
        if (kind === "hang" && i === 2) spin();
        return Promise.resolve([]);
      },
    });
  },
}));

/**
 * The reader of a name.
 *
 * @param name a reader's name
 * @returns the reader
 */
export function readerNamed(name: string): Reader {
  const r = [...READERS, ...SELF_TEST_READERS].find((x) => x.name === name);
  if (!r) throw new Error(`unknown reader "${name}": ${READERS.map((x) => x.name).join(", ")}`);
  return r;
}
