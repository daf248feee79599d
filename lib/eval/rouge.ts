/**
 * defines: rougeTokens, porterStem, rougeN, rougeL, RougeScore — ROUGE-1/2/L between a
 * candidate and a reference text.
 *
 * Tokenisation (as Google's `rouge-score` package does): lower-case the text, replace
 * every character outside `[a-z0-9]` by a space, split on whitespace, and Porter-stem
 * each token longer than 3 characters. Stemming is Porter's 1980 algorithm (steps 1a to
 * 5b, the original rules: `abli -> able`, no `logi` rule).
 *
 * @module
 */

/** Precision, recall and F1 of one ROUGE variant, each in [0, 1]. */
export interface RougeScore {
  /** Matches over the candidate's units (0 for an empty candidate). */
  precision: number;
  /** Matches over the reference's units (0 for an empty reference). */
  recall: number;
  /** Harmonic mean of precision and recall (0 when both are 0). */
  f1: number;
}

function isCons(w: string, i: number): boolean {
  const c = w[i];
  if ("aeiou".includes(c)) return false;
  // y is a vowel after a consonant, a consonant at the start or after a vowel.
  if (c === "y") return i === 0 ? true : !isCons(w, i - 1);
  return true;
}

/** Porter's measure m of a stem: the number of vowel-consonant sequences. */
function measure(stem: string): number {
  let m = 0;
  let i = 0;
  const n = stem.length;
  while (i < n && isCons(stem, i)) i++;
  while (i < n) {
    while (i < n && !isCons(stem, i)) i++;
    if (i >= n) break;
    while (i < n && isCons(stem, i)) i++;
    m++;
  }
  return m;
}

function hasVowel(stem: string): boolean {
  for (let i = 0; i < stem.length; i++) if (!isCons(stem, i)) return true;
  return false;
}

function endsDoubleCons(w: string): boolean {
  const n = w.length;
  return n >= 2 && w[n - 1] === w[n - 2] && isCons(w, n - 1);
}

/** *o: the stem ends consonant-vowel-consonant, the last not w, x or y. */
function endsCvc(w: string): boolean {
  const n = w.length;
  return n >= 3 && isCons(w, n - 3) && !isCons(w, n - 2) && isCons(w, n - 1) &&
    !"wxy".includes(w[n - 1]);
}

/** Replaces the longest matching suffix when its stem's measure passes `cond`. */
function replaceSuffix(
  w: string,
  rules: readonly (readonly [string, string])[],
  cond: (stem: string) => boolean,
): string {
  for (const [suffix, repl] of rules) {
    if (w.endsWith(suffix)) {
      const stem = w.slice(0, w.length - suffix.length);
      return cond(stem) ? stem + repl : w;
    }
  }
  return w;
}

// Each list is ordered longest suffix first where suffixes overlap.
const STEP2: readonly (readonly [string, string])[] = [
  ["ational", "ate"],
  ["tional", "tion"],
  ["enci", "ence"],
  ["anci", "ance"],
  ["izer", "ize"],
  ["abli", "able"],
  ["alli", "al"],
  ["entli", "ent"],
  ["eli", "e"],
  ["ousli", "ous"],
  ["ization", "ize"],
  ["ation", "ate"],
  ["ator", "ate"],
  ["alism", "al"],
  ["iveness", "ive"],
  ["fulness", "ful"],
  ["ousness", "ous"],
  ["aliti", "al"],
  ["iviti", "ive"],
  ["biliti", "ble"],
];
const STEP3: readonly (readonly [string, string])[] = [
  ["icate", "ic"],
  ["ative", ""],
  ["alize", "al"],
  ["iciti", "ic"],
  ["ical", "ic"],
  ["ful", ""],
  ["ness", ""],
];
const STEP4 = [
  "al",
  "ance",
  "ence",
  "er",
  "ic",
  "able",
  "ible",
  "ant",
  "ement",
  "ment",
  "ent",
  "ion",
  "ou",
  "ism",
  "ate",
  "iti",
  "ous",
  "ive",
  "ize",
].sort((a, b) => b.length - a.length);

/**
 * Porter's (1980) stem of a lower-case word.
 *
 * @param word lower-case letters and digits
 * @returns the stem
 * @example
 * ```ts
 * import { porterStem } from "./rouge.ts";
 * console.log(porterStem("hopping")); // "hop"
 * ```
 */
