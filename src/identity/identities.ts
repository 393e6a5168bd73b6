/**
 * Identity operations: issue, show, rotate a key or a token, revoke, replace the policy. The CLI
 * and the admin MCP tools both call these, so their results have one shape. Bad input is refused
 * (`Denied`) and changes nothing. Every change is recorded in the identity's own chain like an
 * agent action — an intent, then the change and its result (`adminChange`, `rotateKey`) — except
 * creation: its one entry (`identity_created`, the chain's first) is written only once the
 * registry record exists, and before anything else can be recorded for the identity, so it never
 * claims a creation that did not happen and there is no state in between for recovery to decide.
 */
import { newToken, randomId } from "../crypto/tokens.js";
import { sha256hex } from "../crypto/encoding.js";
import type { TokenHashes } from "./record-mac.js";
import { Denied } from "../errors.js";
import type { AdminOutcome, AuditChains, ChainState, OrphanedAdminIntent } from "../audit/chain.js";
import { crashPoint } from "../util/faults.js";
import { parsePolicy } from "../policy/schema.js";
import { validateAddress } from "../policy/email-address.js";
import { parsePhone } from "../policy/phone.js";
import { DEFAULT_TENANT, type IdentityRecord, type Store } from "../../store/types.js";
import type { Keyring } from "./keyring.js";
import type { Delegations } from "../tenant/delegations.js";
import type { PaymentKeys } from "../mandates/keys.js";
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

/**
 * What the log records about a new token: a domain-separated SHA-256 of the hash the registry
 * stores, so recovery can tell whether an interrupted rotation took effect. Neither the token nor
 * the stored hash can be recovered from it.
 */
export function tokenRef(storedHash: string): string {
  return sha256hex(`sigil-token-ref-v1\n${storedHash}`).slice(0, 32);
}

type Chains = Pick<AuditChains, "commit">;

/** The intent entry of an administrative change: its members, and a value the change itself needs. */
export interface AdminIntentDraft<V> {
  value: V;
  fields: Record<string, unknown>;
}

/** Appends the intent entry of an administrative change; resolves with its seq once it is durable. */
async function writeIntent<V>(
  chains: Chains,
  instanceId: string | undefined,
  id: string,
  tool: string,
  intent: (state: ChainState) => AdminIntentDraft<V> | Promise<AdminIntentDraft<V>>,
): Promise<{ seq: number; value: V }> {
  const { value, entry } = await chains.commit(id, async (state) => {
    const x = await intent(state);
    return { value: x.value, draft: { tool, ...x.fields, session: "admin", phase: "intent", decision: "allow", ...(instanceId ? { instance: instanceId } : {}) } };
  });
  return { seq: entry!.seq, value };
}

/**
 * Records that the change of intent `seq` did not take effect — unless the intent already has a
 * result (an append that failed on the way back may still have landed): never a second result.
 */
async function writeFailed(chains: Chains, id: string, tool: string, seq: number, reason = "not_applied"): Promise<void> {
  await chains.commit(id, (state) => ({
    value: null,
    ...(state.isOpen(seq) ? { draft: { tool, session: "admin", phase: "result", intent: seq, decision: "failed", reason } } : {}),
  }));
}

/**
 * An administrative change recorded like an agent action: an intent entry, then the change made
 * inside the chain's exclusive section together with its result entry `ok` — or a `failed` result
 * when it did not take effect. Agent calls are decided under that same section, so each sees the
 * identity either before the change or after it. A process that dies in between leaves an open
 * intent, whose result the next process to open the chain decides from the store's actual state
 * (`adminOutcome`): never an entry claiming what did not take effect.
 *
 * Test crash points (SIGIL_TEST_CRASH): `<tool>:after-intent`, `<tool>:after-change` (the change
 * made, its result not yet written).
 */
