/**
 * Checkpoints: everything a run needs to continue exactly where it stopped.
 *
 * defines: CHECKPOINT_FORMAT_VERSION, CheckpointState, CheckpointError, HostTensor,
 *          NamedTensors, checkpointName, listCheckpoints, latestCheckpoint, writeCheckpoint,
 *          readCheckpoint, readState, resolveCheckpoint, expectTensors, expectFinite,
 *          sha256File, prepareSaveDirectory
 *
 * The format of a checkpoint on disk, and nothing else: it knows tensors by name, not
 * models or optimizers (lib/train/checkpoint.ts puts a run's state into it, lib/infer
 * reads weights from it). Every tensor is the full tensor of the single-process model,
 * so a checkpoint saved under one parallel layout loads under any other.
 *
 * Layout of a save directory:
 *
 * ```
 * DIR/latest                        "iter_0000100" (written atomically)
 * DIR/iter_0000100/model.safetensors       parameters by name, f32
 * DIR/iter_0000100/optimizer.safetensors   AdamW moments: m.NAME and v.NAME (and the
 *                                          fp32 main parameters main.NAME of a 16-bit model)
 * DIR/iter_0000100/optimizer_shard_RRR_of_DDD.safetensors
 *                                          instead, in checkpoints written before every
 *                                          layout saved full tensors (still read)
 * DIR/iter_0000100/state.json              iteration, optimizer step, RNG,
 *                                          data position, config, format version,
 *                                          the SHA-256 of each tensor file
 * ```
 *
 * A checkpoint directory is written under a temporary name and renamed into
 * place only when complete, and `latest` moves only after that rename: a crash
 * or a failed save leaves the previous checkpoints and pointer as they were (the
 * next save removes what such a crash left behind: `.tmp-iter_*`, `.parts-iter_*`,
 * `latest.tmp-*`). Loading checks every tensor file against its recorded SHA-256, so a
 * damaged file is an error naming it, never silently different weights. Nothing is
 * written from weights or moments that are not finite (a diverged run), so keep-last
 * never replaces a good checkpoint with a NaN one. When `latest` is missing (a crash
 * before the first pointer was written), a save directory resolves to its newest
 * complete `iter_*`, with a note.
 *
 * @module
 */

import { createHash } from "node:crypto";
import { causeText, fmtValue } from "../errors.ts";
import { writeAll, writeFileAtomic } from "./atomic.ts";
import {
  readSafetensors,
  type SafetensorsFile,
  type TensorEntry,
  tensorEntry,
  typedView,
  writeSafetensors,
} from "./safetensors.ts";
import type { GeneratorState } from "../random.ts";

/** Bumped when the layout or the meaning of a field changes. */
export const CHECKPOINT_FORMAT_VERSION = 1;

const MODEL_FILE = "model.safetensors";
const OPTIMIZER_FILE = "optimizer.safetensors";
const STATE_FILE = "state.json";
const LATEST_FILE = "latest";
const NAME_PATTERN = /^iter_(\d{7,})$/;

/** The contents of `state.json`. */
export interface CheckpointState {
  /** {@link CHECKPOINT_FORMAT_VERSION} at the time of writing. */
  formatVersion: number;
  /** Optimizer steps completed; the run continues with this iteration. */
  iteration: number;
  /** AdamW's step count (bias correction). */
  optimizerStepCount: number;
  /** The dropout stream. */
  rng: GeneratorState;
  /** Training samples consumed: the data position. */
  consumedSamples: number;
  /** The run's full configuration. */
  config: unknown;
  /**
   * The model's architecture and shape (lib/nn GPTConfig with every default filled in),
   * so readers rebuild the model without the training config's rules (absent before
   * Llama-family models: GPT-2 then).
   */
  modelConfig?: Record<string, unknown>;
  /** When it was written (ISO 8601). */
  savedAt: string;
  /** The fp16 loss scaler's state (absent for fp32 and bf16 runs). */
  lossScaler?: { scale: number; growthTracker?: number; hysteresisTracker?: number };
  /** Steps skipped because their gradients overflowed (fp16). */
  skippedSteps?: number;
  /** The position of a custom batch source (e.g. a data curriculum), when it has one. */
  dataState?: unknown;
  /**
   * `"sha256:HEX"` of each tensor file by file name, checked on load (absent in
   * checkpoints written before checksums).
   */
  checksums?: Record<string, string>;
}

