/**
 * Standalone receipts: a proof that an identity's audit log holds one entry, which a recipient
 * checks with no sigil home (`sigil receipt show ID SEQ` → `sigil receipt verify FILE`).
 *
 * A receipt carries
 * - `entry`: the audit entry exactly as logged (its hash is recomputed from its canonical body),
 * - `keys`: the identity's JWKS (directory.ts) — the key that signed the entry with its validity
 *   window, and every other key the identity has had (the checkpoint may be signed by a later one),
 * - `checkpoint`: a signed C2SP checkpoint of the log taken when the receipt was made, and
 * - `inclusion`: the RFC 9162 Merkle audit path of the entry in that checkpoint's tree.
 * So the recipient learns that the entry was signed by a key valid at its time, and that the log
 * committed to it at a given size: if the operator later truncates or rewrites the log, the
 * checkpoint inside the receipt (`sigil audit verify --checkpoint receipt.json`) exposes it.
 * Nothing else of the log is disclosed. The embedded keys are a convenience: a careful recipient
 * checks against the keys the identity publishes (`--keys` with `GET /identities/<id>/keys`).
 */
import type { App } from "../app.js";
import { type AuditEntry, ENTRY_VERSION } from "../audit/entry.js";
import { examineEntry } from "../audit/verify-entry.js";
import { SigilError } from "../errors.js";
import { checkpointOrigin, inclusionProof, makeCheckpoint, merkleRoot, verifyInclusion } from "./checkpoint.js";
import { identityJwks, keysFromJwks, type IdentityJwks } from "./directory.js";
import { openNote, parseCheckpoint } from "./note.js";
import { base64, decodeBase64Strict } from "../crypto/jwk.js";

export const RECEIPT_FORMAT = "sigil-receipt/v1";

export type ReceiptDocument = {
  format: typeof RECEIPT_FORMAT;
  identity: string;
  entry: AuditEntry;
  keys: IdentityJwks;
  checkpoint: { origin: string; size: number; rootHash: string; note: string };
  inclusion: { leafIndex: number; treeSize: number; proof: string[] };
  /** Where the identity publishes its keys and checkpoints, when SIGIL_PUBLIC_URL is set. */
  published?: { keys: string; checkpoint: string };
};

export async function makeReceipt(app: Pick<App, "config" | "identities" | "store" | "keyring">, identityId: string, seq: number): Promise<ReceiptDocument> {
  const rec = await app.identities.require(identityId);
  if (!Number.isSafeInteger(seq) || seq < 1) throw new SigilError("invalid_arguments", "SEQ must be a positive whole number.");
  const cp = await makeCheckpoint(app, identityId);
  if (seq > cp.size) throw new SigilError("not_found", `The audit log of ${identityId} has ${cp.size} entries; there is no entry ${seq}.`);
  const leaves: Buffer[] = [];
  let entry: AuditEntry | undefined;
  for await (const line of app.store.audit.readLines(identityId)) {
    const e = JSON.parse(line) as AuditEntry;
    if (e.seq !== leaves.length + 1) throw new SigilError("audit_corrupt", `The audit log of ${identityId} is malformed at entry ${leaves.length + 1}; run \`sigil audit verify\`.`);
    if (e.seq === seq) entry = e;
    leaves.push(Buffer.from(e.hash, "hex"));
    if (leaves.length === cp.size) break;
  }
  if (!entry || leaves.length !== cp.size || base64(merkleRoot(leaves)) !== cp.rootHash) {
    throw new SigilError("audit_corrupt", `The audit log of ${identityId} changed while the receipt was made; try again.`);
  }
  const publicUrl = app.config.publicUrl;
  return {
    format: RECEIPT_FORMAT,
    identity: identityId,
    entry,
    keys: identityJwks(rec),
    checkpoint: { origin: cp.origin, size: cp.size, rootHash: cp.rootHash, note: cp.note },
    inclusion: { leafIndex: seq - 1, treeSize: cp.size, proof: inclusionProof(leaves, seq - 1).map((b) => b.toString("base64")) },
    ...(publicUrl
      ? { published: { keys: `${publicUrl}/identities/${identityId}/keys`, checkpoint: `${publicUrl}/identities/${identityId}/checkpoint` } }
      : {}),
  };
}

export type ReceiptCheck = {
  ok: boolean;
  identityId?: string;
  seq?: number;
  tool?: string;
  decision?: string;
  ts?: string;
  keyId?: string;
  /** Whose keys were trusted: the ones embedded in the receipt, or a JWKS the verifier supplied. */
  keysSource: "embedded" | "supplied";
  checkpoint?: { origin: string; size: number; rootHash: string };
  error?: string;
};

/**
 * Verifies a receipt with nothing but its content (and, when given, the identity's published
 * JWKS, which then replaces the embedded keys).
 */
