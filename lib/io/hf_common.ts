/**
 * defines: readJson, writeJson, toF32, HfWeights, readHfWeights, writeHfWeights,
 * HF_MAX_SHARD_BYTES, padRows, loadHfModel — what every Hugging Face importer and exporter here shares: JSON
 * files, the weights of a directory (`model.safetensors`, or the shards that
 * `model.safetensors.index.json` names in its `weight_map`), dtype conversion to f32,
 * shape checks with messages that name the tensor and its file, and sharded writing.
 *
 * No tensors and no models: the per-architecture files (hf_gpt2.ts, hf_llama.ts, hf_bert.ts) map
 * names and shapes; this file only moves checked arrays in and out of files (loadHfModel
 * builds a model through the functions it is given, so it stays below lib/nn).
 *
 * @module
 */
import { basename, join } from "node:path";
import { causeText, DenotronError, fmtShape, fmtValue } from "../errors.ts";
import { removeQuietly, writeAll, writeFileAtomic } from "./atomic.ts";
import { decodeUtf8 } from "./text.ts";
import {
  readSafetensors,
  type TensorEntry,
  tensorEntry,
  typedView,
  writeSafetensors,
} from "./safetensors.ts";
import { modelConfigOf, parameterCount, type TransformerShape } from "../plan/model.ts";

/** transformers' default `max_shard_size` ("5GB"): shards of at most this many bytes. */
export const HF_MAX_SHARD_BYTES = 5e9;

const SINGLE = "model.safetensors";
const INDEX = "model.safetensors.index.json";
/** The shard names transformers writes: model-00001-of-00003.safetensors. */
const SHARD = /^model-\d{5}-of-\d{5}\.safetensors$/;

/**
 * Reads and parses a JSON file.
 *
 * @param path the file
 * @returns the parsed value
 */
export async function readJson(path: string): Promise<unknown> {
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(path);
  } catch (e) {
    throw new DenotronError(`${path}: cannot read (${(e as Error).message})`);
  }
  const text = decodeUtf8(bytes, path, "JSON is UTF-8 text");
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new DenotronError(`${path}: not valid JSON (${causeText(e)})`);
  }
}

/**
 * Writes `value` as indented JSON, atomically.
 *
 * @param path the file
 * @param value a JSON-ready value
 * @returns when the file is in place
 */
export async function writeJson(path: string, value: unknown): Promise<void> {
  const bytes = new TextEncoder().encode(JSON.stringify(value, null, 2) + "\n");
  await writeFileAtomic(path, (f) => writeAll(f, bytes));
}

