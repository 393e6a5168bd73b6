import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cleanupHomes, httpClient, makeHome, startHttpServer, text, type Home, type HttpServer } from "./support/home.js";

let home: Home;
let server: HttpServer;

beforeAll(async () => {
  home = makeHome();
  server = await startHttpServer(home);
});
afterAll(async () => {
  await server?.stop();
  cleanupHomes();
});

const initialize = {
  jsonrpc: "2.0",
  id: 1,
  method: "initialize",
  params: { protocolVersion: "2025-06-18", capabilities: {}, clientInfo: { name: "raw", version: "1" } },
};

async function post(body: unknown, headers: Record<string, string>): Promise<Response> {
  return fetch(server.url, {
    method: "POST",
    headers: { "content-type": "application/json", accept: "application/json, text/event-stream", ...headers },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
}

describe("Streamable HTTP binds each session to the credential that opened it", () => {
  it("no token, a wrong token or a revoked one gets 401 and nothing else", async () => {
    const a = home.createIdentity({ channels: "" });
    expect((await post(initialize, {})).status).toBe(401);
    expect((await post(initialize, { authorization: "Bearer sigil_agent_nope" })).status).toBe(401);
    expect((await post(initialize, { authorization: `Bearer ${a.token}` })).status).toBe(200);
    home.json(["identity", "revoke", a.id]);
    const r = await post(initialize, { authorization: `Bearer ${a.token}` });
    expect(r.status).toBe(401);
    expect(r.headers.get("www-authenticate")).toMatch(/Bearer/);
  });

  it("a session used with another identity's token, the admin token, or none is refused with the same 404 as an unknown session", async () => {
    const a = home.createIdentity({ channels: "" });
    const b = home.createIdentity({ channels: "" });
    const { client, transport } = await httpClient(server.url, a.token);
    const sid = transport.sessionId!;
    expect(sid).toBeTruthy();
    const call = { jsonrpc: "2.0", id: 2, method: "tools/call", params: { name: "whoami", arguments: {} } };
    const hijack = await post(call, { authorization: `Bearer ${b.token}`, "mcp-session-id": sid, "mcp-protocol-version": "2025-06-18" });
    const unknown = await post(call, { authorization: `Bearer ${b.token}`, "mcp-session-id": "s_nonexistent", "mcp-protocol-version": "2025-06-18" });
    expect(hijack.status).toBe(404);
    expect(unknown.status).toBe(404);
    expect(await hijack.text()).toBe(await unknown.text());
    expect((await post(call, { authorization: `Bearer ${home.adminToken}`, "mcp-session-id": sid })).status).toBe(404);
    expect((await post(call, { "mcp-session-id": sid })).status).toBe(401);
    // The rightful owner still works, and acts as itself.
    const who = await client.callTool({ name: "whoami", arguments: {} });
    expect((who.structuredContent as any).id).toBe(a.id);
    await client.close();
  });

  it("an idle keep-alive connection is left for the client to close: a client whose event loop was busy for seconds reuses it safely", async () => {
    // Node's default (close idle connections after 5 s) raced the next request of a client that had
    // been blocked (e.g. by a child process) past that moment: the request died with "other side closed".
    const { connect } = await import("node:net");
    const sock = connect(server.port, "127.0.0.1");
    let received = "";
    let closedByServer = false;
    sock.on("data", (d: Buffer) => (received += d.toString("latin1")));
    sock.on("end", () => (closedByServer = true));
    sock.on("close", () => (closedByServer = true));
    const get = `GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:${server.port}\r\nConnection: keep-alive\r\n\r\n`;
    const responses = async (n: number): Promise<void> => {
      const deadline = Date.now() + 15_000;
      while ((received.match(/HTTP\/1\.1 200/g) ?? []).length < n) {
        if (closedByServer || Date.now() > deadline) throw new Error(`no response ${n} (closed by server: ${closedByServer}): ${received}`);
        await new Promise((r) => setTimeout(r, 20));
      }
    };
    sock.write(get);
    await responses(1);
    // What the client is told: it may keep the connection a minute (clients stop reusing it a little before).
    const advertised = Number(/keep-alive: timeout=(\d+)/i.exec(received)?.[1]);
    expect(advertised).toBeGreaterThanOrEqual(60);
    expect(received).not.toMatch(/connection: close/i);
    // Idle past Node's default (5 s, plus its 1 s margin): the server has not closed it, and it still serves.
    await new Promise((r) => setTimeout(r, 7_500));
    expect(closedByServer).toBe(false);
    sock.write(get);
    await responses(2);
    sock.destroy();
  });

  it("checks Host and Origin (DNS rebinding) and refuses oversized and malformed bodies without harming other sessions", async () => {
    const a = home.createIdentity({ channels: "" });
    const { client } = await httpClient(server.url, a.token);
    const auth = { authorization: `Bearer ${a.token}` };
    const evilHost = await fetch(server.url.replace("127.0.0.1", "localhost"), { method: "POST", headers: { ...auth, host: "evil.example:80", "content-type": "application/json" }, body: "{}" });
    expect([403, 400]).toContain(evilHost.status);
    const { request } = await import("node:http");
    const status = await new Promise<number>((resolve, reject) => {
      const req = request(server.url, { method: "POST", headers: { ...auth, host: `attacker.example:${server.port}`, "content-type": "application/json" } }, (res) => resolve(res.statusCode!));
      req.on("error", reject);
      req.end(JSON.stringify(initialize));
    });
    expect(status).toBe(403);
    expect((await post(initialize, { ...auth, origin: "https://evil.example" })).status).toBe(403);
    expect((await post(initialize, { ...auth, origin: `http://localhost:${server.port}` })).status).toBe(200);
    expect((await post("x".repeat(2 * 1024 * 1024), auth)).status).toBe(413);
    expect((await post("{not json", auth)).status).toBe(400);
    expect((await post({ jsonrpc: "2.0", id: 1, method: "tools/list" }, auth)).status).toBe(400);
    const who = await client.callTool({ name: "whoami", arguments: {} });
    expect((who.structuredContent as any).id).toBe(a.id);
    await client.close();
  });

  it("admin sessions list admin tools only; results are shaped like the CLI's --json", async () => {
    const { client } = await httpClient(server.url, home.adminToken);
    const names = (await client.listTools()).tools.map((t) => t.name);
    expect(names).toEqual(expect.arrayContaining(["create_identity", "list_identities", "get_identity", "update_policy", "rotate_key", "rotate_token", "revoke_identity", "query_audit", "verify_audit"]));
    expect(names).not.toContain("whoami");
    expect(names).not.toContain("send_email");
    const created = (await client.callTool({ name: "create_identity", arguments: { name: "via-admin", channels: ["email"], policies: { allowedDomains: ["example.com"] } } })).structuredContent as any;
    expect(Object.keys(created).sort()).toEqual(["id", "keyId", "name", "publicKey", "token"]);
    expect(created.token).toMatch(/^sigil_agent_/);
    const cliShow = home.json(["identity", "show", created.id]);
    const toolShow = (await client.callTool({ name: "get_identity", arguments: { identityId: created.id } })).structuredContent;
    expect(toolShow).toEqual(cliShow);
    const bad = await client.callTool({ name: "update_policy", arguments: { identityId: created.id, policies: { allowedDomains: ["example.com"], bcc: true } } });
    expect(bad.isError).toBe(true);
    expect(text(bad)).toMatch(/^denied: invalid_policy: .*bcc/);
    const extra = await client.callTool({ name: "get_identity", arguments: { identityId: created.id, token: "x" } });
    expect(text(extra)).toMatch(/^denied: invalid_arguments: unknown argument/);
    const rotated = (await client.callTool({ name: "rotate_key", arguments: { identityId: created.id } })).structuredContent as any;
    expect(rotated.previousKeyId).toBe(created.keyId);
    const q = (await client.callTool({ name: "query_audit", arguments: { identityId: created.id, limit: 10 } })).structuredContent as any;
    expect(q.entries.map((e: any) => [e.tool, e.phase])).toEqual([["identity_created", "event"], ["key_rotated", "intent"], ["key_rotated", "result"]]);
    const v = (await client.callTool({ name: "verify_audit", arguments: { identityId: created.id } })).structuredContent as any;
    expect(v.ok).toBe(true);
    // The agent created over HTTP can connect, and cannot see admin tools.
    const agent = await httpClient(server.url, created.token);
    const agentTools = (await agent.client.listTools()).tools.map((t) => t.name);
    expect(agentTools).not.toContain("create_identity");
    expect(text(await agent.client.callTool({ name: "list_identities", arguments: {} }))).toMatch(/^denied: tool_not_available/);
    await agent.client.close();
    await client.close();
  });

  it("an agent token opens an agent session; the admin surface is never listed to it", async () => {
    const a = home.createIdentity({ channels: "email,sms,voice,vault,card,sign" });
    const { client } = await httpClient(server.url, a.token);
    const names = (await client.listTools()).tools.map((t) => t.name);
    for (const admin of ["create_identity", "list_identities", "get_identity", "update_policy", "rotate_key", "rotate_token", "revoke_identity", "put_secret", "delete_secret", "query_audit", "verify_audit"]) {
      expect(names).not.toContain(admin);
    }
    await client.close();
  });
});
