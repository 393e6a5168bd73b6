import { afterAll, describe, expect, it } from "vitest";
import { randomBytes } from "node:crypto";
import { existsSync, readFileSync, readdirSync, statSync, writeFileSync } from "node:fs";
import path from "node:path";
import { type Home, cleanupHomes, makeHome, stdioClient, text, hints } from "./support/home.js";
import { secretNameProblem } from "../src/identity/vault.js";

afterAll(cleanupHomes);

const auditLog = (home: Home, id: string): any[] =>
  readFileSync(path.join(home.env.SIGIL_HOME!, "audit", `${id}.jsonl`), "utf8").trim().split("\n").map((l) => JSON.parse(l));

function filesUnder(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = path.join(dir, name);
    if (statSync(p).isDirectory()) out.push(...filesUnder(p));
    else out.push(p);
  }
  return out;
}

/** Every form of `canary` a careless write could leave: raw, base64, base64url, hex. */
function canaryForms(canary: string): Buffer[] {
  const b = Buffer.from(canary);
  return [b, Buffer.from(b.toString("base64").replace(/=+$/, "")), Buffer.from(b.toString("base64url")), Buffer.from(b.toString("hex"))];
}

function filesCarrying(home: Home, canary: string): string[] {
  const forms = canaryForms(canary);
  return filesUnder(home.env.SIGIL_HOME!).filter((f) => {
    const bytes = readFileSync(f);
    return forms.some((form) => bytes.includes(form));
  });
}

const canary = (): string => "canary-" + randomBytes(12).toString("hex");

describe("secret names", () => {
  it("allow path-like names and refuse traversal, absolute paths, control characters and prototype keys", () => {
    for (const good of ["k", "stripe/api-key", "crm-api-key", "a.b_c-d/E9", "x".repeat(256)]) expect(secretNameProblem(good), good).toBeUndefined();
    const bad = ["", "../etc/passwd", "stripe/../x", "a..b", "/abs", "a/", "a//b", "with space", "tab\tname", "nl\nname", "nul\u0000", "del\u007f", "ünï", ".hidden", "_lead", "-lead", "__proto__", "x/constructor", "prototype", "back\\slash", "x".repeat(257)];
    for (const b of bad) expect(secretNameProblem(b), JSON.stringify(b)).toBeTypeOf("string");
  });
});

describe("sigil secret put and the vault at rest", () => {
  it("stores versions from stdin, never echoes the value, and validates names", () => {
    const home = makeHome();
    const a = home.createIdentity({ channels: "vault", policy: { allowedSecrets: ["stripe/*"] } });
    const v1 = canary();
    const r1 = home.cli(["secret", "put", a.id, "stripe/key", "--json"], { input: v1 + "\n" });
    expect(r1.code).toBe(0);
    expect(JSON.parse(r1.stdout)).toEqual({ name: "stripe/key", version: 1 });
    expect(r1.stdout + r1.stderr).not.toContain(v1);
    expect(home.json(["secret", "put", a.id, "stripe/key"], { input: canary() })).toEqual({ name: "stripe/key", version: 2 });

    for (const bad of ["../etc/passwd", "nl\nname", "__proto__"]) {
      const r = home.cli(["secret", "put", a.id, bad, "--json"], { input: "value" });
      expect(r.code, bad).not.toBe(0);
      expect(r.stdout, bad).toBe("");
      expect(r.stderr.trim().split("\n"), bad).toHaveLength(1);
    }
    const empty = home.cli(["secret", "put", a.id, "stripe/empty"], { input: "" });
    expect(empty.code).not.toBe(0);
    expect(empty.stderr).toMatch(/No secret value on standard input/);
    const unknown = home.cli(["secret", "put", "id_00000000000000000000", "stripe/key"], { input: "v" });
    expect(unknown.code).not.toBe(0);
    expect(home.json(["secret", "list", a.id])).toEqual([{ name: "stripe/key", version: 2 }]);

    // The audit log records name and version of each put (intent, then result), never the value.
    const puts = auditLog(home, a.id).filter((e) => e.tool === "secret_put");
    expect(puts.map((e) => [e.name, e.version, e.phase, e.decision])).toEqual([
      ["stripe/key", 1, "intent", "allow"],
      ["stripe/key", 1, "result", "ok"],
      ["stripe/key", 2, "intent", "allow"],
      ["stripe/key", 2, "result", "ok"],
    ]);
    expect(filesCarrying(home, v1)).toEqual([]);
    expect(home.json(["audit", "verify", a.id]).ok).toBe(true);
  });
});

