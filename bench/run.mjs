#!/usr/bin/env node
/**
 * `npm run bench`: sigil against a bare MCP server (bench/baseline-server.mjs), on this machine, in
 * one run. Prints a table (or one JSON document with --json) with each figure's ratio to the
 * baseline and whether the issue's targets hold. It measures; it asserts nothing (npm test has no
 * timing checks).
 *
 *   node bench/run.mjs [--json] [--quick] [--identities N] [--only tools,cold,calls,recovery,verify,registry,sessions,pg,console]
 *                      [--log-sizes 10000,100000,1000000] [--log-home DIR (keep the logs there; reuse them)]
 *   node bench/run.mjs --render results.json     (the table of a saved --json run)
 *
 * Both servers are driven the same way: the SDK Client over StdioClientTransport, spawned with the
 * same node binary. sigil runs with a fresh home, an identity with the `sms` channel, policy
 * {"allowedPhoneCountries":["US"]} and the offline outbox provider, so every send_sms writes a
 * durable intent entry, a durable outbox file and a durable result entry before it answers.
 */
import { createPublicKey, createPrivateKey, sign as nodeSign, verify as nodeVerify } from "node:crypto";
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport, getDefaultEnvironment } from "@modelcontextprotocol/sdk/client/stdio.js";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const CLI = path.join(ROOT, "dist/cli.js");
const BASELINE = path.join(ROOT, "bench/baseline-server.mjs");
const dist = (p) => import(path.join(ROOT, "dist", p));

const argv = process.argv.slice(2);
const flag = (name) => argv.includes(name);
const opt = (name, dflt) => {
  const i = argv.indexOf(name);
  return i >= 0 && argv[i + 1] ? Number(argv[i + 1]) : dflt;
};
const JSON_OUT = flag("--json");
const QUICK = flag("--quick");
const BIG = opt("--identities", 10_000);
const onlyIdx = argv.indexOf("--only");
const ONLY = onlyIdx >= 0 ? new Set(argv[onlyIdx + 1].split(",")) : undefined; // tools,cold,calls,recovery,verify,registry,sessions,pg,console
const logHomeIdx = argv.indexOf("--log-home");
const LOG_HOME = logHomeIdx >= 0 ? argv[logHomeIdx + 1] : undefined;
const sizesIdx = argv.indexOf("--log-sizes");
/** Audit log sizes for the first-call rows (besides the empty log); the largest is also verified. */
const LOG_SIZES = sizesIdx >= 0 ? argv[sizesIdx + 1].split(",").map(Number) : QUICK ? [10_000, 100_000] : [10_000, 100_000, 1_000_000];
const want = (section) => !ONLY || ONLY.has(section);
const N = {
  cold: QUICK ? 5 : 11,
  warm: QUICK ? 100 : 300,
  seq: QUICK ? 500 : 2000,
  tputMs: QUICK ? 1500 : 3000,
  inflight: 16,
  registrySamples: QUICK ? 30 : 100,
  firstCalls: QUICK ? 3 : 5,
  rotations: QUICK ? 10 : 30,
};

const log = (...a) => process.stderr.write(a.join(" ") + "\n");
const median = (xs) => quantile(xs, 0.5);
function quantile(xs, q) {
  const s = [...xs].sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const i = Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1));
  return s[i];
}

// ---- servers ---------------------------------------------------------------------------------

function serverSpec(kind, ctx) {
  if (kind === "baseline") return { args: [BASELINE], env: {} };
  return { args: [CLI, "serve"], env: { SIGIL_HOME: ctx.home, SIGIL_TOKEN: ctx.token } };
}

async function connect(kind, ctx) {
  const spec = serverSpec(kind, ctx);
  const transport = new StdioClientTransport({
    command: process.execPath,
    args: spec.args,
    env: { ...getDefaultEnvironment(), ...spec.env },
    stderr: "pipe",
  });
  let stderr = "";
  transport.stderr?.on("data", (d) => (stderr += d.toString()));
  const client = new Client({ name: "sigil-bench", version: "1.0.0" }, { capabilities: {} });
  const t0 = performance.now();
  await client.connect(transport);
  const { tools } = await client.listTools();
  const coldMs = performance.now() - t0;
  return { client, transport, coldMs, tools: tools.map((t) => t.name), stderr: () => stderr, pid: transport.pid };
}

function memoryOf(pid) {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const kb = (k) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, "m").exec(status)?.[1] ?? NaN);
  return { rssMB: kb("VmRSS") / 1024, hwmMB: kb("VmHWM") / 1024 };
}

let smsCounter = 0;
const CALLS = {
  whoami: () => ({ name: "whoami", arguments: {} }),
  send_sms: () => ({ name: "send_sms", arguments: { to: "+14155550123", body: `bench message ${++smsCounter}` } }),
};

