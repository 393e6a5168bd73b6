/**
 * P-256 (ES256) keys for payment mandates (README "Payment mandates"; SPEC §13):
 *
 * - **Payments keys.** Each identity with the `card` channel has one beside its Ed25519 key, in
 *   `paymentKeys` of its registry record (so the record MAC covers it). It signs the closed
 *   mandate leaves (`mandate.payment.1`, `mandate.checkout.1`) and Verifiable Intent's L3a/L3b;
 *   the open mandates name it as `cnf.jwk`. Made with the identity, or — for an identity issued
 *   before mandates existed — the first time anything needs or publishes it; rotated with the
 *   identity's key (`sigil identity rotate-key`), the old one kept, retired, with its window.
 * - **Provider keys.** Each tenant has one. It signs the roots (the open checkout and payment
 *   mandates), acting as AP2's "trusted surface": only sigil's own code, after the identity's policy
 *   (and a named approver when the policy asks) allowed the mandate, signs with it. No agent tool
 *   can reach it. It is what merchants, credential providers and networks trust.
 *
 * Private keys are PKCS#8 DER sealed under the master key's `signing-keys` subkey; the associated
 * data binds each to its owner and key id, and opening checks that its public half is the record's
 * JWK, so a store writer without the master key can neither read a key nor move or swap one.
 * Key ids are RFC 7638 thumbprints (jose's `calculateJwkThumbprint`).
 */
import { createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from "node:crypto";
import { calculateJwkThumbprint } from "jose";
import type { MasterKey } from "../crypto/master-key.js";
import { open as openSealed, seal } from "../crypto/seal.js";
import { SigilError } from "../errors.js";
import type { IdentityRecord, PaymentKeyRecord, Store } from "../../store/types.js";

export type EcPublicJwk = PaymentKeyRecord["jwk"];

/** A key that signs ES256: its id (thumbprint), public JWK and private key object. */
export interface EsSigner {
  keyId: string;
  jwk: EcPublicJwk;
  privateKey: KeyObject;
}

export const paymentKeyAd = (identityId: string, keyId: string): string => `sigil-payment-key-v1\n${identityId}\n${keyId}`;
export const providerKeyAd = (tenantId: string, keyId: string): string => `sigil-provider-key-v1\n${tenantId}\n${keyId}`;

/** How long a retired payments key stays in the key directory: the longest an open mandate lives. */
export const MANDATE_MAX_LIFETIME_MS = 24 * 60 * 60 * 1000;

function publicJwkOf(key: KeyObject): EcPublicJwk {
  const j = createPublicKey(key).export({ format: "jwk" }) as { kty?: string; crv?: string; x?: string; y?: string };
  if (j.kty !== "EC" || j.crv !== "P-256" || typeof j.x !== "string" || typeof j.y !== "string") throw new Error("not a P-256 key");
  return { kty: "EC", crv: "P-256", x: j.x, y: j.y };
}

/** The RFC 7638 thumbprint of a P-256 public JWK. */
export function ecThumbprint(jwk: EcPublicJwk): Promise<string> {
  return calculateJwkThumbprint({ kty: jwk.kty, crv: jwk.crv, x: jwk.x, y: jwk.y }, "sha256");
}

/** A fresh P-256 key, its private half sealed to `ad(keyId)`. */
export async function newEcKey(master: MasterKey, ad: (keyId: string) => string, at: string): Promise<PaymentKeyRecord> {
  const { privateKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
  const jwk = publicJwkOf(privateKey);
  const keyId = await ecThumbprint(jwk);
  const der = privateKey.export({ format: "der", type: "pkcs8" });
  return { keyId, jwk, sealed: seal(master.subkey("signing-keys"), new Uint8Array(der), ad(keyId)), createdAt: at, notBefore: at, status: "active" };
}

/** The record's active key (the last one marked active). */
export function activeKey(keys: PaymentKeyRecord[] | undefined): PaymentKeyRecord | undefined {
  return keys?.filter((k) => k.status === "active").at(-1);
}

export class PaymentKeys {
  private readonly opened = new Map<string, KeyObject>();

  constructor(
    private readonly store: Pick<Store, "getIdentity" | "updateIdentity" | "getProviderKey" | "putProviderKey">,
    private readonly master: MasterKey,
    private readonly now: () => number,
  ) {}

  private at(): string {
    return new Date(this.now()).toISOString();
  }

  /** A new identity's payments key (for `Identities.create`). */
  newIdentityKey(identityId: string, at: string): Promise<PaymentKeyRecord> {
    return newEcKey(this.master, (kid) => paymentKeyAd(identityId, kid), at);
  }

  /**
   * The identity's record with a payments key: an identity with the `card` channel that has none
   * (issued before mandates existed) gets one now. Other identities are returned as they are.
   */
  async ensureIdentityKey(rec: IdentityRecord): Promise<IdentityRecord> {
    if (!rec.channels.includes("card") || rec.revokedAt || activeKey(rec.paymentKeys)) return rec;
    const fresh = await this.newIdentityKey(rec.id, this.at());
    return this.store.updateIdentity(rec.id, (r) => (activeKey(r.paymentKeys) || r.revokedAt ? r : { ...r, paymentKeys: [...(r.paymentKeys ?? []), fresh], updatedAt: fresh.createdAt > r.updatedAt ? fresh.createdAt : r.updatedAt }));
  }

  /** Retires the identity's payments key and makes a new one (with `sigil identity rotate-key`). */
  async rotate(identityId: string): Promise<void> {
    const rec = await this.store.getIdentity(identityId);
    if (!rec || !rec.channels.includes("card")) return;
    const at = this.at();
    const fresh = await this.newIdentityKey(identityId, at);
    await this.store.updateIdentity(identityId, (r) => ({
      ...r,
      paymentKeys: [...(r.paymentKeys ?? []).map((k): PaymentKeyRecord => (k.status === "active" ? { ...k, status: "retired", notAfter: at } : k)), fresh],
      updatedAt: at > r.updatedAt ? at : r.updatedAt,
    }));
  }

  /** The signer for the identity's active payments key (made first if it has none). */
  async identitySigner(identityId: string): Promise<EsSigner> {
    const rec = await this.store.getIdentity(identityId);
    if (!rec) throw new SigilError("key_missing", `no identity ${identityId}`);
    const key = activeKey((await this.ensureIdentityKey(rec)).paymentKeys);
    if (!key) throw new SigilError("key_missing", `identity ${identityId} has no payments key`);
    return this.open(key, paymentKeyAd(identityId, key.keyId));
  }

  /**
   * The signer for one of the identity's payments keys by thumbprint — only one valid now (the
   * active key): a retired key never signs again.
   */
  async identitySignerByKid(identityId: string, keyId: string): Promise<EsSigner | undefined> {
    const rec = await this.store.getIdentity(identityId);
    const key = activeKey(rec?.paymentKeys);
    if (!key || key.keyId !== keyId) return undefined;
    return this.open(key, paymentKeyAd(identityId, key.keyId));
  }

  /** The tenant's provider key record, made (once, whoever races) when it has none. */
  async providerKey(tenantId: string): Promise<PaymentKeyRecord> {
    const held = await this.store.getProviderKey(tenantId);
    if (held) return held;
    return this.store.putProviderKey(tenantId, await newEcKey(this.master, (kid) => providerKeyAd(tenantId, kid), this.at()));
  }

  /** The signer for the tenant's provider key. Only sigil's mandate issuance calls this. */
  async providerSigner(tenantId: string): Promise<EsSigner> {
    const key = await this.providerKey(tenantId);
    return this.open(key, providerKeyAd(tenantId, key.keyId));
  }

  /** Opens a sealed key; its public half must be the record's JWK and the key id its thumbprint. */
  private async open(key: PaymentKeyRecord, ad: string): Promise<EsSigner> {
    const cacheKey = `${ad}\n${key.jwk.x}\n${key.jwk.y}`;
    let pk = this.opened.get(cacheKey);
    if (!pk) {
      let candidate: KeyObject;
      try {
        const der = openSealed(this.master.subkey("signing-keys"), key.sealed, ad);
        candidate = createPrivateKey({ key: Buffer.from(der), format: "der", type: "pkcs8" });
      } catch {
        throw new SigilError("key_missing", "a payments key cannot be opened with this home's master key");
      }
      const jwk = publicJwkOf(candidate);
      if (jwk.x !== key.jwk.x || jwk.y !== key.jwk.y || (await ecThumbprint(jwk)) !== key.keyId) {
        throw new SigilError("key_missing", "a payments key does not match its record");
      }
      pk = candidate;
      this.opened.set(cacheKey, pk);
    }
    return { keyId: key.keyId, jwk: key.jwk, privateKey: pk };
  }
}
