/**
 * `deno task train`: trains a GPT from scratch (or resumes one), then prints a sample.
 *
 * With no arguments: the default small byte-level GPT on the built-in corpus
 * (US State of the Union addresses), prepared once under `.cache/`, with
 * checkpoints, metrics and the loss plot under `runs/sotu/`.
 *
 *   deno task train                          # the default run
 *   deno task train --config my.yaml         # a YAML file over the defaults
 *   deno task train --train-iters 100 --lr 3e-4 --save runs/try
 *   deno task train --load runs/sotu         # resume from the latest checkpoint
 *   deno task train --init-from-hf gpt2/ --tokenizer gpt2 --data-path my_text   # fine-tune
 *     # GPT-2 weights from a Hugging Face directory (config.json + model.safetensors)
 *   deno task launch --nproc-per-node 2 tools/train.ts   # data parallel over 2 ranks
 *   deno task launch --nproc-per-node 4 tools/train.ts \
 *     --tensor-model-parallel-size 2 --pipeline-model-parallel-size 2   # TP2 × PP2
 *
 * @module
 */

import {
  ConfigError,
  configHelp,
  fitDefaultBatchSizes,
  loadConfig,
  modelKeysOf,
} from "../lib/train/config.ts";
import { latestCheckpoint, listCheckpoints } from "../lib/io/checkpoint.ts";
import { loadTokenizer, type Tokenizer } from "../lib/data/tokenizer.ts";
import { loadHf } from "../lib/io/hf.ts";
import { DenotronError } from "../lib/errors.ts";
import { GPT, type GPTConfig, gptConfigWithDefaults, isGpt2Architecture } from "../lib/nn/gpt.ts";
import { prepareSotuCorpus } from "../lib/data/sotu.ts";
import { openDatasets, type OpenedData } from "../lib/data/blended_dataset.ts";
import { gptConfigFrom, train, Trainer } from "../lib/train/trainer.ts";
import type { TrainConfig } from "../lib/train/config.ts";
import { formatDuration, formatSi } from "../lib/train/logging.ts";
import { generate } from "../lib/infer/generate.ts";
import { ThreadTuner } from "../lib/train/threads.ts";
import { initDistributed, initParallelGroups } from "../lib/parallel/init.ts";
import { ExitSignalHandler } from "../lib/parallel/signals.ts";
import { setDistributedTimeoutMinutes } from "../lib/parallel/timeouts.ts";
import { runMain } from "./cli.ts";
import { dirname } from "node:path";
import { buildSftDatasets } from "../lib/data/sft_dataset.ts";
import { chatTemplate, FALLBACK_CHAT_TEMPLATE, loadChatTemplate } from "../lib/serve/chat.ts";
import { fromCheckpoint } from "../lib/infer/sources.ts";
import { BERT_BASE_UNCASED, WordPieceTokenizer } from "../lib/data/wordpiece.ts";
import { prepareSotuSentences } from "../lib/data/sotu.ts";
import { IndexedDataset } from "../lib/data/indexed_dataset.ts";
import { buildBertDatasets } from "../lib/data/bert_dataset.ts";
import { isEncoder } from "../lib/nn/gpt_config.ts";
import type { TrainingSamples } from "../lib/train/batches.ts";
import { namedFromFlat } from "../lib/train/engine.ts";
import { CheckpointError, type NamedTensors } from "../lib/io/checkpoint.ts";

const CACHE_DIR = ".cache";
/** The time budget of a run on the built-in corpus (the README's main command). */
const DEFAULT_RUN_MINUTES = 8;
const SAMPLE_PROMPT = "Fellow-Citizens of the Senate and House of Representatives: ";

/** What a command built on the training run (deno task finetune) adds to it. */
export interface TrainCommandOptions {
  /**
   * Runs on the logging rank after training, before the model is freed, instead of the
   * default sample: e.g. scoring generations on a held-out split.
   */
  afterTraining?: (run: FinishedRun) => Promise<void>;
  /** The run's splits instead of the config's data keys (a built-in task's data). */
  data?: (config: TrainConfig, tokenizer: Tokenizer) => Promise<RunData>;
  /**
   * Changes the model keys once the starting weights' shape is known (a task's head on a
   * pretrained encoder); `fresh` names the parameters the weights do not hold.
   */
  model?: { adjust: (m: TrainConfig["model"]) => void; fresh: readonly string[] };
}

