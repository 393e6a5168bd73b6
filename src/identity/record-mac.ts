/**
 * What makes the store not an authority (SECURITY.md, "The store is not an authority"): whoever
 * can write the store (the home's files, the PostgreSQL tables) but lacks the master key must not
 * be able to grant a token, a policy, a channel, a key or an un-revocation. Two mechanisms, both
 * under subkeys of the master key, for every authority-bearing record (identities, the registry's
 * admin token, and any later credential record such as tenant admin tokens or approvers):
 *
 * - **Keyed token hashes** (`TokenHashes`, subkey `token-hash`): a token is stored as
 *   HMAC-SHA256(k, SHA-256 form of the token) in hex. Without k nobody can compute the stored value
 *   of a token of their choosing, so writing a hash into the store names no token anyone holds.
 *   A store written before keyed hashes holds the plain SHA-256 form; `upgrade` turns that into
 *   the keyed form in place, without knowing the token: HMAC(k, stored) is exactly what `hash`
 *   computes for the token, because `hash(token) = HMAC(k, tokenHash(token))`.
 * - **Record MACs** (`RecordMac`, subkey `record-mac`): HMAC-SHA256 over a domain label, the
 *   record's kind and id, and the RFC 8785 canonical JSON of its fields. The id binds a MAC to its
 *   record (a MAC copied from another identity's record fails); the kind binds it to what the
 *   record is (an identity's MAC is not a tenant's). A reader that grants authority checks the MAC
 *   first and refuses a record whose MAC is missing or wrong (fail closed).
 *
 * A MAC says the record was written by sigil with the master key; it cannot say the record is the
 * LATEST one sigil wrote (an older, validly MACed copy can be put back). That is checked against
 * the identity's signed audit log where it matters (revocation, policy version, token rotation):
 * see src/pipeline/agent-call.ts and docs/ARCHITECTURE.md.
 */
import { createHash, createHmac } from "node:crypto";
import { type MasterKey } from "../crypto/master-key.js";
import { hashesEqual, tokenHash } from "../crypto/tokens.js";
import { Denied } from "../errors.js";
import { jcs } from "../util/jcs.js";

/** The domain label of every record MAC (a new format gets a new label, never a reused one). */
export const RECORD_MAC_FORMAT = "sigil-record-mac-v1";
const MAC_PREFIX = "rmac1:";

/** What a record is: its MAC is valid only for that kind (and that id). */
export type RecordKind = "identity" | "meta" | (string & {});

/** The fields a MAC covers: the record as JSON would store it, without its `mac` member. */
export function macFields(record: object): unknown {
  const { mac: _omit, ...rest } = record as { mac?: unknown };
  // JSON's view of the record: undefined members dropped, exactly as every backend stores it.
  return JSON.parse(JSON.stringify(rest));
}

export class RecordMac {
  constructor(private readonly key: Buffer) {
    if (key.length !== 32) throw new Error("a record MAC key is 32 bytes");
  }

  static from(master: MasterKey): RecordMac {
    return new RecordMac(master.subkey("record-mac"));
  }

  /** The MAC of `fields` as record `id` of kind `kind`. */
  mac(kind: RecordKind, id: string, fields: unknown): string {
    if (kind.includes("\n") || id.includes("\n")) throw new Error("a record kind or id cannot contain a newline");
    const h = createHmac("sha256", this.key).update(`${RECORD_MAC_FORMAT}\n${kind}\n${id}\n`).update(jcs(fields));
    return MAC_PREFIX + h.digest("base64url");
  }

  /** Whether `mac` is the MAC of `fields` as record `id` of kind `kind` (false for a missing or malformed MAC). */
  verify(kind: RecordKind, id: string, fields: unknown, mac: unknown): boolean {
    if (typeof mac !== "string" || !mac.startsWith(MAC_PREFIX)) return false;
    return hashesEqual(mac, this.mac(kind, id, fields));
  }

  /** The record with its `mac` member set over every other member. */
  seal<T extends object>(kind: RecordKind, id: string, record: T): T & { mac: string } {
    const { mac: _omit, ...rest } = record as T & { mac?: unknown };
    return { ...(rest as T), mac: this.mac(kind, id, macFields(rest)) };
  }

