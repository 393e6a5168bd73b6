/**
 * Identity operations: issue, show, rotate a key or a token, revoke, replace the policy. The CLI
 * and the admin MCP tools both call these, so their results have one shape. Every change is an
 * audit entry of the identity's own chain; bad input is refused (`Denied`) and changes nothing.
 */
import { newToken, randomId, tokenHash } from "../crypto/tokens.js";
import { Denied } from "../errors.js";
import type { AuditChains, Draft } from "../audit/chain.js";
import { parsePolicy } from "../policy/schema.js";
import { validateAddress } from "../policy/email-address.js";
import { parsePhone } from "../policy/phone.js";
import { DEFAULT_TENANT, type IdentityRecord, type Store } from "../../store/types.js";
import type { Keyring } from "./keyring.js";
import type { Delegations } from "../tenant/delegations.js";
import { type IdentityView, NAME_RE, parseChannels, policyHash, publicView, requireIdentity } from "./records.js";

export interface CreateIdentityInput {
  name: string;
  channels: string[];
  policy?: unknown;
  email?: string;
  phone?: string;
  /** The tenant it belongs to (default `default`). */
  tenantId?: string;
}

/** An administrative event in the identity's chain (session "admin"). */
export async function adminEvent(chains: Pick<AuditChains, "commit">, id: string, draft: Draft): Promise<void> {
  await chains.commit(id, () => ({ value: null, draft: { session: "admin", ...draft } }));
}

export class Identities {
  constructor(
    private readonly store: Store,
    private readonly chains: AuditChains,
    private readonly keyring: Keyring,
    private readonly now: () => number,
    /** This process's instance id, recorded in admin intents (see `change`). */
    private readonly instanceId?: string,
    /** Re-issues the tenant's delegation statements inside the registry write that changes what they vouch for. */
    private readonly delegations?: Pick<Delegations, "refreshed">,
  ) {}

  /** The record with its delegation statements brought up to date (src/tenant/delegations.ts). */
  private delegated(rec: IdentityRecord, at: string): Promise<IdentityRecord> | IdentityRecord {
    return this.delegations ? this.delegations.refreshed(rec, at) : rec;
  }

  /**
   * An administrative change recorded like an agent action: an intent entry, then the change made
   * inside the chain's exclusive section together with its result entry `ok` — or a `failed` result
   * when it did not take effect. Agent calls are decided under that same section, so each sees the
   * identity either before the change or after it. A process that dies in between leaves an open
   * intent, which the next process records as `unknown` (orphaned_intent): never as done.
   */
  private async change<T>(id: string, draft: { tool: string } & Record<string, unknown>, apply: () => Promise<T>): Promise<T> {
    const { entry: intent } = await this.chains.commit(id, () => ({
      value: null,
      draft: { ...draft, session: "admin", phase: "intent", decision: "allow", ...(this.instanceId ? { instance: this.instanceId } : {}) },
    }));
    let applied = false;
    try {
      const { value } = await this.chains.commit(id, async () => {
        const value = await apply();
        applied = true;
        return { value, draft: { tool: draft.tool, session: "admin", phase: "result", intent: intent!.seq, decision: "ok" } };
      });
      return value;
    } catch (err) {
      if (!applied) {
        await this.chains
          .commit(id, () => ({ value: null, draft: { tool: draft.tool, session: "admin", phase: "result", intent: intent!.seq, decision: "failed", reason: "not_applied" } }))
          .catch(() => {}); // left open: recorded as unknown by the next process, never as done
      }
      throw err;
    }
  }

  async create(input: CreateIdentityInput): Promise<{ id: string; name: string; token: string; keyId: string; publicKey: string }> {
    const name = typeof input.name === "string" ? input.name.trim() : "";
    if (!NAME_RE.test(name)) {
      throw new Denied("invalid_arguments", "name must be 1-64 letters, digits, spaces, dots, dashes or underscores, starting with a letter or digit.");
    }
    const channels = parseChannels(input.channels);
    const parsed = parsePolicy(input.policy ?? {});
    if (!parsed.ok) throw new Denied("invalid_policy", parsed.error);
    const id = randomId("id_");
    let email = `${id.replace("_", "-")}@agents.sigil.localhost`;
    if (input.email !== undefined) {
      const a = validateAddress(input.email);
      if (!a.ok) throw new Denied("invalid_arguments", `email: ${a.reason}.`);
      email = a.address;
    }
    let phone: string | undefined;
    if (input.phone !== undefined) {
      const p = parsePhone(input.phone);
      if (!p.ok) throw new Denied("invalid_arguments", `phone: ${p.reason}.`);
      phone = p.e164;
    }
    // SMS and calls go from the identity's own number: without one the channel could never act.
    const needsNumber = channels.filter((c) => c === "sms" || c === "voice");
    if (needsNumber.length > 0 && phone === undefined) {
      throw new Denied("invalid_arguments", `the ${needsNumber.join(" and ")} channel${needsNumber.length > 1 ? "s need" : " needs"} the identity's own number: give phone (--phone) as E.164, e.g. +14155550100.`);
    }
    const tenantId = input.tenantId ?? DEFAULT_TENANT;
    if (typeof tenantId !== "string" || !(await this.store.getTenant(tenantId))) {
      throw new Denied("not_found", `No tenant ${typeof tenantId === "string" ? tenantId.slice(0, 40) : ""}.`);
    }
    const token = newToken("agent");
    const key = this.keyring.newKeyRecord(id, "active");
    const now = new Date(this.now()).toISOString();
    key.notBefore = now;
    const record: IdentityRecord = await this.delegated({
      id,
      name,
      channels,
      email,
      ...(phone ? { phone } : {}),
      policy: parsed.policy as Record<string, unknown>,
      policyVersion: 1,
      tokenHash: tokenHash(token),
      createdAt: now,
      updatedAt: now,
      keys: [key],
      tenantId,
    }, now);
    await this.store.createIdentity(record);
    await this.chains.commit(id, () => ({ value: null })); // writes the genesis entry
    return { id, name, token, keyId: key.keyId, publicKey: key.publicKey };
  }

