#!/usr/bin/env node
/**
 * A/B of two built sigil checkouts in one run, interleaved, beside the bare SDK baseline: governed
 * `send_sms` and `whoami` p50 and throughput at 16 in flight. On a shared machine absolute figures
 * move a lot between runs; interleaving rounds in one process is what makes the comparison fair.
 *
 *   node bench/ab.mjs --a /path/to/old-checkout --b /path/to/new-checkout [--rounds 3] [--quick] [--paired]
 *
 * Each checkout must be built (dist/cli.js). Each gets its own fresh home (made with its own CLI).
 * `--paired`: both servers run at once and every measurement alternates between them — call by
 * call for latency, 250 ms turns for throughput — so load that changes over seconds (other work on
 * a shared machine) falls on both sides alike. Reports medians and b/a per round.
 * `--in-process`: the same alternation, but calling each checkout's `callAgentTool` directly
 * (dist/src/pipeline/agent-call.js, no MCP framing, no stdio): the pipeline's own cost.
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport, getDefaultEnvironment } from "@modelcontextprotocol/sdk/client/stdio.js";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const argv = process.argv.slice(2);
const opt = (n, d) => (argv.indexOf(n) >= 0 ? argv[argv.indexOf(n) + 1] : d);
const QUICK = argv.includes("--quick");
const ROUNDS = Number(opt("--rounds", 3));
const SEQ = QUICK ? 300 : 1000;
const TPUT_MS = QUICK ? 1500 : 3000;
const sides = { a: path.resolve(opt("--a")), b: path.resolve(opt("--b")) };
const log = (...a) => process.stderr.write(a.join(" ") + "\n");
const q = (xs, p) => [...xs].sort((x, y) => x - y)[Math.min(xs.length - 1, Math.max(0, Math.ceil(p * xs.length) - 1))];

function homeFor(root, dir) {
  const env = { ...process.env, SIGIL_HOME: path.join(dir, "home") };
  delete env.SIGIL_STORE_URL;
  const run = (args) => {
    const r = spawnSync(process.execPath, [path.join(root, "dist/cli.js"), ...args, "--json"], { env, encoding: "utf8" });
    if (r.status !== 0) throw new Error(`${root}: sigil ${args.join(" ")}: ${r.stderr}`);
    return JSON.parse(r.stdout);
  };
  run(["init"]);
  const id = run(["identity", "create", "--name", "bench", "--channels", "sms", "--phone", "+14155550100", "--policy", '{"allowedPhoneCountries":["US"]}']);
  return { env: { SIGIL_HOME: env.SIGIL_HOME, SIGIL_TOKEN: id.token } };
}

async function connect(args, env) {
  const transport = new StdioClientTransport({ command: process.execPath, args, env: { ...getDefaultEnvironment(), ...env }, stderr: "pipe" });
  const client = new Client({ name: "sigil-ab", version: "1.0.0" }, { capabilities: {} });
  await client.connect(transport);
  return client;
}

let n = 0;
const CALL = {
  whoami: () => ({ name: "whoami", arguments: {} }),
  send_sms: () => ({ name: "send_sms", arguments: { to: "+14155550123", body: `ab ${++n}` } }),
};
async function call(c, tool) {
  const r = await c.callTool(CALL[tool]());
  if (r.isError) throw new Error(`${tool}: ${r.content?.[0]?.text}`);
}

async function measure(args, env) {
  const c = await connect(args, env);
  const out = {};
  for (const tool of ["whoami", "send_sms"]) {
    for (let i = 0; i < 100; i++) await call(c, tool);
    const lat = [];
    for (let i = 0; i < SEQ; i++) {
      const t = performance.now();
      await call(c, tool);
      lat.push(performance.now() - t);
    }
    let done = 0;
    const end = performance.now() + TPUT_MS;
    const t0 = performance.now();
    await Promise.all(Array.from({ length: 16 }, async () => { while (performance.now() < end) { await call(c, tool); done++; } }));
    out[tool] = { p50: q(lat, 0.5), tput: done / ((performance.now() - t0) / 1000) };
  }
  await c.close();
  return out;
}

/** Both servers at once: alternate call by call (latency) and in 250 ms turns (throughput). */
async function paired(servers) {
  const open = (s) => s.local ?? connect(s.args, s.env);
  const c = { a: await open(servers.a), b: await open(servers.b) };
  const rounds = [];
  for (let r = 0; r < ROUNDS; r++) {
    const out = { a: {}, b: {} };
    for (const tool of ["whoami", "send_sms"]) {
      for (let i = 0; i < 100; i++) for (const k of ["a", "b"]) await call(c[k], tool);
      const lat = { a: [], b: [] };
      const cpu = { a: [], b: [] }; // in process: this process's CPU time per call (robust to other load)
      for (let i = 0; i < SEQ; i++) {
        for (const k of i % 2 ? ["b", "a"] : ["a", "b"]) {
          const u = process.cpuUsage();
          const t = performance.now();
          await call(c[k], tool);
          lat[k].push(performance.now() - t);
          const d = process.cpuUsage(u);
          cpu[k].push((d.user + d.system) / 1000);
        }
      }
      const done = { a: 0, b: 0 };
      const spent = { a: 0, b: 0 };
      for (let w = 0; w < Math.round((2 * TPUT_MS) / 250); w++) {
        const k = w % 2 ? "b" : "a";
        const t0 = performance.now();
        const end = t0 + 250;
        await Promise.all(Array.from({ length: 16 }, async () => { while (performance.now() < end) { await call(c[k], tool); done[k]++; } }));
        spent[k] += performance.now() - t0;
      }
      for (const k of ["a", "b"]) {
        out[k][tool] = { p50: q(lat[k], 0.5), tput: done[k] / (spent[k] / 1000), ...(servers.a.local ? { cpu: cpu[k].reduce((x, y) => x + y, 0) / cpu[k].length } : {}) };
      }
    }
    log(`paired round ${r + 1}/${ROUNDS}: ${JSON.stringify(out)}`);
    rounds.push(out);
  }
  await c.a.close();
  await c.b.close();
  const med = (k, tool, f) => q(rounds.map((x) => x[k][tool][f]), 0.5);
  const rows = [`A/B ${servers.a.local ? "in process (callAgentTool)" : "paired (both servers at once)"}, alternating, ${ROUNDS} rounds, medians — a: ${sides.a}, b: ${sides.b}; load average at the end ${os.loadavg().map((x) => x.toFixed(1)).join(" ")}`];
  rows.push("", "| | a | b | b / a | b / a per round |", "|---|---|---|---|---|");
  for (const tool of ["send_sms", "whoami"]) {
    const fields = [["p50", "p50 (ms)", 3], ["tput", "at 16 in flight (calls/s)", 0]];
    if (servers.a.local) fields.push(["cpu", "CPU per call, one at a time (ms, mean)", 3]);
    for (const [f, label, digits] of fields) {
      const [a, b] = ["a", "b"].map((k) => med(k, tool, f));
      const per = rounds.map((x) => (x.b[tool][f] / x.a[tool][f]).toFixed(2)).join(", ");
      rows.push(`| \`${tool}\` ${label} | ${a.toFixed(digits)} | ${b.toFixed(digits)} | ${(b / a).toFixed(3)} | ${per} |`);
    }
  }
  process.stdout.write(rows.join("\n") + "\n");
}

