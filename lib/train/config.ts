/**
 * The training configuration: typed defaults, a YAML file, command-line
 * overrides, and validation whose errors name the key and the way out.
 *
 * defines: TrainConfig, DEFAULT_CONFIG, loadConfig, configFromObject,
 *          applyOverrides, parseArgsToOverrides, validateConfig, ConfigError
 *
 * Keys follow Megatron-LM's arguments in camelCase (`--train-iters` ->
 * `trainIters`); the model keys use the model's own names (nLayer, nHead,
 * nEmbd), with Megatron's (numLayers, numAttentionHeads, hiddenSize) accepted
 * as aliases. Every key is unique across sections, so a YAML file may nest keys
 * under their section or list them flat, and `--key value` needs no section.
 *
 * @module
 */

import { parse as parseYaml } from "yaml";
import { parseSplit } from "../data/gpt_dataset.ts";
import { modelParallelProblems } from "../parallel/parallel_config.ts";
import { rampupBatchSizeAt } from "../curriculum/batch_rampup.ts";
import { validateSeqLenCurriculum } from "../curriculum/seqlen.ts";

/** Model shape. */
export interface ModelConfig {
  /** Transformer blocks. */
  nLayer: number;
  /** Attention heads. */
  nHead: number;
  /** Hidden size. */
  nEmbd: number;
  /** Vocabulary; null takes the tokenizer's. */
  vocabSize: number | null;
  /**
   * Pads the token table and logits to a multiple of this (Megatron's
   * make-vocab-size-divisible-by): 128 turns GPT-2's 50257 into 50304, for aligned GPU
   * GEMMs. Training is unchanged. Absent: 1.
   */
  vocabMultiple?: number;
  /** Tokens per sample. */
  seqLength: number;
  /**
   * Rows of the position table (Megatron's max-position-embeddings); absent or null:
   * seqLength. A run started from Hugging Face weights keeps theirs (GPT-2: 1024).
   */
  maxPositionEmbeddings?: number | null;
  /** Dropout probability. */
  dropout: number;
}

/** Optimization. */
export interface TrainingConfig {
  /** Samples per forward-backward pass. */
  microBatchSize: number;
  /** Samples per optimizer step (a multiple of microBatchSize: the rest is accumulation). */
  globalBatchSize: number;
  /** Optimizer steps of the run. */
  trainIters: number;
  /** Peak learning rate, reached at the end of warmup. */
  lr: number;
  /** Learning-rate floor after decay. */
  minLr: number;
  /** Steps of linear warmup. */
  lrWarmupIters: number;
  /** Shape of the decay after warmup. */
  lrDecayStyle: "cosine" | "linear" | "constant";
  /** Null decays over all of trainIters. */
  lrDecayIters: number | null;
  /** AdamW weight decay (matrices only). */
  weightDecay: number;
  /** AdamW first-moment decay. */
  adamBeta1: number;
  /** AdamW second-moment decay. */
  adamBeta2: number;
  /** AdamW epsilon. */
  adamEps: number;
  /** Gradient-norm clip; 0 turns clipping off. */
  clipGrad: number;
  /** Seeds initialisation, data order and dropout. */
  seed: number;
  /** Stop (with a checkpoint) after this many minutes of training; null: no limit. */
  exitDurationInMins: number | null;
  /**
   * Megatron's `--rampup-batch-size`: [start, increment, samples]; the global batch
   * grows from start by increment over that many samples (lib/curriculum). Null: off.
   */
  rampupBatchSize?: number[] | null;
}

/** Parallel layout. */
export interface ParallelConfig {
  /** Ranks each layer is split over (Megatron's tensor parallelism). */
  tensorModelParallelSize: number;
  /** Pipeline stages the layers are divided into. */
  pipelineModelParallelSize: number;
  /** Model chunks per pipeline stage (interleaved 1F1B); null: one. */
  virtualPipelineModelParallelSize: number | null;
  /** Split layernorm and dropout regions along the tokens across the TP group. */
  sequenceParallel: boolean;
  /** Activation recomputation: "full" layers or "selective" (core attention); null: off. */
  recomputeGranularity: "full" | "selective" | null;
  /** With "full": "uniform" or "block" (see lib/parallel/parallel_config.ts). */
  recomputeMethod: "uniform" | "block" | null;
  /** With "full": layers per recomputed group (uniform) or per stage (block). */
  recomputeNumLayers: number | null;
  /**
   * ZeRO-1 (Megatron's `--use-distributed-optimizer`): under the launcher each
   * data-parallel rank keeps optimizer state for its shard only.
   */
  useDistributedOptimizer: boolean;
}

