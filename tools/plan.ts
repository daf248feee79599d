/**
 * `deno task plan`: will a model fit, which layout is fastest, what step time and MFU to
 * expect. Presets by name, explicit Megatron-style layout flags, a search mode, JSON out.
 *
 * ```sh
 * deno task plan --model gpt3-175b --cluster h100 --tp 8 --pp 8 --dp 16 --global-batch 1536
 * deno task plan --model gpt3-175b --gpus 1024 --cluster a100 --global-batch 1536 --search
 * deno task plan --model gpt2-124m --cluster cpu --precision fp32 --micro-batch 4 --json
 * deno task plan --model bert-large --gpus 8 --global-batch 256 --micro-batch 8 --distributed-optimizer
 * ```
 *
 * @module
 */

import { parseFlags as parseToolFlags } from "../lib/cli_args.ts";
import {
  CLUSTER_PRESETS,
  IMPLEMENTATION_PROFILES,
  MODEL_PRESETS,
  type ModelConfig,
  type Normalization,
  type ParallelLayout,
  PlanError,
  type Precision,
  predictStep,
  type Recompute,
  type ResolvedLayout,
  searchLayouts,
  type ShardingStrategy,
  type StepPrediction,
  withOverrides,
} from "../lib/plan/mod.ts";

const USAGE = `usage: deno task plan [options]

model (a preset, then any field overridden; without --model give the first six):
  --model NAME                              none (${Object.keys(MODEL_PRESETS).join(", ")})
  --layers N  --hidden-size N  --heads N    from the preset
  --vocab-size N  --seq-length N            from the preset
  --ffn-hidden-size N                       4 x hidden size
  --num-query-groups N                      heads (no grouped-query attention)
  --swiglu                                  off (GeLU MLP)
  --untie-embeddings-and-output-weights     off (output layer tied to the embeddings)
  --disable-bias-linear                     off (linear layers carry biases)
  --position-embedding-type rope|learned_absolute   learned_absolute
  --normalization LayerNorm|RMSNorm         LayerNorm
implementation:
  --profile NAME                            megatron-lm (${
  Object.keys(IMPLEMENTATION_PROFILES).join(", ")
})
cluster:
  --cluster NAME                            a100 (${Object.keys(CLUSTER_PRESETS).join(", ")})
  --gpus N                                  tp x pp x dp
  --gpu-memory-gb N                         the preset's (80; 40 for a100-40gb; 141 for h200)
  --nics-per-node N                         one per GPU
  --inter-node-gbps N                       the preset's NIC (200 on A100, 400 on H100/H200)
  --intra-node-gbps N                       the preset's NVLink bus bandwidth, GB/s
layout:
  --tp N  --pp N  --vpp N  --dp N           1 each (dp from --gpus when given)
  --context-parallel-size N                 1 (ring attention over N sequence chunks)
  --decoder-first-pipeline-num-layers N     even split
  --decoder-last-pipeline-num-layers N      even split
  --sp | --no-sp                            sequence parallel when tp > 1
  --distributed-optimizer                   off (ZeRO-1 when on)
  --data-parallel-sharding-strategy no_shard|optim|optim_grads|optim_grads_params
                                            optim with --distributed-optimizer, else no_shard
  --recompute none|selective|full           none
  --distribute-saved-activations            off (full recompute keeps each layer input whole per TP rank)
  --micro-batch N                           1
  --global-batch N                          micro-batch x dp
  --precision bf16|fp16|fp32                bf16
  --no-flash-attention                      flash attention on
  --overlap                                 off (communication not overlapped)
modes:
  --search [--top N]                        off; top 10: the fastest layouts on --gpus that fit
                                            (tries TP, CP, PP with even and uneven splits, VPP,
                                            micro-batch, recompute and each sharding strategy;
                                            --context-parallel-size, --data-parallel-sharding-strategy,
                                            --micro-batch and --recompute fix one)
  --json                                    off: machine-readable output
  --help, -h                                this text
`;

/** A command-line mistake; the message names the flag and the way out. */
class UsageError extends Error {}

