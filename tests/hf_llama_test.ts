/**
 * lib/io/hf_llama.ts against Hugging Face's Llama layout: tiny LlamaForCausalLM
 * directories written here (config.json, safetensors, shards) must give the logits of a
 * float64 Llama forward written below from the HF tensors themselves (HF's inv_freq
 * formula and Llama 3 scaling, rotate-half RoPE on the q_proj/k_proj rows, repeat_kv for
 * grouped-query attention); exports must be the HF layout again, bit for bit.
 */
import assert from "assert";
import { join } from "node:path";
import { noGrad } from "../lib/autograd.ts";
import { generate } from "../lib/infer/generate.ts";
import { fromHf } from "../lib/infer/sources.ts";
import { hfModelType, loadHf } from "../lib/io/hf.ts";
import { llamaConfigFromHf, loadHfLlama, saveHfLlama } from "../lib/io/hf_llama.ts";
import {
  readSafetensors,
  type TensorEntry,
  tensorEntry,
  writeSafetensors,
} from "../lib/io/safetensors.ts";
import { GPT, GPT_PRESETS, type GPTConfig, LLAMA_ARCHITECTURE } from "../lib/nn/gpt.ts";
import { Tensor } from "../lib/tensor.ts";
import { DEFAULT_CONFIG } from "../lib/train/config.ts";
import { randomArray } from "./helpers.ts";
import {
  assertCloseSeq,
  readCliRun,
  runScript,
  tinyCorpus,
  TRAIN_SCRIPT,
  trainCliArgs,
} from "./train_helpers.ts";

type Raw = Record<string, unknown>;

/** A tiny Llama in HF's vocabulary: head_dim 8, grouped-query attention (4 heads, 2 kv). */
const BASE: Raw = {
  architectures: ["LlamaForCausalLM"],
  model_type: "llama",
  hidden_act: "silu",
  hidden_size: 32,
  intermediate_size: 24,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  max_position_embeddings: 32,
  rms_norm_eps: 1e-6,
  rope_theta: 10000,
  rope_scaling: null,
  vocab_size: 29,
  tie_word_embeddings: false,
  attention_bias: false,
  mlp_bias: false,
};
/** Llama 3 scaling whose three bands (kept, blended, slowed) each hold a frequency of head_dim 8 at θ = 100. */
const LLAMA3: Raw = {
  ...BASE,
  rope_theta: 100,
  rope_scaling: {
    rope_type: "llama3",
    factor: 8,
    low_freq_factor: 1,
    high_freq_factor: 4,
    original_max_position_embeddings: 64,
  },
};
const TOKENS = [5, 0, 28, 7, 7, 13, 1, 19, 4, 22, 3];

type Weights = Map<string, { shape: number[]; data: Float32Array }>;

/** Multiples of 1/64 below 2 in magnitude: exact in F32, BF16 and F16 alike. */
function values(n: number, seed: number, scale: number, offset = 0): Float32Array {
  return Float32Array.from(randomArray(n, seed, scale), (v) => Math.round((offset + v) * 64) / 64);
}

/** The tensors LlamaForCausalLM stores for `cfg`, with seeded values, in HF's order. */
function hfWeights(cfg: Raw): Weights {
  const C = cfg.hidden_size as number, F = cfg.intermediate_size as number;
  const V = cfg.vocab_size as number, hd = C / (cfg.num_attention_heads as number);
  const kv = (cfg.num_key_value_heads as number) * hd;
  const out: Weights = new Map();
  let seed = 1000;
  const add = (name: string, shape: number[], scale: number, offset = 0) => {
    out.set(name, { shape, data: values(shape.reduce((a, b) => a * b, 1), seed++, scale, offset) });
  };
  add("model.embed_tokens.weight", [V, C], 1);
  for (let l = 0; l < (cfg.num_hidden_layers as number); l++) {
    const p = `model.layers.${l}.`;
    add(`${p}input_layernorm.weight`, [C], 0.3, 1);
    for (const [name, rows] of [["q", C], ["k", kv], ["v", kv], ["o", C]] as const) {
      add(`${p}self_attn.${name}_proj.weight`, [rows, C], 0.4);
      if (cfg.attention_bias) add(`${p}self_attn.${name}_proj.bias`, [rows], 0.2);
    }
    add(`${p}post_attention_layernorm.weight`, [C], 0.3, 1);
    for (const [name, rows, cols] of [["gate", F, C], ["up", F, C], ["down", C, F]] as const) {
      add(`${p}mlp.${name}_proj.weight`, [rows, cols], 0.4);
      if (cfg.mlp_bias) add(`${p}mlp.${name}_proj.bias`, [rows], 0.2);
    }
  }
  add("model.norm.weight", [C], 0.3, 1);
  if (!cfg.tie_word_embeddings) add("lm_head.weight", [V, C], 0.5);
  return out;
}

