/**
 * BAD outcomes already reported against files this suite's authors could not change
 * at the time (each owned by work in progress elsewhere). The runner counts a BAD
 * outcome that one of these matches as "known" instead of "bad", so the suite fails
 * on anything new while these stay visible in the table. When a fix lands, delete
 * its entry: `deno task fuzz` then names any entry that matched nothing.
 *
 * defines: KnownDefect, KNOWN_DEFECTS, knownDefect
 *
 * @module
 */

/** One reported defect. */
export interface KnownDefect {
  /** The readers that find it. */
  readers: readonly string[];
  /** Matches the BAD detail (as the child prints it: reason, then the message). */
  pattern: RegExp;
  /** Where the fix belongs. */
  file: string;
  /** What is wrong, and an input that shows it. */
  note: string;
}

/** The defects, by reader. */
export const KNOWN_DEFECTS: readonly KnownDefect[] = [
  {
    readers: ["checkpoint", "resume"],
    pattern: /^names none of .*: DenotronError: loss scale must be a positive finite number/,
    file: "lib/io/checkpoint.ts (readState)",
    note: 'state.json "lossScaler": 5 or {"scale": [65536]} passes readState; the grad ' +
      "scaler's loadStateDict then fails without naming the file",
  },
  {
    readers: ["checkpoint", "resume"],
    pattern: /^accepted invalid: (skippedSteps|lossScaler)/,
    file: "lib/io/checkpoint.ts (readState)",
    note: 'state.json "skippedSteps": null or "lossScaler": {"growthTracker": "x"} is ' +
      "accepted and restored as is by the trainer",
  },
  {
    readers: ["checkpoint", "resume"],
    pattern: /^\d+-character message: CheckpointError: .*state\.json: /,
    file: "lib/io/checkpoint.ts (readState)",
    note: 'a 100 kB string or a deeply nested value in "iteration", "rng" or ' +
      '"formatVersion" is echoed whole (JSON.stringify) in the message',
  },
  {
    readers: ["checkpoint", "resume"],
    pattern: /^several lines: CheckpointError: .*state\.json: not valid JSON/,
    file: "lib/io/checkpoint.ts (readState)",
    note: "JSON.parse's message quotes the text around the error, line breaks included " +
      "(state.json with a byte deleted)",
  },
  {
    readers: ["resume"],
    pattern: /^names none of .*: Error: unknown tokenizer /,
    file: "lib/infer/sources.ts (fromCheckpoint)",
    note: 'state.json "config": {"data": {"tokenizer": {}}} reaches loadTokenizer(String(...)), ' +
      "whose error names neither state.json nor the field",
  },
  {
    readers: ["yaml"],
    pattern: /^several lines: ConfigError: .*: not valid YAML/,
    file: "lib/train/config.ts (loadConfig)",
    note: "the yaml package's message carries a code excerpt over several lines " +
      "(config.yaml with one line indented)",
  },
  {
    readers: ["cli"],
    pattern: /ConfigError: : cannot read config file/,
    file: "lib/train/config.ts (loadConfig)",
    note: '`--config \'\'` is taken as the file "", and the message starts with ": " ' +
      "(no flag, no file)",
  },
  {
    readers: ["hf-tokenizer"],
    pattern: /^engine error: RangeError: Invalid array length/,
    file: "lib/data/hf_tokenizer.ts (HfTokenizer constructor)",
    note: "a model.vocab id of 2^32 or more passes the integer check, then " +
      "new Array(maxId + 1) throws",
  },
  {
    readers: ["hf-tokenizer"],
    pattern: /^engine error: RangeError: .*decode: id -?\d+ is not a token/,
    file: "lib/data/hf_tokenizer.ts (HfTokenizer constructor)",
    note: "a model.vocab id of 2^31 or more is accepted, wraps to a negative id in int32 " +
      "storage, and decode(encode(text)) throws",
  },
  {
    readers: ["hf-tokenizer"],
    pattern: /^\d+-character message: DenotronError: .*tokenizer(_config)?\.json: /,
    file: "lib/data/hf_json.ts, lib/data/hf_tokenizer.ts",
    note: 'a 100 kB string or deeply nested value (e.g. "eos_token") is echoed whole in ' +
      "the message",
  },
];

/**
 * The known defect a BAD outcome is, if any.
 *
 * @param reader the reader
 * @param detail the BAD detail
 * @returns the entry, or undefined for a new defect
 */
export function knownDefect(reader: string, detail: string): KnownDefect | undefined {
  return KNOWN_DEFECTS.find((k) => k.readers.includes(reader) && k.pattern.test(detail));
}
