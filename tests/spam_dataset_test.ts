import assert from "assert";
import { parseEmail } from "../lib/data/email_subjects.ts";
import {
  decodeEncodedWords,
  decodeTransfer,
  headerParam,
  htmlToText,
  mimeText,
} from "../lib/data/mime.ts";
import {
  loadSpamSplits,
  prepareSpamSplits,
  SPAM_FILES,
  spamExamples,
  spamText,
} from "../lib/data/spam_dataset.ts";

const mime = (raw: string) => {
  const { headers, body } = parseEmail(raw);
  return mimeText(headers, body);
};

Deno.test("mime: headers' parameters, transfer encodings and encoded words are decoded", () => {
  assert.equal(headerParam('multipart/mixed; boundary="--=_b 1"', "boundary"), "--=_b 1");
  assert.equal(headerParam("text/plain; CHARSET=utf-8; x=y", "charset"), "utf-8");
  assert.equal(headerParam("text/plain", "charset"), undefined);
  assert.equal(decodeTransfer(btoa("Buy now\n"), "BASE64"), "Buy now\n");
  assert.equal(decodeTransfer("Y2Fm6Q==", "base64", "iso-8859-1"), "café");
  assert.equal(decodeTransfer("caf=C3=A9 =\nnoir", "quoted-printable", "utf-8"), "café noir");
  assert.equal(decodeTransfer("kept =41 as is", "7bit"), "kept =41 as is");
  assert.equal(decodeTransfer("Y2Fm6Q==", "base64", "no-such-charset"), "caf\ufffd");
  assert.equal(
    decodeEncodedWords("=?utf-8?B?w6l0w6k=?= =?utf-8?Q?_=C3=A0_Paris?= !"),
    "été à Paris !",
  );
  assert.equal(decodeEncodedWords("plain subject"), "plain subject");
});

Deno.test("mime: HTML loses tags, scripts, styles and comments; references are decoded", () => {
  const html = "<html><head><title>t</title><style>p { color: red }</style></head><body>" +
    "<!-- hidden --><p>Save&nbsp;70%&#33;</p><script>x()</script>A&amp;B &#x263A; &bogus;" +
    "<br/>end</body></html>";
  assert.equal(htmlToText(html), "\nSave 70%!\nA&B ☺ &bogus;\nend");
});

Deno.test("mime: alternatives give their plain part, mixed parts join, attachments are skipped", () => {
  const alternative = 'Content-Type: multipart/alternative; boundary="alt"\n\npreamble\n' +
    "--alt\nContent-Type: text/html\n\n<b>rich</b>\n" +
    "--alt\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: quoted-printable\n\n" +
    "pl=C3=A4in\n--alt--\nepilogue\n";
  assert.equal(mime(alternative).trim(), "pläin");
  const htmlOnly = 'Content-Type: multipart/alternative; boundary="a"\n\n--a\n' +
    "Content-Type: text/html\nContent-Transfer-Encoding: base64\n\n" + btoa("<p>only html</p>") +
    "\n--a--\n";
  assert.equal(mime(htmlOnly).trim(), "only html");
  const mixed = "Content-Type: multipart/mixed;\n\tboundary=m\n\n--m\n\nfirst, headerless\n" +
    `--m\nContent-Type: multipart/alternative; boundary="n"\n\n--n\nContent-Type: text/plain\n\n` +
    "nested\n--n--\n--m\nContent-Type: image/gif\nContent-Transfer-Encoding: base64\n\nR0lGOD\n" +
    "--m--\n";
  assert.equal(mime(mixed), "first, headerless\n\nnested\n");
  assert.equal(mime("Content-Type: application/pdf\n\n%PDF"), "");
  assert.equal(mime("Content-Type: multipart/mixed\n\nno boundary"), "");
});

Deno.test("spamText: subject and the cleaned body a reader sees, no headers", () => {
  const raw =
    "From x@y  Thu Aug 22 2002\nReceived: from relay\nSubject: =?iso-8859-1?Q?Gr=FCn?=\n" +
    "  deals\nContent-Type: text/html\n\n<p>Cheap   <b>pills</b></p>\n> quoted\n-- \nsignature";
  assert.equal(spamText(raw), "Grün deals\nCheap pills");
  assert.equal(spamText("Subject: only\n\n"), "only");
  assert.equal(spamText("X: y\n\n"), "");
  const long = spamText(`Subject: s\n\n${"word ".repeat(2000)}`);
  assert.ok(long.length <= 2 + 4000 && long.endsWith("word"));
});

Deno.test("spamExamples: labels by group, one example per text, conflicting copies dropped", () => {
  const msg = (subject: string) => `Subject: ${subject}\n\nbody`;
  const examples = spamExamples([
    { group: "easy-ham-1", text: msg("a") },
    { group: "spam-2", text: msg("b") },
    { group: "spam-1", text: msg("b") },
    { group: "hard-ham-1", text: msg("c") },
    { group: "spam-1", text: msg("c") },
    { group: "easy-ham-2", text: "X: empty\n\n" },
  ]);
  assert.deepEqual(examples, [{ text: "a\nbody", label: 0 }, { text: "b\nbody", label: 1 }]);
});

Deno.test("prepareSpamSplits: a fixed 80/10/10 split, no text in two splits, both classes in each", async () => {
  const dir = await Deno.makeTempDir({ prefix: "denotron_spam_" });
  try {
    const { dir: out, counts } = await prepareSpamSplits(dir);
    assert.equal(out, `${dir}/spam-v1`);
    // [ham, spam] per split; a change here changes every number reported on the split
    assert.deepEqual(counts, { train: [3301, 1418], valid: [399, 191], test: [401, 189] });
    const splits = await loadSpamSplits(dir);
    const seen = new Map<string, string>();
    for (const name of ["train", "valid", "test"] as const) {
      const split = splits[name];
      const spam = split.filter((e) => e.label === 1).length;
      assert.deepEqual([split.length - spam, spam], counts[name]);
      for (const e of split) {
        assert.ok(e.text.length > 0);
        assert.equal(seen.get(e.text), undefined, `a ${name} text is also in ${seen.get(e.text)}`);
        seen.set(e.text, name);
      }
    }
    const total = Object.values(counts).flat().reduce((a, b) => a + b, 0);
    assert.ok(Math.abs(splits.train.length / total - 0.8) < 0.001);
    const mtime = (await Deno.stat(`${out}/${SPAM_FILES.test}`)).mtime;
    assert.deepEqual((await prepareSpamSplits(dir)).counts, counts);
    assert.deepEqual((await Deno.stat(`${out}/${SPAM_FILES.test}`)).mtime, mtime, "cache read");
    await Deno.writeTextFile(`${out}/${SPAM_FILES.valid}`, '{"text": "x", "label": 2}\n');
    await assert.rejects(
      loadSpamSplits(dir),
      /^DenotronError: .*spam-v1\/valid\.jsonl:1: expected \{"text": string, "label": 0 or 1\}$/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