/** HF's `inv_freq`: 1 / θ^(2j/d), then `_compute_llama3_parameters` when asked. */
function hfInvFreq(cfg: Raw, hd: number): number[] {
  const theta = cfg.rope_theta as number;
  const inv = Array.from({ length: hd / 2 }, (_, j) => 1 / theta ** ((2 * j) / hd));
  const s = cfg.rope_scaling as Raw | null;
  if (!s) return inv;
  const factor = s.factor as number, lo = s.low_freq_factor as number;
  const hi = s.high_freq_factor as number, old = s.original_max_position_embeddings as number;
  const lowFreqWavelen = old / lo, highFreqWavelen = old / hi;
  return inv.map((f) => {
    const wavelen = (2 * Math.PI) / f;
    const scaled = wavelen > lowFreqWavelen ? f / factor : f;
    const medium = !(wavelen < highFreqWavelen) && !(wavelen > lowFreqWavelen);
    if (!medium) return scaled;
    const smooth = (old / wavelen - lo) / (hi - lo);
    return (1 - smooth) * scaled / factor + smooth * scaled;
  });
}

/**
 * LlamaForCausalLM's forward in float64, from the HF tensors: logits (T, V).
 * `interleaved` rotates pairs (x_2j, x_2j+1) instead (GPT-J / Meta's original layout),
 * to show that the comparison tells the two conventions apart.
 */
function referenceLogits(
  w: Weights,
  cfg: Raw,
  tokens: number[],
  opts: { interleaved?: boolean } = {},
): Float64Array {
  const C = cfg.hidden_size as number, F = cfg.intermediate_size as number;
  const V = cfg.vocab_size as number, NH = cfg.num_attention_heads as number;
  const NKV = cfg.num_key_value_heads as number, hd = C / NH, T = tokens.length;
  const eps = cfg.rms_norm_eps as number;
  const get = (n: string) => w.get(n)?.data;
  // y = x Wᵀ + b, W (out, in) as nn.Linear stores it
  const linear = (x: Float64Array, nIn: number, name: string) => {
    const W = get(`${name}.weight`)!, b = get(`${name}.bias`), nOut = W.length / nIn;
    const y = new Float64Array(T * nOut);
    for (let t = 0; t < T; t++) {
      for (let o = 0; o < nOut; o++) {
        let s = b ? b[o] : 0;
        for (let i = 0; i < nIn; i++) s += x[t * nIn + i] * W[o * nIn + i];
        y[t * nOut + o] = s;
      }
    }
    return y;
  };
  const rmsNorm = (x: Float64Array, name: string) => {
    const g = get(`${name}.weight`)!, y = new Float64Array(x.length);
    for (let t = 0; t < T; t++) {
      let ms = 0;
      for (let c = 0; c < C; c++) ms += x[t * C + c] ** 2 / C;
      const r = 1 / Math.sqrt(ms + eps);
      for (let c = 0; c < C; c++) y[t * C + c] = x[t * C + c] * r * g[c];
    }
    return y;
  };
  const inv = hfInvFreq(cfg, hd);
  // q·cos + rotate_half(q)·sin, cos/sin of cat(freqs, freqs), on every head of x (T, heads·hd)
  const rotate = (x: Float64Array, heads: number) => {
    const y = new Float64Array(x.length);
    for (let t = 0; t < T; t++) {
      for (let h = 0; h < heads; h++) {
        const at = t * heads * hd + h * hd;
        for (let j = 0; j < hd / 2; j++) {
          const [a, b] = opts.interleaved
            ? [at + 2 * j, at + 2 * j + 1]
            : [at + j, at + j + hd / 2];
          const cos = Math.cos(t * inv[j]), sin = Math.sin(t * inv[j]);
          y[a] = x[a] * cos - x[b] * sin;
          y[b] = x[b] * cos + x[a] * sin;
        }
      }
    }
    return y;
  };
  const silu = (u: number) => u / (1 + Math.exp(-u));

  const emb = get("model.embed_tokens.weight")!;
  let x = new Float64Array(T * C);
  tokens.forEach((tok, t) => {
    for (let c = 0; c < C; c++) x[t * C + c] = emb[tok * C + c];
  });
  for (let l = 0; l < (cfg.num_hidden_layers as number); l++) {
    const p = `model.layers.${l}.`;
    const h = rmsNorm(x, `${p}input_layernorm`);
    const q = rotate(linear(h, C, `${p}self_attn.q_proj`), NH);
    const k = rotate(linear(h, C, `${p}self_attn.k_proj`), NKV);
    const v = linear(h, C, `${p}self_attn.v_proj`);
    const y = new Float64Array(T * C);
    for (let head = 0; head < NH; head++) {
      const g = Math.floor(head / (NH / NKV)); // repeat_kv: query head → its kv head
      for (let i = 0; i < T; i++) {
        const scores: number[] = [];
        for (let j = 0; j <= i; j++) {
          let s = 0;
          for (let d = 0; d < hd; d++) s += q[i * C + head * hd + d] * k[j * NKV * hd + g * hd + d];
          scores.push(s / Math.sqrt(hd));
        }
        const mx = Math.max(...scores);
        const e = scores.map((s) => Math.exp(s - mx));
        const z = e.reduce((a, b) => a + b, 0);
        for (let d = 0; d < hd; d++) {
          let acc = 0;
          for (let j = 0; j <= i; j++) acc += (e[j] / z) * v[j * NKV * hd + g * hd + d];
          y[i * C + head * hd + d] = acc;
        }
      }
    }
    const a = linear(y, C, `${p}self_attn.o_proj`);
    x = x.map((val, i) => val + a[i]);
    const h2 = rmsNorm(x, `${p}post_attention_layernorm`);
    const gate = linear(h2, C, `${p}mlp.gate_proj`), up = linear(h2, C, `${p}mlp.up_proj`);
    const m = linear(gate.map((gv, i) => silu(gv) * up[i]), F, `${p}mlp.down_proj`);
    x = x.map((val, i) => val + m[i]);
  }
  x = rmsNorm(x, "model.norm");
  const head = get("lm_head.weight") ?? emb;
  const logits = new Float64Array(T * V);
  for (let t = 0; t < T; t++) {
    for (let o = 0; o < V; o++) {
      let s = 0;
      for (let c = 0; c < C; c++) s += x[t * C + c] * head[o * C + c];
      logits[t * V + o] = s;
    }
  }
  return logits;
}

