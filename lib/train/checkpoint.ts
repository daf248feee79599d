/**
 * The one checkpoint path of training: named full tensors in, the format of
 * lib/io/checkpoint.ts out, for every layout.
 *
 * defines: saveRunCheckpoint, RunCheckpoint, saveCheckpoint, loadCheckpoint, SaveOptions,
 *          LoadTargets
 *
 * A job's ranks each hold some of the single-process model's tensors (a pipeline stage's,
 * gathered over its tensor group). One rank per distinct set writes it to a staging
 * directory; world rank 0 merges the parts and writes the checkpoint (renamed into place
 * only when complete, then `latest`, then keep-last). In one process, or when rank 0
 * holds everything, nothing is staged.
 *
 * `saveCheckpoint` / `loadCheckpoint` are the same path for one model and its AdamW, for
 * scripts and notebooks that train without a {@linkcode Trainer}.
 *
 * @module
 */
import {
  CheckpointError,
  checkpointName,
  type CheckpointState,
  expectTensors,
  type NamedTensors,
  readCheckpoint,
  writeCheckpoint,
} from "../io/checkpoint.ts";
import { readSafetensors, tensorEntry, typedView, writeSafetensors } from "../io/safetensors.ts";
import type { GPT } from "../nn/gpt.ts";
import type { AdamW } from "../optim/adamw.ts";
import { MixedPrecisionAdamW } from "../optim/mixed_precision.ts";
import type { ProcessGroup } from "../parallel/process_group.ts";
import { flatFromNamed, namedFromFlat } from "./engine.ts";

/** What {@link saveRunCheckpoint} saves from one rank. */
export interface RunCheckpoint {
  /** This rank's weights by name (full tensors). */
  weights: NamedTensors;
  /** This rank's optimizer tensors (m.NAME, v.NAME, main.NAME). */
  optimizer: NamedTensors;
  /** Whether this rank's tensors go into the checkpoint (one rank per distinct set). */
  writes: boolean;
  /** All ranks of the job; null in a single process. */
  group: ProcessGroup | null;
  /** The run state (the same on every rank). */
  state: Omit<CheckpointState, "formatVersion" | "savedAt">;
  /** Checkpoints to keep. @default Infinity */
  keepLast?: number;
}

/**
 * Saves a checkpoint of a job: every rank calls it.
 *
 * @param dir the save directory
 * @param c this rank's tensors and the run state
 * @returns the checkpoint's path (on every rank)
 */
export async function saveRunCheckpoint(dir: string, c: RunCheckpoint): Promise<string> {
  const g = c.group;
  const name = checkpointName(c.state.iteration);
  const contents = { state: c.state, keepLast: c.keepLast };
  if (!g || g.size === 1) {
    return await writeCheckpoint(dir, { weights: c.weights, optimizer: c.optimizer, ...contents });
  }
  // Rank 0 keeps its own part in memory; every other writer stages its part as a file.
  const stage = `${dir}/.parts-${name}`;
  const staged = c.writes && g.rank !== 0;
  if (g.rank === 0) {
    await Deno.remove(stage, { recursive: true }).catch(() => {});
    await Deno.mkdir(stage, { recursive: true });
  }
  g.barrier();
  if (staged) {
    const tensors = new Map();
    for (const [prefix, set] of [["model:", c.weights], ["optimizer:", c.optimizer]] as const) {
      for (const [n, t] of set) tensors.set(prefix + n, tensorEntry("F32", t.shape, t.data));
    }
    await writeSafetensors(`${stage}/part-${g.rank}.safetensors`, { tensors, metadata: {} });
  }
  g.barrier();
  let path = `${dir}/${name}`;
  if (g.rank === 0) {
    const weights: NamedTensors = new Map(c.weights);
    const optimizer: NamedTensors = new Map(c.optimizer);
    for (const e of [...Deno.readDirSync(stage)].sort((a, b) => a.name.localeCompare(b.name))) {
      const part = await readSafetensors(`${stage}/${e.name}`);
      for (const [key, t] of part.tensors) {
        const [kind, n] = [key.slice(0, key.indexOf(":")), key.slice(key.indexOf(":") + 1)];
        const into = kind === "model" ? weights : optimizer;
        // a tensor held by two stages (the tied embedding) is the same in both
        if (!into.has(n)) into.set(n, { shape: t.shape, data: typedView(t) as Float32Array });
      }
    }
    await Deno.remove(stage, { recursive: true });
    path = await writeCheckpoint(dir, { weights, optimizer, ...contents });
  }
  // Nobody goes on (or reads the checkpoint) before it is in place.
  g.barrier();
  return path;
}

