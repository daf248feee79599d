/**
 * defines: RequestError, ServeLimits, DEFAULT_LIMITS, Job, ChatMessage, parseMegatron,
 * parseCompletion, parseChat — the request bodies of the three generation endpoints,
 * checked field by field into one `Job`. A bad field is a `RequestError` (HTTP 400)
 * whose message and `param` name the field.
 *
 * @module
 */
import type { SampleOptions } from "../infer/sampling.ts";

/** A request the server refuses: its HTTP status, and the field at fault when there is one. */
export class RequestError extends Error {
  /** The HTTP status. */
  readonly status: number;
  /** The request field at fault, or null. */
  readonly param: string | null;

  /**
   * A refusal.
   *
   * @param status 400, 404, 405, 413, 429, 503
   * @param message a sentence naming the value and the way out
   * @param param the request field at fault, or null
   */
  constructor(status: number, message: string, param: string | null = null) {
    super(message);
    this.status = status;
    this.param = param;
    this.name = "RequestError";
  }
}

/** What the server accepts at most. */
export interface ServeLimits {
  /** Bytes of a request body (413 beyond). @default 1048576 */
  maxBodyBytes: number;
  /** Tokens of one prompt (400 beyond). @default the model's blockSize */
  maxPromptTokens: number;
  /** Tokens one sequence may ask for (400 beyond). @default 256 */
  maxTokens: number;
  /** Sequences running or waiting at once, all requests together (429 beyond). @default 64 */
  maxConcurrent: number;
  /** Sequences decoded in one batch (rows of the KV cache). @default 8 */
  maxBatch: number;
}

/** The limits, less maxPromptTokens (which comes from the model). */
export const DEFAULT_LIMITS: Omit<ServeLimits, "maxPromptTokens"> = {
  maxBodyBytes: 1 << 20,
  maxTokens: 256,
  maxConcurrent: 64,
  maxBatch: 8,
};

/** One chat message, its content as text. */
export interface ChatMessage {
  /** "system", "user", "assistant", ... */
  role: string;
  /** The message's text. */
  content: string;
}

/** What to generate, whichever endpoint asked. */
export interface Job {
  /** Texts or token ids, one sequence each (chat: none; see `messages`). */
  prompts: (string | number[])[];
  /** Chat requests: the conversation, rendered by the chat template. */
  messages?: ChatMessage[];
  /** Tokens to generate at most per sequence. */
  maxTokens: number;
  /** Temperature, top-k, top-p. */
  sampling: Required<SampleOptions>;
  /** Seeds each sequence's sampling stream. */
  seed: number;
  /** Log-probabilities: undefined none, 0 the drawn token's, n also the n most likely. */
  logprobs?: number;
  /** Texts that end a sequence (not included in its text). */
  stop: string[];
  /** Answer as server-sent events. */
  stream: boolean;
  /** The name of the field that holds the prompts, for messages about them. */
  promptField: string;
  /** The name of the field that holds the token budget. */
  maxTokensField: string;
}

type Body = Record<string, unknown>;

const bad = (param: string, message: string) =>
  new RequestError(400, `${param}: ${message}`, param);
const show = (v: unknown) => JSON.stringify(v) ?? String(v);

/** The body as an object, or a 400. */
function object(body: unknown): Body {
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    throw new RequestError(400, `the request body must be a JSON object, got ${show(body)}`);
  }
  return body as Body;
}

function int(b: Body, name: string, def: number, min: number, max: number): number {
  const v = b[name] ?? def;
  if (typeof v !== "number" || !Number.isInteger(v) || v < min || v > max) {
    throw bad(name, `expected an integer in [${min}, ${max}], got ${show(b[name])}`);
  }
  return v;
}

function num(b: Body, name: string, def: number, min: number, max: number): number {
  const v = b[name] ?? def;
  if (typeof v !== "number" || !Number.isFinite(v) || v < min || v > max) {
    throw bad(name, `expected a number in [${min}, ${max}], got ${show(b[name])}`);
  }
  return v;
}

