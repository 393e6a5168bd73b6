/**
 * The console's audit timeline reads a log backwards from its end — one read per page (the
 * store's `linesBefore`), so a page costs the same whatever the log's length — and the chain
 * snapshots check their anchor line with `lineBefore`. On both stores: walking back yields exactly
 * the log's lines, newest first, page after page; on the file store a torn final line is not read
 * as a line and a cursor that is not at a line's end reads nothing.
 */
import { appendFileSync } from "node:fs";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { cleanupHomes, makeHome, withApp } from "./support/home.js";
import { backends } from "./support/backends.js";

afterAll(() => cleanupHomes());

describe.each(backends)("reading a log backwards (%s store)", (backend) => {
  it("lineBefore + cursorBefore from the chain's cursor give every line, newest first, then stop", { timeout: 120_000 }, async () => {
    const home = makeHome({}, { store: backend });
    const a = home.createIdentity({ name: "wälker ünïcode", channels: "email" }); // multi-byte characters in a line
    for (let i = 0; i < 3; i++) home.json(["identity", "rotate-key", a.id]);
    await withApp(home, async (app) => {
      const forward: string[] = [];
      for await (const l of app.store.audit.readLines(a.id)) forward.push(l);
      const back: string[] = [];
      let cursor = (await app.chains.state(a.id)).cursor;
      const b = app.store.audit;
      for (;;) {
        const line = await b.lineBefore!(a.id, cursor);
        if (line === undefined) break;
        back.push(line);
        cursor = b.cursorBefore!(cursor, line);
      }
      expect(back).toEqual(forward.reverse());
      expect(cursor.position).toBe(0);
    });
  });

  it("linesBefore pages from the log's end give every line, newest first, each page one read, then stop", { timeout: 120_000 }, async () => {
    const home = makeHome({}, { store: backend });
    const a = home.createIdentity({ name: "pägés", channels: "email" });
    for (let i = 0; i < 3; i++) home.json(["identity", "rotate-key", a.id]);
    await withApp(home, async (app) => {
      const forward: string[] = [];
      for await (const l of app.store.audit.readLines(a.id)) forward.push(l);
      expect(forward.length).toBeGreaterThan(5);
      const b = app.store.audit;
      const back: string[] = [];
      let cursor: { position: number } | undefined;
      let pages = 0;
      for (;;) {
        const page = await b.linesBefore!(a.id, cursor, 2);
        if (page.length === 0) break;
        pages++;
        expect(page.length).toBeLessThanOrEqual(2);
        back.push(...page.map((p) => p.line));
        cursor = page[page.length - 1]!.before;
        if (cursor.position <= 0) break;
      }
      expect(back).toEqual([...forward].reverse());
      expect(pages).toBe(Math.ceil(forward.length / 2));
      // A cursor from the middle of a page gives the lines older than that line.
      const all = await b.linesBefore!(a.id, undefined, 100);
      const older = await b.linesBefore!(a.id, all[2]!.before, 100);
      expect(older.map((p) => p.line)).toEqual(all.slice(3).map((p) => p.line));
      if (backend === "file") {
        // A torn final line (a write a crash cut short) is not a line yet; a cursor inside a line reads nothing.
        appendFileSync(path.join(home.env.SIGIL_HOME!, "audit", `${a.id}.jsonl`), '{"seq":99,"torn');
        expect((await b.linesBefore!(a.id, undefined, 1))[0]!.line).toBe(forward[forward.length - 1]);
        expect(await b.linesBefore!(a.id, { position: all[0]!.before.position + 5 }, 10)).toEqual([]);
      }
    });
  });
});
