/**
 * `sigil receipt verify` decides with verifyReceipt (src/provenance/receipt.ts). Each check is
 * pinned here by a receipt that is valid in every respect but the one under test, so removing
 * the check lets that receipt through. Receipts are built in-process from forged logs with real
 * keys, a real C2SP checkpoint and a real Merkle inclusion proof (end to end: test/receipts.test.ts).
 */
import { beforeAll, describe, expect, it } from "vitest";
import { RECEIPT_FORMAT, verifyReceipt } from "../../src/provenance/receipt.js";
import { checkpointOrigin, inclusionProof, merkleRoot } from "../../src/provenance/checkpoint.js";
import { checkpointBody, signNote } from "../../src/provenance/note.js";
import { sign } from "../../src/crypto/ed25519.js";
import { ForgedLog, newKey, seal, type Entry, type ForgeKey } from "../support/audit-forge.js";

let log: ForgedLog; // 4 entries, a rotation at seq 5, 2 more
let oldKey: ForgeKey;

beforeAll(async () => {
  log = await ForgedLog.create();
  log.call(3);
  oldKey = log.active;
  await log.rotate();
  log.call(2);
});

/** A checkpoint note whose body names `bodyOrigin`, signed under the key name `origin`. */
async function note(origin: string, bodyOrigin: string, size: number, root: Buffer, key: ForgeKey): Promise<string> {
  const signer = { keyId: key.keyId, publicKey: new Uint8Array(Buffer.from(key.publicKey, "base64")), sign: (m: Uint8Array) => sign(key.secretKey, m) };
  return signNote(checkpointBody(bodyOrigin, size, root), [{ name: origin, signer }]);
}

/** A receipt for entry `seq` of `entries` (default: the log), its checkpoint signed by `key`. */
async function receipt(seq: number, opts: { entries?: Entry[]; key?: ForgeKey; origin?: string } = {}): Promise<Entry> {
  const entries = opts.entries ?? log.entries;
  const leaves = entries.map((e) => Buffer.from(e.hash, "hex"));
  const root = merkleRoot(leaves);
  const origin = checkpointOrigin(log.identity);
  return {
    format: RECEIPT_FORMAT,
    identity: log.identity,
    entry: { ...entries[seq - 1]! },
    keys: log.jwks(),
    checkpoint: { origin, size: leaves.length, rootHash: root.toString("base64"), note: await note(origin, opts.origin ?? origin, leaves.length, root, opts.key ?? log.active) },
    inclusion: { leafIndex: seq - 1, treeSize: leaves.length, proof: inclusionProof(leaves, seq - 1).map((b) => b.toString("base64")) },
  };
}
const fails = (why: RegExp) => ({ ok: false, error: expect.stringMatching(why) });
/** `entries` with entry `seq` changed and re-sealed by `key` (the old key by default). */
function resealed(seq: number, change: (e: Entry) => void, key: ForgeKey = oldKey): Entry[] {
  const copy = log.entries.map((e) => ({ ...e }));
  const e = { ...copy[seq - 1]! };
  change(e);
  copy[seq - 1] = seal(e, key);
  return copy;
}

describe("a receipt verifies", () => {
  it("for an entry signed by a retired key inside its window, for the rotation entry itself, and after the rotation", async () => {
    for (const seq of [1, 2, 5, 7]) {
      expect(verifyReceipt(await receipt(seq))).toMatchObject({ ok: true, seq, keysSource: "embedded", checkpoint: { size: 7 } });
      expect(verifyReceipt(await receipt(seq), log.jwks())).toMatchObject({ ok: true, keysSource: "supplied" });
    }
  });
});