describe("vault_get over stdio", () => {
  it("returns the latest version of an allowed secret, refuses others, and records name and version only", async () => {
    const home = makeHome();
    const a = home.createIdentity({ channels: "vault", policy: { allowedSecrets: ["stripe/*", "crm-api-key"] } });
    const old = canary();
    const cur = canary();
    const other = canary();
    home.json(["secret", "put", a.id, "stripe/key"], { input: old });
    home.json(["secret", "put", a.id, "stripe/key"], { input: cur });
    home.json(["secret", "put", a.id, "github/token"], { input: other });

    const { client, stderr } = await stdioClient(home, a.token);
    const tools = (await client.listTools()).tools.map((t) => t.name).sort();
    expect(tools).toEqual(["vault_get", "whoami"]);
    const vg = (await client.listTools()).tools.find((t) => t.name === "vault_get")!;
    expect(hints(vg.annotations)).toMatchObject({ readOnlyHint: true, destructiveHint: false, openWorldHint: false });

    const ok = await client.callTool({ name: "vault_get", arguments: { name: "stripe/key" } });
    expect(ok.isError).toBeFalsy();
    const sc = ok.structuredContent as any;
    expect(sc).toMatchObject({ name: "stripe/key", version: 2, value: cur });
    expect(sc.receipt.identityId).toBe(a.id);
    expect(text(ok)).toContain(cur); // clients that only read text get the value too

    const notAllowed = await client.callTool({ name: "vault_get", arguments: { name: "github/token" } });
    expect(notAllowed.isError).toBe(true);
    expect(text(notAllowed)).toMatch(/^denied: secret_not_allowed: /);
    expect(text(notAllowed)).not.toContain(other);

    const missing = await client.callTool({ name: "vault_get", arguments: { name: "crm-api-key" } });
    expect(text(missing)).toMatch(/^denied: secret_not_found: /);

    const traversal = await client.callTool({ name: "vault_get", arguments: { name: "stripe/../github/token" } });
    expect(text(traversal)).toMatch(/^denied: invalid_arguments: name: /);
    const extra = await client.callTool({ name: "vault_get", arguments: { name: "stripe/key", version: 1 } });
    expect(text(extra)).toMatch(/^denied: invalid_arguments: unknown argument/);
    await client.close();

    const log = auditLog(home, a.id).filter((e) => e.tool === "vault_get");
    expect(log.map((e) => [e.phase, e.decision, e.reason ?? null])).toEqual([
      ["intent", "allow", null],
      ["result", "ok", null],
      ["call", "deny", "secret_not_allowed"],
      ["intent", "allow", null],
      ["result", "failed", "secret_not_found"],
      ["call", "deny", "invalid_arguments"],
      ["call", "deny", "invalid_arguments"],
    ]);
    expect(log[0].args).toEqual({ name: "stripe/key" });
    expect(log[1].result).toEqual({ name: "stripe/key", version: 2 });
    expect(log[1].seq).toBe(sc.receipt.seq);
    // Neither the value, nor any encoding of it, is anywhere under the home or on stderr.
    for (const v of [old, cur, other]) {
      expect(filesCarrying(home, v)).toEqual([]);
      for (const f of canaryForms(v)) expect(stderr()).not.toContain(f.toString());
    }
    expect(home.json(["audit", "verify", a.id]).ok).toBe(true);
  });

  it("a sealed value moved to another name, identity or version fails to open, and says nothing of the value", async () => {
    const home = makeHome();
    const a = home.createIdentity({ channels: "vault", policy: { allowedSecrets: ["*"] } });
    const b = home.createIdentity({ channels: "vault", policy: { allowedSecrets: ["*"] } });
    const secretA = canary();
    home.json(["secret", "put", a.id, "shared/key"], { input: secretA });
    home.json(["secret", "put", b.id, "shared/key"], { input: canary() });
    const fileA = path.join(home.env.SIGIL_HOME!, "secrets", `${a.id}.json`);
    const fileB = path.join(home.env.SIGIL_HOME!, "secrets", `${b.id}.json`);
    const docA = JSON.parse(readFileSync(fileA, "utf8"));
    const docB = JSON.parse(readFileSync(fileB, "utf8"));
    const sealedA = docA.secrets["shared/key"];
    expect(JSON.stringify(sealedA)).not.toContain(secretA);
    // Another name of the same identity; another identity, same name; the same place, another version.
    docA.secrets["moved/key"] = { ...sealedA, name: "moved/key" };
    docA.secrets["bumped"] = { ...sealedA, name: "bumped", version: 1 };
    docA.secrets["shared/key"] = { ...sealedA, version: 2 };
    docB.secrets["shared/key"] = sealedA;
    writeFileSync(fileA, JSON.stringify(docA));
    writeFileSync(fileB, JSON.stringify(docB));

    const ca = await stdioClient(home, a.token);
    const cb = await stdioClient(home, b.token);
    const results = [
      await ca.client.callTool({ name: "vault_get", arguments: { name: "moved/key" } }),
      await ca.client.callTool({ name: "vault_get", arguments: { name: "bumped" } }),
      await ca.client.callTool({ name: "vault_get", arguments: { name: "shared/key" } }),
      await cb.client.callTool({ name: "vault_get", arguments: { name: "shared/key" } }),
    ];
    await ca.client.close();
    await cb.client.close();
    for (const r of results) {
      expect(r.isError).toBe(true);
      expect(text(r)).toMatch(/^error: secret_unreadable: /);
      expect(text(r)).not.toContain(secretA);
    }
    expect(ca.stderr() + cb.stderr()).not.toContain(secretA);
    // Every failed open is audited as a failed result.
    expect(auditLog(home, a.id).filter((e) => e.tool === "vault_get" && e.phase === "result").map((e) => e.reason)).toEqual([
      "secret_unreadable",
      "secret_unreadable",
      "secret_unreadable",
    ]);
  });
});