/** f32 → F16 or BF16 bits, for values exact in both (normal numbers and zero). */
function halfBits(x: number, dtype: "F16" | "BF16"): number {
  const u = new Uint32Array(new Float32Array([x]).buffer)[0];
  if (dtype === "BF16") return u >>> 16;
  const sign = (u >>> 16) & 0x8000;
  if (x === 0) return sign;
  return sign | ((((u >>> 23) & 0xff) - 127 + 15) << 10) | ((u >>> 13) & 0x3ff);
}

type FileDType = "F32" | "BF16" | "F16";

function entries(w: Weights, dtype: FileDType = "F32"): Map<string, TensorEntry> {
  const out = new Map<string, TensorEntry>();
  for (const [name, { shape, data }] of w) {
    out.set(
      name,
      dtype === "F32"
        ? tensorEntry("F32", shape, data)
        : tensorEntry(dtype, shape, Uint16Array.from(data, (x) => halfBits(x, dtype))),
    );
  }
  return out;
}

interface Layout {
  dtype?: FileDType;
  /** Tensors per shard: a sharded directory with an index written here. */
  shardSize?: number;
  edit?: (tensors: Map<string, TensorEntry>) => void;
  editIndex?: (index: { weight_map: Record<string, unknown> }) => void;
}

/** Writes an HF Llama directory; returns it. */
async function writeHfDir(dir: string, cfg: Raw, w: Weights, layout: Layout = {}) {
  await Deno.mkdir(dir, { recursive: true });
  const tensors = entries(w, layout.dtype);
  layout.edit?.(tensors);
  const metadata = { format: "pt" };
  if (!layout.shardSize) {
    await writeSafetensors(join(dir, "model.safetensors"), { tensors, metadata });
  } else {
    const keys = [...tensors.keys()], n = Math.ceil(keys.length / layout.shardSize);
    const index = { metadata: {}, weight_map: {} as Record<string, unknown> };
    for (let s = 0; s < n; s++) {
      const name = `model-${String(s + 1).padStart(5, "0")}-of-${
        String(n).padStart(5, "0")
      }.safetensors`;
      const part = keys.slice(s * layout.shardSize, (s + 1) * layout.shardSize);
      for (const k of part) index.weight_map[k] = name;
      const shard = new Map(part.map((k) => [k, tensors.get(k)!]));
      await writeSafetensors(join(dir, name), { tensors: shard, metadata });
    }
    layout.editIndex?.(index);
    await Deno.writeTextFile(join(dir, "model.safetensors.index.json"), JSON.stringify(index));
  }
  await Deno.writeTextFile(join(dir, "config.json"), JSON.stringify(cfg));
  return dir;
}

async function inTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "denotron_hf_llama_" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

function ourLogits(model: GPT, tokens: number[]): Float32Array {
  return noGrad(() => {
    using t = Tensor.fromArray(Int32Array.from(tokens), [1, tokens.length]);
    using logits = model.forward(t);
    return logits.toArray() as Float32Array;
  });
}

/** The largest |a - b|, and the largest |b| it is measured against. */
function worstError(a: ArrayLike<number>, b: ArrayLike<number>): { worst: number; scale: number } {
  let worst = 0, scale = 0;
  for (let i = 0; i < b.length; i++) {
    worst = Math.max(worst, Math.abs(a[i] - b[i]));
    scale = Math.max(scale, Math.abs(b[i]));
  }
  return { worst, scale };
}

