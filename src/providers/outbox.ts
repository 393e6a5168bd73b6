/**
 * Durable writer for `$SIGIL_HOME/outbox/`, where the offline providers deliver.
 *
 * Guarantees:
 * - The directory is created with mode 0700 when missing (an existing directory is
 *   left as it is: its owner chose its mode).
 * - A file appears under its final name only complete: data goes to a unique
 *   temporary name (mode 0600, created exclusively), is fsync'ed, renamed, and the
 *   directory is fsync'ed so the rename itself survives a crash.
 * - File names are generated here (`<ISO time, ':' → '-'>-<random hex>.<ext>`), never
 *   derived from user input; `writeOutboxFile` refuses any name that is not a plain
 *   file name, so nothing can be written outside the directory.
 */
import { randomBytes } from "node:crypto";
import fs, { constants } from "node:fs";
import { chmod, mkdir, unlink } from "node:fs/promises";
import path from "node:path";

export type OutboxExtension = "eml" | "json";

const SAFE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$/;

/** A fresh outbox file name, e.g. `2024-05-01T12-34-56.789Z-1f2e3d4c5b6a7988.eml`. */
export function outboxFileName(ext: OutboxExtension, now: Date = new Date()): string {
  const stamp = now.toISOString().replace(/:/g, "-");
  return `${stamp}-${randomBytes(8).toString("hex")}.${ext}`;
}

/**
 * Writes `data` to `dir/name` durably and atomically; returns the final path.
 * Throws (without leaving a temporary file behind) if anything fails.
 */
export async function writeOutboxFile(dir: string, name: string, data: Buffer | string): Promise<string> {
  if (!SAFE_NAME.test(name) || name.includes("..")) {
    throw new Error("outbox: refusing an unsafe file name");
  }
  await ensureDir(dir);
  const finalPath = path.join(dir, name);
  const tmpPath = path.join(dir, `.tmp-${randomBytes(12).toString("hex")}`);
  // The calls that only touch the page cache and the dentry cache (open, fchmod, write, close,
  // rename) are made synchronously — microseconds each, where a trip through the thread pool
  // costs ~20 µs of latency and CPU apiece; the two that wait for the disk (fsync of the file,
  // fsync of the directory) stay asynchronous.
  const flags = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | (constants.O_NOFOLLOW ?? 0);
  let fd: number;
  try {
    fd = fs.openSync(tmpPath, flags, 0o600);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
    ensured.delete(dir); // the directory went away after we made sure of it: make it again
    await ensureDir(dir);
    fd = fs.openSync(tmpPath, flags, 0o600);
  }
  let renamed = false;
  try {
    try {
      fs.fchmodSync(fd, 0o600); // independent of the process umask
      const buf = typeof data === "string" ? Buffer.from(data) : data;
      for (let off = 0; off < buf.length; ) off += fs.writeSync(fd, buf, off, buf.length - off);
      await fsyncFd(fd);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(tmpPath, finalPath);
    renamed = true;
    await syncDir(dir);
  } finally {
    if (!renamed) await unlink(tmpPath).catch(() => undefined);
  }
  return finalPath;
}

function fsyncFd(fd: number): Promise<void> {
  return new Promise((resolve, reject) => fs.fsync(fd, (err) => (err ? reject(err) : resolve())));
}

/** Directories this process has already made sure of (one mkdir per process, not per message). */
const ensured = new Set<string>();

async function ensureDir(dir: string): Promise<void> {
  if (ensured.has(dir)) return;
  const created = await mkdir(dir, { recursive: true, mode: 0o700 });
  ensured.add(dir);
  if (created !== undefined) {
    // mkdir's mode is filtered by the umask; only the outbox itself needs fixing,
    // parents it created are under the home the caller already created 0700.
    await chmod(dir, 0o700);
  }
}

async function syncDir(dir: string): Promise<void> {
  let fd: number;
  try {
    fd = fs.openSync(dir, constants.O_RDONLY);
  } catch (err) {
    if (process.platform === "win32") return; // directories cannot be opened there
    throw err;
  }
  try {
    await fsyncFd(fd);
  } catch (err) {
    // Some file systems do not support fsync on a directory; the rename is done.
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== "EINVAL" && code !== "ENOTSUP" && code !== "EPERM" && code !== "EISDIR") throw err;
  } finally {
    fs.closeSync(fd);
  }
}
