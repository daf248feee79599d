/**
 * Every training configuration key, declared once: section, kind, default, flag, bounds
 * and a JSDoc line of documentation (see lib/key_table.ts). The section types,
 * `TrainConfig` and `DEFAULT_CONFIG` are derived from this table, and lib/train/config.ts
 * reads YAML and the command line against it.
 *
 * defines: CONFIG_KEYS, ModelConfig, TrainingConfig, ParallelConfig, EvalConfig,
 *          CheckpointConfig, LoggingConfig, DataConfig, PrecisionConfig, CurriculumConfig,
 *          LayerDropConfig, TrainConfig, DEFAULT_CONFIG
 *
 * Keys follow Megatron-LM's arguments in camelCase (`--train-iters` -> `trainIters`);
 * the model keys use the model's own names (nLayer, nHead, nEmbd) with Megatron's flags
 * (`--num-layers`, `--num-attention-heads`, `--hidden-size`), whose camelCase spellings
 * are accepted as aliases. Every key is unique across sections.
 *
 * The upper bounds are generous sanity limits, far above any published model, so that a
 * typo (an extra digit, a missing "e-") fails here with the flag named instead of as an
 * allocation failure minutes later: layers <= 4096, heads <= 1024, width <= 2^16,
 * vocabulary <= 2^24, tokens per sample and position rows <= 2^20, samples per
 * (micro-)batch <= 2^24, iterations <= 1e9. Integers are safe integers (<= 2^53 - 1).
 *
 * @module
 */

import { type KeySection, sectionDefaults, type SectionType } from "../key_table.ts";
import { PARALLEL_KEYS, type ParallelConfig } from "../parallel/parallel_config.ts";
import { LR_DECAY_STYLES, LR_WSD_DECAY_STYLES } from "./lr_schedule.ts";

export type { ParallelConfig };

/** Samples per batch and iterations of a run: upper bounds (see the module notes). */
const MAX_BATCH = 2 ** 24, MAX_ITERS = 1e9;

/**
 * The table: sections, and in each the keys with their declarations and one line of
 * documentation. Read it, never write it.
 */