function assertMatchesReference(got: Float32Array, want: Float64Array, what: string): void {
  const { worst, scale } = worstError(got, want);
  assert.ok(scale > 1, `${what}: the reference logits should be of order 1, max ${scale}`);
  assert.ok(worst <= 1e-4 * scale, `${what}: max error ${worst} relative to ${scale}`);
}

const VARIANTS: [string, Raw][] = [
  ["grouped-query attention, untied lm_head", BASE],
  ["multi-query attention, tied embeddings", {
    ...BASE,
    num_key_value_heads: 1,
    tie_word_embeddings: true,
  }],
  ["multi-head attention with attention_bias and mlp_bias", {
    ...BASE,
    num_key_value_heads: 4,
    attention_bias: true,
    mlp_bias: true,
  }],
  ["Llama 3 rope scaling", LLAMA3],
];

for (const [what, cfg] of VARIANTS) {
  Deno.test(`loadHfLlama() matches a float64 Llama forward written from the HF layout (${what})`, async () => {
    await inTempDir(async (dir) => {
      const w = hfWeights(cfg);
      using model = await loadHfLlama(await writeHfDir(dir, cfg, w));
      assertMatchesReference(ourLogits(model, TOKENS), referenceLogits(w, cfg, TOKENS), what);
    });
  });
}

Deno.test("the reference tells rotate-half from interleaved RoPE and scaled from plain frequencies", () => {
  const w = hfWeights(LLAMA3);
  const want = referenceLogits(w, LLAMA3, TOKENS);
  const tol = 1e-3 * worstError(want, want).scale;
  const interleaved = referenceLogits(w, LLAMA3, TOKENS, { interleaved: true });
  assert.ok(worstError(interleaved, want).worst > tol, "interleaved pairs give other logits");
  const plain = referenceLogits(w, { ...LLAMA3, rope_scaling: null }, TOKENS);
  assert.ok(worstError(plain, want).worst > tol, "the scaling changes the logits");
  // the three bands of Llama 3's scaling each hold one of these frequencies
  const inv = hfInvFreq(LLAMA3, 8), plainInv = hfInvFreq({ ...LLAMA3, rope_scaling: null }, 8);
  const ratios = inv.map((f, j) => plainInv[j] / f);
  assert.equal(ratios[0], 1, "a short wavelength keeps its frequency");
  assert.ok(ratios[1] > 1 && ratios[1] < 8, `a middle wavelength is blended: ${ratios[1]}`);
  assert.ok(Math.abs(ratios[3] - 8) < 1e-12, "a long wavelength is slowed by the factor");
});

Deno.test("loadHfLlama() reads BF16 and F16 files as the F32 one, exactly", async () => {
  await inTempDir(async (dir) => {
    const w = hfWeights(BASE);
    using f32 = await loadHfLlama(await writeHfDir(join(dir, "F32"), BASE, w));
    const want = ourLogits(f32, TOKENS);
    assertMatchesReference(want, referenceLogits(w, BASE, TOKENS), "F32");
    for (const dtype of ["BF16", "F16"] as const) {
      using model = await loadHfLlama(await writeHfDir(join(dir, dtype), BASE, w, { dtype }));
      const stored = (await readSafetensors(join(dir, dtype, "model.safetensors"))).tensors;
      assert.equal(stored.get("model.norm.weight")!.dtype, dtype);
      assert.deepEqual(model.lnf.weight.toArray(), w.get("model.norm.weight")!.data, dtype);
      assert.deepEqual(ourLogits(model, TOKENS), want, dtype);
    }
  });
});

Deno.test("loadHfLlama() reads a sharded directory through its index", async () => {
  await inTempDir(async (dir) => {
    const w = hfWeights(LLAMA3);
    const src = await writeHfDir(dir, LLAMA3, w, { shardSize: 5 });
    using model = await loadHfLlama(src);
    assertMatchesReference(ourLogits(model, TOKENS), referenceLogits(w, LLAMA3, TOKENS), "shards");
  });
});

/** Asserts that two safetensors files hold the same tensors, byte for byte. */
async function assertSameTensors(pathA: string, pathB: string): Promise<void> {
  const a = (await readSafetensors(pathA)).tensors, b = (await readSafetensors(pathB)).tensors;
  assert.deepEqual([...b.keys()].sort(), [...a.keys()].sort());
  for (const [name, t] of a) {
    assert.equal(b.get(name)!.dtype, t.dtype, name);
    assert.deepEqual(b.get(name)!.shape, t.shape, name);
    assert.deepEqual(b.get(name)!.data, t.data, name);
  }
}

