/**
 * Authentication: which principal a bearer token names. Tokens are never stored, only their
 * SHA-256 (compared in constant time); an agent token of a revoked identity names no one.
 */
import { hashesEqual, tokenHash } from "../crypto/core.js";
import type { IdentityRecord, Store } from "../../store/types.js";

export type Principal =
  | { kind: "agent"; identityId: string; tokenHash: string }
  | { kind: "admin"; tokenHash: string };

export class Authenticator {
  constructor(private readonly store: Pick<Store, "meta" | "identityByTokenHash">) {}

  async admin(token: string | undefined): Promise<boolean> {
    if (!token || !token.startsWith("sigil_admin_")) return false;
    const meta = await this.store.meta();
    return hashesEqual(tokenHash(token), meta.adminTokenHash);
  }

  /** The identity a token belongs to, if the token is current and the identity not revoked. */
  async agent(token: string | undefined): Promise<IdentityRecord | undefined> {
    if (!token || !token.startsWith("sigil_agent_")) return undefined;
    const h = tokenHash(token);
    const rec = await this.store.identityByTokenHash(h);
    if (!rec || !hashesEqual(rec.tokenHash, h) || rec.revokedAt) return undefined;
    return rec;
  }

  /** Resolves a bearer token to a principal, or undefined (wrong, revoked, or not a sigil token). */
  async principal(token: string | undefined): Promise<Principal | undefined> {
    if (!token) return undefined;
    if (token.startsWith("sigil_admin_")) return (await this.admin(token)) ? { kind: "admin", tokenHash: tokenHash(token) } : undefined;
    const rec = await this.agent(token);
    return rec ? { kind: "agent", identityId: rec.id, tokenHash: rec.tokenHash } : undefined;
  }

  /** Whether the admin token a session was opened with (by its hash) is still the home's admin token. */
  async adminStillValid(hash: string): Promise<boolean> {
    const meta = await this.store.meta();
    return hashesEqual(meta.adminTokenHash, hash);
  }
}
