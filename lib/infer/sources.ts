/**
 * defines: GenerationSource, fromCheckpoint, fromHfGpt2 — a model and its tokenizer,
 * ready to generate, from one of our training checkpoints or a Hugging Face GPT-2
 * directory.
 *
 * @module
 */
import { join } from "node:path";
import { loadTokenizer, type Tokenizer } from "../data/tokenizer.ts";
import type { Device } from "../device.ts";
import { DenotronError } from "../errors.ts";
import { loadHfGpt2 } from "../io/hf_gpt2.ts";
import { readSafetensors } from "../io/safetensors.ts";
import { GPT, type GPTConfig, paddedVocabSize } from "../nn/gpt.ts";
import { expectTensors, latestCheckpoint, readCheckpoint } from "../io/checkpoint.ts";

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
  const dir = /(^|\/)iter_\d+\/?$/.test(path) ? path : await latestCheckpoint(path);
  if (dir === null) {
    throw new DenotronError(`${path}: no "latest" file; is this a save directory of a run?`);
  }
  const statePath = join(dir, "state.json");
  let state: { config?: { model?: Record<string, unknown>; data?: Record<string, unknown> } };
  try {
    state = JSON.parse(await Deno.readTextFile(statePath));
  } catch (e) {
    throw new DenotronError(`${statePath}: cannot read the run state (${(e as Error).message})`);
  }
  const m = state.config?.model ?? {};
  const nLayer = m.nLayer, nHead = m.nHead;
  if (typeof nLayer !== "number" || typeof nHead !== "number") {
    throw new DenotronError(`${statePath}: config.model has no nLayer and nHead`);
  }
  const weightsPath = join(dir, "model.safetensors");
  const shapes = (await readSafetensors(weightsPath, ["emb.wte", "emb.wpe", "h.0.mlp.fc.weight"]))
    .tensors;
  const [rows, nEmbd] = shapes.get("emb.wte")!.shape;
  const tokenizerName = state.config?.data?.tokenizer ?? "gpt2";
  const tokenizer = await loadTokenizer(String(tokenizerName));
  // A padded vocabulary (model.vocabMultiple) has more wte rows than tokens.
  const multiple = typeof m.vocabMultiple === "number" ? m.vocabMultiple : 1;
  const real = typeof m.vocabSize === "number" ? m.vocabSize : tokenizer.vocabSize;
  const padded = multiple > 1 &&
    paddedVocabSize({ vocabSize: real, vocabMultiple: multiple }) === rows;
  const config: GPTConfig = {
    vocabSize: padded ? real : rows,
    ...(padded ? { vocabMultiple: multiple } : {}),
    nEmbd,
    blockSize: shapes.get("emb.wpe")!.shape[0],
    ffnHidden: shapes.get("h.0.mlp.fc.weight")!.shape[0],
    nLayer,
    nHead,
    dropout: 0,
  };
  const model = new GPT(config, { device: opts.device });
  try {
    const ck = await readCheckpoint(dir);
    const file = join(dir, "model.safetensors");
    const shapes = model.params.entries.map((e) => [e.name, e.tensor.shape] as const);
    expectTensors(ck.weights, shapes, file, [""]);
    model.loadStateDict(Object.fromEntries(ck.weights), file);
  } catch (e) {
    model.dispose();
    throw e;
  }
  return { model: model.eval(), tokenizer, origin: dir };
}

/**
 * Loads a Hugging Face GPT-2 directory for generation, with the directory's
 * `vocab.json` + `merges.txt` when present, else the built-in GPT-2 tokenizer.
 *
 * @param dir the directory (`config.json`, `model.safetensors`, optional tokenizer files)
 * @param opts the device to load onto
 * @returns the model (eval mode) and tokenizer
 */
export async function fromHfGpt2(
  dir: string,
  opts: { device?: Device } = {},
): Promise<GenerationSource> {
  const vocab = join(dir, "vocab.json"), merges = join(dir, "merges.txt");
  const has = async (p: string) => await Deno.stat(p).then(() => true, () => false);
  const files = (await has(vocab)) && (await has(merges)) ? { vocab, merges } : undefined;
  const tokenizer = await loadTokenizer("gpt2", files);
  const model = await loadHfGpt2(dir, { device: opts.device });
  if (model.config.vocabSize < tokenizer.vocabSize) {
    model.dispose();
    throw new DenotronError(
      `${dir}: the model's vocabulary (${model.config.vocabSize}) is smaller than the ` +
        `tokenizer's (${tokenizer.vocabSize})`,
    );
  }
  return { model, tokenizer, origin: dir };
}