async function call(client, tool) {
  const r = await client.callTool(CALLS[tool]());
  if (r.isError) throw new Error(`${tool} failed: ${r.content?.[0]?.text}`);
  return r;
}

async function sequential(client, tool, n) {
  const lat = new Array(n);
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    await call(client, tool);
    lat[i] = performance.now() - t;
  }
  return { p50: quantile(lat, 0.5), p99: quantile(lat, 0.99) };
}

async function throughput(client, tool, inflight, ms) {
  let done = 0;
  const end = performance.now() + ms;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: inflight }, async () => {
      while (performance.now() < end) {
        await call(client, tool);
        done++;
      }
    }),
  );
  return done / ((performance.now() - t0) / 1000);
}

// ---- sigil homes (in-process, through the application: src/app.ts) -------------------------------------

const SMS_IDENTITY = { channels: ["sms"], phone: "+14155550100", policy: { allowedPhoneCountries: ["US"] } };

async function makeHome(dir, count, onProgress) {
  const { initHome, openApp } = await dist("src/app.js");
  const home = path.join(dir, "home");
  const env = { SIGIL_HOME: home };
  await initHome({ home, env });
  const sigil = await openApp({ home, env });
  const ids = new Array(count);
  let next = 0;
  const t0 = performance.now();
  // Creation goes through app.identities.create (the same code as `sigil identity create`), several
  // at a time: each identity has its own locks, files and chain, so they do not contend.
  await Promise.all(
    Array.from({ length: Math.min(64, count) }, async () => {
      for (;;) {
        const i = next++;
        if (i >= count) return;
        ids[i] = await sigil.identities.create({ name: `agent ${i}`, ...SMS_IDENTITY });
        if (onProgress && (i + 1) % 1000 === 0) onProgress(i + 1, performance.now() - t0);
      }
    }),
  );
  return { home, env, sigil, ids, createMs: performance.now() - t0 };
}

// ---- sections --------------------------------------------------------------------------------

async function coldStart(ctx) {
  const out = { sigil: [], baseline: [] };
  for (let i = 0; i < N.cold; i++) {
    for (const kind of i % 2 ? ["baseline", "sigil"] : ["sigil", "baseline"]) {
      const c = await connect(kind, ctx);
      out[kind].push(c.coldMs);
      await c.client.close();
    }
  }
  return { sigil: median(out.sigil), baseline: median(out.baseline), samples: out };
}

async function perServer(kind, ctx, tools) {
  const c = await connect(kind, ctx);
  await new Promise((r) => setTimeout(r, 300));
  const idle = memoryOf(c.pid);
  const res = { idleMB: idle.rssMB, latency: {}, throughput: {} };
  for (const tool of tools) {
    for (let i = 0; i < N.warm; i++) await call(c.client, tool);
    res.latency[tool] = await sequential(c.client, tool, N.seq);
  }
  for (const tool of tools) res.throughput[tool] = await throughput(c.client, tool, N.inflight, N.tputMs);
  res.peakMB = memoryOf(c.pid).hwmMB;
  await c.client.close();
  return res;
}

function rawVerifyRate(ms = 1000) {
  const seed = Buffer.alloc(32, 7);
  const priv = createPrivateKey({ key: Buffer.concat([Buffer.from("302e020100300506032b657004220420", "hex"), seed]), format: "der", type: "pkcs8" });
  const pub = createPublicKey(priv);
  const msg = Buffer.from("sigil-audit-entry-v1\n" + "ab".repeat(32));
  const sig = nodeSign(null, msg, priv);
  for (let i = 0; i < 200; i++) nodeVerify(null, msg, pub, sig);
  let n = 0;
  const t0 = performance.now();
  while (performance.now() - t0 < ms) {
    for (let i = 0; i < 100; i++) nodeVerify(null, msg, pub, sig);
    n += 100;
  }
  return n / ((performance.now() - t0) / 1000);
}


// ---- recovery: a new process's first call with a long audit log; verifying a long log ------------

async function firstCall(ctx) {
  const t0 = performance.now();
  const c = await connect("sigil", ctx);
  const t1 = performance.now();
  await call(c.client, "whoami");
  const t2 = performance.now();
  await c.client.close();
  return { total: t2 - t0, first: t2 - t1 };
}

