import { afterAll, describe, expect, it } from "vitest";
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { CLI, httpClient } from "./support/home.js";

const dirs: string[] = [];
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

function start(home: string): Promise<{ out: string; stop: () => Promise<void>; url: string }> {
  const proc = spawn(process.execPath, [CLI, "start", "--port", "0"], { env: { ...process.env, SIGIL_HOME: home }, stdio: ["ignore", "pipe", "pipe"] });
  return new Promise((resolve, reject) => {
    let out = "";
    const t = setTimeout(() => reject(new Error(`no start: ${out}`)), 20_000);
    proc.stdout!.on("data", (d: Buffer) => {
      out += d.toString();
      if (out.includes("Ctrl-C stops")) {
        clearTimeout(t);
        const url = /Serving MCP \(Streamable HTTP\) at (\S+)/.exec(out)![1]!;
        resolve({ out, url, stop: () => new Promise<void>((r) => (proc.once("exit", () => r()), proc.kill("SIGTERM"))) });
      }
    });
    proc.on("exit", (c) => reject(new Error(`exited ${c}: ${out}`)));
  });
}

describe("npm start (sigil start)", () => {
  it("initialises a home, prints the admin token, a demo identity's token and the mcp.json snippet, and serves it", async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), "sigil-start-"));
    dirs.push(dir);
    const home = path.join(dir, "home");
    const first = await start(home);
    expect(first.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/mcp$/);
    expect(first.out).toMatch(/Admin token \(shown once; keep it safe\): sigil_admin_\S+/);
    const demoToken = /its token \(shown once\): (sigil_agent_\S+)/.exec(first.out)![1]!;
    const snippet = JSON.parse(first.out.slice(first.out.indexOf("{\n"), first.out.lastIndexOf("}") + 1));
    expect(snippet.mcpServers.sigil).toEqual({ type: "http", url: first.url, headers: { Authorization: `Bearer ${demoToken}` } });
    const { client } = await httpClient(first.url, demoToken);
    const who = await client.callTool({ name: "whoami", arguments: {} });
    expect((who.structuredContent as any).name).toBe("demo-agent");
    await client.close();
    await first.stop();

    const second = await start(home);
    expect(second.out).not.toMatch(/sigil_admin_/);
    expect(second.out).toMatch(/Demo identity id_\w+ exists/);
    await second.stop();
  });
});
