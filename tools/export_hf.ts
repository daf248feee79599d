/**
 * `deno task export-hf`: a training checkpoint, whatever layout trained it (checkpoints
 * hold the single-process model's full tensors), as a Hugging Face directory —
 * GPT2LMHeadModel or LlamaForCausalLM config.json and safetensors weights (sharded above
 * --max-shard-size), plus the run's tokenizer.json (and tokenizer_config.json) when it
 * trained with one.
 *
 * ```
 * deno task export-hf --checkpoint runs/sotu --output hf/sotu
 * ```
 *
 * @module
 */
import { parseFlags } from "../lib/cli_args.ts";
import { fromCheckpoint } from "../lib/infer/sources.ts";
import { saveHf } from "../lib/io/hf.ts";
import { HF_MAX_SHARD_BYTES } from "../lib/io/hf_common.ts";
import { readState, resolveCheckpoint } from "../lib/io/checkpoint.ts";
import { isHfTokenizerPath, loadTokenizer } from "../lib/data/tokenizer.ts";
import { DenotronError } from "../lib/errors.ts";
import { intFlag, runMain } from "./cli.ts";

const USAGE = `usage: deno task export-hf --checkpoint DIR --output OUT [--max-shard-size BYTES]

  --checkpoint      a training save directory (its latest checkpoint) or DIR/iter_NNNNNNN
  --output          the Hugging Face directory to write (created if missing)
  --max-shard-size  bytes of weights per safetensors shard [${HF_MAX_SHARD_BYTES}]`;

async function main(args: string[]): Promise<number> {
  const { values } = parseFlags({
    args,
    options: {
      checkpoint: { type: "string" },
      output: { type: "string" },
      "max-shard-size": { type: "string" },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  if (values.checkpoint === undefined || values.output === undefined) {
    console.error(`error: give --checkpoint and --output\n${USAGE}`);
    return 2;
  }
  const maxShardBytes = values["max-shard-size"] === undefined
    ? HF_MAX_SHARD_BYTES
    : intFlag("max-shard-size", values["max-shard-size"], 1, Number.MAX_SAFE_INTEGER);
  const { model, origin } = await fromCheckpoint(values.checkpoint);
  const out = values.output;
  try {
    // The run's tokenizer gives config.json its special ids, and a tokenizer.json path is
    // copied beside, so transformers finds it; fromCheckpoint has already read and checked
    // the checkpoint, state.json included.
    const dir = await resolveCheckpoint(values.checkpoint, () => {});
    const run = (await readState(`${dir}/state.json`)).config as {
      data?: { tokenizer?: unknown };
    };
    const name = run.data?.tokenizer;
    const tokenizer = typeof name === "string" ? await loadTokenizer(name) : null;
    await saveHf(model, out, {
      maxShardBytes,
      ...(tokenizer ? { bosTokenId: tokenizer.bosId ?? null, eosTokenId: tokenizer.eotId } : {}),
    });
    if (typeof name === "string" && isHfTokenizerPath(name)) {
      const file = name.endsWith(".json") ? name : `${name.replace(/\/+$/, "")}/tokenizer.json`;
      const from = file.includes("/") ? file.slice(0, file.lastIndexOf("/")) : ".";
      await copy(file, `${out}/tokenizer.json`);
      await copy(`${from}/tokenizer_config.json`, `${out}/tokenizer_config.json`, true);
    }
    console.log(`export-hf: ${model} from ${origin} -> ${out}`);
  } finally {
    model.dispose();
  }
  return 0;
}

async function copy(from: string, to: string, optional = false): Promise<void> {
  try {
    await Deno.copyFile(from, to);
  } catch (e) {
    if (optional && e instanceof Deno.errors.NotFound) return;
    throw new DenotronError(`cannot copy the run's tokenizer ${from}: ${(e as Error).message}`);
  }
}

if (import.meta.main) await runMain(() => main(Deno.args));