async function bigLogs(dir, sizes) {
  const { initHome, openApp } = await dist("src/app.js");
  const { bigIdentity } = await import("./biglog.mjs");
  // --log-home DIR: the logs are written there once and reused by later runs (a 1,000,000-entry
  // log takes many minutes to write on a loaded machine); without it, a temporary home.
  const kept = LOG_HOME !== undefined;
  const home = kept ? path.resolve(LOG_HOME) : path.join(dir, "biglogs");
  const env = { SIGIL_HOME: home };
  const index = path.join(home, "bench-logs.json");
  const ids = new Map();
  if (kept && existsSync(index)) for (const [n, v] of JSON.parse(readFileSync(index, "utf8"))) ids.set(n, v);
  else await initHome({ home, env });
  for (const n of [1, ...sizes]) {
    if (ids.has(n)) continue;
    const t0 = performance.now();
    ids.set(n, await bigIdentity(openApp, { home, env, entries: n, name: `log ${n}` }));
    if (n > 1) log(`  wrote a ${n}-entry log (${((performance.now() - t0) / 1000).toFixed(1)} s)`);
    if (kept) writeFileSync(index, JSON.stringify([...ids]));
  }
  return { home, env, ids, kept };
}

async function recovery(logs) {
  const sizes = [...logs.ids.keys()];
  const samples = new Map(sizes.map((n) => [n, []]));
  for (let i = 0; i < N.firstCalls; i++) {
    for (const n of i % 2 ? [...sizes].reverse() : sizes) samples.get(n).push(await firstCall({ home: logs.home, token: logs.ids.get(n).token }));
  }
  // The same without the snapshot (what every new process paid before): once per size.
  const replay = new Map();
  for (const n of sizes.filter((x) => x > 1 && x <= 100_000)) {
    const id = logs.ids.get(n).id;
    rmSync(path.join(logs.home, "audit", `${id}.snapshot`), { force: true });
    replay.set(n, await firstCall({ home: logs.home, token: logs.ids.get(n).token }));
  }
  return sizes.map((n) => ({
    entries: n,
    firstMs: median(samples.get(n).map((s) => s.first)),
    totalMs: median(samples.get(n).map((s) => s.total)),
    replayFirstMs: replay.get(n)?.first,
  }));
}

async function auditVerifyBig(logs, entries) {
  const { initHome, openApp } = await dist("src/app.js");
  const sigil = await openApp({ home: logs.home, env: logs.env });
  try {
    const t0 = performance.now();
    const r = await sigil.audit.verify(logs.ids.get(entries).id);
    const ms = performance.now() - t0;
    if (!r.ok) throw new Error(`the bench log does not verify: ${JSON.stringify(r.identities[0])}`);
    return { entries: r.identities[0].entries, rate: r.identities[0].entries / (ms / 1000) };
  } finally {
    await sigil.close();
  }
}

/**
 * The web console's pages (SPEC §10: ≤ 100 ms server time per page): `serve --http`'s server in
 * this process, a root admin session, each page fetched over loopback `samples` times after one
 * warm-up; the figure is request → last byte (an upper bound on server time). `home` holds the
 * identities (and `bigId` a large log, for the timeline). The baseline, measured the same way in
 * the same server and run: its stylesheet (`/console/assets/console.css`: the HTTP server's Host
 * checks and the console's routing, no session, no store) — the floor a page cannot go below here.
 * The machine's load average is recorded before and after (the machine is shared).
 */
async function consolePages(home, env, paths, samples = QUICK ? 10 : 30) {
  const { openApp } = await dist("src/app.js");
  const { serveHttp } = await dist("src/server/http.js");
  const { consoleFor } = await dist("src/console/index.js");
  const app = await openApp({ home, env });
  const served = await serveHttp(app, { host: "127.0.0.1", port: 0 });
  try {
    const origin = new URL(served.url).origin;
    const meta = await app.store.meta();
    const { setCookie } = consoleFor(app).sessions.create({ kind: "admin", tokenHash: meta.adminTokenHash }, "token");
    const cookie = [setCookie].flat()[0].split(";")[0];
    const out = {};
    const load = { before: os.loadavg()[0] };
    let older; // the "Older entries" link of the last page fetched ("{older}" in `paths`)
    for (let [label, p] of Object.entries({ "baseline: the console's stylesheet (same server)": "/console/assets/console.css", ...paths })) {
      if (p === "{older}") p = older;
      const times = [];
      for (let i = 0; i <= samples; i++) {
        const t0 = performance.now();
        const r = await fetch(origin + p, { headers: { cookie } });
        const text = await r.text();
        if (r.status !== 200) throw new Error(`console ${p}: ${r.status}`);
        if (i > 0) times.push(performance.now() - t0);
        if (i === 0) older = /href="([^"]*before=[0-9]+[^"]*)" rel="next"/.exec(text)?.[1]?.replaceAll("&amp;", "&") ?? older;
      }
      out[label] = { path: p, p50: median(times), p95: quantile(times, 0.95) };
      log(`  ${label}: p50 ${out[label].p50.toFixed(1)} ms, p95 ${out[label].p95.toFixed(1)} ms`);
    }
    load.after = os.loadavg()[0];
    log(`  load average ${load.before.toFixed(1)} → ${load.after.toFixed(1)}`);
    // What the log's verification status says now (the timeline queued a pass of it on a verifier thread).
    const status = {};
    for (const p of Object.values(paths)) {
      const m = /^\/console\/audit\/(id_[0-9a-f]{20})$/.exec(p);
      if (m) status[m[1]] = app.chains.verification.status(m[1]);
    }
    return { pages: out, load, status };
  } finally {
    await served.close();
    await app.close();
  }
}

