import assert from "assert";
import { join } from "node:path";
import { ByteTokenizer } from "../lib/data/tokenizer.ts";
import { generate } from "../lib/infer/generate.ts";
import type { GenerationSource } from "../lib/infer/sources.ts";
import { GPT, GPT_PRESETS, type GPTConfig } from "../lib/nn/gpt.ts";
import { ContinuousBatcher } from "../lib/serve/batcher.ts";
import { loadChatTemplate } from "../lib/serve/chat.ts";
import { GenerationServer, isLoopback, type ServeOptions } from "../lib/serve/server.ts";
import { TextStream } from "../lib/serve/text.ts";
import { saveByteRun } from "./helpers.ts";

const CONFIG: GPTConfig = { vocabSize: 257, blockSize: 24, nLayer: 2, nHead: 2, nEmbd: 16 };
const tokenizer = new ByteTokenizer();
const utf8 = new TextEncoder();

/** A byte-level model whose matrices are scaled up, so greedy output is not one byte. */
function byteModel(config: GPTConfig = CONFIG): GPT {
  const model = new GPT(config, { seed: 21 });
  for (const [, t] of model.namedParameters()) {
    if (t.ndim === 2) t.copyFromHost((t.toArray() as Float32Array).map((x) => x * 15));
  }
  return model.eval();
}

/** Runs `fn` against a server on a free loopback port, then shuts it down. */
async function withServer(
  fn: (server: GenerationServer, source: GenerationSource) => Promise<void>,
  opts: ServeOptions = {},
  model: GPT = byteModel(),
): Promise<void> {
  const source = { model, tokenizer, origin: "test-model" };
  const server = GenerationServer.start(source, { port: 0, ...opts });
  try {
    await fn(server, source);
  } finally {
    await server.shutdown();
    model.dispose();
  }
}