describe("put_secret and delete_secret (admin tools)", () => {
  it("store, version and delete secrets with audit events; never listed to an agent; the value stays sealed", async () => {
    const home = makeHome();
    const a = home.createIdentity({ channels: "vault", policy: { allowedSecrets: ["api/*"] } });
    const v1 = canary();
    const v2 = canary();
    const admin = await stdioClient(home, home.adminToken);
    const names = (await admin.client.listTools()).tools.map((t) => t.name);
    expect(names).toEqual(expect.arrayContaining(["put_secret", "delete_secret"]));
    const p1 = await admin.client.callTool({ name: "put_secret", arguments: { identityId: a.id, name: "api/key", value: v1 } });
    expect(p1.structuredContent).toEqual({ name: "api/key", version: 1 });
    const p2 = await admin.client.callTool({ name: "put_secret", arguments: { identityId: a.id, name: "api/key", value: v2 } });
    expect(p2.structuredContent).toEqual({ name: "api/key", version: 2 });
    expect(text(await admin.client.callTool({ name: "put_secret", arguments: { identityId: a.id, name: "../x", value: "v" } }))).toMatch(
      /^denied: invalid_arguments: /,
    );
    expect(text(await admin.client.callTool({ name: "put_secret", arguments: { identityId: a.id, name: "api/x", value: "" } }))).toMatch(
      /^denied: invalid_arguments: /,
    );
    expect(text(await admin.client.callTool({ name: "put_secret", arguments: { identityId: "id_00000000000000000000", name: "api/x", value: "v" } }))).toMatch(
      /^denied: not_found: /,
    );

    const agent = await stdioClient(home, a.token);
    const agentTools = (await agent.client.listTools()).tools.map((t) => t.name);
    expect(agentTools).not.toContain("put_secret");
    expect(agentTools).not.toContain("delete_secret");
    const denied = await agent.client.callTool({ name: "put_secret", arguments: { identityId: a.id, name: "api/key", value: "x" } });
    expect(text(denied)).toMatch(/^denied: tool_not_available: /);
    expect((await agent.client.callTool({ name: "vault_get", arguments: { name: "api/key" } })).structuredContent).toMatchObject({ version: 2, value: v2 });

    const d = await admin.client.callTool({ name: "delete_secret", arguments: { identityId: a.id, name: "api/key" } });
    expect(d.structuredContent).toEqual({ name: "api/key", deleted: true, version: 2 });
    const again = await admin.client.callTool({ name: "delete_secret", arguments: { identityId: a.id, name: "api/key" } });
    expect(again.structuredContent).toEqual({ name: "api/key", deleted: false });
    expect(text(await agent.client.callTool({ name: "vault_get", arguments: { name: "api/key" } }))).toMatch(/^denied: secret_not_found: /);
    await agent.client.close();
    await admin.client.close();

    const events = auditLog(home, a.id).filter((e) => e.tool === "secret_put" || e.tool === "secret_deleted");
    expect(events.map((e) => [e.tool, e.name, e.version, e.session, e.phase])).toEqual([
      ["secret_put", "api/key", 1, "admin", "intent"],
      ["secret_put", "api/key", 1, "admin", "result"],
      ["secret_put", "api/key", 2, "admin", "intent"],
      ["secret_put", "api/key", 2, "admin", "result"],
      ["secret_deleted", "api/key", 2, "admin", "intent"],
      ["secret_deleted", "api/key", 2, "admin", "result"],
    ]);
    for (const v of [v1, v2]) {
      expect(filesCarrying(home, v)).toEqual([]);
      expect(admin.stderr() + agent.stderr()).not.toContain(v);
    }
    expect(home.json(["audit", "verify", a.id]).ok).toBe(true);
  });
});

