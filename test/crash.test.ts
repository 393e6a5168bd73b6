/**
 * Crash consistency: `sigil serve` processes killed with SIGKILL at random moments under
 * write-heavy load on one home, restarted, again and again. Afterwards the registry parses, every
 * log verifies, every acknowledged action is in the log, nothing was sent or charged twice, and
 * every intent a dead process left open is recorded as unknown by the processes that came after.
 *
 * The schedule (which process dies when, and the mix of calls) comes from a seed printed on stderr;
 * `SIGIL_CRASH_SEED=N` replays it. `SIGIL_SOAK=1` runs many more rounds.
 */
import { appendFileSync, readFileSync } from "node:fs";
import { createHash } from "node:crypto";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { cleanupHomes, makeHome, stdioClient, text } from "./support/home.js";
import { type Server, auditOf, ledgerOf, outboxRecords, resultsByIntent, seedFrom, seeded, startServer } from "./support/fleet.js";
import { jcs } from "../src/util/jcs.js";

afterAll(cleanupHomes);

const SOAK = process.env.SIGIL_SOAK === "1";
const ROUNDS = SOAK ? 60 : 6;
const AGENTS = 3;
const CONCURRENCY = 3; // calls in flight per agent process
const PRICE = 100;
const LIMIT = 6_000; // low enough that the limit is reached under load
const OWN = "+14155550100";
const POLICY = { allowedPhoneCountries: ["US"], cardSpendingLimitCents: LIMIT };