/** What {@link saveCheckpoint} saves. */
export interface SaveOptions {
  /** The model whose weights are saved. */
  model: GPT;
  /** Its optimizer; absent: weights only. */
  optimizer?: AdamW;
  /** The fp16 loss scaler's state. */
  lossScaler?: CheckpointState["lossScaler"];
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

/** Flat-buffer arrays of an optimizer's state, by checkpoint name prefix. */
function optimizerFlats(model: GPT, opt: AdamW): Record<string, Float32Array> {
  const flats: Record<string, Float32Array> = {
    "m.": opt.m.toArray() as Float32Array,
    "v.": opt.v.toArray() as Float32Array,
  };
  if (hasMainCopy(model, opt)) flats["main."] = opt.main.toArray() as Float32Array;
  return flats;
}

/**
 * Saves one model and its optimizer as `dir/iter_NNNNNNN`, points `dir/latest` at it,
 * and removes all but the newest `keepLast`.
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
  const e = s.model.params.entries;
  return await writeCheckpoint(dir, {
    weights: namedFromFlat(e, { "": s.model.params.data.toArray() as Float32Array }),
    ...(s.optimizer ? { optimizer: namedFromFlat(e, optimizerFlats(s.model, s.optimizer)) } : {}),
    state: {
      iteration: s.iteration,
      optimizerStepCount: s.optimizer?.stepCount ?? 0,
      rng: s.model.rng.state(),
      consumedSamples: s.consumedSamples,
      config: s.config,
      ...(s.lossScaler ? { lossScaler: s.lossScaler } : {}),
      ...(s.skippedSteps !== undefined ? { skippedSteps: s.skippedSteps } : {}),
      ...(s.dataState !== undefined ? { dataState: s.dataState } : {}),
    },
    keepLast: s.keepLast,
  });
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
 * Loads a checkpoint into one model (and optimizer). Every file is read and checked
 * before anything is copied, so a bad checkpoint leaves both unchanged.
 *
 * @param path a checkpoint directory (`DIR/iter_NNNNNNN`), or a save directory,
 *   whose `latest` is loaded
 * @param targets the model and optimizer to restore
 * @returns the saved run state (iteration, data position, config...)
 * @throws CheckpointError naming the file, or the tensor and both shapes
 */
export async function loadCheckpoint(path: string, targets: LoadTargets): Promise<CheckpointState> {
  const { model, optimizer } = targets;
  const ck = await readCheckpoint(path, { optimizer: optimizer !== undefined });
  const entries = model.params.entries;
  const shapes = entries.map((e) => [e.name, e.tensor.shape] as [string, readonly number[]]);
  const weightsFile = `${ck.dir}/model.safetensors`;
  expectTensors(ck.weights, shapes, weightsFile, [""]);
  let moments: { m: Float32Array; v: Float32Array; main: Float32Array | null } | null = null;
  if (optimizer) {
    if (!ck.optimizer) {
      throw new CheckpointError(
        `${ck.dir}: its optimizer state is in distributed-optimizer shards; resume it with a Trainer`,
      );
    }
    const withMain = [...ck.optimizer.keys()].some((k) => k.startsWith("main."));
    expectTensors(
      ck.optimizer,
      shapes,
      ck.optimizerFile,
      withMain ? ["m.", "v.", "main."] : [
        "m.",
        "v.",
      ],
    );
    const n = model.params.data.numel;
    const flat = (p: string) => flatFromNamed(entries, ck.optimizer!, p, n, ck.optimizerFile);
    moments = { m: flat("m."), v: flat("v."), main: withMain ? flat("main.") : null };
  }
  // Everything is checked: from here on nothing can fail half way.
  model.loadStateDict(Object.fromEntries(ck.weights), weightsFile);
  if (optimizer && moments) {
    optimizer.m.copyFromHost(moments.m);
    optimizer.v.copyFromHost(moments.v);
    optimizer.stepCount = ck.state.optimizerStepCount;
    if (hasMainCopy(model, optimizer)) {
      // Without saved main parameters the fp32 copy restarts from the 16-bit weights.
      if (moments.main) optimizer.main.copyFromHost(moments.main);
      else optimizer.syncMainFromModel();
    }
  }
  model.rng.setState(ck.state.rng);
  return ck.state;
}
