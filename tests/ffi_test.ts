/** The FFI symbol table mirrors kernels/include/denotron.h exactly. */
import assert from "assert";
import { ABI_VERSION, symbols } from "../ffi/symbols.ts";
import { cpuLibrary } from "../ffi/native.ts";

interface Proto {
  result: string;
  params: string[];
}

/** Parses every `DN_API <type> name(<params>);` prototype of the header. */
function parseHeader(text: string): Map<string, Proto> {
  const noComments = text.replace(/\/\*[\s\S]*?\*\//g, "").replace(/\/\/.*$/gm, "");
  const out = new Map<string, Proto>();
  for (const m of noComments.matchAll(/DN_API\s+([\w\s*]+?)\s*\b(dn_\w+)\s*\(([^)]*)\)\s*;/g)) {
    const params = m[3].trim() === "void"
      ? []
      : m[3].split(",").map((p) => p.trim().replace(/\s+/g, " "));
    out.set(m[2], { result: m[1].trim(), params });
  }
  return out;
}

/** The FFI type a C parameter must have ("ptr" = pointer or buffer). */
function ffiTypeOf(cParam: string): string {
  if (cParam.includes("*")) return "ptr";
  const type = cParam.replace(/^const /, "").split(" ")[0];
  const scalars: Record<string, string> = {
    dn_status: "i32",
    dn_dtype: "i32",
    int32_t: "i32",
    int64_t: "i64",
    uint64_t: "u64",
    float: "f32",
    double: "f64",
  };
  const t = scalars[type];
  if (!t) throw new Error(`unknown C type in '${cParam}'`);
  return t;
}

const header = parseHeader(
  Deno.readTextFileSync(new URL("../kernels/include/denotron.h", import.meta.url)),
);

Deno.test("every DN_API function of the header is in ffi/symbols.ts and vice versa", () => {
  assert.ok(header.size >= 30, `parsed only ${header.size} prototypes`);
  assert.deepEqual([...Object.keys(symbols)].sort(), [...header.keys()].sort());
});

Deno.test("each symbol's parameters and result match the C prototype", () => {
  for (const [name, proto] of header) {
    const entry = symbols[name as keyof typeof symbols] as {
      parameters: readonly string[];
      result: string;
    };
    const want = proto.params.map(ffiTypeOf);
    const got = entry.parameters.map((p) => (p === "pointer" || p === "buffer" ? "ptr" : p));
    assert.deepEqual(
      got,
      want,
      `${name}: table ${JSON.stringify(entry.parameters)} vs header (${proto.params.join(", ")})`,
    );
    const result = proto.result.includes("*") ? "pointer" : ffiTypeOf(proto.result);
    assert.equal(entry.result, result, `${name}: result`);
  }
});

Deno.test("the opened library reports the header's ABI version", () => {
  const m = Deno.readTextFileSync(new URL("../kernels/include/denotron.h", import.meta.url)).match(
    /#define DN_ABI_VERSION (\d+)/,
  );
  const out = new Int32Array(1);
  const lib = cpuLibrary();
  lib.check(lib.sym.dn_abi_version(out), "dn_abi_version");
  assert.equal(out[0], Number(m![1]));
  assert.equal(ABI_VERSION, Number(m![1]), "ffi/symbols.ts ABI_VERSION");
});

Deno.test("dn_timer: elapsed time between recorded slots, and a clear error for unrecorded ones", () => {
  const lib = cpuLibrary();
  lib.check(lib.sym.dn_timer_record(100n), "dn_timer_record");
  const until = performance.now() + 20;
  while (performance.now() < until) { /* spin 20 ms */ }
  lib.check(lib.sym.dn_timer_record(101n), "dn_timer_record");
  const ms = new Float64Array(2);
  lib.check(
    lib.sym.dn_timer_elapsed(
      2n,
      new BigInt64Array([100n, 101n]),
      new BigInt64Array([101n, 100n]),
      ms,
    ),
    "dn_timer_elapsed",
  );
  assert.ok(ms[0] >= 19 && ms[0] < 1000, `20 ms spin measured ${ms[0]} ms`);
  assert.equal(ms[1], -ms[0]);
  assert.throws(
    () =>
      lib.check(
        lib.sym.dn_timer_elapsed(1n, new BigInt64Array([100n]), new BigInt64Array([65000n]), ms),
        "dn_timer_elapsed",
      ),
    /pair 0 names slot 65000, which was never recorded/,
  );
  assert.throws(
    () => lib.check(lib.sym.dn_timer_record(65536n), "dn_timer_record"),
    /slot 65536 is not in \[0, 65536\)/,
  );
});

