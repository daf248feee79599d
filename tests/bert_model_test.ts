/**
 * The BERT encoder as configuration of the one transformer: a post-LN block and the whole
 * encoder (hidden states, pooler, masked-LM and binary heads, a classifier) against the
 * float64 BERT forward of tests/reference_bert.ts; the pretraining loss and its gradients
 * against that reference and its finite differences; padding that changes nothing at the
 * valid positions; attention over padded rows against a float64 reference and finite
 * differences; the presets' published sizes; bad configs and inputs refused with a
 * sentence.
 */
import assert from "assert";
import { noGrad } from "../lib/autograd.ts";
import { attention } from "../lib/ops/attention.ts";
import { crossEntropy } from "../lib/ops/crossentropy.ts";
import { paddingLayout } from "../lib/nn/attention.ts";
import { Block } from "../lib/nn/block.ts";
import {
  BERT_ARCHITECTURE,
  GPT,
  GPT_PRESETS,
  type GPTConfig,
  gptConfigWithDefaults,
  isGpt2Architecture,
} from "../lib/nn/gpt.ts";
import { device } from "../lib/device.ts";
import { FlatParameters } from "../lib/nn/module.ts";
import { Generator } from "../lib/random.ts";
import { Tensor, tidy } from "../lib/tensor.ts";
import { assertClose, checkOp, randomArray, randomInts } from "./helpers.ts";
import {
  type BertInputs,
  bertLayerRef,
  bertRef,
  bertShapeOf,
  type HfTensors,
  hfTensorsOf,
  maskedAttentionRef,
  pretrainingLossRef,
} from "./reference_bert.ts";
import { type Weights, weightsOf } from "./reference_gpt.ts";

/** A BERT small enough for finite differences: 2 layers, width 8, 2 heads. */
const TINY: GPTConfig = {
  ...BERT_ARCHITECTURE,
  vocabSize: 11,
  blockSize: 9,
  nLayer: 2,
  nHead: 2,
  nEmbd: 8,
  ffnHidden: 12,
};

/** Sets every parameter to seeded values of `scale` (gains near 1 keep LayerNorm sane). */
function randomize(model: GPT, seed: number, scale = 0.5): void {
  for (const [name, t] of model.namedParameters()) {
    const v = randomArray(t.numel, t.numel + seed, scale);
    if (/ln\.weight$|ln[12]\.weight$/.test(name)) v.forEach((x, i) => (v[i] = 1 + x));
    t.copyFromHost(Float32Array.from(v));
  }
}

/** A batch of B rows of T with token types and per-row valid lengths. */
function batch(B: number, T: number, V: number, validLengths: number[], seed = 1): BertInputs {
  const tokenTypes = new Int32Array(B * T);
  for (let b = 0; b < B; b++) {
    for (let t = Math.ceil(validLengths[b] / 2); t < T; t++) tokenTypes[b * T + t] = 1;
  }
  return { B, T, tokens: randomInts(B * T, seed, V), tokenTypes, validLengths };
}

/** The tensors of a batch; disposed with the enclosing tidy. */
function tensors(x: BertInputs) {
  return {
    tokens: Tensor.fromArray(x.tokens, [x.B, x.T]),
    tokenTypes: Tensor.fromArray(x.tokenTypes, [x.B, x.T]),
    layout: paddingLayout(x.validLengths, x.T),
  };
}

Deno.test("paddingLayout() gives every query of a row the keys [0, valid), positions 0..T-1", () => {
  const layout = paddingLayout([2, 4, 0], 4);
  try {
    assert.deepEqual(
      [...layout.spans.toArray()],
      [0, 2, 0, 2, 0, 2, 0, 2, 0, 4, 0, 4, 0, 4, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0],
    );
    assert.deepEqual([...layout.positions.toArray()], [0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3]);
  } finally {
    layout.positions.dispose();
    layout.spans.dispose();
  }
  assert.throws(
    () => paddingLayout([5], 4),
    /paddingLayout: row 0 has 5 valid tokens; expected an integer in \[0, 4\]/,
  );
});

