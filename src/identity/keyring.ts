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
import type { AuditChains, Draft, Keyring as ChainKeyring, SigningKey } from "../audit/chain.js";
import type { KeyRecord, Store } from "../../store/types.js";
import { policyHash, requireIdentity, signingAd } from "./records.js";

export class Keyring implements ChainKeyring {
  private readonly secretKeys = new Map<string, Uint8Array>();

  constructor(
    private readonly store: Pick<Store, "getIdentity">,
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
