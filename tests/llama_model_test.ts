/**
 * The decoder's Llama-family variants: layout, every gradient against the float64
 * reference (tests/reference_gpt.ts, written from the architecture) and finite
 * differences, the published shapes, and that a tiny one learns.
 */
import assert from "assert";
import { GPT, GPT_PRESETS, type GPTConfig, LLAMA_ARCHITECTURE } from "../lib/nn/gpt.ts";
import { AdamW } from "../lib/optim/adamw.ts";
import { forwardCached, KVCache } from "../lib/infer/kv_cache.ts";
import { Tensor, tidy } from "../lib/tensor.ts";
import { assertClose, randomInts } from "./helpers.ts";
import { checkModelGradients, gptLogitsRef, weightsOf } from "./reference_gpt.ts";

const llama = (extra: Partial<GPTConfig>): GPTConfig => ({
  ...LLAMA_ARCHITECTURE,
  vocabSize: 13,
  blockSize: 8,
  nLayer: 2,
  nHead: 4,
  nKvHead: 2,
  nEmbd: 16,
  ffnHidden: 12,
  tieEmbeddings: false,
  ...extra,
});

const VARIANTS: [string, GPTConfig][] = [
  ["GQA, untied", llama({})],
  [
    "MQA, tied, llama3 rope scaling",
    llama({
      nKvHead: 1,
      tieEmbeddings: true,
      ropeTheta: 500000,
      ropeScaling: {
        ropeType: "llama3",
        factor: 32,
        lowFreqFactor: 1,
        highFreqFactor: 4,
        originalMaxPositionEmbeddings: 4,
      },
    }),
  ],
  [
    "MHA with biases, RMSNorm, learned positions, GELU",
    llama({
      nKvHead: 4,
      bias: true,
      positionEmbedding: "learned",
      activation: "gelu",
    }),
  ],
];

Deno.test("the Llama layout: no wpe, no biases, (nHead + 2·nKvHead)·hs qkv rows, SwiGLU fc of 2F, untied head", () => {
  using model = new GPT(llama({}));
  const names = model.namedParameters().map(([n, t]) => `${n}${JSON.stringify(t.shape)}`);
  assert.deepEqual(names, [
    "emb.wte[13,16]",
    "h.0.ln1.weight[16]",
    "h.0.attn.qkv.weight[32,16]",
    "h.0.attn.proj.weight[16,16]",
    "h.0.ln2.weight[16]",
    "h.0.mlp.fc.weight[24,16]",
    "h.0.mlp.proj.weight[16,12]",
    "h.1.ln1.weight[16]",
    "h.1.attn.qkv.weight[32,16]",
    "h.1.attn.proj.weight[16,16]",
    "h.1.ln2.weight[16]",
    "h.1.mlp.fc.weight[24,16]",
    "h.1.mlp.proj.weight[16,12]",
    "lnf.weight[16]",
    "head.weight[13,16]",
  ]);
  assert.match(String(model), /rmsnorm rope swiglu kv heads=2 no biases untied head/);
});

for (const [what, config] of VARIANTS) {
  Deno.test(`a whole tiny decoder (${what}): loss and every gradient match the float64 reference`, () => {
    using model = new GPT(config, { seed: 5 });
    checkModelGradients(model, { B: 2, T: 6, seed: 29, probes: 3 });
  });
}

Deno.test("logits of a rotary model match the reference at every position", () => {
  using model = new GPT(llama({}), { seed: 9 });
  const [B, T] = [1, 8];
  const tokens = randomInts(B * T, 4, 13);
  const got = tidy(() => model.forward(Tensor.fromArray(tokens, [B, T])).toArray());
  assertClose(got, gptLogitsRef(model, weightsOf(model), tokens, B, T), "logits", {
    rtol: 1e-4,
    atol: 1e-5,
  });
});

Deno.test("SmolLM2-135M's shape has its published 134,515,008 parameters", () => {
  using model = new GPT({ ...GPT_PRESETS["smollm2-135m"], blockSize: 64 });
  assert.equal(model.numParameters(), 134_515_008);
});

Deno.test("a tiny Llama memorises a fixed batch", () => {
  using model = new GPT(GPT_PRESETS["llama-tiny"], { seed: 1 });
  const optimizer = new AdamW(model.params, { lr: 1e-2 });
  const [B, T] = [2, 16];
  const tokens = Tensor.fromArray(randomInts(B * T, 7, 257), [B, T]);
  const targets = Tensor.fromArray(randomInts(B * T, 8, 257), [B, T]);
  let loss = Infinity;
  for (let i = 0; i < 150; i++) {
    loss = tidy(() => {
      const l = model.loss(tokens, targets);
      l.backward();
      return l.item();
    });
    optimizer.step();
    model.params.zeroGrad();
  }
  assert.ok(loss < 0.1, `loss after 150 steps: ${loss}`);
  optimizer.dispose();
  tokens.dispose();
  targets.dispose();
});

Deno.test("bad decoder configs name the field", () => {
  const cases: [Partial<GPTConfig>, RegExp][] = [
    [{ nKvHead: 3 }, /nKvHead 3 must divide nHead 4/],
    [
      { normalization: "batchnorm" as never },
      /normalization must be one of "layernorm", "rmsnorm"/,
    ],
    [{ activation: "relu" as never }, /activation must be one of/],
    [{ nEmbd: 12, nHead: 4, nKvHead: 4 }, /rotary positions need an even head size/],
    [{ ropeTheta: -1 }, /ropeTheta must be a number/],
    [
      { positionEmbedding: "learned", ropeScaling: GPT_PRESETS["llama-3.2-1b"].ropeScaling },
      /ropeScaling needs positionEmbedding "rope"/,
    ],
  ];
  for (const [extra, want] of cases) {
    assert.throws(() => new GPT(llama(extra)), want);
  }
});

Deno.test("KV-cache decoding of a rotary GQA model equals full recomputation; the cache holds the KV heads only", () => {
  using model = new GPT({ ...llama({}), blockSize: 16 }, { seed: 4 });
  model.eval();
  const [B, T] = [2, 9];
  const ids = randomInts(B * T, 6, 13);
  const full = tidy(() => model.forward(Tensor.fromArray(ids, [B, T])).toArray());
  const cache = new KVCache(model, B, 16);
  const kvWidth = 2 * (16 / 4); // nKvHead · headDim
  assert.equal(cache.k[0].shape.at(-1), kvWidth);
  const got = new Float32Array(B * T * 13);
  // a prompt of 4 tokens, then one token at a time
  const pieces = [[0, 4], [4, 5], [5, 6], [6, 7], [7, 8], [8, 9]];
  for (const [a, b] of pieces) {
    const chunk = new Int32Array(B * (b - a));
    for (let s = 0; s < B; s++) chunk.set(ids.subarray(s * T + a, s * T + b), s * (b - a));
    const logits = tidy(() =>
      forwardCached(model, Tensor.fromArray(chunk, [B, b - a]), cache).toArray()
    );
    for (let s = 0; s < B; s++) {
      got.set(
        logits.subarray(s * (b - a) * 13, (s + 1) * (b - a) * 13),
        (s * T + a) * 13,
      );
    }
  }
  cache.dispose();
  assertClose(got, full, "cached logits", { rtol: 1e-4, atol: 1e-5 });
});
