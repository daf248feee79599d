/**
 * `deno task generate`: continue a prompt with a trained or imported GPT, streaming
 * the text to stdout.
 *
 * ```
 * deno task generate --checkpoint checkpoints/run --prompt "The nation" --max-new-tokens 100
 * deno task generate --hf path/to/gpt2 --prompt "Hello" --temperature 0.8 --top-k 40 --top-p 0.95 --seed 1
 * deno task generate --hf path/to/SmolLM2-135M --prompt "Hello"
 * ```
 *
 * @module
 */
import { parseFlags } from "../lib/cli_args.ts";
import { generateStream } from "../lib/infer/generate.ts";
import {
  intFlag,
  joinNegativeValues,
  MODEL_SOURCE_FLAGS,
  modelSource,
  numberFlag,
  runMain,
} from "./cli.ts";

const USAGE = `usage: deno task generate (--checkpoint DIR | --hf DIR) [--prompt TEXT]
  [--max-new-tokens 100] [--temperature 0.8] [--top-k 40] [--top-p 0.95] [--seed 1]
  [--no-stop]

  --checkpoint  a training save directory (its latest checkpoint) or DIR/iter_NNNNNNN
  --hf          a Hugging Face GPT-2 or Llama directory (config.json + model.safetensors
                or shards; tokenizer.json, else vocab.json + merges.txt, if present)
  --temperature 0 is greedy; --top-k 0 and --top-p 1 turn those filters off.
  Generation stops at end-of-text unless --no-stop.`;

const encoder = new TextEncoder();

async function main(args: string[]): Promise<number> {
  const { values } = parseFlags({
    args: joinNegativeValues(args),
    options: {
      ...MODEL_SOURCE_FLAGS,
      prompt: { type: "string", default: "" },
      "max-new-tokens": { type: "string", default: "100" },
      temperature: { type: "string", default: "0.8" },
      "top-k": { type: "string", default: "40" },
      "top-p": { type: "string", default: "0.95" },
      seed: { type: "string", default: "1" },
      "no-stop": { type: "boolean", default: false },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const load = modelSource(values);
  // Every flag is checked before the model is loaded.
  const options = {
    maxNewTokens: intFlag("max-new-tokens", values["max-new-tokens"], 0, 1_000_000),
    temperature: numberFlag("temperature", values.temperature, 0, 1e6),
    topK: intFlag("top-k", values["top-k"], 0, 2 ** 31 - 1),
    topP: numberFlag("top-p", values["top-p"], 0, 1),
    seed: intFlag("seed", values.seed, 0, Number.MAX_SAFE_INTEGER),
  };
  const source = await load();
  const { model, tokenizer } = source;
  console.error(`generate: ${model} from ${source.origin}`);
  const prompt = values.prompt!;
  // An empty prompt starts a fresh document, as GPT-2 was trained to.
  const promptIds = prompt.length > 0 ? tokenizer.encode(prompt) : [tokenizer.eotId];
  await Deno.stdout.write(encoder.encode(prompt));

  // Tokens can end inside a multi-byte character: print the decoded text only up to
  // the last complete character, and the rest once the next token completes it.
  const ids: number[] = [];
  let printed = 0;
  const started = performance.now();
  for await (
    const token of generateStream(model, promptIds, {
      ...options,
      stopAt: values["no-stop"] ? undefined : tokenizer.eotId,
    })
  ) {
    if (token === tokenizer.eotId) break;
    ids.push(token);
    const text = tokenizer.decode(ids);
    if (!text.endsWith("\uFFFD")) {
      await Deno.stdout.write(encoder.encode(text.slice(printed)));
      printed = text.length;
    }
  }
  const text = tokenizer.decode(ids);
  await Deno.stdout.write(encoder.encode(text.slice(printed) + "\n"));
  const seconds = (performance.now() - started) / 1000;
  console.error(
    `generate: ${ids.length} tokens in ${seconds.toFixed(2)} s (${
      (ids.length / Math.max(seconds, 1e-9)).toFixed(1)
    } tokens/s)`,
  );
  model.dispose();
  return 0;
}

if (import.meta.main) await runMain(() => main(Deno.args));