/** A checkpoint that cannot be saved or loaded; the message names the file or tensor. */
export class CheckpointError extends Error {
  /** "CheckpointError". */
  override name = "CheckpointError";
}

/**
 * The directory name of a checkpoint.
 *
 * @param iteration optimizer steps completed
 * @returns `iter_` and the iteration, zero-padded to 7 digits
 * @example
 * ```ts
 * import { checkpointName } from "./checkpoint.ts";
 * checkpointName(100); // "iter_0000100"
 * ```
 */
export function checkpointName(iteration: number): string {
  return `iter_${String(iteration).padStart(7, "0")}`;
}

/**
 * The complete checkpoints in a save directory, oldest first.
 *
 * @param dir the save directory (missing means none)
 * @returns iteration and path of each
 */
export async function listCheckpoints(dir: string): Promise<{ iteration: number; path: string }[]> {
  const out: { iteration: number; path: string }[] = [];
  try {
    for await (const e of Deno.readDir(dir)) {
      const m = NAME_PATTERN.exec(e.name);
      if (e.isDirectory && m) out.push({ iteration: Number(m[1]), path: `${dir}/${e.name}` });
    }
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return [];
    throw e;
  }
  return out.sort((a, b) => a.iteration - b.iteration);
}

/**
 * The checkpoint that `DIR/latest` points to.
 *
 * @param dir the save directory
 * @returns its path, or null when nothing was saved there yet
 */
export async function latestCheckpoint(dir: string): Promise<string | null> {
  let name: string;
  try {
    name = (await Deno.readTextFile(`${dir}/${LATEST_FILE}`)).trim();
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    throw e;
  }
  if (!NAME_PATTERN.test(name)) {
    throw new CheckpointError(
      `${dir}/${LATEST_FILE}: expected a checkpoint name like "iter_0000100", got ` +
        JSON.stringify(name.slice(0, 40)),
    );
  }
  return `${dir}/${name}`;
}

/** A tensor of the single-process model on the host, under its name there. */
export interface HostTensor {
  /** The full shape. */
  shape: number[];
  /** Row-major fp32 values. */
  data: Float32Array;
}

/** Tensors by name (`h.3.attn.qkv.weight`, or `m.h.3.attn.qkv.weight` for a moment). */
export type NamedTensors = Map<string, HostTensor>;

/** What {@link writeCheckpoint} writes. */
export interface CheckpointContents {
  /** The parameters by name (model.safetensors). */
  weights: NamedTensors;
  /** Moments (m.NAME, v.NAME) and fp32 main weights (main.NAME); absent: weights only. */
  optimizer?: NamedTensors;
  /** The run state; formatVersion, savedAt and checksums are filled in. */
  state: Omit<CheckpointState, "formatVersion" | "savedAt" | "checksums">;
  /** Checkpoints to keep; older ones are removed after a successful save. @default Infinity */
  keepLast?: number;
}

/**
 * Writes a checkpoint as `dir/iter_NNNNNNN` (under a temporary name, renamed into place
 * when complete), points `dir/latest` at it, and removes all but the newest `keepLast`.
 *
 * @param dir the save directory (created if missing)
 * @param c weights, optimizer tensors and run state
 * @returns the checkpoint's path
 * @example
 * ```ts
 * import { readCheckpoint, writeCheckpoint } from "./checkpoint.ts";
 * const dir = await Deno.makeTempDir();
 * const weights = new Map([["w", { shape: [2], data: new Float32Array([1, 2]) }]]);
 * const state = {
 *   iteration: 3, optimizerStepCount: 3, rng: { seed: 1, offset: 0 }, consumedSamples: 12,
 *   config: {},
 * };
 * const path = await writeCheckpoint(dir, { weights, state });
 * (await readCheckpoint(path)).state.iteration; // 3
 * ```
 */