const OPTIONS = {
  model: { type: "string" },
  layers: { type: "string" },
  "hidden-size": { type: "string" },
  heads: { type: "string" },
  "ffn-hidden-size": { type: "string" },
  "vocab-size": { type: "string" },
  "seq-length": { type: "string" },
  "num-query-groups": { type: "string" },
  swiglu: { type: "boolean" },
  "untie-embeddings-and-output-weights": { type: "boolean" },
  "disable-bias-linear": { type: "boolean" },
  "position-embedding-type": { type: "string" },
  normalization: { type: "string" },
  "decoder-first-pipeline-num-layers": { type: "string" },
  "decoder-last-pipeline-num-layers": { type: "string" },
  "data-parallel-sharding-strategy": { type: "string" },
  cluster: { type: "string", default: "a100" },
  profile: { type: "string", default: "megatron-lm" },
  "gpu-memory-gb": { type: "string" },
  "nics-per-node": { type: "string" },
  "inter-node-gbps": { type: "string" },
  "intra-node-gbps": { type: "string" },
  gpus: { type: "string" },
  tp: { type: "string" },
  "context-parallel-size": { type: "string" },
  pp: { type: "string" },
  vpp: { type: "string" },
  dp: { type: "string" },
  sp: { type: "boolean" },
  "no-sp": { type: "boolean" },
  "distributed-optimizer": { type: "boolean" },
  recompute: { type: "string" },
  "distribute-saved-activations": { type: "boolean" },
  "micro-batch": { type: "string" },
  "global-batch": { type: "string" },
  precision: { type: "string" },
  "no-flash-attention": { type: "boolean" },
  overlap: { type: "boolean" },
  search: { type: "boolean" },
  top: { type: "string" },
  json: { type: "boolean" },
  help: { type: "boolean", short: "h" },
} as const;

type Flags = ReturnType<typeof parseFlags>;

