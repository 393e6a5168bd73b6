/**
 * Passkeys are stored in both stores (file: passkeys/<approver>.json; PostgreSQL: migration 9,
 * sigil_passkeys), updated atomically, and not an authority: a credential written into the store
 * by anyone without the master key (no MAC, or another approver's) is not one of the approver's
 * passkeys. (The ceremonies themselves: test/console-passkeys.test.ts, in Chromium.)
 */
import { afterAll, describe, expect, it } from "vitest";
import { cleanupHomes, makeHome, withApp } from "./support/home.js";
import { backends } from "./support/backends.js";

afterAll(() => cleanupHomes());

describe.each(backends)("passkey storage (%s store)", (backend) => {
  it("round-trips, serialises concurrent updates, and ignores a record without the master key's MAC", { timeout: 120_000 }, async () => {
    const home = makeHome({}, { store: backend });
    const ann = home.addApprover({ name: "Ann" });
    await withApp(home, async (app) => {
      expect(await app.store.listPasskeys(ann.id)).toEqual([]);
      const forged = (i: number) => ({ id: `cred${i}`, approverId: ann.id, tenantId: "default", publicKey: "AAAA", counter: 0, name: `k${i}`, createdAt: new Date().toISOString(), mac: "hmac-sha256:forged" });
      // Ten writers at once: every one of them lands (read-modify-write under the store's lock).
      await Promise.all(Array.from({ length: 10 }, (_, i) => app.store.updatePasskeys(ann.id, (all) => [...all, forged(i)])));
      expect((await app.store.listPasskeys(ann.id)).map((p) => p.id).sort()).toEqual(Array.from({ length: 10 }, (_, i) => `cred${i}`).sort());
      // None of them is the approver's passkey: sigil did not write them.
      expect(await app.passkeys.list(ann.id)).toEqual([]);
    });
  });
});