export async function writeCheckpoint(dir: string, c: CheckpointContents): Promise<string> {
  const name = checkpointName(c.state.iteration);
  const final = `${dir}/${name}`;
  // A diverged run saves nothing: the checkpoints already there stay the newest.
  expectFinite(c.weights, `${final}: not written:`);
  if (c.optimizer) expectFinite(c.optimizer, `${final}: not written:`);
  await prepareSaveDirectory(dir);
  await removeStale(dir);
  const tmp = `${dir}/.tmp-${name}-${Deno.pid}-${crypto.randomUUID().slice(0, 8)}`;
  try {
    await Deno.mkdir(tmp);
    const checksums: Record<string, string> = {};
    checksums[MODEL_FILE] = "sha256:" + await writeSafetensors(`${tmp}/${MODEL_FILE}`, {
      tensors: entries(c.weights),
      metadata: { format: "denotron", formatVersion: String(CHECKPOINT_FORMAT_VERSION) },
    });
    if (c.optimizer) {
      checksums[OPTIMIZER_FILE] = "sha256:" + await writeSafetensors(`${tmp}/${OPTIMIZER_FILE}`, {
        tensors: entries(c.optimizer),
        metadata: { stepCount: String(c.state.optimizerStepCount) },
      });
    }
    const state: CheckpointState = {
      formatVersion: CHECKPOINT_FORMAT_VERSION,
      ...c.state,
      savedAt: new Date().toISOString(),
      checksums,
    };
    await writeText(`${tmp}/${STATE_FILE}`, JSON.stringify(state, null, 2) + "\n");
    await replaceDir(tmp, final);
  } catch (e) {
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
    throw e;
  }
  await writeText(`${dir}/${LATEST_FILE}`, name + "\n");
  const keep = c.keepLast ?? Infinity;
  const all = await listCheckpoints(dir);
  for (const old of all.slice(0, Math.max(0, all.length - keep))) {
    if (old.path !== final) await Deno.remove(old.path, { recursive: true });
  }
  return final;
}

/**
 * Creates a save directory if missing; a path that exists as something else is refused.
 *
 * @param dir the save directory
 * @throws CheckpointError naming it
 */
export async function prepareSaveDirectory(dir: string): Promise<void> {
  try {
    await Deno.mkdir(dir, { recursive: true });
  } catch (e) {
    const what = e instanceof Deno.errors.AlreadyExists
      ? "exists and is not a directory"
      : (e as Error).message;
    throw new CheckpointError(`${dir}: ${what}; checkpoints need a save directory (--save)`);
  }
}

/**
 * Removes what a save killed half way left in `dir`: temporary checkpoint directories,
 * staging directories and `latest` temporaries of other processes (one job saves into a
 * directory at a time; this process's own are in use).
 */
async function removeStale(dir: string): Promise<void> {
  const stale = /^(?:\.tmp-iter_\d+-(\d+)-|latest\.tmp-(\d+)-|\.parts-iter_\d+$)/;
  for await (const e of Deno.readDir(dir)) {
    const m = stale.exec(e.name);
    if (!m || Number(m[1] ?? m[2] ?? -1) === Deno.pid) continue;
    await Deno.remove(`${dir}/${e.name}`, { recursive: true }).catch(() => {});
  }
}

/**
 * Checks that every value of every tensor is finite.
 *
 * @param tensors the tensors
 * @param where what the message starts with (a file, or what is refused)
 * @throws CheckpointError naming the first tensor holding a NaN or an infinity, and where
 * @example
 * ```ts
 * import { expectFinite } from "./checkpoint.ts";
 * expectFinite(new Map([["w", { shape: [2], data: new Float32Array([1, 2]) }]]), "x"); // ok
 * ```
 */