for (const [what, cfg] of [VARIANTS[1], VARIANTS[2], VARIANTS[3]]) {
  Deno.test(`saveHfLlama() writes the HF layout back bit for bit, and it loads again (${what})`, async () => {
    await inTempDir(async (dir) => {
      const src = await writeHfDir(join(dir, "in"), cfg, hfWeights(cfg));
      using model = await loadHfLlama(src);
      await saveHfLlama(model, join(dir, "out"));
      await assertSameTensors(
        join(src, "model.safetensors"),
        join(dir, "out", "model.safetensors"),
      );
      const written = JSON.parse(await Deno.readTextFile(join(dir, "out", "config.json")));
      for (const [k, v] of Object.entries(cfg)) assert.deepEqual(written[k], v, k);
      assert.equal(written.head_dim, 8);
      assert.equal(await hfModelType(join(dir, "out")), "llama");
      using again = await loadHf(join(dir, "out"));
      assert.deepEqual(again.config, model.config);
      assert.deepEqual(again.params.data.toArray(), model.params.data.toArray());
    });
  });
}

Deno.test("saveHfLlama() writes the tokenizer's bos/eos ids into config.json, null when unknown", async () => {
  await inTempDir(async (dir) => {
    using model = await loadHfLlama(await writeHfDir(join(dir, "in"), BASE, hfWeights(BASE)));
    await saveHfLlama(model, join(dir, "ids"), { bosTokenId: 7, eosTokenId: 9 });
    const ids = JSON.parse(await Deno.readTextFile(join(dir, "ids", "config.json")));
    assert.deepEqual([ids.bos_token_id, ids.eos_token_id], [7, 9]);
    await saveHfLlama(model, join(dir, "none"));
    const none = JSON.parse(await Deno.readTextFile(join(dir, "none", "config.json")));
    // not transformers' defaults (1 and 2), which would name two arbitrary tokens
    assert.deepEqual([none.bos_token_id, none.eos_token_id], [null, null]);
  });
});

Deno.test("saveHfLlama() shards above maxShardBytes, with an index that maps every tensor", async () => {
  await inTempDir(async (dir) => {
    const w = hfWeights(BASE);
    const src = await writeHfDir(join(dir, "in"), BASE, w);
    using model = await loadHfLlama(src);
    const out = join(dir, "out"), limit = 16000;
    await saveHfLlama(model, out, { maxShardBytes: limit });
    const index = JSON.parse(await Deno.readTextFile(join(out, "model.safetensors.index.json")));
    assert.deepEqual(Object.keys(index.weight_map).sort(), [...w.keys()].sort());
    const shards = [...new Set(Object.values(index.weight_map) as string[])].sort();
    assert.ok(shards.length > 2, `${shards.length} shards`);
    let total = 0;
    for (const [i, name] of shards.entries()) {
      const five = (k: number) => String(k).padStart(5, "0");
      assert.equal(name, `model-${five(i + 1)}-of-${five(shards.length)}.safetensors`);
      const shard = (await readSafetensors(join(out, name))).tensors;
      let bytes = 0;
      for (const [key, t] of shard) {
        assert.equal(index.weight_map[key], name, key);
        bytes += t.data.length;
      }
      assert.ok(bytes <= limit || shard.size === 1, `${name} holds ${bytes} bytes`);
      total += bytes;
    }
    assert.equal(index.metadata.total_size, total);
    await assert.rejects(() => Deno.stat(join(out, "model.safetensors")), Deno.errors.NotFound);
    using again = await loadHfLlama(out);
    assert.deepEqual(again.params.data.toArray(), model.params.data.toArray());
    assertMatchesReference(ourLogits(again, TOKENS), referenceLogits(w, BASE, TOKENS), "shards");
    // saving unsharded over it leaves no stale shard or index behind
    await saveHfLlama(model, out);
    const left = [...Deno.readDirSync(out)].map((e) => e.name).sort();
    assert.deepEqual(left, ["config.json", "model.safetensors"]);
  });
});

Deno.test("a padded vocabulary loads into the first rows and saves without the padding", async () => {
  await inTempDir(async (dir) => {
    const w = hfWeights(BASE);
    const src = await writeHfDir(join(dir, "in"), BASE, w);
    using model = await loadHfLlama(src, { vocabMultiple: 16 }); // 29 → 32 rows
    assert.deepEqual(model.head!.weight.shape, [32, 32]);
    const got = ourLogits(model, TOKENS), want = referenceLogits(w, BASE, TOKENS), V = 29;
    const { scale } = worstError(want, want);
    for (let t = 0; t < TOKENS.length; t++) {
      for (let v = 0; v < 32; v++) {
        const g = got[t * 32 + v];
        if (v >= V) assert.equal(g, 0, `padding logit ${v} at position ${t}`);
        else assert.ok(Math.abs(g - want[t * V + v]) <= 1e-4 * scale, `logit ${v} at ${t}`);
      }
    }
    await saveHfLlama(model, join(dir, "out"));
    await assertSameTensors(join(src, "model.safetensors"), join(dir, "out", "model.safetensors"));
  });
});

