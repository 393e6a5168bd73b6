import { afterAll, describe, expect, it } from "vitest";
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, realpathSync, rmSync } from "node:fs";
import { createServer, type AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport, getDefaultEnvironment } from "@modelcontextprotocol/sdk/client/stdio.js";
import { CLI, ROOT, cleanupHomes, httpClient, makeHome } from "./support/home.js";

const dirs: string[] = [];
afterAll(() => {
  dirs.forEach((d) => rmSync(d, { recursive: true, force: true }));
  cleanupHomes();
});

function start(home: string, port = 0): Promise<{ out: string; stop: () => Promise<void>; url: string }> {
  const proc = spawn(process.execPath, [CLI, "start", "--port", String(port)], { env: { ...process.env, SIGIL_HOME: home }, stdio: ["ignore", "pipe", "pipe"] });
  return new Promise((resolve, reject) => {
    let out = "";
    let err = "";
    const t = setTimeout(() => reject(new Error(`no start: ${out}`)), 20_000);
    proc.stderr!.on("data", (d: Buffer) => (err += d.toString()));
    proc.stdout!.on("data", (d: Buffer) => {
      out += d.toString();
      if (out.includes("Ctrl-C stops")) {
        clearTimeout(t);
        const url = /Serving MCP \(Streamable HTTP\) at (\S+)/.exec(out)![1]!;
        resolve({ out, url, stop: () => new Promise<void>((r) => (proc.once("exit", () => r()), proc.kill("SIGTERM"))) });
      }
    });
    proc.on("exit", (c) => (clearTimeout(t), reject(Object.assign(new Error(`exited ${c}: ${out}${err}`), { code: c, out, err }))));
  });
}

/** Launches an mcpServers stdio entry as a client would (its command, args and env; `cwd` as given) and connects. */
async function launch(entry: { command: string; args: string[]; env: Record<string, string> }, cwd: string): Promise<Client> {
  const transport = new StdioClientTransport({ command: entry.command, args: entry.args, env: { ...getDefaultEnvironment(), ...entry.env }, cwd, stderr: "pipe" });
  const client = new Client({ name: "sigil-test", version: "1.0.0" }, { capabilities: {} });
  await client.connect(transport);
  return client;
}

describe("npm start (sigil start)", () => {
  it("initialises a home, prints the admin token, a demo identity's token, what it may do and the mcp.json snippet, and serves it", { timeout: 60_000 }, async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), "sigil-start-"));
    dirs.push(dir);
    const home = path.join(dir, "home");
    const first = await start(home);
    expect(first.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/mcp$/);
    expect(first.out).toMatch(/Admin token \(shown once; keep it safe\): sigil_admin_\S+/);
    const demoToken = /its token \(shown once\): (sigil_agent_\S+)/.exec(first.out)![1]!;
    // What the demo agent may do, next to its token.
    expect(first.out).toContain(
      [
        "The demo agent may (policy v1; everything else is refused):",
        "  - email from demo-agent@example.com: to example.com (and subdomains), at most 5 recipients per message",
        "  - SMS and calls from +14155550100: to numbers in US, CA (premium-rate numbers never)",
        "  - vault: read secrets named demo/*",
        "  - card: up to 100.00 USD in any 24 hours; at most 50.00 USD per charge; a human approves each charge above 25.00 USD",
        "  - sign HTTP requests for https://shop.example",
        "  - rate limits: send_sms 5/minute, 100/day; send_email 10/minute, 500/day",
      ].join("\n"),
    );
    const snippet = JSON.parse(first.out.slice(first.out.indexOf("{\n"), first.out.lastIndexOf("}") + 1));
    expect(snippet.mcpServers["sigil-http"]).toEqual({ type: "http", url: first.url, headers: { Authorization: `Bearer ${demoToken}` } });
    // The stdio entry launches this installation: absolute node and dist/cli.js, no npx, no registry.
    const stdio = snippet.mcpServers.sigil;
    expect(stdio).toEqual({ command: process.execPath, args: [realpathSync(CLI), "serve"], env: { SIGIL_TOKEN: demoToken, SIGIL_HOME: home } });
    expect(first.out).not.toMatch(/\bnpx\b/);
    const { client } = await httpClient(first.url, demoToken);
    const who = await client.callTool({ name: "whoami", arguments: {} });
    expect((who.structuredContent as any).name).toBe("demo-agent");
    await client.close();
    // Pasted into a client that starts it from anywhere (here: the temp directory), it serves the demo agent.
    const viaStdio = await launch(stdio, dir);
    expect(((await viaStdio.callTool({ name: "whoami", arguments: {} })).structuredContent as any).name).toBe("demo-agent");
    await viaStdio.close();
    await first.stop();

    const second = await start(home);
    expect(second.out).not.toMatch(/sigil_admin_/);
    expect(second.out).toMatch(/Demo identity id_\w+ exists; get a fresh token with: SIGIL_HOME=\S+ \S+ \S+ identity rotate-token id_\w+/);
    expect(second.out).toContain("The demo agent may (policy v1; everything else is refused):\n  - email from demo-agent@example.com");
    expect(second.out).not.toMatch(/\bnpx\b/);
    await second.stop();
  });

  it("on a busy port fails before creating anything, naming the port and --port", { timeout: 30_000 }, async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), "sigil-start-"));
    dirs.push(dir);
    const home = path.join(dir, "home");
    const busy = createServer();
    await new Promise<void>((r) => busy.listen(0, "127.0.0.1", r));
    const port = (busy.address() as AddressInfo).port;
    try {
      const failed = await start(home, port).then(
        () => undefined,
        (e: { code: number; out: string; err: string }) => e,
      );
      expect(failed?.code).toBe(1);
      expect(failed?.err).toMatch(new RegExp(`port ${port} on 127\\.0\\.0\\.1 is already in use .*choose another port with --port`));
      expect(failed?.out).toBe("");
      expect(existsSync(home)).toBe(false); // no home, no identity, no token lost
    } finally {
      busy.close();
    }
  });
});

describe("the client configs in this repository", () => {
  it("mcp.json launches this checkout without npx: its stdio entry, started from here, serves", { timeout: 30_000 }, async () => {
    const config = JSON.parse(readFileSync(path.join(ROOT, "mcp.json"), "utf8"));
    for (const [name, e] of Object.entries<any>(config.mcpServers)) expect(e.command ?? "", name).not.toMatch(/npx/);
    const entry = config.mcpServers.sigil;
    expect(entry.command).toBe("node");
    const home = makeHome();
    const a = home.createIdentity({ name: "from-mcp-json", channels: "" });
    const client = await launch({ ...entry, env: { ...entry.env, SIGIL_TOKEN: a.token, SIGIL_HOME: home.env.SIGIL_HOME! } }, ROOT);
    expect(((await client.callTool({ name: "whoami", arguments: {} })).structuredContent as any).name).toBe("from-mcp-json");
    await client.close();
  });

  it("the README's client configs parse and never launch npx", () => {
    const readme = readFileSync(path.join(ROOT, "README.md"), "utf8");
    const blocks = [...readme.matchAll(/```json\n([\s\S]*?)```/g)].map((m) => JSON.parse(m[1]!));
    const servers = blocks.flatMap((b) => Object.values<any>(b.mcpServers ?? b.servers ?? {}));
    expect(servers.length).toBeGreaterThanOrEqual(4);
    for (const s of servers) expect(s.command ?? "node").not.toMatch(/npx/);
    expect(readme).not.toMatch(/"command": "npx"|`npx sigil` finds/);
  });
});