interface Call {
  name: string;
  arguments: Record<string, unknown>;
  key?: string;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const sha256 = (s: string) => createHash("sha256").update(s).digest("hex");

describe("crash consistency under SIGKILL", () => {
  it(`${AGENTS} agent processes and an admin process on one home, one of them SIGKILLed at a random moment, ${ROUNDS} times`, { timeout: SOAK ? 1_800_000 : 90_000 }, async () => {
    const rand = seeded(seedFrom("SIGIL_CRASH_SEED", "crash"));
    const home = makeHome();
    const a = home.createIdentity({ name: "crashy", channels: "sms,card", phone: OWN, policy: POLICY });

    let n = 0;
    const agentCall = (): Call => {
      const k = ++n;
      const r = rand();
      if (r < 0.15) return { name: "whoami", arguments: {} };
      if (r < 0.6) {
        const key = `sms-${k}`;
        return { name: "send_sms", key, arguments: { to: "+14155550123", body: `crash test ${key}`, idempotencyKey: key } };
      }
      const key = `card-${k}`;
      return { name: "card_charge", key, arguments: { amountCents: PRICE, currency: "USD", merchant: "Crash Test Books", idempotencyKey: key } };
    };
    const adminCall = (): Call => {
      const k = ++n;
      return rand() < 0.7
        ? { name: "update_policy", arguments: { identityId: a.id, policies: { ...POLICY, allowedPhoneNumbers: [`+1415555${1000 + (k % 9000)}`] } } }
        : { name: "create_identity", arguments: { name: `made-${k}`, channels: [] } };
    };

    // What the clients were told.
    const acked: Array<{ call: Call; sc: any }> = [];
    const refusals: string[] = [];
    const lost: Call[] = [];
    let killedInFlight = 0;
    const record = (call: Call, r: any) => {
      if (r.isError) refusals.push(`${call.name}: ${text(r)}`);
      else acked.push({ call, sc: r.structuredContent });
    };

    interface Slot {
      server: Server;
      admin: boolean;
      pool: Promise<void>;
    }
    let stopping = false;
    const run = (s: Server, admin: boolean): Promise<void> =>
      Promise.all(
        Array.from({ length: admin ? 1 : CONCURRENCY }, async () => {
          while (!stopping && s.alive) {
            const call = admin ? adminCall() : agentCall();
            let r;
            try {
              r = await s.client.callTool({ name: call.name, arguments: call.arguments });
            } catch (err) {
              if (s.alive) throw err;
              killedInFlight++;
              if (call.key) lost.push(call);
              return;
            }
            record(call, r);
          }
        }),
      ).then(() => undefined);
    const start = async (admin: boolean): Promise<Slot> => {
      const server = await startServer(home, admin ? home.adminToken : a.token);
      return { server, admin, pool: run(server, admin) };
    };

    const t0 = Date.now();
    const slots: Slot[] = [...(await Promise.all(Array.from({ length: AGENTS }, () => start(false)))), await start(true)];
    const retried: string[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      await sleep(100 + Math.floor(rand() * 400));
      const i = Math.floor(rand() * slots.length);
      const victim = slots[i]!;
      await victim.server.kill();
      await victim.pool;
      slots[i] = await start(victim.admin);
      // Clients retry what was lost with its idempotencyKey: it is replayed, refused as
      // outcome_unknown (the dead process's intent was recorded as unknown), or done for the first
      // time (no intent was written) — never done twice. The checks at the end prove it.
      const retry = lost.splice(0);
      const first = slots.find((s) => !s.admin && s.server.alive)!.server;
      await Promise.all(
        retry.map(async (call) => {
          const r: any = await first.client.callTool({ name: call.name, arguments: call.arguments });
          retried.push(r.isError ? text(r).split(":").slice(0, 2).join(":") : text(r).startsWith("already done") ? "replayed" : "done");
          record(call, r);
        }),
      );
    }
    const t1 = Date.now();
    stopping = true;
    await Promise.all(slots.map((s) => s.pool));
    await Promise.all(slots.map((s) => s.server.close()));
    for (const s of slots) expect(s.server.stderr()).not.toMatch(/ref_[0-9a-f]+/); // no internal error in the survivors
    // One last process opens the log: anything still open from a dead process is resolved.
    const last = await stdioClient(home, a.token);
    expect((await last.client.callTool({ name: "whoami", arguments: {} })).isError).toBeFalsy();
    await last.client.close();

    const t2 = Date.now();
    const summary = { ms: [t1 - t0, t2 - t1], acked: acked.length, refusals: refusals.length, killedInFlight, retried: tally(retried) };
    process.stderr.write(`[crash] ${JSON.stringify(summary)}\n`);
    expect(killedInFlight).toBeGreaterThan(0); // processes really died with calls in flight

    // Only the refusals the scenario can produce: the limit, and retries of unknown outcomes.
    for (const r of refusals) expect(r).toMatch(/^(card_charge: denied: spending_limit|(send_sms|card_charge): denied: outcome_unknown): /);

    // The registry parses, and every log verifies with no intent left open.
    const list = home.json<any[]>(["identity", "list"]);
    const verify = home.json(["audit", "verify"]);
    expect(verify.ok, JSON.stringify(verify.identities.filter((v: any) => !v.ok))).toBe(true);
    for (const v of verify.identities) expect(v.unresolvedIntents, v.id).toBeUndefined();

    // Every acknowledged action is in the log, with the hash its receipt gave.
    const log = auditOf(home, a.id);
    const agentAcks = acked.filter((x) => x.sc?.receipt);
    expect(agentAcks.length).toBeGreaterThan(0);
    for (const { sc } of agentAcks) expect(log[sc.receipt.seq - 1]?.hash).toBe(sc.receipt.hash);

    // Every intent has exactly one result; the only unknown outcomes are intents of dead processes.
    const results = resultsByIntent(log);
    const intents = log.filter((e) => e.phase === "intent");
    process.stderr.write(`[crash] intents ${intents.length}, orphaned (recorded unknown by a later process) ${[...results.values()].filter((r) => r.reason === "orphaned_intent").length}\n`);
    for (const i of intents) expect(results.get(i.seq), `intent ${i.seq}`).toBeDefined();
    // An admin intent of a dead process is decided from the registry instead: `ok` ("recovered")
    // if the change is there, `failed` ("interrupted") if not.
    for (const r of results.values()) {
      if (r.session === "admin" && r.decision === "failed") expect(r.reason).toBe("interrupted");
      else if (r.session === "admin" && r.reason !== undefined) expect(r).toMatchObject({ decision: "ok", reason: "recovered" });
      else if (r.decision === "unknown") expect(r.reason).toBe("orphaned_intent");
      else expect(r.decision).toBe("ok");
    }
    const shownPolicy = home.json(["identity", "show", a.id]).policyVersion;
    for (const i of intents.filter((e) => e.tool === "policy_updated")) {
      // A policy version the log says failed is not the one in force.
      if (results.get(i.seq).decision === "failed") expect(i.policyVersion).not.toBe(shownPolicy);
    }
    const intentOf = (tool: string, key: string) => {
      const found = intents.filter((e) => e.tool === tool && e.args?.idempotencyKey === key);
      expect(found, `${tool} ${key}`).toHaveLength(1);
      return found[0];
    };

    // No SMS went out twice, and each that went out is accounted for by its intent's result.
    const sms = outboxRecords(home).filter((r) => r.kind === "sms");
    expect(new Set(sms.map((r) => r.body)).size).toBe(sms.length);
    for (const rec of sms) {
      const res = results.get(intentOf("send_sms", rec.body.split(" ").pop()).seq);
      if (res.decision === "ok") expect(res.providerId).toBe(rec.id);
      else expect(res.reason).toBe("orphaned_intent"); // sent by a process that died before recording it
    }
    const okSms = [...results.values()].filter((r) => r.tool === "send_sms" && r.decision === "ok");
    for (const r of okSms) expect(sms.filter((s) => s.id === r.providerId)).toHaveLength(1);

    // No charge was made twice; approved spend stays within the limit, counting unknown outcomes.
    const ledger = ledgerOf(home, a.id);
    expect(new Set(ledger.map((l) => l.reference)).size).toBe(ledger.length);
    for (const l of ledger) {
      expect(l.status).toBe("approved");
      const res = results.get(intentOf("card_charge", l.reference.split(":").pop()).seq);
      if (res.decision === "ok") expect(res.providerId).toBe(l.chargeId);
      else expect(res.reason).toBe("orphaned_intent");
    }
    const okCharges = [...results.values()].filter((r) => r.tool === "card_charge" && r.decision === "ok");
    for (const r of okCharges) expect(ledger.filter((l) => l.chargeId === r.providerId)).toHaveLength(1);
    expect(ledger.reduce((s, l) => s + l.amountCents, 0)).toBeLessThanOrEqual(LIMIT);
    const reserved = intents.filter((i) => i.tool === "card_charge").reduce((s, i) => s + i.amountCents, 0);
    expect(reserved).toBeLessThanOrEqual(LIMIT);

    // No lost registry update: acknowledged identities exist, acknowledged policy updates counted,
    // and the policy in force is one the log records (the audit entry is written before the registry).
    const ids = new Set(list.map((i) => i.id));
    const created = acked.filter((x) => x.call.name === "create_identity");
    for (const c of created) expect(ids.has(c.sc.id), c.sc.id).toBe(true);
    const updates = acked.filter((x) => x.call.name === "update_policy").length;
    const shown = home.json(["identity", "show", a.id]);
    process.stderr.write(`[crash] identities ${list.length}, policy updates ${updates}, policy version ${shown.policyVersion}\n`);
    expect(shown.policyVersion).toBeGreaterThanOrEqual(1 + updates);
    expect(shown.policy.cardSpendingLimitCents).toBe(LIMIT);
    for (const ident of list) {
      const entries = auditOf(home, ident.id);
      if (entries.length === 0) continue; // created by a process killed before it wrote the genesis entry
      const full = JSON.parse(readFileSync(path.join(home.env.SIGIL_HOME!, "identities", `${ident.id}.json`), "utf8"));
      const hash = sha256(jcs(full.policy));
      expect(
        entries.some((e) => (e.tool === "identity_created" || e.tool === "policy_updated") && e.policyVersion === full.policyVersion && e.policyHash === hash),
        `${ident.id} policy v${full.policyVersion}`,
      ).toBe(true);
    }
  });
});

describe("a torn final line", () => {
  it("is detected by verify, then replaced by the next append with a signed audit_recovery entry recording the discarded bytes' hash", async () => {
    const home = makeHome();
    const a = home.createIdentity({ channels: "" });
    const file = path.join(home.env.SIGIL_HOME!, "audit", `${a.id}.jsonl`);
    const s = await stdioClient(home, a.token);
    expect((await s.client.callTool({ name: "whoami", arguments: {} })).isError).toBeFalsy();
    await s.client.close();
    const intact = readFileSync(file, "utf8");
    // What a crash in the middle of a write leaves: the start of an entry, without its newline.
    const torn = JSON.stringify(JSON.parse(intact.trim().split("\n").pop()!)).slice(0, 57);
    appendFileSync(file, torn);
    const before = home.cli(["audit", "verify", a.id, "--json"]);
    expect(before.code).toBe(1);
    expect(JSON.parse(before.stdout).identities[0]).toMatchObject({ ok: false, firstBadSeq: 3 });

    const { client } = await stdioClient(home, a.token);
    const r = await client.callTool({ name: "whoami", arguments: {} });
    await client.close();
    expect(r.isError).toBeFalsy();
    const content = readFileSync(file, "utf8");
    expect(content.startsWith(intact)).toBe(true); // nothing acknowledged was touched
    expect(content).not.toContain(torn + "\n");
    const log = content.trim().split("\n").map((l) => JSON.parse(l));
    expect(log[2]).toMatchObject({
      seq: 3,
      tool: "audit_recovery",
      phase: "event",
      decision: "repaired",
      reason: "torn_final_line",
      discardedBytes: Buffer.byteLength(torn),
      discardedSha256: sha256(torn),
    });
    expect(typeof log[2].sig).toBe("string");
    expect(log[3]).toMatchObject({ seq: 4, tool: "whoami", prev: log[2].hash });
    expect((r.structuredContent as any).receipt.seq).toBe(4);
    expect(home.json(["audit", "verify", a.id]).identities[0]).toMatchObject({ ok: true, entries: 4 });
  });
});

function tally(xs: string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const x of xs) out[x] = (out[x] ?? 0) + 1;
  return out;
}

