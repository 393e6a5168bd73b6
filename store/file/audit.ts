/**
 * Audit chains as append-only JSONL files, one per identity: `$SIGIL_HOME/audit/<id>.jsonl`.
 *
 * Appends happen under the identity's cross-process lock: catch up on what other processes
 * appended since our cursor, let the caller decide what to append, write it in one write() and
 * fdatasync before returning. A failed write or fsync is rolled back (truncate to the old end) and
 * reported; nothing is acknowledged that is not on disk.
 */
import path from "node:path";
import { type FileHandleLike, type FileLayer, fsyncDir, readAt, writeAll, writeFileDurable } from "../../src/util/fsx.js";
import type { Locks } from "../../src/util/lock.js";
import { nextTurn } from "../../src/util/yield.js";
import { type AuditBackend, type ChainCursor, type ChainView, StoreError } from "../types.js";

const MAX_OPEN = 128;
const READ_CHUNK = 128 * 1024;
const BACK_BLOCK = 64 * 1024;

export class FileAuditBackend implements AuditBackend {
  private readonly handles = new Map<string, FileHandleLike>();

  constructor(
    private readonly dir: string,
    private readonly files: FileLayer,
    private readonly locks: Locks,
  ) {}

  file(identityId: string): string {
    return path.join(this.dir, `${identityId}.jsonl`);
  }

  private async handle(identityId: string): Promise<FileHandleLike> {
    let fh = this.handles.get(identityId);
    if (fh) {
      this.handles.delete(identityId); // re-insert: most recently used last
      this.handles.set(identityId, fh);
      return fh;
    }
    fh = await this.files.open(this.file(identityId), "a+", 0o600);
    if ((await fh.stat()).size === 0) await fsyncDir(this.files, this.dir); // make the new name durable
    this.handles.set(identityId, fh);
    if (this.handles.size > MAX_OPEN) {
      const [oldId, old] = this.handles.entries().next().value as [string, FileHandleLike];
      this.handles.delete(oldId);
      await old.close().catch(() => {});
    }
    return fh;
  }

  private async drop(identityId: string): Promise<void> {
    const fh = this.handles.get(identityId);
    this.handles.delete(identityId);
    await fh?.close().catch(() => {});
  }

  async withChain<T>(
    identityId: string,
    cursor: ChainCursor,
    fn: (view: ChainView) => Promise<{ lines: string[]; value: T }>,
  ): Promise<{ value: T; cursor: ChainCursor }> {
    return this.locks.withLock(`audit:${identityId}`, async () => {
      let fh: FileHandleLike;
      try {
        fh = await this.handle(identityId);
      } catch (err) {
        throw new StoreError("the audit log cannot be opened", "unavailable", { cause: err });
      }
      let { size, ino } = await fh.stat();
      // The open handle is reused across appends: if the path now names another file (the log
      // replaced by a rename, or removed), appending through it would acknowledge entries that no
      // reader of the log will ever see. Open what the path names; the checks below then judge it
      // against what this process has seen (a shorter file is refused).
      if (ino !== undefined && (await this.files.stat(this.file(identityId)).catch(() => undefined))?.ino !== ino) {
        await this.drop(identityId);
        try {
          fh = await this.handle(identityId);
        } catch (err) {
          throw new StoreError("the audit log cannot be opened", "unavailable", { cause: err });
        }
        ({ size, ino } = await fh.stat());
      }
      if (size < cursor.position) {
        throw new StoreError(`the audit log of ${identityId} shrank below what this process has seen`, "conflict");
      }
      const view: ChainView = { lines: [] };
      let end = cursor.position;
      if (size > cursor.position) {
        const buf = Buffer.alloc(size - cursor.position);
        const got = await readAt(fh, buf, cursor.position);
        const lastNl = buf.lastIndexOf(0x0a, got - 1);
        if (lastNl >= 0) {
          view.lines = buf.subarray(0, lastNl).toString("utf8").split("\n");
          end = cursor.position + lastNl + 1;
        }
        if (end < cursor.position + got) view.torn = Buffer.from(buf.subarray(end - cursor.position, got));
      }
      const { lines, value } = await fn(view);
      if (lines.length === 0) return { value, cursor: { position: end } };
      const data = Buffer.from(lines.join("\n") + "\n", "utf8");
      try {
        if (view.torn) await fh.truncate(end);
        await writeAll(fh, data);
        await fh.datasync();
      } catch (err) {
        // Roll back whatever part of the write landed, so a failed append leaves no entry behind.
        await fh.truncate(end).catch(() => {});
        await fh.datasync().catch(() => {});
        await this.drop(identityId);
        throw new StoreError("the audit log cannot be written", "unavailable", { cause: err });
      }
      return { value, cursor: { position: end + data.length } };
    });
  }