/** Evaluation. */
export interface EvalConfig {
  /** Steps between evaluations. */
  evalInterval: number;
  /** Micro-batches per evaluation; 0 turns evaluation off. */
  evalIters: number;
}

/** Checkpoints. */
export interface CheckpointConfig {
  /** Directory to save to; null saves nothing. */
  save: string | null;
  /** Steps between checkpoints. */
  saveInterval: number;
  /** Checkpoints kept; older ones are removed. */
  keepLast: number;
  /** Directory to resume from; null starts fresh. */
  load: string | null;
  /**
   * A Hugging Face GPT-2 directory (config.json + model.safetensors) whose weights start
   * the run (fine-tuning); its shape replaces the model keys. With `load` as well, a
   * checkpoint there wins (the same command restarts the job), else the run starts from
   * these weights. Absent or null: random init.
   */
  initFromHf?: string | null;
}

/** Logging. */
export interface LoggingConfig {
  /** Steps between progress lines (each averages the steps since the last). */
  logInterval: number;
}

/** Data. */
export interface DataConfig {
  /** Indexed dataset prefix; null uses the built-in corpus. */
  dataPath: string | null;
  /** Train / valid / test weights, "969,30,1" style. */
  split: string;
  /** Tokenizer: GPT-2's byte-pair encoding or raw bytes. */
  tokenizer: "gpt2" | "byte";
}

/**
 * Numerical precision (Megatron's `--bf16`, `--fp16` and loss-scale arguments). With
 * bf16 or fp16 the model computes in 16 bits and the optimizer keeps fp32 main
 * parameters, main gradients and moments; fp16 also scales the loss.
 */
export interface PrecisionConfig {
  /** Train in bf16 (no loss scaling needed). */
  bf16: boolean;
  /** Train in fp16 with loss scaling. */
  fp16: boolean;
  /** Constant loss scale for fp16; null uses the dynamic scaler. */
  lossScale: number | null;
  /** The dynamic scaler's starting scale. */
  initialLossScale: number;
  /** The dynamic scale never backs off below this. */
  minLossScale: number;
  /** Clean steps in a row before the dynamic scale doubles. */
  lossScaleWindow: number;
  /** Overflows tolerated before the dynamic scale halves. */
  hysteresis: number;
}

/**
 * Sequence-length curriculum (DeepSpeed's `curriculum_learning` block; see
 * lib/curriculum/seqlen.ts for the formulas).
 */
export interface CurriculumConfig {
  /** Turns the sequence-length curriculum on. */
  curriculumLearning: boolean;
  /** Length at the start. */
  minDifficulty: number;
  /** Length at the end; null takes seqLength. */
  maxDifficulty: number | null;
  /** How the length grows: linearly, as a root of progress, or in listed steps. */
  scheduleType: "fixed_linear" | "fixed_root" | "fixed_discrete";
  /** fixed_linear / fixed_root: steps from min to max. */
  totalCurriculumStep: number;
  /** Lengths are multiples of this (a warning when it is not a multiple of 8). */
  difficultyStep: number;
  /** fixed_root's degree (2: square root). */
  rootDegree: number;
  /** fixed_discrete: the lengths. */
  difficulty: number[] | null;
  /** fixed_discrete: the last step of each length but the last. */
  maxStep: number[] | null;
  /** Warm up and decay the learning rate by tokens instead of steps. */
  lrByTokens: boolean;
}

/** Progressive layer dropping (lib/curriculum/layer_drop.ts). */
export interface LayerDropConfig {
  /** Turns progressive layer dropping on. */
  progressiveLayerDrop: boolean;
  /** theta_bar: the keep level theta falls to. */
  pldTheta: number;
  /** gamma: how fast theta falls per step. */
  pldGamma: number;
}