export function porterStem(word: string): string {
  let w = word;
  if (w.length <= 2) return w;
  // Step 1a: plurals.
  if (w.endsWith("sses")) w = w.slice(0, -2);
  else if (w.endsWith("ies")) w = w.slice(0, -2);
  else if (!w.endsWith("ss") && w.endsWith("s")) w = w.slice(0, -1);
  // Step 1b: -eed, -ed, -ing.
  if (w.endsWith("eed")) {
    if (measure(w.slice(0, -3)) > 0) w = w.slice(0, -1);
  } else {
    const suffix = w.endsWith("ed") ? "ed" : w.endsWith("ing") ? "ing" : "";
    if (suffix && hasVowel(w.slice(0, -suffix.length))) {
      w = w.slice(0, -suffix.length);
      if (w.endsWith("at") || w.endsWith("bl") || w.endsWith("iz")) w += "e";
      else if (endsDoubleCons(w) && !"lsz".includes(w[w.length - 1])) w = w.slice(0, -1);
      else if (measure(w) === 1 && endsCvc(w)) w += "e";
    }
  }
  // Step 1c: y -> i after a vowel in the stem.
  if (w.endsWith("y") && hasVowel(w.slice(0, -1))) w = w.slice(0, -1) + "i";
  w = replaceSuffix(w, STEP2, (s) => measure(s) > 0);
  w = replaceSuffix(w, STEP3, (s) => measure(s) > 0);
  // Step 4: drop a suffix when m > 1 (-ion only after s or t).
  for (const suffix of STEP4) {
    if (w.endsWith(suffix)) {
      const stem = w.slice(0, w.length - suffix.length);
      const ok = measure(stem) > 1 && (suffix !== "ion" || /[st]$/.test(stem));
      if (ok) w = stem;
      break;
    }
  }
  // Step 5a: a final e.
  if (w.endsWith("e")) {
    const stem = w.slice(0, -1);
    const m = measure(stem);
    if (m > 1 || (m === 1 && !endsCvc(stem))) w = stem;
  }
  // Step 5b: -ll -> -l when m > 1.
  if (measure(w) > 1 && endsDoubleCons(w) && w.endsWith("l")) w = w.slice(0, -1);
  return w;
}

/**
 * ROUGE's tokens of a text (see the module doc).
 *
 * @param text any text
 * @param stem Porter-stem tokens longer than 3 characters @default true
 * @returns the tokens
 */
export function rougeTokens(text: string, stem = true): string[] {
  const words = text.toLowerCase().replace(/[^a-z0-9]+/g, " ").trim().split(/\s+/).filter((
    t,
  ) => t.length > 0);
  return stem ? words.map((t) => (t.length > 3 ? porterStem(t) : t)) : words;
}

function score(overlap: number, candidateCount: number, referenceCount: number): RougeScore {
  const precision = candidateCount > 0 ? overlap / candidateCount : 0;
  const recall = referenceCount > 0 ? overlap / referenceCount : 0;
  const f1 = precision + recall > 0 ? (2 * precision * recall) / (precision + recall) : 0;
  return { precision, recall, f1 };
}

function ngramCounts(tokens: readonly string[], n: number): Map<string, number> {
  const counts = new Map<string, number>();
  for (let i = 0; i + n <= tokens.length; i++) {
    const key = tokens.slice(i, i + n).join(" ");
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  return counts;
}

/**
 * ROUGE-N: clipped n-gram overlap (each n-gram counts at most as often as in the other
 * text) over the candidate's n-grams (precision) and the reference's (recall).
 *
 * @param candidate tokens from {@linkcode rougeTokens}
 * @param reference tokens from {@linkcode rougeTokens}
 * @param n n-gram length (1 or 2 for ROUGE-1/2)
 * @returns precision, recall, F1
 */
export function rougeN(
  candidate: readonly string[],
  reference: readonly string[],
  n: number,
): RougeScore {
  const c = ngramCounts(candidate, n);
  const r = ngramCounts(reference, n);
  let overlap = 0;
  for (const [g, k] of c) overlap += Math.min(k, r.get(g) ?? 0);
  return score(
    overlap,
    Math.max(0, candidate.length - n + 1),
    Math.max(0, reference.length - n + 1),
  );
}

/**
 * Length of the longest common subsequence of two token lists (dynamic programming,
 * O(|a|·|b|) time, O(|b|) memory).
 */
export function lcsLength(a: readonly string[], b: readonly string[]): number {
  let prev = new Array<number>(b.length + 1).fill(0);
  for (let i = 1; i <= a.length; i++) {
    const cur = new Array<number>(b.length + 1).fill(0);
    for (let j = 1; j <= b.length; j++) {
      cur[j] = a[i - 1] === b[j - 1] ? prev[j - 1] + 1 : Math.max(prev[j], cur[j - 1]);
    }
    prev = cur;
  }
  return prev[b.length];
}

/**
 * ROUGE-L (sentence level): LCS length over the candidate's length (precision) and
 * the reference's (recall).
 *
 * @param candidate tokens from {@linkcode rougeTokens}
 * @param reference tokens from {@linkcode rougeTokens}
 * @returns precision, recall, F1
 */
export function rougeL(candidate: readonly string[], reference: readonly string[]): RougeScore {
  return score(lcsLength(candidate, reference), candidate.length, reference.length);
}

/**
 * ROUGE-1, ROUGE-2 and ROUGE-L of one candidate against one reference.
 *
 * @example
 * ```ts
 * import { rouge } from "./rouge.ts";
 * console.log(rouge("the cat sat", "the cat sat down").rouge1.recall); // 0.75
 * ```
 */
export function rouge(
  candidate: string,
  reference: string,
): { rouge1: RougeScore; rouge2: RougeScore; rougeL: RougeScore } {
  const c = rougeTokens(candidate);
  const r = rougeTokens(reference);
  return { rouge1: rougeN(c, r, 1), rouge2: rougeN(c, r, 2), rougeL: rougeL(c, r) };
}