  /** Whether the record's `mac` member is the MAC of its other members (false when it has none). */
  check(kind: RecordKind, id: string, record: object): boolean {
    return this.verify(kind, id, macFields(record), (record as { mac?: unknown }).mac);
  }
}

/** Keyed token hashes (see above): what the store holds for a token, and the in-place upgrade. */
export class TokenHashes {
  constructor(private readonly key: Buffer) {
    if (key.length !== 32) throw new Error("a token-hash key is 32 bytes");
  }

  static from(master: MasterKey): TokenHashes {
    return new TokenHashes(master.subkey("token-hash"));
  }

  /** The stored form of a token: HMAC-SHA256(k, tokenHash(token)), hex (64 characters). */
  hash(token: string): string {
    return this.upgrade(tokenHash(token));
  }

  /** The keyed form of a hash stored before keyed hashes (the plain `tokenHash` of the token). */
  upgrade(plainHash: string): string {
    return createHmac("sha256", this.key).update(plainHash).digest("hex");
  }

  /**
   * What a token rotation records in the log about the token it installs (`tokenRef`): a keyed
   * reference to the stored hash, which tells nobody without the master key anything about either.
   */
  ref(storedHash: string): string {
    // The same value as identities.ts's tokenRef, which token rotation records: the stored hash is
    // already keyed, so a plain digest of it tells nobody without the master key anything.
    return createHash("sha256").update(`sigil-token-ref-v1\n${storedHash}`).digest("hex").slice(0, 32);
  }
}

/** What the identity's signed log says about its record (src/audit/chain.ts, `ChainState`). */
export interface LogView {
  revoked: boolean;
  tokenRef?: string;
  /** The highest policy version a completed (`ok`) policy update installed. */
  policyDone: number;
}

/**
 * Whether an authentic identity record is the CURRENT one, as far as the identity's signed log
 * can tell: a MAC cannot tell an older record sigil wrote from the latest, so a record put back
 * from before a revocation or a token rotation would pass it. The log recorded both, so a record
 * behind the log is refused: `revoked` when the log has the revocation, `record_stale` when the
 * record's token is not the one the log's last completed rotation installed (a rotation whose
 * registry write landed but whose result entry did not — a crash — also reads as stale: refused
 * until the next rotation, never the other way round).
 *
 * The policy too: a policy update is an intent, then the registry write, then its `ok` result,
 * so a record whose policy version is below the last `ok` update's is an older copy put back (an
 * update in flight or cut short by a crash has no `ok` result yet, and recovery writes one only
 * when the registry holds that version).
 */
export function behindLog(
  rec: { tokenHash: string; policyVersion: number },
  log: LogView,
  tokens: Pick<TokenHashes, "ref">,
): { reason: string; message: string } | undefined {
  if (log.revoked) return { reason: "revoked", message: "this identity has been revoked." };
  if (log.tokenRef !== undefined && !hashesEqual(tokens.ref(rec.tokenHash), log.tokenRef)) {
    return { reason: "record_stale", message: "this identity's registry record is older than its audit log (an older copy put back into the store, or a token rotation cut short); nothing was done." };
  }
  // A policy update writes its registry record before its `ok` result: a record below the last
  // completed update's version is an older copy put back, never an update in flight.
  if (rec.policyVersion < log.policyDone) {
    return { reason: "record_stale", message: "this identity's registry record holds an older policy than its audit log (an older copy put back into the store); nothing was done." };
  }
  return undefined;
}

/**
 * A record whose MAC is missing or wrong: it was written without the master key. Whatever it says
 * is refused (`denied: record_tampered`); the refusal is audited where the record belongs.
 */
export class RecordTampered extends Denied {
  constructor(
    readonly kind: RecordKind,
    readonly recordId: string,
  ) {
    super("record_tampered", `the registry record of ${kind === "identity" ? "this identity" : kind === "tenant" ? `tenant ${recordId}` : kind} fails its integrity check (it was changed without the master key); it is refused until an administrator restores it.`);
  }
}
