/**
 * A float64 forward of Hugging Face's BERT, written from transformers' modeling_bert
 * (BertEmbeddings, BertSelfAttention under the extended attention mask, the post-LN
 * BertSelfOutput and BertOutput, BertPooler, BertLMPredictionHead, the seq_relationship
 * and classifier heads), reading the tensors by their Hugging Face names; and a map of a
 * Denotron model's weights onto those names, written here from the layout (q | k | v rows
 * of qkv), independently of lib/io/hf_bert.ts.
 */
import type { GPT } from "../lib/nn/gpt.ts";
import * as ref from "./reference.ts";
import type { Weights } from "./reference_gpt.ts";

type F = Float64Array;

/** Hugging Face tensor name → float64 values. */
export type HfTensors = Map<string, F>;

/** The shape a reference forward needs. */
export interface BertShape {
  vocabSize: number;
  hidden: number;
  layers: number;
  heads: number;
  intermediate: number;
  eps: number;
  gelu: "erf" | "tanh";
  /** "bert." or "" (BertModel). */
  prefix: string;
}

/** The reference's inputs. */
export interface BertInputs {
  B: number;
  T: number;
  tokens: Int32Array;
  tokenTypes: Int32Array;
  /** Valid tokens of each row; the rest are padding (masked keys), >= 1. */
  validLengths: number[];
}

/** The reference's outputs; a head's is null when the tensors lack it. */
export interface BertOutputs {
  /** (B·T·C) sequence_output. */
  hidden: F;
  /** (B·C) pooled_output. */
  pooled: F | null;
  /** (B·T·V) prediction_scores. */
  mlm: F | null;
  /** (B·2) seq_relationship_score. */
  binary: F | null;
  /** (B·numLabels) classifier logits (eval: no dropout). */
  classifier: F | null;
}

/** The shape of a Denotron encoder, for {@link bertRef}. */
export function bertShapeOf(model: GPT, prefix = "bert."): BertShape {
  const c = model.config;
  return {
    vocabSize: c.vocabSize,
    hidden: c.nEmbd,
    layers: c.nLayer,
    heads: c.nHead,
    intermediate: c.ffnHidden,
    eps: c.layerNormEps,
    gelu: c.gelu,
    prefix,
  };
}

/**
 * Softmax attention of each query over the keys [0, valid) of its row: q, k, v (B·T·C),
 * `heads` heads of C/heads; HF adds a large negative number to the masked scores, which
 * is this for rows with a valid token.
 */
export function maskedAttentionRef(
  q: F,
  k: F,
  v: F,
  x: Pick<BertInputs, "B" | "T" | "validLengths">,
  C: number,
  heads: number,
): F {
  const { B, T } = x, hs = C / heads, out = new Float64Array(B * T * C);
  for (let b = 0; b < B; b++) {
    const n = x.validLengths[b];
    for (let h = 0; h < heads; h++) {
      for (let i = 0; i < T; i++) {
        const qi = (b * T + i) * C + h * hs;
        const s = Array.from({ length: n }, (_, j) => {
          let d = 0;
          for (let e = 0; e < hs; e++) d += q[qi + e] * k[(b * T + j) * C + h * hs + e];
          return d / Math.sqrt(hs);
        });
        const mx = Math.max(...s), ex = s.map((z) => Math.exp(z - mx));
        const sum = ex.reduce((a, z) => a + z, 0);
        for (let j = 0; j < n; j++) {
          for (let e = 0; e < hs; e++) {
            out[qi + e] += (ex[j] / sum) * v[(b * T + j) * C + h * hs + e];
          }
        }
      }
    }
  }
  return out;
}

const geluOf = (s: BertShape) => (s.gelu === "erf" ? ref.geluErfRef : ref.geluRef);

/**
 * One BertLayer: attention, then LayerNorm(dense(ctx) + x), then
 * LayerNorm(dense(gelu(dense(a))) + a).
 *
 * @param at the layer's key prefix, e.g. "bert.encoder.layer.0."
 */
export function bertLayerRef(
  w: HfTensors,
  at: string,
  s: BertShape,
  x: F,
  inp: Pick<BertInputs, "B" | "T" | "validLengths">,
): F {
  const get = getter(w);
  const N = inp.B * inp.T, C = s.hidden, H = s.intermediate;
  const lin = (h: F, name: string, nIn: number, nOut: number) =>
    ref.linearRef(h, get(`${name}.weight`), get(`${name}.bias`), N, nIn, nOut);
  const ln = (h: F, name: string) =>
    ref.layernormRef(h, get(`${name}.weight`), get(`${name}.bias`), N, C, s.eps);
  const self = `${at}attention.self.`;
  const ctx = maskedAttentionRef(
    lin(x, `${self}query`, C, C),
    lin(x, `${self}key`, C, C),
    lin(x, `${self}value`, C, C),
    inp,
    C,
    s.heads,
  );
  const proj = lin(ctx, `${at}attention.output.dense`, C, C);
  const a = ln(proj.map((p, i) => p + x[i]), `${at}attention.output.LayerNorm`);
  const inter = lin(a, `${at}intermediate.dense`, C, H).map(geluOf(s));
  const out = lin(inter, `${at}output.dense`, H, C);
  return ln(out.map((o, i) => o + a[i]), `${at}output.LayerNorm`);
}

function getter(w: HfTensors) {
  return (n: string) => {
    const v = w.get(n);
    if (!v) throw new Error(`reference: no tensor ${n}`);
    return v;
  };
}

