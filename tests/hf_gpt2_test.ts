import assert from "assert";
import { join } from "node:path";
import { gptConfigFromHf, loadHfGpt2, saveHfGpt2 } from "../lib/io/hf_gpt2.ts";
import {
  readSafetensors,
  type TensorEntry,
  tensorEntry,
  typedView,
  writeSafetensors,
} from "../lib/io/safetensors.ts";
import { noGrad } from "../lib/autograd.ts";
import { Tensor } from "../lib/tensor.ts";

/** A small GPT-2 in Hugging Face's vocabulary: n_layer, n_head, n_embd, ... */
const HF_CONFIG = {
  architectures: ["GPT2LMHeadModel"],
  model_type: "gpt2",
  activation_function: "gelu_new",
  n_layer: 2,
  n_head: 2,
  n_embd: 8,
  vocab_size: 23,
  n_positions: 12,
  n_ctx: 12,
  n_inner: null,
  layer_norm_epsilon: 1e-5,
};
const TOKENS = [5, 0, 22, 7, 7, 13, 1, 19, 4];

/** Seeded values in [-scale, scale) (a 32-bit LCG). */
function seeded(n: number, seed: number, scale: number, offset = 0): Float32Array {
  let s = seed >>> 0;
  return Float32Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return offset + (s / 2147483648 - 1) * scale;
  });
}

/** One stored tensor. */
interface Weight {
  shape: number[];
  data: Float32Array;
}

/**
 * HF names and shapes of a GPT-2, exactly as GPT2LMHeadModel stores them: Conv1D
 * weights (in, out). Values are random, large enough for logits of order 1.
 */
function hfTensors(cfg = HF_CONFIG): Map<string, Weight> {
  const C = cfg.n_embd, V = cfg.vocab_size, P = cfg.n_positions;
  const out = new Map<string, Weight>();
  let seed = 100;
  const add = (name: string, shape: number[], scale: number, offset = 0) => {
    const n = shape.reduce((a, b) => a * b, 1);
    out.set(name, { shape, data: seeded(n, seed++, scale, offset) });
  };
  add("wte.weight", [V, C], 0.5);
  add("wpe.weight", [P, C], 0.3);
  for (let i = 0; i < cfg.n_layer; i++) {
    add(`h.${i}.ln_1.weight`, [C], 0.2, 1);
    add(`h.${i}.ln_1.bias`, [C], 0.1);
    add(`h.${i}.attn.c_attn.weight`, [C, 3 * C], 0.6);
    add(`h.${i}.attn.c_attn.bias`, [3 * C], 0.1);
    add(`h.${i}.attn.c_proj.weight`, [C, C], 0.4);
    add(`h.${i}.attn.c_proj.bias`, [C], 0.1);
    add(`h.${i}.ln_2.weight`, [C], 0.2, 1);
    add(`h.${i}.ln_2.bias`, [C], 0.1);
    add(`h.${i}.mlp.c_fc.weight`, [C, 4 * C], 0.4);
    add(`h.${i}.mlp.c_fc.bias`, [4 * C], 0.1);
    add(`h.${i}.mlp.c_proj.weight`, [4 * C, C], 0.3);
    add(`h.${i}.mlp.c_proj.bias`, [C], 0.1);
  }
  add("ln_f.weight", [C], 0.2, 1);
  add("ln_f.bias", [C], 0.1);
  return out;
}

interface Layout {
  prefix?: string;
  lmHead?: "tied" | "untied";
  masks?: boolean;
  config?: Record<string, unknown> | null;
  edit?: (tensors: Map<string, TensorEntry>) => void;
}

/** Writes an HF-layout directory; returns it. */
async function writeHfDir(
  dir: string,
  weights: Map<string, Weight>,
  layout: Layout = {},
): Promise<string> {
  await Deno.mkdir(dir, { recursive: true });
  const prefix = layout.prefix ?? "";
  const tensors = new Map<string, TensorEntry>();
  for (const [name, data] of weights) {
    tensors.set(prefix + name, tensorEntry("F32", data.shape, data.data));
    if (layout.masks && name.endsWith("ln_1.weight")) {
      const P = HF_CONFIG.n_positions;
      const mask = new Float32Array(P * P).map((_, k) => (k % P <= Math.floor(k / P) ? 1 : 0));
      tensors.set(
        prefix + name.replace("ln_1.weight", "attn.bias"),
        tensorEntry("F32", [1, 1, P, P], mask),
      );
      tensors.set(
        prefix + name.replace("ln_1.weight", "attn.masked_bias"),
        tensorEntry("F32", [], new Float32Array([-1e4])),
      );
    }
  }
  if (layout.lmHead) {
    const wte = weights.get("wte.weight")!.data.slice();
    if (layout.lmHead === "untied") wte[3] += 1e-3;
    tensors.set(
      "lm_head.weight",
      tensorEntry("F32", [HF_CONFIG.vocab_size, HF_CONFIG.n_embd], wte),
    );
  }
  layout.edit?.(tensors);
  await writeSafetensors(join(dir, "model.safetensors"), { tensors, metadata: { format: "pt" } });
  if (layout.config !== null) {
    await Deno.writeTextFile(join(dir, "config.json"), JSON.stringify(layout.config ?? HF_CONFIG));
  }
  return dir;
}