describe("each check of verifyReceipt is reached by the receipt meant for it", () => {
  it("not a receipt", async () => {
    const r = await receipt(2);
    expect(verifyReceipt(null)).toMatchObject(fails(/not a sigil receipt/));
    expect(verifyReceipt({ ...r, format: "sigil-receipt/v0" })).toMatchObject(fails(/not a sigil receipt/));
    expect(verifyReceipt({ ...r, identity: 7 })).toMatchObject(fails(/not a sigil receipt/));
  });

  it("no entry", async () => {
    const r = await receipt(2);
    for (const entry of [undefined, null, "x", [r.entry]]) expect(verifyReceipt({ ...r, entry })).toMatchObject(fails(/has no entry/));
  });

  it("an entry of another identity", async () => {
    const r = await receipt(2);
    expect(verifyReceipt({ ...r, identity: "id_ffffffffffffffffffff" })).toMatchObject(fails(/belongs to another identity/));
  });

  it("an entry without a valid seq", async () => {
    for (const seq of [0, -1, 1.5, "2"]) {
      const r = await receipt(2, { entries: resealed(2, (e) => (e.seq = seq)) });
      expect(verifyReceipt(r)).toMatchObject(fails(/no valid seq/));
    }
  });

  it("an unknown format version", async () => {
    expect(verifyReceipt(await receipt(2, { entries: resealed(2, (e) => (e.v = 2)) }))).toMatchObject(fails(/format version 2/));
  });

  it("keys of another identity, or no keys at all", async () => {
    const r = await receipt(2);
    expect(verifyReceipt(r, { ...log.jwks(), identity: "id_ffffffffffffffffffff" })).toMatchObject(fails(/keys are those of id_f+/));
    expect(verifyReceipt(r, { nokeys: [] })).toMatchObject(fails(/keys cannot be read/));
  });

  it("content changed under the old hash", async () => {
    const r = await receipt(2);
    r.entry.decision = "deny";
    expect(verifyReceipt(r)).toMatchObject(fails(/does not match its hash/));
  });

  it("a key that is not among the identity's keys (supplied keys replace the embedded ones)", async () => {
    const stranger = await ForgedLog.create(log.identity);
    stranger.call(1);
    const r = await receipt(2, { entries: stranger.entries, key: stranger.active });
    r.keys = stranger.jwks();
    expect(verifyReceipt(r)).toMatchObject({ ok: true, keysSource: "embedded" }); // its own keys: self-consistent
    expect(verifyReceipt(r, log.jwks())).toMatchObject(fails(/not among the identity's keys/));
  });

  it("an entry dated outside its key's window, on either side", async () => {
    const rotation = Date.parse(log.entries[4]!.ts);
    const late = await receipt(4, { entries: resealed(4, (e) => (e.ts = new Date(rotation + 1000).toISOString())) });
    expect(verifyReceipt(late)).toMatchObject(fails(/was not valid at the entry's time/));
    const atRotation = await receipt(4, { entries: resealed(4, (e) => (e.ts = new Date(rotation).toISOString())) });
    expect(verifyReceipt(atRotation)).toMatchObject({ ok: true }); // the window is inclusive
    const early = await receipt(6, { entries: resealed(6, (e) => (e.ts = new Date(rotation - 1000).toISOString()), log.active) });
    expect(verifyReceipt(early)).toMatchObject(fails(/was not valid at the entry's time/));
    const notATime = await receipt(2, { entries: resealed(2, (e) => (e.ts = "yesterday")) });
    expect(verifyReceipt(notATime)).toMatchObject(fails(/was not valid at the entry's time/));
  });

  it("a signature that does not verify, or is not strictly encoded", async () => {
    const r = await receipt(2);
    r.entry.sig = log.entries[2]!.sig;
    expect(verifyReceipt(r)).toMatchObject(fails(/signature does not verify/));
    const loose = await receipt(2);
    loose.entry.sig = loose.entry.sig.replace(/=+$/, "");
    expect(verifyReceipt(loose)).toMatchObject(fails(/signature does not verify/));
  });

  it("a second signature on an entry that is not a rotation, or a rotation's co-signature that does not verify", async () => {
    const r = await receipt(2);
    r.entry.sigNew = r.entry.sig;
    expect(verifyReceipt(r)).toMatchObject(fails(/second signature does not verify/));
    const rot = await receipt(5);
    rot.entry.sigNew = log.entries[5]!.sig;
    expect(verifyReceipt(rot)).toMatchObject(fails(/second signature does not verify/));
  });

  it("a non-rotation entry co-signed with a key it names, or a rotation without its co-signature", async () => {
    const stranger = await newKey();
    const named = await receipt(2, { entries: resealed(2, (e) => (e.newPublicKey = stranger.publicKey)) });
    const e = { ...named.entry };
    named.entry = seal(e, oldKey, stranger); // validly co-signed, but entry 2 is not a rotation
    expect(verifyReceipt(named)).toMatchObject(fails(/second signature does not verify/));
    const bare = await receipt(5);
    delete bare.entry.sigNew;
    expect(verifyReceipt(bare)).toMatchObject(fails(/second signature does not verify/));
  });

  it("keys published without a window are valid throughout; an entry at its key's first second verifies", async () => {
    const jwks = log.jwks();
    for (const k of jwks.keys) delete k.nbf, delete k.exp;
    expect(verifyReceipt(await receipt(2), jwks)).toMatchObject({ ok: true });
    const first = await receipt(2, { entries: resealed(2, (e) => (e.ts = log.keys[0]!.notBefore)) });
    expect(verifyReceipt(first)).toMatchObject({ ok: true });
  });

  it("no checkpoint", async () => {
    const r = await receipt(2);
    expect(verifyReceipt({ ...r, checkpoint: undefined })).toMatchObject(fails(/has no checkpoint/));
    expect(verifyReceipt({ ...r, checkpoint: { ...r.checkpoint, note: 1 } })).toMatchObject(fails(/has no checkpoint/));
    expect(verifyReceipt({ ...r, inclusion: undefined })).toMatchObject(fails(/has no checkpoint/));
    expect(verifyReceipt({ ...r, inclusion: { ...r.inclusion, proof: "x" } })).toMatchObject(fails(/has no checkpoint/));
  });

  it("a checkpoint signed by a key that is not the identity's", async () => {
    expect(verifyReceipt(await receipt(2, { key: await newKey() }))).toMatchObject(fails(/checkpoint does not verify/));
  });

  it("a checkpoint for another log", async () => {
    expect(verifyReceipt(await receipt(2, { origin: checkpointOrigin("id_ffffffffffffffffffff") }))).toMatchObject({ ...fails(/checkpoint is for sigil\/id_f+, not/), checkpoint: { size: 7 } });
  });

  it("a malformed inclusion proof", async () => {
    const r = await receipt(2);
    for (const bad of ["not base64!", Buffer.alloc(31).toString("base64"), 5]) {
      expect(verifyReceipt({ ...r, inclusion: { ...r.inclusion, proof: [bad, ...r.inclusion.proof.slice(1)] } })).toMatchObject({ ...fails(/inclusion proof is malformed/), checkpoint: { size: 7 } });
    }
  });

  it("an inclusion proof for another entry or tree size", async () => {
    const r = await receipt(2);
    expect(verifyReceipt({ ...r, inclusion: { ...r.inclusion, leafIndex: 2 } })).toMatchObject({ ...fails(/not for this entry and checkpoint/), checkpoint: { size: 7 } });
    expect(verifyReceipt({ ...r, inclusion: { ...r.inclusion, treeSize: 6 } })).toMatchObject({ ...fails(/not for this entry and checkpoint/), checkpoint: { size: 7 } });
  });

  it("an entry the checkpoint does not commit to", async () => {
    const r = await receipt(2);
    const other = await receipt(3);
    expect(verifyReceipt({ ...r, inclusion: { ...r.inclusion, proof: other.inclusion.proof } })).toMatchObject({ ...fails(/not in the log the checkpoint commits to/), checkpoint: { size: 7 } });
  });
});

describe("mutation survivors (issue 20): each one pinned by what it changes", () => {
  it("a receipt without keys (and none supplied) is refused, not thrown on", async () => {
    const r = await receipt(2);
    delete r.keys;
    expect(verifyReceipt(r)).toMatchObject(fails(/^the keys cannot be read: /));
    expect(verifyReceipt({ ...r, keys: null })).toMatchObject(fails(/^the keys cannot be read: /));
  });

  it("an entry handed over in memory with a value JSON cannot carry is refused as uncanonicalisable", async () => {
    const r = await receipt(2);
    expect(verifyReceipt({ ...r, entry: { ...r.entry, amountCents: 10n } })).toMatchObject(fails(/^the entry cannot be canonicalised$/));
  });
});