/** Everything a training run needs to know. */
export interface TrainConfig {
  /** Model shape. */
  model: ModelConfig;
  /** Batch, schedule and optimizer. */
  training: TrainingConfig;
  /** Parallel layout. */
  parallel: ParallelConfig;
  /** Evaluation cadence. */
  eval: EvalConfig;
  /** Where and how often to save. */
  checkpoints: CheckpointConfig;
  /** Progress output. */
  logging: LoggingConfig;
  /** Dataset, split and tokenizer. */
  data: DataConfig;
  /** fp32, bf16 or fp16 and loss scaling. */
  precision: PrecisionConfig;
  /** Sequence-length curriculum; absent means off. */
  curriculum?: CurriculumConfig;
  /** Progressive layer dropping; absent means off. */
  layerDrop?: LayerDropConfig;
}

/**
 * The default run (`deno task train`): a byte-level GPT of 0.8M parameters on the
 * built-in corpus, sized to reach about 2.3 bits per byte of validation text in a few
 * minutes on two CPU cores. Measured there: 64-token samples learn faster per second
 * than 128 or 256 (attention is cheaper and a step sees more distinct contexts), and
 * 32 samples per step beat 64 per token seen. Frozen: copy to change.
 */
export const DEFAULT_CONFIG: Readonly<TrainConfig> = deepFreeze<TrainConfig>({
  model: { nLayer: 4, nHead: 4, nEmbd: 128, vocabSize: null, seqLength: 64, dropout: 0 },
  training: {
    microBatchSize: 32,
    globalBatchSize: 32,
    trainIters: 800,
    lr: 3e-3,
    minLr: 3e-4,
    lrWarmupIters: 50,
    lrDecayStyle: "cosine",
    lrDecayIters: null,
    weightDecay: 0.1,
    adamBeta1: 0.9,
    adamBeta2: 0.95,
    adamEps: 1e-8,
    clipGrad: 1.0,
    seed: 1234,
    // A safety stop well inside the 10-minute budget on a busy machine.
    exitDurationInMins: 8,
    rampupBatchSize: null,
  },
  parallel: {
    tensorModelParallelSize: 1,
    pipelineModelParallelSize: 1,
    virtualPipelineModelParallelSize: null,
    sequenceParallel: false,
    recomputeGranularity: null,
    recomputeMethod: null,
    recomputeNumLayers: null,
    useDistributedOptimizer: false,
  },
  eval: { evalInterval: 100, evalIters: 20 },
  checkpoints: { save: "runs/sotu", saveInterval: 200, keepLast: 2, load: null },
  logging: { logInterval: 10 },
  data: { dataPath: null, split: "95,5,0", tokenizer: "byte" },
  precision: {
    bf16: false,
    fp16: false,
    lossScale: null,
    initialLossScale: 2 ** 32,
    minLossScale: 1,
    lossScaleWindow: 1000,
    hysteresis: 2,
  },
  curriculum: {
    curriculumLearning: false,
    minDifficulty: 8,
    maxDifficulty: null,
    scheduleType: "fixed_linear",
    totalCurriculumStep: 200,
    difficultyStep: 8,
    rootDegree: 2,
    difficulty: null,
    maxStep: null,
    lrByTokens: false,
  },
  layerDrop: { progressiveLayerDrop: false, pldTheta: 0.5, pldGamma: 0.001 },
});

function deepFreeze<T extends object>(o: T): Readonly<T> {
  for (const v of Object.values(o)) if (v !== null && typeof v === "object") deepFreeze(v);
  return Object.freeze(o);
}

type Section = keyof TrainConfig;
/** "ints": a list of integers (YAML list, or "8,8,300" on the command line). */
type Kind = "int" | "number" | "string" | "bool" | "ints";

interface KeySpec {
  section: Section;
  kind: Kind;
  nullable?: boolean;
  /** Smallest allowed value. */
  min?: number;
  /** Values above `min` only. */
  exclusiveMin?: boolean;
  max?: number;
  choices?: readonly string[];
}

const int = (section: Section, min = 0, extra: Partial<KeySpec> = {}): KeySpec => ({
  section,
  kind: "int",
  min,
  ...extra,
});
const num = (section: Section, min = 0, extra: Partial<KeySpec> = {}): KeySpec => ({
  section,
  kind: "number",
  min,
  ...extra,
});

