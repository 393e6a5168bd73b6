/**
 * The file layer every durable write goes through, so that tests can inject faults (EIO, ENOSPC,
 * lost un-fsynced writes) without touching callers.
 *
 * Durable replace = write a uniquely named temp file → fsync it → rename over the target → fsync
 * the directory. Durable append = write the whole buffer → fdatasync before acknowledging.
 */
import { randomBytes } from "node:crypto";
import fs, { promises as fsp, constants } from "node:fs";
import path from "node:path";

export interface FileHandleLike {
  write(buffer: Buffer, offset: number, length: number, position: number | null): Promise<{ bytesWritten: number }>;
  read(buffer: Buffer, offset: number, length: number, position: number): Promise<{ bytesRead: number }>;
  datasync(): Promise<void>;
  sync(): Promise<void>;
  /** `ino`: the file this handle holds (compared with what its path names now). */
  stat(): Promise<{ size: number; ino?: number }>;
  truncate(len: number): Promise<void>;
  close(): Promise<void>;
}

export interface FileLayer {
  open(file: string, flags: string, mode?: number): Promise<FileHandleLike>;
  readFile(file: string): Promise<Buffer>;
  rename(from: string, to: string): Promise<void>;
  unlink(file: string): Promise<void>;
  mkdir(dir: string, mode: number): Promise<void>;
  readdir(dir: string): Promise<string[]>;
  stat(file: string): Promise<{ size: number; mtimeMs: number; ino: number; mode: number }>;
}

/**
 * A file descriptor with the FileHandleLike interface. The calls that only touch the page cache
 * (write, read, fstat, ftruncate) are made synchronously: they take a few microseconds, while a
 * trip through libuv's thread pool costs ~20 µs of latency and two thread switches each, several
 * times per audited call. The calls that wait for the disk (fdatasync, fsync) and close stay
 * asynchronous, so the event loop keeps gathering work (group commit) while the disk flushes.
 * Errors surface the same way as with fs.promises: as rejected promises.
 */
class FdHandle implements FileHandleLike {
  constructor(private readonly fd: number) {}
  async write(buffer: Buffer, offset: number, length: number, position: number | null): Promise<{ bytesWritten: number }> {
    return { bytesWritten: fs.writeSync(this.fd, buffer, offset, length, position) };
  }
  async read(buffer: Buffer, offset: number, length: number, position: number): Promise<{ bytesRead: number }> {
    return { bytesRead: fs.readSync(this.fd, buffer, offset, length, position) };
  }
  datasync(): Promise<void> {
    return new Promise((resolve, reject) => fs.fdatasync(this.fd, (err) => (err ? reject(err) : resolve())));
  }
  sync(): Promise<void> {
    return new Promise((resolve, reject) => fs.fsync(this.fd, (err) => (err ? reject(err) : resolve())));
  }
  async stat(): Promise<{ size: number; ino?: number }> {
    return fs.fstatSync(this.fd);
  }
  async truncate(len: number): Promise<void> {
    fs.ftruncateSync(this.fd, len);
  }
  close(): Promise<void> {
    return new Promise((resolve, reject) => fs.close(this.fd, (err) => (err ? reject(err) : resolve())));
  }
}

export const realFiles: FileLayer = {
  open: (file, flags, mode) =>
    new Promise((resolve, reject) => fs.open(file, flags, mode, (err, fd) => (err ? reject(err) : resolve(new FdHandle(fd))))),
  readFile: async (file) => readSmallSync(file) ?? fsp.readFile(file),
  rename: (from, to) => fsp.rename(from, to),
  unlink: (file) => fsp.unlink(file),
  mkdir: async (dir, mode) => {
    await fsp.mkdir(dir, { recursive: true, mode });
  },
  readdir: (dir) => fsp.readdir(dir),
  // Synchronous for the same reason as FdHandle: the registry revalidates its cache with one
  // stat() per call, and a stat served from the inode cache takes ~3 µs.
  stat: async (file) => {
    const s = fs.statSync(file, { bigint: false });
    return { size: s.size, mtimeMs: s.mtimeMs, ino: s.ino, mode: s.mode };
  },
};

