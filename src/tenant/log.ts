/**
 * A tenant's own audit log: who may decide its approvals (README "Approvals", "Audit log";
 * docs/ARCHITECTURE.md, "Tenant logs"). The same chain, entry format and verifier as an identity's
 * log (src/audit/), kept by the same backend under the tenant's id (`default`, `tn_…`: never an
 * identity id), signed by the tenant's key and opened by a `tenant_created` entry carrying it.
 *
 * - Adding or removing an approver and registering a passkey are recorded like identity admin
 *   changes (`adminChange`, session `admin`): an intent (`approver_added` naming the approver and
 *   its key, `approverKeyId`/`approverPublicKey`; `approver_removed`; `passkey_registered` naming
 *   the credential, `credentialPublicKey` and the relying party, `rpId`/`origin`), then the store change with its `ok` result — or `failed` when it did not take effect.
 *   An intent left open by a dead process gets its result from the store's actual state
 *   (`tenantOutcome`). The log's roster (`ChainState.approver`, `.passkey`) is what the `ok`
 *   results say.
 * - At use, an approver or passkey counts only if the roster agrees with its (MAC'd) record
 *   (`Approvers.byToken`/`stillValid`, `Passkeys.list`): a record put back after a removal, or one
 *   whose change the log never completed, names no one, and the refusal is an entry
 *   (`approver_check`, `deny`).
 * - The log of a home older than tenant logs starts with the approvers and passkeys it held then
 *   (the creation entry lists them: `approvers`, `passkeys`).
 * - Only sigil writes it, through these operations; a tenant admin reaches them only for its own
 *   tenant (src/tenant/scope.ts), so no tenant's admin writes another tenant's log.
 */
import type { AdminOutcome, AuditChains, ChainState, Draft, Keyring, OrphanedAdminIntent, SigningKey } from "../audit/chain.js";
import { APPROVER_ADDED, APPROVER_REMOVED, PASSKEY_REGISTERED } from "../audit/chain.js";
import { SigilError } from "../errors.js";
import { adminChange } from "../identity/identities.js";
import type { ApproverRecord, PasskeyRecord, Store } from "../../store/types.js";
import type { Tenants } from "./tenants.js";
import { metaAuthentic, sealMeta } from "../identity/home.js";
import type { RecordMac } from "../identity/record-mac.js";

/** What a tenant log's creation entry adopts from a home older than tenant logs. */
export interface Existing {
  approvers: ApproverRecord[];
  passkeys: PasskeyRecord[];
}

/**
 * Whether a tenant log's creation entry may adopt what the home holds: only while the registry
 * metadata (MAC checked: a marker stripped by a store writer fails it) says tenant logs have not
 * begun — a home older than them, being opened for the first time (`startTenantLogs`).
 */
export async function adopting(store: Pick<Store, "meta">, macs: RecordMac): Promise<boolean> {
  const meta = await store.meta();
  return metaAuthentic(macs, meta) && meta.tenantLogsSince === undefined;
}

/**
 * For a home older than tenant logs: opens every tenant's log (its creation entry lists the
 * approvers and passkeys the home holds), then marks the registry (`tenantLogsSince`) so that no
 * later creation entry adopts anything. Safe to race and to resume.
 */
export async function startTenantLogs(store: Pick<Store, "meta" | "listTenants" | "updateMeta">, macs: RecordMac, log: Pick<TenantLog, "open">, now: () => number): Promise<void> {
  if (!(await adopting(store, macs))) return;
  for (const t of await store.listTenants()) await log.open(t.id);
  await store.updateMeta((m) => (m.tenantLogsSince !== undefined || !metaAuthentic(macs, m) ? m : sealMeta(macs, { ...m, tenantLogsSince: new Date(now()).toISOString() })));
}

/** Signs tenant logs with the tenant's key; writes their creation entry. */
export class TenantKeyring implements Keyring {
  constructor(
    private readonly store: Pick<Store, "getTenant">,
    private readonly tenants: Pick<Tenants, "secretKey">,
    /** The tenant's approvers and passkeys the store holds that sigil wrote (MACs checked). */
    private readonly existing: (tenantId: string) => Promise<Existing>,
  ) {}

  private async tenant(tenantId: string) {
    const t = await this.store.getTenant(tenantId);
    if (!t) throw new SigilError("not_found", `No tenant ${tenantId.slice(0, 40)}.`);
    return t;
  }

  async signer(tenantId: string, keyId: string): Promise<SigningKey> {
    const t = await this.tenant(tenantId);
    if (t.key.keyId !== keyId) throw new SigilError("key_missing", `signing key ${keyId} of tenant ${tenantId} is not in the registry`);
    return { keyId, secretKey: await this.tenants.secretKey(t) };
  }

