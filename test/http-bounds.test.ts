/**
 * Bounded by design, over real HTTP against the built server: one identity cannot hold more than
 * its share of sessions, revocation and token rotation close sessions at once (also when another
 * process did it), slow senders are cut off, and an oversized body gets a 413 every client can read.
 */
import { request } from "node:http";
import net from "node:net";
import { afterAll, describe, expect, it } from "vitest";
import { CLI, INITIALIZE, cleanupHomes, spawnSync, httpClient, makeHome, openHeldSession, rawPost, settlesWithin, startHttpServer } from "./support/home.js";

afterAll(() => cleanupHomes());

const CAP = 5;
const STREAM_END_MS = 20_000; // generous: the periodic credential check runs every few seconds

describe("sessions per identity", () => {
  it(`a flood of sessions from one token evicts only its own idle ones, in-use ones are never evicted (429), and other identities and the admin are still served`, async () => {
    const home = makeHome({ SIGIL_MAX_SESSIONS_PER_IDENTITY: String(CAP) });
    const a = home.createIdentity({ name: "flooder", channels: "" });
    const b = home.createIdentity({ name: "bystander", channels: "" });
    const server = await startHttpServer(home);
    try {
      // 60 initializes at once from one token: all answered, but only CAP of them still exist.
      const flood = await Promise.all(Array.from({ length: 60 }, () => rawPost(server.url, a.token, INITIALIZE)));
      expect(flood.every((r) => r.status === 200 && r.sessionId)).toBe(true);
      const alive = await Promise.all(flood.map((r) => rawPost(server.url, a.token, { jsonrpc: "2.0", id: 2, method: "ping" }, r.sessionId).then((p) => p.status)));
      expect(alive.filter((s) => s === 200)).toHaveLength(CAP);
      expect(alive.filter((s) => s === 404)).toHaveLength(60 - CAP);

      // When all CAP sessions are in use (each holds an open stream), the next one is refused, clearly.
      const held = [];
      for (let i = 0; i < CAP; i++) held.push(await openHeldSession(server.url, a.token));
      const refused = await rawPost(server.url, a.token, INITIALIZE);
      expect(refused.status).toBe(429);
      expect(JSON.parse(refused.text).error.message).toMatch(/^Too many sessions: this identity already has 5 sessions, all in use \(SIGIL_MAX_SESSIONS_PER_IDENTITY\)/);
      // …and none of the held ones was touched.
      for (const h of held) expect(await settlesWithin(h.ended, 200)).toBe(false);

      // Another identity and the admin are served as usual.
      const other = await httpClient(server.url, b.token);
      expect(((await other.client.callTool({ name: "whoami", arguments: {} })).structuredContent as any).id).toBe(b.id);
      const admin = await httpClient(server.url, home.adminToken);
      expect((await admin.client.listTools()).tools.map((t) => t.name)).toContain("revoke_identity");

      // Revoking the flooder from another process (the CLI) closes its sessions without waiting for the idle timeout.
      home.json(["identity", "revoke", a.id]);
      for (const h of held) expect(await settlesWithin(h.ended, STREAM_END_MS), "a revoked identity's stream stays open").toBe(true);
      // The bystander's session is untouched.
      expect(((await other.client.callTool({ name: "whoami", arguments: {} })).structuredContent as any).id).toBe(b.id);
      await other.client.close();
      await admin.client.close();
    } finally {
      await server.stop();
    }
  });

  it("rotating a token (admin tool in this process, or the CLI) closes the sessions the old token opened, and the new token gets the full share", async () => {
    const home = makeHome({ SIGIL_MAX_SESSIONS_PER_IDENTITY: String(CAP) });
    const a = home.createIdentity({ name: "rotated", channels: "" });
    const server = await startHttpServer(home);
    try {
      const admin = await httpClient(server.url, home.adminToken);
      const held = [];
      for (let i = 0; i < CAP; i++) held.push(await openHeldSession(server.url, a.token));
      expect((await rawPost(server.url, a.token, INITIALIZE)).status).toBe(429);
      const r = (await admin.client.callTool({ name: "rotate_token", arguments: { identityId: a.id } })).structuredContent as any;
      for (const h of held) expect(await settlesWithin(h.ended, STREAM_END_MS)).toBe(true);
      const again = [];
      for (let i = 0; i < CAP; i++) again.push(await openHeldSession(server.url, r.token));
      expect((await rawPost(server.url, r.token, INITIALIZE)).status).toBe(429);

      // The same from another process: the CLI rotates, this server notices on its own.
      const rotated = home.json(["identity", "rotate-token", a.id]);
      for (const h of again) expect(await settlesWithin(h.ended, STREAM_END_MS)).toBe(true);
      expect((await rawPost(server.url, rotated.token, INITIALIZE)).status).toBe(200);
      await admin.client.close();
    } finally {
      await server.stop();
    }
  });

  it("SIGIL_MAX_SESSIONS_PER_IDENTITY that is not a whole number from 1 to 10000 stops the server with a clear message", () => {
    const home = makeHome();
    const r = spawnSync(process.execPath, [CLI, "serve", "--http", "--port", "0"], { env: { ...home.env, SIGIL_MAX_SESSIONS_PER_IDENTITY: "0" }, encoding: "utf8", timeout: 20_000 });
    expect(r.status).toBe(2); // a bad environment is a usage error
    expect(r.stderr).toMatch(/SIGIL_MAX_SESSIONS_PER_IDENTITY must be a whole number from 1 to 10000, not "0"/);
  });
});

