/**
 * defines: HfModelType, hfModelType, loadHf, saveHf — one entry to Hugging Face
 * checkpoints of every architecture Denotron imports: `config.json`'s `model_type`
 * picks the importer (lib/io/hf_gpt2.ts, lib/io/hf_llama.ts or lib/io/hf_bert.ts), the
 * model's architecture picks the exporter.
 *
 * @module
 */
import { join } from "node:path";
import { DenotronError, fmtValue } from "../errors.ts";
import { type GPT, type GPTOptions, isEncoder, isGpt2Architecture } from "../nn/gpt.ts";
import { BERT_HF_ARCHITECTURES, loadHfBert, saveHfBert } from "./hf_bert.ts";
import { readJson, type SaveHfOptions } from "./hf_common.ts";
import { loadHfGpt2, saveHfGpt2 } from "./hf_gpt2.ts";
import { loadHfLlama, saveHfLlama } from "./hf_llama.ts";

/** The architectures with an importer, by their `model_type`. */
export type HfModelType = "gpt2" | "llama" | "bert";

/** `model_type` of each importer, and the `architectures` entries that also name it. */
const ARCHITECTURES: Record<HfModelType, readonly string[]> = {
  gpt2: ["GPT2LMHeadModel"],
  llama: ["LlamaForCausalLM"],
  bert: BERT_HF_ARCHITECTURES,
};

/**
 * Which importer reads `dir`: `model_type` of its config.json, or failing that its
 * `architectures`; a config naming neither is GPT-2's (the oldest GPT-2 files carry no
 * model_type).
 *
 * @param dir the Hugging Face directory
 * @returns "gpt2", "llama" or "bert"
 */
export async function hfModelType(dir: string): Promise<HfModelType> {
  const path = join(dir, "config.json");
  const raw = await readJson(path);
  if (!raw || typeof raw !== "object" || Array.isArray(raw)) {
    throw new DenotronError(`${path}: expected a JSON object`);
  }
  const { model_type: type, architectures: archs } = raw as Record<string, unknown>;
  const known = Object.keys(ARCHITECTURES) as HfModelType[];
  if (type !== undefined) {
    if (known.includes(type as HfModelType)) return type as HfModelType;
    throw new DenotronError(
      `${path}: model_type ${fmtValue(type)} is not one Denotron imports (${
        known.map((k) => `"${k}"`).join(", ")
      })`,
    );
  }
  if (archs === undefined) return "gpt2";
  const found = known.find((k) =>
    Array.isArray(archs) && ARCHITECTURES[k].some((a) => archs.includes(a))
  );
  if (found) return found;
  throw new DenotronError(
    `${path}: architectures ${fmtValue(archs)} names none that Denotron imports (${
      known.flatMap((k) => ARCHITECTURES[k]).map((a) => `"${a}"`).join(", ")
    })`,
  );
}

/**
 * Builds a GPT from a Hugging Face GPT-2, Llama or BERT directory (see
 * {@linkcode hfModelType}, loadHfGpt2, loadHfLlama, loadHfBert).
 *
 * @param dir the directory
 * @param opts device, dtype, seed and vocabulary padding of the new model
 * @returns the model, in eval mode
 * @example
 * ```ts ignore
 * import { loadHf } from "./hf.ts";
 * const model = await loadHf("SmolLM2-135M"); // or a GPT-2 directory
 * ```
 */
export async function loadHf(
  dir: string,
  opts: GPTOptions & { vocabMultiple?: number } = {},
): Promise<GPT> {
  const type = await hfModelType(dir);
  if (type === "bert") return await loadHfBert(dir, opts);
  return type === "llama" ? await loadHfLlama(dir, opts) : await loadHfGpt2(dir, opts);
}

/**
 * Writes `model` as a Hugging Face directory: BERT's layout for an encoder, GPT-2's for
 * GPT-2's architecture, Llama's otherwise (saveHfBert, saveHfGpt2, saveHfLlama).
 *
 * @param model the model
 * @param dir the directory (created if needed)
 * @param opts the shard size
 * @returns when every file is in place
 */
export async function saveHf(
  model: GPT,
  dir: string,
  opts: SaveHfOptions = {},
): Promise<void> {
  if (isEncoder(model.config)) await saveHfBert(model, dir, opts);
  else if (isGpt2Architecture(model.config)) await saveHfGpt2(model, dir, opts);
  else await saveHfLlama(model, dir, opts);
}
