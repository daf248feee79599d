/**
 * The training configuration: defaults, a YAML file, command-line overrides, and
 * validation whose errors name the key, the flag and the way out.
 *
 * defines: loadConfig, configFromObject, applyOverrides, parseArgsToOverrides,
 *          validateConfig, configHelp (and re-exports the table's TrainConfig, DEFAULT_CONFIG,
 *          CONFIG_KEYS and ConfigError)
 *
 * Each key is declared once, in lib/train/config_keys.ts (the parallel section in
 * lib/parallel/parallel_config.ts); this file only reads values against that table.
 * Every key is unique across sections, so a YAML file may nest keys under their
 * section or list them flat, and `--key value` needs no section. A key is accepted in
 * any spelling of its name (`train-iters`, `train_iters`, `trainIters`), of its flag
 * (`--num-layers` for nLayer) and of its aliases.
 *
 * @module
 */

import { closestName } from "../cli_args.ts";
import { parse as parseYaml } from "yaml";
import { parseSplit } from "../data/gpt_dataset.ts";
import { isHfTokenizerPath } from "../data/tokenizer.ts";
import { isWordPieceName } from "../data/wordpiece.ts";
import { batchSizeProblem, modelParallelProblems } from "../parallel/parallel_config.ts";
import { rampupBatchSizeAt } from "../curriculum/batch_rampup.ts";
import { seqLenCurriculumFor } from "../curriculum/seqlen.ts";
import { ConfigError, type KeyDecl, type KeySection, readValue } from "../key_table.ts";
import { causeText, fmtValue } from "../errors.ts";
import { CONFIG_KEYS, DEFAULT_CONFIG, type TrainConfig } from "./config_keys.ts";
import { GPT_PRESETS, type GPTConfig, gptConfigWithDefaults } from "../nn/gpt.ts";

export { ConfigError };
export * from "./config_keys.ts";

type Section = keyof TrainConfig;

/** `train-iters`, `train_iters` and `trainIters` all become `trainIters`. */
function camel(key: string): string {
  return key.replace(/[-_]+([a-zA-Z0-9])/g, (_, c: string) => c.toUpperCase());
}

/** Every key with its section and declaration. */
const KEYS = new Map<string, { section: Section; decl: KeyDecl }>();
/** Every accepted name (camelCased) to its key: the key, its flag and its aliases. */
const NAMES = new Map<string, string>();
for (const [section, keys] of Object.entries(CONFIG_KEYS) as [Section, Record<string, KeyDecl>][]) {
  for (const [key, decl] of Object.entries(keys)) {
    if (KEYS.has(key)) throw new Error(`config key ${key} is declared in two sections`);
    KEYS.set(key, { section, decl });
  }
}
for (const [key, { decl }] of KEYS) {
  for (const name of [key, camel(decl.flag.slice(2)), ...(decl.aliases ?? [])]) {
    const other = NAMES.get(name);
    if (other !== undefined && other !== key) {
      throw new Error(`config name ${name} would mean both ${other} and ${key}`);
    }
    NAMES.set(name, key);
  }
}

/** The closest known name, if close enough to be a likely typo. */
function closestKey(key: string): string | undefined {
  return closestName(key, [...NAMES.keys(), ...Object.keys(CONFIG_KEYS)]);
}

function resolveKey(raw: string, where: string, shown = raw): string {
  const key = NAMES.get(camel(raw));
  if (key !== undefined) return key;
  const hint = closestKey(camel(raw));
  if (where.startsWith("command line")) {
    // On the command line the answer is a flag, in Megatron's spelling.
    const flag = hint && KEYS.get(NAMES.get(hint) ?? hint)?.decl.flag;
    throw new ConfigError(
      `${where}unknown option --${raw}` +
        (flag ? `; did you mean ${flag}?` : "; --help lists every option"),
    );
  }
  throw new ConfigError(
    `${where}unknown key ${fmtValue(shown)}` +
      (hint ? `; did you mean "${hint}"?` : `; known keys: ${[...KEYS.keys()].join(", ")}`),
  );
}

/**
 * Training keys a preset brings beside its shape, where the general default does not
 * train it: post-LN encoders are less stable than pre-LN decoders at the same step size.
 * BERT-Tiny at the default lr 3e-3 collapses its [CLS] within 200 steps (the pooled
 * output stops depending on the input, and a classifier fine-tuned from it stays at the
 * majority class); at 1e-3 it pretrains and fine-tunes (bench/RESULTS.md). BERT-base takes
 * the BERT paper's 1e-4. Keys given beside `--model` still win.
 */
const PRESET_TRAINING: Record<string, Partial<TrainConfig["training"]>> = {
  "bert-tiny": { lr: 1e-3, minLr: 1e-4 },
  "bert-base": { lr: 1e-4, minLr: 1e-5 },
};

