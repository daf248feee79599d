/**
 * A float64 GPT-2 forward pass and loss, composed from tests/reference.ts, reading the
 * weights of a Denotron GPT by name.
 */
import type { GPT } from "../lib/nn/gpt.ts";
import * as ref from "./reference.ts";

/** Parameter name → float64 copy of its values. */
export type Weights = Map<string, Float64Array>;

export function weightsOf(model: GPT): Weights {
  return new Map(model.namedParameters().map(([n, t]) => [n, Float64Array.from(t.toArray())]));
}

/** Mean next-token loss of the GPT with weights `w` on tokens/targets (B,T). */
export function gptLossRef(
  model: GPT,
  w: Weights,
  tokens: Int32Array,
  targets: Int32Array,
  B: number,
  T: number,
): number {
  const { nLayer, nHead, nEmbd: C, vocabSize: V, blockSize: P } = model.config;
  const H = model.config.ffnHidden;
  const N = B * T;
  const get = (n: string) => {
    const v = w.get(n);
    if (!v) throw new Error(`no weight ${n}`);
    return v;
  };
  void P;
  let x = ref.embeddingRef(tokens, get("emb.wte"), get("emb.wpe"), B, T, C);
  for (let l = 0; l < nLayer; l++) {
    const p = `h.${l}.`;
    const h1 = ref.layernormRef(x, get(p + "ln1.weight"), get(p + "ln1.bias"), N, C);
    const qkv = ref.linearRef(
      h1,
      get(p + "attn.qkv.weight"),
      get(p + "attn.qkv.bias"),
      N,
      C,
      3 * C,
    );
    const att = ref.attentionRef(qkv, B, T, C, nHead);
    const a = ref.linearRef(att, get(p + "attn.proj.weight"), get(p + "attn.proj.bias"), N, C, C);
    x = x.map((v, i) => v + a[i]);
    const h2 = ref.layernormRef(x, get(p + "ln2.weight"), get(p + "ln2.bias"), N, C);
    const f = ref.linearRef(h2, get(p + "mlp.fc.weight"), null, N, C, H);
    const g = ref.biasGeluRef(f, get(p + "mlp.fc.bias"), N, H);
    const m = ref.linearRef(g, get(p + "mlp.proj.weight"), get(p + "mlp.proj.bias"), N, H, C);
    x = x.map((v, i) => v + m[i]);
  }
  const xf = ref.layernormRef(x, get("lnf.weight"), get("lnf.bias"), N, C);
  const logits = ref.linearRef(xf, get("emb.wte"), null, N, C, V);
  return ref.crossEntropyRef(logits, targets, N, V);
}