export async function adminChange<V, T>(
  chains: Chains,
  instanceId: string | undefined,
  id: string,
  tool: string,
  intent: (state: ChainState) => AdminIntentDraft<V> | Promise<AdminIntentDraft<V>>,
  apply: (value: V, state: ChainState) => Promise<T>,
  resultFields: (value: V) => Record<string, unknown> = () => ({}),
): Promise<T> {
  const { seq, value: v } = await writeIntent(chains, instanceId, id, tool, intent);
  crashPoint(`${tool}:after-intent`);
  let applied = false;
  try {
    const { value } = await chains.commit(id, async (state) => {
      const value = await apply(v, state);
      applied = true;
      crashPoint(`${tool}:after-change`);
      return { value, draft: { tool, session: "admin", phase: "result", intent: seq, decision: "ok", ...resultFields(v) } };
    });
    return value;
  } catch (err) {
    // Not applied: say so (with the refusal's reason when the change refused). Applied but its
    // result unwritten: left open for recovery to decide.
    if (!applied) await writeFailed(chains, id, tool, seq, err instanceof Denied ? err.code : undefined).catch(() => {});
    throw err;
  }
}

/**
 * What became of an administrative intent whose process died before its result, decided from the
 * store's actual state (called by the audit chain, under its lock, when it is next opened):
 *
 * - `policy_updated`: `ok` if the registry holds that policy version with that policy hash,
 *   `failed` if it holds an older version;
 * - `identity_revoked`: `ok` if the registry says revoked, `failed` if not;
 * - `token_rotated`: `ok` if the registry's token hash is the one the intent names, `failed` if not;
 * - `key_rotated`: always `failed` — its result entry is the handover itself, so an intent
 *   without one means signing never moved (the registry's pending key is never published);
 * - `guard_reset`: always `failed` — its result entry is the acknowledgement itself;
 * - `secret_put` / `secret_deleted`: `ok` if the vault holds (no longer holds) that version;
 * - `oauth_granted` / `oauth_tokens_issued` / `oauth_revoked`: `ok` if the grant exists / reached
 *   that token generation / is revoked, `failed` if not;
 * - anything else, or a state that cannot tell: `unknown`.
 */
export async function adminOutcome(store: Pick<Store, "getIdentity" | "getSecret" | "getOAuthGrant">, identityId: string, intent: OrphanedAdminIntent): Promise<AdminOutcome> {
  const d = intent.detail;
  const ok: AdminOutcome = { decision: "ok", reason: "recovered" };
  const failed: AdminOutcome = { decision: "failed", reason: "interrupted" };
  const unknown: AdminOutcome = { decision: "unknown", reason: "orphaned_intent" };
  // Their result entry is the change itself (the handover; the acknowledgement of lost reads).
  if (intent.tool === "key_rotated" || intent.tool === "guard_reset") return failed;
  const rec = await store.getIdentity(identityId);
  if (!rec) return unknown;
  switch (intent.tool) {
    case "policy_updated":
      if (typeof d.policyVersion !== "number") return unknown;
      if (rec.policyVersion === d.policyVersion && policyHash(rec.policy) === d.policyHash) return ok;
      return rec.policyVersion < d.policyVersion ? failed : unknown;
    case "identity_revoked":
      return rec.revokedAt ? ok : failed;
    case "token_rotated":
      if (typeof d.tokenRef !== "string") return unknown;
      return tokenRef(rec.tokenHash) === d.tokenRef ? ok : failed;
    case "secret_put":
    case "secret_deleted": {
      if (typeof d.name !== "string" || typeof d.version !== "number") return unknown;
      const held = (await store.getSecret(identityId, d.name))?.version;
      if (intent.tool === "secret_put") return held === d.version ? ok : held === undefined || held < d.version ? failed : unknown;
      return held === undefined ? ok : held === d.version ? failed : unknown;
    }
    case "oauth_granted":
    case "oauth_tokens_issued":
    case "oauth_revoked": {
      // src/oauth/grants.ts: the grant exists / reached that token generation / is revoked.
      if (typeof d.grant !== "string") return unknown;
      const g = await store.getOAuthGrant(d.grant);
      if (g && g.identityId !== identityId) return unknown;
      if (intent.tool === "oauth_granted") return g ? ok : failed;
      if (!g) return unknown;
      if (intent.tool === "oauth_revoked") return g.revokedAt ? ok : failed;
      if (typeof d.generation !== "number") return unknown;
      return g.generation >= d.generation ? ok : failed;
    }
    default:
      return unknown;
  }
}

