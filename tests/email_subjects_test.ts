/**
 * The built-in summarisation task's data (lib/data/email_subjects.ts): header parsing,
 * the subject and body cleaning rules on hand-written messages, which messages are kept,
 * and the prepared files from the real corpus (sizes, fields, no subject in two splits,
 * prompts that fit the rows).
 */
import assert from "assert";
import {
  cleanBody,
  cleanSubject,
  EMAIL_SUBJECT_FILES,
  emailSubjectExamples,
  emailSubjectPrompt,
  parseEmail,
  prepareEmailSubjects,
} from "../lib/data/email_subjects.ts";

Deno.test("parseEmail unfolds headers, lower-cases names and keeps the first of each", () => {
  const { headers, body } = parseEmail(
    "From: a@b\r\nSubject: Hello\r\n  world\r\nSubject: second\r\nX-Odd\r\n\r\nBody\r\nline 2",
  );
  assert.equal(headers.get("subject"), "Hello world");
  assert.equal(headers.get("from"), "a@b");
  assert.equal(body, "Body\nline 2");
});

Deno.test("cleanSubject drops reply and forward prefixes and list tags, and refuses encoded or empty subjects", () => {
  const cases: [string, string | null][] = [
    ["Re: [zzzzteana] Nothing like mama", "Nothing like mama"],
    ["RE: Fwd: FW: [SAtalk] [ILUG] Re[2]: spam  rules", "spam rules"],
    ["[list] AW: Termin", "Termin"],
    ["Re:", null],
    ["ok", null],
    ["=?iso-8859-1?Q?caf=E9?=", null],
    ["Rebuilding the kernel", "Rebuilding the kernel"],
  ];
  for (const [raw, want] of cases) assert.equal(cleanSubject(raw), want, raw);
});

Deno.test("cleanBody keeps what a reader sees first, cut at a word", () => {
  const body = [
    "URL: http://example.org/item",
    "Date: 2002-10-04",
    "On Monday, Bob wrote:",
    "> quoted text",
    "First   line\there.",
    "",
    "",
    "Second line.",
    "-- ",
    "signature",
  ].join("\n");
  assert.equal(cleanBody(body, 100), "First line here.\nSecond line.");
  assert.equal(cleanBody("one two three four five six", 14), "one two three");
  assert.equal(cleanBody("text\n____________________\nlist footer", 100), "text");
  // a URL line after the text has started is text
  assert.equal(cleanBody("See\nURL: x", 100), "See\nURL: x");
});

Deno.test("emailSubjectExamples keeps plain-text messages with a usable subject, one per subject", () => {
  const msg = (subject: string, body: string, extra = "") =>
    `Subject: ${subject}\n${extra}\n${body}`;
  const long = "This body is long enough to be kept by the example filter.";
  const kept = emailSubjectExamples([
    msg("Re: Kernel panic", long),
    msg("Kernel panic", long + " again"), // the same subject: a reply in the thread
    msg("HTML only", long, "Content-Type: text/html\n"),
    msg("Multipart", long, "Content-Type: multipart/alternative; boundary=x\n"),
    msg("Encoded", long, "Content-Transfer-Encoding: base64\n"),
    msg("Short body", "too short"),
    msg("Plain declared", long, "Content-Type: text/plain; charset=us-ascii\n"),
  ], 200);
  assert.deepEqual(kept.map((e) => e.subject), ["Kernel panic", "Plain declared"]);
  assert.equal(kept[0].body, long);
  assert.equal(emailSubjectPrompt("b"), "Email: b\nSubject:");
});

Deno.test("prepareEmailSubjects writes train, valid and test from the corpus, no subject in two splits", async () => {
  const dir = await Deno.makeTempDir();
  const { dir: out, counts } = await prepareEmailSubjects(dir, 192);
  const read = async (f: string) =>
    (await Deno.readTextFile(`${out}/${f}`)).trim().split("\n").map((l) => JSON.parse(l));
  const train = await read(EMAIL_SUBJECT_FILES.train);
  const valid = await read(EMAIL_SUBJECT_FILES.valid);
  const test = await read(EMAIL_SUBJECT_FILES.test);
  assert.deepEqual(counts, [train.length, valid.length, test.length]);
  assert.ok(train.length > 1000, `${train.length} training examples`);
  assert.ok(Math.abs(test.length - valid.length) <= 1 && test.length > 100);
  for (const e of [...train, ...valid]) {
    assert.deepEqual(Object.keys(e), ["prompt", "response"]);
    assert.ok(e.prompt.startsWith("Email: ") && e.prompt.endsWith("\nSubject:"));
    assert.ok(e.prompt.length <= 192 + "Email: \nSubject:".length);
    assert.ok(e.response.startsWith(" "));
  }
  for (const e of test) {
    assert.deepEqual(Object.keys(e), ["prompt", "reference", "lead"]);
    assert.ok(e.prompt.slice("Email: ".length).startsWith(e.lead), "the lead is the first line");
  }
  const subjects = (xs: { response?: string; reference?: string }[]) =>
    new Set(xs.map((x) => (x.response ?? x.reference)!.trim().toLowerCase()));
  const inTrain = subjects(train);
  for (const s of subjects(test)) assert.ok(!inTrain.has(s), `"${s}" is in train and test`);
  // prepared once: the second call reads the counts back
  assert.deepEqual((await prepareEmailSubjects(dir, 192)).counts, counts);
  await Deno.remove(dir, { recursive: true });
});
