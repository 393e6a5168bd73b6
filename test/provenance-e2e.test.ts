/**
 * Portable trust, end to end: sign_http_request over stdio (the built CLI, the real SDK client),
 * verified by independent RFC 9421 implementations (`web-bot-auth`, `http-message-signatures`)
 * with keys fetched from the running HTTP server's key directory — whose own response signature
 * is verified too.
 */
import { readFileSync } from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { verify as webBotAuthVerify } from "web-bot-auth";
import { verifierFromJWK } from "web-bot-auth/crypto";
import { verify as httpsigVerify } from "http-message-sig";
import { httpbis, createVerifier } from "http-message-signatures";
import { cleanupHomes, makeHome, startHttpServer, stdioClient, text, type Home, type HttpServer, type Identity } from "./support/home.js";
import { jwkThumbprint, publicJwk, publicKeyObject } from "../src/crypto/jwk.js";

afterAll(cleanupHomes);

const SHOP = "https://shop.example";
const DIRECTORY = "/.well-known/http-message-signatures-directory";

type Jwk = { kty: string; crv: string; x: string; kid: string; nbf: number; exp?: number };
const rawKey = (jwk: Jwk): Uint8Array => new Uint8Array(Buffer.from(jwk.x, "base64url"));

/** web-bot-auth's verifier for one key, plus the keyid check it leaves to the caller. */
async function wbaVerifier(publicKey: Uint8Array) {
  const inner = await verifierFromJWK(publicJwk(publicKey));
  return async (data: string, sig: Uint8Array, params: { keyid: string }) => {
    if (params.keyid !== jwkThumbprint(publicKey)) throw new Error("unknown keyid");
    return inner(data, sig, params as Parameters<typeof inner>[2]);
  };
}

/** http-message-signatures with a key store made of a fetched JWKS. */
function dhensby(keys: Jwk[], message: { method: string; url: string; headers: Record<string, string> }, requiredFields = ["@authority", "@path"]) {
  return httpbis.verifyMessage(
    {
      keyLookup: async (p) => {
        const k = keys.find((j) => j.kid === p.keyid && jwkThumbprint(rawKey(j)) === p.keyid);
        return k ? { id: k.kid, algs: ["ed25519"], verify: createVerifier(publicKeyObject(rawKey(k)), "ed25519") } : null;
      },
      requiredParams: ["created", "expires", "keyid", "alg", "nonce", "tag"],
      requiredFields,
    },
    message,
  );
}

let home: Home;
let server: HttpServer;
let signer: Identity;
let other: Identity;
let origin: string;

beforeAll(async () => {
  home = makeHome();
  signer = home.createIdentity({ name: "shopper", channels: "sign", policy: { allowedSigningOrigins: [SHOP] } });
  other = home.createIdentity({ name: "browser", channels: "sign", policy: { allowedSigningOrigins: ["*"] } });
  const revoked = home.createIdentity({ name: "gone", channels: "sign", policy: {} });
  home.json(["identity", "revoke", revoked.id]);
  server = await startHttpServer(home);
  origin = new URL(server.url).origin;
}, 30_000);

afterAll(async () => {
  await server?.stop();
});

async function fetchDirectory(): Promise<{ keys: Jwk[]; headers: Record<string, string>; status: number }> {
  const res = await fetch(origin + DIRECTORY);
  const headers = Object.fromEntries(res.headers.entries());
  return { status: res.status, headers, keys: ((await res.json()) as { keys: Jwk[] }).keys };
}

