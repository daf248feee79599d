/**
 * lib/io/hf_bert.ts against Hugging Face's BERT layout: tiny BertForPreTraining and
 * BertModel directories written here (config.json and safetensors) must give the hidden
 * states, pooled output, masked-LM and binary logits of the float64 BERT forward of
 * tests/reference_bert.ts, computed from the HF tensors themselves; exports must be the HF
 * layout again, bit for bit; bad files are refused with one line naming the tensor or
 * field.
 */
import assert from "assert";
import { join } from "node:path";
import { noGrad } from "../lib/autograd.ts";
import { hfModelType, loadHf, saveHf } from "../lib/io/hf.ts";
import { bertConfigFromHf, loadHfBert, saveHfBert } from "../lib/io/hf_bert.ts";
import { hfParameterCount } from "../lib/io/hf_common.ts";
import { loadHfGpt2 } from "../lib/io/hf_gpt2.ts";
import {
  readSafetensors,
  type TensorEntry,
  tensorEntry,
  typedView,
  writeSafetensors,
} from "../lib/io/safetensors.ts";
import { paddingLayout } from "../lib/nn/attention.ts";
import type { GPT } from "../lib/nn/gpt.ts";
import { Tensor, tidy } from "../lib/tensor.ts";
import { assertClose, randomArray } from "./helpers.ts";
import {
  type BertInputs,
  type BertOutputs,
  bertRef,
  type BertShape,
  type HfTensors,
} from "./reference_bert.ts";

type Raw = Record<string, unknown>;

/** A tiny BertForPreTraining in HF's vocabulary: 2 layers, width 16, 2 heads. */
const CONFIG: Raw = {
  architectures: ["BertForPreTraining"],
  model_type: "bert",
  attention_probs_dropout_prob: 0.1,
  hidden_act: "gelu",
  hidden_dropout_prob: 0.1,
  hidden_size: 16,
  initializer_range: 0.02,
  intermediate_size: 24,
  layer_norm_eps: 1e-12,
  max_position_embeddings: 12,
  num_attention_heads: 2,
  num_hidden_layers: 2,
  pad_token_id: 0,
  position_embedding_type: "absolute",
  type_vocab_size: 2,
  vocab_size: 23,
};
const SHAPE: BertShape = {
  vocabSize: 23,
  hidden: 16,
  layers: 2,
  heads: 2,
  intermediate: 24,
  eps: 1e-12,
  gelu: "erf",
  prefix: "bert.",
};

type Weights = Map<string, { shape: number[]; data: Float32Array }>;

/**
 * The tensors transformers stores for a BERT of CONFIG's shape, seeded, in its order:
 * the base model under `prefix`, then the heads asked for.
 */
function hfWeights(prefix: string, heads: { pretraining: boolean; pooler: boolean }): Weights {
  const C = 16, F = 24, V = 23;
  const out: Weights = new Map();
  let seed = 500;
  const add = (name: string, shape: number[], scale: number, offset = 0) => {
    const n = shape.reduce((a, b) => a * b, 1);
    out.set(name, {
      shape,
      data: Float32Array.from(randomArray(n, seed++, scale), (v) => v + offset),
    });
  };
  const linear = (name: string, rows: number, cols: number) => {
    add(`${name}.weight`, [rows, cols], 0.4);
    add(`${name}.bias`, [rows], 0.2);
  };
  const norm = (name: string) => {
    add(`${name}.weight`, [C], 0.3, 1);
    add(`${name}.bias`, [C], 0.2);
  };
  const e = `${prefix}embeddings.`;
  add(`${e}word_embeddings.weight`, [V, C], 1);
  add(`${e}position_embeddings.weight`, [12, C], 0.5);
  add(`${e}token_type_embeddings.weight`, [2, C], 0.5);
  norm(`${e}LayerNorm`);
  for (let l = 0; l < 2; l++) {
    const p = `${prefix}encoder.layer.${l}.`;
    for (const q of ["query", "key", "value"]) linear(`${p}attention.self.${q}`, C, C);
    linear(`${p}attention.output.dense`, C, C);
    norm(`${p}attention.output.LayerNorm`);
    linear(`${p}intermediate.dense`, F, C);
    linear(`${p}output.dense`, C, F);
    norm(`${p}output.LayerNorm`);
  }
  if (heads.pooler) linear(`${prefix}pooler.dense`, C, C);
  if (heads.pretraining) {
    add("cls.predictions.bias", [V], 0.3);
    linear("cls.predictions.transform.dense", C, C);
    norm("cls.predictions.transform.LayerNorm");
    linear("cls.seq_relationship", 2, C);
  }
  return out;
}