/** f16 bits → number. */
function halfToFloat(h: number): number {
  const s = h & 0x8000 ? -1 : 1, e = (h >> 10) & 0x1f, m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

/**
 * A tensor's values as f32: F32 as is; F16, BF16 and F64 converted (BF16 and F16
 * exactly, F64 rounded to nearest).
 *
 * @param t the tensor
 * @param name its key, for messages
 * @param where its file, for messages
 * @returns the values, row-major
 * @example
 * ```ts
 * import { toF32 } from "./hf_common.ts";
 * toF32({ dtype: "BF16", shape: [1], data: new Uint8Array([0x80, 0x3f]) }, "w", "f"); // [1]
 * ```
 */
export function toF32(t: TensorEntry, name: string, where: string): Float32Array {
  const v = typedView(t);
  switch (t.dtype) {
    case "F32":
      return v as Float32Array;
    case "F64":
      return Float32Array.from(v as Float64Array);
    case "BF16":
      return new Float32Array(Uint32Array.from(v as Uint16Array, (b) => b << 16).buffer);
    case "F16":
      return Float32Array.from(v as Uint16Array, halfToFloat);
    default:
      throw new DenotronError(
        `${where}: tensor "${name}" has dtype ${t.dtype}; expected F32, F16, BF16 or F64`,
      );
  }
}

/**
 * The tensors of a Hugging Face directory, with the file each came from, and a record of
 * which ones an importer has taken, so that what is left over can be reported.
 */
export class HfWeights {
  /** Tensors by key. */
  readonly tensors: Map<string, TensorEntry>;
  /**
   * The file that names the whole set: `model.safetensors`, or the index of a sharded
   * directory (a missing tensor is missing from it).
   */
  readonly where: string;
  readonly #fileOf: Map<string, string>;
  readonly #taken = new Set<string>();

  /**
   * @param tensors tensors by key
   * @param where the file that names the set
   * @param fileOf the file holding each key @default every key in `where`
   */
  constructor(tensors: Map<string, TensorEntry>, where: string, fileOf?: Map<string, string>) {
    this.tensors = tensors;
    this.where = where;
    this.#fileOf = fileOf ?? new Map();
  }

  /** The file holding `key`. */
  fileOf(key: string): string {
    return this.#fileOf.get(key) ?? this.where;
  }

  /** Whether the set holds `key`. */
  has(key: string): boolean {
    return this.tensors.has(key);
  }

  /**
   * The tensor under `key` as f32, after checking its shape; marks it taken.
   *
   * @param key the tensor's key
   * @param shape the shape it must have
   * @param hint appended to a shape error, e.g. how the format stores the tensor
   * @returns the values, or null when the set has no such tensor
   */
  take(key: string, shape: readonly number[], hint = ""): Float32Array | null {
    const t = this.tensors.get(key);
    if (!t) return null;
    const file = this.fileOf(key);
    if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
      throw new DenotronError(
        `${file}: tensor "${key}" has shape ${fmtShape(t.shape)}, expected ${fmtShape(shape)}` +
          (hint ? ` (${hint})` : ""),
      );
    }
    this.#taken.add(key);
    return toF32(t, key, file);
  }

  /** Marks `key` as read without converting it (a buffer the importer ignores). */
  skip(key: string): void {
    this.#taken.add(key);
  }

  /**
   * Throws a DenotronError listing `keys` as missing from {@linkcode HfWeights.where}.
   *
   * @param keys the keys not found
   * @param hint appended, e.g. the prefixes that were tried
   */
  missing(keys: string[], hint = ""): never {
    throw new DenotronError(
      `${this.where}: missing tensor${keys.length > 1 ? "s" : ""} ${
        keys.slice(0, 12).map((n) => `"${n}"`).join(", ")
      }${keys.length > 12 ? ` and ${keys.length - 12} more` : ""}${hint ? ` ${hint}` : ""}`,
    );
  }

  /**
   * Takes `key`, when the set has it, as a copy of an output layer tied to another
   * tensor: it must equal `tiedValues` element for element.
   *
   * @param key the stored output layer, e.g. "lm_head.weight"
   * @param tiedTo the key of the tensor it is tied to, for messages
   * @param tiedValues that tensor's values
   * @param why appended to the error: what the model does instead
   */
  takeTied(key: string, tiedTo: string, tiedValues: Float32Array, why: string): void {
    const t = this.tensors.get(key);
    if (!t) return;
    const file = this.fileOf(key);
    const w = toF32(t, key, file);
    const same = w.length === tiedValues.length;
    const at = same ? w.findIndex((x, i) => !Object.is(x, tiedValues[i])) : -1;
    if (!same || at >= 0) {
      throw new DenotronError(
        `${file}: tensor "${key}" is not tied to "${tiedTo}" (${
          at >= 0 ? `they differ at element ${at}` : `shape ${fmtShape(t.shape)}`
        }); ${why}`,
      );
    }
    this.#taken.add(key);
  }

  /**
   * Throws a DenotronError when a tensor was neither taken nor skipped.
   *
   * @param what the model the importer expected, e.g. "a GPT-2 of 2 layers"
   */
  expectAllTaken(what: string): void {
    const extra = [...this.tensors.keys()].filter((k) => !this.#taken.has(k));
    if (!extra.length) return;
    const files = [...new Set(extra.map((k) => this.fileOf(k)))];
    throw new DenotronError(
      `${files.join(", ")}: unexpected tensor${extra.length > 1 ? "s" : ""} ${
        extra.slice(0, 8).map((n) => `"${n}"`).join(", ")
      }${extra.length > 8 ? ", ..." : ""} for ${what}`,
    );
  }
}

async function exists(path: string): Promise<boolean> {
  return await Deno.stat(path).then(() => true, () => false);
}

/**
 * Every tensor of `dir`'s weights: `model.safetensors`, or else the shards that
 * `model.safetensors.index.json` maps each tensor to. The index must name plain files of
 * the directory, and each tensor must be in the shard the index names, once.
 *
 * @param dir the directory
 * @returns the tensors and their files
 */
export async function readHfWeights(dir: string): Promise<HfWeights> {
  const single = join(dir, SINGLE), index = join(dir, INDEX);
  if (await exists(single) || !await exists(index)) {
    return new HfWeights((await readSafetensors(single)).tensors, single);
  }
  const raw = await readJson(index) as { weight_map?: unknown } | null;
  const map = raw?.weight_map;
  if (!map || typeof map !== "object" || Array.isArray(map)) {
    throw new DenotronError(`${index}: no "weight_map" object`);
  }
  const listed = new Map<string, string>();
  for (const [key, shard] of Object.entries(map)) {
    if (typeof shard !== "string" || shard === "" || basename(shard) !== shard) {
      throw new DenotronError(
        `${index}: weight_map["${key}"] must be the file name of a shard in the directory, ` +
          `got ${fmtValue(shard)}`,
      );
    }
    listed.set(key, shard);
  }
  const tensors = new Map<string, TensorEntry>();
  const fileOf = new Map<string, string>();
  for (const shard of new Set(listed.values())) {
    const path = join(dir, shard);
    for (const [key, t] of (await readSafetensors(path)).tensors) {
      if (listed.get(key) !== shard) {
        throw new DenotronError(
          `${path}: tensor "${key}" is ${
            listed.has(key) ? `mapped to ${fmtValue(listed.get(key))}` : "not in the weight_map"
          } in ${index}`,
        );
      }
      tensors.set(key, t);
      fileOf.set(key, path);
    }
  }
  for (const [key, shard] of listed) {
    if (!tensors.has(key)) {
      throw new DenotronError(
        `${join(dir, shard)}: has no tensor "${key}", which ${index} maps to it`,
      );
    }
  }
  return new HfWeights(tensors, index, fileOf);
}

/** Options of {@linkcode writeHfWeights}. */
export interface WriteHfWeightsOptions {
  /**
   * Above this many bytes of tensor data the weights go into shards of at most this size
   * (a larger tensor gets a shard of its own) with `model.safetensors.index.json`.
   * @default HF_MAX_SHARD_BYTES (5 GB, as transformers)
   */
  maxShardBytes?: number;
}

/** Options of saveHf: the shard size, and the tokenizer's special ids for `config.json`. */
export interface SaveHfOptions extends WriteHfWeightsOptions {
  /** `bos_token_id` (the tokenizer's beginning-of-text id). @default GPT-2: its end-of-text id; Llama: null */
  bosTokenId?: number | null;
  /** `eos_token_id` (the tokenizer's end-of-text id). @default GPT-2: the last id; Llama: null */
  eosTokenId?: number | null;
}

/**
 * Writes tensors as transformers does: `model.safetensors`, or above maxShardBytes the
 * shards `model-0000K-of-0000N.safetensors` (tensors in the given order, packed greedily)
 * and `model.safetensors.index.json` ({ metadata: { total_size }, weight_map }). Each
 * file is written atomically; the other layout's files from an earlier save are removed,
 * so that a reader never finds stale weights beside new ones.
 *
 * @param dir the directory (must exist)
 * @param tensors tensors by key, in file order
 * @param opts the shard size
 * @returns the files written, relative to `dir`
 */
export async function writeHfWeights(
  dir: string,
  tensors: Map<string, TensorEntry>,
  opts: WriteHfWeightsOptions = {},
): Promise<string[]> {
  const limit = opts.maxShardBytes ?? HF_MAX_SHARD_BYTES;
  if (!(typeof limit === "number" && limit > 0)) {
    throw new DenotronError(`maxShardBytes must be a positive number, got ${limit}`);
  }
  const metadata = { format: "pt" };
  let total = 0;
  for (const t of tensors.values()) total += t.data.length;
  const stale: string[] = [];
  for await (const e of Deno.readDir(dir)) if (SHARD.test(e.name)) stale.push(e.name);
  if (total <= limit) {
    await writeSafetensors(join(dir, SINGLE), { tensors, metadata });
    for (const name of [INDEX, ...stale]) await removeQuietly(join(dir, name));
    return [SINGLE];
  }
  // greedy packing in file order, as transformers' shard splitting does
  const shards: Map<string, TensorEntry>[] = [];
  let size = Infinity;
  for (const [key, t] of tensors) {
    if (size + t.data.length > limit) {
      shards.push(new Map());
      size = 0;
    }
    shards.at(-1)!.set(key, t);
    size += t.data.length;
  }
  const n = String(shards.length).padStart(5, "0");
  const names = shards.map((_, i) => `model-${String(i + 1).padStart(5, "0")}-of-${n}.safetensors`);
  const weightMap: Record<string, string> = {};
  for (const [i, shard] of shards.entries()) {
    await writeSafetensors(join(dir, names[i]), { tensors: shard, metadata });
    for (const key of shard.keys()) weightMap[key] = names[i];
  }
  await writeJson(join(dir, INDEX), { metadata: { total_size: total }, weight_map: weightMap });
  for (const name of [SINGLE, ...stale.filter((s) => !names.includes(s))]) {
    await removeQuietly(join(dir, name));
  }
  return [...names, INDEX];
}

/** One Hugging Face tensor cut from a run of a parameter's rows. */
export interface HfPart {
  /** The tensor's name in the file. */
  key: string;
  /** How many of the parameter's rows it takes, from where the previous part ended. */
  rows: number;
}

/**
 * Writes a model's parameters as Hugging Face tensors (F32), each parameter cut along its
 * rows into the parts `partsOf` names (a fused qkv into query, key and value; an empty
 * list leaves a parameter out, a padded vocabulary's extra rows are rows no part takes),
 * and the config beside them; each file atomically.
 *
 * @param params the model's parameters by our name (`model.namedParameters()`)
 * @param dir the directory (created if needed)
 * @param partsOf the parts of each parameter
 * @param config what config.json holds
 * @param opts the shard size (see {@linkcode writeHfWeights})
 * @returns when every file is in place
 */
export async function writeHfParts(
  params: Iterable<[string, { shape: readonly number[]; toArray(): Float32Array | Int32Array }]>,
  dir: string,
  partsOf: (name: string) => HfPart[],
  config: unknown,
  opts: WriteHfWeightsOptions = {},
): Promise<void> {
  await Deno.mkdir(dir, { recursive: true });
  const tensors = new Map<string, TensorEntry>();
  for (const [ours, param] of params) {
    const data = param.toArray() as Float32Array;
    const cols = param.shape.slice(1), width = cols.reduce((a, b) => a * b, 1);
    let row = 0;
    for (const { key, rows } of partsOf(ours)) {
      const part = data.subarray(row * width, (row + rows) * width);
      tensors.set(key, tensorEntry("F32", [rows, ...cols], part));
      row += rows;
    }
  }
  await writeHfWeights(dir, tensors, opts);
  await writeJson(join(dir, "config.json"), config);
}

/** A state dict entry as Module.loadStateDict takes it. */
export type StateEntry = { shape: readonly number[]; data: Float32Array };

/**
 * `rows` rows of `data` (each `data.length / rows` wide) followed by zero rows up to
 * `paddedRows`: a padded vocabulary's table (GPTConfig.vocabMultiple) from the file's.
 *
 * @param data (rows, C) values
 * @param rows rows in `data`
 * @param paddedRows rows wanted
 * @returns (paddedRows, C) values
 */
export function padRows(data: Float32Array, rows: number, paddedRows: number): Float32Array {
  if (paddedRows === rows) return data;
  const out = new Float32Array((data.length / rows) * paddedRows);
  out.set(data);
  return out;
}

/** Parameters a config may describe beyond the values its weights hold (missing tensors). */
const MAX_UNBACKED_PARAMETERS = 2 ** 24;

/** What {@linkcode loadHfModel} needs of a model. */
export interface LoadableModel {
  /** Copies values into the parameters. */
  loadStateDict(state: Record<string, StateEntry>, source: string): void;
  /** Frees the model. */
  dispose(): void;
}

/**
 * The one import path of every architecture: reads `dir/config.json` and the weights,
 * builds a model of the config, fills it, and frees it again if anything fails.
 *
 * @param dir the Hugging Face directory
 * @param arch the architecture's three steps: config.json to our config, a model of that
 *   config, and the directory's tensors mapped onto that model's parameters; and, when
 *   given, the config completed from the tensors the directory holds (withWeights: which
 *   optional heads it has) and the config's parameter count, checked against the weights
 *   before building
 * @returns the filled model
 */
export async function loadHfModel<C, M extends LoadableModel>(
  dir: string,
  arch: {
    config: (raw: unknown, where: string) => C;
    withWeights?: (config: C, weights: HfWeights) => C;
    build: (config: C) => M;
    state: (weights: HfWeights, model: M) => Record<string, StateEntry>;
    parameters?: (config: C) => number;
  },
): Promise<M> {
  const configPath = join(dir, "config.json");
  const parsed = arch.config(await readJson(configPath), configPath);
  const weights = await readHfWeights(dir);
  const config = arch.withWeights ? arch.withWeights(parsed, weights) : parsed;
  // A config.json far larger than its weights is refused before a model of its size is
  // allocated (and initialised) only to find the tensors missing.
  const need = arch.parameters?.(config) ?? 0;
  let held = 0;
  for (const t of weights.tensors.values()) held += t.shape.reduce((a, b) => a * b, 1);
  if (need > held + MAX_UNBACKED_PARAMETERS) {
    throw new DenotronError(
      `${weights.where}: ${configPath} describes a model of ${need} parameters but the ` +
        `weights hold ${held} values; they do not belong together`,
    );
  }
  const model = arch.build(config);
  try {
    model.loadStateDict(arch.state(weights, model), weights.where);
  } catch (e) {
    model.dispose();
    throw e;
  }
  return model;
}

/**
 * The planner's parameter count of a config (`modelConfigOf`): what
 * {@linkcode loadHfModel} checks a directory's weights against. For an encoder it counts
 * the token types, the embeddings' norm, the pooler, the binary head and the masked-LM
 * head when the config has them; a classifier is left out, so the count is a lower bound
 * there.
 *
 * @param c the config
 * @returns the count
 */
export function hfParameterCount(c: TransformerShape): number {
  const count = parameterCount(modelConfigOf(c));
  // the planner's encoder always has the masked-LM head: a BertModel does not
  const encoder = c.attentionMask === "padding";
  const head = encoder && !c.outputTransform ? count.maskedLMTransform + count.maskedLMBias : 0;
  return count.total - head;
}