export const CONFIG_KEYS = {
  model: {
    /** Transformer blocks. */
    nLayer: { kind: "int", default: 4, flag: "--num-layers", min: 1, max: 4096 },
    /** Attention heads. */
    nHead: { kind: "int", default: 4, flag: "--num-attention-heads", min: 1, max: 1024 },
    /** Hidden size. */
    nEmbd: { kind: "int", default: 128, flag: "--hidden-size", min: 1, max: 2 ** 16 },
    /** Vocabulary; null takes the tokenizer's. */
    vocabSize: {
      kind: "int",
      default: null,
      flag: "--vocab-size",
      min: 1,
      max: 2 ** 24,
      nullable: true,
    },
    /**
     * Pads the token table and logits to a multiple of this (128 turns GPT-2's 50257 into
     * 50304, for aligned GPU GEMMs); training is unchanged.
     */
    vocabMultiple: {
      kind: "int",
      default: 1,
      flag: "--make-vocab-size-divisible-by",
      min: 1,
      max: 2 ** 16,
      optional: true,
    },
    /** Tokens per sample. */
    seqLength: { kind: "int", default: 64, flag: "--seq-length", min: 1, max: 2 ** 20 },
    /** Rows of the position table; null: seqLength (Hugging Face GPT-2 weights keep 1024). */
    maxPositionEmbeddings: {
      kind: "int",
      default: null,
      flag: "--max-position-embeddings",
      min: 1,
      max: 2 ** 20,
      nullable: true,
      optional: true,
    },
    /** Dropout probability, in [0, 1). */
    dropout: { kind: "number", default: 0, flag: "--dropout", min: 0, max: 1, exclusiveMax: true },
    /**
     * A model of lib/nn/gpt.ts's GPT_PRESETS ("llama-tiny", "smollm2-135m", "gpt2"...): its
     * shape and architecture keys (not its vocabulary or positions: those follow the
     * tokenizer and seqLength), set before the other keys given with it; an encoder preset
     * also brings its learning rate (bert-tiny 1e-3, bert-base 1e-4); null: none.
     */
    modelPreset: {
      kind: "string",
      default: null,
      flag: "--model",
      nullable: true,
      optional: true,
    },
    /** "layernorm" (GPT-2) or "rmsnorm" (Llama). */
    normalization: {
      kind: "string",
      choices: ["layernorm", "rmsnorm"],
      default: "layernorm",
      flag: "--normalization",
      optional: true,
    },
    /** Normalisation epsilon. */
    normEpsilon: {
      kind: "number",
      default: 1e-5,
      flag: "--norm-epsilon",
      min: 0,
      exclusiveMin: true,
      max: 1,
      optional: true,
    },
    /** "learned" absolute positions (GPT-2) or "rope" (rotary, Llama). */
    positionEmbeddingType: {
      kind: "string",
      choices: ["learned", "rope"],
      default: "learned",
      flag: "--position-embedding-type",
      optional: true,
    },
    /** RoPE's base θ. */
    rotaryBase: {
      kind: "number",
      default: 10000,
      flag: "--rotary-base",
      min: 1,
      exclusiveMin: true,
      max: 1e12,
      optional: true,
    },
    /** Llama 3's RoPE scaling (low/high frequency factors 1 and 4, original length 8192). */
    useRopeScaling: { kind: "bool", default: false, flag: "--use-rope-scaling", optional: true },
    /** Llama 3's RoPE scaling factor (8 for Llama 3.1, 32 for Llama 3.2). */
    ropeScalingFactor: {
      kind: "number",
      default: 8,
      flag: "--rope-scaling-factor",
      min: 1,
      max: 1e6,
      optional: true,
    },
    /** A SwiGLU MLP (silu(gate) · up) instead of GELU. */
    swiglu: { kind: "bool", default: false, flag: "--swiglu", optional: true },
    /** MLP hidden size (each of gate and up with SwiGLU); null: 4 × hiddenSize. */
    ffnHiddenSize: {
      kind: "int",
      default: null,
      flag: "--ffn-hidden-size",
      min: 1,
      max: 2 ** 20,
      nullable: true,
      optional: true,
    },
    /** Key/value heads of grouped-query attention; null: one per query head. */
    numQueryGroups: {
      kind: "int",
      default: null,
      flag: "--num-query-groups",
      min: 1,
      max: 1024,
      nullable: true,
      optional: true,
    },
    /** No biases in the Linears (Llama). */
    disableBiasLinear: {
      kind: "bool",
      default: false,
      flag: "--disable-bias-linear",
      optional: true,
    },
    /** A separate output layer instead of the token embedding's transpose. */
    untieEmbeddingsAndOutputWeights: {
      kind: "bool",
      default: false,
      flag: "--untie-embeddings-and-output-weights",
      optional: true,
    },
    /**
     * "causal" (decoders) or "padding" (encoders such as BERT: each token reads every valid
     * token of its row, both ways).
     */
    attentionMaskType: {
      kind: "string",
      choices: ["causal", "padding"],
      default: "causal",
      flag: "--attention-mask-type",
      optional: true,
    },
    /** "pre" norm blocks (GPT-2, Llama) or "post" norm blocks (BERT). */
    normPosition: {
      kind: "string",
      choices: ["pre", "post"],
      default: "pre",
      flag: "--norm-position",
      optional: true,
    },
    /** Rows of the token-type (segment) embedding; 0: none (BERT: 2). */
    numTokentypes: {
      kind: "int",
      default: 0,
      flag: "--num-tokentypes",
      min: 0,
      max: 1024,
      optional: true,
    },
    /** The GELU: "tanh" (GPT-2's approximation) or "erf" (exact; BERT's). */
    geluApproximation: {
      kind: "string",
      choices: ["tanh", "erf"],
      default: "tanh",
      flag: "--gelu",
      optional: true,
    },
    /** BERT's pooler (tanh of a dense layer on the first token). */
    pooler: { kind: "bool", default: false, flag: "--pooler", optional: true },
    /** BERT's masked-LM transform (dense, GELU, LayerNorm, output bias) before the logits. */
    outputTransform: {
      kind: "bool",
      default: false,
      flag: "--output-transform",
      optional: true,
    },
    /** BERT's binary head on the pooled output: sentence order (or next sentence). */
    bertBinaryHead: {
      kind: "bool",
      default: false,
      flag: "--bert-binary-head",
      optional: true,
    },
    /** Encoders: classes of a sequence-classification head on the pooled output; 0: none. */
    numLabels: {
      kind: "int",
      default: 0,
      flag: "--num-labels",
      min: 0,
      max: 65536,
      optional: true,
    },
  },
  training: {
    /** Samples per forward-backward pass. */
    microBatchSize: {
      kind: "int",
      default: 32,
      flag: "--micro-batch-size",
      min: 1,
      max: MAX_BATCH,
    },
    /** Samples per optimizer step (a multiple of microBatchSize: the rest is accumulation). */
    globalBatchSize: {
      kind: "int",
      default: 32,
      flag: "--global-batch-size",
      min: 1,
      max: MAX_BATCH,
    },
    /** Optimizer steps of the run. */
    trainIters: { kind: "int", default: 800, flag: "--train-iters", min: 1, max: MAX_ITERS },
    /** Peak learning rate, reached at the end of warmup. */
    lr: { kind: "number", default: 3e-3, flag: "--lr", min: 0, exclusiveMin: true },
    /** Learning-rate floor after decay. */
    minLr: { kind: "number", default: 3e-4, flag: "--min-lr", min: 0 },
    /** Steps of linear warmup. */
    lrWarmupIters: { kind: "int", default: 50, flag: "--lr-warmup-iters", min: 0, max: MAX_ITERS },
    /**
     * Shape of the decay after warmup (lib/train/lr_schedule.ts): cosine, linear, constant,
     * WSD (warmup, stable, decay) or inverse-square-root.
     */
    lrDecayStyle: {
      kind: "string",
      choices: LR_DECAY_STYLES,
      default: "cosine",
      flag: "--lr-decay-style",
    },
    /** WSD: the shape of its decay phase (minus_sqrt is 1 - sqrt). */
    lrWsdDecayStyle: {
      kind: "string",
      choices: LR_WSD_DECAY_STYLES,
      default: "exponential",
      flag: "--lr-wsd-decay-style",
    },
    /**
     * WSD: steps of its decay phase, which ends at lrDecayIters (the stable phase holds lr
     * for the lrDecayIters - lrWarmupIters - lrWsdDecayIters steps before it); WSD needs it.
     */
    lrWsdDecayIters: {
      kind: "int",
      default: null,
      flag: "--lr-wsd-decay-iters",
      min: 1,
      max: MAX_ITERS,
      nullable: true,
    },
    /** Steps of decay; null decays over all of trainIters. */
    lrDecayIters: {
      kind: "int",
      default: null,
      flag: "--lr-decay-iters",
      min: 1,
      max: MAX_ITERS,
      nullable: true,
    },
    /** AdamW weight decay (matrices only). */
    weightDecay: { kind: "number", default: 0.1, flag: "--weight-decay", min: 0 },
    /** AdamW first-moment decay, in [0, 1). */
    adamBeta1: {
      kind: "number",
      default: 0.9,
      flag: "--adam-beta1",
      min: 0,
      max: 1,
      exclusiveMax: true,
    },
    /** AdamW second-moment decay, in [0, 1). */
    adamBeta2: {
      kind: "number",
      default: 0.95,
      flag: "--adam-beta2",
      min: 0,
      max: 1,
      exclusiveMax: true,
    },
    /** AdamW epsilon. */
    adamEps: { kind: "number", default: 1e-8, flag: "--adam-eps", min: 0, exclusiveMin: true },
    /** Gradient-norm clip; 0 turns clipping off. */
    clipGrad: { kind: "number", default: 1.0, flag: "--clip-grad", min: 0 },
    /** Seeds initialisation, data order and dropout. */
    seed: { kind: "int", default: 1234, flag: "--seed", min: 0 },
    /**
     * Stop with an error naming the step when a loss or gradient norm is not finite,
     * before the update reaches the weights (fp16 steps skipped for overflow excepted).
     */
    checkForNanInLossAndGrad: {
      kind: "bool",
      default: true,
      flag: "--check-for-nan-in-loss-and-grad",
    },
    /**
     * Stop (with a checkpoint) after the first step at which the training loop has run longer
     * than this many minutes; null: no limit.
     */
    exitDurationInMins: {
      kind: "number",
      default: null,
      flag: "--exit-duration-in-mins",
      min: 0,
      exclusiveMin: true,
      nullable: true,
    },
    /** Stop (with a checkpoint) after an iteration that is a multiple of this; null: never. */
    exitInterval: {
      kind: "int",
      default: null,
      flag: "--exit-interval",
      min: 1,
      max: MAX_ITERS,
      nullable: true,
    },
    /**
     * [start, increment, samples]: the global batch grows from start by increment over that
     * many samples (lib/curriculum/batch_rampup.ts); null: off.
     */
    rampupBatchSize: {
      kind: "ints",
      default: null,
      flag: "--rampup-batch-size",
      min: 1,
      nullable: true,
      optional: true,
    },
  },
  parallel: PARALLEL_KEYS,
  eval: {
    /** Steps between evaluations. */
    evalInterval: { kind: "int", default: 100, flag: "--eval-interval", min: 1 },
    /** Micro-batches per evaluation; 0 turns evaluation off. */
    evalIters: { kind: "int", default: 20, flag: "--eval-iters", min: 0 },
    /** A LAMBADA-style JSONL file ({"text"}) scored at each evaluation (last-word accuracy). */
    evalLambada: {
      kind: "string",
      default: null,
      flag: "--eval-lambada",
      nullable: true,
      optional: true,
    },
    /** A HellaSwag JSONL file (ctx, endings, label) scored at each evaluation (acc, acc_norm). */
    evalHellaswag: {
      kind: "string",
      default: null,
      flag: "--eval-hellaswag",
      nullable: true,
      optional: true,
    },
    /**
     * A JSONL file ({"prompt", "reference"}) whose prompts are completed greedily at each
     * evaluation and scored by ROUGE-1/2/L F1 against the references (a summarisation
     * fine-tune's held-out split).
     */
    evalRouge: {
      kind: "string",
      default: null,
      flag: "--eval-rouge",
      nullable: true,
      optional: true,
    },
    /** Tokens generated per --eval-rouge prompt at most. */
    evalMaxNewTokens: {
      kind: "int",
      default: 32,
      flag: "--eval-max-new-tokens",
      min: 1,
      max: 4096,
      optional: true,
    },
    /** Examples of each evaluation task per evaluation (the file's first ones). */
    evalTaskLimit: {
      kind: "int",
      default: 100,
      flag: "--eval-task-limit",
      min: 1,
      optional: true,
    },
  },
  checkpoints: {
    /** Directory to save to; null saves nothing. */
    save: { kind: "string", default: "runs/sotu", flag: "--save", nullable: true },
    /** Steps between checkpoints. */
    saveInterval: { kind: "int", default: 200, flag: "--save-interval", min: 1 },
    /** Checkpoints kept; older ones are removed. */
    keepLast: { kind: "int", default: 2, flag: "--keep-last", min: 1 },
    /** Directory to resume from; null starts fresh. */
    load: { kind: "string", default: null, flag: "--load", nullable: true },
    /**
     * A Hugging Face GPT-2 directory (config.json + model.safetensors) whose weights start
     * the run; its shape replaces the model keys. With `load` as well, a checkpoint there
     * wins (the same command restarts the job). Null: random init.
     */
    initFromHf: {
      kind: "string",
      default: null,
      flag: "--init-from-hf",
      nullable: true,
      optional: true,
    },
    /**
     * A Denotron checkpoint (or save directory: its latest) whose weights start the run, at
     * iteration 0 with a fresh optimizer (Megatron's --pretrained-checkpoint with
     * --finetune); its model shape replaces the model keys. With `load` as well, a
     * checkpoint there wins. Null: none.
     */
    pretrainedCheckpoint: {
      kind: "string",
      default: null,
      flag: "--pretrained-checkpoint",
      nullable: true,
      optional: true,
    },
  },
  logging: {
    /** Steps between progress lines (each averages the steps since the last). */
    logInterval: { kind: "int", default: 10, flag: "--log-interval", min: 1 },
    /** Also write the metrics as TensorBoard event files here; null: none. */
    tensorboardDir: {
      kind: "string",
      default: null,
      flag: "--tensorboard-dir",
      nullable: true,
    },
  },
  data: {
    /**
     * Indexed dataset prefix, or a blend: "0.3 prefixA 0.7 prefixB" (weights normalised), or
     * prefixes alone (weighted by their sizes); --split cuts each. null: the built-in corpus.
     */
    dataPath: { kind: "words", default: null, flag: "--data-path", nullable: true },
    /** Training data (prefix or blend as for dataPath), used whole; replaces dataPath's split. */
    trainDataPath: {
      kind: "words",
      default: null,
      flag: "--train-data-path",
      nullable: true,
      optional: true,
    },
    /** Validation data (prefix or blend), used whole. */
    validDataPath: {
      kind: "words",
      default: null,
      flag: "--valid-data-path",
      nullable: true,
      optional: true,
    },
    /** Test data (prefix or blend), used whole. */
    testDataPath: {
      kind: "words",
      default: null,
      flag: "--test-data-path",
      nullable: true,
      optional: true,
    },
    /** Where blend indices are cached; null: the save directory's data_cache/ (none unsaved). */
    dataCachePath: {
      kind: "string",
      default: null,
      flag: "--data-cache-path",
      nullable: true,
      optional: true,
    },
    /** Train / valid / test weights, "969,30,1" style. */
    split: { kind: "string", default: "95,5,0", flag: "--split" },
    /**
     * Supervised fine-tuning: the data paths are JSONL files of prompt/response pairs or
     * chat messages (lib/data/sft_dataset.ts); the loss covers the responses only.
     */
    sft: { kind: "bool", default: false, flag: "--sft", optional: true },
    /** With sft: several examples per row, kept apart by positions and attention. */
    sftPack: { kind: "bool", default: true, flag: "--sft-pack", optional: true },
    /** Encoders (BERT): the share of tokens the masked-LM predicts (80% [MASK], 10% random, 10% kept). */
    maskProb: {
      kind: "number",
      default: 0.15,
      flag: "--mask-prob",
      min: 0,
      exclusiveMin: true,
      max: 1,
      optional: true,
    },
    /** Encoders: the probability of a sample with a short target length. */
    shortSeqProb: {
      kind: "number",
      default: 0.1,
      flag: "--short-seq-prob",
      min: 0,
      max: 1,
      optional: true,
    },
    /** Encoders: mask whole words (a token and its "##" pieces together). */
    wholeWordMasking: {
      kind: "bool",
      default: false,
      flag: "--whole-word-masking",
      optional: true,
    },
    /**
     * Encoders with a binary head: next-sentence prediction (B drawn from another document
     * half the time) instead of Megatron's sentence order (A and B swapped half the time).
     */
    nextSentencePrediction: {
      kind: "bool",
      default: false,
      flag: "--next-sentence-prediction",
      optional: true,
    },
    /**
     * Tokenizer: GPT-2's byte-pair encoding ("gpt2"), raw bytes ("byte"), or the path of a
     * Hugging Face tokenizer.json (or the directory holding it).
     */
    tokenizer: {
      kind: "string",
      default: "byte",
      flag: "--tokenizer",
      aliases: ["tokenizerType"],
    },
  },
  precision: {
    /** Train in bf16 (no loss scaling needed). */
    bf16: { kind: "bool", default: false, flag: "--bf16" },
    /** Train in fp16 with loss scaling. */
    fp16: { kind: "bool", default: false, flag: "--fp16" },
    /** Constant loss scale for fp16; null uses the dynamic scaler. */
    lossScale: {
      kind: "number",
      default: null,
      flag: "--loss-scale",
      min: 0,
      exclusiveMin: true,
      nullable: true,
    },
    /** The dynamic scaler's starting scale. */
    initialLossScale: {
      kind: "number",
      default: 2 ** 32,
      flag: "--initial-loss-scale",
      min: 0,
      exclusiveMin: true,
    },
    /** The dynamic scale never backs off below this. */
    minLossScale: {
      kind: "number",
      default: 1,
      flag: "--min-loss-scale",
      min: 0,
      exclusiveMin: true,
    },
    /** Clean steps in a row before the dynamic scale doubles. */
    lossScaleWindow: { kind: "int", default: 1000, flag: "--loss-scale-window", min: 1 },
    /** Overflows tolerated before the dynamic scale halves. */
    hysteresis: { kind: "int", default: 2, flag: "--hysteresis", min: 1 },
  },
  curriculum: {
    /** Turns the sequence-length curriculum on (lib/curriculum/seqlen.ts). */
    curriculumLearning: { kind: "bool", default: false, flag: "--curriculum-learning" },
    /** Length at the start. */
    minDifficulty: { kind: "int", default: 8, flag: "--min-difficulty", min: 1 },
    /** Length at the end; null takes seqLength. */
    maxDifficulty: { kind: "int", default: null, flag: "--max-difficulty", min: 1, nullable: true },
    /** How the length grows: linearly, as a root of progress, or in listed steps. */
    scheduleType: {
      kind: "string",
      choices: ["fixed_linear", "fixed_root", "fixed_discrete"],
      default: "fixed_linear",
      flag: "--schedule-type",
    },
    /** fixed_linear / fixed_root: steps from min to max. */
    totalCurriculumStep: { kind: "int", default: 200, flag: "--total-curriculum-step", min: 1 },
    /** Lengths are multiples of this (a warning when it is not a multiple of 8). */
    difficultyStep: { kind: "int", default: 8, flag: "--difficulty-step", min: 1 },
    /** fixed_root's degree (2: square root). */
    rootDegree: { kind: "number", default: 2, flag: "--root-degree", min: 0, exclusiveMin: true },
    /** fixed_discrete: the lengths. */
    difficulty: { kind: "ints", default: null, flag: "--difficulty", min: 1, nullable: true },
    /** fixed_discrete: the last step of each length but the last. */
    maxStep: { kind: "ints", default: null, flag: "--max-step", min: 1, nullable: true },
    /** Warm up and decay the learning rate by tokens instead of steps. */
    lrByTokens: { kind: "bool", default: false, flag: "--lr-by-tokens" },
  },
  layerDrop: {
    /** Turns progressive layer dropping on (lib/curriculum/layer_drop.ts). */
    progressiveLayerDrop: { kind: "bool", default: false, flag: "--progressive-layer-drop" },
    /** theta_bar: the keep level theta falls to, in (0, 1]. */
    pldTheta: {
      kind: "number",
      default: 0.5,
      flag: "--pld-theta",
      min: 0,
      exclusiveMin: true,
      max: 1,
    },
    /** gamma: how fast theta falls per step. */
    pldGamma: { kind: "number", default: 0.001, flag: "--pld-gamma", min: 0 },
  },
} as const satisfies Record<string, KeySection>;