/** A finished training run, for {@linkcode TrainCommandOptions.afterTraining}. */
export interface FinishedRun {
  /** The trainer (its model, config, tokenizer). */
  trainer: Trainer;
  /** What the run did: iterations, checkpoint, last evaluation. */
  summary: Awaited<ReturnType<typeof train>>;
  /** Prints on the logging rank. */
  log: (line: string) => void;
  /**
   * The trained model whole in this process, for what runs after training (a sample,
   * scores): the trainer's own in one process or under data parallelism; under tensor or
   * pipeline parallelism the run's last checkpoint read back into one process. null when
   * a model-parallel run saved none (no --save).
   */
  wholeModel: () => Promise<GPT | null>;
}

/**
 * {@linkcode FinishedRun.wholeModel} of a run: the trainer's model, or the last checkpoint
 * read back (kept for the run's later calls and freed with the trainer's model).
 */
function wholeModelOf(
  trainer: Trainer,
  summary: FinishedRun["summary"],
  loaded: GPT[],
): () => Promise<GPT | null> {
  return async () => {
    if (trainer.model instanceof GPT) return trainer.model;
    if (!summary.checkpoint) return null;
    if (!loaded.length) loaded.push((await fromCheckpoint(summary.checkpoint)).model);
    return loaded[0];
  };
}

/**
 * The training command: a config from the arguments, data, model, the one loop, a sample.
 *
 * @param args command-line arguments
 * @param o what a command built on it adds
 */