  async genesis(tenantId: string): Promise<{ draft: Draft; keyId: string }> {
    const t = await this.tenant(tenantId);
    await this.tenants.secretKey(t); // the record's key is the tenant's own before it opens a log
    const { approvers, passkeys } = await this.existing(tenantId);
    return {
      keyId: t.key.keyId,
      draft: {
        tool: "tenant_created",
        phase: "event",
        decision: "ok",
        name: t.name,
        publicKey: t.key.publicKey,
        ...(approvers.length > 0
          ? { approvers: approvers.map((a) => ({ approverId: a.id, keyId: a.keyId, publicKey: a.publicKey, createdAt: a.createdAt, ...(a.removedAt ? { removedAt: a.removedAt } : {}) })) }
          : {}),
        ...(passkeys.length > 0 ? { passkeys: passkeys.map((p) => ({ credentialId: p.id, approverId: p.approverId, publicKey: p.publicKey, createdAt: p.createdAt })) } : {}),
      },
    };
  }
}

/**
 * What became of a tenant-log intent whose process died before its result, from the store's
 * actual state: `approver_added` ok if the approver's record (MAC checked) exists with the key the
 * intent names; `approver_removed` ok if it says removed; `passkey_registered` ok if the approver
 * holds that credential with that public key; `failed` otherwise.
 */
export async function tenantOutcome(
  read: { approver: (id: string) => Promise<ApproverRecord | undefined>; passkeys: (approverId: string) => Promise<PasskeyRecord[]> },
  tenantId: string,
  intent: OrphanedAdminIntent,
): Promise<AdminOutcome> {
  const d = intent.detail;
  const ok: AdminOutcome = { decision: "ok", reason: "recovered" };
  const failed: AdminOutcome = { decision: "failed", reason: "interrupted" };
  const unknown: AdminOutcome = { decision: "unknown", reason: "orphaned_intent" };
  if (typeof d.approverId !== "string") return unknown;
  const rec = await read.approver(d.approverId);
  if (rec && rec.tenantId !== tenantId) return unknown;
  switch (intent.tool) {
    case APPROVER_ADDED:
      return rec && rec.keyId === d.approverKeyId && rec.publicKey === d.approverPublicKey ? ok : failed;
    case APPROVER_REMOVED:
      return !rec ? unknown : rec.removedAt ? ok : failed;
    case PASSKEY_REGISTERED:
      return (await read.passkeys(d.approverId)).some((p) => p.id === d.credentialId && p.publicKey === d.credentialPublicKey) ? ok : failed;
    default:
      return unknown;
  }
}

/** The tenant logs as the approver and passkey operations use them. */
export class TenantLog {
  /** Refusals already recorded in this process (one entry per distinct record and reason). */
  private readonly refused = new Set<string>();

  constructor(
    private readonly chains: AuditChains,
    private readonly instanceId?: string,
  ) {}

  /** The tenant log's state (its roster), after catching up on what any process appended. */
  state(tenantId: string): Promise<ChainState> {
    return this.chains.state(tenantId);
  }

  /** Writes the creation entry if the tenant's log has none yet. */
  async open(tenantId: string): Promise<void> {
    await this.chains.state(tenantId);
  }

  /** A change recorded as intent, then the change with its `ok` result (or `failed`): see `adminChange`. */
  change<T>(tenantId: string, tool: string, fields: Record<string, unknown>, apply: () => Promise<T>, result: Record<string, unknown> = {}): Promise<T> {
    return adminChange(
      this.chains,
      this.instanceId,
      tenantId,
      tool,
      () => ({ value: null, fields }),
      () => apply(),
      () => result,
    );
  }

  /**
   * Records that a credential was refused because its record and the log disagree (`approver_check`
   * deny, with the reason): once per distinct record per process. Best effort: the refusal stands
   * even when the entry cannot be written.
   */
  async refuse(tenantId: string, key: string, fields: Record<string, unknown>): Promise<void> {
    const k = `${tenantId}\n${key}`;
    if (this.refused.has(k)) return;
    if (this.refused.size > 1000) this.refused.clear();
    this.refused.add(k);
    process.stderr.write(`sigil: ${String(fields.reason)}: ${String(fields.record)} ${String(fields.approverId ?? "")} of tenant ${tenantId} disagrees with the tenant's audit log; it is refused\n`);
    await this.chains
      .commit(tenantId, () => ({ value: null, draft: { tool: "approver_check", session: "registry", phase: "event", decision: "deny", ...fields } }))
      .catch(() => {});
  }
}