/** Model shape. */
export type ModelConfig = SectionType<typeof CONFIG_KEYS.model>;
/** Batch, schedule and optimizer. */
export type TrainingConfig = SectionType<typeof CONFIG_KEYS.training>;
/** Evaluation cadence. */
export type EvalConfig = SectionType<typeof CONFIG_KEYS.eval>;
/** Where and how often to save. */
export type CheckpointConfig = SectionType<typeof CONFIG_KEYS.checkpoints>;
/** Progress output. */
export type LoggingConfig = SectionType<typeof CONFIG_KEYS.logging>;
/** Dataset, split and tokenizer. */
export type DataConfig = SectionType<typeof CONFIG_KEYS.data>;
/**
 * Numerical precision (Megatron's `--bf16`, `--fp16` and loss-scale arguments). With
 * bf16 or fp16 the model computes in 16 bits and the optimizer keeps fp32 main
 * parameters, main gradients and moments; fp16 also scales the loss.
 */
export type PrecisionConfig = SectionType<typeof CONFIG_KEYS.precision>;
/** Sequence-length curriculum (DeepSpeed's `curriculum_learning` block). */
export type CurriculumConfig = SectionType<typeof CONFIG_KEYS.curriculum>;
/** Progressive layer dropping. */
export type LayerDropConfig = SectionType<typeof CONFIG_KEYS.layerDrop>;

