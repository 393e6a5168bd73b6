#!/usr/bin/env node
/**
 * PostgreSQL store benchmark: governed send_sms throughput with 1, 2 and 4 `sigil serve --http`
 * instances on ONE PostgreSQL database (each instance with its own home directory, as on separate
 * machines, the master key from SIGIL_MASTER_KEY), and the card limit holding while instances race.
 *
 *   node bench/pg.mjs [--json] [--seconds 5] [--instances 1,2,4] [--identities 8] [--concurrency 8]
 *   import { benchPg } from "./bench/pg.mjs"; const report = await benchPg({ seconds: 3 });
 *
 * PostgreSQL: SIGIL_BENCH_PG_URL (a superuser URL; a database per run is created on it), else a
 * throwaway cluster from the local installation (test/support/pg-cluster.mjs), stopped at the end.
 * Each send_sms is fully governed: policy, a committed intent entry, the offline outbox provider
 * (a durable file), a committed result entry. The figures measure; nothing is asserted except that
 * the card race never exceeds its limit (reported as `cardRace.limitHeld`).
 */
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import pg from "pg";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { findPgBin, startCluster, withDatabase } from "../test/support/pg-cluster.mjs";

export { findPgBin };

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const CLI = path.join(ROOT, "dist/cli.js");

async function createDatabase(adminUrl, name) {
  const c = new pg.Client({ connectionString: adminUrl });
  await c.connect();
  try {
    await c.query(`CREATE DATABASE "${name}"`);
  } finally {
    await c.end();
  }
  return withDatabase(adminUrl, name);
}

function cli(env, args) {
  const r = spawnSync(process.execPath, [CLI, ...args, "--json"], { env, encoding: "utf8", timeout: 60_000 });
  if (r.status !== 0) throw new Error(`sigil ${args.join(" ")}: ${r.stderr}`);
  return JSON.parse(r.stdout);
}

function startServer(env) {
  const proc = spawn(process.execPath, [CLI, "serve", "--http", "--port", "0"], { env, stdio: ["ignore", "ignore", "pipe"] });
  return new Promise((resolve, reject) => {
    let buf = "";
    const t = setTimeout(() => reject(new Error(`server did not start: ${buf}`)), 20_000);
    proc.stderr.on("data", (d) => {
      buf += d.toString();
      const m = /serving Streamable HTTP at (\S+)/.exec(buf);
      if (m) {
        clearTimeout(t);
        resolve({
          url: m[1],
          stop: () =>
            new Promise((r) => {
              if (proc.exitCode !== null) return r();
              proc.once("exit", () => r());
              proc.kill("SIGTERM");
            }),
        });
      }
    });
    proc.on("exit", (code) => reject(new Error(`server exited ${code}: ${buf}`)));
  });
}

async function connect(url, token) {
  const transport = new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers: { Authorization: `Bearer ${token}` } } });
  const client = new Client({ name: "sigil-bench-pg", version: "1.0.0" });
  await client.connect(transport);
  return client;
}

const pct = (sorted, p) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] : 0);