Deno.test("loadHfLlama() names the file and the key for each bad input", async () => {
  await inTempDir(async (dir) => {
    const w = hfWeights(BASE), tied = { ...BASE, tie_word_embeddings: true };
    const norm = "model.norm.weight", up = "model.layers.1.mlp.up_proj.weight";
    const v = "model.layers.0.self_attn.v_proj.weight";
    const cases: [string, Raw, Layout, RegExp][] = [
      [
        "arch",
        { ...BASE, model_type: "mistral", architectures: ["MistralForCausalLM"] },
        {},
        /arch\/config\.json: model_type is "mistral", not "llama"/,
      ],
      [
        "archs",
        { ...BASE, model_type: undefined, architectures: ["LlamaForSequenceClassification"] },
        {},
        /archs\/config\.json: architectures is \["LlamaForSequenceClassification"\], which does not include "LlamaForCausalLM"/,
      ],
      [
        "yarn",
        { ...BASE, rope_scaling: { rope_type: "yarn", factor: 4 } },
        {},
        /yarn\/config\.json: rope_scaling\.rope_type "yarn" is not supported \(only "llama3" and "default"\)/,
      ],
      [
        "legacy",
        { ...BASE, rope_scaling: { type: "linear", factor: 2 } },
        {},
        /legacy\/config\.json: rope_scaling\.type "linear" is not supported/,
      ],
      [
        "factor",
        { ...LLAMA3, rope_scaling: { ...(LLAMA3.rope_scaling as Raw), factor: "8" } },
        {},
        /factor\/config\.json: rope_scaling: field "factor" must be a number >= 1, got "8"/,
      ],
      [
        "heads",
        { ...BASE, num_key_value_heads: 3 },
        {},
        /heads\/config\.json: num_key_value_heads 3 does not divide num_attention_heads 4/,
      ],
      [
        "layers",
        { ...BASE, num_hidden_layers: 0 },
        {},
        /layers\/config\.json: field "num_hidden_layers" must be a positive integer, got 0/,
      ],
      [
        "missing",
        BASE,
        { edit: (ts) => ts.delete(up) },
        /missing\/model\.safetensors: missing tensor "model\.layers\.1\.mlp\.up_proj\.weight"/,
      ],
      [
        "shape",
        BASE,
        { edit: (ts) => ts.set(v, { ...ts.get(v)!, shape: [32, 16] }) },
        /shape\/model\.safetensors: tensor "model\.layers\.0\.self_attn\.v_proj\.weight" has shape \[32, 16\], expected \[16, 32\]/,
      ],
      [
        "sharded-missing",
        BASE,
        { shardSize: 4, edit: (ts) => ts.delete(up) },
        /sharded-missing\/model\.safetensors\.index\.json: missing tensor "model\.layers\.1\.mlp\.up_proj\.weight"/,
      ],
      [
        "sharded-shape",
        BASE,
        { shardSize: 4, edit: (ts) => ts.set(v, { ...ts.get(v)!, shape: [32, 16] }) },
        /sharded-shape\/model-00002-of-00006\.safetensors: tensor "model\.layers\.0\.self_attn\.v_proj\.weight" has shape \[32, 16\]/,
      ],
      [
        "weight-map",
        BASE,
        { shardSize: 4, editIndex: (ix) => (ix.weight_map[norm] = 7) },
        /weight-map\/model\.safetensors\.index\.json: weight_map\["model\.norm\.weight"\] must be the file name of a shard in the directory, got 7/,
      ],
      [
        "escape",
        BASE,
        { shardSize: 4, editIndex: (ix) => (ix.weight_map[norm] = "../model.safetensors") },
        /escape\/model\.safetensors\.index\.json: weight_map\["model\.norm\.weight"\] must be the file name/,
      ],
      [
        "untied",
        tied,
        {
          edit: (ts) => {
            const emb = w.get("model.embed_tokens.weight")!;
            const head = emb.data.slice();
            head[5] += 1 / 64;
            ts.set("lm_head.weight", tensorEntry("F32", emb.shape, head));
          },
        },
        /untied\/model\.safetensors: tensor "lm_head\.weight" is not tied to "model\.embed_tokens\.weight" \(they differ at element 5\)/,
      ],
      [
        "extra",
        BASE,
        {
          edit: (ts) =>
            ts.set(
              "model.layers.2.input_layernorm.weight",
              tensorEntry("F32", [32], new Float32Array(32)),
            ),
        },
        /extra\/model\.safetensors: unexpected tensor "model\.layers\.2\.input_layernorm\.weight" for a Llama of 2 layers/,
      ],
    ];
    for (const [name, cfg, layout, error] of cases) {
      const weights = cfg === tied ? hfWeights(tied) : w;
      const sub = await writeHfDir(join(dir, name), cfg, weights, layout);
      await assert.rejects(() => loadHfLlama(sub), error, name);
    }
    // a tied checkpoint that stores an identical lm_head, and an inv_freq buffer, load
    const ok = await writeHfDir(join(dir, "ok"), tied, hfWeights(tied), {
      edit: (ts) => {
        ts.set("lm_head.weight", ts.get("model.embed_tokens.weight")!);
        ts.set(
          "model.layers.0.self_attn.rotary_emb.inv_freq",
          tensorEntry("F32", [4], new Float32Array(4)),
        );
      },
    });
    (await loadHfLlama(ok)).dispose();
    await assert.rejects(() => loadHf(join(dir, "nowhere")), /nowhere\/config\.json: cannot read/);
    await Deno.writeTextFile(
      join(dir, "ok", "config.json"),
      JSON.stringify({ model_type: "t5" }),
    );
    await assert.rejects(
      () => loadHf(join(dir, "ok")),
      /ok\/config\.json: model_type "t5" is not one Denotron imports \("gpt2", "llama", "bert"\)/,
    );
  });
});

