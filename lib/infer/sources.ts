/**
 * defines: GenerationSource, fromCheckpoint, fromHf, fromHfGpt2 — a model and its
 * tokenizer, ready to generate, from one of our training checkpoints or a Hugging Face
 * GPT-2 or Llama directory.
 *
 * @module
 */
import { join } from "node:path";
import { loadTokenizer, type Tokenizer } from "../data/tokenizer.ts";
import type { Device } from "../device.ts";
import { causeText, DenotronError, fmtValue } from "../errors.ts";
import { loadHf } from "../io/hf.ts";
import { GPT, type GPTConfig, paddedVocabSize } from "../nn/gpt.ts";
import { expectFinite, expectTensors, readCheckpoint } from "../io/checkpoint.ts";

/** A model in eval mode and the tokenizer it was trained with. */
export interface GenerationSource {
  model: GPT;
  tokenizer: Tokenizer;
  /** Where it came from, for messages. */
  origin: string;
}

/**
 * Loads the weights of a training checkpoint for generation. The model's layers and
 * heads come from the run config in `state.json`; its vocabulary, positions, width
 * and MLP width from the stored tensors themselves, so a padded vocabulary loads as
 * trained.
 *
 * @param path a save directory (its `latest` checkpoint is used) or `DIR/iter_NNNNNNN`
 * @param opts the device to load onto
 * @returns the model (eval mode) and the run's tokenizer
 */
export async function fromCheckpoint(
  path: string,
  opts: { device?: Device } = {},
): Promise<GenerationSource> {
  // The checkpoint is read and checked (checksums, shapes, finite values) before a model
  // is built from it.
  const ck = await readCheckpoint(path);
  const dir = ck.dir;
  const weightsPath = join(dir, "model.safetensors");
  expectFinite(ck.weights, `${weightsPath}:`);
  const statePath = join(dir, "state.json");
  const run = ck.state.config as
    | { model?: Record<string, unknown>; data?: Record<string, unknown> }
    | null;
  const m = run?.model ?? {};
  const nLayer = m.nLayer, nHead = m.nHead;
  if (typeof nLayer !== "number" || typeof nHead !== "number") {
    throw new DenotronError(`${statePath}: config.model has no nLayer and nHead`);
  }
  const shapeOf = (name: string): number[] => {
    const t = ck.weights.get(name);
    if (!t) throw new DenotronError(`${weightsPath}: missing tensor '${name}'`);
    return t.shape;
  };
  const [rows, nEmbd] = shapeOf("emb.wte");
  const tokenizerName = run?.data?.tokenizer ?? "gpt2";
  if (typeof tokenizerName !== "string" || tokenizerName === "") {
    throw new DenotronError(
      `${statePath}: config.data.tokenizer must be a tokenizer name, got ${
        fmtValue(tokenizerName)
      }`,
    );
  }
  let tokenizer: Tokenizer;
  try {
    tokenizer = await loadTokenizer(tokenizerName);
  } catch (e) {
    throw new DenotronError(`${statePath}: config.data.tokenizer: ${causeText(e)}`);
  }
  // A padded vocabulary (model.vocabMultiple) has more wte rows than tokens.
  const multiple = typeof m.vocabMultiple === "number" ? m.vocabMultiple : 1;
  const real = typeof m.vocabSize === "number" ? m.vocabSize : tokenizer.vocabSize;
  const padded = multiple > 1 &&
    paddedVocabSize({ vocabSize: real, vocabMultiple: multiple }) === rows;
  // Checkpoints since the Llama-family models record the model's config; older ones are
  // GPT-2s whose shape the tensors tell.
  const saved = ck.state.modelConfig;
  const config: GPTConfig = saved ? { ...(saved as unknown as GPTConfig), dropout: 0 } : {
    vocabSize: padded ? real : rows,
    ...(padded ? { vocabMultiple: multiple } : {}),
    nEmbd,
    blockSize: shapeOf("emb.wpe")[0],
    ffnHidden: shapeOf("h.0.mlp.fc.weight")[0],
    nLayer,
    nHead,
    dropout: 0,
  };
  let model: GPT;
  try {
    model = new GPT(config, { device: opts.device });
  } catch (e) {
    throw new DenotronError(`${statePath}: modelConfig: ${(e as Error).message}`);
  }
  try {
    const shapes = model.params.entries.map((e) => [e.name, e.tensor.shape] as const);
    expectTensors(ck.weights, shapes, weightsPath, [""]);
    model.loadStateDict(Object.fromEntries(ck.weights), weightsPath);
  } catch (e) {
    model.dispose();
    throw e;
  }
  return { model: model.eval(), tokenizer, origin: dir };
}

/**
 * Loads a Hugging Face GPT-2 or Llama directory (see lib/io/hf.ts) for generation, with
 * the directory's tokenizer: `tokenizer.json` (with `tokenizer_config.json`) when
 * present, else `vocab.json` + `merges.txt`, else the built-in GPT-2 tokenizer.
 *
 * @param dir the directory (`config.json`, `model.safetensors` or shards, optional
 *   tokenizer files)
 * @param opts the device to load onto
 * @returns the model (eval mode) and tokenizer
 */
export async function fromHf(
  dir: string,
  opts: { device?: Device } = {},
): Promise<GenerationSource> {
  const hfJson = join(dir, "tokenizer.json");
  const vocab = join(dir, "vocab.json"), merges = join(dir, "merges.txt");
  const has = async (p: string) => await Deno.stat(p).then(() => true, () => false);
  const files = (await has(vocab)) && (await has(merges)) ? { vocab, merges } : undefined;
  const tokenizer = await has(hfJson)
    ? await loadTokenizer(hfJson)
    : await loadTokenizer("gpt2", files);
  const model = await loadHf(dir, { device: opts.device });
  try {
    if (model.config.vocabSize < tokenizer.vocabSize) {
      throw new DenotronError(
        `${dir}: the model's vocabulary (${model.config.vocabSize}) is smaller than the ` +
          `tokenizer's (${tokenizer.vocabSize})`,
      );
    }
    expectFiniteWeights(model, dir);
  } catch (e) {
    model.dispose();
    throw e;
  }
  return { model, tokenizer, origin: dir };
}

/** {@linkcode fromHf}, under the name it had when only GPT-2 was imported. */
export const fromHfGpt2: typeof fromHf = fromHf;

/** Refuses a model holding a NaN or an infinity, naming the tensor (it would generate junk). */
function expectFiniteWeights(model: GPT, file: string): void {
  const flat = model.params.data.toArray();
  for (const e of model.params.entries) {
    expectFinite(
      new Map([[e.name, {
        shape: [...e.tensor.shape],
        data: flat.subarray(e.offset, e.offset + e.tensor.numel) as Float32Array,
      }]]),
      `${file}:`,
    );
  }
}