export async function trainCommand(args: string[], o: TrainCommandOptions = {}): Promise<void> {
  if (args.includes("--help") || args.includes("-h")) {
    console.log(configHelp());
    return;
  }
  const wallStart = performance.now();
  const config = await loadConfig({ args });
  // Started by the launcher (or torchrun, SLURM): data parallel over the ranks.
  setDistributedTimeoutMinutes(config.parallel.distributedTimeoutMinutes);
  await using dist = Deno.env.get("WORLD_SIZE") ? await initDistributed() : null;
  const groups = dist &&
    await initParallelGroups(dist, {
      tp: config.parallel.tensorModelParallelSize,
      pp: config.parallel.pipelineModelParallelSize,
    });
  const { tensorModelParallelSize: tp, pipelineModelParallelSize: pp } = config.parallel;
  const modelParallel = tp * pp > 1;
  if (modelParallel) requireLauncher(tp, pp, groups !== null);
  // Only rank 0 speaks.
  const log = (dist?.rank ?? 0) === 0 ? console.log : () => {};
  const fitted = fitDefaultBatchSizes(config, groups?.data.size ?? 1);
  if (fitted) log(fitted);
  // An encoder reads WordPiece: with the default byte tokenizer, it gets BERT's own
  // vocabulary (recorded in the config, so checkpoints reload it).
  const encoder = config.model.attentionMaskType === "padding";
  if (encoder && config.data.tokenizer === "byte") {
    config.data.tokenizer = BERT_BASE_UNCASED;
    log(`tokenizer: ${BERT_BASE_UNCASED} (an encoder reads WordPiece; --tokenizer names another)`);
  }
  const tokenizer = await loadTokenizer(config.data.tokenizer);

  const prepStart = performance.now();
  const t = config.training;
  const d = config.data;
  const builtIn = d.dataPath === null && !d.trainDataPath && !d.validDataPath && !d.testDataPath;
  const save = config.checkpoints.save;
  // Under the launcher rank 0 prepares the corpus (and the blend's cached indices) first;
  // the others then find them ready.
  if (dist && dist.rank !== 0) dist.world.barrier();
  let data: RunData;
  try {
    data = o.data
      ? await o.data(config, tokenizer)
      : d.sft
      ? await openSftData(config, tokenizer)
      : encoder
      ? await openBertData(config, tokenizer, builtIn)
      : await openDatasets({
        dataPath: builtIn ? [await prepareSotuCorpus(CACHE_DIR, tokenizer)] : d.dataPath,
        trainDataPath: d.trainDataPath,
        validDataPath: d.validDataPath,
        testDataPath: d.testDataPath,
        split: d.split,
        seqLength: config.model.seqLength,
        seed: t.seed,
        numSamples: [t.trainIters * t.globalBatchSize, undefined, undefined],
        vocabSize: config.model.vocabSize ?? tokenizer.vocabSize,
        cacheDir: d.dataCachePath ?? (save ? `${save}/data_cache` : null),
      });
  } finally {
    if (dist && dist.rank === 0) dist.world.barrier();
  }
  using _files = data;
  const { train: trainData, valid } = data;
  if (!trainData) throw new ConfigError(`split "${d.split}" leaves no training data`);
  const tokens = sum(data.files.map((f) => sum(f.sequenceLengths)));
  const documents = sum(data.files.map((f) => f.documentCount));
  const ready = formatDuration((performance.now() - prepStart) / 1000);
  log(
    d.sft
      ? `data: fine-tuning examples, ready in ${ready}`
      : `data: ${data.files.map((f) => f.prefix).join(", ")} (${formatSi(tokens)} tokens, ` +
        `${documents} documents), ready in ${ready}`,
  );
  for (const line of data.summary) log(`  ${line}`);

  if (config.checkpoints.initFromHf && config.checkpoints.pretrainedCheckpoint) {
    throw new ConfigError(
      `initFromHf and pretrainedCheckpoint both name starting weights; give one of them`,
    );
  }
  using initModel = await modelFromHf(config, tokenizer);
  if (initModel) {
    const c = initModel.config;
    const arch = isGpt2Architecture(c) ? "GPT-2" : isEncoder(c) ? "BERT" : "Llama";
    log(`weights: ${config.checkpoints.initFromHf} (Hugging Face ${arch})`);
  }
  const pretrained = await pretrainedWeights(config, tokenizer);
  if (pretrained) log(`weights: ${pretrained.source} (pretrained checkpoint)`);
  if (o.model) {
    o.model.adjust(config.model);
    if (pretrained) pretrained.fresh = o.model.fresh;
  }
  using trainer = new Trainer({
    config,
    train: trainData,
    valid,
    tokenizer,
    ...(groups ? { groups } : {}),
    ...(initModel ? { model: initModel } : {}),
    ...(pretrained ? { initialWeights: pretrained } : {}),
  });
  // With starting weights, --load resumes only when it holds a checkpoint: rerunning the
  // same fine-tuning command continues the job.
  const load = config.checkpoints.load;
  if (load && !((initModel || pretrained) && !await hasCheckpoint(load))) {
    const state = await trainer.load(load);
    log(`resumed from ${load} at iteration ${state.iteration}`);
  }
  log(`model: ${describeModel(trainer.model, config, trainer.dataParallelSize)}`);
  if (dist && dist.worldSize > 1) {
    log(`communication: ${dist.world.backend} backend, ${dist.worldSize} ranks`);
  }
  const b = trainer.optimizer.bytesPerParameter();
  if (dist && b) {
    const total = b.total.toFixed(3);
    log(
      `optimizer: ${total} bytes per parameter on each of ${trainer.dataParallelSize} ` +
        `data-parallel ranks (model ${b.modelParams}, grads ${b.grads}, main params ` +
        `${b.mainParams.toFixed(3)}, moments ${b.adamMoments.toFixed(3)})`,
    );
  }
  const device = trainer.engine.params.data.device;
  log(`device: ${device.info()}`);
  log(
    `training: ${t.trainIters} iterations of ${t.globalBatchSize} x ${config.model.seqLength} ` +
      `tokens (micro-batch ${t.microBatchSize}), lr ${t.lr} (${t.lrDecayStyle}, warmup ` +
      `${t.lrWarmupIters}), save to ${config.checkpoints.save ?? "(nowhere)"}`,
  );

  // The built-in corpus run is the README's first command: on a slow or loaded laptop it
  // stops (with a checkpoint) after DEFAULT_RUN_MINUTES unless --exit-duration-in-mins says.
  const budgetMinutes = t.exitDurationInMins ??
    (builtIn ? DEFAULT_RUN_MINUTES : null);
  // Ctrl-C or SIGTERM (SLURM's preemption, forwarded to every rank by the launcher) stops
  // after the current step and still saves; all ranks agree on the step (train()). A second
  // signal quits at once.
  const stop = new AbortController();
  const exit = new ExitSignalHandler({
    onSignal: (signal) => {
      log(`\n${signal}: finishing this step and saving (again to quit now)`);
      stop.abort();
    },
  });
  // Unless told otherwise, keep measuring whether all cores or one is faster right now.
  const cores = device.numThreads;
  const threadsUnset = Deno.env.get("DENOTRON_NUM_THREADS") === undefined;
  // Ranks on one machine share its cores instead of each taking all of them.
  if (dist && threadsUnset) {
    device.numThreads = Math.max(1, Math.floor(cores / dist.env.localWorldSize));
  }
  const tuner = !dist && threadsUnset && cores > 1
    ? new ThreadTuner({ candidates: [...new Set([cores, Math.ceil(cores / 2), 1])] })
    : undefined;
  if (tuner) device.numThreads = tuner.current;
  const summary = await train(trainer, {
    hooks: tuner && {
      afterStep: (_, r) => {
        device.numThreads = tuner.record(r.seconds);
      },
    },
    signal: stop.signal,
    maxSeconds: budgetMinutes === null ? undefined : budgetMinutes * 60,
  });
  exit.dispose();

  log(
    `done: ${summary.iterations} iterations in ${formatDuration(summary.seconds)} ` +
      `(${formatSi(summary.tokensPerSecond)} tokens/s; stopped by ${summary.stoppedBy})`,
  );
  if (summary.lastEval) {
    const e = summary.lastEval;
    log(
      `validation: loss ${e.loss.toFixed(4)}, perplexity ${e.perplexity.toFixed(2)}, ` +
        `${e.bitsPerByte.toFixed(4)} bits per byte`,
    );
  }
  if (tuner) device.numThreads = cores;
  if (summary.checkpoint) log(`checkpoint: ${summary.checkpoint}`);
  if (summary.metrics) log(`metrics: ${summary.metrics}`);
  if (summary.plot) {
    log(`loss plot: ${summary.plot.svg}${summary.plot.png ? `, ${summary.plot.png}` : ""}`);
  }

  if (dist && dist.rank !== 0) return;
  // what runs after training reads the model whole: under TP/PP the last checkpoint
  const loaded: GPT[] = [];
  const wholeModel = wholeModelOf(trainer, summary, loaded);
  try {
    if (o.afterTraining) await o.afterTraining({ trainer, summary, log, wholeModel });
    else await writeSample(config, trainer, summary, log, wholeModel);
  } finally {
    for (const m of loaded) m.dispose();
  }
  log(`total wall time ${formatDuration((performance.now() - wallStart) / 1000)}`);
}

