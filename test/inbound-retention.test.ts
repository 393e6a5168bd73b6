/**
 * Retention (`inbound.retainDays`), the per-identity bound (`inbound.maxMessages`, oldest dropped
 * first) and sealing at rest, on both stores: the home's real Inbox (src/inbound/messages.ts) in
 * this process with a clock the test moves, since waiting 30 days is not a test. Every removal is an
 * audit entry; a record re-dated or moved to another identity at rest does not open.
 */
import { readdirSync, readFileSync, renameSync, mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { backends, freshDatabaseUrl, pgQuery, pgSkipNote, pgUrl } from "./support/backends.js";
import { cleanupHomes, makeHome } from "./support/home.js";
import type { App } from "../src/app.js";
import { parsePolicy } from "../src/policy/schema.js";

afterAll(cleanupHomes);

const DAY = 86_400_000;

async function openAt(home: ReturnType<typeof makeHome>, clock: { t: number }): Promise<App> {
  const { openApp } = await import("../src/app.js");
  return openApp({ home: home.env.SIGIL_HOME!, env: home.env, now: () => clock.t });
}

const mail = (n: number) => ({ from: `s${n}@else.example`, to: ["a@inbox.test"], subject: `m${n}`, text: `body ${n}` });

describe.each(backends)("inbound retention and bound (%s store)", (backend) => {
  it(
    "keeps at most maxMessages, dropping the oldest first; hides and then removes messages past retainDays; every removal audited",
    async () => {
      const home = makeHome({}, { store: backend });
      const policy = { inbound: { retainDays: 2, maxMessages: 3 } };
      const a = home.createIdentity({ channels: "email", email: "a@inbox.test", policy });
      const clock = { t: Date.UTC(2026, 0, 1) };
      const app = await openAt(home, clock);
      try {
        const rec = (await app.store.getIdentity(a.id))!;
        const p = parsePolicy(rec.policy);
        if (!p.ok) throw new Error(p.error);
        const ids: string[] = [];
        for (let n = 0; n < 5; n++) {
          clock.t += 60_000;
          ids.push((await app.inbox.receive(rec, "email", mail(n), { size: 10 })) as string);
        }
        const reader = app.inbox.readerFor(a.id);
        // The three newest remain, newest first.
        expect((await reader.list(p.policy, {})).messages.map((m) => m.subject)).toEqual(["m4", "m3", "m2"]);
        expect((await app.store.listInbound(a.id)).map((r) => r.id)).toEqual(ids.slice(2));
        const drops = home.auditLog(a.id).flatMap((e) => (e.tool === "inbound_email" ? (e.dropped ?? []) : []));
        expect(drops).toEqual([
          { id: ids[0], reason: "over_limit" },
          { id: ids[1], reason: "over_limit" },
        ]);

        // Past retainDays: no longer shown (nor readable) at once, even before anything removes them.
        clock.t += 2 * DAY + 1;
        expect((await reader.list(p.policy, {})).messages).toEqual([]);
        expect(await reader.read(p.policy, ids[4]!)).toBeUndefined();
        // The next receipt removes them, and its entry says so.
        const fresh = (await app.inbox.receive(rec, "email", mail(9), { size: 10 })) as string;
        expect((await app.store.listInbound(a.id)).map((r) => r.id)).toEqual([fresh]);
        const last = home.auditLog(a.id).filter((e) => e.tool === "inbound_email").at(-1);
        expect(last.dropped).toEqual(ids.slice(2).map((id) => ({ id, reason: "expired" })));

        // The hourly sweep removes what expired with no receipt after it (inbound_expired).
        clock.t += 2 * DAY + 1;
        expect(await app.inbox.sweep()).toBe(1);
        expect(await app.store.listInbound(a.id)).toEqual([]);
        expect(home.auditLog(a.id).at(-1)).toMatchObject({ tool: "inbound_expired", decision: "dropped", dropped: [{ id: fresh, reason: "expired" }] });
      } finally {
        await app.close();
      }
    },
    120_000,
  );

  it(
    "a record re-dated or moved to another identity at rest does not open (unreadable, never shown)",
    async () => {
      const home = makeHome({}, { store: backend });
      const a = home.createIdentity({ channels: "email", email: "a@inbox.test", policy: {} });
      const b = home.createIdentity({ name: "b", channels: "email", email: "b@inbox.test", policy: {} });
      const clock = { t: Date.now() };
      const app = await openAt(home, clock);
      try {
        const recA = (await app.store.getIdentity(a.id))!;
        const first = (await app.inbox.receive(recA, "email", mail(1), { size: 10 })) as string;
        const second = (await app.inbox.receive(recA, "email", mail(2), { size: 10 })) as string;
        const later = new Date(clock.t + 1000).toISOString();
        if (backend === "file") {
          const dir = path.join(home.env.SIGIL_HOME!, "inbound");
          const f1 = path.join(dir, a.id, `${first}.json`);
          writeFileSync(f1, JSON.stringify({ ...JSON.parse(readFileSync(f1, "utf8")), receivedAt: later }));
          mkdirSync(path.join(dir, b.id), { recursive: true });
          const moved = JSON.parse(readFileSync(path.join(dir, a.id, `${second}.json`), "utf8"));
          writeFileSync(path.join(dir, b.id, `${second}.json`), JSON.stringify({ ...moved, identityId: b.id }));
          renameSync(path.join(dir, a.id, `${second}.json`), path.join(dir, a.id, `.gone`));
          expect(readdirSync(path.join(dir, b.id))).toEqual([`${second}.json`]);
        } else {
          const url = home.env.SIGIL_STORE_URL!;
          await pgQuery(url, "UPDATE sigil_inbound SET received_at = $2 WHERE id = $1", [first, later]);
          await pgQuery(url, "UPDATE sigil_inbound SET identity_id = $2 WHERE id = $1", [second, b.id]);
        }
        const none = parsePolicy({});
        if (!none.ok) throw new Error(none.error);
        const listA = await app.inbox.readerFor(a.id).list(none.policy, {});
        expect(listA).toEqual({ messages: [], unreadable: 1 });
        expect(await app.inbox.readerFor(a.id).read(none.policy, first)).toBe("unreadable");
        const listB = await app.inbox.readerFor(b.id).list(none.policy, {});
        expect(listB).toEqual({ messages: [], unreadable: 1 });
        expect(await app.inbox.readerFor(b.id).read(none.policy, second)).toBe("unreadable");
      } finally {
        await app.close();
      }
    },
    120_000,
  );
});

describe.skipIf(!pgUrl)(`sigil store migrate keeps inbound messages${pgSkipNote}`, () => {
  it(
    "an embedded home's messages arrive in PostgreSQL still sealed, and open there",
    async () => {
      const home = makeHome();
      const a = home.createIdentity({ channels: "email", email: "a@inbox.test", policy: {} });
      const clock = { t: Date.now() };
      let id: string;
      const app = await openAt(home, clock);
      try {
        id = (await app.inbox.receive((await app.store.getIdentity(a.id))!, "email", mail(7), { size: 10 })) as string;
      } finally {
        await app.close();
      }
      const url = await freshDatabaseUrl();
      home.json(["store", "migrate", "--to", url]);
      const rows = await pgQuery<{ id: string; s: string }>(url, "SELECT id, sealed::text AS s FROM sigil_inbound");
      expect(rows.map((r) => r.id)).toEqual([id]);
      expect(rows[0]!.s).not.toContain("body 7");
      const { openApp } = await import("../src/app.js");
      const pgApp = await openApp({ home: home.env.SIGIL_HOME!, env: { ...home.env, SIGIL_STORE_URL: url }, now: () => clock.t });
      try {
        const none = parsePolicy({});
        if (!none.ok) throw new Error(none.error);
        const m = await pgApp.inbox.readerFor(a.id).read(none.policy, id);
        expect(m).toMatchObject({ id, subject: "m7", text: "body 7" });
      } finally {
        await pgApp.close();
      }
    },
    120_000,
  );
});
