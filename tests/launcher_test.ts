/**
 * The launcher `./denotron` against a PATH of shell stubs: each missing or wrong dependency is
 * named in its one line, the commands pass their arguments through, and a repository path with a
 * space works. Every case runs a copy of the launcher in a fresh folder; nothing is downloaded,
 * installed or built (`doctor` only checks, and the other commands meet stubs).
 */
import assert from "assert";

const ROOT = new URL("..", import.meta.url);
const LAUNCHER = new URL("denotron", ROOT);
const SUDO = Deno.uid() === 0 ? "" : "sudo ";
/** The real tools the launcher's checks use besides the ones a case stubs. */
const TOOLS = ["bash", "mktemp", "rm", "mkdir", "grep", "tail", "cat"];

function onPath(name: string): string {
  for (const dir of (Deno.env.get("PATH") ?? "").split(":")) {
    try {
      if (Deno.statSync(`${dir}/${name}`).isFile) return `${dir}/${name}`;
    } catch { /* not here */ }
  }
  throw new Error(`${name} is not on PATH; the launcher tests need it`);
}

/**
 * A deno that answers `--version` and logs its other calls, one line each: `PATH's first
 * folder|[arg][arg]…`; with `uncached`, `deno install --cached-only` fails as with a cold cache.
 */
const denoStub = (version: string, uncached = false) =>
  `if [ "$1" = --version ]; then echo "deno ${version} (stub)"; exit 0; fi
printf '%s|' "\${PATH%%:*}" >>"$STUB_LOG"; printf '[%s]' "$@" >>"$STUB_LOG"; echo >>"$STUB_LOG"
${uncached ? `[ "$*" = "install --cached-only --quiet" ] && exit 1` : ""}
exit 0`;
/** A C compiler that builds anything except what links OpenBLAS. */
const CC_WITHOUT_OPENBLAS = `case "$*" in *openblas*) exit 1 ;; esac`;
const CC_OK = "exit 0";

/** Removes its folder when disposed (`await using`). */
interface Sandbox extends AsyncDisposable {
  /** The repository copy: a folder whose path has a space, holding only the launcher. */
  repo: string;
  /** The folder of stubs and tools that is the whole PATH. */
  bin: string;
  /** Runs `./denotron ARGS` there with PATH = the stubs and the real TOOLS only. */
  run(args: string[], env?: Record<string, string>): Promise<Result>;
  /** The stub deno's calls, one per line. */
  calls(): string[];
}

interface Result {
  code: number;
  /** stdout and stderr, in that order. */
  out: string;
}

/** A sandbox whose PATH holds `stubs` (name: shell body) besides the real TOOLS. */
async function sandbox(stubs: Record<string, string>, localDeno?: string): Promise<Sandbox> {
  const dir = await Deno.makeTempDir({ prefix: "denotron-launcher-" });
  const repo = `${dir}/repo with space`;
  const bin = `${dir}/fake bin`;
  await Deno.mkdir(repo);
  await Deno.mkdir(bin);
  await Deno.copyFile(LAUNCHER, `${repo}/denotron`);
  await Deno.chmod(`${repo}/denotron`, 0o755);
  for (const tool of TOOLS) await Deno.symlink(onPath(tool), `${bin}/${tool}`);
  const writeStub = async (path: string, body: string) => {
    await Deno.writeTextFile(path, `#!/bin/sh\n${body}\n`);
    await Deno.chmod(path, 0o755);
  };
  for (const [name, body] of Object.entries(stubs)) await writeStub(`${bin}/${name}`, body);
  if (localDeno) {
    await Deno.mkdir(`${repo}/.deno/bin`, { recursive: true });
    await writeStub(`${repo}/.deno/bin/deno`, denoStub(localDeno));
  }
  const log = `${dir}/calls.log`;
  return {
    repo,
    bin,
    [Symbol.asyncDispose]: () => Deno.remove(dir, { recursive: true }),
    async run(args, env = {}) {
      const r = await new Deno.Command(`${repo}/denotron`, {
        args,
        clearEnv: true,
        env: { PATH: bin, STUB_LOG: log, JUPYTER: `${dir}/no-jupyter`, TMPDIR: dir, ...env },
        stdout: "piped",
        stderr: "piped",
      }).output();
      const dec = new TextDecoder();
      return { code: r.code, out: dec.decode(r.stdout) + dec.decode(r.stderr) };
    },
    calls() {
      try {
        return Deno.readTextFileSync(log).trimEnd().split("\n");
      } catch {
        return [];
      }
    },
  };
}

const lines = (r: Result) => r.out.trimEnd().split("\n");
const NO_JUPYTER =
  `denotron: Jupyter not found: notebooks skipped; to run them: ${SUDO}apt-get install ` +
  "jupyter-nbconvert jupyter-client python3-nbclient";
const WILL_FETCH = "will fetch deno 2.9.6 from npm into .deno/ (first run only)";