/**
 * The configuration keys of a model preset (lib/nn/gpt.ts GPT_PRESETS): shape and
 * architecture, and the training keys of {@linkcode PRESET_TRAINING}; the vocabulary and
 * positions stay the run's.
 */
function presetKeys(
  name: string,
  where: string,
): Partial<TrainConfig["model"]> & Partial<TrainConfig["training"]> {
  const p = GPT_PRESETS[name];
  if (!p) {
    throw new ConfigError(
      `${where}modelPreset: no model ${fmtValue(name)}; known: ${
        Object.keys(GPT_PRESETS).join(", ")
      } ` +
        `(--model)`,
    );
  }
  return { ...modelKeysOf(gptConfigWithDefaults(p)), ...PRESET_TRAINING[name] };
}

/**
 * The model section's keys for a model's shape and architecture, decoder or encoder
 * (everything but its vocabulary, positions and dropout): what `--model` and
 * `--init-from-hf` set.
 *
 * @param c the model's config, defaults filled in
 * @returns config keys and values
 */
export function modelKeysOf(c: Required<GPTConfig>): Partial<TrainConfig["model"]> {
  return {
    nLayer: c.nLayer,
    nHead: c.nHead,
    nEmbd: c.nEmbd,
    ffnHiddenSize: c.ffnHidden === 4 * c.nEmbd ? null : c.ffnHidden,
    numQueryGroups: c.nKvHead === c.nHead ? null : c.nKvHead,
    normalization: c.normalization,
    normEpsilon: c.layerNormEps,
    positionEmbeddingType: c.positionEmbedding,
    rotaryBase: c.ropeTheta,
    useRopeScaling: c.ropeScaling !== null,
    ropeScalingFactor: c.ropeScaling?.factor ?? 8,
    swiglu: c.activation === "swiglu",
    disableBiasLinear: !c.bias,
    untieEmbeddingsAndOutputWeights: !c.tieEmbeddings,
    attentionMaskType: c.attentionMask,
    normPosition: c.normPosition,
    numTokentypes: c.numTokenTypes,
    geluApproximation: c.gelu,
    pooler: c.pooler,
    outputTransform: c.outputTransform,
    bertBinaryHead: c.binaryHead,
    numLabels: c.numLabels,
  };
}

/** Whether `raw` names a key whose value is the list of words after its flag. */
function isWordsKey(raw: string): boolean {
  const key = NAMES.get(camel(raw));
  return key !== undefined && KEYS.get(key)!.decl.kind === "words";
}

/** The true/false key that `no-KEY` given alone switches off, if `raw` is one. */
function negatedBool(raw: string, value: unknown): string | null {
  if (value !== true || !/^no[-_A-Z]/.test(raw) || NAMES.has(camel(raw))) return null;
  const key = NAMES.get(camel(raw.replace(/^no[-_]?/, "")));
  return key !== undefined && KEYS.get(key)!.decl.kind === "bool" ? key : null;
}

function clone(c: Readonly<TrainConfig>): TrainConfig {
  return structuredClone(c) as TrainConfig;
}

function setKey(config: TrainConfig, key: string, value: unknown): void {
  const section = KEYS.get(key)!.section;
  // Optional sections (curriculum, layerDrop) may be missing from a config written before them.
  const sections = config as unknown as Record<string, Record<string, unknown>>;
  sections[section] ??= structuredClone(DEFAULT_CONFIG[section]) as unknown as Record<
    string,
    unknown
  >;
  sections[section][key] = value;
}