/** The default end of a run: a sample from the trained decoder (none from an encoder). */
async function writeSample(
  config: TrainConfig,
  trainer: Trainer,
  summary: FinishedRun["summary"],
  log: (line: string) => void,
  wholeModel: FinishedRun["wholeModel"],
): Promise<void> {
  if (config.data.sft) {
    log(`\nsample: deno task generate --checkpoint ${summary.checkpoint ?? "<checkpoint>"}`);
    return;
  }
  if (isEncoder(trainer.engine.modelConfig)) return; // an encoder writes no text
  const model = await wholeModel();
  if (!model) {
    log("\nsample: skipped (under model parallelism the sample reads the checkpoint: --save)");
    return;
  }
  const tokenizer = trainer.tokenizer;
  const prompt = tokenizer.encode(SAMPLE_PROMPT);
  // KV-cached generation; past the model's positions it rebuilds the cache from the
  // most recent half of the context.
  const sample = generate(model, prompt, {
    maxNewTokens: 400,
    temperature: 0.7,
    topK: 10,
    seed: config.training.seed,
    stopAt: tokenizer.eotId,
  });
  log(`\nsample:\n${SAMPLE_PROMPT}${tokenizer.decode(sample)}\n`);
}

/**
 * The model of `initFromHf`, if set, in the config's precision and training mode. Its shape
 * replaces the config's model keys (so checkpoints record it and `--load` rebuilds it);
 * shapes the config cannot express, a vocabulary other than the tokenizer's, or samples
 * longer than its positions are refused with a sentence.
 */
