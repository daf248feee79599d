/**
 * defines: FrameReader, FrameError, encodeFrame, storeProof, checkStoreProof, parseRequest,
 * STORE_LIMITS — the rendezvous store's wire format, shared by its server and its client.
 *
 * A message is a 4-byte big-endian length and that many bytes of UTF-8 JSON. A frame
 * longer than the reader's limit ends the connection before any of it is buffered, and the
 * receive buffer grows by doubling and is compacted between frames, so a reader holds at
 * most one frame and copies each byte a bounded number of times (no re-copy per read).
 *
 * The handshake proves the job's secret without sending it: on connect the server sends
 * `{nonce}`; the client answers `{op: "hello", proof}` with proof = HMAC-SHA256(secret,
 * nonce); the server answers `{ok: true}`, or an error and closes. Until then nothing
 * else is read, and the first frame may be at most 4 KiB.
 *
 * @module
 */
import { DenotronError } from "../errors.ts";

/** The store's limits. Values are names, counters and small blobs; none is near these. */
export const STORE_LIMITS = {
  /** The largest frame after the handshake (16 MiB). */
  maxFrameBytes: 16 << 20,
  /** The largest frame before it: the nonce and the hello (4 KiB). */
  maxHelloBytes: 4096,
  /** How long a new connection may take to authenticate. */
  handshakeMs: 10_000,
  /** Open connections, authenticated or not. */
  maxConnections: 4096,
  /** Parked get/wait requests over all connections, and per connection. */
  maxWaiters: 65536,
  maxWaitersPerConnection: 4096,
  /** Keys of one wait request; characters of one key. */
  maxKeysPerWait: 4096,
  maxKeyLength: 4096,
  /** The longest wait a request may ask for (one day). */
  maxTimeoutMs: 86_400_000,
} as const;

/** A frame that cannot be read: too long, not JSON, or cut off. The connection ends. */
export class FrameError extends DenotronError {
  constructor(message: string) {
    super(message);
    this.name = "FrameError";
  }
}

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });

/**
 * The frame of `msg`: its JSON, length-prefixed.
 *
 * @param msg a JSON-serialisable message
 * @param maxBytes the largest body allowed @default STORE_LIMITS.maxFrameBytes
 * @returns the bytes to write
 */
export function encodeFrame(
  msg: unknown,
  maxBytes: number = STORE_LIMITS.maxFrameBytes,
): Uint8Array {
  const body = encoder.encode(JSON.stringify(msg));
  if (body.length > maxBytes) {
    throw new FrameError(
      `a store message of ${body.length} bytes is over the limit of ${maxBytes} bytes`,
    );
  }
  const out = new Uint8Array(4 + body.length);
  new DataView(out.buffer).setUint32(0, body.length);
  out.set(body, 4);
  return out;
}

/** Reads length-prefixed JSON frames from one connection, into one bounded buffer. */
export class FrameReader {
  #buf = new Uint8Array(4096);
  #start = 0;
  #end = 0;
  /** The longest frame body accepted; raise it after the handshake. */
  maxFrameBytes: number;

  /**
   * @param conn the connection to read
   * @param maxFrameBytes the longest frame body accepted
   */
  constructor(readonly conn: Deno.Conn, maxFrameBytes: number) {
    this.maxFrameBytes = maxFrameBytes;
  }