/**
 * Registry documents, token index entries and secrets are a few KB and in the page cache: read
 * synchronously (open, fstat, read, close: ~10–20 µs) instead of through the thread pool (four
 * trips, each a thread wake-up — 80–200 µs of latency apiece on a loaded 2-core VM; the
 * exfiltration guard's record is read on every agent call). Larger files (audit logs, bundles) are
 * left to the asynchronous read (undefined). Errors (ENOENT…) are thrown as fs.promises would reject.
 */
const SMALL_FILE = 256 * 1024;
function readSmallSync(file: string): Buffer | undefined {
  // A missing file is common (an identity without secrets) and a throwing openSync costs ~50 µs
  // here (the error's stack); stat without throwing costs ~5.
  if (fs.statSync(file, { throwIfNoEntry: false }) === undefined) {
    throw Object.assign(new Error(`ENOENT: no such file or directory, open '${file}'`), { code: "ENOENT", errno: -2, syscall: "open", path: file });
  }
  const fd = fs.openSync(file, "r");
  try {
    const { size } = fs.fstatSync(fd);
    if (size > SMALL_FILE) return undefined;
    const buf = Buffer.allocUnsafe(size);
    let got = 0;
    while (got < size) {
      const n = fs.readSync(fd, buf, got, size - got, got);
      if (n === 0) break;
      got += n;
    }
    // A file that grew since fstat is read whole by the asynchronous path instead.
    if (got === size && fs.readSync(fd, Buffer.allocUnsafe(1), 0, 1, size) === 0) return buf;
    return undefined;
  } finally {
    fs.closeSync(fd);
  }
}

/** Reads into `buf` from `position` until it is full or the file ends; the number of bytes read. */
export async function readAt(fh: FileHandleLike, buf: Buffer, position: number): Promise<number> {
  let got = 0;
  while (got < buf.length) {
    const { bytesRead } = await fh.read(buf, got, buf.length - got, position + got);
    if (bytesRead === 0) break;
    got += bytesRead;
  }
  return got;
}

export async function writeAll(fh: FileHandleLike, data: Buffer, position: number | null = null): Promise<void> {
  let off = 0;
  while (off < data.length) {
    const { bytesWritten } = await fh.write(data, off, data.length - off, position === null ? null : position + off);
    if (bytesWritten <= 0) throw Object.assign(new Error("short write"), { code: "EIO" });
    off += bytesWritten;
  }
}

export async function fsyncDir(files: FileLayer, dir: string): Promise<void> {
  const fh = await files.open(dir, "r");
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** Atomically and durably replaces `file` with `data` (mode 0600 unless given). */
export async function writeFileDurable(files: FileLayer, file: string, data: string | Buffer, mode = 0o600): Promise<void> {
  const dir = path.dirname(file);
  const tmp = path.join(dir, `.${path.basename(file)}.${randomBytes(6).toString("hex")}.tmp`);
  const fh = await files.open(tmp, "wx", mode);
  try {
    await writeAll(fh, typeof data === "string" ? Buffer.from(data) : data, 0);
    await fh.sync();
  } catch (err) {
    await fh.close().catch(() => {});
    await files.unlink(tmp).catch(() => {});
    throw err;
  }
  await fh.close();
  try {
    await files.rename(tmp, file);
  } catch (err) {
    await files.unlink(tmp).catch(() => {});
    throw err;
  }
  await fsyncDir(files, dir);
}

/** Creates `file` only if it does not exist, durably. Returns false if it existed. */
export async function createFileDurable(files: FileLayer, file: string, data: string | Buffer, mode = 0o600): Promise<boolean> {
  let fh: FileHandleLike;
  try {
    fh = await files.open(file, "wx", mode);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "EEXIST") return false;
    throw err;
  }
  try {
    await writeAll(fh, typeof data === "string" ? Buffer.from(data) : data, 0);
    await fh.sync();
  } finally {
    await fh.close();
  }
  await fsyncDir(files, path.dirname(file));
  return true;
}

export async function exists(file: string): Promise<boolean> {
  try {
    await fsp.access(file, constants.F_OK);
    return true;
  } catch {
    return false;
  }
}
