/**
 * Every public op rejects wrong shapes, dtypes, devices and values with an error that
 * names the op and the shapes, before any native call; native range checks (token ids,
 * targets) become errors too. None of these may crash the process.
 */
import assert from "assert";
import { device } from "../lib/device.ts";
import { GPT } from "../lib/nn/gpt.ts";
import {
  add,
  attention,
  biasGelu,
  crossEntropy,
  dropout,
  embedding,
  layernorm,
  linear,
  linearGelu,
  matmul,
} from "../lib/ops/mod.ts";
import { AdamW } from "../lib/optim/adamw.ts";
import { clipGradNorm } from "../lib/optim/clip.ts";
import { Generator } from "../lib/random.ts";
import { Tensor, tidy } from "../lib/tensor.ts";

const f = (...shape: number[]) => Tensor.zeros(shape);
const i32 = (values: number[], shape = [values.length]) =>
  Tensor.fromArray(Int32Array.from(values), shape);

const cases: [string, () => unknown, RegExp][] = [
  [
    "linear: inner size",
    () => linear(f(2, 3), f(4, 5)),
    /linear: x \[2, 3\] has last dimension 3 but weight \[4, 5\] expects 5/,
  ],
  [
    "linear: bias size",
    () => linear(f(2, 3), f(4, 3), f(5)),
    /linear: bias has shape \[5\], expected \[4\]/,
  ],
  [
    "linear: int input",
    () => linear(i32([1, 2]), f(1, 2)),
    /linear: x has dtype i32, expected f32 or bf16 or f16/,
  ],
  [
    "linear: not a tensor",
    () => linear([1, 2] as unknown as Tensor, f(1, 2)),
    /linear: x must be a Tensor/,
  ],
  [
    "linear: devices",
    () => linear(f(2, 3), Tensor.zeros([4, 3], { device: device("cpu:builtin") })),
    /linear: weight is on cpu:builtin but x is on cpu/,
  ],
  ["matmul: inner", () => matmul(f(2, 3), f(4, 5)), /matmul: inner dimensions differ/],
  ["matmul: rank", () => matmul(f(2), f(2, 2)), /matmul: operands must be 2-D or 3-D/],
  ["matmul: batch", () => matmul(f(2, 2, 2), f(3, 2, 2)), /matmul: batch sizes/],
  [
    "embedding: token out of range",
    () => embedding(i32([0, 9], [1, 2]), f(5, 4), f(8, 4)),
    /token 9 at flat index 1 is outside the vocabulary \[0, 5\)/,
  ],
  [
    "embedding: negative token",
    () => embedding(i32([-1], [1, 1]), f(5, 4), f(8, 4)),
    /token -1 at flat index 0/,
  ],
  [
    "embedding: too long",
    () => embedding(i32([0, 0, 0], [1, 3]), f(5, 4), f(2, 4)),
    /sequence length 3 exceeds the 2 positions/,
  ],
  [
    "embedding: float tokens",
    () => embedding(f(1, 2), f(5, 4), f(8, 4)),
    /tokens has dtype f32, expected i32/,
  ],
  ["embedding: widths", () => embedding(i32([0], [1, 1]), f(5, 4), f(8, 3)), /differ in width/],
  [
    "layernorm: weight",
    () => layernorm(f(2, 4), f(3), f(4)),
    /layernorm: weight has shape \[3\], expected \[4\]/,
  ],
  ["layernorm: eps", () => layernorm(f(2, 4), f(4), f(4), -1), /layernorm: eps must be a number/],
  [
    "biasGelu: bias",
    () => biasGelu(f(2, 4), f(5)),
    /biasGelu: bias has shape \[5\], expected \[4\]/,
  ],
  [
    "attention: heads",
    () => attention(f(1, 2, 12), 3),
    /attention: qkv \[1, 2, 12\] must have a last dimension of \(nHead \+ 2·nKvHead\)·headSize = 9·headSize \(nHead 3, nKvHead 3\)/,
  ],
  ["attention: width", () => attention(f(1, 2, 10), 1), /last dimension .* = 3·headSize/],
  [
    "attention: groups",
    () => attention(f(1, 2, 16), 3, 2),
    /attention: nHead 3 is not a multiple of nKvHead 2/,
  ],
  ["attention: nKvHead", () => attention(f(1, 2, 12), 2, 0), /nKvHead must be a positive/],
  ["attention: rank", () => attention(f(2, 12), 1), /qkv must have 3 dimensions/],
  [
    "crossEntropy: target range",
    () => crossEntropy(f(2, 3), i32([0, 3])),
    /target 3 at row 1 is outside \[-1, 3\)/,
  ],
  [
    "crossEntropy: shapes",
    () => crossEntropy(f(2, 3), i32([0, 1, 2])),
    /targets \[3\] must match the leading dimensions of logits \[2, 3\]/,
  ],
  [
    "crossEntropy: float targets",
    () => crossEntropy(f(2, 3), f(2)),
    /targets has dtype f32, expected i32/,
  ],
  ["add: shapes", () => add(f(2, 3), f(3, 2)), /add: shapes \[2, 3\] and \[3, 2\] differ/],
  [
    "dropout: p",
    () => dropout(f(4), 1, new Generator(1)),
    /dropout: p must be a number in \[0, 1\)/,
  ],
  ["dropout: NaN p", () => dropout(f(4), NaN, new Generator(1)), /dropout: p must be a number/],
  ["clipGradNorm: maxNorm", () => clipGradNorm(f(3), 0), /maxNorm must be positive/],
  [
    "GPT: heads",
    () => new GPT({ vocabSize: 10, blockSize: 4, nLayer: 1, nHead: 3, nEmbd: 8 }),
    /nHead 3 does not divide nEmbd 8/,
  ],
  [
    "GPT: sizes",
    () => new GPT({ vocabSize: 0, blockSize: 4, nLayer: 1, nHead: 1, nEmbd: 8 }),
    /vocabSize must be a positive integer, got 0/,
  ],
  [
    "GPT: dropout",
    () => new GPT({ vocabSize: 5, blockSize: 4, nLayer: 1, nHead: 1, nEmbd: 8, dropout: 1 }),
    /dropout must be in \[0, 1\)/,
  ],
  [
    "linearGelu: inner size",
    () => linearGelu(f(2, 3), f(4, 5)),
    /linearGelu: x \[2, 3\] has last dimension 3 but weight \[4, 5\] expects 5/,
  ],
  [
    "embedding: vocabSize beyond the table",
    () => embedding(i32([0, 1], [1, 2]), f(5, 4), f(8, 4), 6),
    /embedding: vocabSize 6 must be an integer in \[1, 5\]/,
  ],
  [
    "embedding: token in the padding rows",
    () => embedding(i32([0, 4], [1, 2]), f(5, 4), f(8, 4), 4),
    /token 4 at flat index 1 is outside the vocabulary \[0, 4\)/,
  ],
  [
    "GPT: vocabMultiple",
    () => new GPT({ vocabSize: 5, blockSize: 4, nLayer: 1, nHead: 1, nEmbd: 8, vocabMultiple: 0 }),
    /GPT config: vocabMultiple must be a positive integer, got 0/,
  ],
];

