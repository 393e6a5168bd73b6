/**
 * The console's audit timeline reads a log backwards from its end (the store's `lineBefore` and
 * `cursorBefore`), so a page costs the same whatever the log's length. On both stores: walking
 * back from the chain's cursor yields exactly the log's lines, newest first.
 */
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
});