/**
 * GPT-2's forward pass in float64, written from the HF layout: every Conv1D is
 * y = x @ W + b with W (in, out). Returns logits (T, V).
 */
function referenceLogits(
  w: Map<string, Weight>,
  cfg: typeof HF_CONFIG,
  tokens: number[],
): Float64Array {
  const C = cfg.n_embd, V = cfg.vocab_size, NH = cfg.n_head, HS = C / NH, T = tokens.length;
  const get = (n: string) => w.get(n)!.data;
  const conv1d = (x: Float64Array, rows: number, nIn: number, nOut: number, name: string) => {
    const W = get(`${name}.weight`), b = get(`${name}.bias`);
    const y = new Float64Array(rows * nOut);
    for (let r = 0; r < rows; r++) {
      for (let o = 0; o < nOut; o++) {
        let s = b[o];
        for (let i = 0; i < nIn; i++) s += x[r * nIn + i] * W[i * nOut + o];
        y[r * nOut + o] = s;
      }
    }
    return y;
  };
  const layerNorm = (x: Float64Array, name: string) => {
    const g = get(`${name}.weight`), b = get(`${name}.bias`);
    const y = new Float64Array(x.length);
    for (let t = 0; t < T; t++) {
      const row = x.subarray(t * C, (t + 1) * C);
      const mean = row.reduce((s, v) => s + v, 0) / C;
      const variance = row.reduce((s, v) => s + (v - mean) ** 2, 0) / C;
      const r = 1 / Math.sqrt(variance + cfg.layer_norm_epsilon);
      for (let c = 0; c < C; c++) y[t * C + c] = (row[c] - mean) * r * g[c] + b[c];
    }
    return y;
  };
  const geluNew = (u: number) =>
    0.5 * u * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (u + 0.044715 * u ** 3)));

  const wte = get("wte.weight"), wpe = get("wpe.weight");
  let x = new Float64Array(T * C);
  tokens.forEach((tok, t) => {
    for (let c = 0; c < C; c++) x[t * C + c] = wte[tok * C + c] + wpe[t * C + c];
  });
  for (let l = 0; l < cfg.n_layer; l++) {
    const qkv = conv1d(layerNorm(x, `h.${l}.ln_1`), T, C, 3 * C, `h.${l}.attn.c_attn`);
    const y = new Float64Array(T * C);
    for (let h = 0; h < NH; h++) {
      for (let i = 0; i < T; i++) {
        const scores = [];
        for (let j = 0; j <= i; j++) {
          let s = 0;
          for (let d = 0; d < HS; d++) {
            s += qkv[i * 3 * C + h * HS + d] * qkv[j * 3 * C + C + h * HS + d];
          }
          scores.push(s / Math.sqrt(HS));
        }
        const mx = Math.max(...scores);
        const e = scores.map((s) => Math.exp(s - mx));
        const z = e.reduce((a, b) => a + b, 0);
        for (let d = 0; d < HS; d++) {
          let acc = 0;
          for (let j = 0; j <= i; j++) acc += (e[j] / z) * qkv[j * 3 * C + 2 * C + h * HS + d];
          y[i * C + h * HS + d] = acc;
        }
      }
    }
    const a = conv1d(y, T, C, C, `h.${l}.attn.c_proj`);
    x = x.map((v, k) => v + a[k]);
    const f = conv1d(layerNorm(x, `h.${l}.ln_2`), T, C, 4 * C, `h.${l}.mlp.c_fc`).map(geluNew);
    const m = conv1d(f, T, 4 * C, C, `h.${l}.mlp.c_proj`);
    x = x.map((v, k) => v + m[k]);
  }
  x = layerNorm(x, "ln_f");
  const logits = new Float64Array(T * V);
  for (let t = 0; t < T; t++) {
    for (let v = 0; v < V; v++) {
      let s = 0;
      for (let c = 0; c < C; c++) s += x[t * C + c] * wte[v * C + c];
      logits[t * V + v] = s;
    }
  }
  return logits;
}