export function expectFinite(tensors: NamedTensors, where: string): void {
  for (const [name, t] of tensors) {
    const d = t.data;
    for (let i = 0; i < d.length; i++) {
      // x - x is 0 for finite x and NaN for NaN and ±Infinity
      if (d[i] - d[i] !== 0) {
        throw new CheckpointError(
          `${where} tensor '${name}' holds ${d[i]} at element ${i} of ${d.length} (the run ` +
            `diverged?); non-finite weights are never saved or used`,
        );
      }
    }
  }
}

function entries(tensors: NamedTensors): Map<string, TensorEntry> {
  const out = new Map<string, TensorEntry>();
  for (const [n, t] of tensors) out.set(n, tensorEntry("F32", t.shape, t.data));
  return out;
}

/** A checkpoint as read by {@link readCheckpoint}: every file parsed and checked. */
export interface CheckpointRead {
  /** The checkpoint directory. */
  dir: string;
  /** state.json. */
  state: CheckpointState;
  /** model.safetensors. */
  weights: NamedTensors;
  /** optimizer.safetensors; null when not asked for or not there (see `optimizerFile`). */
  optimizer: NamedTensors | null;
  /** The optimizer file's path (named in errors). */
  optimizerFile: string;
}

/**
 * Reads a checkpoint: state.json (version and fields checked) and the weights, and the
 * optimizer tensors when asked for (a missing optimizer file gives null: the distributed
 * optimizer's shards of older checkpoints are read by the caller).
 *
 * @param path a checkpoint directory, or a save directory (its latest)
 * @param opts `optimizer: true` reads optimizer.safetensors too
 * @returns the state and tensors
 * @throws CheckpointError naming the file
 */
export async function readCheckpoint(
  path: string,
  opts: { optimizer?: boolean; note?: (message: string) => void } = {},
): Promise<CheckpointRead> {
  const dir = await resolveCheckpoint(path, opts.note);
  const state = await readState(`${dir}/${STATE_FILE}`);
  await verifyChecksum(dir, MODEL_FILE, state);
  const weights = await readFloatTensors(`${dir}/${MODEL_FILE}`);
  const optimizerFile = `${dir}/${OPTIMIZER_FILE}`;
  let optimizer: NamedTensors | null = null;
  if (opts.optimizer) {
    const present = await Deno.stat(optimizerFile).then(() => true, () => false);
    if (present || !(await hasShards(dir))) {
      await verifyChecksum(dir, OPTIMIZER_FILE, state);
      optimizer = await readFloatTensors(optimizerFile);
    }
  }
  return { dir, state, weights, optimizer, optimizerFile };
}

/** Checks a tensor file against the SHA-256 its state.json recorded (if it did). */
async function verifyChecksum(dir: string, file: string, state: CheckpointState): Promise<void> {
  const want = state.checksums?.[file];
  if (want === undefined) return;
  const path = `${dir}/${file}`;
  let got: string;
  try {
    got = "sha256:" + await sha256File(path);
  } catch (e) {
    throw new CheckpointError(`${path}: cannot read (${(e as Error).message})`);
  }
  if (got !== want) {
    throw new CheckpointError(
      `${path}: checksum mismatch (state.json records ${want.slice(0, 19)}…, the file has ` +
        `${got.slice(0, 19)}…): the file is damaged; load an earlier checkpoint`,
    );
  }
}

/**
 * The SHA-256 of a file's bytes, read in 8 MiB pieces.
 *
 * @param path the file
 * @returns lowercase hex
 */
export async function sha256File(path: string): Promise<string> {
  const hash = createHash("sha256");
  using f = await Deno.open(path, { read: true });
  const buf = new Uint8Array(8 << 20);
  for (;;) {
    const n = await f.read(buf);
    if (n === null) break;
    hash.update(buf.subarray(0, n));
  }
  return hash.digest("hex");
}