describe("the exfiltration guard", () => {
  const hasSms = existsSync(path.join(import.meta.dirname, "../tools/send-sms.ts"));
  it.runIf(hasSms)("a secret read in a session cannot leave through SMS or a card charge of that session, in any common encoding", async () => {
    const home = makeHome();
    const a = home.createIdentity({
      channels: "sms,vault,card",
      phone: "+14155550100",
      policy: { allowedSecrets: ["otp/*"], allowedPhoneCountries: ["US"], cardSpendingLimitCents: 10_000 },
    });
    const secret = canary();
    home.json(["secret", "put", a.id, "otp/seed"], { input: secret });
    const { client } = await stdioClient(home, a.token);
    // Before the secret is read, a body that happens to hold it is not the guard's business.
    expect((await client.callTool({ name: "vault_get", arguments: { name: "otp/seed" } })).isError).toBeFalsy();
    const b64 = Buffer.from(secret).toString("base64");
    const hex = Buffer.from(secret).toString("hex").toUpperCase();
    for (const body of [`the seed is ${secret}`, `b64: ${b64}`, `hex ${hex}`, `spaced ${secret.slice(0, 10)} ${secret.slice(10)}`]) {
      const r = await client.callTool({ name: "send_sms", arguments: { to: "+14155550123", body } });
      expect(r.isError, body).toBe(true);
      expect(text(r), body).toMatch(/^denied: secret_exfiltration: /);
    }
    const charge = await client.callTool({
      name: "card_charge",
      arguments: { amountCents: 100, currency: "USD", merchant: "Shop", description: `ref ${secret}`, idempotencyKey: "exf-1" },
    });
    expect(text(charge)).toMatch(/^denied: secret_exfiltration: /);
    const fine = await client.callTool({ name: "send_sms", arguments: { to: "+14155550123", body: "your code is ready" } });
    expect(fine.isError).toBeFalsy();
    await client.close();

    const refusals = auditLog(home, a.id).filter((e) => e.reason === "secret_exfiltration");
    expect(refusals.map((e) => e.tool)).toEqual(["send_sms", "send_sms", "send_sms", "send_sms", "card_charge"]);
    expect(filesCarrying(home, secret)).toEqual([]); // not in the outbox, the ledger or the log
  });
});
