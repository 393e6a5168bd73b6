/**
 * The exfiltration guard's journal lives in the store, so whoever writes the store can delete it,
 * or put an older copy back, to make the guard forget a secret vault_get handed out. The signed
 * audit log records every vault_get that handed a value out (its `ok` result, written only after
 * the journal recorded the value), so a journal lacking a read the log has within the 24 h window
 * was tampered with: the read is rebuilt from the vault when the vault still holds that version
 * (and the call is checked against it), otherwise every outbound call is refused
 * (`guard_tampered`, audited). Each attack is made by this test process, a second process beside
 * the running servers, straight on the files or the PostgreSQL rows; the calls go through the
 * built server over stdio.
 */
import { randomBytes } from "node:crypto";
import { afterAll, describe, expect, it } from "vitest";
import { type Home, cleanupHomes, makeHome, stdioClient, text } from "./support/home.js";
import { backends } from "./support/backends.js";
import { readJournal, writeJournal } from "./support/registry-forge.js";

afterAll(cleanupHomes);

const POLICY = { allowedSecrets: ["*"], allowedDomains: ["example.com"] };

function setup(backend: (typeof backends)[number]) {
  const home = makeHome({}, { store: backend });
  const a = home.createIdentity({ channels: "vault,email", policy: POLICY, email: "agent@example.com" });
  const secret = (name: string): string => {
    const value = "Sx" + randomBytes(15).toString("hex");
    expect(home.cli(["secret", "put", a.id, name], { input: value }).code).toBe(0);
    return value;
  };
  return { home, a, secret };
}

async function session(home: Home, token: string) {
  const { client } = await stdioClient(home, token);
  return {
    get: async (name: string) => (await client.callTool({ name: "vault_get", arguments: { name } })).structuredContent as { value: string; version: number },
    send: async (body: string) => text(await client.callTool({ name: "send_email", arguments: { to: ["bob@example.com"], subject: "hello", text: body } })),
    whoami: async () => text(await client.callTool({ name: "whoami", arguments: {} })),
    close: () => client.close(),
  };
}

const refusals = (home: Home, id: string, reason: string) => home.auditLog(id).filter((e) => e.tool === "send_email" && e.decision === "deny" && e.reason === reason);

describe.each(backends)("a tampered exfiltration journal (%s store)", (backend) => {
  it("deleted after vault_get: the read is rebuilt from the vault, and the secret is still refused — in the running server and in a new one", { timeout: 120_000 }, async () => {
    const { home, a, secret } = setup(backend);
    const value = secret("api/key");
    const s1 = await session(home, a.token);
    try {
      expect((await s1.get("api/key")).value).toBe(value);
      expect(await readJournal(home, a.id)).toBeDefined();
      await writeJournal(home, a.id, undefined); // the attacker deletes it
      expect(await s1.send(`the key is ${value}`)).toMatch(/^denied: secret_exfiltration: /);
      await writeJournal(home, a.id, undefined); // and again, for a server that starts afresh
      const s2 = await session(home, a.token);
      try {
        expect(await s2.send(`the key is ${value}`)).toMatch(/^denied: secret_exfiltration: /);
        expect(await s2.send("nothing secret here")).toMatch(/written to the outbox/); // rebuilt, not refused wholesale
      } finally {
        await s2.close();
      }
    } finally {
      await s1.close();
    }
    expect(refusals(home, a.id, "secret_exfiltration")).toHaveLength(2);
  });

  it("deleted after the secret was replaced in the vault: nothing can rebuild it, so every outbound call is refused (guard_tampered, audited); reading tools still work", { timeout: 120_000 }, async () => {
    const { home, a, secret } = setup(backend);
    const value = secret("api/key");
    const s1 = await session(home, a.token);
    try {
      expect((await s1.get("api/key")).version).toBe(1);
      secret("api/key"); // version 2: version 1's value is no longer in the vault
      await writeJournal(home, a.id, undefined);
      const s2 = await session(home, a.token);
      try {
        expect(await s2.send(`the key is ${value}`)).toMatch(/^denied: guard_tampered: .*lacks 1 secret the audit log says vault_get handed out/);
        expect(await s2.send("nothing secret here")).toMatch(/^denied: guard_tampered: /);
        expect(await s2.whoami()).not.toMatch(/^denied/);
      } finally {
        await s2.close();
      }
      expect(await s1.send("nothing secret here")).toMatch(/^denied: guard_tampered: /);
    } finally {
      await s1.close();
    }
    expect(refusals(home, a.id, "guard_tampered")).toHaveLength(3);
    expect(home.auditLog(a.id).some((e) => e.tool === "send_email" && e.decision === "allow")).toBe(false);
    expect(home.cli(["audit", "verify", a.id]).code).toBe(0);
  });

  it("rolled back to an older copy (before the last read): the missing read is caught; rebuilt when the vault still holds it, refused when not", { timeout: 120_000 }, async () => {
    const { home, a, secret } = setup(backend);
    const first = secret("first");
    const second = secret("second");
    const s1 = await session(home, a.token);
    try {
      await s1.get("first");
      const older = await readJournal(home, a.id); // holds `first` only
      await s1.get("second");
      await writeJournal(home, a.id, older);
      // `second` is still version 1 in the vault: rebuilt, and its value refused.
      expect(await s1.send(`x ${second} y`)).toMatch(/^denied: secret_exfiltration: /);
      expect(await s1.send(`x ${first} y`)).toMatch(/^denied: secret_exfiltration: /);
      // Again, with `second` replaced in the vault first: nothing can rebuild it.
      await writeJournal(home, a.id, older);
      secret("second");
      expect(await s1.send("nothing secret here")).toMatch(/^denied: guard_tampered: /);
    } finally {
      await s1.close();
    }
  });

  it("an identity whose journal is legitimately empty (it read nothing) sends as before", { timeout: 120_000 }, async () => {
    const { home, a, secret } = setup(backend);
    secret("api/key");
    const s1 = await session(home, a.token);
    try {
      expect(await readJournal(home, a.id)).toBeUndefined();
      expect(await s1.send("hello")).toMatch(/written to the outbox/);
    } finally {
      await s1.close();
    }
  });
});