for (const dev of ["cpu", "cpu:builtin"]) {
  Deno.test(`attention() over padded rows on ${dev} matches the float64 reference and finite differences`, () => {
    const [B, T, NH, HS] = [3, 6, 2, 3], C = NH * HS, valid = [6, 4, 1];
    const layout = paddingLayout(valid, T, device(dev));
    try {
      const split = (qkv: Float64Array, part: number) => {
        const out = new Float64Array(B * T * C);
        for (let i = 0; i < B * T; i++) {
          out.set(qkv.subarray(i * 3 * C + part * C, i * 3 * C + (part + 1) * C), i * C);
        }
        return out;
      };
      const forward = (qkv: Float64Array) =>
        maskedAttentionRef(
          split(qkv, 0),
          split(qkv, 1),
          split(qkv, 2),
          { B, T, validLengths: valid },
          C,
          NH,
        );
      checkOp({
        name: `padded attention on ${dev}`,
        device: device(dev),
        inputs: [{ name: "qkv", shape: [B, T, 3 * C], data: randomArray(B * T * 3 * C, 17, 1.5) }],
        run: ([qkv]) => attention(qkv, NH, NH, layout.spans),
        forward: ([qkv]) => forward(qkv as Float64Array),
        // the reference's gradient by central differences of itself (float64)
        backward: ([qkv], g) => {
          const x = Float64Array.from(qkv as Float64Array), h = 1e-6;
          return [Float64Array.from(x, (_, i) => {
            const xp = Float64Array.from(x), xm = Float64Array.from(x);
            xp[i] += h;
            xm[i] -= h;
            const fp = forward(xp), fm = forward(xm);
            return fp.reduce((s, v, j) => s + (v - fm[j]) * g[j], 0) / (2 * h);
          })];
        },
        tol: { rtol: 1e-4, atol: 2e-5 },
      });
    } finally {
      layout.positions.dispose();
      layout.spans.dispose();
    }
  });
}

Deno.test("a post-LN Block matches BERT's layer in float64: LN(x + attn(x)), then LN(a + mlp(a))", () => {
  const [B, T, C, NH, H] = [2, 5, 8, 2, 12], valid = [5, 3];
  const block = new Block({
    width: C,
    nHead: NH,
    hidden: H,
    dropout: 0,
    eps: 1e-12,
    projStd: 0.02,
    device: device(),
    normPosition: "post",
    gelu: "erf",
  });
  const params = new FlatParameters(block, device(), 1);
  try {
    const w: Weights = new Map();
    for (const [n, t] of block.namedParameters()) {
      const v = randomArray(t.numel, t.numel + 3, 0.5);
      if (/ln[12]\.weight$/.test(n)) v.forEach((x, i) => (v[i] = 1 + x));
      t.copyFromHost(Float32Array.from(v));
      w.set(n, Float64Array.from(t.toArray()));
    }
    const x = Float64Array.from(Float32Array.from(randomArray(B * T * C, 9)));
    const y = tidy(() => {
      const layout = paddingLayout(valid, T);
      return noGrad(() =>
        block.forward(Tensor.fromArray(x, [B, T, C]), new Generator(1), 1, layout)
      )
        .toArray();
    });
    // the block's weights under BertLayer's names, from the layout (q | k | v rows)
    const hf: HfTensors = new Map();
    for (const k of ["weight", "bias"]) {
      const qkv = w.get(`attn.qkv.${k}`)!, size = qkv.length / 3;
      ["query", "key", "value"].forEach((q, i) =>
        hf.set(`attention.self.${q}.${k}`, qkv.subarray(i * size, (i + 1) * size))
      );
      hf.set(`attention.output.dense.${k}`, w.get(`attn.proj.${k}`)!);
      hf.set(`attention.output.LayerNorm.${k}`, w.get(`ln1.${k}`)!);
      hf.set(`intermediate.dense.${k}`, w.get(`mlp.fc.${k}`)!);
      hf.set(`output.dense.${k}`, w.get(`mlp.proj.${k}`)!);
      hf.set(`output.LayerNorm.${k}`, w.get(`ln2.${k}`)!);
    }
    const shape = {
      vocabSize: 1,
      hidden: C,
      layers: 1,
      heads: NH,
      intermediate: H,
      eps: 1e-12,
      gelu: "erf" as const,
      prefix: "",
    };
    const want = bertLayerRef(hf, "", shape, x, { B, T, validLengths: valid });
    assertClose(y, want, "post-LN block", { rtol: 1e-4, atol: 1e-5 });
  } finally {
    params.dispose();
  }
});

/** Runs the model on `x` and returns every output as arrays (eval mode, no graph). */
function outputsOf(model: GPT, x: BertInputs) {
  return tidy(() =>
    noGrad(() => {
      const { tokens, tokenTypes, layout } = tensors(x);
      const hidden = model.hiddenStates(tokens, { tokenTypes, layout });
      const pooled = model.pooler ? model.pooled(hidden) : null;
      return {
        hidden: hidden.toArray(),
        pooled: pooled?.toArray() ?? null,
        mlm: model.lmLogits(hidden).toArray(),
        binary: pooled && model.binary ? model.binaryLogits(pooled).toArray() : null,
        classifier: pooled && model.classifier ? model.classifierLogits(pooled).toArray() : null,
      };
    })
  );
}