const PRETRAINING = () => hfWeights("bert.", { pretraining: true, pooler: true });
const BASE_MODEL = () => hfWeights("", { pretraining: false, pooler: true });

/** Writes config.json and model.safetensors; `edit` changes the tensors first. */
async function writeHfDir(
  dir: string,
  cfg: Raw,
  w: Weights,
  edit?: (ts: Map<string, TensorEntry>) => void,
): Promise<string> {
  await Deno.mkdir(dir, { recursive: true });
  const tensors = new Map([...w].map(([k, v]) => [k, tensorEntry("F32", v.shape, v.data)]));
  edit?.(tensors);
  await writeSafetensors(join(dir, "model.safetensors"), { tensors, metadata: { format: "pt" } });
  await Deno.writeTextFile(join(dir, "config.json"), JSON.stringify(cfg));
  return dir;
}

async function inTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "denotron_hf_bert_" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Two rows of 9: the first all valid, the second 5 valid tokens then padding. */
const INPUT: BertInputs = {
  B: 2,
  T: 9,
  tokens: Int32Array.from([2, 7, 7, 13, 22, 3, 1, 19, 4, 2, 0, 11, 5, 3, 0, 0, 0, 0]),
  tokenTypes: Int32Array.from([0, 0, 0, 0, 1, 1, 1, 1, 1, 0, 0, 0, 1, 1, 0, 0, 0, 0]),
  validLengths: [9, 5],
};

/** Our outputs on INPUT, as arrays. */
function ours(model: GPT, x: BertInputs = INPUT): Record<keyof BertOutputs, Float32Array | null> {
  return tidy(() =>
    noGrad(() => {
      const tokens = Tensor.fromArray(x.tokens, [x.B, x.T]);
      const tokenTypes = Tensor.fromArray(x.tokenTypes, [x.B, x.T]);
      const hidden = model.hiddenStates(tokens, {
        tokenTypes,
        layout: paddingLayout(x.validLengths, x.T),
      });
      const pooled = model.pooler ? model.pooled(hidden) : null;
      const arr = (t: Tensor | null) => (t ? t.toArray() as Float32Array : null);
      return {
        hidden: arr(hidden),
        pooled: arr(pooled),
        mlm: model.mlm ? arr(model.lmLogits(hidden)) : null,
        binary: pooled && model.binary ? arr(model.binaryLogits(pooled)) : null,
        classifier: pooled && model.classifier ? arr(model.classifierLogits(pooled)) : null,
      };
    })
  );
}

/** The reference's outputs from the file's own tensors. */
function reference(w: Weights, prefix: string): BertOutputs {
  const t: HfTensors = new Map([...w].map(([k, v]) => [k, Float64Array.from(v.data)]));
  return bertRef(t, { ...SHAPE, prefix }, INPUT);
}

const TOL = { rtol: 1e-4, atol: 1e-5 };

/** Drops the padded rows' columns of a padded vocabulary: (N, Vp) → (N, V). */
function firstColumns(x: Float32Array, Vp: number, V: number): Float32Array {
  return Float32Array.from(
    { length: (x.length / Vp) * V },
    (_, i) => x[Math.floor(i / V) * Vp + (i % V)],
  );
}

