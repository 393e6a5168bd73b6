/**
 * Directory fsyncs shared between outbox deliveries (src/providers/outbox.ts, group commit): many
 * deliveries in flight share a few fsyncs of the outbox directory, and each still returns only
 * after an fsync that began AFTER its own rename has completed (an fsync already under way when a
 * rename happens may not cover it). Observed on the real file system, through the calls the outbox
 * makes (rename, fsync of a descriptor opened on the directory), with each directory fsync held
 * for a moment so that deliveries overlap whatever the disk's speed.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";

const outbox = await import("../dist/src/providers/outbox.js");

type Event = { kind: "rename" | "returned" | "failed"; name: string } | { kind: "start" | "end"; sync: number };

const restore: Array<() => void> = [];
afterEach(() => restore.splice(0).forEach((r) => r()));

/** Records renames into `dir` and fsyncs of descriptors opened on `dir`; `failFirst` makes the first directory fsync fail (EIO). */
function observe(dir: string, failFirst = false): Event[] {
  const events: Event[] = [];
  const dirFds = new Set<number>();
  const { openSync, renameSync, fsync } = fs;
  let syncs = 0;
  fs.openSync = ((p: fs.PathLike, ...rest: unknown[]) => {
    const fd = (openSync as (...a: unknown[]) => number)(p, ...rest);
    if (path.resolve(String(p)) === dir) dirFds.add(fd);
    return fd;
  }) as typeof fs.openSync;
  fs.renameSync = ((from: fs.PathLike, to: fs.PathLike) => {
    renameSync(from, to);
    if (path.dirname(path.resolve(String(to))) === dir) events.push({ kind: "rename", name: path.basename(String(to)) });
  }) as typeof fs.renameSync;
  fs.fsync = ((fd: number, cb: (err: NodeJS.ErrnoException | null) => void) => {
    if (!dirFds.has(fd)) return fsync(fd, cb);
    dirFds.delete(fd);
    const id = ++syncs;
    events.push({ kind: "start", sync: id });
    setTimeout(() => {
      if (failFirst && id === 1) {
        events.push({ kind: "end", sync: id });
        return cb(Object.assign(new Error("EIO: i/o error, fsync"), { code: "EIO" }));
      }
      fsync(fd, (err) => {
        events.push({ kind: "end", sync: id });
        cb(err);
      });
    }, 30);
  }) as typeof fs.fsync;
  restore.push(() => Object.assign(fs, { openSync, renameSync, fsync }));
  return events;
}

/** For each delivered name: the directory fsyncs that began after its rename and ended before it returned. */
function covering(events: Event[], name: string): number[] {
  const renamed = events.findIndex((e) => e.kind === "rename" && e.name === name);
  const returned = events.findIndex((e) => (e.kind === "returned" || e.kind === "failed") && e.name === name);
  expect(renamed).toBeGreaterThanOrEqual(0);
  expect(returned).toBeGreaterThan(renamed);
  const out: number[] = [];
  events.forEach((e, i) => {
    if (e.kind !== "start" || i < renamed) return;
    const end = events.findIndex((x) => x.kind === "end" && x.sync === e.sync);
    if (end >= 0 && end < returned) out.push(e.sync);
  });
  return out;
}

async function deliverAll(dir: string, events: Event[], n: number): Promise<Array<PromiseSettledResult<string>>> {
  const prepared = await Promise.all(Array.from({ length: n }, (_, i) => outbox.prepareOutboxFile(dir, `message ${i}`)));
  return Promise.allSettled(
    prepared.map((p, i) =>
      p.deliver(`m${i}.json`).then(
        (f: string) => (events.push({ kind: "returned", name: `m${i}.json` }), f),
        (err: unknown) => {
          events.push({ kind: "failed", name: `m${i}.json` });
          throw err;
        },
      ),
    ),
  );
}

describe("outbox deliveries share directory fsyncs", () => {
  it("16 deliveries at once: a few directory fsyncs, and each delivery returns after one that began after its rename", async () => {
    const dir = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "sigil-outbox-sync-")), "outbox");
    await outbox.prepareOutboxFile(dir, "warm").then((p: { discard(): Promise<void> }) => p.discard()); // the directory exists
    const events = observe(dir);
    const results = await deliverAll(dir, events, 16);
    expect(results.every((r) => r.status === "fulfilled")).toBe(true);
    for (let i = 0; i < 16; i++) expect(covering(events, `m${i}.json`), `m${i}.json`).not.toEqual([]);
    const syncs = events.filter((e) => e.kind === "start").length;
    expect(syncs).toBeGreaterThan(0);
    expect(syncs).toBeLessThanOrEqual(3); // one per delivery before: 16
    expect(fs.readdirSync(dir).filter((n) => !n.startsWith(".")).sort()).toEqual(Array.from({ length: 16 }, (_, i) => `m${i}.json`).sort());
  });

  it("a failed directory fsync fails the deliveries that waited on it, and only those; later ones get a fsync of their own", async () => {
    const dir = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "sigil-outbox-sync-")), "outbox");
    await outbox.prepareOutboxFile(dir, "warm").then((p: { discard(): Promise<void> }) => p.discard());
    const events = observe(dir, true);
    const results = await deliverAll(dir, events, 4);
    // The first rename started fsync 1 (which fails); the other three renamed while it ran and wait for fsync 2.
    expect(results.map((r) => r.status)).toEqual(["rejected", "fulfilled", "fulfilled", "fulfilled"]);
    expect((results[0] as PromiseRejectedResult).reason.code).toBe("EIO");
    for (let i = 1; i < 4; i++) expect(covering(events, `m${i}.json`)).toEqual([2]);
    const later = await deliverAll(dir, events, 1);
    expect(later[0]!.status).toBe("fulfilled");
  });
});
