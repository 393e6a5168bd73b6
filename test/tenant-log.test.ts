/**
 * Tenants' own audit logs (src/tenant/log.ts; README "Audit log", "Approvals"): adding and removing
 * an approver — CLI, root admin and tenant admin tools alike — is an intent and an `ok` result in
 * the tenant's log, signed by the tenant's key and checked by `sigil audit verify` (with public
 * data only) together with the registry's approvers. The attacker's side: an approver record put
 * back after its removal names no one (and the refusal is an entry), a deleted record, an edited,
 * truncated or re-signed log are reported, one tenant's admin cannot write another's log, a crash
 * between intent and change is resolved from the store, and `receipt explain` refuses an approval
 * whose approver the tenant's log does not show current. The built CLI and server, both stores.
 */
import { existsSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { type Home, cleanupHomes, cliAsync, makeHome, stdioClient, text, until, withApp } from "./support/home.js";
import { backends, freshDatabaseUrl, pgQuery, pgSkipNote, pgUrl } from "./support/backends.js";

afterAll(cleanupHomes);

const LONG = { timeout: 300_000 };

/** The tenant's log lines as stored, whatever the backend. */
async function lines(home: Home, tenantId: string): Promise<string[]> {
  if (home.store === "file") {
    const f = path.join(home.env.SIGIL_HOME!, "audit", `${tenantId}.jsonl`);
    return existsSync(f) ? readFileSync(f, "utf8").split("\n").filter(Boolean) : [];
  }
  return (await pgQuery(home.env.SIGIL_STORE_URL!, "SELECT line FROM sigil_audit_entries WHERE identity_id = $1 ORDER BY seq", [tenantId])).map((r) => r.line);
}
const log = async (home: Home, tenantId: string): Promise<any[]> => (await lines(home, tenantId)).map((l) => JSON.parse(l));

/** Replaces the tenant's log with these lines (a store writer's edit). */
async function rewrite(home: Home, tenantId: string, next: string[]): Promise<void> {
  if (home.store === "file") {
    writeFileSync(path.join(home.env.SIGIL_HOME!, "audit", `${tenantId}.jsonl`), next.map((l) => l + "\n").join(""));
    return;
  }
  const url = home.env.SIGIL_STORE_URL!;
  await pgQuery(url, "DELETE FROM sigil_audit_entries WHERE identity_id = $1", [tenantId]);
  for (const [i, l] of next.entries()) await pgQuery(url, "INSERT INTO sigil_audit_entries (identity_id, seq, line) VALUES ($1, $2, $3)", [tenantId, i + 1, l]);
  const last = next.length ? JSON.parse(next[next.length - 1]!) : undefined;
  await pgQuery(url, "UPDATE sigil_chain_heads SET seq = $2, hash = $3 WHERE identity_id = $1", [tenantId, next.length, last?.hash ?? null]);
  await pgQuery(url, "DELETE FROM sigil_chain_snapshots WHERE identity_id = $1", [tenantId]);
}

/** A copy of the approver's stored record (and, in the home, its token index), to put back later. */
async function saveApprover(home: Home, id: string): Promise<() => Promise<void>> {
  if (home.store === "file") {
    const dir = home.env.SIGIL_HOME!;
    const saved: Array<[string, string]> = [];
    for (const sub of ["approvers", "approver-tokens"]) {
      for (const n of readdirSync(path.join(dir, sub))) {
        const f = path.join(dir, sub, n);
        if (readFileSync(f, "utf8").includes(id) || n.startsWith(id)) saved.push([f, readFileSync(f, "utf8")]);
      }
    }
    expect(saved.length).toBeGreaterThan(0);
    return async () => {
      for (const [f, body] of saved) writeFileSync(f, body);
    };
  }
  const url = home.env.SIGIL_STORE_URL!;
  const [row] = await pgQuery(url, "SELECT id, tenant_id, token_hash, record, created_at FROM sigil_approvers WHERE id = $1", [id]);
  return async () => {
    await pgQuery(url, "DELETE FROM sigil_approvers WHERE id = $1", [id]);
    await pgQuery(url, "INSERT INTO sigil_approvers (id, tenant_id, token_hash, record, created_at) VALUES ($1, $2, $3, $4, $5)", [row.id, row.tenant_id, row.token_hash, row.record, row.created_at]);
  };
}

async function deleteApprover(home: Home, id: string): Promise<void> {
  if (home.store === "file") rmSync(path.join(home.env.SIGIL_HOME!, "approvers", `${id}.json`));
  else await pgQuery(home.env.SIGIL_STORE_URL!, "DELETE FROM sigil_approvers WHERE id = $1", [id]);
}

function verify(home: Home, id?: string): { code: number; doc: any; stderr: string } {
  const r = home.cli(["audit", "verify", ...(id ? [id] : []), "--json"]);
  return { code: r.code, doc: JSON.parse(r.stdout), stderr: r.stderr };
}

async function admin(home: Home, token: string) {
  const { client } = await stdioClient(home, token);
  return {
    close: () => client.close(),
    call: async (name: string, args: Record<string, unknown>) => {
      const r = (await client.callTool({ name, arguments: args })) as any;
      return { text: text(r), data: r.structuredContent as any, isError: r.isError };
    },
  };
}

const shape = (entries: any[]) => entries.map((e) => [e.tool, e.phase, e.decision]);

describe.each(backends)("tenant logs (%s store)", (backend) => {
  it("adding and removing approvers (CLI, root admin, tenant admin) are intent + ok entries in the tenant's own log, signed by its key; audit verify checks the log and the registry against it; another tenant's admin writes nothing there", LONG, async () => {
    const home = makeHome({}, { store: backend });
    const alpha = home.createTenant("alpha");
    const beta = home.createTenant("beta");
    const ann = home.addApprover({ name: "Ann", tenant: alpha.id }); // CLI
    const a = await admin(home, alpha.adminToken);
    const b = await admin(home, beta.adminToken);
    const root = await admin(home, home.adminToken);
    try {
      const bob = await a.call("add_approver", { name: "Bob" }); // tenant admin
      expect(bob.isError, bob.text).toBeFalsy();
      const cat = await root.call("add_approver", { name: "Cat", tenantId: alpha.id }); // root admin
      expect(cat.isError, cat.text).toBeFalsy();
      expect((await a.call("remove_approver", { id: bob.data.id })).isError).toBeFalsy();

      const before = await lines(home, alpha.id);
      // Another tenant's admin: alpha's approvers and tenant are unknown to it, and alpha's log does not move.
      const rm = await b.call("remove_approver", { id: ann.id });
      expect(rm.text).toBe(`denied: not_found: No approver ${ann.id}.`);
      const add = await b.call("add_approver", { name: "Eve", tenantId: alpha.id });
      expect(add.text).toBe(`denied: not_found: No tenant ${alpha.id}.`);
      expect(await lines(home, alpha.id)).toEqual(before);
      expect((await log(home, beta.id)).some((e) => JSON.stringify(e).includes(ann.id))).toBe(false);

      const entries = await log(home, alpha.id);
      expect(shape(entries)).toEqual([
        ["tenant_created", "event", "ok"],
        ["approver_added", "intent", "allow"],
        ["approver_added", "result", "ok"],
        ["approver_added", "intent", "allow"],
        ["approver_added", "result", "ok"],
        ["approver_added", "intent", "allow"],
        ["approver_added", "result", "ok"],
        ["approver_removed", "intent", "allow"],
        ["approver_removed", "result", "ok"],
      ]);
      expect(entries.every((e) => e.identity === alpha.id && e.keyId === alpha.keyId)).toBe(true);
      expect(entries[0]).toMatchObject({ publicKey: alpha.publicKey, name: "alpha" });
      expect(entries[1]).toMatchObject({ approverId: ann.id, approverKeyId: ann.keyId, approverPublicKey: ann.publicKey, session: "admin" });
      expect(entries[7]).toMatchObject({ approverId: bob.data.id });
      expect(entries[8]).toMatchObject({ intent: entries[7].seq });
    } finally {
      await Promise.all([a.close(), b.close(), root.close()]);
    }
    const one = verify(home, alpha.id);
    expect(one.code, one.stderr).toBe(0);
    expect(one.doc).toMatchObject({ ok: true, identities: [], tenants: [{ id: alpha.id, entries: 9, ok: true }] });
    const all = verify(home);
    expect(all.code, all.stderr).toBe(0);
    expect(all.doc.tenants.map((t: any) => t.id).sort()).toEqual([alpha.id, beta.id, "default"].sort());
    expect(home.cli(["audit", "verify"]).stdout).toMatch(new RegExp(`ok   tenant ${alpha.id}: 9 entries verify`));
  });

  it("a store writer who puts a removed approver back, deletes one, or edits, truncates or re-signs the tenant's log is caught: the approver names no one (an entry says why), and audit verify fails", LONG, async () => {
    const home = makeHome({}, { store: backend });
    const ann = home.addApprover({ name: "Ann" });
    const bob = home.addApprover({ name: "Bob" });
    expect(home.cli(["approvals", "list", "--json"], { env: { SIGIL_APPROVER_TOKEN: ann.token } }).code).toBe(0);
    const putBack = await saveApprover(home, ann.id);
    expect(home.cli(["approver", "remove", ann.id]).code).toBe(0);
    const clean = await lines(home, "default");
    expect(verify(home).code).toBe(0);

    // Put back: the record is validly MAC'd (sigil wrote it), but the log removed it.
    await putBack();
    const refused = home.cli(["approvals", "list", "--json"], { env: { SIGIL_APPROVER_TOKEN: ann.token } });
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toMatch(/not a current approver token/);
    const check = (await log(home, "default")).filter((e) => e.tool === "approver_check");
    expect(check).toHaveLength(1);
    expect(check[0]).toMatchObject({ decision: "deny", reason: "approver_removed_in_log", approverId: ann.id });
    const v = verify(home);
    expect(v.code).toBe(1);
    expect(v.doc.tenants.find((t: any) => t.id === "default").error).toMatch(new RegExp(`approver ${ann.id} was removed at .* by the log, but the registry holds it as current \\(a record put back\\)`));
    expect(home.cli(["audit", "verify"]).stdout).toMatch(/FAIL tenant default: the registry disagrees with the log/);

    // Deleted: the log added Bob; the registry lost him.
    await deleteApprover(home, bob.id);
    expect(verify(home, "default").doc.tenants[0].error).toMatch(new RegExp(`approver ${bob.id}, which the log added, is missing from the registry \\(deleted\\)`));

    // Edited: Ann's addition renamed.
    await rewrite(home, "default", clean.map((l) => l.replace('"name":"Ann"', '"name":"Eve"')));
    let r = verify(home, "default");
    expect(r.code).toBe(1);
    expect(r.doc.tenants[0]).toMatchObject({ ok: false, firstBadSeq: 2 });
    expect(r.doc.tenants[0].error).toMatch(/does not match its hash/);

    // Truncated: the removal dropped from the log while the registry says removed.
    await rewrite(home, "default", clean);
    expect(home.cli(["approver", "remove", ann.id, "--json"]).code).toBe(0); // the put-back record: removed again, and recorded
    expect(shape((await log(home, "default")).slice(-2))).toEqual([["approver_removed", "intent", "allow"], ["approver_removed", "result", "ok"]]);
    await rewrite(home, "default", clean.slice(0, -2));
    r = verify(home, "default");
    expect(r.code).toBe(1);
    expect(r.doc.tenants[0].error).toMatch(new RegExp(`approver ${ann.id} is removed in the registry, but the log records no removal`));

    // Another tenant's log (signed by its key) put in this one's place.
    const other = home.createTenant("other");
    home.addApprover({ name: "Zed", tenant: other.id });
    await rewrite(home, "default", await lines(home, other.id));
    r = verify(home, "default");
    expect(r.code).toBe(1);
    expect(r.doc.tenants[0]).toMatchObject({ ok: false, firstBadSeq: 1 });
  });

  it("a crash between an approver's intent and its change is resolved from the store by the next process: not written → failed, written → ok", LONG, async () => {
    const home = makeHome({}, { store: backend });
    const killed = home.cli(["approver", "add", "--name", "Ann", "--json"], { env: { SIGIL_TEST_CRASH: "approver_added:after-intent" } });
    expect(killed.code).not.toBe(0);
    expect(home.json(["approver", "list"])).toEqual([]);
    const bob = home.addApprover({ name: "Bob" }); // the next process to open the log records the first intent failed
    let entries = await log(home, "default");
    expect(shape(entries.slice(1))).toEqual([
      ["approver_added", "intent", "allow"],
      ["approver_added", "result", "failed"],
      ["approver_added", "intent", "allow"],
      ["approver_added", "result", "ok"],
    ]);
    expect(entries[2]).toMatchObject({ intent: entries[1].seq, reason: "interrupted" });

    const crashed = home.cli(["approver", "add", "--name", "Cat", "--json"], { env: { SIGIL_TEST_CRASH: "approver_added:after-change" } });
    expect(crashed.code).not.toBe(0);
    const cat = home.json<any[]>(["approver", "list"]).find((x) => x.name === "Cat");
    expect(cat).toBeDefined();
    // Its record exists, but recovery (the dead process's intent gets its result) happens on the next open of the log.
    const ok = await until(async () => {
      const r = await cliAsync(home, ["approvals", "list", "--json"], { SIGIL_APPROVER_TOKEN: bob.token });
      return r.code === 0 ? r : undefined;
    }, 60_000, "bob's list");
    expect(ok.code).toBe(0);
    entries = await log(home, "default");
    const catIntent = entries.find((e) => e.tool === "approver_added" && e.phase === "intent" && e.approverId === cat.id);
    expect(entries.find((e) => e.phase === "result" && e.intent === catIntent.seq)).toMatchObject({ decision: "ok", reason: "recovered" });
    expect(verify(home, "default").code).toBe(0);
  });

  it("receipt explain anchors the approver in the tenant's log: ok while it shows the approver current; failed when the log never added it or does not verify", LONG, async () => {
    const home = makeHome({}, { store: backend });
    const ann = home.addApprover({ name: "Ann" });
    const a = home.createIdentity({ channels: "card", policy: { cardSpendingLimitCents: 100_000, approval: { aboveCents: 1000, timeoutSeconds: 120 } } });
    const { client } = await stdioClient(home, a.token);
    let receipt: any;
    try {
      const call = client.callTool({ name: "card_charge", arguments: { amountCents: 4200, currency: "USD", merchant: "Acme Books", idempotencyKey: "k1" } }, undefined, { timeout: 150_000 });
      const pending = await until(async () => {
        const r = await cliAsync(home, ["approvals", "list", "--pending", "--json"], { SIGIL_APPROVER_TOKEN: ann.token });
        return r.code === 0 ? JSON.parse(r.stdout)[0] : undefined;
      }, 60_000, "the pending approval");
      const d = await cliAsync(home, ["approvals", "approve", pending.id, "--json"], { SIGIL_APPROVER_TOKEN: ann.token });
      expect(d.code, d.stderr).toBe(0);
      const r = await call;
      expect(r.isError, text(r)).toBeFalsy();
      receipt = (r.structuredContent as any).receipt;
    } finally {
      await client.close();
    }
    const file = path.join(home.dir, "receipt.json");
    writeFileSync(file, JSON.stringify(receipt));
    const explain = () => {
      const r = home.cli(["receipt", "explain", file, "--json"]);
      return { code: r.code, approval: JSON.parse(r.stdout).answers.find((x: any) => x.question === "approval") };
    };
    let x = explain();
    expect(x.code).toBe(0);
    expect(x.approval).toMatchObject({ status: "ok", answer: `${receipt.approvalId} for tenant default: ${ann.id} (approver, signed)` });
    expect(x.approval.detail).toMatch(/each on tenant default's log at the time/);
    // A later removal does not undo a decision made while the approver was current.
    expect(home.cli(["approver", "remove", ann.id]).code).toBe(0);
    expect(explain().approval.status).toBe("ok");

    // The log cut back to its creation entry: the approver was never added there.
    const clean = await lines(home, "default");
    await rewrite(home, "default", clean.slice(0, 1));
    x = explain();
    expect(x.code).toBe(1);
    expect(x.approval).toMatchObject({ status: "failed" });
    expect(x.approval.detail).toMatch(new RegExp(`^approver ${ann.id} \\(seq \\d+\\) is not in tenant default's log: no entry ever added it$`));
    // The log edited: it does not verify, so it anchors nothing, and that is a failure.
    await rewrite(home, "default", clean.map((l) => l.replace('"name":"Ann"', '"name":"Eve"')));
    x = explain();
    expect(x.code).toBe(1);
    expect(x.approval.detail).toMatch(/tenant default's log \(this home's registry\) does not verify: seq 2/);
    // The bundle carries the tenant's log too, and explain uses it.
    await rewrite(home, "default", clean);
    const bundle = path.join(home.dir, "bundle.json");
    writeFileSync(bundle, home.cli(["audit", "export", receipt.identityId]).stdout);
    const b = JSON.parse(readFileSync(bundle, "utf8"));
    expect(b.tenantLog.map((e: any) => e.tool)[0]).toBe("tenant_created");
    const fromBundle = JSON.parse(home.cli(["receipt", "explain", file, "--bundle", bundle, "--json"]).stdout).answers.find((y: any) => y.question === "approval");
    expect(fromBundle).toMatchObject({ status: "ok" });
    const vb = home.cli(["audit", "verify", "--bundle", bundle, "--json"]);
    expect(JSON.parse(vb.stdout).tenants).toEqual([expect.objectContaining({ id: "default", ok: true, entries: clean.length })]);
  });
});

describe.skipIf(!pgUrl)(`sigil store migrate carries tenant logs${pgSkipNote}`, () => {
  it("copies each tenant's log byte for byte, verified there; the approvers keep working and their changes continue the log", LONG, async () => {
    const home = makeHome();
    const t = home.createTenant("acme");
    const ann = home.addApprover({ name: "Ann", tenant: t.id });
    const bob = home.addApprover({ name: "Bob" });
    expect(home.cli(["approver", "remove", bob.id]).code).toBe(0);
    const before = { default: await lines(home, "default"), [t.id]: await lines(home, t.id) };
    const url = await freshDatabaseUrl();
    expect(home.json(["store", "migrate", "--to", url])).toMatchObject({ verified: true });
    for (const [id, want] of Object.entries(before)) {
      expect((await pgQuery(url, "SELECT line FROM sigil_audit_entries WHERE identity_id = $1 ORDER BY seq", [id])).map((r) => r.line)).toEqual(want);
    }
    const env = { SIGIL_STORE_URL: url };
    const v = home.cli(["audit", "verify", "--json"], { env });
    expect(v.code, v.stderr).toBe(0);
    expect(JSON.parse(v.stdout).tenants.map((x: any) => [x.id, x.entries]).sort()).toEqual(Object.entries(before).map(([id, l]) => [id, l.length]).sort());
    // Ann still decides (the log there shows her current); a removal there continues the log.
    expect(home.cli(["approvals", "list", "--json"], { env: { ...env, SIGIL_APPROVER_TOKEN: ann.token } }).code).toBe(0);
    expect(home.cli(["approver", "remove", ann.id], { env }).code).toBe(0);
    expect((await pgQuery(url, "SELECT count(*)::int AS n FROM sigil_audit_entries WHERE identity_id = $1", [t.id]))[0].n).toBe(before[t.id]!.length + 2);
  });
});

describe("receipt explain checks the delegated channel of a tool of several channels", () => {
  it("list_messages: the statement in force must delegate the channel the call names (or one of email, sms); one signed by the tenant's key for another channel fails", LONG, async () => {
    const { explainReceipt } = await import("../src/provenance/explain.js");
    const { signDelegation } = await import("../src/provenance/delegation.js");
    const { tenantJwks } = await import("../src/provenance/directory.js");
    const { AGENT_TOOLS } = await import("../tools/index.js");
    const home = makeHome();
    const a = home.createIdentity({ channels: "email" });
    const { client } = await stdioClient(home, a.token);
    let receipt: any;
    try {
      const r = await client.callTool({ name: "list_messages", arguments: { channel: "email" } });
      expect(r.isError, text(r)).toBeFalsy();
      receipt = (r.structuredContent as any).receipt;
    } finally {
      await client.close();
    }
    const channelOf = (tool: string) => new Map(AGENT_TOOLS.map((t) => [t.name, t.channel])).get(tool);
    const explainWith = (delegations: any[], tenant: any, rec: any) =>
      explainReceipt(receipt, {
        identity: { id: a.id },
        lines: home.auditLog(a.id),
        keys: rec.keys.map((k: any) => ({ keyId: k.keyId, publicKey: k.publicKey, notBefore: k.notBefore, notAfter: k.notAfter, status: k.status })),
        keysFrom: "the home",
        keysAnchored: true,
        delegation: { tenant: { id: tenant.id, keys: tenantJwks(tenant) }, delegations },
        delegationFrom: "the test",
        channelOf,
      });
    await withApp(home, async (app) => {
      const rec = (await app.store.getIdentity(a.id))!;
      const tenant = (await app.store.getTenant("default"))!;
      const ok = await explainWith(rec.delegations!, tenant, rec);
      expect(ok.answers.find((x) => x.question === "delegation")).toMatchObject({ status: "ok" });
      // A statement the tenant's key really signed, for the same key and policy, but only the voice channel.
      const sk = await app.tenants.secretKey(tenant);
      const voiceOnly = rec.delegations!.map((d) => signDelegation(sk, { ...d, channels: ["voice"] }));
      const bad = await explainWith(voiceOnly, tenant, rec);
      expect(bad.answers.find((x) => x.question === "delegation")).toMatchObject({ status: "failed", detail: "it delegates none of the channels list_messages uses (email)" });
    });
  });
});

