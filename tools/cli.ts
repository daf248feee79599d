/**
 * What every command-line tool shares: the one-line error form and number flags.
 *
 * defines: runMain, isUserError, joinNegativeValues, intFlag, numberFlag, MODEL_SOURCE_FLAGS,
 *          modelSource
 *
 * A tool's error is one line on standard error, `error: …`, naming what is wrong and
 * where (file, field, flag); exit status 2 for bad input, 1 for anything else. The stack
 * trace is shown only with DENOTRON_DEBUG=1.
 *
 * @module
 */
import { DenotronError } from "../lib/errors.ts";
import { CheckpointError } from "../lib/io/checkpoint.ts";
import { ConfigError } from "../lib/key_table.ts";
import { NativeError } from "../ffi/native.ts";
import { PlanError } from "../lib/plan/predict.ts";
import { fromCheckpoint, fromHf, type GenerationSource } from "../lib/infer/sources.ts";
import { isEncoder } from "../lib/nn/gpt_config.ts";

/** Whether `e` is about the input (a flag, a file, a field, a size), not a bug. */
export function isUserError(e: unknown): boolean {
  return e instanceof DenotronError || e instanceof ConfigError ||
    e instanceof CheckpointError || e instanceof NativeError || e instanceof PlanError ||
    e instanceof Deno.errors.NotFound || e instanceof Deno.errors.PermissionDenied ||
    e instanceof Deno.errors.IsADirectory || e instanceof Deno.errors.NotADirectory ||
    e instanceof Deno.errors.AlreadyExists ||
    // node:util parseArgs: an unknown flag, a missing value
    String((e as { code?: unknown })?.code ?? "").startsWith("ERR_PARSE_ARGS");
}

/**
 * Runs a tool's main function and exits with its status; an error becomes one line.
 *
 * @param main returns the exit status (undefined: 0)
 */
export async function runMain(main: () => Promise<number | void>): Promise<never> {
  let code: number;
  try {
    code = (await main()) ?? 0;
  } catch (e) {
    if (Deno.env.get("DENOTRON_DEBUG") === "1") {
      console.error(e);
      Deno.exit(isUserError(e) ? 2 : 1);
    }
    const message = e instanceof Error ? e.message : String(e);
    if (isUserError(e)) {
      console.error(`error: ${message.split("\n").join(" ")}`);
      Deno.exit(2);
    }
    console.error(
      `error: ${message.split("\n")[0]} (an internal error: DENOTRON_DEBUG=1 shows where)`,
    );
    Deno.exit(1);
  }
  Deno.exit(code);
}

/**
 * `--flag -1` → `--flag=-1`: node's parseArgs reads a value that starts with "-" as an
 * option, so negative numbers would only work in the `=` form.
 *
 * @param args the command line
 * @returns the same arguments, a negative number joined to the flag before it
 * @example
 * ```ts
 * import { joinNegativeValues } from "./cli.ts";
 * joinNegativeValues(["--seed", "-1", "--x"]); // ["--seed=-1", "--x"]
 * ```
 */
export function joinNegativeValues(args: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i], next = args[i + 1];
    if (/^--[^=]+$/.test(a) && next !== undefined && /^-(\d|\.\d|inf)/i.test(next)) {
      out.push(`${a}=${next}`);
      i++;
    } else out.push(a);
  }
  return out;
}

/**
 * A numeric flag's value, checked.
 *
 * @param flag its name without dashes, for the message
 * @param raw what the command line gave
 * @param min smallest allowed
 * @param max largest allowed
 * @returns the number
 * @throws DenotronError naming the flag and the value
 */
export function numberFlag(flag: string, raw: unknown, min: number, max: number): number {
  const v = typeof raw === "string" && raw.trim() !== "" ? Number(raw) : NaN;
  if (!Number.isFinite(v) || v < min || v > max) {
    throw new DenotronError(`--${flag} must be a number in [${min}, ${max}], got "${raw}"`);
  }
  return v;
}

/**
 * An integer flag's value, checked (1.5 and 1e20 are refused).
 *
 * @param flag its name without dashes, for the message
 * @param raw what the command line gave
 * @param min smallest allowed
 * @param max largest allowed (at most 2^53 - 1)
 * @returns the integer
 * @throws DenotronError naming the flag and the value
 */
export function intFlag(flag: string, raw: unknown, min: number, max: number): number {
  const v = typeof raw === "string" && /^\s*[-+]?\d+(e\+?\d+)?\s*$/i.test(raw) ? Number(raw) : NaN;
  if (!Number.isSafeInteger(v) || v < min || v > max) {
    throw new DenotronError(`--${flag} must be an integer in [${min}, ${max}], got "${raw}"`);
  }
  return v;
}

/** The flags that name the model to load: a training checkpoint or a Hugging Face directory. */
export const MODEL_SOURCE_FLAGS = {
  checkpoint: { type: "string" },
  hf: { type: "string" },
} as const;

/**
 * Checks that exactly one of `--checkpoint` and `--hf` was given and returns its loader,
 * so that every other flag can be checked before the model is read.
 *
 * @param values the parsed flags
 * @returns a function that loads the model and tokenizer
 * @throws DenotronError when neither or both are given
 */
export function modelSource(
  values: { checkpoint?: string; hf?: string },
): () => Promise<GenerationSource> {
  const { checkpoint, hf } = values;
  if ((checkpoint === undefined) === (hf === undefined)) {
    throw new DenotronError(
      "give exactly one of --checkpoint and --hf (--help shows the usage)",
    );
  }
  return async () => {
    const src = checkpoint !== undefined ? await fromCheckpoint(checkpoint) : await fromHf(hf!);
    if (isEncoder(src.model.config)) {
      src.model.dispose();
      throw new DenotronError(
        `${src.origin} holds an encoder (BERT): it reads text both ways and writes none, so ` +
          `it cannot generate, serve or score continuations; fine-tune it (deno task finetune)`,
      );
    }
    return src;
  };
}
