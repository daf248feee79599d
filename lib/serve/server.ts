/**
 * defines: ServeOptions, isLoopback, GenerationServer — the generation server on
 * `Deno.serve`: Megatron's `PUT /api`, OpenAI's `POST /v1/completions` and
 * `POST /v1/chat/completions` (streamed as server-sent events when asked), `GET /health`
 * and `GET /v1/models`, over one {@linkcode ContinuousBatcher}.
 *
 * Every failure is a JSON body `{"error": {"message", "type", "param"}}`: 400 for a bad
 * field (param names it), 404/405 for a wrong path or method, 413 for a body over the
 * limit, 429 when the server already holds its limit of sequences, 503 while it shuts
 * down, 500 when the model itself failed. Nothing a client sends ends the process.
 *
 * @module
 */
import type { Tokenizer } from "../data/tokenizer.ts";
import { causeText, DenotronError } from "../errors.ts";
import type { GenerationSource } from "../infer/sources.ts";
import { ContinuousBatcher, type Sequence, type TokenEvent } from "./batcher.ts";
import { type ChatTemplate, chatTemplate, FALLBACK_CHAT_TEMPLATE } from "./chat.ts";
import {
  DEFAULT_LIMITS,
  type Job,
  parseChat,
  parseCompletion,
  parseMegatron,
  RequestError,
  type ServeLimits,
} from "./protocol.ts";
import { sseResponse } from "./sse.ts";
import { TextStream } from "./text.ts";

/** How to run the server. */
export interface ServeOptions {
  /** Address to bind. @default "127.0.0.1" */
  hostname?: string;
  /** Port; 0 picks a free one. @default 8000 */
  port?: number;
  /** Bind a non-loopback address (refused otherwise). @default false */
  allowRemote?: boolean;
  /** Limits; the rest take their defaults (DEFAULT_LIMITS, maxPromptTokens = blockSize). */
  limits?: Partial<ServeLimits>;
  /** The chat template; null or absent: FALLBACK_CHAT_TEMPLATE. */
  chatTemplate?: ChatTemplate | null;
  /** The model's name in responses. @default the source's origin */
  modelName?: string;
}

/**
 * Whether `hostname` names this machine only (127.0.0.0/8, ::1, localhost).
 *
 * @param hostname an address or name
 * @returns true for loopback
 * @example
 * ```ts
 * import { isLoopback } from "./server.ts";
 * console.log(isLoopback("127.0.0.1"), isLoopback("0.0.0.0")); // true false
 * ```
 */
export function isLoopback(hostname: string): boolean {
  const h = hostname.replace(/^\[|\]$/g, "").toLowerCase();
  return h === "localhost" || h === "::1" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h);
}

/** One sequence's outcome. */
interface Outcome {
  text: string;
  events: TokenEvent[];
  finish: "stop" | "length";
}

const JSON_HEADERS = { "content-type": "application/json; charset=utf-8" };

function json(value: unknown, status = 200, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(value), { status, headers: { ...JSON_HEADERS, ...headers } });
}

const ERROR_TYPES: Record<number, string> = {
  400: "invalid_request_error",
  404: "not_found_error",
  405: "method_not_allowed",
  413: "request_too_large",
  429: "rate_limit_exceeded",
  500: "server_error",
  503: "service_unavailable",
};

function errorResponse(status: number, message: string, param: string | null = null): Response {
  const headers: Record<string, string> = status === 429 || status === 503
    ? { "retry-after": "1" }
    : {};
  return json({ error: { message, type: ERROR_TYPES[status], param } }, status, headers);
}