/** Every key, its section, type and range. */
const SPEC: Record<string, KeySpec> = {
  nLayer: int("model", 1),
  nHead: int("model", 1),
  nEmbd: int("model", 1),
  vocabSize: int("model", 1, { nullable: true }),
  vocabMultiple: int("model", 1),
  seqLength: int("model", 1),
  maxPositionEmbeddings: int("model", 1, { nullable: true }),
  dropout: num("model", 0, { max: 1 }),
  microBatchSize: int("training", 1),
  globalBatchSize: int("training", 1),
  trainIters: int("training", 1),
  lr: num("training", 0, { exclusiveMin: true }),
  minLr: num("training", 0),
  lrWarmupIters: int("training", 0),
  lrDecayStyle: { section: "training", kind: "string", choices: ["cosine", "linear", "constant"] },
  lrDecayIters: int("training", 1, { nullable: true }),
  weightDecay: num("training", 0),
  adamBeta1: num("training", 0, { max: 1 }),
  adamBeta2: num("training", 0, { max: 1 }),
  adamEps: num("training", 0, { exclusiveMin: true }),
  clipGrad: num("training", 0),
  seed: int("training", 0),
  exitDurationInMins: num("training", 0, { exclusiveMin: true, nullable: true }),
  tensorModelParallelSize: int("parallel", 1),
  pipelineModelParallelSize: int("parallel", 1),
  virtualPipelineModelParallelSize: int("parallel", 1, { nullable: true }),
  sequenceParallel: { section: "parallel", kind: "bool" },
  recomputeGranularity: {
    section: "parallel",
    kind: "string",
    choices: ["full", "selective"],
    nullable: true,
  },
  recomputeMethod: {
    section: "parallel",
    kind: "string",
    choices: ["uniform", "block"],
    nullable: true,
  },
  recomputeNumLayers: int("parallel", 1, { nullable: true }),
  useDistributedOptimizer: { section: "parallel", kind: "bool" },
  evalInterval: int("eval", 1),
  evalIters: int("eval", 0),
  save: { section: "checkpoints", kind: "string", nullable: true },
  saveInterval: int("checkpoints", 1),
  keepLast: int("checkpoints", 1),
  load: { section: "checkpoints", kind: "string", nullable: true },
  initFromHf: { section: "checkpoints", kind: "string", nullable: true },
  logInterval: int("logging", 1),
  dataPath: { section: "data", kind: "string", nullable: true },
  split: { section: "data", kind: "string" },
  tokenizer: { section: "data", kind: "string", choices: ["gpt2", "byte"] },
  bf16: { section: "precision", kind: "bool" },
  fp16: { section: "precision", kind: "bool" },
  lossScale: num("precision", 0, { exclusiveMin: true, nullable: true }),
  initialLossScale: num("precision", 0, { exclusiveMin: true }),
  minLossScale: num("precision", 0, { exclusiveMin: true }),
  lossScaleWindow: int("precision", 1),
  hysteresis: int("precision", 1),
  rampupBatchSize: { section: "training", kind: "ints", nullable: true, min: 1 },
  curriculumLearning: { section: "curriculum", kind: "bool" },
  minDifficulty: int("curriculum", 1),
  maxDifficulty: int("curriculum", 1, { nullable: true }),
  scheduleType: {
    section: "curriculum",
    kind: "string",
    choices: ["fixed_linear", "fixed_root", "fixed_discrete"],
  },
  totalCurriculumStep: int("curriculum", 1),
  difficultyStep: int("curriculum", 1),
  rootDegree: num("curriculum", 0, { exclusiveMin: true }),
  difficulty: { section: "curriculum", kind: "ints", nullable: true, min: 1 },
  maxStep: { section: "curriculum", kind: "ints", nullable: true, min: 1 },
  lrByTokens: { section: "curriculum", kind: "bool" },
  progressiveLayerDrop: { section: "layerDrop", kind: "bool" },
  pldTheta: num("layerDrop", 0, { exclusiveMin: true, max: 1 }),
  pldGamma: num("layerDrop", 0),
};

/** Megatron's names for keys that we spell differently. */
const ALIASES: Record<string, string> = {
  numLayers: "nLayer",
  numAttentionHeads: "nHead",
  hiddenSize: "nEmbd",
  makeVocabSizeDivisibleBy: "vocabMultiple",
  tokenizerType: "tokenizer",
};

/** A configuration mistake, phrased as a sentence that names the key. */
export class ConfigError extends Error {
  override name = "ConfigError";
}