  /** The identity's full record (token hash and sealed keys included: for sigil's own use, never shown). */
  require(id: string): Promise<IdentityRecord> {
    return requireIdentity(this.store, id);
  }

  async list(): Promise<IdentityView[]> {
    return (await this.store.listIdentities()).map(publicView);
  }

  async show(id: string): Promise<IdentityView> {
    return publicView(await this.require(id));
  }

  /**
   * New signing key. The rotation is an audit entry signed by the old key and co-signed by the new
   * one; the old key stays in the registry (retired, with its validity) so old entries verify.
   */
  async rotateKey(id: string): Promise<{ keyId: string; publicKey: string; previousKeyId: string }> {
    return this.store.withIdentityLock(id, async () => {
      const rec = await this.require(id);
      if (rec.revokedAt) throw new Denied("revoked", `Identity ${id} is revoked.`);
      const fresh = this.keyring.newKeyRecord(id, "pending");
      await this.store.updateIdentity(id, (r) => ({ ...r, keys: [...r.keys, fresh] }));
      const { secretKey } = await this.keyring.signer(id, fresh.keyId);
      const { value: previousKeyId, entry } = await this.chains.commit(id, (state) => ({
        value: state.activeKeyId!,
        cosign: secretKey,
        draft: {
          tool: "key_rotated",
          phase: "event",
          decision: "ok",
          previousKeyId: state.activeKeyId,
          newKeyId: fresh.keyId,
          newPublicKey: fresh.publicKey,
        },
      }));
      const at = entry!.ts;
      await this.store.updateIdentity(id, (r) => this.delegated({
        ...r,
        updatedAt: at,
        keys: r.keys.map((k) =>
          k.keyId === fresh.keyId
            ? { ...k, status: "active" as const, notBefore: at }
            : k.status === "active"
              ? { ...k, status: "retired" as const, notAfter: at }
              : k,
        ),
      }, at));
      return { keyId: fresh.keyId, publicKey: fresh.publicKey, previousKeyId };
    });
  }

  /** New agent token; the old one stops working at once, in every process. */
  async rotateToken(id: string): Promise<{ token: string }> {
    const rec = await this.require(id);
    if (rec.revokedAt) throw new Denied("revoked", `Identity ${id} is revoked.`);
    const token = newToken("agent");
    await this.store.withIdentityLock(id, () =>
      this.change(id, { tool: "token_rotated" }, () =>
        this.store.updateIdentity(id, (r) => ({ ...r, tokenHash: tokenHash(token), updatedAt: new Date(this.now()).toISOString() })),
      ),
    );
    return { token };
  }

  /** Revokes: the registry first (so revocation never waits on anything), then the audit record. */
  async revoke(id: string): Promise<{ id: string; revokedAt: string }> {
    await this.require(id);
    const at = new Date(this.now()).toISOString();
    const rec = await this.store.updateIdentity(id, (r) => (r.revokedAt ? r : this.delegated({ ...r, revokedAt: at, updatedAt: at }, at)));
    await adminEvent(this.chains, id, { tool: "identity_revoked", phase: "event", decision: "ok" });
    return { id, revokedAt: rec.revokedAt! };
  }

  async updatePolicy(id: string, policy: unknown): Promise<IdentityView> {
    const parsed = parsePolicy(policy);
    if (!parsed.ok) throw new Denied("invalid_policy", parsed.error);
    await this.require(id);
    return this.store.withIdentityLock(id, async () => {
      const current = await this.require(id);
      // The next version after both the registry's and the log's: an update interrupted between
      // its audit entry and the registry write never has its version number reused.
      const { value: version } = await this.chains.commit(id, (state) => {
        const next = Math.max(current.policyVersion, state.policyVersion) + 1;
        return {
          value: next,
          draft: { session: "admin", tool: "policy_updated", phase: "event", decision: "ok", policyVersion: next, policyHash: policyHash(parsed.policy) },
        };
      });
      const at = new Date(this.now()).toISOString();
      const rec = await this.store.updateIdentity(id, (r) => this.delegated({
        ...r,
        policy: parsed.policy as Record<string, unknown>,
        policyVersion: version,
        updatedAt: at,
      }, at));
      return publicView(rec);
    });
  }
}
