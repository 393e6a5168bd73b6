/**
 * Reading the audit logs: verify, export a self-contained bundle, query entries, and the public key
 * history a verifier needs. Nothing here writes to a chain (writing is the pipeline's and the
 * identity operations' business, through `AuditChains.commit`).
 */
import type { AuditChains, ChainState } from "../audit/chain.js";
import { type PublicKeyInfo, type VerifyResult, verifyChain } from "../audit/verify.js";
import type { IdentityRecord, Store } from "../../store/types.js";
import { requireIdentity } from "./records.js";
import type { AuditBundle } from "../audit/anchor.js";
import type { Delegations } from "../tenant/delegations.js";

export { type AuditBundle, verifyBundle } from "../audit/anchor.js";

/** Every key the identity has had, with its validity (what verifies its entries). */
export function publicKeys(rec: IdentityRecord): PublicKeyInfo[] {
  return rec.keys.map((k) => ({ keyId: k.keyId, publicKey: k.publicKey, status: k.status, notBefore: k.notBefore, notAfter: k.notAfter }));
}

export class AuditLog {
  constructor(
    private readonly store: Store,
    private readonly chains: Pick<AuditChains, "state">,
    private readonly now: () => number,
    /** The tenant's delegation statements, carried in bundles (src/tenant/delegations.ts). */
    private readonly delegations?: Pick<Delegations, "document">,
  ) {}

  /** The identity's log lines as stored, in order. */
  readLines(id: string): AsyncIterable<string> {
    return this.store.audit.readLines(id);
  }

  /** The chain's state after catching up on the log (size, head, active key). */
  state(id: string): Promise<ChainState> {
    return this.chains.state(id);
  }

  /** The keys the identity's log verifies under (every key it has had, with its window). */
  async trustedKeys(id: string): Promise<PublicKeyInfo[]> {
    return publicKeys(await requireIdentity(this.store, id));
  }

  async verify(id?: string): Promise<{ ok: boolean; identities: VerifyResult[] }> {
    const recs = id ? [await requireIdentity(this.store, id)] : await this.store.listIdentities();
    const identities: VerifyResult[] = [];
    for (const rec of recs) identities.push(await verifyChain(rec.id, this.store.audit.readLines(rec.id), publicKeys(rec)));
    return { ok: identities.every((r) => r.ok), identities };
  }

  async exportBundle(id: string): Promise<AuditBundle> {
    const rec = await requireIdentity(this.store, id);
    // A bundle without them (a read-only home that cannot issue a missing statement) still verifies.
    const delegation = await this.delegations?.document(id).catch(() => undefined);
    const entries: unknown[] = [];
    for await (const line of this.store.audit.readLines(id)) {
      try {
        entries.push(JSON.parse(line));
      } catch {
        entries.push(line); // kept as it is, so the verifier reports it
      }
    }
    // The tenant's own log: who its approvers were and when (it anchors the approvals' signatures).
    const tenantLog: unknown[] = [];
    if (delegation) {
      for await (const line of this.store.audit.readLines(delegation.tenant.id)) {
        try {
          tenantLog.push(JSON.parse(line));
        } catch {
          tenantLog.push(line);
        }
      }
    }
    return {
      format: "sigil-audit-bundle/v1",
      exportedAt: new Date(this.now()).toISOString(),
      identity: { id: rec.id, name: rec.name, createdAt: rec.createdAt },
      keys: publicKeys(rec),
      entries,
      ...(delegation ? { tenant: delegation.tenant, delegations: delegation.delegations, ...(tenantLog.length > 0 ? { tenantLog } : {}) } : {}),
    };
  }

  async query(id: string, opts: { limit?: number; since?: number }): Promise<unknown[]> {
    await requireIdentity(this.store, id);
    const limit = Math.min(Math.max(opts.limit ?? 50, 1), 1000);
    const out: unknown[] = [];
    for await (const line of this.store.audit.readLines(id)) {
      try {
        const e = JSON.parse(line) as { seq: number };
        if (opts.since !== undefined && e.seq <= opts.since) continue;
        out.push(e);
        if (opts.since !== undefined && out.length >= limit) break;
      } catch {
        /* a torn line: verify reports it */
      }
    }
    return opts.since !== undefined ? out : out.slice(-limit);
  }
}
