/**
 * Weighted blends of several datasets, with Megatron-LM's semantics, and the one place
 * that turns the data keys of a run (`--data-path`, `--train-data-path`, ...) into train,
 * valid and test samples.
 *
 * defines: DataBlend, parseDataBlend, buildBlendingIndices, BlendedDataset, DataSpec,
 *          OpenedData, openDatasets
 *
 * A blend reads sample i from dataset `datasetIndex[i]`, that dataset's
 * `datasetSampleIndex[i]`-th sample in its own (shuffled) order. The indices are built
 * greedily: each next sample goes to the dataset furthest behind its share. After any prefix
 * of n samples no dataset is a whole sample ahead of `weight × n` (it is taken only while
 * behind), two datasets are within half a sample, and with more the one furthest behind
 * lags by little over one (at most 1.15 samples over 1200 random blends of 3 to 16 datasets,
 * bench/RESULTS.md; tests/blended_dataset_test.ts holds it under 1.25). Megatron builds them
 * the same way (it measures "behind" at n = max(i, 1) where we use i + 1, the count
 * after the sample is placed). Each dataset is sized `ceil(weight × N × 1.005)` samples for
 * a blend of N, Megatron's margin, so no dataset wraps within the blend.
 *
 * With one dataset there is no blend: the run reads that dataset as before.
 *
 * @module
 */

import { createHash } from "node:crypto";
import { DenotronError, fmtValue } from "../errors.ts";
import { buildGptDatasets, GptDataset, type SampleDataset } from "./gpt_dataset.ts";
import { IndexedDataset } from "./indexed_dataset.ts";

/** Datasets and their weights, as a `--data-path` list gives them. */
export interface DataBlend {
  /** Indexed dataset prefixes. */
  prefixes: string[];
  /** Weights normalised to sum 1; null: proportional to each dataset's tokens. */
  weights: number[] | null;
}