function bool(b: Body, name: string, def: boolean): boolean {
  const v = b[name] ?? def;
  if (typeof v !== "boolean") throw bad(name, `expected true or false, got ${show(b[name])}`);
  return v;
}

/** The token budget: over the server's limit is a 400 naming the field and the limit. */
function budget(b: Body, name: string, def: number, limits: ServeLimits): number {
  const v = b[name] ?? def;
  if (typeof v === "number" && Number.isInteger(v) && v > limits.maxTokens) {
    throw bad(name, `${v} tokens asked, this server generates at most ${limits.maxTokens}`);
  }
  return int(b, name, def, 0, limits.maxTokens);
}

/** top_p in (0, 1]; Megatron's 0 means "off", as 1 does. */
function topP(b: Body, def: number, zeroIsOff: boolean): number {
  const v = num(b, "top_p", def, 0, 1);
  if (v === 0) {
    if (zeroIsOff) return 1;
    throw bad("top_p", "expected a number in (0, 1], got 0 (1 keeps every token)");
  }
  return v;
}

function seed(b: Body, name: string): number {
  return int(b, name, 0, 0, Number.MAX_SAFE_INTEGER);
}

/** `stop`: null, a string, or up to 4 non-empty strings. */
function stops(b: Body): string[] {
  const v = b.stop ?? [];
  const list = typeof v === "string" ? [v] : v;
  if (
    !Array.isArray(list) || list.length > 4 ||
    list.some((s) => typeof s !== "string" || s.length === 0)
  ) {
    throw bad("stop", `expected a string or up to 4 non-empty strings, got ${show(b.stop)}`);
  }
  return list as string[];
}

/** Fields of OpenAI's API that would change the output in ways this server does not. */
function unsupported(b: Body): void {
  const off: [string, (v: unknown) => boolean][] = [
    ["n", (v) => v === 1],
    ["best_of", (v) => v === 1],
    ["echo", (v) => v === false],
    ["suffix", (v) => v === ""],
    ["presence_penalty", (v) => v === 0],
    ["frequency_penalty", (v) => v === 0],
    ["logit_bias", (v) => typeof v === "object" && v !== null && Object.keys(v).length === 0],
    ["tools", (v) => Array.isArray(v) && v.length === 0],
  ];
  for (const [name, isDefault] of off) {
    const v = b[name];
    if (v !== undefined && v !== null && !isDefault(v)) {
      throw bad(name, `${show(v)} is not supported by this server; leave the field out`);
    }
  }
}

function checkPromptCount(n: number, field: string, limits: ServeLimits): void {
  if (n === 0) throw bad(field, "expected at least one prompt, got an empty list");
  if (n > limits.maxConcurrent) {
    throw bad(
      field,
      `${n} prompts in one request, this server runs at most ${limits.maxConcurrent}`,
    );
  }
}

/**
 * Megatron's `PUT /api` body: `prompts` (list of strings), `tokens_to_generate`
 * (default 64), `temperature` (default 1), `top_k` (default 0: off), `top_p` (default
 * 0: off), `logprobs` (default false), `random_seed` (default 0).
 *
 * @param body the parsed JSON body
 * @param limits the server's limits
 * @returns the job
 * @throws RequestError naming the field
 */
export function parseMegatron(body: unknown, limits: ServeLimits): Job {
  const b = object(body);
  const prompts = b.prompts;
  if (!Array.isArray(prompts) || prompts.some((p) => typeof p !== "string")) {
    throw bad("prompts", `expected a list of strings, got ${show(prompts)}`);
  }
  checkPromptCount(prompts.length, "prompts", limits);
  return {
    prompts: prompts as string[],
    maxTokens: budget(b, "tokens_to_generate", 64, limits),
    sampling: {
      temperature: num(b, "temperature", 1, 0, 100),
      topK: int(b, "top_k", 0, 0, 2 ** 31 - 1),
      topP: topP(b, 0, true),
    },
    seed: seed(b, "random_seed"),
    logprobs: bool(b, "logprobs", false) ? 0 : undefined,
    stop: [],
    stream: false,
    promptField: "prompts",
    maxTokensField: "tokens_to_generate",
  };
}

