/**
 * Authentication: which principal a bearer token names. Tokens are never stored, only their keyed
 * hashes (HMAC under a master-key subkey, src/identity/record-mac.ts; compared in constant time),
 * so a hash written into the store by someone without the master key names no token anyone holds.
 * An agent token names its identity only if the identity's record carries a valid MAC and is not
 * revoked; the admin token, only if the registry metadata's MAC checks (a failure there has no
 * identity log to go to: it is reported on stderr, and the token is refused).
 */
import { hashesEqual } from "../crypto/tokens.js";
import { refId } from "../errors.js";
import type { IdentityRecord, RegistryMeta, Store } from "../../store/types.js";
import { metaAuthentic } from "./home.js";
import { type RecordMac, RecordTampered, type TokenHashes } from "./record-mac.js";

/**
 * An admin is the root admin (the token `sigil init` printed: every tenant) or a tenant's admin
 * (`tenantId`: only that tenant's identities; see src/tenant/scope.ts).
 */
export type Principal =
  /** `grantId`: authenticated by an OAuth access token of that grant (src/oauth/), not the static token; `tokenHash` is still the identity's. */
  | { kind: "agent"; identityId: string; tokenHash: string; grantId?: string }
  | { kind: "admin"; tokenHash: string; tenantId?: string }
  | { kind: "approver"; approverId: string; tenantId: string; tokenHash: string };

/** Resolves approver tokens (src/approval/approvers.ts). */
export interface ApproverTokens {
  byToken(token: string | undefined): Promise<{ id: string; tenantId: string; tokenHash: string } | undefined>;
}

export class Authenticator {
  private reportedMeta?: string;

  constructor(
    /** The store whose identity reads check record MACs (src/identity/authenticated-store.ts). */
    private readonly store: Pick<Store, "meta" | "identityByTokenHash" | "tenantByTokenHash" | "getTenant">,
    private readonly tokens: Pick<TokenHashes, "hash">,
    private readonly macs: RecordMac,
    private readonly approvers?: ApproverTokens,
  ) {}

  /** What the store holds for a token (its keyed hash). */
  hash(token: string): string {
    return this.tokens.hash(token);
  }

  /** The admin token hash, if the registry metadata's MAC checks; undefined (reported) when not. */
  private async adminHash(): Promise<string | undefined> {
    const meta: RegistryMeta = await this.store.meta();
    if (metaAuthentic(this.macs, meta)) return meta.adminTokenHash;
    const seen = `${meta.adminTokenHash}\n${String(meta.mac)}`;
    if (this.reportedMeta !== seen) {
      this.reportedMeta = seen;
      process.stderr.write(
        `sigil: record_tampered: the registry metadata (the admin token hash) fails its integrity check: it was changed without the master key; every admin token is refused until it is restored (${refId()})\n`,
      );
    }
    return undefined;
  }

  /** Whether the token is the root admin token. */
  async admin(token: string | undefined): Promise<boolean> {
    if (!token || !token.startsWith("sigil_admin_")) return false;
    const expected = await this.adminHash();
    return expected !== undefined && hashesEqual(this.hash(token), expected);
  }

  /** The tenant whose admin token this is, if any. */
  async tenantAdmin(token: string | undefined): Promise<string | undefined> {
    if (!token || !token.startsWith("sigil_admin_")) return undefined;
    const h = this.hash(token);
    const t = await this.store.tenantByTokenHash(h).catch(refusedTampered);
    return t?.adminTokenHash !== undefined && hashesEqual(t.adminTokenHash, h) ? t.id : undefined;
  }

  /** The identity a token belongs to, if the token is current, the record authentic and not revoked. */
  async agent(token: string | undefined): Promise<IdentityRecord | undefined> {
    if (!token || !token.startsWith("sigil_agent_")) return undefined;
    const h = this.hash(token);
    let rec: IdentityRecord | undefined;
    try {
      rec = await this.store.identityByTokenHash(h);
    } catch (err) {
      if (err instanceof RecordTampered) return undefined; // reported (and audited) by the store
      throw err;
    }
    if (!rec || !hashesEqual(rec.tokenHash, h) || rec.revokedAt) return undefined;
    return rec;
  }

  /** Resolves a bearer token to a principal, or undefined (wrong, revoked, tampered, or not a sigil token). */
  async principal(token: string | undefined): Promise<Principal | undefined> {
    if (!token) return undefined;
    if (token.startsWith("sigil_admin_")) {
      if (await this.admin(token)) return { kind: "admin", tokenHash: this.hash(token) };
      const tenantId = await this.tenantAdmin(token);
      return tenantId !== undefined ? { kind: "admin", tokenHash: this.hash(token), tenantId } : undefined;
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
      const t = await this.store.getTenant(tenantId).catch(refusedTampered);
      return t?.adminTokenHash !== undefined && hashesEqual(t.adminTokenHash, hash);
    }
    const expected = await this.adminHash();
    return expected !== undefined && hashesEqual(expected, hash);
  }
}

/** A record that fails its MAC names no one (the store has reported it). */
function refusedTampered(err: unknown): undefined {
  if (err instanceof RecordTampered) return undefined;
  throw err;
}
