/**
 * The exfiltration guard's memory (src/policy/exfiltration-journal.ts) on the real stores: what one
 * instance records is seen by another on the same store (another process), its 24-hour and 1-hour
 * windows, compare-and-swap under concurrent checks, and failing closed on a record that was altered.
 */
import { afterAll, describe, expect, it } from "vitest";
import { cleanupHomes, makeHome } from "./support/home.js";
import { backends } from "./support/backends.js";
import { openStore } from "../dist/store/index.js";
import { MasterKey } from "../dist/src/crypto/master-key.js";
import { Vault } from "../dist/src/identity/vault.js";
import { ExfiltrationJournal, JOURNAL_NAME, READ_WINDOW_MS, SEND_WINDOW_MS } from "../dist/src/policy/exfiltration-journal.js";

afterAll(cleanupHomes);

const SECRET = "pk_test_51Hx9QvLmZr8TyUw3";

describe.each(backends)("the exfiltration journal (%s store)", (backend) => {
  async function setup() {
    const home = makeHome({}, { store: backend });
    const a = home.createIdentity({ channels: "vault,sms", policy: { allowedSecrets: ["*"] } });
    const store = await openStore({ home: home.env.SIGIL_HOME!, storeUrl: home.env.SIGIL_STORE_URL });
    const other = await openStore({ home: home.env.SIGIL_HOME!, storeUrl: home.env.SIGIL_STORE_URL });
    const master = MasterKey.generate();
    let now = Date.parse("2026-01-01T00:00:00Z");
    const clock = { set: (t: number) => (now = t), get: () => now };
    const j1 = new ExfiltrationJournal(store, master, () => now);
    const j2 = new ExfiltrationJournal(other, master, () => now);
    return { home, a, store, other, master, j1, j2, clock, close: async () => (await store.close(), await other.close()) };
  }

  it("a read recorded by one instance guards every instance on the same store, for 24 hours", async () => {
    const { a, j1, j2, clock, close } = await setup();
    expect(await j2.carries(a.id, [["body", `x ${SECRET}`]], true)).toBe(false); // nothing read yet
    await j1.recordRead(a.id, { name: "k", version: 1, value: SECRET });
    expect(await j2.carries(a.id, [["body", `x ${SECRET}`]], true)).toBe(true);
    expect(await j2.carries(a.id, [["body", Buffer.from(SECRET).toString("base64")]], false)).toBe(true);
    expect(await j2.carries(a.id, [["body", "unrelated"]], true)).toBe(false);
    const t0 = clock.get();
    clock.set(t0 + READ_WINDOW_MS - 1);
    expect(await j2.carries(a.id, [["body", SECRET]], true)).toBe(true);
    clock.set(t0 + READ_WINDOW_MS);
    expect(await j2.carries(a.id, [["body", SECRET]], true)).toBe(false);
    await close();
  });

  it("a secret split across calls is caught within the hour, across instances, even with blank calls between", async () => {
    const { a, j1, j2, clock, close } = await setup();
    await j1.recordRead(a.id, { name: "k", version: 1, value: SECRET });
    expect(await j1.carries(a.id, [["body", `part 1: ${SECRET.slice(0, 10)}`]], true)).toBe(false);
    expect(await j2.carries(a.id, [["body", " ".repeat(6000)]], true)).toBe(false);
    expect(await j2.carries(a.id, [["body", `${SECRET.slice(10, 20)} end`]], true)).toBe(true);
    // Encodings split across calls too.
    const b64 = Buffer.from(`>>${SECRET}<<`).toString("base64");
    expect(await j1.carries(a.id, [["body", `a ${b64.slice(0, 14)}`]], true)).toBe(false);
    expect(await j2.carries(a.id, [["body", `${b64.slice(14)} b`]], true)).toBe(true);
    // Across fields and tools: an SMS body, then an email's text (other fields between do not hide it).
    expect(await j1.carries(a.id, [["to", "+14155550123"], ["body", `x ${SECRET.slice(0, 10)}`]], true)).toBe(false);
    expect(await j2.carries(a.id, [["to", "bob@example.com"], ["subject", "s"], ["text", `${SECRET.slice(10, 20)} y`]], true)).toBe(true);
    // After an hour the tail is forgotten.
    expect(await j1.carries(a.id, [["body", `part 1: ${SECRET.slice(0, 10)}`]], true)).toBe(false);
    clock.set(clock.get() + SEND_WINDOW_MS);
    expect(await j2.carries(a.id, [["body", `${SECRET.slice(10, 20)} end`]], true)).toBe(false);
    // A check that is not outbound (e.g. vault_get's own arguments) does not extend the tail.
    expect(await j1.carries(a.id, [["body", SECRET.slice(0, 10)]], false)).toBe(false);
    expect(await j1.carries(a.id, [["body", SECRET.slice(10, 20)]], true)).toBe(false);
    await close();
  });

  it("the same text checked at the same time by two instances: the second to commit sees the first (compare-and-swap)", async () => {
    const { a, j1, j2, close } = await setup();
    await j1.recordRead(a.id, { name: "k", version: 1, value: SECRET });
    // T alone carries no run of the secret, but T followed by T does (its end + its start spell SECRET[0..20]).
    const t = `${SECRET.slice(10, 20)}${SECRET.slice(0, 10)}`;
    expect(await j1.carries(a.id, [["body", t]], false)).toBe(false);
    for (let round = 0; round < 4; round++) {
      await j1.carries(a.id, [["body", "reset the tail with unrelated words"]], true);
      const results = await Promise.all([j1.carries(a.id, [["body", t]], true), j2.carries(a.id, [["body", t]], true)]);
      expect(results.sort(), `round ${round}`).toEqual([false, true]);
    }
    await close();
  });

  it("an altered record fails closed, and the guard's record is not listed as a secret", async () => {
    const { a, store, master, j1, close } = await setup();
    await j1.recordRead(a.id, { name: "k", version: 1, value: SECRET });
    expect(await new Vault(store, master).names(a.id)).toEqual([]);
    expect(await store.listSecretNames(a.id)).toContain(JOURNAL_NAME);
    const wrongKey = new ExfiltrationJournal(store, MasterKey.generate());
    await expect(wrongKey.carries(a.id, [["body", "hello"]], true)).rejects.toMatchObject({ code: "guard_unavailable" });
    await expect(wrongKey.recordRead(a.id, { name: "k", version: 1, value: SECRET })).rejects.toMatchObject({ code: "guard_unavailable" });
    await close();
  });
});