Deno.test("loadHfBert() of a BertForPreTraining gives BERT's float64 hidden states, pooled output, MLM and binary logits", async () => {
  await inTempDir(async (dir) => {
    const w = PRETRAINING();
    const path = await writeHfDir(join(dir, "pt"), CONFIG, w);
    assert.equal(await hfModelType(path), "bert");
    const want = reference(w, "bert.");
    for (const load of [() => loadHfBert(path), () => loadHf(path)]) {
      using model = await load();
      assert.equal(model.training, false);
      assert.equal(model.config.gelu, "erf");
      assert.equal(model.config.layerNormEps, 1e-12);
      const got = ours(model);
      assertClose(got.hidden!, want.hidden, "hidden", TOL);
      assertClose(got.pooled!, want.pooled!, "pooled", TOL);
      assertClose(got.mlm!, want.mlm!, "MLM logits", TOL);
      assertClose(got.binary!, want.binary!, "binary logits", TOL);
    }
    // a padded vocabulary gives the same logits in its first V columns
    using padded = await loadHfBert(path, { vocabMultiple: 8 });
    const mlm = ours(padded).mlm!;
    assertClose(firstColumns(mlm, 24, 23), want.mlm!, "padded-vocabulary MLM logits", TOL);
  });
});

Deno.test("saveHfBert() writes the BertForPreTraining layout back bit for bit, and it loads again", async () => {
  await inTempDir(async (dir) => {
    const w = PRETRAINING();
    using model = await loadHfBert(await writeHfDir(join(dir, "in"), CONFIG, w));
    const out = join(dir, "out");
    await saveHf(model, out); // an encoder goes to BERT's layout
    const saved = (await readSafetensors(join(out, "model.safetensors"))).tensors;
    assert.deepEqual([...saved.keys()].sort(), [...w.keys()].sort());
    for (const [k, v] of w) {
      assert.deepEqual(saved.get(k)!.shape, v.shape, k);
      assert.deepEqual(typedView(saved.get(k)!), v.data, k);
    }
    const cfg = JSON.parse(await Deno.readTextFile(join(out, "config.json")));
    assert.deepEqual(cfg.architectures, ["BertForPreTraining"]);
    for (const k of Object.keys(CONFIG)) {
      if (!/dropout/.test(k)) assert.deepEqual(cfg[k], CONFIG[k], k);
    }
    using again = await loadHf(out);
    assert.deepEqual(ours(again), ours(model));
    // a padded vocabulary's extra rows stay out of the file
    using padded = await loadHfBert(join(dir, "in"), { vocabMultiple: 8 });
    await saveHfBert(padded, join(dir, "padded"));
    const p = (await readSafetensors(join(dir, "padded", "model.safetensors"))).tensors;
    assert.deepEqual(p.get("bert.embeddings.word_embeddings.weight")!.shape, [23, 16]);
    assert.deepEqual(p.get("cls.predictions.bias")!.shape, [23]);
  });
});

Deno.test("a BertModel (no prefix, no cls.*): hidden states and pooled output, exported as a BertModel", async () => {
  await inTempDir(async (dir) => {
    const w = BASE_MODEL();
    const cfg = { ...CONFIG, architectures: ["BertModel"] };
    using model = await loadHfBert(await writeHfDir(join(dir, "base"), cfg, w));
    assert.equal(model.mlm, null);
    assert.equal(model.binary, null);
    const want = reference(w, "");
    const got = ours(model);
    assertClose(got.hidden!, want.hidden, "hidden", TOL);
    assertClose(got.pooled!, want.pooled!, "pooled", TOL);
    await saveHfBert(model, join(dir, "out"));
    const saved = (await readSafetensors(join(dir, "out", "model.safetensors"))).tensors;
    assert.deepEqual([...saved.keys()].sort(), [...w.keys()].sort());
    const out = JSON.parse(await Deno.readTextFile(join(dir, "out", "config.json")));
    assert.deepEqual(out.architectures, ["BertModel"]);
  });
});

Deno.test("hfParameterCount() of a BERT config is the element count of its file, heads or none, before any model is built", async () => {
  await inTempDir(async (dir) => {
    for (
      const [name, w, arch] of [["pre", PRETRAINING(), "BertForPreTraining"], [
        "base",
        BASE_MODEL(),
        "BertModel",
      ]] as const
    ) {
      const sub = await writeHfDir(join(dir, name), { ...CONFIG, architectures: [arch] }, w);
      using model = await loadHfBert(sub);
      let held = 0;
      for (const t of w.values()) held += t.shape.reduce((a, b) => a * b, 1);
      assert.equal(hfParameterCount(model.config), held, arch);
      assert.equal(model.numParameters(), held, arch);
    }
  });
});