async function hasShards(dir: string): Promise<boolean> {
  for await (const e of Deno.readDir(dir)) if (e.name.startsWith("optimizer_shard_")) return true;
  return false;
}

/**
 * Checks that `tensors` holds `prefix + name` with the given shape for every
 * (name, shape) of `expected`, and, when `exact`, nothing else.
 *
 * @param tensors what a file holds
 * @param expected names and full shapes
 * @param file the file, for messages
 * @param prefixes e.g. [""] for weights, ["m.", "v."] for moments
 * @param exact refuse names that are not expected
 * @throws CheckpointError naming the file, the tensor and both shapes
 */
export function expectTensors(
  tensors: NamedTensors,
  expected: Iterable<readonly [string, readonly number[]]>,
  file: string,
  prefixes: readonly string[],
  exact = true,
): void {
  const want = new Set<string>();
  for (const prefix of prefixes) {
    for (const [name, shape] of expected) {
      const key = prefix + name;
      want.add(key);
      const t = tensors.get(key);
      if (!t) throw new CheckpointError(`${file}: missing tensor '${key}'`);
      if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
        throw new CheckpointError(
          `${file}: tensor '${key}' has shape [${t.shape.join(", ")}], the model expects ` +
            `[${shape.join(", ")}]`,
        );
      }
    }
  }
  if (!exact) return;
  const extra = [...tensors.keys()].filter((k) => !want.has(k));
  if (extra.length) {
    throw new CheckpointError(`${file}: unexpected tensors ${extra.slice(0, 5).join(", ")}`);
  }
}

/** Moves a finished temporary directory to its final name, replacing an older save. */
async function replaceDir(tmp: string, final: string): Promise<void> {
  try {
    await Deno.rename(tmp, final);
    return;
  } catch (e) {
    // rename() cannot replace a non-empty directory: move the old one aside first.
    if (!(e instanceof Deno.errors.AlreadyExists) && !isNotEmpty(e)) throw e;
  }
  const aside = `${tmp}-old`;
  await Deno.rename(final, aside);
  await Deno.rename(tmp, final);
  await Deno.remove(aside, { recursive: true });
}

function isNotEmpty(e: unknown): boolean {
  return e instanceof Error && /not empty|ENOTEMPTY|os error 39/i.test(e.message);
}

async function writeText(path: string, text: string): Promise<void> {
  await writeFileAtomic(path, (f) => writeAll(f, new TextEncoder().encode(text)));
}

/**
 * The checkpoint directory `path` names: itself, or a save directory's `latest`, or,
 * when `latest` was never written, the save directory's newest complete `iter_*`.
 *
 * @param path a checkpoint or save directory
 * @param note told when the fallback is taken @default console.error
 * @returns the checkpoint directory
 * @throws CheckpointError when there is none
 */
export async function resolveCheckpoint(
  path: string,
  note: (message: string) => void = console.error,
): Promise<string> {
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(path);
  } catch {
    throw new CheckpointError(`${path}: no such checkpoint directory`);
  }
  if (!info.isDirectory) throw new CheckpointError(`${path}: not a checkpoint directory`);
  if (NAME_PATTERN.test(path.split("/").filter(Boolean).at(-1) ?? "")) return path;
  const latest = await latestCheckpoint(path);
  if (latest !== null) return latest;
  const complete = [];
  for (const c of await listCheckpoints(path)) {
    if (await Deno.stat(`${c.path}/${STATE_FILE}`).then(() => true, () => false)) complete.push(c);
  }
  const newest = complete.at(-1);
  if (newest === undefined) {
    throw new CheckpointError(
      `${path}: neither a checkpoint (iter_NNNNNNN) nor a save directory with a "${LATEST_FILE}" file`,
    );
  }
  note(`note: ${path} has no "${LATEST_FILE}" file; using its newest checkpoint ${newest.path}`);
  return newest.path;
}