Deno.test("the encoder's hidden states, pooler, masked-LM, binary and classifier heads match BERT in float64", () => {
  for (
    const config of [TINY, { ...TINY, binaryHead: false, outputTransform: false, numLabels: 3 }]
  ) {
    using model = new GPT(config).eval();
    randomize(model, 5);
    const x = batch(3, 7, TINY.vocabSize, [7, 4, 1]);
    const got = outputsOf(model, x);
    const want = bertRef(hfTensorsOf(model, weightsOf(model)), bertShapeOf(model), x);
    const tol = { rtol: 1e-4, atol: 1e-5 };
    assertClose(got.hidden, want.hidden, "hidden states", tol);
    assertClose(got.pooled!, want.pooled!, "pooled", tol);
    if (config.outputTransform) assertClose(got.mlm, want.mlm!, "masked-LM logits", tol);
    if (config.binaryHead) assertClose(got.binary!, want.binary!, "binary logits", tol);
    if (config.numLabels) assertClose(got.classifier!, want.classifier!, "classifier logits", tol);
  }
});

Deno.test("an encoder without a layout reads all T tokens of each row: forward() equals a full paddingLayout", () => {
  using model = new GPT(TINY).eval();
  randomize(model, 7);
  const x = batch(2, 6, TINY.vocabSize, [6, 6]);
  const plain = tidy(() =>
    noGrad(() => model.forward(Tensor.fromArray(x.tokens, [2, 6])).toArray())
  );
  const full = tidy(() =>
    noGrad(() =>
      model.forward(Tensor.fromArray(x.tokens, [2, 6]), undefined, paddingLayout([6, 6], 6))
        .toArray()
    )
  );
  assert.deepEqual(plain, full);
  // and token types default to segment 0, forward and backward
  const zeros = { ...x, tokenTypes: new Int32Array(12) };
  const typed = outputsOf(model, zeros).mlm;
  assert.deepEqual(typed, plain);
  model.train();
  const gradients = (types?: Int32Array) => {
    model.params.zeroGrad();
    tidy(() => {
      const tokens = Tensor.fromArray(x.tokens, [2, 6]);
      const targets = Tensor.fromArray(x.tokens, [2, 6]);
      const tokenTypes = types ? Tensor.fromArray(types, [2, 6]) : undefined;
      const h = model.hiddenStates(tokens, { tokenTypes });
      crossEntropy(model.lmLogits(h), targets, { classes: TINY.vocabSize }).backward();
    });
    return model.params.grad.toArray();
  };
  assert.deepEqual(gradients(), gradients(new Int32Array(12)));
});

/** pretrainingLoss of `x` with seeded targets; returns the loss parts and, with grad, the gradients. */
function pretrain(model: GPT, x: BertInputs, targets: Int32Array, labels: Int32Array) {
  model.params.zeroGrad();
  return tidy(() => {
    const { tokens, tokenTypes, layout } = tensors(x);
    const out = model.pretrainingLoss({
      tokens,
      tokenTypes,
      layout,
      mlmTargets: Tensor.fromArray(targets, [x.B, x.T]),
      sentenceLabels: Tensor.fromArray(labels, [x.B]),
    });
    out.loss.backward();
    return { loss: out.loss.item(), mlm: out.mlm.item(), sop: out.sop!.item() };
  });
}

/** Masked-LM targets on about a third of the valid positions, -1 elsewhere. */
function mlmTargets(x: BertInputs, seed: number): Int32Array {
  const t = randomInts(x.B * x.T, seed, x.tokens.length), out = new Int32Array(x.B * x.T).fill(-1);
  for (let b = 0; b < x.B; b++) {
    for (let i = 0; i < x.validLengths[b]; i++) {
      if (t[b * x.T + i] % 3 === 0 || i === 0) out[b * x.T + i] = t[b * x.T + i] % TINY.vocabSize;
    }
  }
  return out;
}