/**
 * Whether `path` holds a checkpoint: false for a missing path or a save directory with
 * nothing saved yet; a damaged `latest` pointer is an error, not a fresh start (that could
 * overwrite what was saved).
 */
async function hasCheckpoint(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  }
  if (/(^|\/)iter_\d{7}\/?$/.test(path)) return true;
  return await latestCheckpoint(path) !== null || (await listCheckpoints(path)).length > 0;
}

async function modelFromHf(config: TrainConfig, tokenizer: Tokenizer): Promise<GPT | null> {
  const dir = config.checkpoints.initFromHf;
  if (!dir) return null;
  const p = config.precision, m = config.model;
  let model: GPT;
  try {
    model = await loadHf(dir, {
      seed: config.training.seed,
      dtype: p.bf16 ? "bf16" : p.fp16 ? "f16" : "f32",
      ...(m.vocabMultiple ? { vocabMultiple: m.vocabMultiple } : {}),
    });
  } catch (e) {
    // a missing or malformed directory is a configuration error: one line, no stack
    if (e instanceof DenotronError) throw new ConfigError(`initFromHf: ${e.message}`);
    throw e;
  }
  try {
    adoptModelShape(config, tokenizer, model.config, `initFromHf ${dir}`);
    model.train();
    return model;
  } catch (e) {
    model.dispose();
    throw e;
  }
}

/** A run's splits: decoder samples (one of openDatasets' kinds), or an encoder's. */
export type RunData = Omit<OpenedData, "train" | "valid" | "test"> & {
  train?: TrainingSamples;
  valid?: TrainingSamples;
  test?: TrainingSamples;
};

/**
 * BERT's samples (Megatron's BERT dataset: sentence pairs, masking, the binary head's
 * task) from a sentence-split indexed dataset: the built-in corpus as sentences, or the one
 * prefix of `dataPath` (written by `deno task preprocess --split-sentences`), cut by `split`.
 */
async function openBertData(
  config: TrainConfig,
  tokenizer: Tokenizer,
  builtIn: boolean,
): Promise<RunData> {
  const d = config.data, m = config.model, t = config.training;
  if (!(tokenizer instanceof WordPieceTokenizer)) {
    throw new ConfigError(
      `an encoder masks WordPiece tokens; --tokenizer ${d.tokenizer} is not WordPiece ` +
        `(use ${BERT_BASE_UNCASED}, BertWordPieceLowerCase with a vocab.txt, or a vocab.txt path)`,
    );
  }
  if (d.trainDataPath || d.validDataPath || d.testDataPath) {
    throw new ConfigError(
      "an encoder reads one sentence-split dataset cut by --split (--data-path PREFIX); " +
        "--train-data-path, --valid-data-path and --test-data-path are for decoders",
    );
  }
  const words = d.dataPath ?? [];
  if (!builtIn && words.length !== 1) {
    throw new ConfigError(
      `an encoder reads one sentence-split dataset (--data-path PREFIX), not a blend of ${words.length} words`,
    );
  }
  const prefix = builtIn ? await prepareSotuSentences(CACHE_DIR, tokenizer) : words[0];
  const ds = await IndexedDataset.open(prefix);
  try {
    const pairTask = m.bertBinaryHead ? (d.nextSentencePrediction ? "nsp" : "sop") : "none";
    const splits = buildBertDatasets(ds, {
      seqLength: m.seqLength,
      vocab: tokenizer,
      seed: t.seed,
      split: d.split,
      numSamples: [t.trainIters * t.globalBatchSize, undefined, undefined],
      shortSeqProb: d.shortSeqProb ?? 0.1,
      maskProb: d.maskProb ?? 0.15,
      wholeWordMasking: d.wholeWordMasking ?? false,
      pairTask,
    });
    const parts = [splits.train, splits.valid, splits.test].filter((x) => x !== undefined);
    return {
      ...splits,
      files: [ds],
      summary: [
        `BERT samples: ${pairTask === "none" ? "one segment" : pairTask} pairs, ` +
        `${(d.maskProb ?? 0.15) * 100}% masked${d.wholeWordMasking ? " (whole words)" : ""}`,
        ...parts.map((x) =>
          `${x.name}: ${x.length} samples (${x.epochs} epoch${x.epochs === 1 ? "" : "s"})`
        ),
      ],
      [Symbol.dispose]() {
        ds.close();
      },
    };
  } catch (e) {
    ds.close();
    throw e;
  }
}

