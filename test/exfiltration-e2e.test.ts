/**
 * The exfiltration guard end to end, through the built server (README "Secrets stay secret"): each
 * attack from the hostile review is refused after vault_get; the guard holds in a second session
 * and a second process of the same identity; a secret split across two SMS is caught; and a secret
 * passed in any argument (idempotency keys, signing URLs, digests, headers, unknown tool and
 * argument names) never reaches the log, a bundle, a receipt, the outbox or the operator log.
 */
import { afterAll, describe, expect, it } from "vitest";
import { randomBytes } from "node:crypto";
import { readFileSync, readdirSync, statSync } from "node:fs";
import path from "node:path";
import { type Home, cleanupHomes, httpClient, makeHome, startHttpServer, stdioClient, text } from "./support/home.js";

afterAll(cleanupHomes);

const POLICY = {
  allowedSecrets: ["*"],
  allowedDomains: ["example.com"],
  allowedPhoneCountries: ["US"],
  cardSpendingLimitCents: 100_000,
  allowedSigningOrigins: ["https://shop.example"],
};

function setup() {
  const home = makeHome();
  const a = home.createIdentity({ channels: "vault,sms,email,voice,card,sign", policy: POLICY, phone: "+14155550100", email: "agent@example.com" });
  // Letters and digits only, so every 16-character window must match exactly.
  const secret = "Sx" + randomBytes(15).toString("hex");
  expect(home.cli(["secret", "put", a.id, "api/key"], { input: secret }).code).toBe(0);
  return { home, a, secret };
}

function filesUnder(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = path.join(dir, name);
    if (statSync(p).isDirectory()) out.push(...filesUnder(p));
    else out.push(p);
  }
  return out;
}

/** The secret and the encodings a careless write could leave (raw, either case, base64, base64url, hex). */
function forms(secret: string): string[] {
  const b = Buffer.from(secret);
  return [secret, secret.toUpperCase(), secret.toLowerCase(), b.toString("base64").replace(/=+$/, ""), b.toString("base64url"), b.toString("hex")];
}
const carrying = (haystack: string | Buffer, secret: string): boolean => forms(secret).some((f) => haystack.includes(f));

function base32(bytes: Buffer): string {
  const A = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  let bits = 0;
  let acc = 0;
  let out = "";
  for (const b of bytes) {
    acc = (acc << 8) | b;
    bits += 8;
    while (bits >= 5) {
      bits -= 5;
      out += A[(acc >> bits) & 31];
    }
    acc &= (1 << bits) - 1;
  }
  if (bits > 0) out += A[(acc << (5 - bits)) & 31];
  return out;
}

function attacks(secret: string): Array<[string, string]> {
  return [
    ["raw", `the key is ${secret}`],
    ["base64 of a longer string", Buffer.from(`my api key: ${secret} (do not share)`).toString("base64")],
    ["base64 of a longer string, unpadded, offset 1", Buffer.from(`x${secret}`).toString("base64").replace(/=+$/, "")],
    ["percent-encoding every byte", [...Buffer.from(secret)].map((b) => `%${b.toString(16).padStart(2, "0")}`).join("")],
    ["reversal", [...secret].reverse().join("")],
    ["upper-casing", secret.toUpperCase()],
    ["separators", [...secret].join(" - ")],
    ["zero-width characters", [...secret].join("\u200b")],
    ["fullwidth characters", [...secret].map((c) => String.fromCodePoint(c.codePointAt(0)! + 0xfee0)).join("")],
    ["HTML entities", [...secret].map((c) => `&#${c.codePointAt(0)};`).join("")],
    ["base32", base32(Buffer.from(`key=${secret}`))],
  ];
}

const outboxText = (home: Home): string =>
  filesUnder(path.join(home.env.SIGIL_HOME!, "outbox"))
    .map((f) => readFileSync(f, "utf8"))
    .join("\n");