Deno.test("pretrainingLoss() and its gradients match the float64 BERT and its finite differences", () => {
  using model = new GPT(TINY);
  randomize(model, 11);
  const x = batch(2, 6, TINY.vocabSize, [6, 4], 3);
  const targets = mlmTargets(x, 4), labels = Int32Array.from([1, 0]);
  const got = pretrain(model, x, targets, labels);
  const w = weightsOf(model), shape = bertShapeOf(model);
  const lossOf = (weights: Weights) =>
    pretrainingLossRef(bertRef(hfTensorsOf(model, weights), shape, x), shape, x, targets, labels);
  const want = lossOf(w);
  assertClose([got.loss, got.mlm, got.sop], [want.loss, want.mlm, want.sop], "loss parts", {
    rtol: 1e-5,
  });
  for (const [name, t] of model.namedParameters()) {
    const grad = t.grad!.toArray(), base = w.get(name)!;
    const probes = Math.min(3, base.length);
    for (let p = 0; p < probes; p++) {
      const i = Math.floor((p + 0.5) * base.length / probes), h = 1e-6;
      const at = (d: number) => {
        const v = Float64Array.from(base);
        v[i] += d;
        return lossOf(new Map(w).set(name, v)).loss;
      };
      const fd = (at(h) - at(-h)) / (2 * h);
      assertClose([grad[i]], [fd], `d loss / d ${name}[${i}]`, { rtol: 2e-3, atol: 2e-5 });
    }
  }
});

Deno.test("classificationLoss() is the cross-entropy of the classifier over the pooled output, with its gradient", () => {
  using model = new GPT({ ...TINY, binaryHead: false, outputTransform: false, numLabels: 3 });
  randomize(model, 13);
  const x = batch(3, 5, TINY.vocabSize, [5, 2, 3]);
  const labels = Int32Array.from([2, 0, 1]);
  model.eval(); // no dropout: the reference has none
  const loss = tidy(() => {
    const { tokens, tokenTypes, layout } = tensors(x);
    const l = model.classificationLoss(tokens, Tensor.fromArray(labels, [3]), {
      tokenTypes,
      layout,
    });
    l.backward();
    return l.item();
  });
  const w = weightsOf(model), shape = bertShapeOf(model);
  const lossOf = (weights: Weights) =>
    refCrossEntropy(bertRef(hfTensorsOf(model, weights), shape, x).classifier!, labels, 3);
  assertClose([loss], [lossOf(w)], "classification loss", { rtol: 1e-5 });
  for (const name of ["classifier.weight", "pooler.dense.bias", "h.0.attn.qkv.weight"]) {
    const t = model.namedParameters().find(([n]) => n === name)![1];
    const base = w.get(name)!, i = Math.floor(base.length / 3), h = 1e-6;
    const at = (d: number) => {
      const v = Float64Array.from(base);
      v[i] += d;
      return lossOf(new Map(w).set(name, v));
    };
    assertClose([t.grad!.toArray()[i]], [(at(h) - at(-h)) / (2 * h)], `d loss / d ${name}[${i}]`, {
      rtol: 2e-3,
      atol: 2e-5,
    });
  }
});

function refCrossEntropy(z: Float64Array, t: Int32Array, V: number): number {
  let total = 0;
  for (let i = 0; i < t.length; i++) {
    const row = z.subarray(i * V, (i + 1) * V), mx = Math.max(...row);
    total += mx + Math.log(row.reduce((s, v) => s + Math.exp(v - mx), 0)) - row[t[i]];
  }
  return total / t.length;
}

Deno.test("padding: tokens and types past each row's valid length change no output and no gradient", () => {
  using model = new GPT({ ...TINY, dropout: 0 });
  randomize(model, 17);
  const valid = [6, 3];
  const a = batch(2, 6, TINY.vocabSize, valid, 21);
  const b = { ...a, tokens: Int32Array.from(a.tokens), tokenTypes: Int32Array.from(a.tokenTypes) };
  for (let t = valid[1]; t < 6; t++) {
    b.tokens[6 + t] = (a.tokens[6 + t] + 5) % TINY.vocabSize;
    b.tokenTypes[6 + t] = 1 - a.tokenTypes[6 + t];
  }
  model.eval();
  const [oa, ob] = [outputsOf(model, a), outputsOf(model, b)];
  const C = TINY.nEmbd;
  const validRows = (h: ArrayLike<number>, width: number) =>
    Array.from(h).filter((_, i) => Math.floor(i / width) % 6 < valid[Math.floor(i / (6 * width))]);
  assert.deepEqual(
    validRows(oa.hidden, C),
    validRows(ob.hidden, C),
    "hidden states at valid positions",
  );
  assert.deepEqual(oa.pooled, ob.pooled, "pooled");
  assert.deepEqual(oa.binary, ob.binary, "binary logits");
  model.train();
  const targets = mlmTargets(a, 22), labels = Int32Array.from([0, 1]);
  const la = pretrain(model, a, targets, labels);
  const ga = model.params.grad.toArray();
  const lb = pretrain(model, b, targets, labels);
  assert.deepEqual(la, lb, "loss");
  assert.deepEqual(model.params.grad.toArray(), ga, "gradients");
});

