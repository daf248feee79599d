/**
 * The text a reader of an email sees, from its MIME structure: enough of RFC 2045-2047 for
 * the SpamAssassin corpus, not a full MIME library.
 *
 * defines: headerParam, decodeTransfer, decodeEncodedWords, htmlToText, mimeText
 *
 * - `multipart/alternative` gives its first text/plain part, else its first text/html
 *   part; any other multipart gives the text of all its parts, one after another;
 * - text/plain is kept as it is, text/html loses its tags, scripts, styles and comments
 *   (block ends become line breaks, character references are decoded); other types
 *   (images, attachments) give no text;
 * - base64 and quoted-printable bodies are decoded to bytes and read in their charset
 *   (UTF-8 when it is missing or unknown); others are taken as the package's text;
 * - nesting stops at depth 8, far beyond what real mail uses.
 *
 * @module
 */

import { parseEmail } from "./email_subjects.ts";

const MAX_DEPTH = 8;

/**
 * A parameter of a structured header value, unquoted.
 *
 * @param value a header value such as `multipart/mixed; boundary="b1"`
 * @param name the parameter, any case
 * @returns its value, or undefined
 * @example
 * ```ts
 * import { headerParam } from "./mime.ts";
 * headerParam('text/plain; charset="ISO-8859-1"', "charset"); // "ISO-8859-1"
 * ```
 */
export function headerParam(value: string, name: string): string | undefined {
  const m = value.match(new RegExp(`;\\s*${name}\\s*=\\s*(?:"([^"]*)"|([^;\\s]+))`, "i"));
  return m ? (m[1] ?? m[2]) : undefined;
}

/** Bytes of a string of byte characters; a character above 0xFF is kept as its UTF-8. */
function latin1Bytes(s: string): Uint8Array {
  const out: number[] = [];
  for (const ch of s) {
    const c = ch.codePointAt(0)!;
    if (c < 0x100) out.push(c);
    else out.push(...new TextEncoder().encode(ch));
  }
  return Uint8Array.from(out);
}

/** Text of bytes in a charset; UTF-8 when the label is missing or unknown to TextDecoder. */
function decodeCharset(bytes: Uint8Array, charset: string | undefined): string {
  try {
    return new TextDecoder(charset ?? "utf-8").decode(bytes);
  } catch {
    return new TextDecoder("utf-8").decode(bytes);
  }
}

/** Bytes of quoted-printable text: `=XX` escapes, `=` line ends are soft breaks. */
function quotedPrintableBytes(s: string): Uint8Array {
  const plain = s.replace(/=\r?\n/g, "");
  return latin1Bytes(
    plain.replace(/=([0-9A-Fa-f]{2})/g, (_, h) => String.fromCharCode(parseInt(h, 16))),
  );
}

/** Bytes of base64 text, whatever the line breaks, up to its padding; undefined when bad. */
function base64Bytes(s: string): Uint8Array | undefined {
  const clean = s.split("=")[0].replace(/[^A-Za-z0-9+/]/g, "");
  if (clean.length % 4 === 1) return undefined; // no whole byte in the last group
  try {
    const padded = clean + "==".slice(0, (4 - (clean.length % 4)) % 4);
    return Uint8Array.from(atob(padded), (c) => c.charCodeAt(0));
  } catch {
    return undefined;
  }
}

/**
 * A body decoded from its Content-Transfer-Encoding and read in its charset.
 *
 * @param body the raw body
 * @param encoding the header's value ("base64", "quoted-printable", "7bit"...), any case
 * @param charset the Content-Type's charset
 * @returns the text; a body that is not valid base64 gives ""
 * @example
 * ```ts
 * import { decodeTransfer } from "./mime.ts";
 * decodeTransfer("caf=E9 =\nau lait", "quoted-printable", "iso-8859-1"); // "café au lait"
 * ```
 */
export function decodeTransfer(body: string, encoding: string, charset?: string): string {
  const e = encoding.trim().toLowerCase();
  if (e === "base64") {
    const bytes = base64Bytes(body);
    return bytes ? decodeCharset(bytes, charset) : "";
  }
  if (e === "quoted-printable") return decodeCharset(quotedPrintableBytes(body), charset);
  return body;
}

/**
 * RFC 2047 encoded words (`=?charset?B?...?=`, `=?charset?Q?...?=`) in a header, decoded;
 * the space between two encoded words is dropped, as the RFC says.
 *
 * @param value a header value
 * @returns the text
 * @example
 * ```ts
 * import { decodeEncodedWords } from "./mime.ts";
 * decodeEncodedWords("=?iso-8859-1?Q?Caf=E9_cr=E8me?= now"); // "Café crème now"
 * ```
 */