Deno.test("doctor names each need as found when PATH has deno 2.9.6, a compiler and OpenBLAS", async () => {
  await using box = await sandbox({ deno: denoStub("2.9.6"), cc: CC_OK });
  const r = await box.run(["doctor"]);
  assert.equal(r.code, 0, r.out);
  assert.deepEqual(lines(r), [
    `denotron: deno 2.9.6: ${box.bin}/deno`,
    "denotron: npm packages of deno.lock: cached",
    `denotron: C compiler: ${box.bin}/cc`,
    "denotron: OpenBLAS: found",
    NO_JUPYTER,
  ]);
});

Deno.test("a missing deno is fetched, or with DENOTRON_OFFLINE=1 named with its install command", async () => {
  await using box = await sandbox({ npm: "exit 1", cc: CC_OK });
  const doctor = await box.run(["doctor"]);
  assert.equal(doctor.code, 0, doctor.out);
  assert.equal(lines(doctor)[0], `denotron: deno 2.9.6 is not on PATH: ${WILL_FETCH}`);

  const offline = await box.run(["train"], { DENOTRON_OFFLINE: "1" });
  assert.equal(offline.code, 1, offline.out);
  assert.deepEqual(lines(offline), [
    "denotron: deno 2.9.6 is not on PATH, and DENOTRON_OFFLINE=1 forbids fetching it: " +
    "install deno 2.9.6 (npm install -g deno@2.9.6) or unset DENOTRON_OFFLINE",
  ]);
  assert.throws(() => Deno.statSync(`${box.repo}/.deno`), Deno.errors.NotFound);
});

Deno.test("a missing deno with neither npm nor curl to fetch it stops the launcher", async () => {
  await using box = await sandbox({ cc: CC_OK });
  const r = await box.run(["test"]);
  assert.equal(r.code, 1, r.out);
  assert.ok(
    lines(r).includes(
      "denotron: deno 2.9.6 is not on PATH, and neither npm nor curl is on PATH to fetch it: " +
        `install deno 2.9.6 (npm install -g deno@2.9.6), or install curl (${SUDO}apt-get install curl)`,
    ),
    r.out,
  );
});

Deno.test("a deno of another version on PATH is replaced by 2.9.6 in .deno/", async () => {
  await using box = await sandbox({ deno: denoStub("1.0.0"), curl: "exit 1", cc: CC_OK });
  const r = await box.run(["doctor"]);
  assert.equal(r.code, 0, r.out);
  assert.equal(lines(r)[0], `denotron: deno on PATH is 1.0.0, not 2.9.6: ${WILL_FETCH}`);
});

Deno.test("a deno fetched by an earlier run is used offline, not fetched again", async () => {
  await using box = await sandbox({ deno: denoStub("1.0.0"), cc: CC_OK }, "2.9.6");
  const r = await box.run(["doctor"], { DENOTRON_OFFLINE: "1" });
  assert.equal(r.code, 0, r.out);
  assert.equal(lines(r)[0], "denotron: deno 2.9.6: .deno/bin/deno (fetched by an earlier run)");
});

Deno.test("npm packages not in Deno's cache are fetched in one step, or offline named", async () => {
  await using box = await sandbox({ deno: denoStub("2.9.6", true), cc: CC_OK });
  const doctor = await box.run(["doctor"]);
  assert.equal(
    lines(doctor)[1],
    "denotron: npm packages of deno.lock are not all cached: will fetch them (first run only)",
  );
  const offline = await box.run(["doctor"], { DENOTRON_OFFLINE: "1" });
  assert.equal(
    lines(offline)[1],
    "denotron: npm packages of deno.lock are not all cached, and DENOTRON_OFFLINE=1 forbids " +
      "fetching them",
  );
  assert.deepEqual(box.calls().map((c) => c.replace(/^[^|]*\|/, "")), [
    "[install][--cached-only][--quiet]",
    "[install][--cached-only][--quiet]",
  ]);
});

Deno.test("without OpenBLAS the built-in GEMM is used, and one line gives the install command", async () => {
  await using box = await sandbox({ deno: denoStub("2.9.6"), cc: CC_WITHOUT_OPENBLAS });
  const r = await box.run(["doctor"]);
  assert.equal(r.code, 0, r.out);
  assert.equal(
    lines(r)[3],
    "denotron: OpenBLAS not found: using the built-in GEMM (slower); for fast GEMM: " +
      `${SUDO}apt-get install libopenblas-dev libopenblas0-openmp`,
  );
  const none = await box.run(["doctor"], { DENOTRON_BLAS: "none" });
  assert.equal(
    lines(none)[3],
    "denotron: OpenBLAS: not used (DENOTRON_BLAS=none): the built-in GEMM",
  );
});

Deno.test("without a C compiler the launcher names the package and stops before any work", async () => {
  await using box = await sandbox({ deno: denoStub("2.9.6") });
  const missing =
    `denotron: no C compiler on PATH (cc, gcc or clang): install one (${SUDO}apt-get install ` +
    "gcc libc6-dev) or set CC";
  const train = await box.run(["train"]);
  assert.equal(train.code, 1, train.out);
  assert.deepEqual(lines(train), [missing]);
  assert.deepEqual(box.calls(), [], "nothing but deno --version ran");
  const doctor = await box.run(["doctor"]);
  assert.equal(doctor.code, 1, doctor.out);
  assert.equal(lines(doctor)[2], missing);
});