/** One deployment: a fresh database, `instances` servers, `identities` identities. */
async function deployment(adminUrl, tag, instances, identities, identityOpts) {
  const dir = mkdtempSync(path.join(os.tmpdir(), `sigil-bench-pg-${tag}-`));
  const url = await createDatabase(adminUrl, `sigil_bench_${tag}_${process.pid}_${Date.now()}`);
  const base = { ...process.env, SIGIL_STORE_URL: url, SIGIL_HOME: path.join(dir, "admin") };
  delete base.SIGIL_SMTP_URL;
  delete base.TWILIO_ACCOUNT_SID;
  delete base.TWILIO_AUTH_TOKEN;
  cli(base, ["init"]);
  const masterKey = readFileSync(path.join(base.SIGIL_HOME, "master.key"), "utf8").trim();
  const ids = [];
  for (let i = 0; i < identities; i++) {
    const args = ["identity", "create", "--name", `bench-${i}`, "--channels", identityOpts.channels, "--policy", JSON.stringify(identityOpts.policy)];
    if (identityOpts.phone) args.push("--phone", identityOpts.phone);
    ids.push(cli(base, args));
  }
  const homes = Array.from({ length: instances }, (_, i) => path.join(dir, `machine${i}`));
  const servers = await Promise.all(homes.map((h) => startServer({ ...base, SIGIL_HOME: h, SIGIL_MASTER_KEY: masterKey, ...identityOpts.env })));
  return {
    ids,
    homes,
    servers,
    async close() {
      await Promise.all(servers.map((s) => s.stop()));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** send_sms throughput with `instances` servers: every instance gets `concurrency` callers, spread over the identities. */
async function smsThroughput(adminUrl, instances, { seconds, identities, concurrency }) {
  const d = await deployment(adminUrl, `sms${instances}`, instances, identities, {
    channels: "sms",
    phone: "+14155550100",
    policy: { allowedPhoneCountries: ["US"] },
    env: {},
  });
  try {
    const callers = [];
    for (let s = 0; s < instances; s++) {
      for (let c = 0; c < concurrency; c++) {
        const who = d.ids[(s * concurrency + c) % d.ids.length];
        callers.push(await connect(d.servers[s].url, who.token));
      }
    }
    // warm-up: every caller once (sessions, chain state, pools)
    await Promise.all(callers.map((c) => c.callTool({ name: "send_sms", arguments: { to: "+14155550123", body: "warm-up" } })));
    const lat = [];
    let ok = 0;
    let errors = 0;
    const t0 = performance.now();
    const end = t0 + seconds * 1000;
    let n = 0;
    await Promise.all(
      callers.map(async (client) => {
        while (performance.now() < end) {
          const s = performance.now();
          const r = await client.callTool({ name: "send_sms", arguments: { to: "+14155550123", body: `bench ${++n}` } });
          lat.push(performance.now() - s);
          if (r.isError) errors++;
          else ok++;
        }
      }),
    );
    const elapsed = (performance.now() - t0) / 1000;
    lat.sort((a, b) => a - b);
    await Promise.all(callers.map((c) => c.close().catch(() => {})));
    return {
      instances,
      callers: callers.length,
      identities,
      seconds: Number(elapsed.toFixed(2)),
      ok,
      errors,
      perSecond: Number((ok / elapsed).toFixed(1)),
      p50ms: Number(pct(lat, 50).toFixed(2)),
      p95ms: Number(pct(lat, 95).toFixed(2)),
    };
  } finally {
    await d.close();
  }
}

/** 4 instances × `perInstance` concurrent $1.00 charges on one identity with a $`limit` limit. */
async function cardRace(adminUrl, { instances = 4, perInstance = 20, limitCents = 2500 } = {}) {
  const d = await deployment(adminUrl, "card", instances, 1, {
    channels: "card",
    policy: { cardSpendingLimitCents: limitCents },
    env: { SIGIL_CARD_LATENCY_MS: "20" },
  });
  try {
    const token = d.ids[0].token;
    const clients = await Promise.all(d.servers.map((s) => connect(s.url, token)));
    const t0 = performance.now();
    const results = await Promise.all(
      clients.flatMap((client, s) =>
        Array.from({ length: perInstance }, (_, i) =>
          client.callTool({ name: "card_charge", arguments: { amountCents: 100, currency: "USD", merchant: "Bench", idempotencyKey: `race-${s}-${i}` } }, undefined, { timeout: 120_000 }),
        ),
      ),
    );
    const seconds = (performance.now() - t0) / 1000;
    await Promise.all(clients.map((c) => c.close().catch(() => {})));
    const approved = results.filter((r) => !r.isError).length;
    const refusedByLimit = results.filter((r) => r.isError && /^denied: spending_limit: /.test(r.content?.[0]?.text ?? "")).length;
    // What the (embedded, per-instance) processors actually charged.
    const { readLedger } = await import(path.join(ROOT, "dist/src/providers/card/embedded.js"));
    let charged = 0;
    for (const h of d.homes) charged += (await readLedger(h, d.ids[0].id).catch(() => [])).filter((l) => l.status === "approved").length;
    return {
      instances,
      attempts: results.length,
      limitCents,
      approved,
      refusedByLimit,
      otherErrors: results.length - approved - refusedByLimit,
      chargedCents: charged * 100,
      limitHeld: charged * 100 <= limitCents && approved * 100 <= limitCents,
      seconds: Number(seconds.toFixed(2)),
    };
  } finally {
    await d.close();
  }
}

/**
 * Runs the whole benchmark. Options: `seconds` per throughput run (default 5), `instances`
 * (default [1, 2, 4]), `identities` (default 8), `concurrency` callers per instance (default 8),
 * `pgUrl` (default SIGIL_BENCH_PG_URL, else a throwaway cluster), `card` (default true).
 */
export async function benchPg(opts = {}) {
  const seconds = opts.seconds ?? 5;
  const counts = opts.instances ?? [1, 2, 4];
  const identities = opts.identities ?? 8;
  const concurrency = opts.concurrency ?? 8;
  let cluster;
  let adminUrl = opts.pgUrl ?? process.env.SIGIL_BENCH_PG_URL;
  if (!adminUrl) {
    // Durable settings (fsync on) so the figures mean something: this is not the test cluster.
    cluster = await startCluster({ settings: { fsync: "on", synchronous_commit: "on", full_page_writes: "on" } });
    adminUrl = cluster.url;
  }
  try {
    const sms = [];
    for (const n of counts) sms.push(await smsThroughput(adminUrl, n, { seconds, identities, concurrency }));
    const card = opts.card === false ? undefined : await cardRace(adminUrl);
    return {
      store: "postgres",
      server: cluster ? `throwaway cluster (${cluster.bin})` : "SIGIL_BENCH_PG_URL",
      cpus: os.cpus().length,
      sendSms: sms,
      cardRace: card,
    };
  } finally {
    cluster?.stop();
  }
}

const isMain = process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url);
if (isMain) {
  const argv = process.argv.slice(2);
  const opt = (name) => {
    const i = argv.indexOf(name);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  const report = await benchPg({
    seconds: opt("--seconds") ? Number(opt("--seconds")) : undefined,
    instances: opt("--instances") ? opt("--instances").split(",").map(Number) : undefined,
    identities: opt("--identities") ? Number(opt("--identities")) : undefined,
    concurrency: opt("--concurrency") ? Number(opt("--concurrency")) : undefined,
  });
  if (argv.includes("--json")) {
    process.stdout.write(JSON.stringify(report, null, 2) + "\n");
  } else {
    console.log(`PostgreSQL store (${report.server}), ${report.cpus} CPUs — governed send_sms over Streamable HTTP`);
    console.log("instances  callers  ok/s     p50 ms  p95 ms  errors");
    for (const r of report.sendSms) {
      console.log(`${String(r.instances).padEnd(11)}${String(r.callers).padEnd(9)}${String(r.perSecond).padEnd(9)}${String(r.p50ms).padEnd(8)}${String(r.p95ms).padEnd(8)}${r.errors}`);
    }
    if (report.cardRace) {
      const c = report.cardRace;
      console.log(
        `card race: ${c.instances} instances x ${c.attempts / c.instances} concurrent $1.00 charges, limit $${(c.limitCents / 100).toFixed(2)}: ` +
          `${c.approved} approved, ${c.refusedByLimit} refused by the limit, charged $${(c.chargedCents / 100).toFixed(2)} — limit ${c.limitHeld ? "HELD" : "EXCEEDED"}`,
      );
    }
  }
  if (report.cardRace && !report.cardRace.limitHeld) process.exitCode = 1;
}
