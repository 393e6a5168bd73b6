/**
 * Delegation statements: a tenant's signed word that one of its identities' keys acts for it, with
 * which channels, under which policy (by hash), and when.
 *
 *   { "tenant", "tenantKeyId", "identity", "keyId", "channels", "policyHash", "notBefore", "notAfter"?, "signature" }
 *
 * `signature` is Ed25519 by the tenant key (`tenantKeyId`, its RFC 7638 thumbprint) over the UTF-8
 * bytes of `sigil-delegation-v1\n` followed by the RFC 8785 canonical JSON of the statement without
 * `signature`; it is base64url (no padding). `policyHash` is the hex SHA-256 of the policy's
 * RFC 8785 form (what audit entries record); `notBefore`/`notAfter` are RFC 3339 times. Anyone can
 * check one with a plain Ed25519 library (README: "Delegation statements").
 *
 * A statement is issued when the identity is created and whenever its active key, channels or
 * policy change (the one it replaces is re-signed with `notAfter` set); revocation closes the open
 * one. So the statements of an identity, oldest first, say which key and policy the tenant stood
 * behind at any time.
 */
import { b64url } from "../crypto/encoding.js";
import { sign, verifySignature } from "../crypto/ed25519.js";
import { decodeBase64UrlStrict } from "../crypto/jwk.js";
import { jcs } from "../util/jcs.js";
import type { DelegationRecord } from "../../store/types.js";

export const DELEGATION_PREFIX = "sigil-delegation-v1\n";

export type DelegationStatement = Omit<DelegationRecord, "signature">;

/** The exact bytes the tenant key signs. */
export function delegationBytes(st: DelegationStatement | DelegationRecord): Buffer {
  const { signature: _omit, ...body } = st as DelegationRecord;
  for (const k of Object.keys(body) as Array<keyof typeof body>) if (body[k] === undefined) delete body[k];
  return Buffer.from(DELEGATION_PREFIX + jcs(body), "utf8");
}

export function signDelegation(secretKey: Uint8Array, st: DelegationStatement): DelegationRecord {
  const body: DelegationStatement = {
    tenant: st.tenant,
    tenantKeyId: st.tenantKeyId,
    identity: st.identity,
    keyId: st.keyId,
    channels: [...st.channels],
    policyHash: st.policyHash,
    notBefore: st.notBefore,
    ...(st.notAfter !== undefined ? { notAfter: st.notAfter } : {}),
  };
  return { ...body, signature: b64url(sign(secretKey, delegationBytes(body))) };
}

/** Whether the statement is signed by `tenantPublicKey` (raw 32 bytes). Never throws. */
export function verifyDelegation(st: unknown, tenantPublicKey: Uint8Array): boolean {
  if (!st || typeof st !== "object" || Array.isArray(st)) return false;
  const d = st as Record<string, unknown>;
  const strings = ["tenant", "tenantKeyId", "identity", "keyId", "policyHash", "notBefore", "signature"];
  if (!strings.every((k) => typeof d[k] === "string")) return false;
  if (d.notAfter !== undefined && typeof d.notAfter !== "string") return false;
  if (!Array.isArray(d.channels) || !d.channels.every((c) => typeof c === "string")) return false;
  const known = new Set([...strings, "channels", "notAfter"]);
  if (Object.keys(d).some((k) => !known.has(k))) return false;
  const sig = decodeBase64UrlStrict(d.signature as string);
  if (!sig || sig.length !== 64) return false;
  try {
    return verifySignature(tenantPublicKey, delegationBytes(d as unknown as DelegationRecord), sig);
  } catch {
    return false;
  }
}

/** The statement in force at `at` (ISO time) for `keyId`, if any: notBefore ≤ at and (no notAfter, or at ≤ notAfter). */
export function delegationAt(list: DelegationRecord[] | undefined, keyId: string, at: string): DelegationRecord | undefined {
  const t = Date.parse(at);
  if (!Number.isFinite(t)) return undefined;
  for (let i = (list?.length ?? 0) - 1; i >= 0; i--) {
    const d = list![i]!;
    if (d.keyId !== keyId) continue;
    if (Date.parse(d.notBefore) <= t && (d.notAfter === undefined || t <= Date.parse(d.notAfter))) return d;
  }
  return undefined;
}