Deno.test("startProfile('events'): per-symbol device spans inside the whole span, keyed on request", () => {
  const lib = cpuLibrary();
  const n = 1 << 20;
  const p = new BigInt64Array(1);
  lib.check(lib.sym.dn_malloc(BigInt(4 * n), p), "dn_malloc");
  const ptr = Deno.UnsafePointer.create(p[0]);
  lib.startProfile("events", (name, args) => name === "dn_fill" ? `fill ${args[2]}` : name);
  for (let i = 0; i < 3; i++) lib.check(lib.sym.dn_fill(0, ptr, BigInt(n), 1), "dn_fill");
  lib.check(lib.sym.dn_memset_zero(ptr, BigInt(4 * n)), "dn_memset_zero");
  const prof = lib.stopProfile();
  lib.check(lib.sym.dn_free(ptr), "dn_free");
  assert.equal(prof.mode, "events");
  assert.deepEqual([...prof.keys()].sort(), ["dn_memset_zero", `fill ${n}`]);
  assert.equal(prof.get(`fill ${n}`)!.calls, 3);
  assert.ok(prof.totalMs > 0 && prof.totalMs <= prof.spanMs, `${prof.totalMs} <= ${prof.spanMs}`);
  assert.equal(prof.truncated, false);
});

Deno.test("a native failure becomes an error carrying the native message and location", () => {
  const lib = cpuLibrary();
  assert.throws(
    () => lib.check(lib.sym.dn_set_num_threads(0), "dn_set_num_threads"),
    /dn_set_num_threads failed \(invalid argument\): runtime\.c:\d+: dn_set_num_threads: 0 is not in \[1, 4096\]/,
  );
  assert.throws(
    () => lib.check(lib.sym.dn_fill(3, null, 4n, 0), "dn_fill"),
    /unsupported.*dn_fill: dtype i32 \(code 3\) is not a float dtype/,
  );
});

async function runDeno(
  code: string,
  env: Record<string, string>,
): Promise<{ ok: boolean; out: string }> {
  const r = await new Deno.Command(Deno.execPath(), {
    args: ["eval", code],
    env,
    cwd: decodeURIComponent(new URL("..", import.meta.url).pathname),
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { ok: r.success, out: dec.decode(r.stdout) + dec.decode(r.stderr) };
}

Deno.test("DENOTRON_CPU_LIB overrides the library path, and a wrong path is named", async () => {
  const builtin = decodeURIComponent(
    new URL("../build/libdenotron_cpu_builtin.so", import.meta.url).pathname,
  );
  cpuLibrary("builtin"); // make sure it is built
  const code = `import { device } from "./lib/device.ts"; console.log(device().info());`;
  const good = await runDeno(code, { DENOTRON_CPU_LIB: builtin });
  assert.ok(good.ok, good.out);
  assert.match(good.out, /gemm=builtin/);
  const bad = await runDeno(code, { DENOTRON_CPU_LIB: "/nonexistent/libx.so" });
  assert.ok(!bad.ok);
  assert.match(bad.out, /DENOTRON_CPU_LIB points to \/nonexistent\/libx.so, which does not exist/);
});

Deno.test("building without a C compiler fails with a message that says what to do", async () => {
  const code = `import { buildCpuLibrary } from "./ffi/build.ts"; buildCpuLibrary("builtin");`;
  const r = await runDeno(code, { CC: "/nonexistent/cc" });
  assert.ok(!r.ok);
  assert.match(
    r.out,
    /No C compiler found: '\/nonexistent\/cc' is not on PATH.*set CC.*DENOTRON_CPU_LIB/s,
  );
});
