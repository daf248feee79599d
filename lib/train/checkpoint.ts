/**
 * Checkpoints: everything a run needs to continue exactly where it stopped.
 *
 * defines: CHECKPOINT_FORMAT_VERSION, CheckpointState, CheckpointError,
 *          checkpointName, listCheckpoints, latestCheckpoint, saveCheckpoint,
 *          loadCheckpoint, resolveCheckpoint, readOptimizerState
 *
 * Layout of a save directory:
 *
 * ```
 * DIR/latest                        "iter_0000100" (written atomically)
 * DIR/iter_0000100/model.safetensors       parameters by name, f32
 * DIR/iter_0000100/optimizer.safetensors   AdamW moments: m.NAME and v.NAME (and the
 *                                          fp32 main parameters main.NAME of a 16-bit model)
 * DIR/iter_0000100/optimizer_shard_RRR_of_DDD.safetensors
 *                                          instead, with the distributed optimizer
 * DIR/iter_0000100/state.json              iteration, optimizer step, RNG,
 *                                          data position, config, format version
 * ```
 *
 * A checkpoint directory is written under a temporary name and renamed into
 * place only when complete, and `latest` moves only after that rename: a crash
 * or a failed save leaves the previous checkpoints and pointer as they were.
 *
 * @module
 */

import { writeAll, writeFileAtomic } from "../io/atomic.ts";
import {
  readSafetensors,
  type SafetensorsFile,
  tensorEntry,
  typedView,
  writeSafetensors,
} from "../io/safetensors.ts";
import type { GPT } from "../nn/gpt.ts";
import type { AdamW } from "../optim/adamw.ts";
import type { GradScalerState } from "../optim/grad_scaler.ts";
import { MixedPrecisionAdamW } from "../optim/mixed_precision.ts";
import { type FlatOptimizerState, readOptimizerShards } from "../parallel/zero.ts";
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
  /** When it was written (ISO 8601). */
  savedAt: string;
  /** The fp16 loss scaler's state (absent for fp32 and bf16 runs). */
  lossScaler?: GradScalerState;
  /** Steps skipped because their gradients overflowed (fp16). */
  skippedSteps?: number;
  /** The position of a custom batch source (e.g. a data curriculum), when it has one. */
  dataState?: unknown;
}