/** Everything a training run needs to know: one object per section of {@link CONFIG_KEYS}. */
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
  /** Sequence-length curriculum; absent means off (configs written before it). */
  curriculum?: CurriculumConfig;
  /** Progressive layer dropping; absent means off. */
  layerDrop?: LayerDropConfig;
}

function deepFreeze<T extends object>(o: T): Readonly<T> {
  for (const v of Object.values(o)) if (v !== null && typeof v === "object") deepFreeze(v);
  return Object.freeze(o);
}

/**
 * The default run (`deno task train`): a byte-level GPT of 0.8M parameters on the
 * built-in corpus, sized to reach about 2.3 bits per byte of validation text in a few
 * minutes on two CPU cores. Measured there: 64-token samples learn faster per second
 * than 128 or 256 (attention is cheaper and a step sees more distinct contexts), and
 * 32 samples per step beat 64 per token seen. No time limit (exitDurationInMins null):
 * a command that needs a budget sets its own. Every key's table default; frozen: copy
 * to change.
 */
export const DEFAULT_CONFIG: Readonly<TrainConfig> = deepFreeze(
  Object.fromEntries(
    Object.entries(CONFIG_KEYS).map(([section, keys]) => [section, sectionDefaults(keys)]),
  ) as unknown as TrainConfig,
);