/**
 * Reads and checks a state.json.
 *
 * @param file its path
 * @returns the state
 * @throws CheckpointError naming the file and the field
 */
export async function readState(file: string): Promise<CheckpointState> {
  let text: string;
  try {
    text = await Deno.readTextFile(file);
  } catch (e) {
    throw new CheckpointError(`${file}: cannot read (${(e as Error).message})`);
  }
  let s: Record<string, unknown>;
  try {
    s = JSON.parse(text);
  } catch (e) {
    throw new CheckpointError(`${file}: not valid JSON (${causeText(e)})`);
  }
  const fail = (what: string): never => {
    throw new CheckpointError(`${file}: ${what}`);
  };
  if (s === null || typeof s !== "object" || Array.isArray(s)) fail("expected a JSON object");
  if (s.formatVersion !== CHECKPOINT_FORMAT_VERSION) {
    fail(
      `format version ${fmtValue(s.formatVersion)} is not the supported ` +
        `${CHECKPOINT_FORMAT_VERSION}`,
    );
  }
  for (const key of ["iteration", "optimizerStepCount", "consumedSamples"]) {
    const v = s[key];
    if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 0) {
      fail(`"${key}" must be a non-negative integer, got ${fmtValue(v)}`);
    }
  }
  const rng = s.rng as Record<string, unknown> | null;
  if (
    rng === null || typeof rng !== "object" || !Number.isSafeInteger(rng.seed) ||
    !Number.isSafeInteger(rng.offset)
  ) {
    fail(`"rng" must be {seed, offset} integers, got ${fmtValue(s.rng)}`);
  }
  if (
    s.skippedSteps !== undefined &&
    !(Number.isSafeInteger(s.skippedSteps) && (s.skippedSteps as number) >= 0)
  ) {
    fail(`"skippedSteps" must be a non-negative integer, got ${fmtValue(s.skippedSteps)}`);
  }
  if (s.lossScaler !== undefined) {
    const ls = s.lossScaler as Record<string, unknown> | null;
    const finite = (v: unknown) => typeof v === "number" && Number.isFinite(v);
    // the hysteresis tracker keeps counting down past zero while overflows go on
    const okTracker = (v: unknown, min: number) =>
      v === undefined || (Number.isSafeInteger(v) && (v as number) >= min);
    if (
      ls === null || typeof ls !== "object" || Array.isArray(ls) || !finite(ls.scale) ||
      !((ls.scale as number) > 0) || !okTracker(ls.growthTracker, 0) ||
      !okTracker(ls.hysteresisTracker, -Number.MAX_SAFE_INTEGER)
    ) {
      fail(
        `"lossScaler" must be {scale: a positive number, growthTracker?: a non-negative ` +
          `integer, hysteresisTracker?: an integer}, got ${fmtValue(s.lossScaler)}`,
      );
    }
  }
  const sums = s.checksums as Record<string, unknown> | undefined;
  if (
    sums !== undefined &&
    (sums === null || typeof sums !== "object" || Array.isArray(sums) ||
      Object.values(sums).some((v) => typeof v !== "string" || !/^sha256:[0-9a-f]{64}$/.test(v)))
  ) {
    fail(`"checksums" must map file names to "sha256:HEX" strings`);
  }
  return s as unknown as CheckpointState;
}

async function readFloatTensors(
  file: string,
): Promise<NamedTensors> {
  let st: SafetensorsFile;
  try {
    st = await readSafetensors(file);
  } catch (e) {
    const msg = (e as Error).message;
    throw new CheckpointError(msg.includes(file) ? msg : `${file}: ${msg}`);
  }
  const out: NamedTensors = new Map();
  for (const [name, t] of st.tensors) {
    if (t.dtype !== "F32") {
      throw new CheckpointError(`${file}: tensor '${name}' is ${t.dtype}; checkpoints hold F32`);
    }
    out.set(name, { shape: t.shape, data: typedView(t) as Float32Array });
  }
  return out;
}