/** A checkpoint that cannot be saved or loaded; the message names the file or tensor. */
export class CheckpointError extends Error {
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

/** What {@link saveCheckpoint} saves. */
export interface SaveOptions {
  /** The model whose weights are saved. */
  model: GPT;
  /** Absent when the optimizer state is sharded (`writeExtra` writes the shards). */
  optimizer?: AdamW;
  /** The optimizer's step count when `optimizer` is absent. */
  optimizerStepCount?: number;
  /** Writes more files into the checkpoint directory before it is renamed into place. */
  writeExtra?: (tmpDir: string) => Promise<void>;
  /** The fp16 loss scaler's state. */
  lossScaler?: GradScalerState;
  /** Steps skipped so far (fp16). */
  skippedSteps?: number;
  /** A custom batch source's position (any JSON value). */
  dataState?: unknown;
  /** Optimizer steps completed. */
  iteration: number;
  /** Training samples consumed. */
  consumedSamples: number;
  /** The run's configuration (any JSON value). */
  config: unknown;
  /** Checkpoints to keep; older ones are removed after a successful save. @default Infinity */
  keepLast?: number;
}

/**
 * Saves a checkpoint as `dir/iter_NNNNNNN`, points `dir/latest` at it, and
 * removes all but the newest `keepLast`.
 *
 * @param dir the save directory (created if missing)
 * @param s the model, optimizer and run state
 * @returns the checkpoint's path
 * @example
 * ```ts
 * import { GPT, GPT_PRESETS } from "../nn/gpt.ts";
 * import { AdamW } from "../optim/adamw.ts";
 * import { loadCheckpoint, saveCheckpoint } from "./checkpoint.ts";
 * const model = new GPT(GPT_PRESETS.tiny);
 * const optimizer = new AdamW(model.params);
 * const dir = await Deno.makeTempDir();
 * const path = await saveCheckpoint(dir, {
 *   model, optimizer, iteration: 0, consumedSamples: 0, config: {},
 * });
 * (await loadCheckpoint(path, { model, optimizer })).iteration; // 0
 * ```
 */
export async function saveCheckpoint(dir: string, s: SaveOptions): Promise<string> {
  await Deno.mkdir(dir, { recursive: true });
  const name = checkpointName(s.iteration);
  const final = `${dir}/${name}`;
  const tmp = `${dir}/.tmp-${name}-${Deno.pid}-${crypto.randomUUID().slice(0, 8)}`;
  try {
    await Deno.mkdir(tmp);
    await writeSafetensors(`${tmp}/${MODEL_FILE}`, modelTensors(s.model));
    if (s.optimizer) {
      await writeSafetensors(`${tmp}/${OPTIMIZER_FILE}`, optimizerTensors(s.model, s.optimizer));
    }
    await s.writeExtra?.(tmp);
    const state: CheckpointState = {
      formatVersion: CHECKPOINT_FORMAT_VERSION,
      iteration: s.iteration,
      optimizerStepCount: s.optimizer?.stepCount ?? s.optimizerStepCount ?? 0,
      rng: s.model.rng.state(),
      consumedSamples: s.consumedSamples,
      config: s.config,
      savedAt: new Date().toISOString(),
      ...(s.lossScaler ? { lossScaler: s.lossScaler } : {}),
      ...(s.skippedSteps !== undefined ? { skippedSteps: s.skippedSteps } : {}),
      ...(s.dataState !== undefined ? { dataState: s.dataState } : {}),
    };
    await writeText(`${tmp}/${STATE_FILE}`, JSON.stringify(state, null, 2) + "\n");
    await replaceDir(tmp, final);
  } catch (e) {
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
    throw e;
  }
  await writeText(`${dir}/${LATEST_FILE}`, name + "\n");
  const keep = s.keepLast ?? Infinity;
  const all = await listCheckpoints(dir);
  for (const old of all.slice(0, Math.max(0, all.length - keep))) {
    if (old.path !== final) await Deno.remove(old.path, { recursive: true });
  }
  return final;
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

function modelTensors(model: GPT): SafetensorsFile {
  const tensors = new Map();
  for (const [name, t] of Object.entries(model.stateDict())) {
    tensors.set(name, tensorEntry("F32", [...t.shape], t.toArray()));
  }
  return {
    tensors,
    metadata: { format: "denotron", formatVersion: String(CHECKPOINT_FORMAT_VERSION) },
  };
}

/**
 * The moments per parameter, so the file does not depend on the flat buffer's padding;
 * with a 16-bit model also the fp32 main parameters, so a resumed run continues from
 * the exact main copy rather than from its rounded 16-bit weights.
 */
function optimizerTensors(model: GPT, opt: AdamW): SafetensorsFile {
  const m = opt.m.toArray();
  const v = opt.v.toArray();
  const main = hasMainCopy(model, opt) ? opt.main.toArray() : null;
  const tensors = new Map();
  for (const e of model.params.entries) {
    const shape = [...e.tensor.shape];
    const slice = (a: Float32Array | Int32Array) => a.subarray(e.offset, e.offset + e.tensor.numel);
    tensors.set(`m.${e.name}`, tensorEntry("F32", shape, slice(m)));
    tensors.set(`v.${e.name}`, tensorEntry("F32", shape, slice(v)));
    if (main) tensors.set(`main.${e.name}`, tensorEntry("F32", shape, slice(main)));
  }
  return { tensors, metadata: { stepCount: String(opt.stepCount) } };
}

/**
 * The whole optimizer state of a checkpoint, laid out like the model's flat buffer:
 * from `optimizer.safetensors`, or from the distributed optimizer's shards put together.
 *
 * @param path a checkpoint directory, or a save directory (its latest)
 * @param model the model it belongs to (names, shapes, flat layout)
 * @returns moments, main parameters (null when not saved) and step count
 */
export async function readOptimizerState(path: string, model: GPT): Promise<FlatOptimizerState> {
  const dir = await resolveCheckpoint(path);
  return await readFlatOptimizer(dir, model, await readState(`${dir}/${STATE_FILE}`));
}

async function readFlatOptimizer(
  dir: string,
  model: GPT,
  state: CheckpointState,
): Promise<FlatOptimizerState> {
  const file = `${dir}/${OPTIMIZER_FILE}`;
  // Saved by the distributed optimizer: the shards, put together.
  const shards = await Deno.stat(file).then(
    () => null,
    () =>
      readOptimizerShards(dir, model.params.data.numel).catch((e) => {
        throw new CheckpointError((e as Error).message);
      }),
  );
  if (shards) return shards;
  const tensors = await readFloatTensors(file);
  const withMain = Object.keys(tensors).some((k) => k.startsWith("main."));
  expectParameters(model, tensors, file, withMain ? ["m.", "v.", "main."] : ["m.", "v."]);
  return {
    ...flatMoments(model, tensors, withMain),
    stepCount: state.optimizerStepCount,
    dataParallelSize: 1,
  };
}

/** Whether `opt` keeps fp32 main parameters apart from the model's 16-bit ones. */
function hasMainCopy(model: GPT, opt: AdamW): opt is MixedPrecisionAdamW {
  return opt instanceof MixedPrecisionAdamW && model.params.data.dtype !== "f32";
}

/** What {@link loadCheckpoint} restores into. */
export interface LoadTargets {
  /** The model the weights are copied into. */
  model: GPT;
  /** Left untouched when absent (e.g. loading weights for generation). */
  optimizer?: AdamW;
}

/**
 * Loads a checkpoint into a model (and optimizer). Every file is read and
 * checked before anything is copied, so a bad checkpoint leaves both unchanged.
 *
 * @param path a checkpoint directory (`DIR/iter_NNNNNNN`), or a save directory,
 *   whose `latest` is loaded
 * @param targets the model and optimizer to restore
 * @returns the saved run state (iteration, data position, config...)
 * @throws CheckpointError naming the file, or the tensor and both shapes
 */
export async function loadCheckpoint(path: string, targets: LoadTargets): Promise<CheckpointState> {
  const dir = await resolveCheckpoint(path);
  const state = await readState(`${dir}/${STATE_FILE}`);
  const { model, optimizer } = targets;
  const weightsFile = `${dir}/${MODEL_FILE}`;
  const weights = await readFloatTensors(weightsFile);
  expectParameters(model, weights, weightsFile, [""]);
  const moments = optimizer ? await readFlatOptimizer(dir, model, state) : undefined;
  // Everything is checked: from here on nothing can fail half way.
  model.loadStateDict(weights, weightsFile);
  if (optimizer && moments) {
    optimizer.m.copyFromHost(moments.m);
    optimizer.v.copyFromHost(moments.v);
    optimizer.stepCount = state.optimizerStepCount;
    if (hasMainCopy(model, optimizer)) {
      // Without saved main parameters the fp32 copy restarts from the 16-bit weights.
      if (moments.main) optimizer.main.copyFromHost(moments.main);
      else optimizer.syncMainFromModel();
    }
  }
  model.rng.setState(state.rng);
  return state;
}

/** The checkpoint directory `path` names (itself, or a save directory's latest). */
export async function resolveCheckpoint(path: string): Promise<string> {
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(path);
  } catch {
    throw new CheckpointError(`${path}: no such checkpoint directory`);
  }
  if (!info.isDirectory) throw new CheckpointError(`${path}: not a checkpoint directory`);
  if (NAME_PATTERN.test(path.split("/").filter(Boolean).at(-1) ?? "")) return path;
  const latest = await latestCheckpoint(path);
  if (latest === null) {
    throw new CheckpointError(
      `${path}: neither a checkpoint (iter_NNNNNNN) nor a save directory with a "${LATEST_FILE}" file`,
    );
  }
  return latest;
}

async function readState(file: string): Promise<CheckpointState> {
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
    throw new CheckpointError(`${file}: not valid JSON (${(e as Error).message})`);
  }
  const fail = (what: string): never => {
    throw new CheckpointError(`${file}: ${what}`);
  };
  if (s === null || typeof s !== "object" || Array.isArray(s)) fail("expected a JSON object");
  if (s.formatVersion !== CHECKPOINT_FORMAT_VERSION) {
    fail(
      `format version ${JSON.stringify(s.formatVersion)} is not the supported ` +
        `${CHECKPOINT_FORMAT_VERSION}`,
    );
  }
  for (const key of ["iteration", "optimizerStepCount", "consumedSamples"]) {
    const v = s[key];
    if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 0) {
      fail(`"${key}" must be a non-negative integer, got ${JSON.stringify(v)}`);
    }
  }
  const rng = s.rng as Record<string, unknown> | null;
  if (
    rng === null || typeof rng !== "object" || !Number.isSafeInteger(rng.seed) ||
    !Number.isSafeInteger(rng.offset)
  ) {
    fail(`"rng" must be {seed, offset} integers, got ${JSON.stringify(s.rng)}`);
  }
  return s as unknown as CheckpointState;
}

