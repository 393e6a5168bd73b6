/**
 * PostgreSQL-specific guarantees: versioned migrations, the master key staying out of the
 * database, several `sigil serve --http` instances (separate homes, as on separate machines)
 * sharing one database, and faults — a connection killed mid-transaction, a statement timeout,
 * the database restarting. Real PostgreSQL throughout (the throwaway cluster of pg-global.ts, or a
 * cluster of this file's own for the restart test).
 */
import { afterAll, describe, expect, it } from "vitest";
import { spawn, spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import path from "node:path";
import { CLI, type Home, cleanupHomes, httpClient, makeHome, startHttpServer, text } from "./support/home.js";
import { freshDatabaseUrl, pgBin, pgConnect, pgQuery, pgSkipNote, pgUrl, withDatabase } from "./support/backends.js";
import { startCluster } from "./support/pg-cluster.mjs";
import { readLedger } from "../src/providers/card/embedded.js";
import { LATEST_SCHEMA, MIGRATIONS } from "../store/postgres/migrations.js";

/** Every migration's version, in order: what a migrated database's sigil_schema holds. */
const SCHEMA_VERSIONS = MIGRATIONS.map((m) => ({ version: m.version })).sort((a, b) => a.version - b.version);
import { openStore } from "../dist/store/index.js";

afterAll(cleanupHomes);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function waitFor<T>(what: string, probe: () => Promise<T | undefined>, ms = 10_000): Promise<T> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    const v = await probe();
    if (v !== undefined && v !== null) return v;
    await sleep(25);
  }
  throw new Error(`timed out waiting for ${what}`);
}

const charge = (key: string, amountCents = 100) => ({
  name: "card_charge",
  arguments: { amountCents, currency: "USD", merchant: "Acme", idempotencyKey: key },
});

async function approvedCharges(homes: string[], id: string): Promise<number> {
  let n = 0;
  for (const h of homes) n += (await readLedger(h, id).catch(() => [])).filter((l) => l.status === "approved").length;
  return n;
}

const masterKeyOf = (home: Home) => readFileSync(path.join(home.env.SIGIL_HOME!, "master.key"), "utf8").trim();

