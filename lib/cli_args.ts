/**
 * Command-line flags for every tool: node's parseArgs, with an unknown option answered by
 * the nearest known one, and the nearest-name rule the configuration keys use too.
 *
 * defines: closestName, parseFlags
 *
 * @module
 */

import { parseArgs } from "parse-args";
import { DenotronError } from "./errors.ts";

/** Levenshtein distance: insertions, deletions and substitutions. */
function editDistance(a: string, b: string): number {
  const prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let diag = prev[0];
    prev[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const up = prev[j];
      prev[j] = Math.min(prev[j] + 1, prev[j - 1] + 1, diag + (a[i - 1] === b[j - 1] ? 0 : 1));
      diag = up;
    }
  }
  return prev[b.length];
}

/**
 * The known name closest to `name` (case ignored), if near enough to be a likely typo:
 * at most 2 edits, or a third of the name's length for long names.
 *
 * @param name what was written
 * @param known the names it may have meant
 * @returns the nearest known name, or undefined when none is near
 * @example
 * ```ts
 * import { closestName } from "./cli_args.ts";
 * closestName("train-itres", ["train-iters", "lr"]); // "train-iters"
 * ```
 */
export function closestName(name: string, known: Iterable<string>): string | undefined {
  let best: string | undefined;
  let bestD = Infinity;
  for (const k of known) {
    const d = editDistance(name.toLowerCase(), k.toLowerCase());
    if (d < bestD) (bestD = d, best = k);
  }
  return bestD <= Math.max(2, Math.floor(name.length / 3)) ? best : undefined;
}

/** What {@link parseFlags} takes: parseArgs' options, strict, positionals as told. */
export interface FlagSpec<O extends Record<string, ParseOption>> {
  /** The command line. */
  args: string[];
  /** The flags, as parseArgs takes them. */
  options: O;
  /** Whether words that are not flags are allowed. @default false */
  allowPositionals?: boolean;
}

/** One flag of parseArgs' `options`. */
export type ParseOption = {
  type: "string" | "boolean";
  short?: string;
  multiple?: boolean;
  default?: string | boolean | string[] | boolean[];
};

/**
 * parseArgs, strict, with its errors as one-line DenotronErrors: an unknown option names
 * the nearest known flag (`unknown option --promt; did you mean --prompt?`).
 *
 * @param spec the command line and the flags
 * @returns parseArgs' values and positionals
 * @throws {DenotronError} for an unknown option or a flag without its value
 * @example
 * ```ts
 * import { parseFlags } from "./cli_args.ts";
 * const { values } = parseFlags({ args: ["--steps", "3"], options: { steps: { type: "string" } } });
 * values.steps; // "3"
 * ```
 */
export function parseFlags<O extends Record<string, ParseOption>>(spec: FlagSpec<O>) {
  try {
    const parsed = parseArgs({
      args: spec.args,
      options: spec.options,
      strict: true as const,
      allowPositionals: true as const,
    });
    const stray = parsed.positionals[0];
    if (!spec.allowPositionals && stray !== undefined) {
      throw new DenotronError(`unexpected argument "${stray}"; options look like --name value`);
    }
    return parsed;
  } catch (e) {
    const code = String((e as { code?: unknown })?.code ?? "");
    const message = e instanceof Error ? e.message : String(e);
    if (code === "ERR_PARSE_ARGS_UNKNOWN_OPTION") {
      const given = /'(-{1,2}[^'\s]+)'/.exec(message)?.[1] ?? "";
      const name = given.replace(/^-+/, "").replace(/=.*$/, "");
      const near = closestName(name, Object.keys(spec.options));
      throw new DenotronError(
        `unknown option ${given}` + (near ? `; did you mean --${near}?` : "; --help lists them"),
      );
    }
    if (code.startsWith("ERR_PARSE_ARGS")) {
      // "Option '--x <value>' argument missing", "Unexpected argument 'y'": one line, ours
      throw new DenotronError(message.split("\n")[0].replace(/\.$/, ""));
    }
    throw e;
  }
}