Deno.test("as root with apt-get a missing compiler is to be installed, else named", async () => {
  await using box = await sandbox({ deno: denoStub("2.9.6"), "apt-get": "exit 1" });
  const r = await box.run(["doctor"]);
  assert.equal(
    lines(r)[2],
    Deno.uid() === 0
      ? "denotron: no C compiler on PATH (cc, gcc or clang): will install gcc libc6-dev with apt-get"
      : "denotron: no C compiler on PATH (cc, gcc or clang): install one (sudo apt-get install " +
        "gcc libc6-dev) or set CC",
  );
  assert.equal(r.code, Deno.uid() === 0 ? 0 : 1, r.out);
});

Deno.test("a compiler that cannot build an OpenMP program is named with the packages", async () => {
  await using box = await sandbox({ deno: denoStub("2.9.6"), cc: "exit 1" });
  const r = await box.run(["doctor"]);
  assert.equal(r.code, 1, r.out);
  assert.equal(
    lines(r)[2],
    "denotron: cc cannot build a C program with -fopenmp (C library headers or OpenMP missing?): " +
      `install them (${SUDO}apt-get install gcc libc6-dev)`,
  );
});

Deno.test("gcc serves when there is no cc", async () => {
  await using box = await sandbox({ deno: denoStub("2.9.6"), gcc: CC_OK });
  const r = await box.run(["doctor"]);
  assert.match(lines(r)[2], /^denotron: C compiler: .*\/fake bin\/gcc$/);
});

Deno.test("train passes its arguments through to deno task train, with .deno/bin first on PATH", async () => {
  await using box = await sandbox({ cc: CC_OK }, "2.9.6");
  const r = await box.run(["train", "--lr", "3e-4", "--save", "runs/a b"]);
  assert.equal(r.code, 0, r.out);
  const bin = `${box.repo}/.deno/bin`;
  assert.deepEqual(box.calls(), [
    `${bin}|[install][--cached-only][--quiet]`,
    // No library yet: it is built before the job.
    `${bin}|[task][--quiet][build]`,
    `${bin}|[task][train][--lr][3e-4][--save][runs/a b]`,
  ]);
});

Deno.test("deno runs the pinned deno with its arguments and needs no compiler", async () => {
  await using box = await sandbox({}, "2.9.6");
  const r = await box.run(["deno", "fmt", "--check", "a b.ts"]);
  assert.equal(r.code, 0, r.out);
  assert.deepEqual(box.calls(), [`${box.repo}/.deno/bin|[fmt][--check][a b.ts]`]);
});

Deno.test("test runs exactly deno task test, then says the notebooks are skipped without Jupyter", async () => {
  await using box = await sandbox({ deno: denoStub("2.9.6"), cc: CC_OK });
  await Deno.mkdir(`${box.repo}/build`);
  // A library linked against OpenBLAS, which is installed (CC_OK links it): no rebuild.
  await Deno.writeTextFile(`${box.repo}/build/libdenotron_cpu.so`, "NEEDED libopenblas.so.0");
  const r = await box.run(["test"]);
  assert.equal(r.code, 0, r.out);
  assert.deepEqual(lines(r), [NO_JUPYTER]);
  assert.deepEqual(box.calls().map((c) => c.replace(/^[^|]*\|/, "")), [
    "[install][--cached-only][--quiet]",
    `[eval][import { isStale } from "./ffi/build.ts"; ` +
    `Deno.exit(+(isStale() || isStale("builtin")));]`,
    "[task][test]",
  ]);
});

Deno.test("the README's two commands, and CI, go through the launcher", async () => {
  const readme = await Deno.readTextFile(new URL("README.md", ROOT));
  const blocks = [
    ...readme.split("## The two commands")[1].split("\n## ")[0].matchAll(
      /```sh\n([^`]*)```/g,
    ),
  ].map((m) => m[1].trim());
  assert.deepEqual(blocks, ["./denotron train", "./denotron test"]);
  const ci = await Deno.readTextFile(new URL(".ci/run", ROOT));
  assert.match(ci, /^\.\/denotron test 2>&1 \| tee "\$log"$/m);
});

Deno.test("every ./denotron command in the README names a command or a task that exists", async () => {
  const readme = await Deno.readTextFile(new URL("README.md", ROOT));
  const tasks = Object.keys(JSON.parse(await Deno.readTextFile(new URL("deno.json", ROOT))).tasks);
  // `./denotron run TASK` stands for any task.
  const used = [...readme.matchAll(/\.\/denotron ([a-z]+)(?: (TASK|[a-z][\w:-]*))?/g)];
  assert.ok(used.length > 10, `only ${used.length} ./denotron commands found`);
  for (const [text, command, task] of used) {
    assert.ok(["train", "test", "run", "deno", "doctor"].includes(command), text);
    if (command === "run") assert.ok(task === "TASK" || tasks.includes(task), text);
  }
});