/**
 * Verification of a log with key rotations (4 rotations over ~20,000 entries): after a rotation the
 * sequential pass must still use the worker threads' results (each signature checked once).
 */
async function auditVerifyRotations() {
  const dir = mkdtempSync(path.join(os.tmpdir(), "sigil-bench-rot-"));
  try {
    const { initHome, openApp } = await dist("src/app.js");
    const home = path.join(dir, "home");
    await initHome({ home, env: {} });
    const sigil = await openApp({ home, env: {} });
    try {
      const id = (await sigil.identities.create({ name: "rotations", channels: [] })).id;
      const ROTATIONS = 4;
      const PER = QUICK ? 1000 : 5000;
      for (let r = 0; r < ROTATIONS; r++) {
        await Promise.all(
          Array.from({ length: PER }, (_, i) =>
            sigil.chains.commit(id, () => ({ value: null, draft: { tool: "whoami", phase: "call", decision: "allow", session: `s_${i}` } })),
          ),
        );
        await sigil.identities.rotateKey(id);
      }
      await sigil.audit.verify(id); // warm
      const runs = [];
      let entries = 0;
      for (let i = 0; i < 3; i++) {
        const t0 = performance.now();
        const v = await sigil.audit.verify(id);
        runs.push(performance.now() - t0);
        if (!v.ok) throw new Error(`the rotation bench log does not verify: ${JSON.stringify(v.identities[0])}`);
        entries = v.identities[0].entries;
      }
      return { entries, rotations: ROTATIONS, rate: entries / (median(runs) / 1000) };
    } finally {
      await sigil.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function registry(count) {
  const dir = mkdtempSync(path.join(os.tmpdir(), `sigil-bench-reg${count}-`));
  try {
    const h = await makeHome(dir, count, (n, ms) => log(`  created ${n}/${count} identities (${(ms / 1000).toFixed(1)} s)`));
    const { createSessionServer } = await dist("src/server/factory.js");
    // A fresh process's view: a new application (no identity cached) for the session measurements.
    await h.sigil.close();
    const { initHome, openApp } = await dist("src/app.js");
    const sigil = await openApp({ home: h.home, env: h.env });
    const pick = (i) => h.ids[Math.floor((i * 7919) % count)];
    const session = [];
    for (let i = 0; i < N.registrySamples; i++) {
      const id = pick(i);
      const t0 = performance.now();
      const principal = await sigil.auth.principal(id.token);
      if (!principal) throw new Error("bench token did not authenticate");
      const server = await createSessionServer(principal, { app: sigil, sessionId: `s_bench_${i}` });
      session.push(performance.now() - t0);
      await server.close();
    }
    const rotate = [];
    for (let i = 0; i < N.rotations; i++) {
      const id = pick(i + 1000);
      const t0 = performance.now();
      await sigil.identities.rotateKey(id.id);
      rotate.push(performance.now() - t0);
    }
    const ctx = { home: h.home, token: pick(3).token };
    const cold = [];
    for (let i = 0; i < Math.max(3, Math.floor(N.cold / 2)); i++) {
      const c = await connect("sigil", ctx);
      cold.push(c.coldMs);
      await c.client.close();
    }
    await sigil.close();
    return { count, createMs: h.createMs, sessionMs: median(session), rotateMs: median(rotate), serveColdMs: median(cold) };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * Bytes per idle HTTP session: `sigil serve --http` (its own process), one token opening `count`
 * sessions (initialize + notifications/initialized, 20 at a time; the per-identity cap raised for
 * the measurement), VmRSS before and after, settled for a moment each time.
 */
async function idleSessions(ctx, count) {
  const { spawn } = await import("node:child_process");
  const proc = spawn(process.execPath, [CLI, "serve", "--http", "--port", "0"], {
    env: { ...process.env, ...ctx.env, SIGIL_MAX_SESSIONS_PER_IDENTITY: String(count + 100) },
    stdio: ["ignore", "ignore", "pipe"],
  });
  try {
    const url = await new Promise((resolve, reject) => {
      let buf = "";
      proc.stderr.on("data", (d) => {
        buf += d;
        const m = /serving Streamable HTTP at (\S+)/.exec(buf);
        if (m) resolve(m[1]);
      });
      proc.once("exit", (code) => reject(new Error(`sigil serve --http exited ${code}: ${buf}`)));
    });
    const headers = { "content-type": "application/json", accept: "application/json, text/event-stream", authorization: `Bearer ${ctx.token}` };
    const init = { jsonrpc: "2.0", id: 1, method: "initialize", params: { protocolVersion: "2025-06-18", capabilities: {}, clientInfo: { name: "bench", version: "1" } } };
    const open = async () => {
      const r = await fetch(url, { method: "POST", headers, body: JSON.stringify(init) });
      await r.text();
      const sid = r.headers.get("mcp-session-id");
      if (r.status !== 200 || !sid) throw new Error(`initialize: ${r.status}`);
      const n = await fetch(url, { method: "POST", headers: { ...headers, "mcp-session-id": sid, "mcp-protocol-version": "2025-06-18" }, body: JSON.stringify({ jsonrpc: "2.0", method: "notifications/initialized" }) });
      await n.text();
    };
    for (let i = 0; i < 50; i++) await open(); // warm: code loaded, first allocations made
    await new Promise((r) => setTimeout(r, 1000));
    const before = memoryOf(proc.pid).rssMB;
    for (let i = 0; i < count; i += 20) await Promise.all(Array.from({ length: Math.min(20, count - i) }, open));
    await new Promise((r) => setTimeout(r, 1500));
    const after = memoryOf(proc.pid).rssMB;
    return { count, beforeMB: before, afterMB: after, bytesPerSession: ((after - before) * 2 ** 20) / count };
  } finally {
    proc.kill();
  }
}

// ---- main ------------------------------------------------------------------------------------

function machine() {
  const cpus = os.cpus();
  return {
    date: new Date().toISOString(),
    cpu: cpus[0]?.model ?? "unknown",
    cores: os.availableParallelism?.() ?? cpus.length,
    memoryGB: Math.round(os.totalmem() / 2 ** 30),
    os: `${os.type()} ${os.release()} ${os.arch()}`,
    node: process.version,
  };
}

async function main() {
  const started = performance.now();
  const m = machine();
  log(`sigil bench on ${m.cpu} (${m.cores} cores), node ${m.node}${QUICK ? " (quick)" : ""}`);
  const dir = mkdtempSync(path.join(os.tmpdir(), "sigil-bench-"));
  const results = { machine: m, quick: QUICK };
  try {
    const h = await makeHome(dir, 1);
    await h.sigil.close();
    const ctx = { home: h.home, env: h.env, token: h.ids[0].token, identityId: h.ids[0].id };

    const probe = await connect("sigil", ctx);
    const hasSms = probe.tools.includes("send_sms");
    await probe.client.close();
    const tools = hasSms ? ["whoami", "send_sms"] : ["whoami"];
    if (!hasSms) log("  send_sms is not in this build: its rows are skipped");

    if (want("tools")) {
      log("tools/list sizes…");
      results.toolsList = await toolListSizes(dir);
    }
    if (want("cold")) {
      log("cold start…");
      results.cold = await coldStart(ctx);
    }
    if (want("calls")) {
      log("baseline calls…");
      results.baseline = await perServer("baseline", ctx, tools);
      log("sigil calls…");
      results.sigil = await perServer("sigil", ctx, tools);
    }
    if (want("recovery") || want("verify") || want("console")) {
      const sizes = want("recovery") ? LOG_SIZES : [Math.max(...LOG_SIZES)];
      log(`writing audit logs of ${sizes.join(", ")} entries…`);
      const logs = await bigLogs(dir, sizes);
      if (want("recovery")) {
        log("first call of a new process…");
        results.recovery = await recovery(logs);
        log(`  ${JSON.stringify(results.recovery)}`);
      }
      if (want("console")) {
        const n = Math.max(...sizes);
        const id = logs.ids.get(n).id;
        log(`console: the audit timeline of a ${n}-entry log…`);
        results.consoleLog = {
          entries: n,
          ...(await consolePages(logs.home, logs.env, {
            "timeline, newest 50": `/console/audit/${id}`,
            "timeline, filtered (tool+decision)": `/console/audit/${id}?tool=send_sms&decision=deny`,
            "timeline, the next older page (its link)": "{older}",
          })),
        };
      }
      if (want("verify")) {
        log(`audit verification (${Math.max(...sizes)} entries)…`);
        const cores = m.cores;
        const raw = rawVerifyRate();
        const v = await auditVerifyBig(logs, Math.max(...sizes));
        results.verify = { entries: v.entries, rate: v.rate, rawPerCore: raw, cores, ratio: v.rate / (raw * cores) };
        log(`  ${JSON.stringify(results.verify)}`);
        log("audit verification with key rotations…");
        const rot = await auditVerifyRotations();
        results.verifyRotations = { ...rot, ratio: rot.rate / (raw * cores) };
      }
      if (!logs.kept) rmSync(logs.home, { recursive: true, force: true });
    }
    if (want("sessions")) {
      const count = 4000; // fewer makes the figure noise: the heap grows in steps of several MB
      log(`${count} idle HTTP sessions…`);
      results.sessions = await idleSessions(ctx, count);
    }
    if (want("registry")) {
      log("registry with 10 identities…");
      const small = await registry(10);
      log(`registry with ${BIG} identities…`);
      const big = await registry(BIG);
      results.registry = { small, big };
    }
    if (want("console")) {
      log(`console pages with ${BIG} identities…`);
      const cdir = mkdtempSync(path.join(os.tmpdir(), "sigil-bench-console-"));
      try {
        const h = await makeHome(cdir, BIG, (n, ms) => log(`  created ${n}/${BIG} identities (${(ms / 1000).toFixed(1)} s)`));
        await h.sigil.close();
        results.console = {
          identities: BIG,
          ...(await consolePages(h.home, h.env, {
            "identities, page 1": "/console/identities",
            "identities, last page": `/console/identities?page=${Math.ceil(BIG / 50)}`,
            "identities, search": `/console/identities?q=${encodeURIComponent(`agent ${BIG - 7}`)}`,
            "an identity's page": `/console/identities/${h.ids[Math.floor(BIG / 2)].id}`,
            "audit index, page 1": "/console/audit",
            "audit index, page 2": "/console/audit?page=2",
          })),
        };
      } finally {
        rmSync(cdir, { recursive: true, force: true });
      }
    }
    if (want("pg")) {
      // Governed send_sms with 1, 2 and 4 `sigil serve --http` instances on one PostgreSQL, and the
      // card limit while they race (bench/pg.mjs). Skipped, and said so, without PostgreSQL.
      const { benchPg, findPgBin } = await import("./pg.mjs");
      if (!process.env.SIGIL_BENCH_PG_URL && !findPgBin()) {
        log("PostgreSQL is not installed: the PostgreSQL rows are skipped");
        results.pg = { skipped: "PostgreSQL is not installed" };
      } else {
        log("PostgreSQL: send_sms with 1, 2, 4 instances, card race…");
        results.pg = await benchPg({ seconds: QUICK ? 2 : 4, instances: [1, 2, 4] });
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  results.totalSeconds = (performance.now() - started) / 1000;
  results.targets = targets(results);
  if (JSON_OUT) process.stdout.write(JSON.stringify(results, null, 2) + "\n");
  else process.stdout.write(render(results));
}

/**
 * What a client puts in the model's context: the JSON of tools/list (bytes), for an agent with every
 * channel and for the admin surface, through the SDK client against `sigil serve`.
 */
async function toolListSizes(dir) {
  const env = { ...process.env, SIGIL_HOME: path.join(dir, "tools-home") };
  delete env.SIGIL_STORE_URL;
  const run = (args) => JSON.parse(execFileSync(process.execPath, [CLI, ...args, "--json"], { env, encoding: "utf8" }));
  const { adminToken } = run(["init"]);
  const agent = run(["identity", "create", "--name", "all-channels", "--channels", "email,sms,voice,vault,card,sign", "--phone", "+14155550100"]);
  const size = async (token) => {
    const transport = new StdioClientTransport({ command: process.execPath, args: [CLI, "serve"], env: { ...getDefaultEnvironment(), SIGIL_HOME: env.SIGIL_HOME, SIGIL_TOKEN: token } });
    const client = new Client({ name: "bench", version: "1.0.0" });
    await client.connect(transport);
    const r = await client.listTools();
    await client.close();
    return { bytes: Buffer.byteLength(JSON.stringify(r)), tools: r.tools.length };
  };
  return { agent: await size(agent.token), admin: await size(adminToken) };
}

function targets(r) {
  const t = [];
  const add = (name, value, limit, ok) => t.push({ name, value, limit, ok });
  if (r.toolsList) add("agent tools/list (all channels) ≤ 8 KB", r.toolsList.agent.bytes / 1024, 8, r.toolsList.agent.bytes <= 8192);
  if (r.cold) add("cold start ≤ 1.2× baseline", r.cold.sigil / r.cold.baseline, 1.2, r.cold.sigil / r.cold.baseline <= 1.2);
  if (r.sigil?.latency.send_sms) {
    const added = r.sigil.latency.send_sms.p50 - r.baseline.latency.send_sms.p50;
    add("send_sms added p50 ≤ 0.5 ms", added, 0.5, added <= 0.5);
  }
  for (const tool of Object.keys(r.sigil?.throughput ?? {})) {
    const x = r.sigil.throughput[tool] / r.baseline.throughput[tool];
    add(`${tool} throughput @16 ≥ 50% of baseline`, x, 0.5, x >= 0.5);
  }
  if (r.recovery?.length > 1) {
    const empty = r.recovery[0];
    const big = r.recovery[r.recovery.length - 1];
    const x = big.firstMs / empty.firstMs;
    add(`first call with ${big.entries} entries ≤ 1.5× the empty log's`, x, 1.5, x <= 1.5);
  }
  for (const [label, v] of [...Object.entries(r.console?.pages ?? {}), ...Object.entries(r.consoleLog?.pages ?? {})]) {
    if (!label.startsWith("baseline")) add(`console ${label} p95 ≤ 100 ms`, v.p95, 100, v.p95 <= 100);
  }
  if (r.verify) add(`audit verify (${r.verify.entries} entries) ≥ 80% of raw verify × cores`, r.verify.ratio, 0.8, r.verify.ratio >= 0.8);
  if (r.sigil) add("peak RSS @16 ≤ 1.3× baseline", r.sigil.peakMB / r.baseline.peakMB, 1.3, r.sigil.peakMB / r.baseline.peakMB <= 1.3);
  if (r.sessions) add("idle HTTP session ≤ 20 KB (VmRSS)", r.sessions.bytesPerSession / 1024, 20, r.sessions.bytesPerSession <= 20 * 1024);
  if (r.registry) {
    const s = r.registry.big.sessionMs / r.registry.small.sessionMs;
    const k = r.registry.big.rotateMs / r.registry.small.rotateMs;
    add(`session start, ${r.registry.big.count} vs 10 identities ≤ 2×`, s, 2, s <= 2);
    add(`key rotation, ${r.registry.big.count} vs 10 identities ≤ 2×`, k, 2, k <= 2);
  }
  return t;
}

function render(r) {
  const f = (x, d = 2) => (Number.isFinite(x) ? x.toFixed(d) : "n/a");
  const ratio = (a, b) => `${f(a / b)}×`;
  const rows = [];
  const row = (what, s, b, rt) => rows.push(`| ${what} | ${s} | ${b} | ${rt} |`);
  if (r.cold) row("cold start: spawn → initialize → tools/list (median, ms)", f(r.cold.sigil, 1), f(r.cold.baseline, 1), ratio(r.cold.sigil, r.cold.baseline));
  if (r.sigil) {
  for (const tool of Object.keys(r.sigil.latency)) {
    const s = r.sigil.latency[tool];
    const b = r.baseline.latency[tool];
    row(`${tool} latency p50 (ms)`, f(s.p50, 3), f(b.p50, 3), `${ratio(s.p50, b.p50)} (+${f(s.p50 - b.p50, 3)} ms)`);
    row(`${tool} latency p99 (ms)`, f(s.p99, 3), f(b.p99, 3), ratio(s.p99, b.p99));
  }
  for (const tool of Object.keys(r.sigil.throughput)) {
    row(`${tool} throughput, 16 in flight (calls/s)`, f(r.sigil.throughput[tool], 0), f(r.baseline.throughput[tool], 0), ratio(r.sigil.throughput[tool], r.baseline.throughput[tool]));
  }
  row("memory idle, VmRSS (MB)", f(r.sigil.idleMB, 1), f(r.baseline.idleMB, 1), ratio(r.sigil.idleMB, r.baseline.idleMB));
  row("memory peak, VmHWM (MB)", f(r.sigil.peakMB, 1), f(r.baseline.peakMB, 1), ratio(r.sigil.peakMB, r.baseline.peakMB));
  }
  const v = r.verify;
  const out = [
    `# sigil bench — ${r.machine.date}`,
    "",
    `Machine: ${r.machine.cpu}, ${r.machine.cores} cores, ${r.machine.memoryGB} GB, ${r.machine.os}, node ${r.machine.node}${r.quick ? " (--quick)" : ""}`,
    "",
    ...(rows.length ? ["| measure | sigil | baseline | sigil / baseline |", "|---|---|---|---|", ...rows] : []),
  ];
  if (r.toolsList) {
    const { agent, admin } = r.toolsList;
    out.push(
      "",
      "| tools/list (JSON, what the model's context holds) | tools | bytes |",
      "|---|---|---|",
      `| agent, all channels | ${agent.tools} | ${agent.bytes} (${f(agent.bytes / 1024, 1)} KB) |`,
      `| admin | ${admin.tools} | ${admin.bytes} (${f(admin.bytes / 1024, 1)} KB) |`,
    );
  }
  if (v) {
    out.push(
      "",
      "| audit verification | entries/s | reference | ratio |",
      "|---|---|---|---|",
      `| sigil audit verify (${v.entries} entries) | ${f(v.rate, 0)} | raw Ed25519 verify ${f(v.rawPerCore, 0)}/s × ${v.cores} cores = ${f(v.rawPerCore * v.cores, 0)} | ${f(v.ratio)} |`,
    );
    const vr = r.verifyRotations;
    if (vr) out.push(`| sigil audit verify with ${vr.rotations} key rotations (${vr.entries} entries) | ${f(vr.rate, 0)} | the same | ${f(vr.ratio)} |`);
  }
  if (r.recovery) {
    const e = r.recovery[0];
    out.push(
      "",
      "| a new `sigil serve` process, audit log of | first `whoami` (median, ms) | spawn → first result (median, ms) | first `whoami` vs the empty log | first `whoami` replaying the whole log (no snapshot, ms) |",
      "|---|---|---|---|---|",
      ...r.recovery.map(
        (x) => `| ${x.entries === 1 ? "1 entry (empty)" : `${x.entries} entries`} | ${f(x.firstMs, 1)} | ${f(x.totalMs, 1)} | ${ratio(x.firstMs, e.firstMs)} | ${x.replayFirstMs === undefined ? "—" : f(x.replayFirstMs, 1)} |`,
      ),
    );
  }
  if (r.registry) {
    const { small, big } = r.registry;
    out.push(
      "",
      `| registry | 10 identities | ${big.count} identities | ratio |`,
      "|---|---|---|---|",
      `| session start: authenticate + session server (median, ms) | ${f(small.sessionMs, 3)} | ${f(big.sessionMs, 3)} | ${ratio(big.sessionMs, small.sessionMs)} |`,
      `| key rotation (median, ms) | ${f(small.rotateMs, 3)} | ${f(big.rotateMs, 3)} | ${ratio(big.rotateMs, small.rotateMs)} |`,
      `| \`sigil serve\` cold start (median, ms) | ${f(small.serveColdMs, 1)} | ${f(big.serveColdMs, 1)} | ${ratio(big.serveColdMs, small.serveColdMs)} |`,
      `| creating the identities (s, 64 at a time, in-process) | ${f(small.createMs / 1000)} | ${f(big.createMs / 1000)} | ${f(big.createMs / big.count, 3)} ms each |`,
    );
  }
  if (r.console || r.consoleLog) {
    out.push("", "| console page (request → last byte, loopback) | data | p50 ms | p95 ms | p95 / 100 ms budget |", "|---|---|---|---|---|");
    for (const [label, v] of Object.entries(r.console?.pages ?? {})) out.push(`| ${label} | ${r.console.identities} identities | ${f(v.p50, 1)} | ${f(v.p95, 1)} | ${f(v.p95 / 100)} |`);
    for (const [label, v] of Object.entries(r.consoleLog?.pages ?? {})) out.push(`| ${label} | ${r.consoleLog.entries}-entry log | ${f(v.p50, 1)} | ${f(v.p95, 1)} | ${f(v.p95 / 100)} |`);
    for (const [what, x] of [["identities", r.console], ["log", r.consoleLog]]) if (x?.load) out.push(`| (load average during the ${what} pages: ${f(x.load.before, 1)} → ${f(x.load.after, 1)}) | | | | |`);
  }
  if (r.sessions) {
    const x = r.sessions;
    out.push(
      "",
      "| idle HTTP sessions (one token, `sigil serve --http`) | sessions | VmRSS before → after (MB) | per session |",
      "|---|---|---|---|",
      `| initialize + initialized, then idle | ${x.count} | ${f(x.beforeMB, 1)} → ${f(x.afterMB, 1)} | ${f(x.bytesPerSession / 1024, 1)} KB |`,
    );
  }
  if (r.pg?.skipped) out.push("", `PostgreSQL rows skipped: ${r.pg.skipped}.`);
  else if (r.pg) {
    out.push("", "| PostgreSQL store (one database) | callers | send_sms ok/s | p50 ms | p95 ms | errors |", "|---|---|---|---|---|---|");
    for (const x of r.pg.sendSms) out.push(`| ${x.instances} instance${x.instances > 1 ? "s" : ""} | ${x.callers} | ${f(x.perSecond, 1)} | ${f(x.p50ms, 2)} | ${f(x.p95ms, 2)} | ${x.errors} |`);
    const c = r.pg.cardRace;
    if (c) out.push("", `Card race: ${c.instances} instances × ${c.attempts / c.instances} concurrent $1.00 charges against a $${(c.limitCents / 100).toFixed(2)} limit: ${c.approved} approved, $${(c.chargedCents / 100).toFixed(2)} charged — limit ${c.limitHeld ? "held" : "**EXCEEDED**"}.`);
  }
  out.push("", "| target | value | limit | met |", "|---|---|---|---|");
  for (const t of r.targets) out.push(`| ${t.name} | ${f(t.value)} | ${t.limit} | ${t.ok ? "yes" : "**no**"} |`);
  out.push("", `Total bench time: ${f(r.totalSeconds, 0)} s.`, "");
  return out.join("\n");
}

const renderIdx = argv.indexOf("--render");
const start = renderIdx >= 0 ? async () => process.stdout.write(render(JSON.parse(readFileSync(argv[renderIdx + 1], "utf8")))) : main;
start().catch((err) => {
  process.stderr.write(`bench failed: ${err?.stack ?? err}\n`);
  process.exit(1);
});
