/**
 * Shared by the multi-process tests: launch a fixture script on N ranks (one thread
 * each) and collect what the launcher and the ranks printed.
 */
import { device } from "../lib/device.ts";
import { launch } from "../lib/parallel/launch.ts";

/** The fixture scripts' directory. */
export const FIXTURES = new URL("./fixtures/parallel/", import.meta.url).pathname;

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