function parseFlags(args: string[]) {
  try {
    return parseToolFlags({ args, options: OPTIONS }).values;
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

function int(flags: Flags, name: keyof typeof OPTIONS): number | undefined {
  const raw = flags[name];
  if (raw === undefined || typeof raw !== "string") return undefined;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1) {
    throw new UsageError(`--${name} must be a positive integer, got '${raw}'`);
  }
  return n;
}

function choice<T extends string>(
  flags: Flags,
  name: keyof typeof OPTIONS,
  allowed: readonly T[],
): T | undefined {
  const raw = flags[name];
  if (raw === undefined || typeof raw !== "string") return undefined;
  if (!allowed.includes(raw as T)) {
    throw new UsageError(`--${name} must be one of ${allowed.join(", ")}, got '${raw}'`);
  }
  return raw as T;
}

function modelFrom(flags: Flags): ModelConfig {
  let base: Partial<ModelConfig> = {};
  if (flags.model !== undefined) {
    const preset = MODEL_PRESETS[flags.model];
    if (!preset) {
      throw new UsageError(
        `--model '${flags.model}' is not a preset; choose one of ${
          Object.keys(MODEL_PRESETS).join(", ")
        }`,
      );
    }
    base = { ...preset };
  }
  const overrides: Partial<ModelConfig> = {
    numLayers: int(flags, "layers"),
    hiddenSize: int(flags, "hidden-size"),
    numAttentionHeads: int(flags, "heads"),
    ffnHiddenSize: int(flags, "ffn-hidden-size"),
    vocabSize: int(flags, "vocab-size"),
    seqLength: int(flags, "seq-length"),
    numQueryGroups: int(flags, "num-query-groups"),
    swiglu: flags.swiglu,
    tiedEmbeddings: flags["untie-embeddings-and-output-weights"] ? false : undefined,
    bias: flags["disable-bias-linear"] ? false : undefined,
    normalization: choice<Normalization>(flags, "normalization", ["LayerNorm", "RMSNorm"]),
  };
  for (const [k, v] of Object.entries(overrides)) {
    if (v !== undefined) (base as Record<string, unknown>)[k] = v;
  }
  const position = choice(flags, "position-embedding-type", ["rope", "learned_absolute"]);
  if (position === "rope") base.maxPositionEmbeddings = 0;
  else if (
    base.seqLength !== undefined &&
    (position === "learned_absolute" || (overrides.seqLength !== undefined && !flags.model))
  ) {
    base.maxPositionEmbeddings = base.seqLength;
  }
  const missing =
    (["numLayers", "hiddenSize", "numAttentionHeads", "vocabSize", "seqLength"] as const)
      .filter((k) => base[k] === undefined);
  if (missing.length > 0) {
    throw new UsageError(
      `no model: give --model NAME, or all of --layers --hidden-size --heads --vocab-size --seq-length`,
    );
  }
  return base as ModelConfig;
}

function layoutFrom(flags: Flags, gpus: number | undefined): ParallelLayout {
  const t = int(flags, "tp") ?? 1;
  const p = int(flags, "pp") ?? 1;
  const c = int(flags, "context-parallel-size") ?? 1;
  const cp = c > 1 ? ` x --context-parallel-size ${c}` : "";
  let d = int(flags, "dp");
  if (d === undefined && gpus !== undefined) {
    if (gpus % (t * p * c) !== 0) {
      throw new UsageError(`--gpus ${gpus} is not a multiple of --tp ${t} x --pp ${p}${cp}`);
    }
    d = gpus / (t * p * c);
  }
  d ??= 1;
  if (gpus !== undefined && gpus !== t * p * c * d) {
    throw new UsageError(
      `--gpus ${gpus} does not equal --tp ${t} x --pp ${p}${cp} x --dp ${d} = ${t * p * c * d}`,
    );
  }
  if (flags.sp && flags["no-sp"]) {
    throw new UsageError("--sp and --no-sp contradict each other; give one");
  }
  const b = int(flags, "micro-batch") ?? 1;
  return {
    tensorModelParallelSize: t,
    contextParallelSize: c,
    pipelineModelParallelSize: p,
    virtualPipelineModelParallelSize: int(flags, "vpp") ?? 1,
    dataParallelSize: d,
    sequenceParallel: flags["no-sp"] ? false : flags.sp ? true : t > 1,
    useDistributedOptimizer: flags["distributed-optimizer"] ?? false,
    dataParallelShardingStrategy: sharding(flags),
    decoderFirstPipelineNumLayers: int(flags, "decoder-first-pipeline-num-layers"),
    decoderLastPipelineNumLayers: int(flags, "decoder-last-pipeline-num-layers"),
    recomputeGranularity: choice<Recompute>(flags, "recompute", ["none", "selective", "full"]) ??
      "none",
    distributeSavedActivations: flags["distribute-saved-activations"] ?? false,
    microBatchSize: b,
    globalBatchSize: int(flags, "global-batch") ?? b * d,
    precision: choice<Precision>(flags, "precision", ["bf16", "fp16", "fp32"]) ?? "bf16",
    flashAttention: !flags["no-flash-attention"],
    overlapCommunication: flags.overlap ?? false,
  };
}

function sharding(flags: Flags): ShardingStrategy | undefined {
  return choice<ShardingStrategy>(flags, "data-parallel-sharding-strategy", [
    "no_shard",
    "optim",
    "optim_grads",
    "optim_grads_params",
  ]);
}

const gb = (bytes: number) => `${(bytes / 1e9).toFixed(2)} GB`;
const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
const time = (s: number) => (s >= 1 ? `${s.toFixed(3)} s` : `${(s * 1e3).toFixed(2)} ms`);
const flops = (
  x: number,
) => (x >= 1e12 ? `${(x / 1e12).toFixed(1)} TFLOP/s` : `${(x / 1e9).toFixed(1)} GFLOP/s`);

function layoutLine(l: ResolvedLayout): string {
  return `tp ${l.tensorModelParallelSize}${
    l.contextParallelSize > 1 ? ` cp ${l.contextParallelSize}` : ""
  } pp ${l.pipelineModelParallelSize} vpp ${l.virtualPipelineModelParallelSize} dp ${l.dataParallelSize} ` +
    `mb ${l.microBatchSize} recompute ${l.recomputeGranularity}${l.sequenceParallel ? " sp" : ""}${
      l.dataParallelShardingStrategy === "no_shard"
        ? ""
        : ` shard ${l.dataParallelShardingStrategy}`
    }${
      l.decoderFirstPipelineNumLayers || l.decoderLastPipelineNumLayers
        ? ` layers first ${l.decoderFirstPipelineNumLayers} last ${l.decoderLastPipelineNumLayers}`
        : ""
    }`;
}

/**
 * Render one prediction as the human-readable report.
 *
 * @param p the prediction
 * @returns lines of text
 */
export function formatPrediction(p: StepPrediction): string {
  const mem = p.memory.peak;
  const lines = [
    `model    ${p.model.name}: ${
      (p.parameters / 1e6).toFixed(1)
    }M parameters, l=${p.model.numLayers} h=${p.model.hiddenSize} a=${p.model.numAttentionHeads} s=${p.model.seqLength} V=${p.model.vocabSize}${
      p.model.encoder
        ? `, encoder (masked-LM head at ${pct(p.model.encoder.maskedFraction)} of the tokens)`
        : ""
    }`,
    `cluster  ${p.cluster} x ${p.gpus}, ${p.layout.precision}, profile ${p.profile}, ` +
    `${p.backend} backend`,
    `layout   ${
      layoutLine(p.layout)
    }, global batch ${p.layout.globalBatchSize} (${p.microBatches} micro-batches)`,
    `memory   stage ${mem.stage}: weights ${gb(mem.weights)} + gradients ${
      gb(mem.gradients)
    } + optimizer ${gb(mem.optimizer)} + activations ${gb(mem.activations)}${
      mem.vocabularyCopies ? ` + vocabulary copies ${gb(mem.vocabularyCopies)}` : ""
    }${mem.workspace ? ` + backward workspace ${gb(mem.workspace)}` : ""}${
      mem.gathered ? ` + gathered layers ${gb(mem.gathered)}` : ""
    } = ${gb(mem.total)} of ${gb(p.memory.usable)} usable: ${
      p.memory.fits ? "fits" : "DOES NOT FIT"
    }`,
    `step     ${time(p.stepSeconds)} (bubble ${pct(p.bubbleFraction)} = ${
      time(p.bubbleSeconds)
    }, optimizer ${time(p.optimizerSeconds)})`,
    `speed    ${flops(p.modelFlopsPerGpu)} model per GPU, MFU ${pct(p.mfu)}, HFU ${pct(p.hfu)}, ${
      Math.round(p.tokensPerSecond)
    } tokens/s`,
    `comm     group     size  bytes/step  time        exposed`,
  ];
  for (const c of p.communication) {
    lines.push(
      `         ${c.group.padEnd(9)} ${String(c.size).padStart(4)}  ${gb(c.bytes).padStart(10)}  ${
        time(c.seconds).padStart(10)
      }  ${time(c.exposedSeconds).padStart(10)}`,
    );
  }
  return lines.join("\n");
}

/**
 * Run the planner on command-line arguments.
 *
 * @param args the arguments, as in `Deno.args`
 * @returns the exit code and the text to print (on stdout for 0, stderr otherwise)
 * @example
 * ```ts
 * import { runPlan } from "./plan.ts";
 * console.assert(runPlan(["--model", "gpt2-124m", "--cluster", "cpu"]).code === 0);
 * ```
 */
export function runPlan(args: string[]): { code: number; text: string } {
  try {
    const flags = parseFlags(args);
    if (flags.help) return { code: 0, text: USAGE };
    const model = modelFrom(flags);
    const preset = CLUSTER_PRESETS[flags.cluster];
    if (!preset) {
      throw new UsageError(
        `--cluster '${flags.cluster}' is not a preset; choose one of ${
          Object.keys(CLUSTER_PRESETS).join(", ")
        }`,
      );
    }
    const cluster = withOverrides(preset, {
      gpuMemoryGb: int(flags, "gpu-memory-gb"),
      nicsPerNode: int(flags, "nics-per-node"),
      interNodeGbps: int(flags, "inter-node-gbps"),
      intraNodeGbps: int(flags, "intra-node-gbps"),
    });
    const profile = IMPLEMENTATION_PROFILES[flags.profile];
    if (!profile) {
      throw new UsageError(
        `--profile '${flags.profile}' is not a profile; choose one of ${
          Object.keys(IMPLEMENTATION_PROFILES).join(", ")
        }`,
      );
    }
    const gpus = int(flags, "gpus");
    if (flags.search) {
      if (gpus === undefined) throw new UsageError("--search needs --gpus N");
      const globalBatchSize = int(flags, "global-batch");
      if (globalBatchSize === undefined) throw new UsageError("--search needs --global-batch N");
      const recompute = choice<Recompute>(flags, "recompute", ["none", "selective", "full"]);
      const microBatch = int(flags, "micro-batch");
      const cp = int(flags, "context-parallel-size");
      const strategy = sharding(flags);
      const result = searchLayouts({
        model,
        cluster,
        gpus,
        globalBatchSize,
        precision: choice<Precision>(flags, "precision", ["bf16", "fp16", "fp32"]),
        recompute: recompute ? [recompute] : undefined,
        microBatchSizes: microBatch ? [microBatch] : undefined,
        useDistributedOptimizer: flags["distributed-optimizer"] ?? true,
        contextParallelSizes: cp ? [cp] : undefined,
        shardingStrategies: strategy ? [strategy] : undefined,
        sequenceParallel: !flags["no-sp"],
        flashAttention: !flags["no-flash-attention"],
        overlapCommunication: flags.overlap ?? false,
        profile,
      });
      const top = int(flags, "top") ?? 10;
      if (flags.json) {
        return {
          code: 0,
          text: JSON.stringify(
            { ranked: result.ranked.slice(0, top), rejected: result.rejected },
            null,
            2,
          ),
        };
      }
      const lines = [
        `${result.ranked.length} layouts fit ${gpus} x ${cluster.name}; the fastest ${
          Math.min(top, result.ranked.length)
        }:`,
      ];
      lines.push(
        "  rank  layout                                                             step        MFU     memory",
      );
      result.ranked.slice(0, top).forEach((p, i) => {
        lines.push(
          `  ${String(i + 1).padStart(4)}  ${layoutLine(p.layout).padEnd(66)} ${
            time(p.stepSeconds).padStart(10)
          }  ${pct(p.mfu).padStart(6)}  ${gb(p.memory.peak.total)}`,
        );
      });
      const byReason = new Map<string, { count: number; example: string }>();
      for (const r of result.rejected) {
        const key = r.reason.replace(/[0-9.]+/g, "#");
        const entry = byReason.get(key);
        if (entry) entry.count++;
        else {
          byReason.set(key, { count: 1, example: `${layoutLine(r.layout)}: ${r.reason}` });
        }
      }
      lines.push(
        `${result.rejected.length} layouts rejected (--json lists each); one example per reason:`,
      );
      for (const { count, example } of byReason.values()) {
        lines.push(`  ${String(count).padStart(5)} x  ${example}`);
      }
      return { code: 0, text: lines.join("\n") };
    }
    const prediction = predictStep({ model, layout: layoutFrom(flags, gpus), cluster, profile });
    return {
      code: 0,
      text: flags.json ? JSON.stringify(prediction, null, 2) : formatPrediction(prediction),
    };
  } catch (e) {
    if (e instanceof UsageError) return { code: 2, text: `plan: ${e.message}` };
    if (e instanceof PlanError) {
      return { code: 1, text: `plan: this layout cannot run the model: ${e.message}` };
    }
    throw e;
  }
}

if (import.meta.main) {
  const { code, text } = runPlan(Deno.args);
  if (code === 0) console.log(text);
  else console.error(text);
  Deno.exit(code);
}
