/**
 * Approvers: the people who decide approvals for one tenant (README: "Approvals"). Each has a
 * credential (`sigil_approver_…`, only its keyed hash stored) and an Ed25519 key, sealed under the
 * master key like identity keys, that signs every decision it makes. The record is authenticated
 * (record MAC, kind `approver`, src/identity/record-mac.ts): a record written or changed by anyone
 * without the master key — a token hash swapped in, a tenant changed, a removal undone by editing
 * the record — names no one (fail closed). The CLI (`sigil approver add|list|
 * remove`) calls these operations; bad input is refused (`Denied`) and changes nothing.
 */
import { randomBytes } from "node:crypto";
import { type MasterKey } from "../crypto/master-key.js";
import { b64, fromB64 } from "../crypto/encoding.js";
import { generateSigningKey, keyThumbprint, sign as edSign } from "../crypto/ed25519.js";
import { hashesEqual, randomId } from "../crypto/tokens.js";
import { open as openSealed, seal } from "../crypto/seal.js";
import { RecordMac, TokenHashes } from "../identity/record-mac.js";
import { Denied } from "../errors.js";
import { validateAddress } from "../policy/email-address.js";
import { NAME_RE } from "../identity/records.js";
import { APPROVER_ID_RE, type ApproverRecord, type Store } from "../../store/types.js";
import { APPROVER_ADDED, APPROVER_REMOVED, type ChainState } from "../audit/chain.js";

/** The tenant logs, as approvers use them (src/tenant/log.ts). */
export interface ApproverLog {
  state(tenantId: string): Promise<Pick<ChainState, "approver">>;
  change<T>(tenantId: string, tool: string, fields: Record<string, unknown>, apply: () => Promise<T>, result?: Record<string, unknown>): Promise<T>;
  refuse(tenantId: string, key: string, fields: Record<string, unknown>): Promise<void>;
}

export const APPROVER_TOKEN_PREFIX = "sigil_approver_";

/** The associated data that binds an approver's sealed key to the approver and key id. */
export const approverKeyAd = (approverId: string, keyId: string): string => `sigil-approver-key-v1\n${approverId}\n${keyId}`;

/** An approver as the CLI shows it: never its token hash or sealed key. */
export interface ApproverView {
  id: string;
  tenantId: string;
  name: string;
  email?: string;
  keyId: string;
  publicKey: string;
  createdAt: string;
  removedAt?: string;
}

export function approverView(r: ApproverRecord): ApproverView {
  return {
    id: r.id,
    tenantId: r.tenantId,
    name: r.name,
    ...(r.email !== undefined ? { email: r.email } : {}),
    keyId: r.keyId,
    publicKey: r.publicKey,
    createdAt: r.createdAt,
    ...(r.removedAt !== undefined ? { removedAt: r.removedAt } : {}),
  };
}

export const APPROVER_RECORD_KIND = "approver";

export class Approvers {
  private readonly secretKeys = new Map<string, Uint8Array>();
  private readonly macs: RecordMac;
  private readonly tokens: TokenHashes;

  constructor(
    private readonly store: Store,
    private readonly master: MasterKey,
    private readonly now: () => number,
    /** Whether a tenant exists (the tenant registry); absent: only `default`. */
    private readonly tenantExists: (tenantId: string) => Promise<boolean> = async (t) => t === "default",
    /** The tenants' audit logs: every change recorded, every use checked against them. */
    private readonly log?: ApproverLog,
  ) {
    this.macs = RecordMac.from(master);
    this.tokens = TokenHashes.from(master);
  }

  /** Whether the record is one sigil wrote (its MAC checks). */
  authentic(rec: ApproverRecord | undefined): rec is ApproverRecord {
    return rec !== undefined && this.macs.check(APPROVER_RECORD_KIND, rec.id, rec);
  }

  /** The stored form of an approver token. */
  tokenHash(token: string): string {
    return this.tokens.hash(token);
  }

  /** The approver a token names: the token current, the record authentic, the approver not removed. */
  async byToken(token: string | undefined): Promise<ApproverRecord | undefined> {
    if (!token || !token.startsWith(APPROVER_TOKEN_PREFIX)) return undefined;
    const h = this.tokens.hash(token);
    const rec = await this.store.approverByTokenHash(h);
    if (!this.authentic(rec) || rec.removedAt || !hashesEqual(rec.tokenHash, h)) return undefined;
    return (await this.inLog(rec)) ? rec : undefined;
  }

  /**
   * Whether the tenant's log says this approver is current with this key: added (its `ok` result
   * written), not removed. When it does not, the refusal is recorded in the tenant's log.
   */
  async inLog(rec: ApproverRecord): Promise<boolean> {
    if (!this.log) return true;
    const a = (await this.log.state(rec.tenantId)).approver(rec.id);
    const reason = !a ? "approver_not_in_log" : a.removedAt !== undefined ? "approver_removed_in_log" : a.keyId !== rec.keyId || a.publicKey !== rec.publicKey ? "approver_key_differs" : undefined;
    if (!reason) return true;
    await this.log.refuse(rec.tenantId, `${rec.id}\n${reason}\n${rec.keyId}`, { reason, record: "approver", approverId: rec.id, keyId: rec.keyId });
    return false;
  }