/**
 * The fine-tuning examples of the config's data paths (one JSONL file each; `dataPath`
 * is cut by `split`), packed into rows of seqLength + 1 tokens, chat messages rendered by
 * the tokenizer directory's chat template or the plain one.
 */
async function openSftData(config: TrainConfig, tokenizer: Tokenizer): Promise<OpenedData> {
  const d = config.data;
  const one = (flag: string, words: string[] | null | undefined): string | undefined => {
    if (!words || words.length === 0) return undefined;
    if (words.length > 1) {
      throw new ConfigError(`${flag} with --sft takes one JSONL file, got ${words.length} words`);
    }
    return words[0];
  };
  const train = one("--train-data-path", d.trainDataPath) ?? one("--data-path", d.dataPath);
  if (!train) {
    throw new ConfigError(
      `--sft needs the fine-tuning data: --data-path FILE.jsonl (cut by --split), or ` +
        `--train-data-path FILE.jsonl with --valid-data-path`,
    );
  }
  const valid = one("--valid-data-path", d.validDataPath);
  const test = one("--test-data-path", d.testDataPath);
  if (d.trainDataPath && d.dataPath) {
    throw new ConfigError(`--data-path and --train-data-path both name the training data`);
  }
  const dir = tokenizerDirectory(d.tokenizer);
  const template = (dir ? await loadChatTemplate(dir) : null) ??
    chatTemplate(FALLBACK_CHAT_TEMPLATE, { origin: "the plain chat template" });
  const splits = await buildSftDatasets(
    { train, ...(valid ? { valid } : {}), ...(test ? { test } : {}) },
    tokenizer,
    {
      seqLength: config.model.seqLength,
      split: d.split,
      seed: config.training.seed,
      pack: d.sftPack ?? true,
      render: (messages) => template.render(messages),
    },
  );
  const parts = [splits.train, splits.valid, splits.test].filter((x) => x !== undefined);
  return {
    ...splits,
    files: [],
    summary: [
      `chat messages rendered by ${template.origin}`,
      ...parts.map((x) => x.describe()),
    ],
    [Symbol.dispose]() {},
  };
}

/** The directory of a tokenizer given as a path (tokenizer.json or its folder), else null. */
function tokenizerDirectory(name: string): string | null {
  if (name === "byte" || name === "gpt2" || !name.includes("/") && !name.endsWith(".json")) {
    return null;
  }
  return name.endsWith(".json") ? dirname(name) : name;
}

/**
 * Makes the config's model keys describe `c`, the shape of the starting weights, so that
 * checkpoints record it and `--load` rebuilds it; a vocabulary other than the tokenizer's,
 * samples longer than its positions, or a shape the config cannot express are refused
 * with a sentence that starts with `origin`.
 */