/** Each checkout's pipeline in this process, on its own home: `call(tool)` runs callAgentTool. */
async function inProcess(root, dir) {
  const { initHome, openApp } = await import(path.join(root, "dist/src/app.js"));
  const { callAgentTool } = await import(path.join(root, "dist/src/pipeline/agent-call.js"));
  const { AGENT_TOOLS } = await import(path.join(root, "dist/tools/index.js"));
  const home = path.join(dir, "home");
  await initHome({ home, env: {} });
  const app = await openApp({ home, env: {} });
  const id = await app.identities.create({ name: "bench", channels: ["sms"], phone: "+14155550100", policy: { allowedPhoneCountries: ["US"] } });
  const { tokenHash } = await app.store.getIdentity(id.id);
  const session = { deps: app.agent, identityId: id.id, tokenHash, sessionId: "s_ab", memory: { secretsRead: new Set() } };
  const byName = new Map(AGENT_TOOLS.map((t) => [t.name, t]));
  return {
    async callTool({ name, arguments: args }) {
      return callAgentTool(session, byName.get(name), name, args, undefined);
    },
    close: () => app.close(),
  };
}

const dir = mkdtempSync(path.join(os.tmpdir(), "sigil-ab-"));
try {
  if (argv.includes("--in-process")) {
    // Refusals are not measured; the default per-minute limit would only matter if a call failed.
    await paired({ a: { local: await inProcess(sides.a, path.join(dir, "a")) }, b: { local: await inProcess(sides.b, path.join(dir, "b")) } });
    rmSync(dir, { recursive: true, force: true });
    process.exit(0);
  }
  if (argv.includes("--paired")) {
    await paired({
      a: { args: [path.join(sides.a, "dist/cli.js"), "serve"], ...homeFor(sides.a, path.join(dir, "a")) },
      b: { args: [path.join(sides.b, "dist/cli.js"), "serve"], ...homeFor(sides.b, path.join(dir, "b")) },
    });
    rmSync(dir, { recursive: true, force: true });
    process.exit(0);
  }
  const servers = {
    baseline: { args: [path.join(HERE, "baseline-server.mjs")], env: {} },
    a: { args: [path.join(sides.a, "dist/cli.js"), "serve"], ...homeFor(sides.a, path.join(dir, "a")) },
    b: { args: [path.join(sides.b, "dist/cli.js"), "serve"], ...homeFor(sides.b, path.join(dir, "b")) },
  };
  const res = { baseline: [], a: [], b: [] };
  for (let r = 0; r < ROUNDS; r++) {
    const order = r % 2 ? ["b", "a", "baseline"] : ["a", "b", "baseline"];
    for (const k of order) {
      res[k].push(await measure(servers[k].args, servers[k].env));
      log(`round ${r + 1}/${ROUNDS} ${k}: ${JSON.stringify(res[k].at(-1))}`);
    }
  }
  const med = (k, tool, f) => q(res[k].map((x) => x[tool][f]), 0.5);
  const rows = [];
  rows.push(`A/B, ${ROUNDS} rounds interleaved, medians — a: ${sides.a}, b: ${sides.b}; load average at the end ${os.loadavg().map((x) => x.toFixed(1)).join(" ")}`);
  rows.push("", "| | a | b | baseline | b − baseline | b / baseline |", "|---|---|---|---|---|---|");
  for (const tool of ["send_sms", "whoami"]) {
    const [a, b, base] = ["a", "b", "baseline"].map((k) => med(k, tool, "p50"));
    rows.push(`| \`${tool}\` p50 (ms) | ${a.toFixed(3)} | ${b.toFixed(3)} | ${base.toFixed(3)} | +${(b - base).toFixed(3)} ms (a: +${(a - base).toFixed(3)}) | |`);
    const [ta, tb, tbase] = ["a", "b", "baseline"].map((k) => med(k, tool, "tput"));
    rows.push(`| \`${tool}\` at 16 in flight (calls/s) | ${ta.toFixed(0)} | ${tb.toFixed(0)} | ${tbase.toFixed(0)} | | ${(tb / tbase).toFixed(3)}× (a: ${(ta / tbase).toFixed(3)}×) |`);
  }
  process.stdout.write(rows.join("\n") + "\n");
} finally {
  rmSync(dir, { recursive: true, force: true });
}