  /** Whether the approver whose token hashed to `hash` is still current (authentic, not removed, same token). */
  async stillValid(id: string, hash: string): Promise<ApproverRecord | undefined> {
    const rec = await this.store.getApprover(id);
    if (!this.authentic(rec) || rec.removedAt || !hashesEqual(rec.tokenHash, hash)) return undefined;
    return (await this.inLog(rec)) ? rec : undefined;
  }

  /** Adds an approver to `tenantId` (default: `default`). */
  async add(input: { tenantId?: string; name: string; email?: string }): Promise<ApproverView & { token: string }> {
    const name = typeof input.name === "string" ? input.name.trim() : "";
    if (!NAME_RE.test(name)) {
      throw new Denied("invalid_arguments", "name must be 1-64 letters, digits, spaces, dots, dashes or underscores, starting with a letter or digit.");
    }
    const tenantId = input.tenantId === undefined ? "default" : typeof input.tenantId === "string" ? input.tenantId : "";
    if (!(await this.tenantExists(tenantId))) throw new Denied("not_found", `No tenant ${tenantId.slice(0, 40)}.`);
    let email: string | undefined;
    if (input.email !== undefined) {
      const a = validateAddress(input.email);
      if (!a.ok) throw new Denied("invalid_arguments", `email: ${a.reason}.`);
      email = a.address;
    }
    const id = randomId("apr_");
    const token = APPROVER_TOKEN_PREFIX + randomBytes(32).toString("base64url");
    const kp = generateSigningKey();
    const keyId = keyThumbprint(kp.publicKey);
    const record: ApproverRecord = this.macs.seal(APPROVER_RECORD_KIND, id, {
      id,
      tenantId,
      name,
      ...(email !== undefined ? { email } : {}),
      tokenHash: this.tokens.hash(token),
      keyId,
      publicKey: b64(kp.publicKey),
      sealed: seal(this.master.subkey("signing-keys"), kp.secretKey, approverKeyAd(id, keyId)),
      createdAt: new Date(this.now()).toISOString(),
    } as ApproverRecord);
    const create = () => this.store.createApprover(record);
    if (this.log) await this.log.change(tenantId, APPROVER_ADDED, { approverId: id, name, approverKeyId: keyId, approverPublicKey: record.publicKey }, create);
    else await create();
    return { ...approverView(record), token };
  }

  async list(tenantId?: string): Promise<ApproverView[]> {
    return (await this.store.listApprovers()).filter((r) => this.authentic(r) && (tenantId === undefined || r.tenantId === tenantId)).map(approverView);
  }

  /** The approver's record; `not_found` when there is none (or it belongs to another tenant than `tenantId`). */
  async require(id: string, tenantId?: string): Promise<ApproverRecord> {
    const rec = typeof id === "string" && APPROVER_ID_RE.test(id) ? await this.store.getApprover(id) : undefined;
    if (!this.authentic(rec) || (tenantId !== undefined && rec.tenantId !== tenantId)) throw new Denied("not_found", `No approver ${typeof id === "string" ? id.slice(0, 40) : ""}.`);
    return rec;
  }

  /** Removes an approver: its token stops working at once; decisions it signed stay verifiable. */
  async remove(id: string, tenantId?: string): Promise<{ id: string; removedAt: string }> {
    const current = await this.require(id, tenantId);
    const update = () =>
      this.store.updateApprover(id, (r) => {
        if (!this.authentic(r)) throw new Denied("record_invalid", `approver ${id}'s record fails its authentication; nothing was changed.`);
        return r.removedAt ? r : this.macs.seal(APPROVER_RECORD_KIND, id, { ...r, removedAt: new Date(this.now()).toISOString() });
      });
    // Removing a removed approver changes nothing and records nothing (its first removal stands).
    if (!this.log) return { id, removedAt: (await update()).removedAt! };
    const logged = (await this.log.state(current.tenantId)).approver(id);
    if (current.removedAt && logged?.removedAt !== undefined) return { id, removedAt: current.removedAt };
    const rec = await this.log.change(current.tenantId, APPROVER_REMOVED, { approverId: id }, update);
    return { id, removedAt: rec.removedAt! };
  }

  /** Signs `statement` (already domain-separated by the caller) with the approver's key. */
  async sign(rec: ApproverRecord, statement: string): Promise<{ keyId: string; publicKey: string; signature: string }> {
    if (!this.authentic(rec)) throw new Denied("record_invalid", "this approver's record fails its authentication.");
    const cacheKey = `${rec.id}\n${rec.keyId}`;
    let sk = this.secretKeys.get(cacheKey);
    if (!sk) {
      sk = openSealed(this.master.subkey("signing-keys"), rec.sealed, approverKeyAd(rec.id, rec.keyId));
      this.secretKeys.set(cacheKey, sk);
    }
    // The sealed key must belong to the published public key (a swapped record signs nothing).
    if (!Buffer.from(sk.subarray(32)).equals(fromB64(rec.publicKey))) throw new Denied("approver_key_mismatch", "this approver's key does not match its record.");
    return { keyId: rec.keyId, publicKey: rec.publicKey, signature: b64(edSign(sk, statement)) };
  }
}