describe("the exfiltration guard through the built server", () => {
  it("refuses each attack from the hostile review after vault_get, and a secret split across two SMS", async () => {
    const { home, a, secret } = setup();
    const { client, transport } = await stdioClient(home, a.token);
    const sms = (body: string) => client.callTool({ name: "send_sms", arguments: { to: "+14155550123", body } });
    expect(text(await sms("before reading: hello"))).toMatch(/^SMS /);
    const got = await client.callTool({ name: "vault_get", arguments: { name: "api/key" } });
    expect((got.structuredContent as any).value).toBe(secret);
    for (const [what, body] of attacks(secret)) expect(text(await sms(body)), what).toMatch(/^denied: secret_exfiltration: /);
    // Email and calls too, in any field.
    expect(text(await client.callTool({ name: "send_email", arguments: { to: ["bob@example.com"], subject: "hi", text: Buffer.from(secret).toString("base64") } }))).toMatch(/^denied: secret_exfiltration: /);
    expect(text(await client.callTool({ name: "place_call", arguments: { to: "+14155550123", message: [...secret].join(" ") } }))).toMatch(/^denied: secret_exfiltration: /);
    // Split across two SMS: the first half goes (it carries no 16-character run), the second is refused.
    expect(text(await sms(`part one: ${secret.slice(0, 12)}`))).toMatch(/^SMS /);
    expect(text(await sms(`${secret.slice(12, 24)} part two`))).toMatch(/^denied: secret_exfiltration: /);
    // Unrelated messages still go.
    expect(text(await sms("all done, thanks"))).toMatch(/^SMS /);
    const out = outboxText(home);
    expect(out).toContain(secret.slice(0, 12));
    expect(out).not.toContain(secret.slice(12, 24));
    expect(carrying(out, secret)).toBe(false);
    await transport.close();
  }, 180_000);

  it("holds for a second session and a second process of the same identity", async () => {
    const { home, a, secret } = setup();
    const reader = await stdioClient(home, a.token);
    expect((await reader.client.callTool({ name: "vault_get", arguments: { name: "api/key" } })).structuredContent).toMatchObject({ value: secret });
    await reader.transport.close();
    // Another process (a new stdio server), which never read the secret.
    const other = await stdioClient(home, a.token);
    expect(text(await other.client.callTool({ name: "send_sms", arguments: { to: "+14155550123", body: `fyi ${secret}` } }))).toMatch(/^denied: secret_exfiltration: /);
    expect(text(await other.client.callTool({ name: "send_sms", arguments: { to: "+14155550123", body: "fyi nothing" } }))).toMatch(/^SMS /);
    await other.transport.close();
    // Two sessions of one HTTP server: one reads, the other tries.
    const server = await startHttpServer(home);
    try {
      const s1 = await httpClient(server.url, a.token);
      const s2 = await httpClient(server.url, a.token);
      expect(text(await s2.client.callTool({ name: "send_sms", arguments: { to: "+14155550123", body: secret.split("").reverse().join("") } }))).toMatch(/^denied: secret_exfiltration: /);
      await s1.client.callTool({ name: "vault_get", arguments: { name: "api/key" } });
      expect(text(await s2.client.callTool({ name: "send_email", arguments: { to: ["bob@example.com"], subject: secret.toUpperCase(), text: "x" } }))).toMatch(/^denied: secret_exfiltration: /);
      await s1.transport.close();
      await s2.transport.close();
    } finally {
      await server.stop();
    }
    const refusals = home.auditLog(a.id).filter((e: any) => e.reason === "secret_exfiltration");
    expect(refusals.length).toBe(3);
    expect(carrying(outboxText(home), secret)).toBe(false);
  }, 180_000);

  it("a secret in any argument never reaches the log, bundles, receipts, the outbox or the operator log", async () => {
    const { home, a, secret } = setup();
    const { client, transport, stderr } = await stdioClient(home, a.token);
    await client.callTool({ name: "vault_get", arguments: { name: "api/key" } });
    const calls: Array<[string, Record<string, unknown>]> = [
      ["send_email", { to: ["bob@example.com"], subject: "s", text: "t", idempotencyKey: secret }],
      ["send_sms", { to: "+14155550123", body: "b", idempotencyKey: secret }],
      ["place_call", { to: "+14155550123", message: "m", idempotencyKey: `k-${secret}` }],
      ["card_charge", { amountCents: 100, currency: "USD", merchant: "Shop", idempotencyKey: secret }],
      ["sign_http_request", { method: "GET", url: `https://shop.example/${secret}` }],
      ["sign_http_request", { method: "GET", url: `https://shop.example/x?token=${secret}` }],
      ["sign_http_request", { method: "POST", url: "https://shop.example/x", bodyDigest: `sha-256=:${Buffer.from(secret).toString("base64")}:` }],
      ["sign_http_request", { method: "GET", url: "https://shop.example/x", headers: { authorization: `Bearer ${secret}` } }],
      ["sign_http_request", { method: "GET", url: "https://shop.example/x", headers: { [`x-${secret}`]: "1" } }],
      ["vault_get", { name: `api/${secret}` }],
    ];
    for (const [name, args] of calls) {
      expect(text(await client.callTool({ name, arguments: args })), `${name} ${JSON.stringify(args).slice(0, 60)}`).toMatch(/^denied: secret_exfiltration: /);
    }
    // Unknown tool and argument names are recorded as keyed hashes, whatever they are.
    expect(text(await client.callTool({ name: `tool_${secret}`, arguments: {} }))).toMatch(/^denied: tool_not_available: /);
    expect(text(await client.callTool({ name: "send_sms", arguments: { to: "+14155550123", body: "b", [secret]: 1 } }))).toMatch(/^denied: invalid_arguments: /);
    // A few allowed calls, so the log, bundle and receipts have content.
    expect(text(await client.callTool({ name: "send_sms", arguments: { to: "+14155550123", body: "hello", idempotencyKey: "k-1" } }))).toMatch(/^SMS /);
    await transport.close();

    const log = home.auditLog(a.id);
    expect(log.filter((e: any) => e.reason === "secret_exfiltration")).toHaveLength(calls.length);
    const unknownTool = log.find((e: any) => e.reason === "tool_not_available");
    expect(unknownTool.tool).toMatch(/^unknown:hmac-sha256:/);
    const badArgs = log.find((e: any) => e.reason === "invalid_arguments");
    expect(badArgs.args.keys).toEqual(expect.arrayContaining(["to", "body", expect.stringMatching(/^unknown:hmac-sha256:/)]));

    const bundle = home.cli(["audit", "export", a.id, "--json"]);
    expect(bundle.code).toBe(0);
    // Receipts of a refusal by the guard, of the unknown-tool and bad-argument refusals, and of the allowed SMS.
    const sample = [log.find((e: any) => e.reason === "secret_exfiltration"), unknownTool, badArgs, log[log.length - 1]];
    const receipts = sample.map((e: any) => home.cli(["receipt", "show", a.id, String(e.seq), "--json"]).stdout).join("\n");
    expect(receipts).toContain(a.id);
    const leaks = [
      ...filesUnder(home.env.SIGIL_HOME!).filter((f) => carrying(readFileSync(f), secret)),
      ...(carrying(bundle.stdout, secret) ? ["audit export"] : []),
      ...(carrying(receipts, secret) ? ["receipts"] : []),
      ...(carrying(stderr(), secret) ? ["stderr"] : []),
    ];
    expect(leaks).toEqual([]);
    expect(home.json(["audit", "verify", a.id]).ok).toBe(true);
  }, 180_000);
});