  /**
   * Read in chunks of 128 KiB up to the size the file had when reading began (a 1,000,000-entry log
   * is ~350 MB: never held whole), yielding to the event loop between chunks.
   */
  async *readLines(identityId: string): AsyncIterable<string> {
    let fh: FileHandleLike;
    try {
      fh = await this.files.open(this.file(identityId), "r");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return;
      throw new StoreError("the audit log cannot be read", "unreadable", { cause: err });
    }
    try {
      const size = (await fh.stat()).size;
      let carry = Buffer.alloc(0);
      for (let pos = 0; pos < size; ) {
        const chunk = Buffer.alloc(Math.min(READ_CHUNK, size - pos));
        const got = await readAt(fh, chunk, pos);
        if (got === 0) break;
        pos += got;
        const buf = carry.length > 0 ? Buffer.concat([carry, chunk.subarray(0, got)]) : chunk.subarray(0, got);
        const lastNl = buf.lastIndexOf(0x0a);
        if (lastNl < 0) {
          carry = buf;
          continue;
        }
        carry = Buffer.from(buf.subarray(lastNl + 1));
        for (const line of buf.subarray(0, lastNl).toString("utf8").split("\n")) yield line;
        await nextTurn();
      }
      if (carry.length > 0) yield carry.toString("utf8"); // a torn last line, as it is
    } catch (err) {
      throw err instanceof StoreError ? err : new StoreError("the audit log cannot be read", "unreadable", { cause: err });
    } finally {
      await fh.close().catch(() => {});
    }
  }

  /**
   * One open, reading backwards in blocks from `before` (or from the end of the last complete
   * line: a torn final line is not a line yet) until `max` lines or the file's start.
   */
  async linesBefore(identityId: string, before: ChainCursor | undefined, max: number): Promise<Array<{ line: string; before: ChainCursor }>> {
    const none: Array<{ line: string; before: ChainCursor }> = [];
    let fh: FileHandleLike;
    try {
      fh = await this.files.open(this.file(identityId), "r");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return none;
      throw err;
    }
    try {
      const size = (await fh.stat()).size;
      let end = before === undefined ? size : before.position;
      if (!Number.isSafeInteger(end) || end <= 0 || end > size) return none;
      // buf holds the bytes from `start` up to the cursor the call began at.
      let start = end;
      let buf = Buffer.alloc(0);
      const more = async (): Promise<boolean> => {
        if (start === 0) return false;
        const n = Math.min(start, Math.max(BACK_BLOCK, buf.length));
        const block = Buffer.alloc(n);
        if ((await readAt(fh, block, start - n)) < n) throw new StoreError("the audit log changed while it was read", "conflict");
        buf = Buffer.concat([block, buf]);
        start -= n;
        return true;
      };
      await more();
      if (before === undefined) {
        // The end of the last complete line.
        for (;;) {
          const nl = buf.lastIndexOf(0x0a, end - start - 1);
          if (nl >= 0) {
            end = start + nl + 1;
            break;
          }
          if (!(await more())) return none;
        }
      } else if (buf[end - start - 1] !== 0x0a) {
        return none; // the cursor is not at the end of a line
      }
      const lines: Array<{ line: string; before: ChainCursor }> = [];
      while (lines.length < max && end > 0) {
        const nl = end - start >= 2 ? buf.lastIndexOf(0x0a, end - start - 2) : -1;
        if (nl >= 0) {
          lines.push({ line: buf.subarray(nl + 1, end - start - 1).toString("utf8"), before: { position: start + nl + 1 } });
          end = start + nl + 1;
        } else if (start === 0) {
          lines.push({ line: buf.subarray(0, end - 1).toString("utf8"), before: { position: 0 } });
          end = 0;
        } else {
          await more();
        }
      }
      return lines;
    } finally {
      await fh.close().catch(() => {});
    }
  }

  snapshotFile(identityId: string): string {
    return path.join(this.dir, `${identityId}.snapshot`);
  }

  async readSnapshot(identityId: string): Promise<string | undefined> {
    try {
      return (await this.files.readFile(this.snapshotFile(identityId))).toString("utf8");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      throw err;
    }
  }

  /** Temp file, fsync, rename over the old snapshot (see writeFileDurable). */
  async writeSnapshot(identityId: string, _seq: number, text: string): Promise<void> {
    await writeFileDurable(this.files, this.snapshotFile(identityId), text);
  }

  /** The cursor is a byte offset: the line and its newline end there. */
  cursorBefore(cursor: ChainCursor, line: string): ChainCursor {
    return { position: cursor.position - Buffer.byteLength(line, "utf8") - 1 };
  }

  /** The line that ends at `cursor`: `linesBefore` for one line; a log that shrank under the read has none. */
  async lineBefore(identityId: string, cursor: ChainCursor): Promise<string | undefined> {
    try {
      return (await this.linesBefore(identityId, cursor, 1))[0]?.line;
    } catch (err) {
      if (err instanceof StoreError && err.code === "conflict") return undefined;
      throw err;
    }
  }

  async close(): Promise<void> {
    for (const id of [...this.handles.keys()]) await this.drop(id);
  }
}