function adoptModelShape(
  config: TrainConfig,
  tokenizer: Tokenizer,
  c: Required<GPTConfig>,
  origin: string,
  trainedWith?: string,
): void {
  const m = config.model;
  const hint = trainedWith ?? (c.vocabSize === 50257 ? "gpt2" : undefined);
  const refuse = (msg: string): never => {
    throw new ConfigError(`${origin}: ${msg}`);
  };
  if (c.vocabSize !== tokenizer.vocabSize) {
    refuse(
      `the model's vocabulary has ${c.vocabSize} tokens, the tokenizer "${tokenizer.name}" ` +
        `${tokenizer.vocabSize}${hint ? `; use --tokenizer ${hint}` : ""}`,
    );
  }
  if (m.seqLength > c.blockSize) {
    refuse(`seqLength ${m.seqLength} exceeds the model's ${c.blockSize} positions`);
  }
  Object.assign(
    m,
    {
      ...modelKeysOf(c),
      vocabSize: c.vocabSize,
      maxPositionEmbeddings: c.blockSize,
    } satisfies Partial<typeof m>,
  );
  // the config must rebuild this very shape, or checkpoints and --load would not
  const rebuilt = gptConfigWithDefaults({
    ...gptConfigFrom(config, tokenizer),
    dropout: c.dropout,
  });
  const lost = (Object.keys(c) as (keyof GPTConfig)[])
    .filter((k) => JSON.stringify(rebuilt[k]) !== JSON.stringify(c[k]));
  if (lost.length) {
    refuse(
      `the training config cannot describe its ${
        lost.map((k) => `${k} ${JSON.stringify(c[k])}`).join(", ")
      }`,
    );
  }
}

/**
 * The weights of `pretrainedCheckpoint`, if set, as full tensors; the checkpoint's model
 * shape replaces the config's model keys (see adoptModelShape).
 */
async function pretrainedWeights(
  config: TrainConfig,
  tokenizer: Tokenizer,
): Promise<{ tensors: NamedTensors; source: string; fresh?: readonly string[] } | null> {
  const path = config.checkpoints.pretrainedCheckpoint;
  if (!path) return null;
  let source;
  try {
    source = await fromCheckpoint(path);
  } catch (e) {
    if (e instanceof DenotronError || e instanceof CheckpointError) {
      throw new ConfigError(`pretrainedCheckpoint: ${e.message}`);
    }
    throw e;
  }
  using model = source.model;
  adoptModelShape(
    config,
    tokenizer,
    model.config,
    `pretrainedCheckpoint ${source.origin}`,
    source.tokenizer.name,
  );
  const tensors = namedFromFlat(model.params.entries, {
    "": model.params.data.toArray() as Float32Array,
  });
  return { tensors, source: `${source.origin}/model.safetensors` };
}

/** TP/PP need their ranks: run alone, the command says how to launch them. */
function requireLauncher(tp: number, pp: number, launched: boolean): void {
  if (launched) return;
  throw new ConfigError(
    `tensorModelParallelSize ${tp} × pipelineModelParallelSize ${pp} needs ${tp * pp} ranks: ` +
      `run it under the launcher (deno task launch --nproc-per-node ${tp * pp} tools/train.ts ...)`,
  );
}

/** The model line of the log: its shape, and under TP/PP how it is split. */
function describeModel(model: { toString(): string }, config: TrainConfig, dp: number): string {
  const p = config.parallel;
  const { tensorModelParallelSize: tp, pipelineModelParallelSize: pp } = p;
  if (tp * pp === 1) return String(model);
  const m = config.model;
  return `${m.nLayer} layers, ${m.nEmbd} wide, split TP ${tp} × PP ${pp}${
    p.virtualPipelineModelParallelSize
      ? ` (${p.virtualPipelineModelParallelSize} virtual stages per rank)`
      : ""
  } × DP ${dp}${p.sequenceParallel ? ", sequence parallel" : ""}${
    p.recomputeGranularity ? `, ${p.recomputeGranularity} recomputation` : ""
  }`;
}

function sum(a: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i];
  return s;
}

if (import.meta.main) await runMain(() => trainCommand(Deno.args));
