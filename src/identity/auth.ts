/**
 * Authentication: which principal a bearer token names. Tokens are never stored, only their
 * SHA-256 (compared in constant time); an agent token of a revoked identity names no one.
 */
import { hashesEqual, tokenHash } from "../crypto/tokens.js";
import type { IdentityRecord, Store } from "../../store/types.js";

/**
 * An admin is the root admin (the token `sigil init` printed: every tenant) or a tenant's admin
 * (`tenantId`: only that tenant's identities; see src/tenant/scope.ts).
 */
export type Principal =
  | { kind: "agent"; identityId: string; tokenHash: string }
  | { kind: "admin"; tokenHash: string; tenantId?: string }
  | { kind: "approver"; approverId: string; tenantId: string; tokenHash: string };

/** Resolves approver tokens (src/approval/approvers.ts). */
export interface ApproverTokens {
  byToken(token: string | undefined): Promise<{ id: string; tenantId: string; tokenHash: string } | undefined>;
}

export class Authenticator {
  constructor(
    private readonly store: Pick<Store, "meta" | "identityByTokenHash" | "tenantByTokenHash" | "getTenant">,
    private readonly approvers?: ApproverTokens,
  ) {}

  /** Whether the token is the root admin token. */
  async admin(token: string | undefined): Promise<boolean> {
    if (!token || !token.startsWith("sigil_admin_")) return false;
    const meta = await this.store.meta();
    return hashesEqual(tokenHash(token), meta.adminTokenHash);
  }

  /** The tenant whose admin token this is, if any. */
  async tenantAdmin(token: string | undefined): Promise<string | undefined> {
    if (!token || !token.startsWith("sigil_admin_")) return undefined;
    const h = tokenHash(token);
    const t = await this.store.tenantByTokenHash(h);
    return t?.adminTokenHash !== undefined && hashesEqual(t.adminTokenHash, h) ? t.id : undefined;
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
    if (token.startsWith("sigil_admin_")) {
      if (await this.admin(token)) return { kind: "admin", tokenHash: tokenHash(token) };
      const tenantId = await this.tenantAdmin(token);
      return tenantId !== undefined ? { kind: "admin", tokenHash: tokenHash(token), tenantId } : undefined;
    }
    if (token.startsWith("sigil_approver_")) {
      const apr = await this.approvers?.byToken(token);
      return apr ? { kind: "approver", approverId: apr.id, tenantId: apr.tenantId, tokenHash: apr.tokenHash } : undefined;
    }
    const rec = await this.agent(token);
    return rec ? { kind: "agent", identityId: rec.id, tokenHash: rec.tokenHash } : undefined;
  }

  /** Whether the admin token a session was opened with (by its hash) is still the home's (or its tenant's) admin token. */
  async adminStillValid(hash: string, tenantId?: string): Promise<boolean> {
    if (tenantId !== undefined) {
      const t = await this.store.getTenant(tenantId);
      return t?.adminTokenHash !== undefined && hashesEqual(t.adminTokenHash, hash);
    }
    const meta = await this.store.meta();
    return hashesEqual(meta.adminTokenHash, hash);
  }
}
