/**
 * Documents packed into one row (GPT.forward with a sequenceLayout) give the logits of
 * each document run alone, and the loss gradient of the token-weighted mean of their
 * losses, for GPT-2 (learned positions) and Llama-style (rotary) models; without the
 * layout the second document's logits differ, so the check can fail.
 */
import assert from "assert";
import { GPT, GPT_PRESETS } from "../lib/nn/gpt.ts";
import { sequenceLayout } from "../lib/nn/attention.ts";
import { Tensor, tidy } from "../lib/tensor.ts";
import { assertClose } from "./helpers.ts";

const DOCS = [
  [5, 9, 14, 2, 7],
  [3, 3, 8, 20, 11, 6, 1],
];
const packed = DOCS.flat();
const next = (doc: number[]) => [...doc.slice(1), -1]; // the last token predicts nothing

for (const preset of ["tiny", "llama-tiny"]) {
  Deno.test(`${preset}: a packed row gives each document's own logits and the weighted loss gradient`, () => {
    using model = new GPT(GPT_PRESETS[preset], { seed: 5 });
    model.eval();
    const logitsOf = (ids: number[], starts?: number[]) =>
      tidy(() => {
        const x = Tensor.fromArray(new Int32Array(ids), [1, ids.length]);
        const layout = starts ? sequenceLayout([starts], ids.length) : undefined;
        const y = model.forward(x, undefined, layout).toArray();
        layout?.positions.dispose();
        layout?.spans.dispose();
        return Array.from(y);
      });
    const V = logitsOf([1]).length;
    const together = logitsOf(packed, [0, DOCS[0].length]);
    const alone = DOCS.map((d) => logitsOf(d));
    assertClose(together.slice(0, DOCS[0].length * V), alone[0], "document 0", {
      rtol: 1e-5,
      atol: 1e-5,
    });
    assertClose(together.slice(DOCS[0].length * V), alone[1], "document 1", {
      rtol: 1e-5,
      atol: 1e-5,
    });
    const unpacked = logitsOf(packed);
    const diff = unpacked.slice(DOCS[0].length * V).reduce(
      (m, v, i) => Math.max(m, Math.abs(v - alone[1][i])),
      0,
    );
    assert.ok(diff > 1e-3, `without the layout document 1 should see document 0 (diff ${diff})`);

    // gradients: the packed mean loss is (5·L0 + 6·L1) / 11 over the counted targets
    const gradOf = (ids: number[], targets: number[], starts?: number[]) =>
      tidy(() => {
        model.params.zeroGrad();
        const x = Tensor.fromArray(new Int32Array(ids), [1, ids.length]);
        const y = Tensor.fromArray(new Int32Array(targets), [1, ids.length]);
        const layout = starts ? sequenceLayout([starts], ids.length) : undefined;
        model.loss(x, y, undefined, layout).backward();
        layout?.positions.dispose();
        layout?.spans.dispose();
        return Float64Array.from(model.params.grad.toArray());
      });
    const g = gradOf(packed, DOCS.flatMap(next), [0, DOCS[0].length]);
    const counts = DOCS.map((d) => d.length - 1);
    const total = counts[0] + counts[1];
    const parts = DOCS.map((d) => gradOf(d, next(d)));
    const want = parts[0].map((v, i) => (counts[0] * v + counts[1] * parts[1][i]) / total);
    assertClose(g, want, "gradient", { rtol: 1e-4, atol: 1e-6 });
  });
}

Deno.test("sequenceLayout: positions restart at each document; starts outside the row are refused", () => {
  const layout = sequenceLayout([[0, 2], [0]], 4);
  assert.deepEqual(Array.from(layout.positions.toArray()), [0, 1, 0, 1, 0, 1, 2, 3]);
  assert.deepEqual(
    Array.from(layout.spans.toArray()),
    [0, 1, 0, 2, 2, 3, 2, 4, 0, 1, 0, 2, 0, 3, 0, 4],
  );
  layout.positions.dispose();
  layout.spans.dispose();
  assert.throws(
    () => sequenceLayout([[0, 4]], 4),
    /row 0 has document starts \[0, 4\] outside \[0, 4\)/,
  );
});