const NUMBER = /^[+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/;

/**
 * Reads Megatron's data-path list: one prefix, weight-prefix pairs, or several prefixes
 * (weighted by their sizes).
 *
 * @param words the list ("0.3", "a", "0.7", "b")
 * @param flag the option, for messages
 * @returns the prefixes and normalised weights
 * @throws {DenotronError} naming the flag and the word that does not fit
 * @example
 * ```ts
 * import { parseDataBlend } from "./blended_dataset.ts";
 * parseDataBlend(["3", "a", "1", "b"], "--data-path"); // {prefixes: [a, b], weights: [0.75, 0.25]}
 * ```
 */
export function parseDataBlend(words: readonly string[], flag: string): DataBlend {
  const expected = `expected a prefix, prefixes, or weight prefix pairs like "0.3 a 0.7 b"`;
  if (words.length === 0) throw new DenotronError(`${flag}: ${expected}; got nothing`);
  if (!NUMBER.test(words[0])) {
    const number = words.find((w) => NUMBER.test(w));
    if (number !== undefined) {
      throw new DenotronError(
        `${flag}: ${expected}; got the weight ${fmtValue(number)} after a prefix`,
      );
    }
    return { prefixes: [...words], weights: words.length === 1 ? [1] : null };
  }
  if (words.length % 2 !== 0) {
    throw new DenotronError(`${flag}: ${expected}; the weight ${words.at(-1)} has no prefix`);
  }
  const prefixes: string[] = [];
  const raw: number[] = [];
  for (let i = 0; i < words.length; i += 2) {
    const w = Number(words[i]);
    if (!NUMBER.test(words[i]) || !Number.isFinite(w)) {
      throw new DenotronError(`${flag}: ${expected}; ${fmtValue(words[i])} is not a weight`);
    }
    if (NUMBER.test(words[i + 1])) {
      throw new DenotronError(`${flag}: ${expected}; the weight ${words[i]} has no prefix`);
    }
    raw.push(w);
    prefixes.push(words[i + 1]);
  }
  const total = raw.reduce((a, b) => a + b, 0);
  if (!(total > 0)) throw new DenotronError(`${flag}: the weights sum to 0`);
  return { prefixes, weights: raw.map((w) => w / total) };
}

/**
 * The blend's two indices: which dataset each sample comes from, and which of that
 * dataset's samples it is (the greedy rule of the module notes).
 *
 * @param weights shares summing to 1
 * @param size samples in the blend
 * @returns `datasetIndex[i]` and `datasetSampleIndex[i]` for i in [0, size)
 * @example
 * ```ts
 * import { buildBlendingIndices } from "./blended_dataset.ts";
 * buildBlendingIndices([0.5, 0.5], 4).datasetIndex; // [0, 1, 0, 1]
 * ```
 */
export function buildBlendingIndices(
  weights: readonly number[],
  size: number,
): { datasetIndex: Uint16Array; datasetSampleIndex: Int32Array } {
  if (weights.length === 0 || weights.length > 65535) {
    throw new DenotronError(`a blend needs 1 to 65535 datasets, got ${weights.length}`);
  }
  const datasetIndex = new Uint16Array(size);
  const datasetSampleIndex = new Int32Array(size);
  const counts = new Float64Array(weights.length);
  for (let i = 0; i < size; i++) {
    let best = 0;
    let bestBehind = -Infinity;
    for (let d = 0; d < weights.length; d++) {
      const behind = weights[d] * (i + 1) - counts[d];
      if (behind > bestBehind) (bestBehind = behind, best = d);
    }
    datasetIndex[i] = best;
    datasetSampleIndex[i] = counts[best]++;
  }
  return { datasetIndex, datasetSampleIndex };
}

/** Options for {@link BlendedDataset}. */
export interface BlendOptions {
  /** Name for messages. @default "blend" */
  name?: string;
  /** A directory to keep the indices in and read them back from. @default none */
  cacheDir?: string | null;
  /** Each dataset's name in the cache description (its prefix). @default its index */
  labels?: readonly string[];
}

const MAGIC = "DNBLEND1";

/** Several datasets read in one order, each near its weight at every prefix of the run. */
export class BlendedDataset implements SampleDataset {
  /** Name for messages. */
  readonly name: string;
  /** Tokens per sample input (T). */
  readonly seqLength: number;
  /** Samples in the blend. */
  readonly length: number;
  /** The blend is read in its own order: the identity (each dataset is shuffled). */
  readonly shuffleIndex: Int32Array;
  /** The datasets blended. */
  readonly datasets: readonly SampleDataset[];
  /** Their shares, summing to 1. */
  readonly weights: readonly number[];
  /** Which dataset sample i reads. */
  readonly datasetIndex: Uint16Array;
  /** Which of that dataset's samples (in its reading order). */
  readonly datasetSampleIndex: Int32Array;
  /** Samples taken from each dataset over the whole blend. */
  readonly counts: readonly number[];
  /** The cache file read or written, if any; `fromCache` says which. */
  readonly cacheFile: string | null = null;
  /** Whether the indices were read from the cache. */
  readonly fromCache: boolean = false;

  /**
   * Blends datasets by weight.
   *
   * @param datasets the parts, all of one sequence length
   * @param weights their shares (normalised here)
   * @param size samples in the blend
   * @param options name and cache directory
   */
  constructor(
    datasets: readonly SampleDataset[],
    weights: readonly number[],
    size: number,
    options: BlendOptions = {},
  ) {
    this.name = options.name ?? "blend";
    if (datasets.length === 0 || datasets.length !== weights.length) {
      throw new DenotronError(
        `${this.name}: ${datasets.length} datasets for ${weights.length} weights`,
      );
    }
    const total = weights.reduce((a, b) => a + b, 0);
    if (weights.some((w) => !(w >= 0) || !Number.isFinite(w)) || !(total > 0)) {
      throw new DenotronError(`${this.name}: bad weights ${fmtValue(weights)}`);
    }
    if (!Number.isInteger(size) || size < 1) {
      throw new DenotronError(`${this.name}: bad size ${size}`);
    }
    const T = datasets[0].seqLength;
    const other = datasets.find((d) => d.seqLength !== T);
    if (other) {
      throw new DenotronError(
        `${this.name}: ${other.name} has seqLength ${other.seqLength}, the others ${T}`,
      );
    }
    this.seqLength = T;
    this.length = size;
    this.datasets = datasets;
    this.weights = weights.map((w) => w / total);
    this.shuffleIndex = Int32Array.from({ length: size }, (_, i) => i);
    const cacheDir = options.cacheDir ?? null;
    let indices: ReturnType<typeof buildBlendingIndices> | null = null;
    if (cacheDir !== null) {
      const labels = options.labels ?? datasets.map((_, d) => String(d));
      const description = JSON.stringify({
        name: this.name,
        size,
        weights: this.weights,
        datasets: datasets.map((d, k) => ({ label: labels[k], samples: d.length })),
      });
      const key = createHash("sha256").update(description).digest("hex").slice(0, 16);
      this.cacheFile = `${cacheDir}/blend-${this.name}-${key}.bin`;
      indices = readCache(this.cacheFile, size, datasets.length);
      this.fromCache = indices !== null;
      if (!indices) {
        indices = buildBlendingIndices(this.weights, size);
        writeCache(this.cacheFile, indices, datasets.length, description);
      }
    }
    indices ??= buildBlendingIndices(this.weights, size);
    this.datasetIndex = indices.datasetIndex;
    this.datasetSampleIndex = indices.datasetSampleIndex;
    const counts = new Array<number>(datasets.length).fill(0);
    for (const d of this.datasetIndex) counts[d]++;
    this.counts = counts;
  }

  /**
   * Sample `i` of the blend.
   *
   * @param i in [0, length)
   * @param out where to write (T + 1 values)
   * @returns `out`
   */
  sample(i: number, out: Int32Array = new Int32Array(this.seqLength + 1)): Int32Array {
    if (!Number.isInteger(i) || i < 0 || i >= this.length) {
      throw new RangeError(`${this.name}: sample ${i} is outside [0, ${this.length})`);
    }
    const ds = this.datasets[this.datasetIndex[i]];
    const k = this.datasetSampleIndex[i] % ds.length;
    return ds.sample(ds.shuffleIndex[k], out);
  }
}

/**
 * The cache file: "DNBLEND1", u32 size, u32 datasets, the dataset index (u16, padded to 4
 * bytes), the sample index (i32), then the SHA-256 of everything before it. A file that
 * does not check out is ignored (and rewritten).
 */
function readCache(
  path: string,
  size: number,
  count: number,
): ReturnType<typeof buildBlendingIndices> | null {
  let bytes: Uint8Array;
  try {
    bytes = Deno.readFileSync(path);
  } catch {
    return null;
  }
  const indexBytes = 2 * size + ((2 * size) % 4);
  const body = 16 + indexBytes + 4 * size;
  if (bytes.length !== body + 32) return null;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const magic = new TextDecoder().decode(bytes.subarray(0, 8));
  if (magic !== MAGIC || view.getUint32(8, true) !== size || view.getUint32(12, true) !== count) {
    return null;
  }
  const sum = createHash("sha256").update(bytes.subarray(0, body)).digest();
  if (!sum.equals(bytes.subarray(body))) return null;
  const copy = bytes.slice(16, body);
  const datasetIndex = new Uint16Array(copy.buffer, 0, size);
  const datasetSampleIndex = new Int32Array(copy.buffer, indexBytes, size);
  if (datasetIndex.some((d) => d >= count)) return null;
  return { datasetIndex, datasetSampleIndex };
}

function writeCache(
  path: string,
  indices: ReturnType<typeof buildBlendingIndices>,
  count: number,
  description: string,
): void {
  const size = indices.datasetIndex.length;
  const indexBytes = 2 * size + ((2 * size) % 4);
  const body = 16 + indexBytes + 4 * size;
  const bytes = new Uint8Array(body + 32);
  bytes.set(new TextEncoder().encode(MAGIC));
  const view = new DataView(bytes.buffer);
  view.setUint32(8, size, true);
  view.setUint32(12, count, true);
  bytes.set(new Uint8Array(indices.datasetIndex.buffer, 0, 2 * size), 16);
  bytes.set(new Uint8Array(indices.datasetSampleIndex.buffer, 0, 4 * size), 16 + indexBytes);
  bytes.set(createHash("sha256").update(bytes.subarray(0, body)).digest(), body);
  try {
    Deno.mkdirSync(path.slice(0, path.lastIndexOf("/")), { recursive: true });
    // Ranks may build the same blend at once: each writes its own file, then renames.
    const tmp = `${path}.tmp-${Deno.pid}`;
    Deno.writeFileSync(tmp, bytes);
    Deno.renameSync(tmp, path);
    Deno.writeTextFileSync(path.replace(/\.bin$/, ".json"), description + "\n");
  } catch (e) {
    throw new DenotronError(
      `data cache ${path}: cannot write (${e instanceof Error ? e.message : e}); ` +
        "set --data-cache-path to a writable directory",
    );
  }
}

/** The data keys of a run (lib/train/config_keys.ts, section data), and what to build. */
export interface DataSpec {
  /** One prefix or a blend, cut by `split`. */
  dataPath?: readonly string[] | null;
  /** Training data, used whole (instead of dataPath). */
  trainDataPath?: readonly string[] | null;
  /** Validation data, used whole. */
  validDataPath?: readonly string[] | null;
  /** Test data, used whole. */
  testDataPath?: readonly string[] | null;
  /** Train / valid / test weights for dataPath. @default "969,30,1" */
  split?: string;
  /** Tokens per sample input (T). */
  seqLength: number;
  /** Shuffle seed. @default 1234 */
  seed?: number;
  /** Samples wanted per split; undefined: one epoch (of the smallest share, in a blend). */
  numSamples?: [number?, number?, number?];
  /** The model's vocabulary, checked in every sample. @default unchecked */
  vocabSize?: number;
  /** Where blend indices are cached. @default none */
  cacheDir?: string | null;
}

/** The samples of a run, and the open files behind them (dispose when done). */
export interface OpenedData extends Disposable {
  /** Training samples (undefined when the split leaves none). */
  train?: SampleDataset;
  /** Validation samples. */
  valid?: SampleDataset;
  /** Test samples. */
  test?: SampleDataset;
  /** The files read. */
  readonly files: readonly IndexedDataset[];
  /** One line per split read: its datasets, their shares and sample counts. */
  readonly summary: readonly string[];
}

const SPLITS = ["train", "valid", "test"] as const;
/** Megatron's over-sampling of each blended dataset, so that none wraps within the blend. */
const BLEND_MARGIN = 1.005;

/**
 * Opens the datasets a run names and builds its train, valid and test samples: one
 * prefix read as before, a `dataPath` blend cut by `split` (each dataset split, then each
 * split blended), or separate train / valid / test paths used whole.
 *
 * @param spec the data keys and sizes
 * @returns the samples and the open files
 * @throws {DenotronError} naming the flag, prefix or split that does not fit
 */
export async function openDatasets(spec: DataSpec): Promise<OpenedData> {
  const perSplit = [spec.trainDataPath, spec.validDataPath, spec.testDataPath];
  const separate = perSplit.some((p) => p !== null && p !== undefined);
  if (separate && spec.dataPath) {
    throw new DenotronError(
      "--data-path and --train-data-path/--valid-data-path/--test-data-path are exclusive: " +
        "give one blend to split, or each split its own",
    );
  }
  if (!separate && !spec.dataPath) {
    throw new DenotronError("no data: give --data-path, or --train-data-path");
  }
  const files: IndexedDataset[] = [];
  const open = new Map<string, IndexedDataset>();
  const opened: OpenedData = {
    files,
    summary: [],
    [Symbol.dispose]() {
      for (const f of files) f.close();
    },
  };
  try {
    const openPrefix = async (prefix: string) => {
      let ds = open.get(prefix);
      if (!ds) {
        ds = await IndexedDataset.open(prefix);
        open.set(prefix, ds);
        files.push(ds);
      }
      return ds;
    };
    const summary: string[] = [];
    // Each job is one blend read for some splits: dataPath for all three (each dataset cut
    // by the split), or one per-split path used whole.
    const jobs = separate
      ? perSplit.flatMap((
        words,
        k,
      ) => (words ? [{ words, flag: `--${SPLITS[k]}-data-path`, ks: [k] }] : []))
      : [{ words: spec.dataPath!, flag: "--data-path", ks: [0, 1, 2] }];
    for (const { words, flag, ks } of jobs) {
      const blend = parseDataBlend(words, flag);
      const data: IndexedDataset[] = [];
      for (const p of blend.prefixes) data.push(await openPrefix(p));
      const weights = blend.weights ?? tokenShares(data);
      const single = data.length === 1;
      const sizeOf = (k: number, i: number) => {
        const wanted = spec.numSamples?.[k];
        return wanted === undefined || single
          ? wanted
          : Math.ceil(weights[i] * wanted * BLEND_MARGIN);
      };
      // parts[i][k]: dataset i's samples for split k
      const parts = data.map((d, i) => {
        if (!separate) {
          const numSamples = SPLITS.map((_, k) => sizeOf(k, i)) as [number?, number?, number?];
          const { train, valid, test } = buildGptDatasets(d, {
            split: spec.split ?? "969,30,1",
            seqLength: spec.seqLength,
            seed: spec.seed,
            numSamples,
            vocabSize: spec.vocabSize,
          });
          return [train, valid, test];
        }
        const k = ks[0];
        const all = Int32Array.from({ length: d.sequenceCount }, (_, j) => j);
        const out: (SampleDataset | undefined)[] = [undefined, undefined, undefined];
        out[k] = new GptDataset(d, all, {
          seqLength: spec.seqLength,
          seed: spec.seed,
          numSamples: sizeOf(k, i),
          name: SPLITS[k],
          vocabSize: spec.vocabSize,
        });
        return out;
      });
      for (const k of ks) {
        const name = SPLITS[k];
        const mine = parts.map((p) => p[k]);
        const present = mine.filter((p) => p !== undefined).length;
        if (present === 0) continue;
        if (present < mine.length) {
          const i = mine.findIndex((p) => p === undefined);
          throw new DenotronError(
            `${flag}: split "${spec.split}" leaves ${blend.prefixes[i]} no ${name} ` +
              "documents while the other datasets have some; change --split or the blend",
          );
        }
        const ready = mine as SampleDataset[];
        if (single) {
          opened[name] = ready[0];
          summary.push(`${name}: ${blend.prefixes[0]}, ${ready[0].length} samples`);
          continue;
        }
        const size = spec.numSamples?.[k] ??
          Math.max(1, Math.floor(Math.min(...ready.map((p, i) => p.length / weights[i]))));
        const blended = new BlendedDataset(ready, weights, size, {
          name,
          cacheDir: spec.cacheDir,
          labels: blend.prefixes,
        });
        opened[name] = blended;
        const shares = blend.prefixes.map((p, i) =>
          `${(100 * blended.weights[i]).toFixed(1)}% ${p} (${blended.counts[i]})`
        );
        summary.push(
          `${name}: blend of ${ready.length}, ${size} samples${
            blended.fromCache ? " (indices from the cache)" : ""
          }: ${shares.join(", ")}`,
        );
      }
    }
    (opened.summary as string[]).push(...summary);
    return opened;
  } catch (e) {
    opened[Symbol.dispose]();
    throw e;
  }
}

/** Weights proportional to each dataset's tokens (a blend given as prefixes alone). */
function tokenShares(data: readonly IndexedDataset[]): number[] {
  const tokens = data.map((d) => d.sequenceLengths.reduce((a, b) => a + b, 0));
  const total = tokens.reduce((a, b) => a + b, 0);
  return tokens.map((t) => t / Math.max(total, 1));
}