/**
 * Applies overrides given as `{key: value}` (flat; any spelling of a key or its flag).
 *
 * @param config the configuration to start from (not modified)
 * @param overrides values by key; strings are parsed for numeric keys
 * @param source where they came from, for errors ("command line", a file)
 * @returns the new configuration
 * @throws {ConfigError} naming the key, its flag and the value when one does not fit
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
  let out = clone(config);
  const where = source ? `${source}: ` : "";
  // A preset goes first: the keys given beside it change it.
  const entries = Object.entries(overrides);
  const isPreset = ([raw]: [string, unknown]) => NAMES.get(camel(raw)) === "modelPreset";
  for (const [raw, value] of entries.filter(isPreset)) {
    const name = readValue("modelPreset", KEYS.get("modelPreset")!.decl, value, where);
    if (typeof name === "string") {
      out = applyOverrides(out, presetKeys(name, where) as Record<string, unknown>, "");
    }
    setKey(out, "modelPreset", name);
    void raw;
  }
  for (const [raw, value] of entries.filter((e) => !isPreset(e))) {
    // `--no-sequence-parallel` turns a true/false key off (Megatron's spelling).
    const negated = negatedBool(raw, value);
    if (negated) {
      setKey(out, negated, false);
      continue;
    }
    const key = resolveKey(raw, where);
    setKey(out, key, readValue(key, KEYS.get(key)!.decl, value, where));
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
    if (k in CONFIG_KEYS && v !== null && typeof v === "object" && !Array.isArray(v)) {
      for (const [inner, x] of Object.entries(v as Record<string, unknown>)) {
        const key = resolveKey(inner, `${source}: `, `${k}.${inner}`);
        const section = KEYS.get(key)!.section;
        if (section !== k) {
          throw new ConfigError(
            `${source}: ${k}.${inner}: "${key}" belongs in section "${section}"`,
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
 * Turns `--key value`, `--key=value` and bare `--flag` (true) into overrides. A word
 * after a flag is its value unless it is itself a flag (`--` and a letter), so negative
 * numbers need no `=`: `--lr -1` and `--lr=-1` both give "-1" (which the key's bounds
 * then refuse or accept). A key of kind "words" (`--data-path 0.3 a 0.7 b`) takes every
 * word up to the next flag.
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
): { overrides: Record<string, string | boolean | string[]>; configFile?: string } {
  const overrides: Record<string, string | boolean | string[]> = {};
  let configFile: string | undefined;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (!arg.startsWith("--")) {
      throw new ConfigError(`command line: unexpected "${arg}"; options look like --lr 3e-4`);
    }
    let key = arg.slice(2);
    let value: string | boolean | string[];
    const eq = key.indexOf("=");
    if (eq >= 0) {
      value = key.slice(eq + 1);
      key = key.slice(0, eq);
    } else if (isWordsKey(key)) {
      // Megatron's nargs="*": every word up to the next flag.
      const words: string[] = [];
      while (i + 1 < args.length && !/^--[a-zA-Z]/.test(args[i + 1])) words.push(args[++i]);
      // One word is given as a string, so "null" means null as for any key.
      value = words.length > 1 ? words : words.length ? words[0] : true;
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
 * Checks every key against its declaration (for configurations built in code), then the
 * rules between keys. Each rule is stated once, where its concept lives: the layout's in
 * lib/parallel/parallel_config.ts (`modelParallelProblems`, `batchSizeProblem`), the
 * sequence-length curriculum's in lib/curriculum/seqlen.ts (`seqLenCurriculumFor`).
 *
 * @param c the configuration
 * @param source where it came from, for errors
 * @param layout what the run knows beyond the configuration: its data-parallel size
 *   (world size / (tensor × pipeline)), against which the global batch must split
 * @default layout { dataParallelSize: 1 }
 * @throws {ConfigError} with the first problem as a sentence
 */
export function validateConfig(
  c: Readonly<TrainConfig>,
  source: string,
  layout: { dataParallelSize?: number } = {},
): void {
  const where = source ? `${source}: ` : "";
  const fail = (msg: string): never => {
    throw new ConfigError(where + msg);
  };
  // A configuration built in code has not been through the reader: check each key too.
  const sections = c as unknown as Record<string, Record<string, unknown> | undefined>;
  for (const [key, { section, decl }] of KEYS) {
    const value = sections[section]?.[key];
    if (value !== undefined) readValue(key, decl, value, where);
  }
  const { model: m, training: t, parallel: p } = c;
  const batch = batchSizeProblem(
    t.globalBatchSize,
    t.microBatchSize,
    layout.dataParallelSize ?? 1,
  );
  if (batch) fail(batch);
  if (t.minLr > t.lr) fail(`minLr ${t.minLr} is larger than lr ${t.lr}`);
  const tok = c.data.tokenizer;
  if (tok !== "gpt2" && tok !== "byte" && !isHfTokenizerPath(tok) && !isWordPieceName(tok)) {
    fail(
      `tokenizer ${fmtValue(tok)} is not "gpt2", "byte", "bert-base-uncased", the path of a ` +
        `tokenizer.json (a file ending in .json, or a directory written with a /) or of a ` +
        `WordPiece vocab.txt (--tokenizer)`,
    );
  }
  if (m.nEmbd % m.nHead !== 0) fail(`nEmbd ${m.nEmbd} is not divisible by nHead ${m.nHead}`);
  if (m.numQueryGroups && m.nHead % m.numQueryGroups !== 0) {
    fail(
      `numQueryGroups ${m.numQueryGroups} does not divide nHead ${m.nHead} (--num-query-groups)`,
    );
  }
  if (m.useRopeScaling && m.positionEmbeddingType !== "rope") {
    fail(`useRopeScaling needs positionEmbeddingType rope (--position-embedding-type rope)`);
  }
  for (const problem of modelParallelProblems(m, p)) fail(problem);
  const decay = t.lrDecayIters ?? t.trainIters;
  if (t.lrWarmupIters > decay) {
    fail(`lrWarmupIters ${t.lrWarmupIters} is longer than lrDecayIters ${decay}`);
  }
  if (t.lrDecayStyle === "WSD") {
    const wsd = t.lrWsdDecayIters;
    if (wsd === null) {
      fail(
        `lrDecayStyle WSD needs lrWsdDecayIters, the steps of its decay phase (--lr-wsd-decay-iters)`,
      );
    } else if (wsd > decay - t.lrWarmupIters) {
      fail(
        `lrWsdDecayIters ${wsd} is longer than lrDecayIters ${decay} - lrWarmupIters ` +
          `${t.lrWarmupIters} = ${decay - t.lrWarmupIters} (--lr-wsd-decay-iters)`,
      );
    }
  }
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
    if (cl?.curriculumLearning) seqLenCurriculumFor(cl, c.model.seqLength, () => {});
  } catch (e) {
    if (e instanceof ConfigError) throw e;
    fail((e as Error).message);
  }
}