describe.skipIf(!pgUrl)(`PostgreSQL store${pgSkipNote}`, () => {
  it("init applies the versioned schema; instances starting together migrate once; a newer schema is refused by every command and by serve", async () => {
    const home = makeHome({}, { store: "postgres" });
    const url = home.env.SIGIL_STORE_URL!;
    expect(await pgQuery(url, "SELECT version FROM sigil_schema ORDER BY version")).toEqual(SCHEMA_VERSIONS);
    home.createIdentity({ channels: "" });

    // Four inits racing on an empty database: the schema is applied once, one registry wins.
    const empty = await freshDatabaseUrl();
    const codes = await Promise.all(
      [0, 1, 2, 3].map(
        (i) =>
          new Promise<number>((resolve) => {
            const p = spawn(process.execPath, [CLI, "init", "--json"], {
              env: { ...home.env, SIGIL_HOME: path.join(home.dir, `racer${i}`), SIGIL_STORE_URL: empty },
              stdio: "ignore",
            });
            p.on("exit", (c) => resolve(c ?? -1));
          }),
      ),
    );
    expect(codes.filter((c) => c === 0)).toHaveLength(1);
    expect(await pgQuery(empty, "SELECT version FROM sigil_schema ORDER BY version")).toEqual(SCHEMA_VERSIONS);

    await pgQuery(url, "INSERT INTO sigil_schema (version, description) VALUES (99, 'from a newer sigil')");
    const before = await pgQuery(url, "SELECT count(*)::int AS n FROM sigil_audit_entries");
    for (const args of [["identity", "list"], ["audit", "verify"], ["serve", "--http", "--port", "0"], ["init"]]) {
      const r = spawnSync(process.execPath, [CLI, ...args], { env: home.env, encoding: "utf8", timeout: 20_000 });
      expect(r.status, args.join(" ")).toBe(1);
      expect(r.stderr).toMatch(new RegExp(`schema is version 99, newer than this sigil understands \\(${LATEST_SCHEMA}\\)`));
    }
    expect(await pgQuery(url, "SELECT count(*)::int AS n FROM sigil_audit_entries")).toEqual(before);
  });

  it("the master key never goes into the database: its check value does, and a wrong key is refused", async () => {
    const home = makeHome({}, { store: "postgres" });
    const url = home.env.SIGIL_STORE_URL!;
    home.createIdentity({ channels: "vault" });
    home.cli(["secret", "put", home.json(["identity", "list"])[0].id, "k"], { input: "s3cret-value" });
    const key = masterKeyOf(home);
    const dump = await pgQuery(
      url,
      `SELECT (SELECT string_agg(meta::text, '') FROM sigil_meta) || (SELECT string_agg(record::text, '') FROM sigil_identities) ||
              coalesce((SELECT string_agg(record::text, '') FROM sigil_secrets), '') || (SELECT string_agg(line, '') FROM sigil_audit_entries) AS all`,
    );
    expect(dump[0].all.length).toBeGreaterThan(100);
    expect(dump[0].all).not.toContain(key);
    expect(dump[0].all).not.toContain("s3cret-value");
    const wrong = Buffer.alloc(32, 7).toString("base64");
    const r = home.cli(["identity", "list"], { env: { SIGIL_MASTER_KEY: wrong } });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/master key does not belong/);
  });

  it("3 serve --http instances with separate homes (as on 3 machines) racing 30 concurrent $1.00 charges against $15.00: exactly 15 approved; rotation and revocation reach every instance on its next call", async () => {
    const home = makeHome({ SIGIL_CARD_LATENCY_MS: "30" }, { store: "postgres" });
    const a = home.createIdentity({ channels: "card", policy: { cardSpendingLimitCents: 1500 } });
    const key = masterKeyOf(home);
    const machines = [0, 1, 2].map((i) => path.join(home.dir, `machine${i}`));
    // Each instance: its own (empty) home directory, the master key from the environment.
    const servers = await Promise.all(machines.map((dir) => startHttpServer(home, { SIGIL_HOME: dir, SIGIL_MASTER_KEY: key })));
    try {
      const clients = await Promise.all(servers.map((s) => httpClient(s.url, a.token)));
      const results = await Promise.all(
        clients.flatMap(({ client }, m) => Array.from({ length: 10 }, (_, i) => client.callTool(charge(`race-${m}-${i}`), undefined, { timeout: 60_000 }))),
      );
      const approved = results.filter((r) => !r.isError);
      expect(approved).toHaveLength(15);
      for (const r of results.filter((r) => r.isError)) expect(text(r)).toMatch(/^denied: spending_limit: /);
      expect(await approvedCharges(machines, a.id)).toBe(15); // the processors charged exactly that
      const log = home.auditLog(a.id);
      expect(log.filter((e) => e.phase === "intent").reduce((s, e) => s + e.amountCents, 0)).toBe(1500);
      expect(new Set(log.filter((e) => e.phase === "intent").map((e) => e.instance)).size).toBeGreaterThan(1);

      const rotated = home.json(["identity", "rotate-key", a.id]);
      for (const { client } of clients) {
        const who = await client.callTool({ name: "whoami", arguments: {} });
        expect((who.structuredContent as any).receipt.keyId).toBe(rotated.keyId);
      }
      home.json(["identity", "revoke", a.id]);
      // Over HTTP every request authenticates: a revoked token gets 401 on its very next call, on every instance.
      for (const { client } of clients) {
        const r = await client.callTool({ name: "whoami", arguments: {} }).then(text, (err: Error) => err.message);
        expect(r).toMatch(/Unauthorized: a valid bearer token is required/);
      }
      expect(home.json(["audit", "verify", a.id]).ok).toBe(true);
      await Promise.all(clients.map((c) => c.client.close().catch(() => {})));
    } finally {
      await Promise.all(servers.map((s) => s.stop()));
    }
  });

  it("a connection killed mid-transaction (pg_terminate_backend while it waits for the chain lock): the call goes through once, on a fresh connection", async () => {
    const home = makeHome({ SIGIL_CARD_LATENCY_MS: "0" }, { store: "postgres" });
    const url = home.env.SIGIL_STORE_URL!;
    const a = home.createIdentity({ channels: "card", policy: { cardSpendingLimitCents: 1000 } });
    const srv = await startHttpServer(home);
    try {
      const { client } = await httpClient(srv.url, a.token);
      expect((await client.callTool({ name: "whoami", arguments: {} })).isError).toBeFalsy();
      const holder = await pgConnect(url);
      await holder.query("BEGIN");
      await holder.query("SELECT * FROM sigil_chain_heads WHERE identity_id = $1 FOR UPDATE", [a.id]);
      const call = client.callTool(charge("k1", 300));
      const pid = await waitFor("the instance to wait on the chain lock", async () =>
        (await pgQuery(url, "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'sigil-chain' AND wait_event_type = 'Lock'"))[0]?.pid,
      );
      expect((await pgQuery(url, "SELECT pg_terminate_backend($1) AS ok", [pid]))[0].ok).toBe(true);
      await holder.query("COMMIT");
      await holder.end();
      const r = await call;
      expect(text(r)).not.toMatch(/^denied|^error/);
      expect(await approvedCharges([home.env.SIGIL_HOME!], a.id)).toBe(1);
      // The retry with the same key replays; nothing is charged twice.
      const again = await client.callTool(charge("k1", 300));
      expect((again.structuredContent as any).chargeId).toBe((r.structuredContent as any).chargeId);
      expect(await approvedCharges([home.env.SIGIL_HOME!], a.id)).toBe(1);
      const log = home.auditLog(a.id).filter((e) => e.tool === "card_charge");
      expect(log.map((e) => [e.phase, e.decision])).toEqual([
        ["intent", "allow"],
        ["result", "ok"],
        ["call", "replayed"],
      ]);
      expect(home.json(["audit", "verify", a.id]).ok).toBe(true);
      await client.close();
    } finally {
      await srv.stop();
    }
  });

  it("a connection killed while an entry is being written: the append is resolved (written once), or refused if the chain moved on — never forked", async () => {
    const home = makeHome({}, { store: "postgres" });
    const url = home.env.SIGIL_STORE_URL!;
    const mine = openStore({ home: home.env.SIGIL_HOME!, storeUrl: url });
    const other = openStore({ home: home.env.SIGIL_HOME!, storeUrl: url });
    const line = (seq: number, prev: string, tag: string) => JSON.stringify({ seq, prev, hash: `${tag}${seq}`.padEnd(64, "0") });
    const killMyChainConnection = () =>
      pgQuery(
        url,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'sigil-chain' AND state LIKE 'idle in transaction%'",
      );
    try {
      // 1. killed after building, nobody else wrote: the same entries are written on a fresh connection.
      const id1 = "id_" + "a1".repeat(10);
      const r1 = await mine.audit.withChain(id1, { position: 0 }, async () => {
        expect((await killMyChainConnection()).length).toBe(1);
        return { lines: [line(1, "0".repeat(64), "m")], value: "written" };
      });
      expect(r1.value).toBe("written");
      const rows1 = await pgQuery(url, "SELECT seq::int AS seq, line FROM sigil_audit_entries WHERE identity_id = $1", [id1]);
      expect(rows1.map((r) => JSON.parse(r.line).hash.slice(0, 2))).toEqual(["m1"]);

      // 2. killed, and another instance appended meanwhile: ours is refused, theirs stands alone.
      const id2 = "id_" + "b2".repeat(10);
      await expect(
        mine.audit.withChain(id2, { position: 0 }, async () => {
          await killMyChainConnection();
          await other.audit.withChain(id2, { position: 0 }, async () => ({ lines: [line(1, "0".repeat(64), "o")], value: null }));
          return { lines: [line(1, "0".repeat(64), "m")], value: null };
        }),
      ).rejects.toMatchObject({ code: "unavailable" });
      const rows2 = await pgQuery(url, "SELECT line FROM sigil_audit_entries WHERE identity_id = $1", [id2]);
      expect(rows2.map((r) => JSON.parse(r.line).hash.slice(0, 2))).toEqual(["o1"]);
    } finally {
      await mine.close();
      await other.close();
    }
  });

  it("a statement timeout: the call is refused at once with a clear error, nothing is charged or half-written; a timeout while recording the result leaves the charge audited as unknown (reserved), never repeated", async () => {
    const home = makeHome({ SIGIL_CARD_LATENCY_MS: "0" }, { store: "postgres" });
    const url = home.env.SIGIL_STORE_URL!;
    const a = home.createIdentity({ channels: "card", policy: { cardSpendingLimitCents: 1000 } });
    const srv = await startHttpServer(home, { SIGIL_STORE_URL: `${url}?statement_timeout=400` });
    try {
      const { client } = await httpClient(srv.url, a.token);
      expect((await client.callTool(charge("ok-1"))).isError).toBeFalsy();
      const entriesBefore = home.auditLog(a.id).length;
      const holder = await pgConnect(url);
      await holder.query("BEGIN");
      await holder.query("SELECT * FROM sigil_chain_heads WHERE identity_id = $1 FOR UPDATE", [a.id]);
      const t0 = Date.now();
      const r = await client.callTool(charge("blocked", 200));
      expect(Date.now() - t0).toBeLessThan(30_000); // generous: the row stays locked until after the call, so only sigil's own bound ends it
      expect(text(r)).toMatch(/^denied: audit_unavailable: the audit log cannot be written, so nothing was done \(ref_[0-9a-f]+\)\.$/);
      await holder.query("COMMIT");
      expect(home.auditLog(a.id).length).toBe(entriesBefore); // no half-written entry
      expect(await approvedCharges([home.env.SIGIL_HOME!], a.id)).toBe(1);
      expect((await client.callTool(charge("ok-2"))).isError).toBeFalsy(); // recovered

      // Now the timeout hits the result entry: the charge happened, its intent is durable.
      await srv.stop();
      const slow = await startHttpServer(home, { SIGIL_STORE_URL: `${url}?statement_timeout=400`, SIGIL_CARD_LATENCY_MS: "1500" });
      const c2 = await httpClient(slow.url, a.token);
      const pending = c2.client.callTool(charge("slow", 500));
      await waitFor("the intent entry", async () =>
        (await pgQuery(url, `SELECT 1 AS x FROM sigil_audit_entries WHERE identity_id = $1 AND line LIKE '%"phase":"intent"%' AND line LIKE '%"key":"slow"%'`, [a.id]))[0],
      );
      await holder.query("BEGIN");
      await holder.query("SELECT * FROM sigil_chain_heads WHERE identity_id = $1 FOR UPDATE", [a.id]);
      const res = await pending;
      await holder.query("COMMIT");
      await holder.end();
      expect(text(res)).toMatch(/^error: audit_unavailable: the action was carried out .*but its result could not be recorded/);
      expect(await approvedCharges([home.env.SIGIL_HOME!], a.id)).toBe(3);
      await c2.client.close();
      await slow.stop();
      // The next instance finds the intent of an instance that is gone and records it as unknown.
      const next = await startHttpServer(home);
      const c3 = await httpClient(next.url, a.token);
      expect((await c3.client.callTool({ name: "whoami", arguments: {} })).isError).toBeFalsy();
      const log = home.auditLog(a.id);
      const intent = log.find((e) => e.phase === "intent" && e.idem?.key === "slow");
      expect(log.find((e) => e.phase === "result" && e.intent === intent.seq)).toMatchObject({ decision: "unknown", reason: "orphaned_intent" });
      // unknown keeps the $5.00 reserved: 1+1+5 spent of 10, so $4.00 more is refused
      expect(text(await c3.client.callTool(charge("too-much", 400)))).toMatch(/^denied: spending_limit: /);
      expect(home.json(["audit", "verify", a.id]).ok).toBe(true);
      await c3.client.close();
      await next.stop();
    } finally {
      await srv.stop();
    }
  });

  it.skipIf(!pgBin)("the database restarting: calls while it is down get a clear error and nothing happens; a call during a short restart rides through; the instance recovers", async () => {
    const cluster = await startCluster({ bin: pgBin });
    try {
      await pgQuery(cluster.url, "CREATE DATABASE sigil");
      const home = makeHome({ SIGIL_STORE_URL: withDatabase(cluster.url, "sigil"), SIGIL_CARD_LATENCY_MS: "0" });
      const a = home.createIdentity({ channels: "card", policy: { cardSpendingLimitCents: 1000 } });
      const srv = await startHttpServer(home);
      try {
        const { client } = await httpClient(srv.url, a.token);
        expect((await client.callTool(charge("before"))).isError).toBeFalsy();

        cluster.stopServer("fast");
        const t0 = Date.now();
        const down = await client.callTool(charge("while-down")).then(
          (r) => text(r),
          (err: Error) => err.message,
        );
        expect(Date.now() - t0).toBeLessThan(20_000);
        expect(down).toMatch(/Service unavailable: the store cannot be reached; nothing was done, retry later \(ref_[0-9a-f]+\)/);

        // A restart shorter than the retry window is ridden through.
        const during = client.callTool(charge("during-restart"));
        await sleep(800);
        cluster.startServer();
        expect(text(await during)).not.toMatch(/^denied|^error/);
        expect((await client.callTool(charge("after"))).isError).toBeFalsy();

        expect(await approvedCharges([home.env.SIGIL_HOME!], a.id)).toBe(3);
        const keys = home.auditLog(a.id).filter((e) => e.phase === "intent").map((e) => e.idem.key);
        expect(keys).toEqual(["before", "during-restart", "after"]);
        expect(home.json(["audit", "verify", a.id]).ok).toBe(true);
        await client.close();
      } finally {
        await srv.stop();
      }
    } finally {
      cluster.stop();
    }
  });
});