/** `train-iters`, `train_iters` and `trainIters` all become `trainIters`. */
function camel(key: string): string {
  return key.replace(/[-_]+([a-zA-Z0-9])/g, (_, c: string) => c.toUpperCase());
}

function editDistance(a: string, b: string): number {
  const prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let diag = prev[0];
    prev[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const up = prev[j];
      prev[j] = Math.min(prev[j] + 1, prev[j - 1] + 1, diag + (a[i - 1] === b[j - 1] ? 0 : 1));
      diag = up;
    }
  }
  return prev[b.length];
}

/** The closest known key, if close enough to be a likely typo. */
function closestKey(key: string): string | undefined {
  let best: string | undefined;
  let bestD = Infinity;
  for (const k of [...Object.keys(SPEC), ...Object.keys(ALIASES), ...Object.keys(DEFAULT_CONFIG)]) {
    const d = editDistance(key.toLowerCase(), k.toLowerCase());
    if (d < bestD) (bestD = d, best = k);
  }
  return bestD <= Math.max(2, Math.floor(key.length / 3)) ? best : undefined;
}

function resolveKey(raw: string, where: string, shown = raw): string {
  const key = camel(raw);
  const canonical = ALIASES[key] ?? key;
  if (canonical in SPEC) return canonical;
  const hint = closestKey(key);
  throw new ConfigError(
    `${where}unknown key "${shown}"` +
      (hint ? `; did you mean "${hint}"?` : `; known keys: ${Object.keys(SPEC).join(", ")}`),
  );
}

/** Checks and converts one value (strings from the command line are parsed). */
function coerce(key: string, value: unknown, where: string): unknown {
  const spec = SPEC[key];
  const fail = (expected: string): never => {
    const shown = typeof value === "string" ? `'${value}'` : JSON.stringify(value);
    throw new ConfigError(`${where}${key}: expected ${expected}, got ${shown}`);
  };
  if (value === null || value === "null" || value === "none") {
    if (spec.nullable) return null;
    if (value === null) fail(`a value (${key} cannot be null)`);
  }
  let v: unknown = value;
  switch (spec.kind) {
    case "int":
    case "number": {
      if (typeof v === "string" && v.trim() !== "") v = Number(v);
      const what = spec.kind === "int" ? "an integer" : "a number";
      if (typeof v !== "number" || !Number.isFinite(v)) fail(what);
      if (spec.kind === "int" && !Number.isInteger(v)) fail(what);
      const n = v as number;
      if (spec.min !== undefined && (n < spec.min || (spec.exclusiveMin && n === spec.min))) {
        fail(`${what} ${spec.exclusiveMin ? ">" : ">="} ${spec.min}`);
      }
      if (spec.max !== undefined && n > spec.max) fail(`${what} <= ${spec.max}`);
      return n;
    }
    case "bool":
      if (v === "true" || v === true) return true;
      if (v === "false" || v === false) return false;
      return fail("true or false");
    case "ints": {
      const items = typeof v === "string" ? v.split(/[,\s]+/).filter((x) => x !== "") : v;
      if (!Array.isArray(items) || items.length === 0) fail("a list of integers like 8,8,300");
      return (items as unknown[]).map((x) => {
        const n = typeof x === "string" ? Number(x) : x;
        if (typeof n !== "number" || !Number.isInteger(n) || n < (spec.min ?? -Infinity)) {
          fail(`a list of integers >= ${spec.min ?? "any"}`);
        }
        return n as number;
      });
    }
    case "string":
      if (typeof v === "number") v = String(v);
      if (typeof v !== "string") fail("a string");
      if (spec.choices && !spec.choices.includes(v as string)) {
        fail(`one of ${spec.choices.join(", ")}`);
      }
      return v;
  }
}

function clone(c: Readonly<TrainConfig>): TrainConfig {
  return structuredClone(c) as TrainConfig;
}

function setKey(config: TrainConfig, key: string, value: unknown): void {
  const section = SPEC[key].section;
  // Optional sections (curriculum, layerDrop) may be missing from a config written before them.
  const sections = config as unknown as Record<string, Record<string, unknown>>;
  sections[section] ??= structuredClone(DEFAULT_CONFIG[section]) as unknown as Record<
    string,
    unknown
  >;
  sections[section][key] = value;
}