describe("an admin change that does not take effect is never logged as done", () => {
  it("rotate-token whose registry write fails (write@/identities/=EIO): intent then `failed`, no `ok`; the old token still works", async () => {
    const home = makeHome();
    const a = home.createIdentity({ channels: "" });
    const r = home.cli(["identity", "rotate-token", a.id, "--json"], { env: { SIGIL_TEST_FAULTS: "write@/identities/=EIO" } });
    expect(r.code).not.toBe(0);
    const log = readFileSync(path.join(home.env.SIGIL_HOME!, "audit", `${a.id}.jsonl`), "utf8").trim().split("\n").map((l) => JSON.parse(l));
    const rotation = log.filter((e) => e.tool === "token_rotated");
    expect(rotation.map((e) => [e.phase, e.decision])).toEqual([["intent", "allow"], ["result", "failed"]]);
    expect(rotation[1].intent).toBe(rotation[0].seq);
    const { client } = await stdioClient(home, a.token);
    expect((await client.callTool({ name: "whoami", arguments: {} })).isError).toBeFalsy(); // the rotation did not happen
    await client.close();
    expect(home.json(["audit", "verify", a.id]).identities[0]).toMatchObject({ ok: true });

    // Without the fault: intent, then the change and `ok` together; the old token stops at once.
    const { token } = home.json(["identity", "rotate-token", a.id]);
    const after = home.auditLog(a.id).filter((e) => e.tool === "token_rotated").slice(2);
    expect(after.map((e) => [e.phase, e.decision])).toEqual([["intent", "allow"], ["result", "ok"]]);
    expect(token).toMatch(/^sigil_agent_/);
    const old = home.cli(["serve"], { env: { SIGIL_TOKEN: a.token } });
    expect(old.code).not.toBe(0);
  });
});
