import assert from "assert";
import { lcsLength, porterStem, rouge, rougeL, rougeN, rougeTokens } from "../lib/eval/rouge.ts";

function close(actual: number, expected: number, what: string): void {
  assert.ok(Math.abs(actual - expected) < 1e-12, `${what}: ${actual} != ${expected}`);
}

Deno.test("porterStem() gives Porter's (1980) stems for the paper's examples", () => {
  const cases: [string, string][] = [
    ["caresses", "caress"],
    ["ponies", "poni"],
    ["ties", "ti"],
    ["caress", "caress"],
    ["cats", "cat"],
    ["feed", "feed"],
    ["plastered", "plaster"],
    ["bled", "bled"],
    ["motoring", "motor"],
    ["sing", "sing"],
    ["hopping", "hop"],
    ["tanned", "tan"],
    ["falling", "fall"],
    ["hissing", "hiss"],
    ["fizzed", "fizz"],
    ["failing", "fail"],
    ["filing", "file"],
    ["happy", "happi"],
    ["sky", "sky"],
    ["conditional", "condit"],
    ["relational", "relat"],
    ["generalization", "gener"],
    ["running", "run"],
    ["controll", "control"],
    ["probate", "probat"],
    ["rate", "rate"],
    ["adoption", "adopt"],
  ];
  for (const [word, stem] of cases) assert.equal(porterStem(word), stem, word);
});

Deno.test("rougeTokens() lower-cases, splits on non-alphanumerics, stems words over 3 letters", () => {
  assert.deepEqual(rougeTokens("The Cats, running!  dogs' 42x"), [
    "the",
    "cat",
    "run",
    "dog",
    "42x",
  ]);
  assert.deepEqual(rougeTokens("The Cats", false), ["the", "cats"]);
  assert.deepEqual(rougeTokens("  ...  "), []);
});

Deno.test("rougeN() and rougeL() match hand-computed counts", () => {
  const c = rougeTokens("the cat sat on the mat");
  const r = rougeTokens("the cat is on the mat");
  // unigrams: the×2, cat, on, mat shared = 5 of 6 each side
  const r1 = rougeN(c, r, 1);
  close(r1.precision, 5 / 6, "R1 P");
  close(r1.recall, 5 / 6, "R1 R");
  close(r1.f1, 5 / 6, "R1 F");
  // bigrams: "the cat", "on the", "the mat" shared = 3 of 5 each side
  close(rougeN(c, r, 2).f1, 3 / 5, "R2 F");
  // LCS "the cat on the mat" = 5
  close(rougeL(c, r).f1, 5 / 6, "RL F");
});

Deno.test("rougeN() clips repeated n-grams to the other side's count", () => {
  const s = rougeN(["the", "the", "the"], ["the", "cat"], 1);
  close(s.precision, 1 / 3, "P");
  close(s.recall, 1 / 2, "R");
  close(s.f1, (2 * (1 / 3) * (1 / 2)) / (1 / 3 + 1 / 2), "F");
});

Deno.test("lcsLength() counts a subsequence, not a substring", () => {
  assert.equal(lcsLength("a b c d e".split(" "), "a x c y e".split(" ")), 3);
  assert.equal(lcsLength(["b", "a"], ["a", "b"]), 1);
  assert.equal(lcsLength("a b c b d a b".split(" "), "b d c a b a".split(" ")), 4);
  assert.equal(lcsLength([], ["a"]), 0);
});

Deno.test("rouge() stems before matching and scores empty texts as zero", () => {
  const s = rouge("Running dogs", "the dog runs");
  // ["run","dog"] against ["the","dog","run"]
  close(s.rouge1.precision, 1, "R1 P");
  close(s.rouge1.recall, 2 / 3, "R1 R");
  close(s.rouge2.f1, 0, "R2 F");
  close(s.rougeL.precision, 1 / 2, "RL P");
  close(s.rougeL.recall, 1 / 3, "RL R");
  assert.deepEqual(rouge("", "a b").rougeL, { precision: 0, recall: 0, f1: 0 });
});
