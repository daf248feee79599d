/**
 * Write-then-rename helpers: a file under its final name is either the old
 * complete one or the new complete one, never a half-written mix.
 *
 * defines: tempName, writeFileAtomic, removeQuietly
 *
 * @module
 */

/**
 * A sibling name unique to this process and call.
 *
 * @param path the final path
 * @returns `path` plus a `.tmp-PID-RANDOM` suffix, in the same directory so
 *   that a rename onto `path` is atomic
 * @example
 * ```ts
 * import { tempName } from "./atomic.ts";
 * tempName("/data/x.idx").startsWith("/data/x.idx.tmp-"); // true
 * ```
 */
export function tempName(path: string): string {
  return `${path}.tmp-${Deno.pid}-${crypto.randomUUID().slice(0, 8)}`;
}

/**
 * Writes bytes (or chunks produced by `write`) to a temporary sibling, syncs,
 * and renames it over `path`. On any failure the temporary file is removed and
 * an existing `path` is left as it was.
 *
 * @param path the final path
 * @param write receives the open temporary file and writes the contents
 * @returns when `path` holds the new contents
 * @example
 * ```ts
 * import { writeFileAtomic } from "./atomic.ts";
 * const path = (await Deno.makeTempDir()) + "/a.txt";
 * await writeFileAtomic(path, async (f) => {
 *   await f.write(new TextEncoder().encode("hi"));
 * });
 * ```
 */
export async function writeFileAtomic(
  path: string,
  write: (file: Deno.FsFile) => Promise<void>,
): Promise<void> {
  const tmp = tempName(path);
  try {
    {
      using file = await Deno.open(tmp, { write: true, createNew: true });
      await write(file);
      await file.sync();
    }
    await Deno.rename(tmp, path);
  } catch (e) {
    await removeQuietly(tmp);
    throw e;
  }
}

/**
 * Writes all of `bytes` to `file`, looping over short writes.
 *
 * @param file an open file
 * @param bytes what to write
 */
export async function writeAll(file: Deno.FsFile, bytes: Uint8Array): Promise<void> {
  let off = 0;
  while (off < bytes.length) off += await file.write(bytes.subarray(off));
}

/**
 * Removes a file, ignoring a missing one.
 *
 * @param path the file
 */
export async function removeQuietly(path: string): Promise<void> {
  try {
    await Deno.remove(path);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
}