describe("key directory on the HTTP server", () => {
  it("serves every live identity's current key, no token needed, with a response signature per key that independent verifiers accept", async () => {
    const d = await fetchDirectory();
    expect(d.status).toBe(200);
    expect(d.headers["content-type"]).toBe("application/http-message-signatures-directory+json");
    expect(d.keys.map((k) => k.kid).sort()).toEqual([signer.keyId, other.keyId].sort()); // not the revoked one
    for (const k of d.keys) {
      expect(k).toMatchObject({ kty: "OKP", crv: "Ed25519" });
      expect(jwkThumbprint(rawKey(k))).toBe(k.kid);
    }
    const request = { method: "GET", url: origin + DIRECTORY, headers: {} as Record<string, string> };
    const response = { status: 200, headers: d.headers };
    // http-message-signatures: each binding verifies with its key, and not for another authority.
    for (const k of d.keys) {
      const one = (url: string) =>
        httpbis.verifyMessage(
          {
            keyLookup: async (p) => (p.keyid === k.kid ? { id: k.kid, algs: ["ed25519"], verify: createVerifier(publicKeyObject(rawKey(k)), "ed25519") } : null),
            requiredParams: ["created", "expires", "keyid", "tag"],
          },
          response,
          { ...request, url },
        );
      await expect(one(request.url)).resolves.toBe(true);
      await expect(one(`http://evil.example${DIRECTORY}`)).resolves.toBe(false);
    }
  });

  it("a one-identity directory verifies with web-bot-auth's RFC 9421 layer (http-message-sig, which takes one signature)", async () => {
    const solo = makeHome();
    const only = solo.createIdentity({ name: "solo", channels: "sign", policy: {} });
    const srv = await startHttpServer(solo);
    try {
      const url = `${new URL(srv.url).origin}${DIRECTORY}`;
      const res = await fetch(url);
      const headers = Object.fromEntries(res.headers.entries());
      const keys = ((await res.json()) as { keys: Jwk[] }).keys;
      expect(keys.map((k) => k.kid)).toEqual([only.keyId]);
      const request = { method: "GET", url, headers: {} as Record<string, string> };
      const check = (req: typeof request) =>
        httpsigVerify({ request: req, response: { status: 200, headers } }, async (data, sig, p) => {
          await (await wbaVerifier(rawKey(keys[0]!)))(data, sig, p as { keyid: string });
          return p;
        });
      expect((await check(request)).tag).toBe("http-message-signatures-directory");
      await expect(check({ ...request, url: `http://evil.example${DIRECTORY}` })).rejects.toThrow();
    } finally {
      await srv.stop();
    }
  });

  it("serves one identity's JWKS (current and retired keys with validity) at /identities/<id>/keys, the same as `sigil keys export`", async () => {
    const id = home.createIdentity({ name: "rotator", channels: "sign", policy: {} });
    const rotated = home.json<{ keyId: string; previousKeyId: string }>(["identity", "rotate-key", id.id]);
    const res = await fetch(`${origin}/identities/${id.id}/keys`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("application/jwk-set+json");
    const jwks = (await res.json()) as { identity: string; keys: Jwk[] };
    expect(jwks.identity).toBe(id.id);
    expect(jwks.keys.map((k) => k.kid)).toEqual([rotated.previousKeyId, rotated.keyId]);
    const [old, cur] = jwks.keys as [Jwk, Jwk];
    expect(old.exp).toBeTypeOf("number");
    expect(cur.nbf).toBe(old.exp);
    expect(cur.exp).toBeUndefined();
    expect(home.json(["keys", "export", id.id])).toEqual(jwks);
    expect((await fetch(`${origin}/identities/id_00000000000000000000/keys`)).status).toBe(404);
    expect((await fetch(`${origin}/identities/..%2Fsigil/keys`)).status).toBe(404);
    // Public routes are GET-only and /mcp still needs a token.
    expect((await fetch(`${origin}/identities/${id.id}/keys`, { method: "POST" })).status).toBe(404);
    expect((await fetch(`${origin}/mcp`, { method: "POST", body: "{}" })).status).toBe(401);
  });
});

describe("sign_http_request through MCP over stdio", () => {
  it("is listed only for identities with the sign channel", async () => {
    const plain = home.createIdentity({ name: "nosign", channels: "email", policy: {} });
    const { client } = await stdioClient(home, plain.token);
    expect((await client.listTools()).tools.map((t) => t.name)).not.toContain("sign_http_request");
    const r = await client.callTool({ name: "sign_http_request", arguments: { method: "GET", url: `${SHOP}/` } });
    expect(text(r)).toMatch(/^denied: tool_not_available: /);
    await client.close();
  });

  it("returns web-bot-auth headers that web-bot-auth and http-message-signatures verify with the key from the directory", async () => {
    const { client } = await stdioClient(home, signer.token);
    expect((await client.listTools()).tools.map((t) => t.name)).toContain("sign_http_request");
    const url = `${SHOP}/products/42?color=red`;
    const r = await client.callTool({ name: "sign_http_request", arguments: { method: "GET", url } });
    expect(r.isError).toBeFalsy();
    const s = r.structuredContent as any;
    expect(s.keyid).toBe(signer.keyId);
    expect(s.tag).toBe("web-bot-auth");
    expect(s.headers["Signature-Agent"]).toBeUndefined(); // no SIGIL_PUBLIC_URL: nothing to point at
    expect(s.expires - s.created).toBeGreaterThan(0);
    expect(s.expires - s.created).toBeLessThanOrEqual(480);
    expect(Buffer.from(s.nonce, "base64")).toHaveLength(64);
    expect(s.receipt).toMatchObject({ identityId: signer.id, keyId: signer.keyId });

    const { keys } = await fetchDirectory();
    const key = keys.find((k) => k.kid === s.keyid)!;
    expect(key).toBeDefined();
    const verifier = await wbaVerifier(rawKey(key));
    await expect(webBotAuthVerify(new Request(url, { headers: s.headers }), verifier)).resolves.toBeUndefined();
    await expect(webBotAuthVerify(new Request(`${SHOP}/products/43`, { headers: s.headers }), verifier)).rejects.toThrow();
    await expect(webBotAuthVerify(new Request(`https://evil.example/products/42`, { headers: s.headers }), verifier)).rejects.toThrow();
    await expect(dhensby(keys, { method: "GET", url, headers: s.headers })).resolves.toBe(true);
    await expect(dhensby(keys, { method: "GET", url: `${SHOP}/checkout`, headers: s.headers })).resolves.toBe(false);

    // A fresh nonce every time.
    const again = (await client.callTool({ name: "sign_http_request", arguments: { method: "GET", url } })).structuredContent as any;
    expect(again.nonce).not.toBe(s.nonce);
    await client.close();
  });

  it("signs the Visa TAP tags with Signature-Agent (SIGIL_PUBLIC_URL) and Content-Digest; http-message-signatures verifies them", async () => {
    const { client } = await stdioClient(home, other.token, { env: { SIGIL_PUBLIC_URL: "https://sigil.example" } });
    const { keys } = await fetchDirectory();
    const digest = "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:";
    for (const tag of ["agent-browser-auth", "agent-payer-auth"]) {
      const url = "https://merchant.example/pay/checkout?session=9";
      const r = await client.callTool({ name: "sign_http_request", arguments: { method: "POST", url, tag, bodyDigest: digest } });
      expect(r.isError).toBeFalsy();
      const s = r.structuredContent as any;
      expect(s.headers["Signature-Agent"]).toBe('sig1="https://sigil.example"');
      expect(s.covered).toEqual(['"@authority"', '"@path"', '"signature-agent";key="sig1"', '"content-digest"']);
      const headers = { ...s.headers, "Content-Digest": digest };
      await expect(dhensby(keys, { method: "POST", url, headers }, ["@authority", "@path", "content-digest"])).resolves.toBe(true);
      await expect(dhensby(keys, { method: "POST", url, headers: { ...headers, "Signature-Agent": 'sig1="https://evil.example"' } })).resolves.toBe(false);
      await expect(dhensby(keys, { method: "POST", url, headers: { ...headers, "Content-Digest": "sha-256=:AAAA:" } })).resolves.toBe(false);
    }
    await client.close();
  });

  it("refuses origins the policy does not allow (default deny) and audits every signature and refusal", async () => {
    const none = home.createIdentity({ name: "nopolicy", channels: "sign", policy: {} });
    const a = await stdioClient(home, none.token);
    const r0 = await a.client.callTool({ name: "sign_http_request", arguments: { method: "GET", url: `${SHOP}/` } });
    expect(text(r0)).toMatch(/^denied: origin_not_allowed: /);
    await a.client.close();

    const { client } = await stdioClient(home, signer.token);
    const denied = await client.callTool({ name: "sign_http_request", arguments: { method: "GET", url: "https://evil.example/" } });
    expect(text(denied)).toMatch(/^denied: origin_not_allowed: /);
    const plainHttp = await client.callTool({ name: "sign_http_request", arguments: { method: "GET", url: "http://shop.example/" } });
    expect(text(plainHttp)).toMatch(/^denied: origin_not_allowed: /);
    const extra = await client.callTool({ name: "sign_http_request", arguments: { method: "GET", url: `${SHOP}/`, expires: 9999 } });
    expect(text(extra)).toMatch(/^denied: invalid_arguments: /);
    // A URL that an RFC 3986 client reads as userinfo "shop.example\" at evil.example: refused, audited.
    const trick = await client.callTool({ name: "sign_http_request", arguments: { method: "GET", url: "https://shop.example\\@evil.example/x" } });
    expect(text(trick)).toMatch(/^denied: invalid_arguments: the URL contains a backslash/);
    const userOnly = await client.callTool({ name: "sign_http_request", arguments: { method: "GET", url: "https://user@shop.example/x" } });
    expect(text(userOnly)).toMatch(/^denied: invalid_arguments: the URL carries userinfo/);
    const ok = await client.callTool({ name: "sign_http_request", arguments: { method: "GET", url: `HTTPS://Shop.Example:443/cart?token=s3cret#frag`, headers: { Authorization: "Bearer s3cret" } } });
    const s = ok.structuredContent as any;
    expect(s.url).toBe(`${SHOP}/cart?token=s3cret`); // the normalised URL that was signed
    await client.close();

    const raw = readFileSync(path.join(home.env.SIGIL_HOME!, "audit", `${signer.id}.jsonl`), "utf8");
    expect(raw).not.toContain("s3cret"); // URL query and header values never reach the log
    const log = raw.trim().split("\n").map((l) => JSON.parse(l));
    const result = log.find((e) => e.seq === s.receipt.seq);
    expect(result).toMatchObject({ tool: "sign_http_request", phase: "result", decision: "ok", result: { keyid: signer.keyId, nonce: s.nonce, signature: s.headers.Signature } });
    expect(log.find((e) => e.seq === result.intent)).toMatchObject({
      tool: "sign_http_request",
      phase: "intent",
      decision: "allow",
      args: { method: "GET", origin: SHOP, path: "/cart", headerNames: ["authorization"] },
    });
    expect(log.filter((e) => e.tool === "sign_http_request" && e.decision === "deny").map((e) => e.reason)).toEqual(
      expect.arrayContaining(["origin_not_allowed", "invalid_arguments"]),
    );
    // every signature issued so far in this file by this identity has its result entry
    expect(log.filter((e) => e.tool === "sign_http_request" && e.phase === "result" && e.decision === "ok")).toHaveLength(3);
    expect(home.json(["audit", "verify", signer.id]).ok).toBe(true);
  });
});