describe("slow and oversized requests", () => {
  it("a body trickled byte by byte is cut off after SIGIL_REQUEST_TIMEOUT_MS, and so are headers; other sessions carry on", async () => {
    const home = makeHome({ SIGIL_REQUEST_TIMEOUT_MS: "1500" });
    const a = home.createIdentity({ channels: "" });
    const server = await startHttpServer(home);
    try {
      const { client } = await httpClient(server.url, a.token);
      const t0 = Date.now();
      let sent = 0;
      const body = await new Promise<string>((resolve) => {
        const req = request(server.url, {
          method: "POST",
          headers: { "content-type": "application/json", accept: "application/json, text/event-stream", authorization: `Bearer ${a.token}`, "content-length": "1000" },
        });
        req.on("response", (res) => resolve(String(res.statusCode)));
        req.on("error", () => resolve("reset"));
        req.on("close", () => resolve("closed"));
        req.flushHeaders();
        const tick = setInterval(() => {
          if (req.destroyed || Date.now() - t0 > 30_000) return clearInterval(tick);
          req.write("{");
          sent++;
        }, 250);
      });
      const slowHeaders = await new Promise<string>((resolve) => {
        const sock = net.connect(server.port, "127.0.0.1");
        sock.write(`POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:${server.port}\r\n`);
        const tick = setInterval(() => (sock.destroyed ? clearInterval(tick) : sock.write("X")), 250);
        let got = "";
        sock.on("data", (d) => (got += d.toString()));
        sock.on("close", () => {
          clearInterval(tick);
          resolve(got.split("\r\n")[0] ?? "");
        });
      });
      const elapsed = Date.now() - t0;
      expect(["408", "reset", "closed"]).toContain(body);
      expect(sent).toBeGreaterThan(2); // it was let in, then cut off for being slow
      expect(slowHeaders === "" || /^HTTP\/1\.1 408/.test(slowHeaders), slowHeaders).toBe(true);
      expect(elapsed).toBeLessThan(25_000);
      expect(((await client.callTool({ name: "whoami", arguments: {} })).structuredContent as any).id).toBe(a.id);
      await client.close();
    } finally {
      await server.stop();
    }
  });

  it("an 8 MiB POST gets a 413 that Node's fetch can read (declared or chunked), and the connection can be reused", async () => {
    const home = makeHome();
    const a = home.createIdentity({ channels: "" });
    const server = await startHttpServer(home);
    try {
      const headers = { "content-type": "application/json", accept: "application/json, text/event-stream", authorization: `Bearer ${a.token}` };
      for (let i = 0; i < 3; i++) {
        const r = await fetch(server.url, { method: "POST", headers, body: Buffer.alloc(8 * 1024 * 1024, 0x7b) });
        expect(r.status).toBe(413);
        expect((await r.json()).error.message).toMatch(/^Request body too large \(the limit is 1048576 bytes\)/);
      }
      // A body still being sent when the limit is crossed (chunked, 1 MiB at a time): the answer
      // must wait for its end, or the client's next write fails (EPIPE) before it reads anything.
      let chunks = 0;
      const chunked = new ReadableStream({
        async pull(c) {
          await new Promise((r) => setTimeout(r, 30));
          if (chunks++ < 8) c.enqueue(new Uint8Array(1024 * 1024).fill(0x7b));
          else c.close();
        },
      });
      const r = await fetch(server.url, { method: "POST", headers, body: chunked, duplex: "half" } as RequestInit);
      expect(r.status).toBe(413);
      expect((await rawPost(server.url, a.token, INITIALIZE)).status).toBe(200);
    } finally {
      await server.stop();
    }
  });
});