Deno.test("llamaConfigFromHf() maps Llama 3.2 1B's config.json onto the preset", () => {
  const hf = {
    architectures: ["LlamaForCausalLM"],
    attention_bias: false,
    attention_dropout: 0.0,
    bos_token_id: 128000,
    eos_token_id: 128001,
    head_dim: 64,
    hidden_act: "silu",
    hidden_size: 2048,
    initializer_range: 0.02,
    intermediate_size: 8192,
    max_position_embeddings: 131072,
    mlp_bias: false,
    model_type: "llama",
    num_attention_heads: 32,
    num_hidden_layers: 16,
    num_key_value_heads: 8,
    pretraining_tp: 1,
    rms_norm_eps: 1e-5,
    rope_scaling: {
      factor: 32.0,
      high_freq_factor: 4.0,
      low_freq_factor: 1.0,
      original_max_position_embeddings: 8192,
      rope_type: "llama3",
    },
    rope_theta: 500000.0,
    tie_word_embeddings: true,
    torch_dtype: "bfloat16",
    use_cache: true,
    vocab_size: 128256,
  };
  assert.deepEqual(llamaConfigFromHf(hf, "c.json"), { ...GPT_PRESETS["llama-3.2-1b"], dropout: 0 });
  // transformers' defaults for what a config leaves out
  const bare = llamaConfigFromHf({
    model_type: "llama",
    hidden_size: 16,
    intermediate_size: 8,
    num_hidden_layers: 1,
    num_attention_heads: 2,
    vocab_size: 10,
  }, "c.json");
  assert.equal(bare.nKvHead, 2);
  assert.equal(bare.layerNormEps, 1e-6);
  assert.equal(bare.ropeTheta, 10000);
  assert.equal(bare.blockSize, 2048);
  assert.equal(bare.tieEmbeddings, false);
  assert.equal(bare.ropeScaling, null);
  const refused: [Raw, RegExp][] = [
    [{ head_dim: 16 }, /c\.json: head_dim 16 is not hidden_size \/ num_attention_heads = 8/],
    [{ hidden_act: "gelu" }, /c\.json: hidden_act "gelu" is not supported/],
    [{ attention_bias: true }, /c\.json: attention_bias true with mlp_bias false is not supported/],
    [{ rope_theta: "big" }, /c\.json: field "rope_theta" must be in \(1, 1e12\), got "big"/],
    [{ rms_norm_eps: 0 }, /c\.json: field "rms_norm_eps" must be a number in \(0, 1\]/],
    [{ model_type: undefined, architectures: undefined }, /c\.json: neither "model_type" nor/],
  ];
  for (const [edit, error] of refused) {
    assert.throws(() => llamaConfigFromHf({ ...BASE, ...edit }, "c.json"), error);
  }
});

Deno.test("saveHfLlama() refuses a model the Llama layout cannot hold", async () => {
  using gpt2 = new GPT(GPT_PRESETS.tiny);
  await assert.rejects(
    () => saveHfLlama(gpt2, "/nonexistent/never-written"),
    /saveHfLlama: a Llama has normalization "rmsnorm", positionEmbedding "rope", activation "swiglu"; this model has normalization "layernorm", positionEmbedding "learned", activation "gelu"/,
  );
});