/** The body as JSON, refusing one over `max` bytes before reading it all. */
async function readJson(req: Request, max: number): Promise<unknown> {
  const tooLarge = () =>
    new RequestError(413, `the request body is over this server's limit of ${max} bytes`);
  const declared = Number(req.headers.get("content-length") ?? "0");
  if (declared > max) throw tooLarge();
  if (!req.body) throw new RequestError(400, "the request has no body; send a JSON object");
  const chunks: Uint8Array[] = [];
  let total = 0;
  for await (const chunk of req.body) {
    total += chunk.length;
    if (total > max) throw tooLarge();
    chunks.push(chunk);
  }
  const bytes = new Uint8Array(total);
  let at = 0;
  for (const c of chunks) bytes.set(c, at), at += c.length;
  try {
    return JSON.parse(new TextDecoder().decode(bytes));
  } catch (e) {
    throw new RequestError(400, `the request body is not valid JSON: ${causeText(e)}`);
  }
}

type Kind = "megatron" | "completion" | "chat";
const ROUTES: Record<string, { method: string; kind?: Kind; parse?: typeof parseMegatron }> = {
  "/api": { method: "PUT", kind: "megatron", parse: parseMegatron },
  "/v1/completions": { method: "POST", kind: "completion", parse: parseCompletion },
  "/v1/chat/completions": { method: "POST", kind: "chat", parse: parseChat },
  "/health": { method: "GET" },
  "/v1/models": { method: "GET" },
};

/**
 * A running generation server. Start with {@linkcode GenerationServer.start}; stop with
 * {@linkcode GenerationServer.shutdown} (the model stays the caller's).
 *
 * @example
 * ```ts
 * import { ByteTokenizer } from "../data/tokenizer.ts";
 * import { GPT, GPT_PRESETS } from "../nn/gpt.ts";
 * import { GenerationServer } from "./server.ts";
 * const model = new GPT(GPT_PRESETS.tiny);
 * const server = GenerationServer.start(
 *   { model, tokenizer: new ByteTokenizer(), origin: "tiny" },
 *   { port: 0 },
 * );
 * const r = await fetch(`${server.url}/v1/completions`, {
 *   method: "POST",
 *   body: JSON.stringify({ prompt: "hi", max_tokens: 3, temperature: 0 }),
 * });
 * console.log((await r.json()).choices[0].finish_reason);
 * await server.shutdown();
 * model.dispose();
 * ```
 */
export class GenerationServer {
  /** The server's base URL, `http://host:port`. */
  readonly url: string;
  /** The port bound. */
  readonly port: number;
  /** The limits in force (defaults filled in). */
  readonly limits: ServeLimits;
  /** The batcher all requests share. */
  readonly batcher: ContinuousBatcher;
  readonly #tokenizer: Tokenizer;
  readonly #template: ChatTemplate;
  readonly #modelName: string;
  readonly #http: Deno.HttpServer<Deno.NetAddr>;
  #draining = false;
  #shutdown: Promise<void> | null = null;
  #ids = 0;