/** Token ids from a request: integers (the vocabulary is checked against the model later). */
function isIds(v: unknown): v is number[] {
  return Array.isArray(v) && v.length > 0 && v.every((t) => Number.isInteger(t));
}

/**
 * OpenAI's `POST /v1/completions` body: `prompt` (a string, strings, token ids, or
 * lists of token ids), `max_tokens` (default 16), `temperature` (default 1), `top_p`
 * (default 1), `top_k` (an extension, default 0), `stream`, `logprobs` (0 to 5),
 * `stop`, `seed`. `model` and `user` are accepted and ignored.
 *
 * @param body the parsed JSON body
 * @param limits the server's limits
 * @returns the job
 * @throws RequestError naming the field
 */
export function parseCompletion(body: unknown, limits: ServeLimits): Job {
  const b = object(body);
  unsupported(b);
  const p = b.prompt;
  let prompts: (string | number[])[];
  if (typeof p === "string") prompts = [p];
  else if (isIds(p)) prompts = [p];
  else if (Array.isArray(p) && p.every((x) => typeof x === "string" || isIds(x))) prompts = p;
  else {
    throw bad(
      "prompt",
      `expected a string, a list of strings, a list of token ids or a list of those, got ${
        show(p)
      }`,
    );
  }
  checkPromptCount(prompts.length, "prompt", limits);
  return {
    prompts,
    ...common(b, "max_tokens", 16, limits),
    logprobs: b.logprobs === null || b.logprobs === undefined
      ? undefined
      : int(b, "logprobs", 0, 0, 5),
    promptField: "prompt",
  };
}

/** The fields both OpenAI endpoints share. */
function common(b: Body, maxField: string, maxDefault: number, limits: ServeLimits) {
  return {
    maxTokens: budget(b, maxField, maxDefault, limits),
    maxTokensField: maxField,
    sampling: {
      temperature: num(b, "temperature", 1, 0, 2),
      topK: int(b, "top_k", 0, 0, 2 ** 31 - 1),
      topP: topP(b, 1, false),
    },
    seed: seed(b, "seed"),
    stop: stops(b),
    stream: bool(b, "stream", false),
  };
}

/**
 * OpenAI's `POST /v1/chat/completions` body: `messages` (each a `role` and a `content`
 * string or list of text parts), `max_completion_tokens` or `max_tokens` (default: the
 * server's limit), `temperature`, `top_p`, `top_k`, `stream`, `logprobs` (boolean) with
 * `top_logprobs` (0 to 5), `stop`, `seed`.
 *
 * @param body the parsed JSON body
 * @param limits the server's limits
 * @returns the job (its prompt is rendered from `messages` by the chat template)
 * @throws RequestError naming the field
 */
export function parseChat(body: unknown, limits: ServeLimits): Job {
  const b = object(body);
  unsupported(b);
  const raw = b.messages;
  if (!Array.isArray(raw) || raw.length === 0) {
    throw bad("messages", `expected a non-empty list of messages, got ${show(raw)}`);
  }
  const messages = raw.map((m, i): ChatMessage => {
    const where = `messages[${i}]`;
    if (typeof m !== "object" || m === null || typeof m.role !== "string") {
      throw bad(where, `expected an object with a string role, got ${show(m)}`);
    }
    const c = m.content;
    if (typeof c === "string") return { role: m.role, content: c };
    if (
      Array.isArray(c) && c.every((part) => part?.type === "text" && typeof part.text === "string")
    ) {
      return { role: m.role, content: c.map((part) => part.text).join("") };
    }
    throw bad(`${where}.content`, `expected a string or a list of text parts, got ${show(c)}`);
  });
  const maxField = b.max_completion_tokens !== undefined ? "max_completion_tokens" : "max_tokens";
  const wantLogprobs = bool(b, "logprobs", false);
  const top = int(b, "top_logprobs", 0, 0, 5);
  return {
    prompts: [],
    messages,
    ...common(b, maxField, limits.maxTokens, limits),
    logprobs: wantLogprobs ? top : undefined,
    promptField: "messages",
  };
}