/**
 * Applies overrides given as `{key: value}` (flat; any spelling of a key).
 *
 * @param config the configuration to start from (not modified)
 * @param overrides values by key; strings are parsed for numeric keys
 * @param source where they came from, for errors ("command line", a file)
 * @returns the new configuration
 * @example
 * ```ts
 * import { applyOverrides, DEFAULT_CONFIG } from "./config.ts";
 * applyOverrides(DEFAULT_CONFIG, { "train-iters": "100" }, "cli").training.trainIters; // 100
 * ```
 */
export function applyOverrides(
  config: Readonly<TrainConfig>,
  overrides: Record<string, unknown>,
  source: string,
): TrainConfig {
  const out = clone(config);
  const where = source ? `${source}: ` : "";
  for (const [raw, value] of Object.entries(overrides)) {
    const key = resolveKey(raw, where);
    setKey(out, key, coerce(key, value, where));
  }
  return out;
}

/**
 * Builds a configuration from a parsed YAML document: keys nested under their
 * section (`training: {lr: ...}`) or flat (`lr: ...`), defaults for the rest.
 *
 * @param doc the parsed document (an object, or null for an empty file)
 * @param source file name for errors
 * @param base the defaults
 * @default base DEFAULT_CONFIG
 * @returns the validated configuration
 */
export function configFromObject(
  doc: unknown,
  source: string,
  base: Readonly<TrainConfig> = DEFAULT_CONFIG,
): TrainConfig {
  if (doc === null || doc === undefined) return clone(base);
  if (typeof doc !== "object" || Array.isArray(doc)) {
    throw new ConfigError(`${source}: expected a mapping of keys to values at the top level`);
  }
  const flat: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(doc as Record<string, unknown>)) {
    if (k in DEFAULT_CONFIG && v !== null && typeof v === "object" && !Array.isArray(v)) {
      for (const [inner, x] of Object.entries(v as Record<string, unknown>)) {
        const key = resolveKey(inner, `${source}: `, `${k}.${inner}`);
        if (SPEC[key].section !== k) {
          throw new ConfigError(
            `${source}: ${k}.${inner}: "${key}" belongs in section "${SPEC[key].section}"`,
          );
        }
        flat[key] = x;
      }
    } else {
      flat[k] = v;
    }
  }
  const config = applyOverrides(base, flat, source);
  validateConfig(config, source);
  return config;
}

/**
 * Turns `--key value`, `--key=value` and bare `--flag` (true) into overrides.
 *
 * @param args command-line words
 * @returns overrides by raw key, and the `--config` file if one was named
 * @example
 * ```ts
 * import { parseArgsToOverrides } from "./config.ts";
 * parseArgsToOverrides(["--lr", "3e-4", "--train-iters=100"]).overrides;
 * // { lr: "3e-4", "train-iters": "100" }
 * ```
 */
export function parseArgsToOverrides(
  args: readonly string[],
): { overrides: Record<string, string | boolean>; configFile?: string } {
  const overrides: Record<string, string | boolean> = {};
  let configFile: string | undefined;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (!arg.startsWith("--")) {
      throw new ConfigError(`command line: unexpected "${arg}"; options look like --lr 3e-4`);
    }
    let key = arg.slice(2);
    let value: string | boolean;
    const eq = key.indexOf("=");
    if (eq >= 0) {
      value = key.slice(eq + 1);
      key = key.slice(0, eq);
    } else if (i + 1 < args.length && !/^--[a-zA-Z]/.test(args[i + 1])) {
      value = args[++i];
    } else {
      value = true;
    }
    if (key === "config") {
      if (typeof value !== "string") throw new ConfigError("command line: --config needs a file");
      configFile = value;
    } else {
      overrides[key] = value;
    }
  }
  return { overrides, configFile };
}

/**
 * Cross-field checks.
 *
 * @param c the configuration
 * @param source where it came from, for errors
 */