export class Identities {
  constructor(
    private readonly store: Store,
    private readonly chains: AuditChains,
    private readonly keyring: Keyring,
    /** Keyed token hashes: what the registry stores for a token. */
    private readonly tokens: Pick<TokenHashes, "hash" | "ref">,
    private readonly now: () => number,
    /** This process's instance id, recorded in admin intents (see `adminChange`). */
    private readonly instanceId?: string,
    /** Re-issues the tenant's delegation statements inside the registry write that changes what they vouch for. */
    private readonly delegations?: Pick<Delegations, "refreshed">,
    /** P-256 payments keys of identities with the `card` channel (src/mandates/keys.ts). */
    private readonly payments?: Pick<PaymentKeys, "newIdentityKey" | "ensureIdentityKey" | "rotate">,
  ) {}

  /** The record with its delegation statements brought up to date (src/tenant/delegations.ts). */
  private delegated(rec: IdentityRecord, at: string): Promise<IdentityRecord> | IdentityRecord {
    return this.delegations ? this.delegations.refreshed(rec, at) : rec;
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
    const paymentKey = channels.includes("card") && this.payments ? await this.payments.newIdentityKey(id, now) : undefined;
    const record: IdentityRecord = await this.delegated({
      id,
      name,
      channels,
      email,
      ...(phone ? { phone } : {}),
      policy: parsed.policy as Record<string, unknown>,
      policyVersion: 1,
      tokenHash: this.tokens.hash(token),
      createdAt: now,
      updatedAt: now,
      keys: [key],
      ...(paymentKey ? { paymentKeys: [paymentKey] } : {}),
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

  /**
   * The identity's record once its chain has been opened in this process: opening it reconciles
   * the registry's key windows with the log (a key rotation interrupted by a crash), so what is
   * published from this record is what the log says. For the JWKS.
   */
  async published(id: string): Promise<IdentityRecord> {
    const rec = await this.require(id);
    await this.chains.state(id);
    if (this.payments) await this.payments.ensureIdentityKey(rec); // an identity issued before mandates existed
    return this.require(id);
  }

  async list(): Promise<IdentityView[]> {
    return (await this.store.listIdentities()).map(publicView);
  }

  async show(id: string): Promise<IdentityView> {
    return publicView(await this.require(id));
  }

  /**
   * New signing key, in four steps, each safe to be interrupted (test crash points in brackets,
   * SIGIL_TEST_CRASH):
   *
   *   [key_rotated:before-intent] 1. intent entry `key_rotated` naming the incoming key (`incomingKeyId`)
   *   [key_rotated:after-intent]  2. the new key, sealed, written to the registry as `pending`
   *   [key_rotated:after-registry] 3. result entry `ok`: the handover — signed by the outgoing key,
   *                                   naming the incoming one (`newKeyId`, `newPublicKey`) and co-signed by it
   *   [key_rotated:after-result]  4. the registry's key states and windows set from the log
   *
   * Signing follows the log, so it moves at step 3 and only then. Interrupted before step 3, the
   * next process records the intent `failed` and the pending key is never published; interrupted
   * after it, the next process to open the chain sets the registry's windows from the log (the
   * chain's `Keyring.reconcileKeys`). Retired keys stay in the registry so old entries verify.
   */
  async rotateKey(id: string): Promise<{ keyId: string; publicKey: string; previousKeyId: string }> {
    return this.store.withIdentityLock(id, async () => {
      const rec = await this.require(id);
      if (rec.revokedAt) throw new Denied("revoked", `Identity ${id} is revoked.`);
      const fresh = this.keyring.newKeyRecord(id, "pending");
      crashPoint("key_rotated:before-intent");
      const { seq } = await writeIntent(this.chains, this.instanceId, id, "key_rotated", () => ({ value: null, fields: { incomingKeyId: fresh.keyId } }));
      crashPoint("key_rotated:after-intent");
      let previousKeyId: string;
      try {
        await this.store.updateIdentity(id, (r) => ({ ...r, keys: [...r.keys, fresh] }));
        crashPoint("key_rotated:after-registry");
        const { secretKey } = await this.keyring.signer(id, fresh.keyId);
        ({ value: previousKeyId } = await this.chains.commit(id, (state) => ({
          value: state.activeKeyId!,
          cosign: secretKey,
          draft: {
            tool: "key_rotated",
            session: "admin",
            phase: "result",
            intent: seq,
            decision: "ok",
            previousKeyId: state.activeKeyId,
            newKeyId: fresh.keyId,
            newPublicKey: fresh.publicKey,
          },
        })));
      } catch (err) {
        // No handover unless its entry is in the log; writeFailed checks that under the lock.
        await writeFailed(this.chains, id, "key_rotated", seq).catch(() => {});
        throw err;
      }
      crashPoint("key_rotated:after-result");
      await this.chains.commit(id, async (state) => {
        await this.keyring.reconcileKeys(id, state.keyHistory());
        return { value: null };
      });
      // The payments key (card identities) turns over with it: the old one retired with its window.
      await this.payments?.rotate(id);
      return { keyId: fresh.keyId, publicKey: fresh.publicKey, previousKeyId };
    });
  }

  /** New agent token; the old one stops working at once, in every process. */
  async rotateToken(id: string): Promise<{ token: string }> {
    const rec = await this.require(id);
    if (rec.revokedAt) throw new Denied("revoked", `Identity ${id} is revoked.`);
    const token = newToken("agent");
    const hash = this.tokens.hash(token);
    await this.store.withIdentityLock(id, () =>
      adminChange(
        this.chains,
        this.instanceId,
        id,
        "token_rotated",
        () => ({ value: null, fields: { tokenRef: tokenRef(hash) } }),
        () => this.store.updateIdentity(id, (r) => ({ ...r, tokenHash: hash, updatedAt: new Date(this.now()).toISOString() })),
      ),
    );
    return { token };
  }

  /** Revokes: intent, then the registry change with its result (see `adminChange`); revoking a revoked identity keeps its time. */
  async revoke(id: string): Promise<{ id: string; revokedAt: string }> {
    await this.require(id);
    const rec = await adminChange(
      this.chains,
      this.instanceId,
      id,
      "identity_revoked",
      () => ({ value: null, fields: {} }),
      () =>
        this.store.updateIdentity(id, (r) => {
          const at = new Date(this.now()).toISOString();
          return r.revokedAt ? r : this.delegated({ ...r, revokedAt: at, updatedAt: at }, at);
        }),
    );
    return { id, revokedAt: rec.revokedAt! };
  }

  async updatePolicy(id: string, policy: unknown): Promise<IdentityView> {
    const parsed = parsePolicy(policy);
    if (!parsed.ok) throw new Denied("invalid_policy", parsed.error);
    await this.require(id);
    return this.store.withIdentityLock(id, async () => {
      const current = await this.require(id);
      const hash = policyHash(parsed.policy);
      // The next version after both the registry's and the log's (intents included): an update
      // that did not take effect never has its version number reused.
      const rec = await adminChange(
        this.chains,
        this.instanceId,
        id,
        "policy_updated",
        (state) => {
          const next = Math.max(current.policyVersion, state.policyVersion) + 1;
          return { value: next, fields: { policyVersion: next, policyHash: hash } };
        },
        (version) =>
          this.store.updateIdentity(id, (r) => {
            const at = new Date(this.now()).toISOString();
            return this.delegated({ ...r, policy: parsed.policy as Record<string, unknown>, policyVersion: version, updatedAt: at }, at);
          }),
        (version) => ({ policyVersion: version, policyHash: hash }),
      );
      return publicView(rec);
    });
  }
}
