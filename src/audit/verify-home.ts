/**
 * Verifying a home's logs with public data only: the registry's public keys and the audit logs.
 * `sigil audit verify [ID]` opens the store through this, read-only, and never loads the master
 * key — an auditor who can read the registry and the audit files but holds no secret (no
 * SIGIL_MASTER_KEY, the key file unreadable or absent) can verify.
 */
import { describeStore, openStore } from "../../store/index.js";
import { type ApproverRecord, type IdentityRecord, type PasskeyRecord, type Store, StoreError, TENANT_ID_RE, type TenantRecord } from "../../store/types.js";
import { APPROVER_ADDED, APPROVER_REMOVED, ChainState, PASSKEY_REGISTERED, parseLine } from "./chain.js";
import { SigilError } from "../errors.js";
import { realFiles } from "../util/fsx.js";
import { filesFor } from "../util/faults.js";
import type { Config } from "../config.js";
import { type KeySource, type VerifyReport, keysFor, report } from "./anchor.js";
import { type PublicKeyInfo, type VerifyResult, verifyChain } from "./verify.js";

/** The public keys of an identity as the registry records them (pending keys are never trusted). */
export function registryKeys(rec: IdentityRecord): PublicKeyInfo[] {
  return rec.keys.map((k) => ({ keyId: k.keyId, publicKey: k.publicKey, status: k.status, notBefore: k.notBefore, notAfter: k.notAfter }));
}

/** A tenant's key as its own log is verified against (a tenant key never rotates). */
export function tenantKeys(t: TenantRecord): PublicKeyInfo[] {
  return [{ keyId: t.key.keyId, publicKey: t.key.publicKey, status: t.key.status, notBefore: t.key.notBefore, notAfter: t.key.notAfter }];
}

/** Replays a tenant log's entries (already verified) into its state: the roster of approvers and passkeys. */
export function replayTenantLog(tenantId: string, lines: Iterable<string>): ChainState {
  const state = new ChainState(tenantId);
  for (const line of lines) state.apply(parseLine(line, tenantId));
  return state;
}

/**
 * Where the registry and a tenant's verified log disagree about its approvers and passkeys —
 * public fields only (no master key here): an approver or passkey the registry holds that the log
 * never recorded, one put back after the log removed it, a key that differs, one the log records
 * that the registry lost. A change whose intent is still open (interrupted; the next process
 * records its result) is not a disagreement.
 */
export function rosterDisagreements(state: ChainState, approvers: ApproverRecord[], passkeys: PasskeyRecord[]): string[] {
  const open = state.openIntents().map((o) => ({ tool: o.tool, approverId: o.detail?.approverId, credentialId: o.detail?.credentialId }));
  const pending = (tool: string, approverId: string, credentialId?: string): boolean =>
    open.some((o) => o.tool === tool && o.approverId === approverId && (credentialId === undefined || o.credentialId === credentialId));
  const out: string[] = [];
  const held = new Set<string>();
  for (const a of approvers) {
    held.add(a.id);
    const l = state.approver(a.id);
    if (!l) {
      if (!pending(APPROVER_ADDED, a.id)) out.push(`approver ${a.id} is in the registry but its tenant's log never added it`);
    } else if (l.keyId !== a.keyId || l.publicKey !== a.publicKey) out.push(`approver ${a.id}'s key in the registry (${a.keyId}) is not the one the log added (${l.keyId})`);
    else if (l.removedAt !== undefined && !a.removedAt) out.push(`approver ${a.id} was removed at ${l.removedAt} by the log, but the registry holds it as current (a record put back)`);
    else if (l.removedAt === undefined && a.removedAt && !pending(APPROVER_REMOVED, a.id)) out.push(`approver ${a.id} is removed in the registry, but the log records no removal`);
  }
  for (const l of state.approvers()) if (!held.has(l.id)) out.push(`approver ${l.id}, which the log ${l.removedAt ? "added and removed" : "added"}, is missing from the registry (deleted)`);
  const keys = new Set<string>();
  for (const p of passkeys) {
    keys.add(p.id);
    const l = state.passkey(p.id);
    if (!l) {
      if (!pending(PASSKEY_REGISTERED, p.approverId, p.id)) out.push(`passkey ${p.id.slice(0, 22)}… of ${p.approverId} is in the registry but the log never registered it`);
    } else if (l.approverId !== p.approverId || l.publicKey !== p.publicKey) out.push(`passkey ${p.id.slice(0, 22)}… in the registry differs from the one the log registered (approver or public key)`);
  }
  for (const l of state.passkeys()) if (!keys.has(l.credentialId) && held.has(l.approverId)) out.push(`passkey ${l.credentialId.slice(0, 22)}… of ${l.approverId}, which the log registered, is missing from the registry (deleted)`);
  return out;
}

