/**
 * Identity records as the rest of sigil sees them: the public view (never the token hash or sealed
 * keys), channel lists, the policy hash the audit log records, and the associated data that binds a
 * sealed signing key to its identity and key id.
 */
import { sha256hex } from "../crypto/encoding.js";
import { Denied } from "../errors.js";
import { jcs } from "../util/jcs.js";
import { CHANNELS, DEFAULT_TENANT, type Channel, type IdentityRecord, type KeyRecord, type Store } from "../../store/types.js";

/** An identity as the CLI, the admin tools and the agent tools see it: never its token hash or sealed private keys. */
export type IdentityView = Omit<IdentityRecord, "tokenHash" | "updatedAt" | "keys" | "tenantId" | "delegations"> & {
  tenantId: string;
  keyId: string;
  publicKey: string;
  keys: Array<Omit<KeyRecord, "sealed" | "createdAt">>;
};

export const NAME_RE = /^[\p{L}\p{N}][\p{L}\p{N} ._-]{0,63}$/u;

export const signingAd = (identityId: string, keyId: string): string => `sigil-signing-key-v1\n${identityId}\n${keyId}`;

export function policyHash(policy: unknown): string {
  return sha256hex(jcs(policy));
}

export function parseChannels(input: unknown): Channel[] {
  const list = Array.isArray(input) ? input : typeof input === "string" ? input.split(",") : [];
  const out = new Set<Channel>();
  for (const raw of list) {
    const c = typeof raw === "string" ? raw.trim() : "";
    if (c === "") continue;
    if (!(CHANNELS as readonly string[]).includes(c)) {
      throw new Denied("invalid_arguments", `unknown channel "${c.slice(0, 20)}" (known: ${CHANNELS.join(", ")}).`);
    }
    out.add(c as Channel);
  }
  return CHANNELS.filter((c) => out.has(c));
}

export function publicView(rec: IdentityRecord): IdentityView {
  const active = rec.keys.find((k) => k.status === "active") ?? rec.keys[0]!;
  return {
    id: rec.id,
    name: rec.name,
    tenantId: rec.tenantId ?? DEFAULT_TENANT,
    channels: rec.channels,
    email: rec.email,
    ...(rec.phone ? { phone: rec.phone } : {}),
    policy: rec.policy,
    policyVersion: rec.policyVersion,
    createdAt: rec.createdAt,
    ...(rec.revokedAt ? { revokedAt: rec.revokedAt } : {}),
    keyId: active.keyId,
    publicKey: active.publicKey,
    keys: rec.keys
      .filter((k) => k.status !== "pending")
      .map((k) => ({ keyId: k.keyId, publicKey: k.publicKey, status: k.status, notBefore: k.notBefore, notAfter: k.notAfter })),
  };
}

const views = new WeakMap<IdentityRecord, IdentityView>();
/**
 * The public view of a record, computed once per record object: the store hands out the same
 * (never mutated) record until the identity changes, so the pipeline pays for it once per version.
 */
export function viewOf(rec: IdentityRecord): IdentityView {
  let v = views.get(rec);
  if (!v) views.set(rec, (v = publicView(rec)));
  return v;
}

/** The refusal for an identity that does not exist (or, for a tenant admin, is not its tenant's: the same words). */
export function noSuchIdentity(id: unknown): Denied {
  return new Denied("not_found", `No identity ${typeof id === "string" ? id.slice(0, 40) : ""}.`);
}

/** The identity's record; refused (`not_found`) when there is none. */
export async function requireIdentity(store: Pick<Store, "getIdentity">, id: string): Promise<IdentityRecord> {
  const rec = typeof id === "string" ? await store.getIdentity(id) : undefined;
  if (!rec) throw noSuchIdentity(id);
  return rec;
}