export function decodeEncodedWords(value: string): string {
  return value.replace(/\?=\s+=\?/g, "?==?").replace(
    /=\?([^?]+)\?([BbQq])\?([^?]*)\?=/g,
    (_, charset: string, kind: string, text: string) => {
      const bytes = kind.toUpperCase() === "B"
        ? base64Bytes(text) ?? new Uint8Array()
        : quotedPrintableBytes(text.replace(/_/g, " "));
      return decodeCharset(bytes, charset);
    },
  );
}

const ENTITIES: Readonly<Record<string, string>> = {
  nbsp: " ",
  amp: "&",
  lt: "<",
  gt: ">",
  quot: '"',
  apos: "'",
  copy: "©",
  reg: "®",
  trade: "™",
};

/**
 * The visible text of HTML: no comments, scripts, styles or tags; `<br>`, `<p>`, `<div>`,
 * `<tr>`, `<li>` and headings end lines; character references decoded (numeric ones and
 * the common named ones).
 *
 * @param html an HTML document or fragment
 * @returns its text, whitespace as the tags left it
 * @example
 * ```ts
 * import { htmlToText } from "./mime.ts";
 * htmlToText("<p>Save&nbsp;70%<br>now</p><!-- x --><style>p{}</style>"); // "\nSave 70%\nnow\n"
 * ```
 */
export function htmlToText(html: string): string {
  return html
    .replace(/<!--[\s\S]*?-->/g, "")
    .replace(/<(script|style|head)\b[\s\S]*?<\/\1\s*>/gi, "")
    .replace(/<\/?(?:br|p|div|tr|li|h[1-6]|table|center)\b[^>]*>/gi, "\n")
    .replace(/<[^>]*>/g, "")
    .replace(/&(#x[0-9a-f]+|#\d+|[a-z]+);/gi, (m, ref: string) => {
      if (ref[0] !== "#") return ENTITIES[ref.toLowerCase()] ?? m;
      const cp = ref[1] === "x" || ref[1] === "X"
        ? parseInt(ref.slice(2), 16)
        : Number(ref.slice(1));
      return cp > 0 && cp <= 0x10ffff ? String.fromCodePoint(cp) : "";
    });
}

/**
 * The readable text of a message or MIME part, by the rules of this module.
 *
 * @param headers the part's headers (lower-cased names), as {@link parseEmail} gives them
 * @param body the part's raw body
 * @param depth how deep in multiparts this part is
 * @default depth 0
 * @returns the text, possibly ""
 * @example
 * ```ts
 * import { mimeText } from "./mime.ts";
 * import { parseEmail } from "./email_subjects.ts";
 * const raw = 'Content-Type: multipart/alternative; boundary="b"\n\n--b\n' +
 *   "Content-Type: text/plain\n\nHello\n--b\nContent-Type: text/html\n\n<b>Hello</b>\n--b--\n";
 * const { headers, body } = parseEmail(raw);
 * mimeText(headers, body); // "Hello\n"
 * ```
 */
export function mimeText(headers: Map<string, string>, body: string, depth = 0): string {
  const contentType = headers.get("content-type") ?? "text/plain";
  const type = contentType.split(";")[0].trim().toLowerCase();
  if (type.startsWith("multipart/")) {
    const boundary = headerParam(contentType, "boundary");
    if (boundary === undefined || depth >= MAX_DEPTH) return "";
    const parts = multipartParts(body, boundary);
    if (type === "multipart/alternative") {
      const plain = parts.find((p) => partType(p.headers) === "text/plain");
      const chosen = plain ?? parts.find((p) => partType(p.headers) === "text/html");
      return chosen ? mimeText(chosen.headers, chosen.body, depth + 1) : "";
    }
    return parts.map((p) => mimeText(p.headers, p.body, depth + 1)).filter((t) => t.trim())
      .join("\n");
  }
  if (type !== "text/plain" && type !== "text/html" && type !== "text") return "";
  const encoding = headers.get("content-transfer-encoding") ?? "";
  const text = decodeTransfer(body, encoding, headerParam(contentType, "charset"));
  return type === "text/html" ? htmlToText(text) : text;
}

function partType(headers: Map<string, string>): string {
  return (headers.get("content-type") ?? "text/plain").split(";")[0].trim().toLowerCase();
}

/** The parts between `--boundary` lines, each split into headers and body. */
function multipartParts(
  body: string,
  boundary: string,
): { headers: Map<string, string>; body: string }[] {
  const chunks = body.replace(/\r\n/g, "\n").split(`--${boundary}`);
  const out: { headers: Map<string, string>; body: string }[] = [];
  // chunks[0] is the preamble; a chunk starting "--" follows the closing boundary.
  for (const chunk of chunks.slice(1)) {
    if (chunk.startsWith("--")) break;
    const part = chunk.replace(/^[^\n]*\n/, ""); // the rest of the boundary line
    out.push(
      part.startsWith("\n") ? { headers: new Map(), body: part.slice(1) } : parseEmail(part),
    );
  }
  return out;
}
