/**
 * A float64 forward pass and loss of every decoder variant (GPT-2, Llama-style), composed
 * from tests/reference.ts and tests/reference_llama.ts, reading the weights of a Denotron
 * GPT by name.
 */
import type { GPT } from "../lib/nn/gpt.ts";
import { Tensor, tidy } from "../lib/tensor.ts";
import { assertClose, randomArray, randomInts } from "./helpers.ts";
import * as ref from "./reference.ts";
import * as refLlama from "./reference_llama.ts";

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
  const V = model.config.vocabSize;
  return ref.crossEntropyRef(gptLogitsRef(model, w, tokens, B, T), targets, B * T, V);
}

/**
 * Logits (B·T, V) of the decoder `model.config` describes, any variant (GPT-2 or
 * Llama-style), with weights `w`, written from the architecture: norms, learned or
 * rotary positions, grouped-query attention by repeating each key/value head for its
 * group (the kernels never do), GELU or SwiGLU MLP, tied or untied output layer.
 */
export function gptLogitsRef(
  model: GPT,
  w: Weights,
  tokens: Int32Array,
  B: number,
  T: number,
  pos0 = 0,
): Float64Array {
  const c = model.config;
  const { nLayer, nHead, nEmbd: C, vocabSize: V } = c;
  const H = c.ffnHidden, kv = c.nKvHead, hs = C / nHead, eps = c.layerNormEps;
  const N = B * T;
  const get = (n: string) => {
    const v = w.get(n);
    if (!v) throw new Error(`no weight ${n}`);
    return v;
  };
  const maybe = (n: string) => (c.bias ? get(n) : null);
  const norm = (x: Float64Array, p: string) =>
    c.normalization === "rmsnorm"
      ? refLlama.rmsnormRef(x, get(p + ".weight"), N, C, eps)
      : ref.layernormRef(x, get(p + ".weight"), get(p + ".bias"), N, C);
  const invFreq = c.positionEmbedding === "rope"
    ? Float64Array.from(model.ropeFreq!.toArray())
    : null;
  let x: Float64Array;
  if (invFreq) {
    const wte = get("emb.wte");
    x = new Float64Array(N * C);
    for (let i = 0; i < N; i++) x.set(wte.subarray(tokens[i] * C, (tokens[i] + 1) * C), i * C);
  } else {
    x = ref.embeddingRef(tokens, get("emb.wte"), get("emb.wpe"), B, T, C);
  }
  for (let l = 0; l < nLayer; l++) {
    const p = `h.${l}.`;
    const h1 = norm(x, p + "ln1");
    const width = (nHead + 2 * kv) * hs;
    let qkv = ref.linearRef(
      h1,
      get(p + "attn.qkv.weight"),
      maybe(p + "attn.qkv.bias"),
      N,
      C,
      width,
    );
    if (invFreq) qkv = refLlama.ropeRef(qkv, invFreq, { B, T, nHead, nKvHead: kv, hs, pos0 });
    // Multi-head layout (q | k | v, C each) with every key/value head repeated for its group.
    const mha = new Float64Array(N * 3 * C);
    for (let i = 0; i < N; i++) {
      for (let h = 0; h < nHead; h++) {
        const g = Math.floor(h / (nHead / kv));
        for (let d = 0; d < hs; d++) {
          mha[i * 3 * C + h * hs + d] = qkv[i * width + h * hs + d];
          mha[i * 3 * C + C + h * hs + d] = qkv[i * width + (nHead + g) * hs + d];
          mha[i * 3 * C + 2 * C + h * hs + d] = qkv[i * width + (nHead + kv + g) * hs + d];
        }
      }
    }
    const att = ref.attentionRef(mha, B, T, C, nHead);
    const a = ref.linearRef(att, get(p + "attn.proj.weight"), maybe(p + "attn.proj.bias"), N, C, C);
    x = x.map((v, i) => v + a[i]);
    const h2 = norm(x, p + "ln2");
    let g: Float64Array;
    if (c.activation === "swiglu") {
      const f = ref.linearRef(h2, get(p + "mlp.fc.weight"), maybe(p + "mlp.fc.bias"), N, C, 2 * H);
      g = refLlama.swigluRef(f, N, H);
    } else {
      const f = ref.linearRef(h2, get(p + "mlp.fc.weight"), null, N, C, H);
      g = c.bias ? ref.biasGeluRef(f, get(p + "mlp.fc.bias"), N, H) : ref.biasGeluRef(
        f,
        new Float64Array(H),
        N,
        H,
      );
    }
    const m = ref.linearRef(g, get(p + "mlp.proj.weight"), maybe(p + "mlp.proj.bias"), N, H, C);
    x = x.map((v, i) => v + m[i]);
  }
  const xf = norm(x, "lnf");
  const out = c.tieEmbeddings ? get("emb.wte") : get("head.weight");
  return ref.linearRef(xf, out.subarray(0, V * C), null, N, C, V);
}

/**
 * Sets every weight of `model` to seeded values of scale 0.5 (larger than any init, so
 * every path carries signal), runs loss and backward on a random (B,T) batch, and checks
 * the loss against {@link gptLossRef} and `probes` entries of every gradient against
 * central finite differences of it.
 */
export function checkModelGradients(
  model: GPT,
  opts: { B: number; T: number; seed: number; probes: number },
): void {
  const { B, T, seed } = opts;
  const V = model.config.vocabSize;
  const tokens = randomInts(B * T, 1, V), targets = randomInts(B * T, 2, V);
  for (const [, t] of model.namedParameters()) {
    t.copyFromHost(Float32Array.from(randomArray(t.numel, t.numel + seed, 0.5)));
  }
  const loss = tidy(() => {
    const l = model.loss(Tensor.fromArray(tokens, [B, T]), Tensor.fromArray(targets, [B, T]));
    l.backward();
    return l.item();
  });
  const w = weightsOf(model);
  assertClose([loss], [gptLossRef(model, w, tokens, targets, B, T)], "loss", { rtol: 1e-5 });
  for (const [name, t] of model.namedParameters()) {
    const grad = t.grad!.toArray();
    const base = w.get(name)!;
    const probes = Math.min(opts.probes, base.length);
    for (let p = 0; p < probes; p++) {
      const i = Math.floor((p + 0.5) * base.length / probes);
      const h = 1e-6;
      const at = (d: number) => {
        const copy = new Map(w);
        const v = Float64Array.from(base);
        v[i] += d;
        copy.set(name, v);
        return gptLossRef(model, copy, tokens, targets, B, T);
      };
      const fd = (at(h) - at(-h)) / (2 * h);
      assertClose([grad[i]], [fd], `d loss / d ${name}[${i}]`, { rtol: 2e-3, atol: 2e-5 });
    }
  }
}