async function inTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "denotron_hf_" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

function ourLogits(model: { forward(t: Tensor): Tensor }, tokens: number[]): Float32Array {
  return noGrad(() => {
    using t = Tensor.fromArray(Int32Array.from(tokens), [1, tokens.length]);
    using logits = model.forward(t);
    return logits.toArray() as Float32Array;
  });
}

for (
  const layout of [{ prefix: "" }, {
    prefix: "transformer.",
    lmHead: "tied",
    masks: true,
  }] as Layout[]
) {
  const what = `${layout.prefix ? "'transformer.' names" : "bare names"}${
    layout.lmHead ? ", tied lm_head and mask buffers" : ""
  }`;
  Deno.test(`loadHfGpt2() matches a float64 GPT-2 forward written from the HF layout (${what})`, async () => {
    await inTempDir(async (dir) => {
      const weights = hfTensors();
      using model = await loadHfGpt2(await writeHfDir(dir, weights, layout));
      const got = ourLogits(model, TOKENS);
      const want = referenceLogits(weights, HF_CONFIG, TOKENS);
      const scale = Math.max(...want.map(Math.abs));
      assert.ok(scale > 1, `the reference logits should be of order 1, max ${scale}`);
      let worst = 0;
      for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(got[i] - want[i]));
      assert.ok(worst <= 1e-4 * scale, `max error ${worst} relative to ${scale}`);
    });
  });
}

Deno.test("saveHfGpt2() writes the HF layout back byte for byte, and it loads again", async () => {
  await inTempDir(async (dir) => {
    const src = await writeHfDir(join(dir, "in"), hfTensors(), { prefix: "transformer." });
    using model = await loadHfGpt2(src);
    await saveHfGpt2(model, join(dir, "out"));
    const a = await readSafetensors(join(src, "model.safetensors"));
    const b = await readSafetensors(join(dir, "out", "model.safetensors"));
    assert.deepEqual([...b.tensors.keys()].sort(), [...a.tensors.keys()].sort());
    for (const [name, t] of a.tensors) {
      assert.deepEqual(b.tensors.get(name)!.shape, t.shape, name);
      assert.deepEqual(b.tensors.get(name)!.data, t.data, name);
    }
    const config = JSON.parse(await Deno.readTextFile(join(dir, "out", "config.json")));
    for (
      const k of [
        "n_layer",
        "n_head",
        "n_embd",
        "vocab_size",
        "n_positions",
        "activation_function",
      ] as const
    ) {
      assert.equal(config[k], HF_CONFIG[k], k);
    }
    using again = await loadHfGpt2(join(dir, "out"));
    const s1 = model.stateDict(), s2 = again.stateDict();
    for (const name of Object.keys(s1)) {
      assert.deepEqual(s2[name].toArray(), s1[name].toArray(), name);
    }
  });
});

Deno.test("a padded vocabulary loads HF weights into its first rows and saves them without the padding", async () => {
  await inTempDir(async (dir) => {
    const weights = hfTensors();
    const src = await writeHfDir(join(dir, "in"), weights, {
      prefix: "transformer.",
      lmHead: "tied",
    });
    using model = await loadHfGpt2(src, { vocabMultiple: 16 }); // 23 → 32 rows
    assert.deepEqual(model.emb.wte.shape, [32, HF_CONFIG.n_embd]);
    const got = ourLogits(model, TOKENS), V = HF_CONFIG.vocab_size;
    const want = referenceLogits(weights, HF_CONFIG, TOKENS);
    const scale = Math.max(...want.map(Math.abs));
    for (let t = 0; t < TOKENS.length; t++) {
      for (let v = 0; v < 32; v++) {
        const g = got[t * 32 + v];
        if (v >= V) assert.equal(g, 0, `padding logit ${v} at position ${t}`);
        else assert.ok(Math.abs(g - want[t * V + v]) <= 1e-4 * scale, `logit ${v} at ${t}`);
      }
    }
    await saveHfGpt2(model, join(dir, "out"));
    const a = await readSafetensors(join(src, "model.safetensors"));
    const b = await readSafetensors(join(dir, "out", "model.safetensors"));
    for (const [name, t] of b.tensors) {
      assert.deepEqual(t.shape, a.tensors.get(name)!.shape, name);
      assert.deepEqual(t.data, a.tensors.get(name)!.data, name);
    }
  });
});