Deno.test("older files load: LayerNorm gamma/beta names, a stored tied decoder, the position_ids buffer", async () => {
  await inTempDir(async (dir) => {
    const w = PRETRAINING();
    const path = await writeHfDir(join(dir, "old"), CONFIG, w, (ts) => {
      for (const k of [...ts.keys()]) {
        const m = /^(.*LayerNorm)\.(weight|bias)$/.exec(k);
        if (!m) continue;
        ts.set(`${m[1]}.${m[2] === "weight" ? "gamma" : "beta"}`, ts.get(k)!);
        ts.delete(k);
      }
      ts.set("cls.predictions.decoder.weight", ts.get("bert.embeddings.word_embeddings.weight")!);
      ts.set("cls.predictions.decoder.bias", ts.get("cls.predictions.bias")!);
      ts.set("bert.embeddings.position_ids", tensorEntry("F32", [1, 12], new Float32Array(12)));
    });
    using model = await loadHfBert(path);
    assertClose(ours(model).mlm!, reference(w, "bert.").mlm!, "MLM logits", TOL);
  });
});

Deno.test("loadHfBert({ numLabels }) builds a classifier: the encoder and pooler from the file, a fresh head, cls.* unread", async () => {
  await inTempDir(async (dir) => {
    const w = PRETRAINING();
    const path = await writeHfDir(join(dir, "pt"), CONFIG, w);
    using model = await loadHfBert(path, { numLabels: 3, seed: 7 });
    assert.equal(model.mlm, null);
    assert.equal(model.binary, null);
    assert.deepEqual(model.classifier!.weight.shape, [3, 16]);
    const want = reference(w, "bert.");
    const got = ours(model);
    assertClose(got.pooled!, want.pooled!, "pooled", TOL);
    assert.ok(got.classifier!.every(Number.isFinite));
    // and it exports as a BertForSequenceClassification that loads back with its head
    await saveHfBert(model, join(dir, "cls"));
    const cfg = JSON.parse(await Deno.readTextFile(join(dir, "cls", "config.json")));
    assert.deepEqual(cfg.architectures, ["BertForSequenceClassification"]);
    assert.deepEqual(cfg.id2label, { 0: "LABEL_0", 1: "LABEL_1", 2: "LABEL_2" });
    using again = await loadHfBert(join(dir, "cls"));
    assert.deepEqual(ours(again).classifier, got.classifier);
  });
});

