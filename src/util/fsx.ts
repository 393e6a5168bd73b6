/**
 * The file layer every durable write goes through, so that tests can inject faults (EIO, ENOSPC,
 * lost un-fsynced writes) without touching callers.
 *
 * Durable replace = write a uniquely named temp file → fsync it → rename over the target → fsync
 * the directory. Durable append = write the whole buffer → fdatasync before acknowledging.
 */
import { randomBytes } from "node:crypto";
import { promises as fsp, constants } from "node:fs";
import path from "node:path";

export interface FileHandleLike {
  write(buffer: Buffer, offset: number, length: number, position: number | null): Promise<{ bytesWritten: number }>;
  read(buffer: Buffer, offset: number, length: number, position: number): Promise<{ bytesRead: number }>;
  datasync(): Promise<void>;
  sync(): Promise<void>;
  stat(): Promise<{ size: number }>;
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

export const realFiles: FileLayer = {
  open: (file, flags, mode) => fsp.open(file, flags, mode) as Promise<FileHandleLike>,
  readFile: (file) => fsp.readFile(file),
  rename: (from, to) => fsp.rename(from, to),
  unlink: (file) => fsp.unlink(file),
  mkdir: async (dir, mode) => {
    await fsp.mkdir(dir, { recursive: true, mode });
  },
  readdir: (dir) => fsp.readdir(dir),
  stat: async (file) => {
    const s = await fsp.stat(file, { bigint: false });
    return { size: s.size, mtimeMs: s.mtimeMs, ino: s.ino, mode: s.mode };
  },
};

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