Deno.test("loadHfGpt2() converts F16 and BF16 weights to f32", async () => {
  await inTempDir(async (dir) => {
    const weights = hfTensors();
    // Values exactly representable in both formats: k/64 for small k.
    for (const { data } of weights.values()) {
      data.forEach((_, i) => (data[i] = ((i * 7) % 33 - 16) / 64));
    }
    const toBits = (x: number, bf16: boolean) => {
      const u = new Uint32Array(new Float32Array([x]).buffer)[0];
      if (bf16) return u >>> 16;
      const s = (u >>> 16) & 0x8000;
      if (x === 0) return s;
      const e = ((u >>> 23) & 0xff) - 127 + 15, m = (u >>> 13) & 0x3ff;
      return s | (e << 10) | m;
    };
    for (const [dtype, bf16] of [["F16", false], ["BF16", true]] as const) {
      const sub = join(dir, dtype);
      await writeHfDir(sub, weights, {
        edit: (ts) => {
          for (const [name, t] of ts) {
            const f = typedView(t) as Float32Array;
            ts.set(name, tensorEntry(dtype, t.shape, Uint16Array.from(f, (x) => toBits(x, bf16))));
          }
        },
      });
      using model = await loadHfGpt2(sub);
      assert.deepEqual(model.emb.wpe!.toArray(), weights.get("wpe.weight")!.data, dtype);
    }
  });
});

Deno.test("loadHfGpt2() names the file and the tensor for each bad input", async () => {
  await inTempDir(async (dir) => {
    const weights = hfTensors();
    const cases: [string, Layout, RegExp][] = [
      ["noconfig", { config: null }, /noconfig\/config\.json: cannot read/],
      [
        "relu",
        { config: { ...HF_CONFIG, activation_function: "relu" } },
        /relu\/config\.json: activation_function "relu" is not supported/,
      ],
      [
        "nolayers",
        { config: { ...HF_CONFIG, n_layer: undefined } },
        /nolayers\/config\.json: field "n_layer" must be a positive integer/,
      ],
      [
        "shape",
        {
          edit: (ts) => {
            // Our (out, in) orientation instead of Conv1D's (in, out).
            const t = ts.get("h.1.attn.c_attn.weight")!;
            ts.set("h.1.attn.c_attn.weight", { ...t, shape: [24, 8] });
          },
        },
        /shape\/model\.safetensors: tensor "h\.1\.attn\.c_attn\.weight" has shape \[24, 8\], expected \[8, 24\] \(GPT-2's Conv1D weights are stored \(in, out\)\)/,
      ],
      [
        "missing",
        { prefix: "transformer.", edit: (ts) => ts.delete("transformer.h.0.mlp.c_fc.bias") },
        /missing\/model\.safetensors: missing tensor "h\.0\.mlp\.c_fc\.bias"/,
      ],
      [
        "untied",
        { lmHead: "untied" },
        /untied\/model\.safetensors: tensor "lm_head\.weight" is not tied to "wte\.weight" \(they differ at element 3\)/,
      ],
      [
        "extra",
        { edit: (ts) => ts.set("h.2.ln_1.weight", tensorEntry("F32", [8], new Float32Array(8))) },
        /extra\/model\.safetensors: unexpected tensor "h\.2\.ln_1\.weight" for a GPT-2 of 2 layers/,
      ],
    ];
    for (const [name, layout, error] of cases) {
      const sub = await writeHfDir(join(dir, name), weights, layout);
      await assert.rejects(() => loadHfGpt2(sub), error, name);
    }
    await assert.rejects(
      () => loadHfGpt2(join(dir, "nowhere")),
      /nowhere\/config\.json: cannot read/,
    );
  });
});

Deno.test("gptConfigFromHf() maps the HF fields and refuses other attention scalings", () => {
  const c = gptConfigFromHf({ ...HF_CONFIG, n_inner: 20, layer_norm_epsilon: 1e-6 }, "c.json");
  assert.deepEqual(c, {
    vocabSize: 23,
    blockSize: 12,
    nLayer: 2,
    nHead: 2,
    nEmbd: 8,
    layerNormEps: 1e-6,
    dropout: 0,
    ffnHidden: 20,
  });
  assert.throws(
    () => gptConfigFromHf({ ...HF_CONFIG, scale_attn_by_inverse_layer_idx: true }, "c.json"),
    /c\.json: only the standard 1\/sqrt\(head size\) attention scaling/,
  );
  assert.throws(
    () => gptConfigFromHf({ ...HF_CONFIG, model_type: "bert" }, "c.json"),
    /not "gpt2"/,
  );
});