async function readFloatTensors(
  file: string,
): Promise<Record<string, { shape: number[]; data: Float32Array }>> {
  let st: SafetensorsFile;
  try {
    st = await readSafetensors(file);
  } catch (e) {
    const msg = (e as Error).message;
    throw new CheckpointError(msg.includes(file) ? msg : `${file}: ${msg}`);
  }
  const out: Record<string, { shape: number[]; data: Float32Array }> = {};
  for (const [name, t] of st.tensors) {
    if (t.dtype !== "F32") {
      throw new CheckpointError(`${file}: tensor '${name}' is ${t.dtype}; checkpoints hold F32`);
    }
    out[name] = { shape: t.shape, data: typedView(t) as Float32Array };
  }
  return out;
}

/**
 * Checks that `tensors` holds exactly `prefix + name` for every parameter of
 * the model, each with the parameter's shape.
 */
function expectParameters(
  model: GPT,
  tensors: Record<string, { shape: number[]; data: Float32Array }>,
  file: string,
  prefixes: readonly string[],
): void {
  const expected = new Set<string>();
  for (const prefix of prefixes) {
    for (const e of model.params.entries) {
      const key = prefix + e.name;
      expected.add(key);
      const t = tensors[key];
      if (!t) throw new CheckpointError(`${file}: missing tensor '${key}'`);
      const want = e.tensor.shape;
      if (t.shape.length !== want.length || t.shape.some((d, i) => d !== want[i])) {
        throw new CheckpointError(
          `${file}: tensor '${key}' has shape [${t.shape.join(", ")}], the model expects ` +
            `[${want.join(", ")}]`,
        );
      }
    }
  }
  const extra = Object.keys(tensors).filter((k) => !expected.has(k));
  if (extra.length) {
    throw new CheckpointError(`${file}: unexpected tensors ${extra.slice(0, 5).join(", ")}`);
  }
}

/** The moments laid out like the flat parameter buffer (padding left at zero). */
function flatMoments(
  model: GPT,
  tensors: Record<string, { shape: number[]; data: Float32Array }>,
  withMain = false,
): { m: Float32Array; v: Float32Array; main: Float32Array | null } {
  const n = model.params.data.numel;
  const flat = {
    m: new Float32Array(n),
    v: new Float32Array(n),
    main: withMain ? new Float32Array(n) : null,
  };
  for (const e of model.params.entries) {
    flat.m.set(tensors[`m.${e.name}`].data, e.offset);
    flat.v.set(tensors[`v.${e.name}`].data, e.offset);
    flat.main?.set(tensors[`main.${e.name}`].data, e.offset);
  }
  return flat;
}