export class PublicHome {
  private constructor(readonly store: Store) {}

  static async open(opts: { home: string; config: Pick<Config, "storeUrl" | "testFaults"> }): Promise<PublicHome> {
    const storeOpts = { home: opts.home, files: filesFor(realFiles, opts.config.testFaults), storeUrl: opts.config.storeUrl };
    const where = describeStore(storeOpts);
    const store = openStore(storeOpts);
    try {
      await store.meta();
    } catch (err) {
      await store.close().catch(() => {});
      if (err instanceof StoreError && err.code === "not_initialised") {
        throw new SigilError("not_initialised", `No sigil ${store.kind === "postgres" ? "registry in" : "home at"} ${where}: run \`sigil init\` first.`);
      }
      const why = store.kind === "postgres" && err instanceof StoreError ? ` (${err.message})` : "";
      throw new SigilError("registry_unreadable", `The registry at ${where} cannot be read${why}.`, { cause: err });
    }
    return new PublicHome(store);
  }

  async close(): Promise<void> {
    await this.store.close();
  }

  async requireIdentity(id: string): Promise<IdentityRecord> {
    const rec = typeof id === "string" ? await this.store.getIdentity(id) : undefined;
    if (!rec) throw new SigilError("not_found", `No identity ${typeof id === "string" ? id.slice(0, 40) : ""}.`);
    return rec;
  }

  publicKeys(rec: IdentityRecord): PublicKeyInfo[] {
    return registryKeys(rec);
  }

  /**
   * Verifies one identity's log or every log, against the registry's keys (anchored to the home)
   * or, when `trusted` is given, against those keys only.
   */
  async verify(id?: string, trusted?: KeySource): Promise<VerifyReport> {
    const isTenant = typeof id === "string" && TENANT_ID_RE.test(id);
    const recs = id === undefined ? await this.store.listIdentities() : isTenant ? [] : [await this.requireIdentity(id)];
    const identities = [];
    for (const rec of recs) {
      const keys = trusted ? keysFor(rec.id, trusted) : registryKeys(rec);
      identities.push(await verifyChain(rec.id, this.store.audit.readLines(rec.id), keys));
    }
    const ts = id === undefined ? await this.store.listTenants() : isTenant ? [await this.requireTenant(id)] : [];
    const tenants: VerifyResult[] = [];
    for (const t of ts) tenants.push(await this.verifyTenant(t));
    return report(identities, trusted ? "keys" : "home", id === undefined || isTenant ? tenants : undefined);
  }

  async requireTenant(id: string): Promise<TenantRecord> {
    const t = await this.store.getTenant(id);
    if (!t) throw new SigilError("not_found", `No tenant ${id.slice(0, 40)}.`);
    return t;
  }

  /**
   * A tenant's own log (src/tenant/log.ts), against the tenant's key in the registry; then whether
   * the registry's approvers and passkeys of the tenant are what the log says they are.
   */
  async verifyTenant(t: TenantRecord): Promise<VerifyResult> {
    const lines: string[] = [];
    for await (const line of this.store.audit.readLines(t.id)) lines.push(line);
    const r = await verifyChain(t.id, lines, tenantKeys(t));
    if (!r.ok) return r;
    // A home older than tenant logs whose logs have not begun yet (no sigil has opened it since): nothing to compare.
    if (lines.length === 0 && (await this.store.meta()).tenantLogsSince === undefined) return r;
    const approvers = (await this.store.listApprovers()).filter((a) => a.tenantId === t.id);
    const passkeys = (await Promise.all(approvers.map((a) => this.store.listPasskeys(a.id)))).flat();
    const problems = rosterDisagreements(replayTenantLog(t.id, lines), approvers, passkeys);
    return problems.length === 0 ? r : { ...r, ok: false, error: `the registry disagrees with the log: ${problems.join("; ")}` };
  }
}
