/**
 * `deno run -A bench/serve_load.ts`: N concurrent clients against `deno task serve` on
 * the CPU, loopback only, bounded in requests and time: throughput in generated tokens
 * per second and p50/p99 request latency, with continuous batching (--max-batch 8)
 * against one-at-a-time serving (--max-batch 1).
 *
 * The model is a random byte-level GPT (4 layers, width 256, context 256) saved as a
 * checkpoint in a temporary directory; each client sends REQUESTS greedy completions of
 * TOKENS tokens one after the other.
 *
 * ```
 * deno run -A bench/serve_load.ts [--concurrency 1,4,8,16] [--requests 3] [--tokens 48]
 * ```
 *
 * @module
 */
import { parseArgs } from "parse-args";
import { GPT } from "../lib/nn/gpt.ts";
import { AdamW } from "../lib/optim/adamw.ts";
import { saveCheckpoint } from "../lib/train/checkpoint.ts";

const { values } = parseArgs({
  options: {
    concurrency: { type: "string", default: "1,4,8,16" },
    requests: { type: "string", default: "3" },
    tokens: { type: "string", default: "48" },
  },
});
const levels = values.concurrency!.split(",").map(Number);
const perClient = Number(values.requests);
const tokens = Number(values.tokens);
const DEADLINE_MS = 60_000; // per configuration: the run stops by itself

const config = { vocabSize: 257, blockSize: 256, nLayer: 4, nHead: 4, nEmbd: 256 };
const dir = await Deno.makeTempDir({ prefix: "denotron_serve_bench_" });

async function startServer(maxBatch: number): Promise<{ url: string; child: Deno.ChildProcess }> {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      new URL("../tools/serve.ts", import.meta.url).pathname,
      "--checkpoint",
      dir,
      "--port",
      "0",
      "--max-batch",
      String(maxBatch),
    ],
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const reader = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
  let log = "";
  while (!/listening on (\S+)/.test(log)) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`the server did not start:\n${log}`);
    log += value;
  }
  // Keep draining stderr so the child never blocks on a full pipe.
  (async () => {
    while (!(await reader.read()).done) { /* drain */ }
  })();
  return { url: log.match(/listening on (\S+)/)![1], child };
}

function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
}

interface Row {
  maxBatch: number;
  clients: number;
  requests: number;
  tokens: number;
  seconds: number;
  p50: number;
  p99: number;
}

async function load(url: string, clients: number, maxBatch: number): Promise<Row> {
  const latencies: number[] = [];
  let generated = 0;
  const started = performance.now();
  const client = async (c: number) => {
    for (let r = 0; r < perClient && performance.now() - started < DEADLINE_MS; r++) {
      const t0 = performance.now();
      const res = await fetch(`${url}/v1/completions`, {
        method: "POST",
        body: JSON.stringify({
          prompt: `client ${c} request ${r}: once upon a time`,
          max_tokens: tokens,
          temperature: 0,
        }),
      });
      const body = await res.json();
      if (res.status !== 200) throw new Error(JSON.stringify(body));
      latencies.push(performance.now() - t0);
      generated += body.usage.completion_tokens;
    }
  };
  await Promise.all(Array.from({ length: clients }, (_, c) => client(c)));
  const seconds = (performance.now() - started) / 1000;
  return {
    maxBatch,
    clients,
    requests: latencies.length,
    tokens: generated,
    seconds,
    p50: percentile(latencies, 50),
    p99: percentile(latencies, 99),
  };
}

try {
  {
    using model = new GPT(config, { seed: 1 });
    const optimizer = new AdamW(model.params);
    await saveCheckpoint(dir, {
      model,
      optimizer,
      iteration: 0,
      consumedSamples: 0,
      config: {
        model: { nLayer: 4, nHead: 4, nEmbd: 256, vocabSize: null, seqLength: 256, dropout: 0 },
        data: { tokenizer: "byte" },
      },
    });
    optimizer.dispose();
  }
  const rows: Row[] = [];
  for (const maxBatch of [8, 1]) {
    const { url, child } = await startServer(maxBatch);
    try {
      await load(url, 1, maxBatch); // warm-up
      for (const clients of levels) {
        const row = await load(url, clients, maxBatch);
        rows.push(row);
        console.error(
          `max-batch ${maxBatch}, ${clients} clients: ${
            (row.tokens / row.seconds).toFixed(0)
          } tok/s`,
        );
      }
    } finally {
      child.kill("SIGTERM");
      await child.status;
    }
  }
  console.log(
    `| serving | clients | requests | tokens | tokens/s | p50 latency (ms) | p99 latency (ms) |`,
  );
  console.log(`| --- | ---: | ---: | ---: | ---: | ---: | ---: |`);
  for (const r of rows) {
    const how = r.maxBatch > 1
      ? `batched (--max-batch ${r.maxBatch})`
      : "one at a time (--max-batch 1)";
    console.log(
      `| ${how} | ${r.clients} | ${r.requests} | ${r.tokens} | ${
        (r.tokens / r.seconds).toFixed(0)
      } | ` +
        `${r.p50.toFixed(0)} | ${r.p99.toFixed(0)} |`,
    );
  }
} finally {
  await Deno.remove(dir, { recursive: true });
}
