/**
 * Shared by the multi-process tests: launch a fixture script on N ranks (one thread
 * each) and collect what the launcher and the ranks printed.
 */
import assert from "assert";
import { device } from "../lib/device.ts";
import { launch } from "../lib/parallel/launch.ts";

/** The fixture scripts' directory. */
export const FIXTURES = decodeURIComponent(
  new URL("./fixtures/parallel/", import.meta.url).pathname,
);

/** What a launch did. */
export interface LaunchResult {
  code: number;
  /** Every rank's lines, prefixed "[rank N] ". */
  output: string[];
  /** The launcher's own lines. */
  log: string[];
  seconds: number;
}

/**
 * Runs `script` (a file in tests/fixtures/parallel) on `n` ranks through the launcher.
 * The native library is built here first, so the ranks do not race to build it.
 */
export async function launchFixture(
  n: number,
  script: string,
  args: string[] = [],
  env: Record<string, string> = {},
): Promise<LaunchResult> {
  device();
  const output: string[] = [];
  const log: string[] = [];
  const t0 = performance.now();
  const code = await launch({
    nprocPerNode: n,
    script: FIXTURES + script,
    args,
    env: { DENOTRON_NUM_THREADS: "1", NO_COLOR: "1", ...env },
    output: (rank, _stream, line) => output.push(`[rank ${rank}] ${line}`),
    log: (line) => log.push(line),
    graceSeconds: 2,
  });
  return { code, output, log, seconds: (performance.now() - t0) / 1000 };
}

/** Shared-memory segments of run `runId` still in /dev/shm. */
export function leftoverSegments(runId: string): string[] {
  return [...Deno.readDirSync("/dev/shm")].map((e) => e.name)
    .filter((n) => n.startsWith(`denotron-${runId}`));
}

/**
 * Runs a fixture that writes its results as JSON to `--out`: in this process's own Deno
 * (n = 1) or under the launcher on n ranks. Returns the parsed results.
 */
export async function runFixtureJson<T>(
  n: number,
  script: string,
  args: string[],
  dir: string,
  env: Record<string, string> = {},
): Promise<T> {
  const out = `${dir}/${crypto.randomUUID().slice(0, 8)}.json`;
  if (n === 1) {
    device();
    const r = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", FIXTURES + script, ...args, "--out", out],
      env: { DENOTRON_NUM_THREADS: "1" },
    }).output();
    assert.equal(r.code, 0, new TextDecoder().decode(r.stderr));
  } else {
    const r = await launchFixture(n, script, [...args, "--out", out], env);
    assert.equal(r.code, 0, [...r.output, ...r.log].join("\n"));
  }
  return JSON.parse(await Deno.readTextFile(out));
}

/** ‖a − b‖ / ‖b‖ (the absolute ‖a − b‖ when b is zero). */
export function relError(a: readonly number[], b: readonly number[]): number {
  let num = 0, den = 0;
  for (let i = 0; i < b.length; i++) {
    num += (a[i] - b[i]) ** 2;
    den += b[i] ** 2;
  }
  return den ? Math.sqrt(num / den) : Math.sqrt(num);
}