Deno.test("recomputation of an encoder gives the loss and gradients of the plain run, bit for bit", () => {
  using model = new GPT({ ...TINY, dropout: 0.1 });
  randomize(model, 19);
  const x = batch(2, 5, TINY.vocabSize, [5, 3]);
  const targets = mlmTargets(x, 6), labels = Int32Array.from([1, 1]);
  const run = () => {
    model.rng.offset = 0;
    const l = pretrain(model, x, targets, labels);
    return { l, g: model.params.grad.toArray() };
  };
  const plain = run();
  for (const granularity of ["full", "selective"] as const) {
    model.recompute = { granularity };
    assert.deepEqual(run(), plain, granularity);
  }
  model.recompute = null;
});

Deno.test("BERT presets: BERT-Tiny's published 4,385,920 parameters as a BertModel; bert-base's shape", () => {
  const { binaryHead: _b, outputTransform: _o, ...tiny } = GPT_PRESETS["bert-tiny"];
  using model = new GPT({ ...tiny, binaryHead: false, outputTransform: false });
  assert.equal(model.numParameters(), 4_385_920);
  assert.match(String(model), /gelu \(erf\) bidirectional post-LN token types=2 pooler,/);
  const base = gptConfigWithDefaults(GPT_PRESETS["bert-base"]);
  assert.deepEqual(
    [base.nLayer, base.nEmbd, base.nHead, base.ffnHidden, base.vocabSize, base.blockSize],
    [12, 768, 12, 3072, 30522, 512],
  );
  assert.equal(base.gelu, "erf");
  assert.equal(isGpt2Architecture(base), false);
  assert.equal(isGpt2Architecture(gptConfigWithDefaults(GPT_PRESETS.gpt2)), true);
});

Deno.test("bad encoder configs and inputs are refused with a sentence", () => {
  const bad: [Partial<GPTConfig>, RegExp][] = [
    [
      { pooler: false },
      /GPT config: binaryHead true reads the pooled output; it needs pooler true/,
    ],
    [
      { numTokenTypes: -1 },
      /GPT config: numTokenTypes must be 0 \(none\) or a positive integer, got -1/,
    ],
    [
      { attentionMask: "full" as "padding" },
      /GPT config: attentionMask must be one of "causal", "padding", got "full"/,
    ],
    [
      { normPosition: "sandwich" as "post" },
      /GPT config: normPosition must be one of "pre", "post"/,
    ],
    [{ gelu: "exact" as "erf" }, /GPT config: gelu must be one of "tanh", "erf"/],
    [
      { numLabels: 2.5 },
      /GPT config: numLabels must be 0 \(none\) or a positive integer, got 2\.5/,
    ],
  ];
  for (const [change, error] of bad) assert.throws(() => new GPT({ ...TINY, ...change }), error);
  using model = new GPT(TINY);
  using decoder = new GPT(GPT_PRESETS.tiny);
  tidy(() => {
    const tokens = Tensor.fromArray(new Int32Array(10), [1, 10]);
    assert.throws(
      () => model.hiddenStates(tokens, { layout: paddingLayout([10], 10) }),
      /Embedding: sequence length 10 exceeds the 9 positions of wpe/,
    );
    const short = Tensor.fromArray(new Int32Array(4), [1, 4]);
    assert.throws(
      () =>
        model.hiddenStates(short, {
          tokenTypes: Tensor.fromArray(new Int32Array([0, 1, 2, 0]), [1, 4]),
        }),
      /Embedding: tokenTypes: .*token 2 at flat index 2 is outside the vocabulary \[0, 2\)/,
    );
    assert.throws(
      () =>
        decoder.hiddenStates(short, { tokenTypes: Tensor.fromArray(new Int32Array(4), [1, 4]) }),
      /Embedding: tokenTypes given, but the model has no token types/,
    );
    assert.throws(
      () => decoder.pooled(decoder.hiddenStates(short)),
      /GPT\.pooled: the model has no pooler/,
    );
    assert.throws(
      () => model.pretrainingLoss({ tokens: short, mlmTargets: short }),
      /GPT\.pretrainingLoss: the model has a binary head; the batch needs sentenceLabels/,
    );
    assert.throws(() => model.lnf, /a model with normPosition "post" has no final norm/);
  });
});