  /**
   * The next message, or null when the peer closed the connection between frames.
   *
   * @throws FrameError for a frame over the limit, bytes that are not JSON, or a
   *   connection closed inside a frame
   */
  async next(): Promise<unknown> {
    while (true) {
      const have = this.#end - this.#start;
      let need = 4;
      if (have >= 4) {
        const len = new DataView(this.#buf.buffer).getUint32(this.#start);
        if (len > this.maxFrameBytes) {
          throw new FrameError(
            `a frame of ${len} bytes is over the limit of ${this.maxFrameBytes}`,
          );
        }
        need = 4 + len;
        if (have >= need) {
          const body = this.#buf.subarray(this.#start + 4, this.#start + need);
          this.#start += need;
          try {
            return JSON.parse(decoder.decode(body));
          } catch {
            throw new FrameError(`a frame of ${len} bytes is not UTF-8 JSON`);
          }
        }
      }
      this.#reserve(need);
      let n: number | null;
      try {
        n = await this.conn.read(this.#buf.subarray(this.#end));
      } catch {
        n = null;
      }
      if (n === null) {
        if (this.#end > this.#start) throw new FrameError("the connection closed inside a frame");
        return null;
      }
      this.#end += n;
    }
  }

  /** The receive buffer's size: at most twice the longest frame read so far. */
  get bufferBytes(): number {
    return this.#buf.length;
  }

  /** Makes room for `need` bytes from the unread start: compact first, else double. */
  #reserve(need: number): void {
    if (this.#start + need <= this.#buf.length) return;
    const live = this.#buf.subarray(this.#start, this.#end);
    if (need <= this.#buf.length) {
      this.#buf.copyWithin(0, this.#start, this.#end);
    } else {
      let cap = this.#buf.length;
      while (cap < need) cap *= 2;
      const grown = new Uint8Array(cap);
      grown.set(live);
      this.#buf = grown;
    }
    this.#end -= this.#start;
    this.#start = 0;
  }
}

async function hmacKey(secret: string): Promise<CryptoKey> {
  return await crypto.subtle.importKey(
    "raw",
    encoder.encode(secret),
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["sign", "verify"],
  );
}

const hex = (b: ArrayBuffer) =>
  [...new Uint8Array(b)].map((x) => x.toString(16).padStart(2, "0")).join("");

/**
 * The client's answer to the server's nonce: HMAC-SHA256(secret, nonce) in hex.
 *
 * @param secret the job's secret
 * @param nonce the server's challenge
 * @returns the proof
 */
export async function storeProof(secret: string, nonce: string): Promise<string> {
  return hex(await crypto.subtle.sign("HMAC", await hmacKey(secret), encoder.encode(nonce)));
}

/**
 * Whether `proof` is {@linkcode storeProof} of (secret, nonce), compared in constant time.
 *
 * @param secret the job's secret
 * @param nonce the challenge sent
 * @param proof what the client answered
 * @returns true when it matches
 */
export async function checkStoreProof(
  secret: string,
  nonce: string,
  proof: unknown,
): Promise<boolean> {
  if (typeof proof !== "string" || !/^[0-9a-f]{64}$/.test(proof)) return false;
  const bytes = new Uint8Array(32);
  for (let i = 0; i < 32; i++) bytes[i] = parseInt(proof.slice(2 * i, 2 * i + 2), 16);
  return await crypto.subtle.verify("HMAC", await hmacKey(secret), bytes, encoder.encode(nonce));
}

/** A fresh challenge: 128 random bits in hex. */
export function newNonce(): string {
  return hex(crypto.getRandomValues(new Uint8Array(16)).buffer);
}

/**
 * A short tag naming the job a secret belongs to, for messages (a hash: it does not
 * reveal the secret).
 *
 * @param secret the job's secret
 * @returns 12 hex digits
 */
export async function jobTag(secret: string): Promise<string> {
  return hex(await crypto.subtle.digest("SHA-256", encoder.encode(`denotron-job ${secret}`)))
    .slice(0, 12);
}

/** A request of an authenticated client. */
export interface StoreRequest {
  id: number;
  op: "set" | "get" | "wait" | "add";
  key?: string;
  keys?: string[];
  value?: string;
  amount?: number;
  timeoutMs?: number;
}

/** A reply: the request's id and a value or an error. */
export interface StoreReply {
  id: number;
  value?: string;
  error?: string;
}

const isKey = (k: unknown): k is string =>
  typeof k === "string" && k.length <= STORE_LIMITS.maxKeyLength;

/**
 * `msg` as a request when every field has the right type and range, else null (the
 * server then drops the connection: only a broken or hostile client sends one).
 *
 * @param msg a parsed frame
 * @returns the request, or null
 */
export function parseRequest(msg: unknown): StoreRequest | null {
  if (!msg || typeof msg !== "object" || Array.isArray(msg)) return null;
  const r = msg as Record<string, unknown>;
  if (!Number.isSafeInteger(r.id)) return null;
  const timeoutOk = r.timeoutMs === undefined ||
    (typeof r.timeoutMs === "number" && r.timeoutMs >= 0 &&
      r.timeoutMs <= STORE_LIMITS.maxTimeoutMs);
  switch (r.op) {
    case "set":
      return isKey(r.key) && (r.value === undefined || typeof r.value === "string")
        ? r as unknown as StoreRequest
        : null;
    case "add":
      return isKey(r.key) && (r.amount === undefined || Number.isSafeInteger(r.amount))
        ? r as unknown as StoreRequest
        : null;
    case "get":
      return isKey(r.key) && timeoutOk ? r as unknown as StoreRequest : null;
    case "wait":
      return Array.isArray(r.keys) && r.keys.length <= STORE_LIMITS.maxKeysPerWait &&
          r.keys.every(isKey) && timeoutOk
        ? r as unknown as StoreRequest
        : null;
    default:
      return null;
  }
}
