/**
 * Durable writer for `$SIGIL_HOME/outbox/`, where the offline providers deliver.
 *
 * Guarantees:
 * - The directory is created with mode 0700 when missing (an existing directory is
 *   left as it is: its owner chose its mode).
 * - A file appears under its final name only complete: data goes to a unique
 *   temporary name (mode 0600, created exclusively, ahead of time), is fsync'ed, renamed,
 *   and the directory is fsync'ed so the rename itself survives a crash.
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
  checkName(name);
  const prepared = await prepareOutboxFile(dir, data);
  return prepared.deliver(name);
}

/**
 * The two phases of a delivery, for callers that can prepare while something else is flushed
 * (the audit intent entry): `prepareOutboxFile` writes the data to a temporary file and fsyncs it
 * — nothing is delivered yet, a temporary file is not a message, and a crashed process's are
 * swept; `deliver` is the act: the rename to the final name, made durable by an fsync of the
 * directory. `discard` removes the temporary file (the act was refused). Exactly one of the two
 * must be called.
 */
export interface PreparedOutboxFile {
  deliver(name: string): Promise<string>;
  discard(): Promise<void>;
}

function checkName(name: string): void {
  if (!SAFE_NAME.test(name) || name.includes("..")) {
    throw new Error("outbox: refusing an unsafe file name");
  }
}

export async function prepareOutboxFile(dir: string, data: Buffer | string): Promise<PreparedOutboxFile> {
  // The calls that only touch the page cache and the dentry cache (write, close, rename) are made
  // synchronously — microseconds each, where a trip through the thread pool costs ~20 µs of
  // latency and CPU apiece; the two that wait for the disk (fsync of the file, fsync of the
  // directory) stay asynchronous. Creating the file — slow on some file systems (~0.4 ms here) —
  // was done ahead of time: see takeSpare.
  const { fd, path: tmpPath } = await takeSpare(dir);
  try {
    try {
      const buf = typeof data === "string" ? Buffer.from(data) : data;
      for (let off = 0; off < buf.length; ) off += fs.writeSync(fd, buf, off, buf.length - off);
      await fsyncFd(fd);
    } finally {
      fs.closeSync(fd);
    }
  } catch (err) {
    live.delete(tmpPath);
    await unlink(tmpPath).catch(() => undefined);
    throw err;
  }
  let used = false;
  const discard = async (): Promise<void> => {
    if (used) return;
    used = true;
    live.delete(tmpPath);
    await unlink(tmpPath).catch(() => undefined);
  };
  return {
    discard,
    async deliver(name: string): Promise<string> {
      if (used) throw new Error("outbox: this prepared file was already delivered or discarded");
      let renamed = false;
      try {
        checkName(name);
        const finalPath = path.join(dir, name);
        fs.renameSync(tmpPath, finalPath);
        renamed = true;
        used = true;
        live.delete(tmpPath);
        await syncDir(dir);
        return finalPath;
      } finally {
        if (!renamed) await discard();
      }
    },
  };
}

/**
 * Spare files: each outbox directory keeps one empty, exclusively created 0600 temp file ready
 * (`.spare-<pid>-<hex>`), made in the background after the previous one was taken, so a delivery
 * does not wait for the file system to create an inode. Unused spares are removed when the process
 * exits; a crashed process's empty spares are removed by the next process that writes there.
 */
interface Spare {
  fd: number;
  path: string;
}
const spares = new Map<string, Promise<Spare>>();
const live = new Set<string>();
const swept = new Set<string>();
const SPARE_FLAGS = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | (constants.O_NOFOLLOW ?? 0);

function createSpare(dir: string): Promise<Spare> {
  const file = path.join(dir, `.spare-${process.pid}-${randomBytes(8).toString("hex")}`);
  return new Promise<Spare>((resolve, reject) =>
    fs.open(file, SPARE_FLAGS, 0o600, (err, fd) => {
      if (err) return reject(err);
      live.add(file);
      fs.fchmod(fd, 0o600, (e) => (e ? reject(e) : resolve({ fd, path: file }))); // independent of the umask
    }),
  );
}

async function takeSpare(dir: string): Promise<Spare> {
  await ensureDir(dir);
  const ready = spares.get(dir);
  spares.delete(dir);
  let spare = ready ? await ready.catch(() => undefined) : undefined;
  if (!spare) {
    try {
      spare = await createSpare(dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
      ensured.delete(dir); // the directory went away after we made sure of it: make it again
      await ensureDir(dir);
      spare = await createSpare(dir);
    }
  }
  if (!spares.has(dir)) {
    const next = createSpare(dir);
    next.catch(() => spares.get(dir) === next && spares.delete(dir));
    spares.set(dir, next);
  }
  return spare;
}

process.once("exit", () => {
  for (const file of live) {
    try {
      fs.unlinkSync(file);
    } catch {
      /* already gone */
    }
  }
});

/** Removes empty spares left by processes that no longer run (a crash, SIGKILL). */
function sweepDeadSpares(dir: string): void {
  if (swept.has(dir)) return;
  swept.add(dir);
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return;
  }
  for (const n of names) {
    const m = /^\.spare-(\d+)-[0-9a-f]+$/.exec(n);
    if (!m || Number(m[1]) === process.pid) continue;
    try {
      process.kill(Number(m[1]), 0);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ESRCH") fs.rmSync(path.join(dir, n), { force: true });
    }
  }
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
  sweepDeadSpares(dir);
  if (created !== undefined) {
    // mkdir's mode is filtered by the umask; only the outbox itself needs fixing,
    // parents it created are under the home the caller already created 0700.
    await chmod(dir, 0o700);
  }
}

/**
 * Directory fsyncs shared between deliveries (group commit): a delivery's rename is durable once an
 * fsync of the directory that STARTED after the rename has completed. A delivery that finds one in
 * flight (started before its rename, so it may not cover it) waits for the next, which starts when
 * that one ends and serves every delivery that renamed meanwhile; so 16 deliveries in flight cost
 * ~2 directory fsyncs instead of 16, and each still returns only after its own rename is durable.
 * A failed fsync fails every delivery waiting on it.
 */
interface DirSyncs {
  running: Promise<void>;
  next?: Promise<void>;
}
const dirSyncs = new Map<string, DirSyncs>();

function syncDir(dir: string): Promise<void> {
  const s = dirSyncs.get(dir);
  if (!s) return startDirSync(dir);
  if (!s.next) {
    s.next = s.running.then(
      () => startDirSync(dir),
      () => startDirSync(dir),
    );
  }
  return s.next;
}

function startDirSync(dir: string): Promise<void> {
  const running = fsyncDirNow(dir);
  const entry: DirSyncs = { running };
  dirSyncs.set(dir, entry);
  const done = (): void => {
    if (dirSyncs.get(dir) === entry && entry.next === undefined) dirSyncs.delete(dir);
  };
  running.then(done, done);
  return running;
}

async function fsyncDirNow(dir: string): Promise<void> {
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
