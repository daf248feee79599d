/**
 * What every fuzzed reader is: valid inputs built in code (the seeds), how one input is
 * made from a seed by mutation, and what reading it means (the reader called the way the
 * framework calls it, plus what its caller does next with the result). The readers
 * themselves are in readers_data.ts, readers_models.ts and readers_config.ts; the table
 * is readers.ts.
 *
 * defines: PreparedInput, Reader, utf8, mutatedSeed, readTree
 *
 * Seeds are built once per process; input i of a run is `input(new Rng(inputSeed(seed,
 * name, i)), seeds, root)`, so it depends on nothing but the run's seed and i. About
 * one input in fifty is left valid, and must be accepted.
 *
 * @module
 */

import { join } from "node:path";
import { type FileSet, mutateFileSet, writeFileSet } from "./files.ts";
import type { Rng } from "./rng.ts";

/** One input, written and ready to read. */
export interface PreparedInput {
  /** The mutations applied ("" for a valid input). */
  what: string;
  /** Strings a clean error must contain: one of each group. */
  mustName: string[][];
  /** Reads the input; resolves with values the reader let through that its callers misuse. */
  run(): Promise<string[]>;
}

/** A reader under fuzz. */
export interface Reader {
  /** Its name in tables and on the command line. */
  readonly name: string;
  /** What it reads. */
  readonly about: string;
  /** Builds the valid inputs (once per process) under `work`. */
  seeds(work: string): Promise<FileSet[]>;
  /** Writes one input under `root` and says how to read it. */
  input(rng: Rng, seeds: FileSet[], root: string): Promise<PreparedInput>;
}

/** UTF-8 encoder shared by the readers. */
export const utf8: TextEncoder = new TextEncoder();

/** A seed picked and mutated (left valid one time in fifty), written under root. */
export async function mutatedSeed(
  rng: Rng,
  seeds: FileSet[],
  root: string,
  weight?: (name: string) => number,
): Promise<{ what: string; files: FileSet; touched: Set<string> }> {
  const seed = rng.pick(seeds);
  const m = rng.chance(0.02)
    ? { files: seed, what: [], touched: new Set<string>() }
    : mutateFileSet(rng, seed, weight);
  await writeFileSet(root, m.files);
  return { what: m.what.join("; "), files: m.files, touched: m.touched };
}

/** Files under `dir`, by path relative to it. */
export async function readTree(dir: string, prefix = ""): Promise<FileSet> {
  const out: FileSet = new Map();
  for await (const e of Deno.readDir(join(dir, prefix))) {
    const rel = prefix ? `${prefix}/${e.name}` : e.name;
    if (e.isDirectory) { for (const [k, v] of await readTree(dir, rel)) out.set(k, v); }
    else out.set(rel, await Deno.readFile(join(dir, rel)));
  }
  return out;
}