for (const [name, fn, message] of cases) {
  Deno.test(`bad input is a clear error: ${name}`, () => {
    tidy(() => {
      assert.throws(fn, message);
    });
  });
}

Deno.test("AdamW rejects impossible hyper-parameters", () => {
  using model = new GPT({ vocabSize: 5, blockSize: 4, nLayer: 1, nHead: 1, nEmbd: 8 });
  assert.throws(() => new AdamW(model.params, { beta1: 1 }), /betas must be in \[0, 1\)/);
  assert.throws(() => new AdamW(model.params, { eps: 0 }), /need eps > 0/);
});

Deno.test("a model refuses a state dict with missing, extra or misshapen tensors", () => {
  using model = new GPT({ vocabSize: 5, blockSize: 4, nLayer: 1, nHead: 1, nEmbd: 8 });
  const good = Object.fromEntries(
    model.namedParameters().map((
      [n, t],
    ) => [n, { shape: t.shape, data: new Float32Array(t.numel) }]),
  );
  const { "lnf.bias": _dropped, ...missing } = good;
  assert.throws(
    () => model.loadStateDict(missing, "ckpt.safetensors"),
    /ckpt.safetensors does not fit this model: missing lnf.bias/,
  );
  assert.throws(
    () =>
      model.loadStateDict({ ...good, "extra.weight": { shape: [1], data: new Float32Array(1) } }),
    /unexpected extra.weight/,
  );
  assert.throws(
    () =>
      model.loadStateDict({ ...good, "emb.wte": { shape: [6, 8], data: new Float32Array(48) } }),
    /tensor 'emb.wte' has shape \[6, 8\], the model expects \[5, 8\]/,
  );
});