export function verifyReceipt(doc: unknown, publishedKeys?: unknown): ReceiptCheck {
  const keysSource = publishedKeys === undefined ? "embedded" : "supplied";
  const fail = (error: string, extra: Partial<ReceiptCheck> = {}): ReceiptCheck => ({ ok: false, keysSource, ...extra, error });
  const r = doc as Partial<ReceiptDocument>;
  if (!r || typeof r !== "object" || r.format !== RECEIPT_FORMAT || typeof r.identity !== "string") return fail("not a sigil receipt");
  const e = r.entry;
  if (!e || typeof e !== "object" || Array.isArray(e)) return fail("the receipt has no entry");
  const about = { identityId: r.identity, seq: e.seq, tool: e.tool, decision: e.decision, ts: e.ts, keyId: e.keyId };
  if (e.identity !== r.identity) return fail("the entry belongs to another identity", about);
  if (!Number.isSafeInteger(e.seq) || e.seq < 1) return fail("the entry has no valid seq", about);
  if (e.v !== ENTRY_VERSION) return fail(`the entry has format version ${String(e.v)}, which this verifier does not know`, about);

  const jwksDoc = publishedKeys ?? r.keys;
  const named = (jwksDoc as { identity?: unknown })?.identity;
  if (named !== undefined && named !== r.identity) return fail(`the keys are those of ${String(named)}, not ${r.identity}`, about);
  let keys: ReturnType<typeof keysFromJwks>;
  try {
    keys = keysFromJwks(jwksDoc);
  } catch (err) {
    return fail(`the keys cannot be read: ${(err as Error).message}`, about);
  }
  // The same per-entry checks as the log verifier (audit/verify-entry.ts): hash over the canonical
  // body, strictly encoded signature(s).
  const key = keys.find((k) => k.kid === e.keyId);
  const x = examineEntry(e, () => key?.publicKey);
  if (x.defect) return fail("the entry cannot be canonicalised", about);
  const hash = x.hash!;
  if (hash !== e.hash) return fail("the entry does not match its hash (its content was changed)", about);
  if (!key) return fail(`the entry is signed by key ${String(e.keyId)}, which is not among the identity's keys`, about);
  const t = Math.floor(Date.parse(String(e.ts)) / 1000);
  const nbf = key.notBefore === undefined ? undefined : Math.floor(Date.parse(key.notBefore) / 1000);
  const exp = key.notAfter === undefined ? undefined : Math.floor(Date.parse(key.notAfter) / 1000);
  if (!Number.isFinite(t) || (nbf !== undefined && !(t >= nbf)) || (exp !== undefined && !(t <= exp))) {
    return fail(`key ${e.keyId} was not valid at the entry's time ${String(e.ts)}`, about);
  }
  if (x.sig !== 1) return fail("the entry's signature does not verify", about);
  if (x.sigNew !== -1 && (e.tool !== "key_rotated" || x.sigNew !== 1)) {
    return fail("the entry's second signature does not verify (only a key rotation carries one, by the incoming key)", about);
  }

  const c = r.checkpoint;
  const inc = r.inclusion;
  if (!c || typeof c.note !== "string" || !inc || !Array.isArray(inc.proof)) return fail("the receipt has no checkpoint", about);
  const origin = checkpointOrigin(r.identity);
  let cp: ReturnType<typeof parseCheckpoint>;
  try {
    cp = parseCheckpoint(openNote(c.note, keys.map((k) => ({ name: origin, publicKey: k.publicKey }))).text);
  } catch (err) {
    return fail(`the checkpoint does not verify: ${(err as Error).message}`, about);
  }
  const cpInfo = { origin: cp.origin, size: cp.size, rootHash: base64(cp.rootHash) };
  if (cp.origin !== origin) return fail(`the checkpoint is for ${cp.origin}, not ${origin}`, { ...about, checkpoint: cpInfo });
  const proof: Buffer[] = [];
  for (const p of inc.proof) {
    const b = typeof p === "string" ? decodeBase64Strict(p) : undefined;
    if (!b || b.length !== 32) return fail("the inclusion proof is malformed", { ...about, checkpoint: cpInfo });
    proof.push(Buffer.from(b));
  }
  if (inc.leafIndex !== e.seq - 1 || inc.treeSize !== cp.size) {
    return fail("the inclusion proof is not for this entry and checkpoint", { ...about, checkpoint: cpInfo });
  }
  if (!verifyInclusion(Buffer.from(hash, "hex"), e.seq - 1, cp.size, proof, Buffer.from(cp.rootHash))) {
    return fail("the entry is not in the log the checkpoint commits to", { ...about, checkpoint: cpInfo });
  }
  return { ok: true, keysSource, ...about, checkpoint: cpInfo };
}