/** The whole model: embeddings, layers, and every head whose tensors `w` holds. */
export function bertRef(w: HfTensors, s: BertShape, inp: BertInputs): BertOutputs {
  const get = getter(w);
  const { B, T } = inp, N = B * T, C = s.hidden, p = s.prefix;
  const word = get(`${p}embeddings.word_embeddings.weight`);
  const pos = get(`${p}embeddings.position_embeddings.weight`);
  const type = get(`${p}embeddings.token_type_embeddings.weight`);
  const sum = new Float64Array(N * C);
  for (let i = 0; i < N; i++) {
    for (let c = 0; c < C; c++) {
      sum[i * C + c] = word[inp.tokens[i] * C + c] + pos[(i % T) * C + c] +
        type[inp.tokenTypes[i] * C + c];
    }
  }
  const lnE = `${p}embeddings.LayerNorm`;
  let x = ref.layernormRef(sum, get(`${lnE}.weight`), get(`${lnE}.bias`), N, C, s.eps);
  for (let l = 0; l < s.layers; l++) x = bertLayerRef(w, `${p}encoder.layer.${l}.`, s, x, inp);
  const has = (n: string) => w.has(n);
  let pooled: F | null = null;
  if (has(`${p}pooler.dense.weight`)) {
    const first = new Float64Array(B * C);
    for (let b = 0; b < B; b++) first.set(x.subarray(b * T * C, b * T * C + C), b * C);
    pooled = ref.linearRef(
      first,
      get(`${p}pooler.dense.weight`),
      get(`${p}pooler.dense.bias`),
      B,
      C,
      C,
    ).map(Math.tanh);
  }
  let mlm: F | null = null;
  if (has("cls.predictions.bias")) {
    const tr = "cls.predictions.transform.";
    const h = ref.linearRef(x, get(`${tr}dense.weight`), get(`${tr}dense.bias`), N, C, C)
      .map(geluOf(s));
    const t = ref.layernormRef(
      h,
      get(`${tr}LayerNorm.weight`),
      get(`${tr}LayerNorm.bias`),
      N,
      C,
      s.eps,
    );
    mlm = ref.linearRef(t, word, get("cls.predictions.bias"), N, C, s.vocabSize);
  }
  const head = (name: string) => {
    if (!pooled || !has(`${name}.weight`)) return null;
    const rows = get(`${name}.bias`).length;
    return ref.linearRef(pooled, get(`${name}.weight`), get(`${name}.bias`), B, C, rows);
  };
  return {
    hidden: x,
    pooled,
    mlm,
    binary: head("cls.seq_relationship"),
    classifier: head("classifier"),
  };
}

/** Megatron's BERT loss: MLM cross-entropy over targets >= 0 plus the binary head's. */
export function pretrainingLossRef(
  out: BertOutputs,
  s: BertShape,
  inp: BertInputs,
  mlmTargets: Int32Array,
  sentenceLabels: Int32Array,
): { loss: number; mlm: number; sop: number } {
  const mlm = ref.crossEntropyRef(out.mlm!, mlmTargets, inp.B * inp.T, s.vocabSize);
  const sop = ref.crossEntropyRef(out.binary!, sentenceLabels, inp.B, 2);
  return { loss: mlm + sop, mlm, sop };
}

/**
 * A Denotron encoder's weights (by our names) under Hugging Face's names, from the layout
 * our names follow: qkv's rows are query | key | value, the token table's first V rows the
 * vocabulary, `mlm.bias`'s first V entries cls.predictions.bias.
 */
export function hfTensorsOf(model: GPT, w: Weights, prefix = "bert."): HfTensors {
  const c = model.config, C = c.nEmbd, V = c.vocabSize;
  const out: HfTensors = new Map();
  const get = (n: string) => w.get(n)!;
  const emb = `${prefix}embeddings.`;
  out.set(`${emb}word_embeddings.weight`, get("emb.wte").subarray(0, V * C));
  out.set(`${emb}position_embeddings.weight`, get("emb.wpe"));
  out.set(`${emb}token_type_embeddings.weight`, get("emb.wtt"));
  for (const k of ["weight", "bias"]) {
    out.set(`${emb}LayerNorm.${k}`, get(`emb.ln.${k}`));
    for (let l = 0; l < c.nLayer; l++) {
      const at = `${prefix}encoder.layer.${l}.`, h = `h.${l}.`;
      const qkv = get(`${h}attn.qkv.${k}`), size = qkv.length / 3;
      ["query", "key", "value"].forEach((q, i) =>
        out.set(`${at}attention.self.${q}.${k}`, qkv.subarray(i * size, (i + 1) * size))
      );
      out.set(`${at}attention.output.dense.${k}`, get(`${h}attn.proj.${k}`));
      out.set(`${at}attention.output.LayerNorm.${k}`, get(`${h}ln1.${k}`));
      out.set(`${at}intermediate.dense.${k}`, get(`${h}mlp.fc.${k}`));
      out.set(`${at}output.dense.${k}`, get(`${h}mlp.proj.${k}`));
      out.set(`${at}output.LayerNorm.${k}`, get(`${h}ln2.${k}`));
    }
    if (c.pooler) out.set(`${prefix}pooler.dense.${k}`, get(`pooler.dense.${k}`));
    if (c.outputTransform) {
      out.set(`cls.predictions.transform.dense.${k}`, get(`mlm.dense.${k}`));
      out.set(`cls.predictions.transform.LayerNorm.${k}`, get(`mlm.ln.${k}`));
    }
    if (c.binaryHead) out.set(`cls.seq_relationship.${k}`, get(`binary.${k}`));
    if (c.numLabels) out.set(`classifier.${k}`, get(`classifier.${k}`));
  }
  if (c.outputTransform) out.set("cls.predictions.bias", get("mlm.bias").subarray(0, V));
  return out;
}