Deno.test("fromHf() opens a Llama directory with its tokenizer.json, and greedy decoding follows the reference", async () => {
  await inTempDir(async (dir) => {
    const w = hfWeights(LLAMA3);
    await writeHfDir(dir, LLAMA3, w);
    // a 4-token BPE vocabulary; the model's 29 rows hold it
    await Deno.writeTextFile(
      join(dir, "tokenizer.json"),
      JSON.stringify({
        added_tokens: [{ id: 3, content: "</s>", special: true }],
        normalizer: null,
        pre_tokenizer: null,
        decoder: { type: "Fuse" },
        model: { type: "BPE", vocab: { a: 0, b: 1, ab: 2, "</s>": 3 }, merges: ["a b"] },
      }),
    );
    const source = await fromHf(dir);
    using model = source.model;
    assert.equal(source.tokenizer.vocabSize, 4);
    const prompt = source.tokenizer.encode("abab");
    assert.deepEqual(prompt, [2, 2]);
    const got = generate(model, prompt, { maxNewTokens: 6, temperature: 0 });
    const want = [...prompt];
    for (let i = 0; i < 6; i++) {
      const logits = referenceLogits(w, LLAMA3, want), V = LLAMA3.vocab_size as number;
      const last = logits.subarray(logits.length - V);
      want.push(last.indexOf(Math.max(...last)));
    }
    assert.deepEqual(got, want.slice(prompt.length));
  });
});

/** The shape of trainCliArgs' runs (byte vocabulary, width 32, 2 heads) as a Llama. */
const TRAIN_LLAMA: GPTConfig = {
  ...LLAMA_ARCHITECTURE,
  vocabSize: 257,
  blockSize: 32,
  nLayer: 2,
  nHead: 2,
  nKvHead: 1,
  nEmbd: 32,
  ffnHidden: 40,
  layerNormEps: 1e-6,
  tieEmbeddings: false,
  dropout: 0,
};
/** The same Llama in training-config flags. */
const TRAIN_LLAMA_FLAGS = [
  "--normalization",
  "rmsnorm",
  "--position-embedding-type",
  "rope",
  "--swiglu",
  "--num-query-groups",
  "1",
  "--disable-bias-linear",
  "--untie-embeddings-and-output-weights",
  "--ffn-hidden-size",
  "40",
  "--norm-epsilon",
  "1e-6",
]; // deno-fmt-ignore

Deno.test("--init-from-hf fine-tunes a Llama: the losses of the same weights from scratch, and the same command resumes", async () => {
  await inTempDir(async (dir) => {
    const corpus = await tinyCorpus();
    corpus.data.close?.();
    const data = corpus.data.prefix;
    // the weights a fresh run of these flags starts from (same seed; rotary positions
    // have no table, so blockSize changes no parameter)
    {
      using model = new GPT(TRAIN_LLAMA, { seed: DEFAULT_CONFIG.training.seed });
      await saveHfLlama(model, join(dir, "hf"));
    }
    const scratch = await runScript(
      TRAIN_SCRIPT,
      trainCliArgs(data, join(dir, "scratch"), 2, TRAIN_LLAMA_FLAGS),
    );
    assert.equal(scratch.code, 0, scratch.out);
    const want = await readCliRun(join(dir, "scratch"), scratch.out);

    const save = join(dir, "init");
    const args = trainCliArgs(data, save, 1, ["--init-from-hf", join(dir, "hf"), "--load", save]);
    const first = await runScript(TRAIN_SCRIPT, args);
    assert.equal(first.code, 0, first.out);
    assert.match(first.out, /weights: .*\/hf \(Hugging Face Llama\)/);
    assertCloseSeq((await readCliRun(save, first.out)).losses, want.losses, "Llama fine-tuning loss");
    const state = JSON.parse(await Deno.readTextFile(join(save, "iter_0000004", "state.json")));
    const m = state.config.model;
    assert.deepEqual(
      [m.nLayer, m.numQueryGroups, m.ffnHiddenSize, m.normEpsilon, m.swiglu, m.normalization],
      [2, 1, 40, 1e-6, true, "rmsnorm"],
    );
    const again = await runScript(TRAIN_SCRIPT, args);
    assert.equal(again.code, 0, again.out);
    assert.match(again.out, /resumed from .* at iteration 4/);

    // Llama 3 scaling with other band edges than the config's --use-rope-scaling has
    {
      const ropeScaling = {
        ropeType: "llama3" as const,
        factor: 8,
        lowFreqFactor: 2,
        highFreqFactor: 4,
        originalMaxPositionEmbeddings: 64,
      };
      using model = new GPT({ ...TRAIN_LLAMA, ropeScaling });
      await saveHfLlama(model, join(dir, "hf-scaled"));
    }
    const scaled = await runScript(
      TRAIN_SCRIPT,
      trainCliArgs(data, join(dir, "bad"), 1, ["--init-from-hf", join(dir, "hf-scaled")]),
    );
    assert.notEqual(scaled.code, 0);
    assert.match(
      scaled.out,
      /initFromHf .*hf-scaled: the training config cannot describe its ropeScaling \{"ropeType":"llama3","factor":8,"lowFreqFactor":2/,
    );
  });
});
