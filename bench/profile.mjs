#!/usr/bin/env node
/**
 * Where a governed call's time goes: runs `sigil serve` (this checkout's dist/cli.js, a fresh home,
 * the bench's sms identity) under `node --cpu-prof`, drives it with the SDK Client like the bench
 * (warm-up, `--seq` calls one at a time, then 16 in flight for `--ms`), and prints the top frames
 * by self time, the time per package/module, and the process's peak RSS.
 *
 *   node bench/profile.mjs [--tool send_sms|whoami] [--seq 1000] [--ms 3000] [--top 40] [--keep DIR]
 *   node bench/profile.mjs --summarise file.cpuprofile [--top 40]
 *
 * Measures; asserts nothing.
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport, getDefaultEnvironment } from "@modelcontextprotocol/sdk/client/stdio.js";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const argv = process.argv.slice(2);
const opt = (n, d) => (argv.indexOf(n) >= 0 ? argv[argv.indexOf(n) + 1] : d);
const TOOL = opt("--tool", "send_sms");
const SEQ = Number(opt("--seq", 1000));
const MS = Number(opt("--ms", 3000));
const TOP = Number(opt("--top", 40));

/** Self time per frame and per module of a .cpuprofile. */
export function summarise(profile, top = TOP) {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const self = new Map();
  const dt = profile.timeDeltas;
  for (let i = 0; i < profile.samples.length; i++) {
    const id = profile.samples[i];
    self.set(id, (self.get(id) ?? 0) + (dt[i] ?? 0));
  }
  const total = [...self.values()].reduce((a, b) => a + b, 0);
  const frames = new Map();
  const modules = new Map();
  for (const [id, us] of self) {
    const { callFrame: f } = byId.get(id);
    const file = f.url ? f.url.replace(/^file:\/\//, "").replace(ROOT + "/", "") : `(${f.functionName || "native"})`;
    const key = `${f.functionName || "(anonymous)"} ${file}:${f.lineNumber + 1}`;
    frames.set(key, (frames.get(key) ?? 0) + us);
    const mod = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(file)?.[1] ?? (file.startsWith("node:") ? file : file.startsWith("(") ? file : file);
    modules.set(mod, (modules.get(mod) ?? 0) + us);
  }
  const fmt = (m, n) =>
    [...m.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, n)
      .map(([k, us]) => `${((100 * us) / total).toFixed(1).padStart(5)} %  ${(us / 1000).toFixed(0).padStart(6)} ms  ${k}`)
      .join("\n");
  let out = `total sampled: ${(total / 1000).toFixed(0)} ms\n\n-- top frames by self time --\n${fmt(frames, top)}\n\n-- by module --\n${fmt(modules, 25)}`;
  // --callers REGEX: the stacks (innermost first, 8 deep) that spent self time in matching frames.
  const callers = opt("--callers", undefined);
  if (callers) {
    const re = new RegExp(callers);
    const parent = new Map();
    for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
    const name = (n) => `${n.callFrame.functionName || "(anon)"}@${(n.callFrame.url || "").split("/").pop()}:${n.callFrame.lineNumber + 1}`;
    const stacks = new Map();
    for (const [id, us] of self) {
      if (!re.test(name(byId.get(id)))) continue;
      const chain = [];
      for (let x = id, d = 0; x !== undefined && d < 8; x = parent.get(x), d++) chain.push(name(byId.get(x)));
      const k = chain.join(" < ");
      stacks.set(k, (stacks.get(k) ?? 0) + us);
    }
    out += `\n\n-- callers of /${callers}/ --\n${fmt(stacks, top)}`;
  }
  return out;
}

async function run() {
  const dir = mkdtempSync(path.join(os.tmpdir(), "sigil-prof-"));
  const keep = opt("--keep", undefined);
  const profDir = keep ? path.resolve(keep) : path.join(dir, "prof");
  try {
    const home = path.join(dir, "home");
    const env = { ...process.env, SIGIL_HOME: home };
    delete env.SIGIL_STORE_URL;
    const cli = (args) => {
      const r = spawnSync(process.execPath, [path.join(ROOT, "dist/cli.js"), ...args, "--json"], { env, encoding: "utf8" });
      if (r.status !== 0) throw new Error(`sigil ${args.join(" ")}: ${r.stderr}`);
      return JSON.parse(r.stdout);
    };
    cli(["init"]);
    const id = cli(["identity", "create", "--name", "bench", "--channels", "sms", "--phone", "+14155550100", "--policy", '{"allowedPhoneCountries":["US"]}']);
    const transport = new StdioClientTransport({
      command: process.execPath,
      args: ["--cpu-prof", "--cpu-prof-dir", profDir, path.join(ROOT, "dist/cli.js"), "serve"],
      env: { ...getDefaultEnvironment(), SIGIL_HOME: home, SIGIL_TOKEN: id.token },
      stderr: "inherit",
    });
    const client = new Client({ name: "sigil-profile", version: "1" }, { capabilities: {} });
    await client.connect(transport);
    const pid = transport.pid;
    let n = 0;
    const call = async () => {
      const r = await client.callTool(TOOL === "whoami" ? { name: "whoami", arguments: {} } : { name: "send_sms", arguments: { to: "+14155550123", body: `profile ${++n}` } });
      if (r.isError) throw new Error(r.content?.[0]?.text);
    };
    for (let i = 0; i < 100; i++) await call();
    const lat = [];
    for (let i = 0; i < SEQ; i++) {
      const t = performance.now();
      await call();
      lat.push(performance.now() - t);
    }
    lat.sort((a, b) => a - b);
    let done = 0;
    const t0 = performance.now();
    const end = t0 + MS;
    await Promise.all(Array.from({ length: 16 }, async () => { while (performance.now() < end) { await call(); done++; } }));
    const tput = done / ((performance.now() - t0) / 1000);
    const status = readFileSync(`/proc/${pid}/status`, "utf8");
    const hwm = Number(/^VmHWM:\s+(\d+)/m.exec(status)[1]) / 1024;
    await client.close();
    for (let i = 0; i < 100 && readdirSync(profDir, { withFileTypes: true }).length === 0; i++) await new Promise((r) => setTimeout(r, 100));
    await new Promise((r) => setTimeout(r, 500));
    const file = readdirSync(profDir).filter((f) => f.endsWith(".cpuprofile")).map((f) => path.join(profDir, f))[0];
    console.log(`${TOOL}: ${SEQ} one at a time p50 ${lat[Math.floor(SEQ / 2)].toFixed(3)} ms; 16 in flight ${tput.toFixed(0)} calls/s (${done} calls); peak RSS ${hwm.toFixed(1)} MB; load ${os.loadavg().map((x) => x.toFixed(1)).join(" ")}`);
    console.log(summarise(JSON.parse(readFileSync(file, "utf8"))));
    if (keep) console.log(`\nprofile: ${file}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (argv.includes("--summarise")) console.log(summarise(JSON.parse(readFileSync(opt("--summarise"), "utf8"))));
else await run();