async function call(
  server: GenerationServer,
  path: string,
  body: unknown,
  method = "POST",
): Promise<{ status: number; json: Record<string, unknown> }> {
  const r = await fetch(server.url + path, {
    method,
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
  return { status: r.status, json: await r.json() };
}

// deno-lint-ignore no-explicit-any
type Any = any;

/** The text generate() gives, up to (not including) end-of-text. */
function generatedText(model: GPT, prompt: number[], opts: Parameters<typeof generate>[2]): string {
  const ids = generate(model, prompt, { ...opts, stopAt: tokenizer.eotId });
  return tokenizer.decode(ids.filter((t) => t !== tokenizer.eotId));
}

/** The events of a server-sent event stream, checking the framing as it goes. */
async function readSse(r: Response): Promise<Any[]> {
  assert.equal(r.status, 200);
  assert.match(r.headers.get("content-type")!, /^text\/event-stream/);
  const text = await r.text();
  assert.ok(text.endsWith("data: [DONE]\n\n"), `the stream ends with [DONE]: ${text.slice(-40)}`);
  const frames = text.split("\n\n");
  assert.equal(frames.pop(), "", "every event ends with a blank line");
  assert.equal(frames.pop(), "data: [DONE]");
  return frames.map((f) => {
    assert.ok(f.startsWith("data: ") && !f.includes("\n"), `one data line per event: ${f}`);
    return JSON.parse(f.slice("data: ".length));
  });
}

Deno.test("ContinuousBatcher gives generate()'s tokens, one sequence at a time", async () => {
  using model = byteModel();
  using batcher = new ContinuousBatcher(model, { maxBatch: 2 });
  for (const opts of [{ temperature: 0 }, { temperature: 0.9, topK: 40, topP: 0.9 }]) {
    const prompt = [...utf8.encode("hello")];
    const seq = batcher.submit({ prompt, maxNewTokens: 12, sampling: opts, seed: 4 });
    const got = [];
    for await (const e of seq) got.push(e.token);
    assert.deepEqual(got, generate(model, prompt, { maxNewTokens: 12, ...opts, seed: 4 }));
    assert.equal(seq.finishReason, "length");
  }
});

Deno.test("ContinuousBatcher: sequences that join and leave a running batch get the tokens each gets alone", async () => {
  for (const preset of ["gpt", "llama"] as const) {
    const config = preset === "gpt" ? CONFIG : { ...GPT_PRESETS["llama-tiny"], blockSize: 24 };
    using model = byteModel(config);
    using batcher = new ContinuousBatcher(model, { maxBatch: 3 });
    // Six sequences over three rows: the last three wait for a row, and those whose budget
    // passes blockSize (24) refill their row from recent context as generate() does.
    const reqs = [
      { prompt: [1, 2, 3, 4, 5], maxNewTokens: 30, sampling: { temperature: 0 }, seed: 0 },
      { prompt: [7], maxNewTokens: 4, sampling: { temperature: 0.8, topK: 20 }, seed: 1 },
      {
        prompt: [9, 10, 11, 12],
        maxNewTokens: 9,
        sampling: { temperature: 1, topP: 0.9 },
        seed: 2,
      },
      { prompt: [50, 60], maxNewTokens: 26, sampling: { temperature: 0.7 }, seed: 3 },
      { prompt: [100, 101, 102], maxNewTokens: 6, sampling: { temperature: 0 }, seed: 4 },
      // longer than the context: only its last blockSize tokens are read
      {
        prompt: [...utf8.encode("a prompt longer than the context")],
        maxNewTokens: 5,
        sampling: { temperature: 0 },
        seed: 6,
      },
    ];
    const seqs = reqs.map((r) => batcher.submit(r));
    // One more joins while the others run.
    await new Promise((resolve) => setTimeout(resolve, 5));
    const late = { prompt: [33, 34], maxNewTokens: 8, sampling: { temperature: 0.5 }, seed: 5 };
    seqs.push(batcher.submit(late));
    reqs.push(late);
    const got = await Promise.all(seqs.map(async (s) => {
      const ids = [];
      for await (const e of s) ids.push(e.token);
      return ids;
    }));
    reqs.forEach((r, i) => {
      const alone = generate(model, r.prompt, {
        maxNewTokens: r.maxNewTokens,
        ...r.sampling,
        seed: r.seed,
      });
      assert.deepEqual(got[i], alone, `${preset} sequence ${i}`);
    });
    assert.ok(batcher.stats.rows / batcher.stats.steps > 1.5, "the decode steps were batched");
  }
});

Deno.test("ContinuousBatcher: logprobs are the log-softmax of the logits, top-n most likely first", async () => {
  using model = byteModel();
  using batcher = new ContinuousBatcher(model);
  const seq = batcher.submit({
    prompt: [5],
    maxNewTokens: 3,
    sampling: { temperature: 0 },
    logprobs: 3,
  });
  for await (const e of seq) {
    assert.equal(e.top!.length, 3);
    assert.equal(e.top![0][0], e.token, "greedy draws the most likely token");
    assert.equal(e.top![0][1], e.logprob);
    assert.ok(e.top![0][1] >= e.top![1][1] && e.top![1][1] >= e.top![2][1]);
    assert.ok(e.logprob! < 0);
  }
});

Deno.test("TextStream holds back half characters and stop-string prefixes, and cuts at a stop", () => {
  const s = new TextStream(tokenizer, ["STOP"]);
  const ids = [...utf8.encode("é is ST")];
  const pieces = ids.map((t) => s.push(t));
  assert.equal(pieces[0], "", "the first byte of é waits for the second");
  assert.equal(pieces.join(""), "é is", "'ST' may start STOP: held back");
  assert.equal([...utf8.encode("OP more")].map((t) => s.push(t)).join(""), " ");
  assert.ok(s.stopped);
  assert.equal(s.text, "é is ");
  const t = new TextStream(tokenizer, ["STOP"]);
  [...utf8.encode("a ST")].forEach((x) => t.push(x));
  assert.equal(t.end(), " ST", "end() releases what was held back");
});

Deno.test("POST /v1/completions greedy output equals generate() for the same prompt", async () => {
  await withServer(async (server, { model }) => {
    for (const prompt of ["The nation", [72, 105, 33]]) {
      const ids = typeof prompt === "string" ? tokenizer.encode(prompt) : prompt;
      const { status, json } = await call(server, "/v1/completions", {
        model: "anything",
        prompt,
        max_tokens: 15,
        temperature: 0,
      });
      assert.equal(status, 200);
      const choice = (json.choices as Any[])[0];
      assert.equal(choice.text, generatedText(model, ids, { maxNewTokens: 15, temperature: 0 }));
      assert.equal(json.object, "text_completion");
      assert.deepEqual(json.usage, {
        prompt_tokens: ids.length,
        completion_tokens: 15,
        total_tokens: ids.length + 15,
      });
    }
  });
});

Deno.test("PUT /api (Megatron) returns prompt + continuation, segments and logprobs", async () => {
  await withServer(async (server, { model }) => {
    const prompts = ["ab", "hello"];
    const { status, json } = await call(server, "/api", {
      prompts,
      tokens_to_generate: 6,
      temperature: 0.9,
      top_k: 30,
      top_p: 0.95,
      logprobs: true,
      random_seed: 7,
    }, "PUT");
    assert.equal(status, 200);
    prompts.forEach((p, i) => {
      const ids = tokenizer.encode(p);
      const text = generatedText(model, ids, {
        maxNewTokens: 6,
        temperature: 0.9,
        topK: 30,
        topP: 0.95,
        seed: 7,
      });
      assert.equal((json.text as string[])[i], p + text);
      assert.equal((json.segments as string[][])[i].length, ids.length + 6);
      const lp = (json.logprobs as number[][])[i];
      assert.equal(lp.length, 6);
      assert.ok(lp.every((x) => x < 0));
    });
  });
});

Deno.test("concurrent HTTP requests give the tokens of the same requests one at a time (seeded)", async () => {
  const prompts = ["a", "The quick", "zz", "Hello there", "0123", "x y z"];
  const body = (p: string, i: number) => ({
    prompt: p,
    max_tokens: 10 + i,
    temperature: i % 2 ? 0.8 : 0,
    top_k: 50,
    seed: 100 + i,
  });
  const texts = async (server: GenerationServer, concurrent: boolean) => {
    const one = async (p: string, i: number) =>
      ((await call(server, "/v1/completions", body(p, i))).json.choices as Any[])[0].text;
    if (concurrent) return await Promise.all(prompts.map(one));
    const out = [];
    for (const [i, p] of prompts.entries()) out.push(await one(p, i));
    return out;
  };
  await withServer(async (server) => {
    const alone = await texts(server, false);
    const before = { ...server.batcher.stats };
    const together = await texts(server, true);
    assert.deepEqual(together, alone);
    const steps = server.batcher.stats.steps - before.steps;
    const rows = server.batcher.stats.rows - before.rows;
    assert.ok(rows / steps > 1.5, `requests shared decode steps (mean batch ${rows / steps})`);
  }, { limits: { maxBatch: 4 } });
});

Deno.test("stream: true sends server-sent events whose pieces make the whole answer", async () => {
  await withServer(async (server) => {
    const body = { prompt: "Once", max_tokens: 12, temperature: 0.8, seed: 3, logprobs: 1 };
    const whole = (await call(server, "/v1/completions", body)).json.choices as Any[];
    const r = await fetch(`${server.url}/v1/completions`, {
      method: "POST",
      body: JSON.stringify({ ...body, stream: true }),
    });
    const events = await readSse(r);
    const chunks = events.filter((e) => e.choices.length > 0);
    assert.equal(chunks.map((e) => e.choices[0].text).join(""), whole[0].text);
    assert.ok(chunks.slice(0, -1).every((e) => e.choices[0].finish_reason === null));
    assert.equal(chunks.at(-1).choices[0].finish_reason, "length");
    assert.ok(chunks.every((e) => e.object === "text_completion" && e.id === chunks[0].id));
    const tokens = chunks.filter((e) => e.choices[0].logprobs).length;
    assert.equal(tokens, 12, "each token's logprobs come with its chunk");
    assert.equal(events.at(-1).usage.completion_tokens, 12);

    const chat = await fetch(`${server.url}/v1/chat/completions`, {
      method: "POST",
      body: JSON.stringify({
        messages: [{ role: "user", content: "hi" }],
        max_tokens: 5,
        stream: true,
        seed: 1,
      }),
    });
    const ce = await readSse(chat);
    assert.deepEqual(ce[0].choices[0].delta, { role: "assistant" });
    assert.ok(ce.every((e) => e.object === "chat.completion.chunk"));
    const finish = ce.filter((e) => e.choices[0]?.finish_reason);
    assert.equal(finish.length, 1);
    assert.deepEqual(finish[0].choices[0].delta, {});
  });
});

Deno.test("a stop string ends the text before it, streamed or not", async () => {
  await withServer(async (server, { model }) => {
    const ids = tokenizer.encode("Hi");
    const full = generatedText(model, ids, { maxNewTokens: 20, temperature: 0 });
    const stop = full.slice(6, 8);
    const cut = full.indexOf(stop);
    const body = { prompt: "Hi", max_tokens: 20, temperature: 0, stop: [stop] };
    const choice = ((await call(server, "/v1/completions", body)).json.choices as Any[])[0];
    assert.equal(choice.text, full.slice(0, cut));
    assert.equal(choice.finish_reason, "stop");
    const r = await fetch(`${server.url}/v1/completions`, {
      method: "POST",
      body: JSON.stringify({ ...body, stream: true }),
    });
    const text = (await readSse(r)).filter((e) => e.choices.length).map((e) => e.choices[0].text);
    assert.equal(text.join(""), full.slice(0, cut));
  });
});

Deno.test("chat completions render the tokenizer_config.json chat template written here", async () => {
  const dir = await Deno.makeTempDir({ prefix: "denotron_serve_" });
  try {
    const template = "{{ bos_token }}{% for m in messages %}" +
      "{% if m.role == 'system' and not loop.first %}{{ raise_exception('system goes first') }}{% endif %}" +
      "[{{ m.role | upper }}] {{ m.content }}\n{% endfor %}" +
      "{% if add_generation_prompt %}[ASSISTANT] {% endif %}";
    await Deno.writeTextFile(
      join(dir, "tokenizer_config.json"),
      JSON.stringify({
        chat_template: template,
        bos_token: { content: ">>" },
        eos_token: "<|endoftext|>",
      }),
    );
    const chat = await loadChatTemplate(dir);
    const messages = [{ role: "system", content: "Be brief." }, { role: "user", content: "Hi" }];
    const rendered = ">>[SYSTEM] Be brief.\n[USER] Hi\n[ASSISTANT] ";
    assert.equal(chat!.render(messages), rendered);
    assert.equal(await loadChatTemplate(await Deno.makeTempDir()), null, "no file: no template");
    await withServer(async (server, { model }) => {
      const { status, json } = await call(server, "/v1/chat/completions", {
        messages,
        max_completion_tokens: 8,
        temperature: 0,
        logprobs: true,
        top_logprobs: 2,
      });
      assert.equal(status, 200, JSON.stringify(json));
      const choice = (json.choices as Any[])[0];
      const ids = tokenizer.encode(rendered);
      assert.equal(choice.message.role, "assistant");
      assert.equal(
        choice.message.content,
        generatedText(model, ids, { maxNewTokens: 8, temperature: 0 }),
      );
      assert.equal(
        (json.usage as Any).prompt_tokens,
        ids.length,
        "the prompt is the rendered template",
      );
      assert.equal(choice.logprobs.content.length, 8);
      assert.equal(choice.logprobs.content[0].top_logprobs.length, 2);
      // The template's raise_exception() is the request's fault: 400 naming messages.
      const refused = await call(server, "/v1/chat/completions", {
        messages: [messages[1], messages[0]],
      });
      assert.equal(refused.status, 400);
      assert.equal((refused.json.error as Any).param, "messages");
      assert.match((refused.json.error as Any).message, /system goes first/);
    }, { chatTemplate: chat, limits: { maxPromptTokens: 100 } });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("bad requests of every kind are a 4xx with a JSON message naming the field", async () => {
  await withServer(async (server) => {
    const cases: [string, string, unknown, number, string | null][] = [
      ["POST", "/v1/completions", "{not json", 400, null],
      ["POST", "/v1/completions", [1, 2], 400, null],
      ["POST", "/v1/completions", {}, 400, "prompt"],
      ["POST", "/v1/completions", { prompt: 5 }, 400, "prompt"],
      ["POST", "/v1/completions", { prompt: [] }, 400, "prompt"],
      ["POST", "/v1/completions", { prompt: "a", max_tokens: 1.5 }, 400, "max_tokens"],
      ["POST", "/v1/completions", { prompt: "a", max_tokens: "9" }, 400, "max_tokens"],
      ["POST", "/v1/completions", { prompt: "a", max_tokens: 1000 }, 400, "max_tokens"],
      ["POST", "/v1/completions", { prompt: "a", temperature: "hot" }, 400, "temperature"],
      ["POST", "/v1/completions", { prompt: "a", temperature: -1 }, 400, "temperature"],
      ["POST", "/v1/completions", { prompt: "a", top_p: 0 }, 400, "top_p"],
      ["POST", "/v1/completions", { prompt: "a", top_k: -2 }, 400, "top_k"],
      ["POST", "/v1/completions", { prompt: "a", stream: "yes" }, 400, "stream"],
      ["POST", "/v1/completions", { prompt: "a", logprobs: 9 }, 400, "logprobs"],
      ["POST", "/v1/completions", { prompt: "a", stop: ["a", "b", "c", "d", "e"] }, 400, "stop"],
      ["POST", "/v1/completions", { prompt: "a", stop: 3 }, 400, "stop"],
      ["POST", "/v1/completions", { prompt: "a", seed: -1 }, 400, "seed"],
      ["POST", "/v1/completions", { prompt: "a", n: 2 }, 400, "n"],
      ["POST", "/v1/completions", { prompt: "a", echo: true }, 400, "echo"],
      ["POST", "/v1/completions", { prompt: [5, 999] }, 400, "prompt"],
      ["POST", "/v1/completions", { prompt: "x".repeat(25) }, 400, "prompt"],
      ["POST", "/v1/completions", { prompt: ["ok", "x".repeat(25)] }, 400, "prompt[1]"],
      ["PUT", "/api", { prompts: "a" }, 400, "prompts"],
      ["PUT", "/api", { prompts: ["a", 3] }, 400, "prompts"],
      ["PUT", "/api", { prompts: ["a"], tokens_to_generate: -1 }, 400, "tokens_to_generate"],
      ["PUT", "/api", { prompts: ["a"], logprobs: "no" }, 400, "logprobs"],
      ["PUT", "/api", { prompts: ["a"], random_seed: 0.5 }, 400, "random_seed"],
      ["POST", "/v1/chat/completions", { messages: [] }, 400, "messages"],
      ["POST", "/v1/chat/completions", { messages: [{ content: "x" }] }, 400, "messages[0]"],
      [
        "POST",
        "/v1/chat/completions",
        { messages: [{ role: "user", content: 4 }] },
        400,
        "messages[0].content",
      ],
      [
        "POST",
        "/v1/chat/completions",
        { messages: [{ role: "user", content: "x" }], max_completion_tokens: 999 },
        400,
        "max_completion_tokens",
      ],
      [
        "POST",
        "/v1/chat/completions",
        { messages: [{ role: "user", content: "x".repeat(30) }] },
        400,
        "messages",
      ],
      ["GET", "/v1/completions", undefined, 405, null],
      ["POST", "/api", { prompts: ["a"] }, 405, null],
      ["POST", "/nowhere", {}, 404, null],
    ];
    for (const [method, path, body, status, param] of cases) {
      const r = await fetch(server.url + path, {
        method,
        body: body === undefined
          ? undefined
          : typeof body === "string"
          ? body
          : JSON.stringify(body),
      });
      const what = `${method} ${path} ${JSON.stringify(body)}`;
      assert.equal(r.status, status, what);
      assert.match(r.headers.get("content-type")!, /application\/json/, what);
      const { error } = await r.json();
      assert.equal(typeof error.message, "string", what);
      assert.equal(error.param, param, what);
      if (param) assert.ok(error.message.startsWith(param.replace(/\[\d+\].*$/, "")), what);
    }
    const health = await fetch(`${server.url}/health`);
    assert.equal((await health.json()).status, "ok", "the server is still up");
  }, { limits: { maxTokens: 100 } });
});

Deno.test("bodies over the limit are 413, declared or streamed, and the server goes on", async () => {
  await withServer(async (server) => {
    const big = JSON.stringify({ prompt: "a", pad: "x".repeat(5000) });
    const declared = await fetch(`${server.url}/v1/completions`, { method: "POST", body: big });
    assert.equal(declared.status, 413);
    assert.match((await declared.json()).error.message, /4096 bytes/);
    // A chunked body has no length up front: counted as it arrives.
    const chunks = new ReadableStream({
      start(c) {
        for (let i = 0; i < 10; i++) c.enqueue(utf8.encode("x".repeat(1000)));
        c.close();
      },
    });
    const streamed = await fetch(`${server.url}/v1/completions`, { method: "POST", body: chunks });
    assert.equal(streamed.status, 413);
    await streamed.body?.cancel();
    const ok = await call(server, "/v1/completions", { prompt: "a", max_tokens: 2 });
    assert.equal(ok.status, 200);
  }, { limits: { maxBodyBytes: 4096 } });
});

Deno.test("over the concurrent-sequence limit is 429 with Retry-After; a slot freed is usable", async () => {
  await withServer(async (server) => {
    // Greedy from "a" never reaches end-of-text: this one runs until cancelled.
    const r = await fetch(`${server.url}/v1/completions`, {
      method: "POST",
      body: JSON.stringify({ prompt: "a", max_tokens: 5000, temperature: 0, stream: true }),
    });
    const reader = r.body!.getReader();
    await reader.read(); // the first token: the sequence is running
    // Two prompts in one request count as two sequences: 1 + 2 > 2.
    const refused = await fetch(`${server.url}/v1/completions`, {
      method: "POST",
      body: JSON.stringify({ prompt: ["b", "c"], max_tokens: 2 }),
    });
    assert.equal(refused.status, 429);
    assert.equal(refused.headers.get("retry-after"), "1");
    const { error } = await refused.json();
    assert.equal(error.type, "rate_limit_exceeded");
    assert.match(error.message, /holds 1 sequences and takes at most 2/);
    assert.equal(
      (await call(server, "/v1/completions", { prompt: "b", max_tokens: 2 })).status,
      200,
    );
    // The client leaving cancels its sequence and frees the row.
    await reader.cancel();
    for (let i = 0; i < 200 && server.batcher.running > 0; i++) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    assert.equal(server.batcher.running, 0);
    const pair = await call(server, "/v1/completions", { prompt: ["c", "d"], max_tokens: 1 });
    assert.equal(pair.status, 200);
  }, { limits: { maxConcurrent: 2, maxTokens: 5000 } });
});

Deno.test("a client that leaves before a whole answer cancels its sequence", async () => {
  await withServer(async (server) => {
    const ac = new AbortController();
    const r = fetch(`${server.url}/v1/completions`, {
      method: "POST",
      signal: ac.signal,
      body: JSON.stringify({ prompt: "a", max_tokens: 5000, temperature: 0 }),
    }).catch((e) => e.name);
    for (let i = 0; i < 200 && server.batcher.running === 0; i++) {
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    assert.equal(server.batcher.running, 1);
    ac.abort();
    assert.equal(await r, "AbortError");
    for (let i = 0; i < 200 && server.batcher.running > 0; i++) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    assert.equal(server.batcher.running, 0, "the row is free again");
  }, { limits: { maxTokens: 5000 } });
});

Deno.test("the server refuses a non-loopback address unless asked", () => {
  using model = byteModel();
  const source = { model, tokenizer, origin: "t" };
  for (const hostname of ["0.0.0.0", "10.1.2.3", "::"]) {
    assert.throws(
      () => GenerationServer.start(source, { hostname, port: 0 }),
      /not a loopback address/,
    );
  }
  assert.ok(["127.0.0.1", "127.3.4.5", "localhost", "::1", "[::1]"].every(isLoopback));
  assert.ok(!["0.0.0.0", "192.168.1.2", "::", "example.com"].some(isLoopback));
});

Deno.test("shutdown() lets requests in flight finish, then refuses; its timeout cancels", async () => {
  const model = byteModel();
  const source = { model, tokenizer, origin: "t" };
  try {
    const server = GenerationServer.start(source, { port: 0, limits: { maxTokens: 300 } });
    const r = await fetch(`${server.url}/v1/completions`, {
      method: "POST",
      body: JSON.stringify({ prompt: "a", max_tokens: 40, temperature: 0, stream: true }),
    });
    const reader = r.body!.getReader();
    await reader.read();
    const done = server.shutdown();
    let text = "";
    for (;;) {
      const { value, done: end } = await reader.read();
      if (end) break;
      text += new TextDecoder().decode(value);
    }
    await done;
    assert.match(text, /"finish_reason":"length"/, "the request in flight ran to its end");
    assert.match(text, /"completion_tokens":40,/, "all 40 tokens came");
    assert.ok(text.endsWith("data: [DONE]\n\n"));
    await fetch(`${server.url}/health`).then(
      () => assert.fail("a stopped server answers no request"),
      () => {},
    );

    // A request longer than the timeout is cut short and still ends its stream.
    const s2 = GenerationServer.start(source, { port: 0, limits: { maxTokens: 5000 } });
    const r2 = await fetch(`${s2.url}/v1/completions`, {
      method: "POST",
      body: JSON.stringify({ prompt: "a", max_tokens: 5000, temperature: 0, stream: true }),
    });
    const body = r2.text();
    await new Promise((resolve) => setTimeout(resolve, 20));
    await s2.shutdown(50);
    const text2 = await body;
    assert.ok(text2.endsWith("data: [DONE]\n\n"), "the cut stream still ends properly");
    const made = Number(text2.match(/"completion_tokens":(\d+)/)![1]);
    assert.ok(made > 0 && made < 5000, `cut short after ${made} tokens`);
  } finally {
    model.dispose();
  }
});

Deno.test("while shutting down, new requests on an open connection get 503", async () => {
  await withServer(async (server) => {
    const r = await fetch(`${server.url}/v1/completions`, {
      method: "POST",
      body: JSON.stringify({ prompt: "a", max_tokens: 30, stream: true }),
    });
    const body = r.text();
    const done = server.shutdown();
    const late = await fetch(`${server.url}/v1/completions`, {
      method: "POST",
      body: JSON.stringify({ prompt: "a", max_tokens: 1 }),
    }).then(async (x) => ({ status: x.status, json: await x.json() }), () => null);
    // The connection may already be closed (refused), or it answers 503.
    if (late) {
      assert.equal(late.status, 503);
      assert.match(late.json.error.message, /shutting down/);
    }
    await body;
    await done;
  });
});

// ---- the command line -------------------------------------------------------------

const SERVE = decodeURIComponent(new URL("../tools/serve.ts", import.meta.url).pathname);

function serveCommand(args: string[]): Deno.Command {
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", SERVE, ...args],
    stdout: "piped",
    stderr: "piped",
  });
}

Deno.test("deno task serve --help lists every option with its default", async () => {
  const out = await serveCommand(["--help"]).output();
  const text = new TextDecoder().decode(out.stdout);
  assert.equal(out.code, 0);
  for (
    const flag of [
      "--checkpoint",
      "--hf",
      "--host",
      "--port",
      "--max-batch",
      "--max-concurrent",
      "--max-prompt-tokens",
      "--max-tokens",
      "--max-body-bytes",
      "--chat-template",
      "--shutdown-timeout",
    ]
  ) {
    assert.ok(text.includes(flag), flag);
  }
  assert.match(text, /default 127\.0\.0\.1/);
  assert.match(text, /default 8000/);
  const bad = await serveCommand(["--checkpoint", "x", "--port", "http"]).output();
  assert.equal(bad.code, 2);
  assert.match(new TextDecoder().decode(bad.stderr), /--port must be an integer/);
});

Deno.test("deno task serve --checkpoint serves the run's model and stops cleanly on SIGTERM", async () => {
  const dir = await Deno.makeTempDir({ prefix: "denotron_serve_" });
  try {
    using model = byteModel();
    await saveByteRun(dir, model);
    const child = serveCommand(["--checkpoint", dir, "--port", "0"]).spawn();
    const lines = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
    let log = "";
    while (!/listening on (\S+)/.test(log)) {
      const { value, done } = await lines.read();
      if (done) throw new Error(`the server did not start:\n${log}`);
      log += value;
    }
    const url = log.match(/listening on (\S+)/)![1];
    assert.match(url, /^http:\/\/127\.0\.0\.1:\d+$/, "loopback by default");
    const r = await fetch(`${url}/v1/completions`, {
      method: "POST",
      body: JSON.stringify({ prompt: "The", max_tokens: 10, temperature: 0 }),
    });
    const { choices } = await r.json();
    assert.equal(
      choices[0].text,
      generatedText(model, tokenizer.encode("The"), { maxNewTokens: 10, temperature: 0 }),
    );
    child.kill("SIGTERM");
    for (;;) {
      const { value, done } = await lines.read();
      if (done) break;
      log += value;
    }
    const status = await child.status;
    await child.stdout.cancel();
    assert.equal(status.code, 0, log);
    assert.match(log, /SIGTERM: refusing new requests/);
    assert.match(log, /serve: stopped/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