  private constructor(source: GenerationSource, opts: ServeOptions) {
    const hostname = opts.hostname ?? "127.0.0.1";
    if (!isLoopback(hostname) && !opts.allowRemote) {
      throw new DenotronError(
        `serve: ${hostname} is not a loopback address; the server binds 127.0.0.1 unless ` +
          `asked to open itself (--host ${hostname}, or allowRemote: true)`,
      );
    }
    this.limits = {
      ...DEFAULT_LIMITS,
      maxPromptTokens: source.model.config.blockSize,
      ...opts.limits,
    };
    for (const [k, v] of Object.entries(this.limits)) {
      if (!Number.isSafeInteger(v) || v < 1) {
        throw new DenotronError(`serve: limit ${k} must be a positive integer, got ${v}`);
      }
    }
    this.#tokenizer = source.tokenizer;
    this.#template = opts.chatTemplate ??
      chatTemplate(FALLBACK_CHAT_TEMPLATE, { origin: "fallback chat template" });
    this.#modelName = opts.modelName ?? source.origin;
    this.batcher = new ContinuousBatcher(source.model, { maxBatch: this.limits.maxBatch });
    try {
      this.#http = Deno.serve({
        hostname,
        port: opts.port ?? 8000,
        onListen: () => {},
        onError: (e) => errorResponse(500, `internal error: ${causeText(e)}`),
      }, (req) => this.#handle(req));
    } catch (e) {
      this.batcher.dispose();
      throw e;
    }
    this.port = this.#http.addr.port;
    const host = hostname.includes(":") ? `[${hostname}]` : hostname;
    this.url = `http://${host}:${this.port}`;
  }

  /**
   * Binds and starts serving.
   *
   * @param source the model (eval mode) and its tokenizer
   * @param opts address, limits, chat template
   * @returns the server
   * @throws DenotronError for a non-loopback address without allowRemote, or a bad limit
   */
  static start(source: GenerationSource, opts: ServeOptions = {}): GenerationServer {
    return new GenerationServer(source, opts);
  }

  /** Resolves when the server has stopped. */
  get finished(): Promise<void> {
    return this.#http.finished;
  }

  /**
   * Stops gracefully: new requests get 503, requests in flight finish (after
   * `timeoutMs` their sequences are cancelled and end with what they have), then the
   * KV cache is freed. Safe to call twice.
   *
   * @param timeoutMs how long in-flight requests may run on @default 30000
   */
  shutdown(timeoutMs = 30_000): Promise<void> {
    this.#shutdown ??= (async () => {
      this.#draining = true;
      const timer = setTimeout(() => this.batcher.cancelAll(), timeoutMs);
      try {
        await this.#http.shutdown();
        await this.batcher.idle();
      } finally {
        clearTimeout(timer);
        this.batcher.dispose();
      }
    })();
    return this.#shutdown;
  }

  /** {@linkcode GenerationServer.shutdown} (for `await using`). */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.shutdown();
  }

  async #handle(req: Request): Promise<Response> {
    try {
      const path = new URL(req.url).pathname.replace(/\/+$/, "") || "/";
      const route = ROUTES[path];
      if (!route) {
        throw new RequestError(
          404,
          `no endpoint ${path}; try PUT /api, POST /v1/completions, POST /v1/chat/completions, ` +
            `GET /health`,
        );
      }
      if (req.method !== route.method) {
        const r = errorResponse(405, `${path} takes ${route.method}, not ${req.method}`);
        r.headers.set("allow", route.method);
        return r;
      }
      if (path === "/health") return this.#health();
      if (this.#draining) throw new RequestError(503, "the server is shutting down");
      if (path === "/v1/models") {
        return json({
          object: "list",
          data: [{ id: this.#modelName, object: "model", owned_by: "denotron" }],
        });
      }
      const body = await readJson(req, this.limits.maxBodyBytes);
      const job = route.parse!(body, this.limits);
      return await this.#generate(job, route.kind!, req.signal);
    } catch (e) {
      if (e instanceof RequestError) return errorResponse(e.status, e.message, e.param);
      // A DenotronError here is about the request's content (a token outside the
      // vocabulary, a sampling option); anything else is ours.
      if (e instanceof DenotronError) return errorResponse(400, e.message);
      return errorResponse(500, `internal error: ${causeText(e)}`);
    }
  }

  #health(): Response {
    const body = {
      status: this.#draining ? "shutting down" : "ok",
      model: this.#modelName,
      running: this.batcher.running,
      waiting: this.batcher.waiting,
      limits: this.limits,
    };
    return json(body, this.#draining ? 503 : 200);
  }

  /** The prompts' token ids, checked against the limits and the vocabulary. */
  #promptIds(job: Job): number[][] {
    const tok = this.#tokenizer;
    const texts = job.messages ? [this.#template.render(job.messages)] : job.prompts;
    const V = this.batcher.model.config.vocabSize;
    return texts.map((p, i) => {
      const where = texts.length > 1 ? `${job.promptField}[${i}]` : job.promptField;
      // An empty prompt starts a fresh document, as GPT-2 was trained to.
      const ids = typeof p === "string" ? (p.length > 0 ? tok.encode(p) : [tok.eotId]) : p;
      if (ids.length > this.limits.maxPromptTokens) {
        throw new RequestError(
          400,
          `${where}: ${ids.length} tokens, this server takes at most ` +
            `${this.limits.maxPromptTokens} per prompt`,
          where,
        );
      }
      const bad = ids.findIndex((t) => t < 0 || t >= V);
      if (bad >= 0) {
        throw new RequestError(
          400,
          `${where}: token ${ids[bad]} at index ${bad} is outside the vocabulary [0, ${V})`,
          where,
        );
      }
      return ids;
    });
  }

  #generate(job: Job, kind: Kind, signal: AbortSignal): Response | Promise<Response> {
    const prompts = this.#promptIds(job);
    const held = this.batcher.running + this.batcher.waiting;
    if (held + prompts.length > this.limits.maxConcurrent) {
      throw new RequestError(
        429,
        `the server holds ${held} sequences and takes at most ${this.limits.maxConcurrent}; ` +
          `retry later`,
      );
    }
    const seqs = prompts.map((prompt) =>
      this.batcher.submit({
        prompt,
        maxNewTokens: job.maxTokens,
        sampling: job.sampling,
        seed: job.seed,
        stopAt: [this.#tokenizer.eotId],
        logprobs: job.logprobs,
      })
    );
    const cancel = () => seqs.forEach((s) => s.cancel());
    const id = `${kind === "chat" ? "chatcmpl" : "cmpl"}-${++this.#ids}`;
    const created = Math.floor(Date.now() / 1000);
    const head = { id, created, model: this.#modelName };
    const usage = (outs: Outcome[]) => {
      const promptTokens = prompts.reduce((n, p) => n + p.length, 0);
      const completion = outs.reduce((n, o) => n + o.events.length, 0);
      return {
        prompt_tokens: promptTokens,
        completion_tokens: completion,
        total_tokens: promptTokens + completion,
      };
    };
    if (job.stream) {
      return sseResponse(async (send) => {
        const first = kind === "chat"
          ? { ...head, object: "chat.completion.chunk" }
          : { ...head, object: "text_completion" };
        if (kind === "chat") {
          send({
            ...first,
            choices: [{ index: 0, delta: { role: "assistant" }, finish_reason: null }],
          });
        }
        const outs = await Promise.all(
          seqs.map((seq, index) =>
            this.#collect(seq, job.stop, (piece, event) => {
              send({ ...first, choices: [this.#chunk(kind, index, piece, event, job, null)] });
            }).then((out) => {
              send({
                ...first,
                choices: [this.#chunk(kind, index, "", undefined, job, out.finish)],
              });
              return out;
            })
          ),
        );
        send({ ...first, choices: [], usage: usage(outs) });
      }, cancel);
    }
    // A client that leaves before the answer cancels its sequences; a stream learns it
    // from its body's cancel instead. (Deno's request.signal, not the handler's
    // `completed`, which settles only once a response exists.)
    signal.addEventListener("abort", cancel, { once: true });
    return this.#whole(seqs, job, kind, head, prompts, usage).finally(() =>
      signal.removeEventListener("abort", cancel)
    );
  }

  /** A non-streamed answer, once every sequence has ended. */
  async #whole(
    seqs: Sequence[],
    job: Job,
    kind: Kind,
    head: { id: string; created: number; model: string },
    prompts: number[][],
    usage: (outs: Outcome[]) => unknown,
  ): Promise<Response> {
    let outs: Outcome[];
    try {
      outs = await Promise.all(seqs.map((seq) => this.#collect(seq, job.stop)));
    } catch (e) {
      seqs.forEach((s) => s.cancel());
      return errorResponse(500, `generation failed: ${causeText(e)}`);
    }
    const tok = this.#tokenizer;
    if (kind === "megatron") {
      const texts = job.prompts as string[];
      return json({
        text: outs.map((o, i) => texts[i] + o.text),
        segments: outs.map((o, i) =>
          [...prompts[i], ...o.events.map((e) => e.token)].map((t) => tok.decode([t]))
        ),
        ...(job.logprobs !== undefined
          ? { logprobs: outs.map((o) => o.events.map((e) => e.logprob)) }
          : {}),
      });
    }
    if (kind === "chat") {
      const o = outs[0];
      return json({
        ...head,
        object: "chat.completion",
        choices: [{
          index: 0,
          message: { role: "assistant", content: o.text },
          logprobs: job.logprobs !== undefined ? this.#chatLogprobs(o.events) : null,
          finish_reason: o.finish,
        }],
        usage: usage(outs),
      });
    }
    return json({
      ...head,
      object: "text_completion",
      choices: outs.map((o, index) => ({
        index,
        text: o.text,
        logprobs: job.logprobs !== undefined ? this.#completionLogprobs(o.events) : null,
        finish_reason: o.finish,
      })),
      usage: usage(outs),
    });
  }

  /**
   * Runs one sequence to its end, turning tokens into text (the end-of-text token adds
   * none; a stop string ends the sequence there).
   */
  async #collect(
    seq: Sequence,
    stops: string[],
    onPiece?: (piece: string, event: TokenEvent) => void,
  ): Promise<Outcome> {
    const text = new TextStream(this.#tokenizer, stops);
    const events: TokenEvent[] = [];
    for await (const event of seq) {
      events.push(event);
      const piece = event.token === this.#tokenizer.eotId ? "" : text.push(event.token);
      if (piece !== "" || event.logprob !== undefined) onPiece?.(piece, event);
      if (text.stopped) {
        seq.cancel();
        break;
      }
    }
    const rest = text.end();
    if (rest !== "") onPiece?.(rest, { token: -1 });
    const finish = text.stopped || seq.finishReason === "stop" ? "stop" : "length";
    return { text: text.text, events, finish };
  }

  /** One streamed choice: a text piece or a delta, with its token's log-probabilities. */
  #chunk(
    kind: Kind,
    index: number,
    piece: string,
    event: TokenEvent | undefined,
    job: Job,
    finish: string | null,
  ): unknown {
    const withLp = job.logprobs !== undefined && event !== undefined && event.token >= 0;
    if (kind === "chat") {
      return {
        index,
        delta: finish ? {} : { content: piece },
        logprobs: withLp ? this.#chatLogprobs([event!]) : null,
        finish_reason: finish,
      };
    }
    return {
      index,
      text: piece,
      logprobs: withLp ? this.#completionLogprobs([event!]) : null,
      finish_reason: finish,
    };
  }

  /** OpenAI's completion logprobs: tokens, token_logprobs, top_logprobs, text_offset. */
  #completionLogprobs(events: TokenEvent[]): unknown {
    const tok = this.#tokenizer;
    let offset = 0;
    const text_offset: number[] = [];
    const tokens = events.map((e) => {
      const s = tok.decode([e.token]);
      text_offset.push(offset);
      offset += s.length;
      return s;
    });
    return {
      tokens,
      token_logprobs: events.map((e) => e.logprob),
      top_logprobs: events.map((e) =>
        e.top ? Object.fromEntries(e.top.map(([t, lp]) => [tok.decode([t]), lp])) : null
      ),
      text_offset,
    };
  }

  /** OpenAI's chat logprobs: content, one entry per token. */
  #chatLogprobs(events: TokenEvent[]): unknown {
    const tok = this.#tokenizer;
    const entry = (t: number, logprob: number) => {
      const token = tok.decode([t]);
      return { token, logprob, bytes: [...new TextEncoder().encode(token)] };
    };
    return {
      content: events.map((e) => ({
        ...entry(e.token, e.logprob!),
        top_logprobs: (e.top ?? []).map(([t, lp]) => entry(t, lp)),
      })),
    };
  }
}