/**
 * The default batch sizes under data parallelism: the defaults (micro-batch = global batch)
 * fit one process only, so with `dp` data-parallel ranks the micro-batch becomes the global
 * batch's share of each rank and the run makes the single-process run's updates. Keys the
 * user set (any value other than the default) are left alone, and so is a batch ramp-up.
 *
 * @param c the configuration (changed in place)
 * @param dp the data-parallel size
 * @returns a sentence saying what changed, or null when nothing did
 */
export function fitDefaultBatchSizes(c: TrainConfig, dp: number): string | null {
  const t = c.training, d = DEFAULT_CONFIG.training;
  if (dp === 1 || t.rampupBatchSize || t.microBatchSize !== d.microBatchSize) return null;
  if (t.globalBatchSize !== d.globalBatchSize || t.globalBatchSize % dp !== 0) return null;
  if (!batchSizeProblem(t.globalBatchSize, t.microBatchSize, dp)) return null;
  t.microBatchSize = t.globalBatchSize / dp;
  return `microBatchSize ${t.microBatchSize}: the default global batch of ${t.globalBatchSize} ` +
    `split over ${dp} data-parallel ranks (set --micro-batch-size to choose)`;
}

/** What `deno task train --help` prints about each section. */
const SECTION_TITLES: Partial<Record<Section, string>> = {
  model: "network size and architecture",
  training: "training, learning rate and optimizer",
  parallel: "distributed (tensor, pipeline, data parallelism)",
  eval: "validation",
  checkpoints: "checkpointing",
  logging: "logging",
  data: "data and tokenizer",
  precision: "mixed precision",
  curriculum: "curriculum learning",
};

/** How a key's value is written on the command line, for the help text. */
function valueHint(d: KeyDecl): string {
  if (d.choices) return d.choices.join("|");
  return {
    int: "N",
    number: "X",
    bool: "[true|false]",
    ints: "N,N,...",
    words: "S [S ...]",
    string: "S",
  }[d.kind];
}

/**
 * The help text of the training command: every key by section (Megatron's argument
 * groups), its flag, how its value is written, and its default. Built from the key
 * table, so it cannot miss a key.
 *
 * @returns lines for the terminal
 */
export function configHelp(): string {
  const lines = [
    "usage: deno task train [--config FILE.yaml] [--FLAG VALUE ...]",
    "",
    "Each key is a flag (Megatron's name where Megatron has one) and a YAML key (under its",
    "section or flat). Any spelling of the key works too: --train-iters, --trainIters,",
    "--train_iters; a true/false key also takes --no-FLAG. Defaults in brackets.",
  ];
  for (const [section, keys] of Object.entries(CONFIG_KEYS) as [Section, KeySection][]) {
    lines.push("", `${SECTION_TITLES[section] ?? section} (${section}):`);
    for (const [key, d] of Object.entries(keys)) {
      const left = `  ${d.flag} ${valueHint(d)}`;
      const def = d.default === null ? "none" : JSON.stringify(d.default);
      lines.push(`${left.padEnd(48)} ${key} [${def}]`);
    }
  }
  lines.push("", "  --config FILE                                  a YAML file of keys");
  return lines.join("\n");
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
  if (file === "") throw new ConfigError("command line: --config needs a file name, got ''");
  if (file !== undefined) {
    let text: string;
    try {
      text = await Deno.readTextFile(file);
    } catch (e) {
      throw new ConfigError(`${file}: cannot read config file (${causeText(e)})`);
    }
    let doc: unknown;
    try {
      doc = parseYaml(text);
    } catch (e) {
      throw new ConfigError(`${file}: not valid YAML (${causeText(e)})`);
    }
    config = configFromObject(doc, file);
  }
  config = applyOverrides(config, overrides, "command line");
  validateConfig(config, file ? `${file} + command line` : "command line");
  return config;
}
