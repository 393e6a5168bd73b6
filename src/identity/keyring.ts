/**
 * The keyring: identities' signing keys, sealed at rest under the master key's `signing-keys`
 * subkey and opened on first use (kept in memory for the life of the process).
 *
 * - `Keyring` is what the audit chains sign with (the chain asks it for a key by id, and for an
 *   identity's genesis entry); it never writes to the chain itself.
 * - `ActiveSigners` hands out a Signer for an identity's ACTIVE key — the key the audit chain has
 *   handed signing to (`chains.state(id).activeKeyId`), not merely the registry's status — for the
 *   provenance formats (HTTP request signatures, the key directory, e-mail headers, checkpoints).
 *   Each of those formats domain-separates the bytes it signs (src/provenance/domains.ts); callers
 *   must sign only through them, never raw bytes from outside.
 */
import { b64, fromB64 } from "../crypto/encoding.js";
import { type MasterKey } from "../crypto/master-key.js";
import { open as openSealed, seal } from "../crypto/seal.js";
import { generateSigningKey, keyThumbprint, sign as edSign } from "../crypto/ed25519.js";
import type { Signer } from "../crypto/jwk.js";
import { Denied, SigilError } from "../errors.js";
import type { AuditChains, Draft, KeyWindow, Keyring as ChainKeyring, SigningKey } from "../audit/chain.js";
import type { IdentityRecord, KeyRecord, Store } from "../../store/types.js";
import { policyHash, requireIdentity, signingAd } from "./records.js";

/**
 * The registry's key records made to agree with the log's key history: each key the log names is
 * `active` (the last) or `retired`, with the window the log gives it — `notBefore` the time of the
 * entry that made it the signer (the first key's may be earlier: it was created just before its
 * creation entry), `notAfter` the time of the rotation that handed on; a key the log does not name
 * is `pending` with no window (never published, never trusted). Undefined when they already agree.
 */
export function reconcileKeyRecords(keys: KeyRecord[], history: KeyWindow[]): KeyRecord[] | undefined {
  if (history.length === 0) return undefined;
  const place = new Map(history.map((h, i) => [h.keyId, i]));
  let changed = false;
  const out = keys.map((k): KeyRecord => {
    const i = place.get(k.keyId);
    let want: KeyRecord;
    if (i === undefined) {
      const { notBefore: _nb, notAfter: _na, ...rest } = k;
      want = { ...rest, status: "pending" };
    } else {
      const h = history[i]!;
      const notBefore = i === 0 && k.notBefore !== undefined && k.notBefore <= h.from ? k.notBefore : h.from;
      const { notAfter: _na, ...rest } = k;
      want = h.to !== undefined ? { ...rest, status: "retired", notBefore, notAfter: h.to } : { ...rest, status: "active", notBefore };
    }
    if (want.status !== k.status || want.notBefore !== k.notBefore || want.notAfter !== k.notAfter) changed = true;
    return want;
  });
  return changed ? out : undefined;
}

export class Keyring implements ChainKeyring {
  private readonly secretKeys = new Map<string, Uint8Array>();
  /** Brings what vouches for the record's active key up to date in the same write (delegation statements). */
  private refresh: (rec: IdentityRecord, at: string) => IdentityRecord | Promise<IdentityRecord> = (rec) => rec;

  constructor(
    private readonly store: Pick<Store, "getIdentity" | "updateIdentity">,
    private readonly master: MasterKey,
    private readonly now: () => number,
  ) {}

  async signer(identityId: string, keyId: string): Promise<SigningKey> {
    const cacheKey = `${identityId}\n${keyId}`;
    let sk = this.secretKeys.get(cacheKey);
    if (!sk) {
      const rec = await this.store.getIdentity(identityId);
      const key = rec?.keys.find((k) => k.keyId === keyId);
      if (!key) throw new SigilError("key_missing", `signing key ${keyId} of ${identityId} is not in the registry`);
      sk = openSealed(this.master.subkey("signing-keys"), key.sealed, signingAd(identityId, keyId));
      this.secretKeys.set(cacheKey, sk);
    }
    return { keyId, secretKey: sk };
  }

  async genesis(identityId: string): Promise<{ draft: Draft; keyId: string }> {
    const rec = await this.store.getIdentity(identityId);
    if (!rec) throw new Denied("not_found", `No identity ${identityId}.`);
    const first = rec.keys[0]!;
    return {
      keyId: first.keyId,
      draft: {
        tool: "identity_created",
        phase: "event",
        decision: "ok",
        name: rec.name,
        ...(rec.tenantId !== undefined ? { tenant: rec.tenantId } : {}),
        channels: rec.channels,
        publicKey: first.publicKey,
        policyVersion: rec.policyVersion,
        policyHash: policyHash(rec.policy),
      },
    };
  }

  /** Sets what re-issues the statements that vouch for an identity's active key (src/tenant/delegations.ts). */
  refreshWith(refresh: (rec: IdentityRecord, at: string) => IdentityRecord | Promise<IdentityRecord>): void {
    this.refresh = refresh;
  }

  /** The registry's key states and windows made to match the log's (see `reconcileKeyRecords`). */
  async reconcileKeys(identityId: string, history: KeyWindow[]): Promise<void> {
    const rec = await this.store.getIdentity(identityId);
    if (!rec || !reconcileKeyRecords(rec.keys, history)) return;
    const at = history[history.length - 1]!.from; // when the log's active key took over
    await this.store.updateIdentity(identityId, (r) => {
      const keys = reconcileKeyRecords(r.keys, history);
      return keys ? this.refresh({ ...r, keys, updatedAt: at > r.updatedAt ? at : r.updatedAt }, at) : r;
    });
  }

  /** A fresh key pair for the identity, its secret sealed to (identity, key id). */
  newKeyRecord(identityId: string, status: KeyRecord["status"]): KeyRecord {
    const kp = generateSigningKey();
    const keyId = keyThumbprint(kp.publicKey);
    return {
      keyId,
      publicKey: b64(kp.publicKey),
      sealed: seal(this.master.subkey("signing-keys"), kp.secretKey, signingAd(identityId, keyId)),
      createdAt: new Date(this.now()).toISOString(),
      status,
    };
  }
}

export class ActiveSigners {
  constructor(
    private readonly store: Pick<Store, "getIdentity">,
    private readonly keyring: Keyring,
    private readonly chains: Pick<AuditChains, "state">,
  ) {}

  /** A Signer for the identity's active key (see above). */
  async active(identityId: string): Promise<Signer> {
    await requireIdentity(this.store, identityId);
    const keyId = (await this.chains.state(identityId)).activeKeyId;
    if (!keyId) throw new SigilError("key_missing", `the audit log of ${identityId} names no active key`);
    const rec = await requireIdentity(this.store, identityId);
    const key = rec.keys.find((k) => k.keyId === keyId);
    if (!key) throw new SigilError("key_missing", `signing key ${keyId} of ${identityId} is not in the registry`);
    const { secretKey } = await this.keyring.signer(identityId, keyId);
    return { keyId, publicKey: new Uint8Array(fromB64(key.publicKey)), sign: (m) => edSign(secretKey, m) };
  }
}