Deno.test("bad BERT files and inputs are refused with one line naming the tensor or field", async () => {
  await inTempDir(async (dir) => {
    const w = PRETRAINING();
    const cases: [string, Raw, (ts: Map<string, TensorEntry>) => void, RegExp][] = [
      [
        "missing",
        CONFIG,
        (ts) => ts.delete("bert.encoder.layer.1.attention.self.key.weight"),
        /missing\/model\.safetensors: missing tensor "bert\.encoder\.layer\.1\.attention\.self\.key\.weight"$/,
      ],
      [
        "shape",
        CONFIG,
        (ts) =>
          ts.set(
            "bert.encoder.layer.0.intermediate.dense.weight",
            tensorEntry("F32", [16, 24], new Float32Array(384)),
          ),
        /shape\/model\.safetensors: tensor "bert\.encoder\.layer\.0\.intermediate\.dense\.weight" has shape \[16, 24\], expected \[24, 16\]/,
      ],
      [
        "untied",
        CONFIG,
        (ts) =>
          ts.set(
            "cls.predictions.decoder.weight",
            tensorEntry("F32", [23, 16], new Float32Array(368)),
          ),
        /untied\/model\.safetensors: tensor "cls\.predictions\.decoder\.weight" is not tied to "bert\.embeddings\.word_embeddings\.weight"/,
      ],
      [
        "extra",
        CONFIG,
        (ts) =>
          ts.set(
            "bert.encoder.layer.2.output.dense.bias",
            tensorEntry("F32", [16], new Float32Array(16)),
          ),
        /extra\/model\.safetensors: unexpected tensor "bert\.encoder\.layer\.2\.output\.dense\.bias" for a BERT of 2 layers/,
      ],
      [
        "act",
        { ...CONFIG, hidden_act: "relu" },
        () => {},
        /act\/config\.json: hidden_act "relu" is not supported; Denotron's BERT uses "gelu", "gelu_new", "gelu_pytorch_tanh"/,
      ],
      [
        "relative",
        { ...CONFIG, position_embedding_type: "relative_key" },
        () => {},
        /relative\/config\.json: position_embedding_type "relative_key" is not supported/,
      ],
      [
        "gpt2",
        { model_type: "gpt2", n_layer: 2, n_head: 2, n_embd: 16, vocab_size: 23, n_positions: 12 },
        () => {},
        /gpt2\/config\.json: model_type is "gpt2", not "bert"; this is not a BERT checkpoint/,
      ],
      [
        "nopooler",
        CONFIG,
        (ts) => {
          ts.delete("bert.pooler.dense.weight");
          ts.delete("bert.pooler.dense.bias");
        },
        /nopooler\/model\.safetensors: has cls\.seq_relationship but no "bert\.pooler\.dense\.weight" for it to read/,
      ],
      [
        "labels",
        CONFIG,
        // no data, yet rows enough to build a classifier past GPT_CONFIG_LIMITS.numLabels
        (ts) => ts.set("classifier.weight", tensorEntry("F32", [2 ** 21, 0], new Float32Array())),
        /labels\/model\.safetensors: tensor "classifier\.weight" has shape \[2097152, 0\], expected \[numLabels, 16\]$/,
      ],
      [
        "nolabels",
        CONFIG,
        (ts) => ts.set("classifier.weight", tensorEntry("F32", [0, 16], new Float32Array())),
        /nolabels\/model\.safetensors: tensor "classifier\.weight" rows \(numLabels\) must be a positive integer, got 0$/,
      ],
    ];
    for (const [name, cfg, edit, error] of cases) {
      const sub = await writeHfDir(join(dir, name), cfg, w, edit);
      await assert.rejects(() => loadHfBert(sub), error, name);
    }
    // a BERT checkpoint given to the GPT-2 importer
    await assert.rejects(
      () => loadHfGpt2(join(dir, "missing")),
      /missing\/config\.json: model_type is "bert", not "gpt2"/,
    );
    // a sequence longer than max_position_embeddings (12)
    using model = await loadHfBert(await writeHfDir(join(dir, "ok"), CONFIG, w));
    tidy(() => {
      const long = Tensor.fromArray(new Int32Array(13), [1, 13]);
      assert.throws(
        () => model.hiddenStates(long, { layout: paddingLayout([13], 13) }),
        /Embedding: sequence length 13 exceeds the 12 positions of wpe/,
      );
      assert.throws(() => model.forward(long), /sequence length 13 exceeds the 12 positions/);
    });
  });
});

Deno.test("bertConfigFromHf() fills transformers' BertConfig defaults and maps hidden_act", () => {
  const c = bertConfigFromHf({ model_type: "bert" }, "config.json");
  assert.deepEqual(
    [c.vocabSize, c.blockSize, c.nLayer, c.nHead, c.nEmbd, c.ffnHidden, c.numTokenTypes],
    [30522, 512, 12, 12, 768, 3072, 2],
  );
  assert.equal(bertConfigFromHf({ ...CONFIG, hidden_act: "gelu_new" }, "c").gelu, "tanh");
  assert.throws(
    () => bertConfigFromHf({ architectures: ["RobertaModel"] }, "c.json"),
    /c\.json: architectures is \["RobertaModel"\], which names none of BertForPreTraining/,
  );
  assert.throws(
    () => bertConfigFromHf({ ...CONFIG, is_decoder: true }, "c.json"),
    /c\.json: is_decoder and add_cross_attention must be false/,
  );
  assert.throws(
    () => bertConfigFromHf({ ...CONFIG, num_attention_heads: 3 }, "c.json"),
    /c\.json: GPT config: nHead 3 does not divide nEmbd 16/,
  );
});