export function validateConfig(c: Readonly<TrainConfig>, source: string): void {
  const where = source ? `${source}: ` : "";
  const fail = (msg: string): never => {
    throw new ConfigError(where + msg);
  };
  const { model: m, training: t, parallel: p } = c;
  if (t.globalBatchSize % t.microBatchSize !== 0) {
    fail(
      `globalBatchSize ${t.globalBatchSize} is not a multiple of microBatchSize ${t.microBatchSize}`,
    );
  }
  if (t.minLr > t.lr) fail(`minLr ${t.minLr} is larger than lr ${t.lr}`);
  if (m.nEmbd % m.nHead !== 0) fail(`nEmbd ${m.nEmbd} is not divisible by nHead ${m.nHead}`);
  if (m.nHead % p.tensorModelParallelSize !== 0) {
    fail(
      `tensorModelParallelSize ${p.tensorModelParallelSize} does not divide nHead ${m.nHead}`,
    );
  }
  if (m.nLayer % p.pipelineModelParallelSize !== 0) {
    fail(
      `pipelineModelParallelSize ${p.pipelineModelParallelSize} does not divide nLayer ${m.nLayer}`,
    );
  }
  for (const problem of modelParallelProblems(m, p)) fail(problem);
  const decay = t.lrDecayIters ?? t.trainIters;
  if (t.lrWarmupIters > decay) {
    fail(`lrWarmupIters ${t.lrWarmupIters} is longer than lrDecayIters ${decay}`);
  }
  if (t.adamBeta1 >= 1 || t.adamBeta2 >= 1) fail("adamBeta1 and adamBeta2 must be below 1");
  if (m.maxPositionEmbeddings != null && m.seqLength > m.maxPositionEmbeddings) {
    fail(`seqLength ${m.seqLength} exceeds maxPositionEmbeddings ${m.maxPositionEmbeddings}`);
  }

  const pr = c.precision;
  if (pr.bf16 && pr.fp16) fail("bf16 and fp16 are both set; choose one precision");
  if (pr.minLossScale > pr.initialLossScale) {
    fail(`minLossScale ${pr.minLossScale} is larger than initialLossScale ${pr.initialLossScale}`);
  }
  try {
    parseSplit(c.data.split);
  } catch (e) {
    fail(`split: ${(e as Error).message}`);
  }
  validateCurriculum(c, fail);
}

/** The curriculum keys' cross-field checks (the formulas live in lib/curriculum). */
function validateCurriculum(c: Readonly<TrainConfig>, fail: (msg: string) => never): void {
  const t = c.training;
  const cl = c.curriculum;
  try {
    if (t.rampupBatchSize) {
      if (t.rampupBatchSize.length !== 3) {
        fail(`rampupBatchSize needs [start, increment, samples], got ${t.rampupBatchSize}`);
      }
      const [a, b, n] = t.rampupBatchSize;
      rampupBatchSizeAt([a, b, n], t.globalBatchSize, 0, t.microBatchSize);
    }
    if (cl?.curriculumLearning) {
      const max = cl.maxDifficulty ?? c.model.seqLength;
      if (max > c.model.seqLength) {
        fail(`maxDifficulty ${max} is longer than seqLength ${c.model.seqLength}`);
      }
      validateSeqLenCurriculum({
        ...cl,
        maxDifficulty: max,
        difficulty: cl.difficulty ?? undefined,
        maxStep: cl.maxStep ?? undefined,
      }, () => {});
    }
  } catch (e) {
    if (e instanceof ConfigError) throw e;
    fail((e as Error).message);
  }
}

/**
 * Defaults, then a YAML file (`--config FILE` or `file`), then command-line
 * overrides; validated.
 *
 * @param options the file and the command-line words
 * @returns the configuration
 * @example
 * ```ts
 * import { loadConfig } from "./config.ts";
 * const c = await loadConfig({ args: ["--lr", "3e-4", "--trainIters", "100"] });
 * [c.training.lr, c.training.trainIters]; // [0.0003, 100]
 * ```
 */
export async function loadConfig(
  options: { file?: string; args?: readonly string[] } = {},
): Promise<TrainConfig> {
  const { overrides, configFile } = parseArgsToOverrides(options.args ?? []);
  const file = configFile ?? options.file;
  let config = clone(DEFAULT_CONFIG);
  if (file !== undefined) {
    let text: string;
    try {
      text = await Deno.readTextFile(file);
    } catch (e) {
      throw new ConfigError(`${file}: cannot read config file (${(e as Error).message})`);
    }
    let doc: unknown;
    try {
      doc = parseYaml(text);
    } catch (e) {
      throw new ConfigError(`${file}: not valid YAML (${(e as Error).message})`);
    }
    config = configFromObject(doc, file);
  }
  config = applyOverrides(config, overrides, "command line");
  validateConfig(config, file ? `${file} + command line` : "command line");
  return config;
}
