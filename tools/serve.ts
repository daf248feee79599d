/**
 * `deno task serve`: a generation server for a trained or imported model — Megatron's
 * `PUT /api`, OpenAI's `/v1/completions` and `/v1/chat/completions` (server-sent events
 * with `"stream": true`), `GET /health` — with continuous batching over the KV cache.
 * See docs/serving.md.
 *
 * ```
 * deno task serve --checkpoint checkpoints/run
 * deno task serve --hf path/to/SmolLM2-135M --port 8080 --max-batch 16
 * deno task serve --hf path/to/gpt2 --host 0.0.0.0     # reachable from other machines
 * ```
 *
 * @module
 */
import { dirname, join } from "node:path";
import { parseFlags } from "../lib/cli_args.ts";
import { isHfTokenizerPath } from "../lib/data/tokenizer.ts";
import type { GenerationSource } from "../lib/infer/sources.ts";
import { type ChatTemplate, chatTemplate, loadChatTemplate } from "../lib/serve/chat.ts";
import { DEFAULT_LIMITS } from "../lib/serve/protocol.ts";
import { GenerationServer } from "../lib/serve/server.ts";
import { intFlag, MODEL_SOURCE_FLAGS, modelSource, runMain } from "./cli.ts";

const USAGE = `usage: deno task serve (--checkpoint DIR | --hf DIR) [options]

  --checkpoint DIR          a training save directory (its latest checkpoint) or DIR/iter_NNNNNNN
  --hf DIR                  a Hugging Face GPT-2 or Llama directory
  --host ADDR               address to bind (default 127.0.0.1, loopback only; giving
                            --host, e.g. 0.0.0.0, opens the server to other machines)
  --port N                  port (default 8000; 0 picks a free one)
  --max-batch N             sequences decoded together, rows of the KV cache (default ${DEFAULT_LIMITS.maxBatch})
  --max-concurrent N        sequences running or waiting at once; more get 429 (default ${DEFAULT_LIMITS.maxConcurrent})
  --max-prompt-tokens N     tokens of one prompt; more get 400 (default: the model's context)
  --max-tokens N            tokens one sequence may ask for; more get 400 (default ${DEFAULT_LIMITS.maxTokens})
  --max-body-bytes N        bytes of a request body; more get 413 (default ${DEFAULT_LIMITS.maxBodyBytes})
  --chat-template FILE      a Jinja chat template (default: tokenizer_config.json's chat_template
                            beside the tokenizer, else one "role: content" line per message)
  --model-name NAME         the model's name in responses (default: where it was loaded from)
  --shutdown-timeout SEC    on SIGINT/SIGTERM, how long requests in flight may finish (default 30)
  -h, --help                this text

Endpoints: PUT /api (Megatron), POST /v1/completions, POST /v1/chat/completions,
GET /health, GET /v1/models.`;

/** Where a source's tokenizer files lie (for tokenizer_config.json), if anywhere. */
async function tokenizerDir(
  values: { checkpoint?: string; hf?: string },
  source: GenerationSource,
) {
  if (values.hf !== undefined) return values.hf;
  try {
    const state = JSON.parse(await Deno.readTextFile(join(source.origin, "state.json")));
    const name = state?.config?.data?.tokenizer;
    if (typeof name === "string" && isHfTokenizerPath(name)) {
      return name.endsWith(".json") ? dirname(name) : name;
    }
  } catch {
    // no state.json beside the weights: no template to find
  }
  return null;
}

async function main(args: string[]): Promise<number> {
  const { values } = parseFlags({
    args,
    options: {
      ...MODEL_SOURCE_FLAGS,
      host: { type: "string" },
      port: { type: "string", default: "8000" },
      "max-batch": { type: "string", default: String(DEFAULT_LIMITS.maxBatch) },
      "max-concurrent": { type: "string", default: String(DEFAULT_LIMITS.maxConcurrent) },
      "max-prompt-tokens": { type: "string" },
      "max-tokens": { type: "string", default: String(DEFAULT_LIMITS.maxTokens) },
      "max-body-bytes": { type: "string", default: String(DEFAULT_LIMITS.maxBodyBytes) },
      "chat-template": { type: "string" },
      "model-name": { type: "string" },
      "shutdown-timeout": { type: "string", default: "30" },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const load = modelSource(values);
  // Every flag is checked before the model is loaded.
  const big = Number.MAX_SAFE_INTEGER;
  const port = intFlag("port", values.port, 0, 65535);
  const limits = {
    maxBatch: intFlag("max-batch", values["max-batch"], 1, 4096),
    maxConcurrent: intFlag("max-concurrent", values["max-concurrent"], 1, 1_000_000),
    maxTokens: intFlag("max-tokens", values["max-tokens"], 1, 1_000_000),
    maxBodyBytes: intFlag("max-body-bytes", values["max-body-bytes"], 1, 2 ** 31),
    ...(values["max-prompt-tokens"] !== undefined
      ? { maxPromptTokens: intFlag("max-prompt-tokens", values["max-prompt-tokens"], 1, big) }
      : {}),
  };
  const shutdownSeconds = intFlag("shutdown-timeout", values["shutdown-timeout"], 0, 86400);
  let template: ChatTemplate | null = null;
  if (values["chat-template"] !== undefined) {
    const file = values["chat-template"];
    template = chatTemplate(await Deno.readTextFile(file), { origin: file });
  }

  const source = await load();
  const { model } = source;
  if (!template) {
    const dir = await tokenizerDir(values, source);
    template = dir ? await loadChatTemplate(dir) : null;
  }
  const server = GenerationServer.start(source, {
    hostname: values.host ?? "127.0.0.1",
    // --host is the request to open the server: loopback is the default, not a rule.
    allowRemote: values.host !== undefined,
    port,
    limits,
    chatTemplate: template,
    modelName: values["model-name"],
  });
  console.error(
    `serve: ${model} from ${source.origin}; chat template: ${template?.origin ?? "fallback"}`,
  );
  console.error(
    `serve: listening on ${server.url} (max batch ${server.limits.maxBatch}, ` +
      `max concurrent ${server.limits.maxConcurrent}); Ctrl-C stops`,
  );

  const stopped = new Promise<string>((resolve) => {
    let signals = 0;
    for (const signal of ["SIGINT", "SIGTERM"] as const) {
      Deno.addSignalListener(signal, () => {
        // A second signal does not wait for the requests in flight.
        if (++signals > 1) Deno.exit(130);
        resolve(signal);
      });
    }
  });
  const signal = await stopped;
  const held = server.batcher.running + server.batcher.waiting;
  console.error(
    `serve: ${signal}: refusing new requests; ${held} sequences in flight finish first ` +
      `(at most ${shutdownSeconds} s)`,
  );
  await server.shutdown(shutdownSeconds * 1000);
  model.dispose();
  console.error("serve: stopped");
  return 0;
}

if (import.meta.main) await runMain(() => main(Deno.args));
