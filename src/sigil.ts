/**
 * The sigil service: one object per process that owns the store, the master key, the audit chains
 * and the identity operations. The CLI and the admin MCP tools both call these methods, so their
 * results have one shape.
 */
import { promises as fsp } from "node:fs";
import path from "node:path";
import {
  MasterKey,
  b64,
  cryptoReady,
  generateSigningKey,
  hashesEqual,
  keyThumbprint,
  keyedHash,
  newToken,
  open as openSealed,
  randomId,
  seal,
  sha256hex,
  sign as edSign,
  fromB64,
  tokenHash,
} from "./crypto/core.js";
import type { Signer } from "./crypto/jwk.js";
import { SigilError } from "./errors.js";
import { jcs } from "./util/jcs.js";
import { loadMasterKey, masterKeyFile } from "./home.js";
import { AuditChains, type Draft, type Keyring, type SigningKey } from "./audit/chain.js";
import type { AuditBundle } from "./audit/anchor.js";
import { type PublicKeyInfo, type VerifyResult, verifyChain } from "./audit/verify.js";
import { parsePolicy, type Policy } from "./policy/schema.js";
import { validateAddress } from "./policy/email-address.js";
import { parsePhone } from "./policy/phone.js";
import { describeStore, openStore } from "../store/index.js";
import { CHANNELS, type Channel, type IdentityRecord, type KeyRecord, type Store, StoreError } from "../store/types.js";
import { type FileLayer, realFiles } from "./util/fsx.js";
import { filesFromEnv } from "./util/faults.js";
import { Vault, assertSecretName, secretValueBytes } from "./vault.js";

export const SCHEMA_VERSION = 1;

export interface SigilOptions {
  home: string;
  env: NodeJS.ProcessEnv;
  files?: FileLayer;
  now?: () => number;
}

/** An identity as the CLI and admin tools show it: never its token hash or sealed private keys. */
export type IdentityView = Omit<IdentityRecord, "tokenHash" | "updatedAt" | "keys"> & {
  keyId: string;
  publicKey: string;
  keys: Array<Omit<KeyRecord, "sealed" | "createdAt">>;
};

export interface CreateIdentityInput {
  name: string;
  channels: string[];
  policy?: unknown;
  email?: string;
  phone?: string;
}

export type { AuditBundle } from "./audit/anchor.js";
export { verifyBundle } from "./audit/anchor.js";

const NAME_RE = /^[\p{L}\p{N}][\p{L}\p{N} ._-]{0,63}$/u;
const signingAd = (identityId: string, keyId: string): string => `sigil-signing-key-v1\n${identityId}\n${keyId}`;

function policyHash(policy: unknown): string {
  return sha256hex(jcs(policy));
}

export class Sigil implements Keyring {
  readonly chains: AuditChains;
  /** This process's id, recorded in intent entries (to tell an orphaned intent from a live one). */
  readonly instanceId = randomId("inst_", 8);
  private readonly secretKeys = new Map<string, Uint8Array>();
  readonly now: () => number;

  private constructor(
    readonly home: string,
    readonly env: NodeJS.ProcessEnv,
    readonly store: Store,
    readonly master: MasterKey,
    now?: () => number,
  ) {
    this.now = now ?? Date.now;
    this.chains = new AuditChains({
      backend: store.audit,
      keyring: this,
      now: this.now,
      instanceId: this.instanceId,
      instanceAlive: (id) => store.instanceAlive(id),
      snapshotKey: master.subkey("chain-snapshot"),
    });
  }

  /** Creates a new home. Refuses, changing nothing, if one is already initialised there. */
  static async init(opts: SigilOptions): Promise<{ home: string; adminToken: string }> {
    await cryptoReady();
    const storeOpts = { home: opts.home, files: opts.files, storeUrl: opts.env.SIGIL_STORE_URL };
    const where = describeStore(storeOpts);
    const store = openStore(storeOpts);
    try {
      return await Sigil.initIn(opts, store, where);
    } finally {
      await store.close();
    }
  }

  private static async initIn(opts: SigilOptions, store: Store, where: string): Promise<{ home: string; adminToken: string }> {
    const existing = await store.meta().then(
      () => true,
      (err: unknown) => {
        if (err instanceof StoreError && err.code === "not_initialised") return false;
        if (err instanceof StoreError && err.code === "schema_too_new") throw new SigilError("schema_too_new", `${err.message}.`);
        throw err;
      },
    );
    if (existing) throw new SigilError("already_initialised", `${where} is already initialised; nothing was changed.`);
    await fsp.mkdir(opts.home, { recursive: true, mode: 0o700 });
    await fsp.chmod(opts.home, 0o700);
    let master: MasterKey;
    if (opts.env.SIGIL_MASTER_KEY) {
      master = await loadMasterKey(opts.home, opts.env);
    } else {
      master = MasterKey.generate();
      try {
        await fsp.writeFile(masterKeyFile(opts.home), master.toBase64() + "\n", { mode: 0o600, flag: "wx" });
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === "EEXIST") {
          throw new SigilError("already_initialised", `${masterKeyFile(opts.home)} already exists; refusing to replace a master key.`);
        }
        throw err;
      }
    }
    const adminToken = newToken("admin");
    try {
      await store.initialise({
        format: "sigil-home",
        schemaVersion: SCHEMA_VERSION,
        createdAt: new Date().toISOString(),
        adminTokenHash: tokenHash(adminToken),
        masterKeyCheck: master.checkValue(),
      });
    } catch (err) {
      if (err instanceof StoreError && err.code === "already_initialised") {
        throw new SigilError("already_initialised", `${where} is already initialised; nothing was changed.`);
      }
      throw err;
    }
    return { home: opts.home, adminToken };
  }

  /** Opens an initialised home; refuses to start when the registry or master key is missing or wrong. */
  static async open(opts: SigilOptions): Promise<Sigil> {
    await cryptoReady();
    const storeOpts = { home: opts.home, files: opts.files ?? filesFromEnv(realFiles, opts.env), storeUrl: opts.env.SIGIL_STORE_URL };
    const where = describeStore(storeOpts);
    const store = openStore(storeOpts);
    let meta;
    try {
      meta = await store.meta();
    } catch (err) {
      await store.close().catch(() => {});
      if (err instanceof StoreError && err.code === "not_initialised") {
        throw new SigilError("not_initialised", `No sigil ${store.kind === "postgres" ? "registry in" : "home at"} ${where}: run \`sigil init\` first.`);
      }
      if (err instanceof StoreError && err.code === "schema_too_new") throw new SigilError("schema_too_new", `${err.message}.`);
      const why = store.kind === "postgres" && err instanceof StoreError ? ` (${err.message})` : "";
      throw new SigilError("registry_unreadable", `The registry at ${where} cannot be read${why}; refusing to start.`, { cause: err });
    }
    if (meta.schemaVersion > SCHEMA_VERSION) {
      throw new SigilError("schema_too_new", `The home at ${opts.home} was written by a newer sigil (schema ${meta.schemaVersion}).`);
    }
    const master = await loadMasterKey(opts.home, opts.env);
    if (!hashesEqual(master.checkValue(), meta.masterKeyCheck)) {
      throw new SigilError("master_key_mismatch", `The master key does not belong to the home at ${opts.home}; refusing to start.`);
    }
    const sigil = new Sigil(opts.home, opts.env, store, master, opts.now);
    await store.registerInstance(sigil.instanceId);
    return sigil;
  }

  async close(): Promise<void> {
    await this.chains.close().catch(() => {}); // state snapshots: an optimisation, never a reason to fail
    await this.store.close();
  }

  get outboxDir(): string {
    return path.join(this.home, "outbox");
  }

  auditHash(value: string): string {
    return keyedHash(this.master.subkey("audit-hmac"), value);
  }

  // ---- Keyring (used by the audit chains) ----------------------------------------------------

  async signer(identityId: string, keyId: string): Promise<SigningKey> {
    const cacheKey = `${identityId}\n${keyId}`;
    let sk = this.secretKeys.get(cacheKey);
    if (!sk) {
      const rec = await this.store.getIdentity(identityId);
      const key = rec?.keys.find((k) => k.keyId === keyId);
      if (!key) throw new SigilError("key_missing", `signing key ${keyId} of ${identityId} is not in the registry`);
      sk = openSealed(this.master.subkey("signing-keys"), key.sealed, signingAd(identityId, keyId));
      this.secretKeys.set(cacheKey, sk);
    }
    return { keyId, secretKey: sk };
  }

  /**
   * A Signer for the identity's ACTIVE key — the key the audit chain has handed signing to
   * (`chains.state(id).activeKeyId`), not merely the registry's status — for the provenance formats
   * (HTTP request signatures, the key directory, e-mail headers, checkpoints). Each of those
   * formats domain-separates the bytes it signs (src/provenance/domains.ts); callers must sign only
   * through them, never raw bytes from outside.
   */
  async activeSigner(identityId: string): Promise<Signer> {
    await this.requireIdentity(identityId);
    const keyId = (await this.chains.state(identityId)).activeKeyId;
    if (!keyId) throw new SigilError("key_missing", `the audit log of ${identityId} names no active key`);
    const rec = await this.requireIdentity(identityId);
    const key = rec.keys.find((k) => k.keyId === keyId);
    if (!key) throw new SigilError("key_missing", `signing key ${keyId} of ${identityId} is not in the registry`);
    const { secretKey } = await this.signer(identityId, keyId);
    return { keyId, publicKey: new Uint8Array(fromB64(key.publicKey)), sign: (m) => edSign(secretKey, m) };
  }

  async genesis(identityId: string): Promise<{ draft: Draft; keyId: string }> {
    const rec = await this.store.getIdentity(identityId);
    if (!rec) throw new SigilError("not_found", `No identity ${identityId}.`);
    const first = rec.keys[0]!;
    return {
      keyId: first.keyId,
      draft: {
        tool: "identity_created",
        phase: "event",
        decision: "ok",
        name: rec.name,
        channels: rec.channels,
        publicKey: first.publicKey,
        policyVersion: rec.policyVersion,
        policyHash: policyHash(rec.policy),
      },
    };
  }

  // ---- authentication -----------------------------------------------------------------------

  async authenticateAdmin(token: string | undefined): Promise<boolean> {
    if (!token || !token.startsWith("sigil_admin_")) return false;
    const meta = await this.store.meta();
    return hashesEqual(tokenHash(token), meta.adminTokenHash);
  }

  /** The identity a token belongs to, if the token is current and the identity not revoked. */
  async authenticateAgent(token: string | undefined): Promise<IdentityRecord | undefined> {
    if (!token || !token.startsWith("sigil_agent_")) return undefined;
    const h = tokenHash(token);
    const rec = await this.store.identityByTokenHash(h);
    if (!rec || !hashesEqual(rec.tokenHash, h) || rec.revokedAt) return undefined;
    return rec;
  }

  // ---- identity operations ----------------------------------------------------------------------

  async createIdentity(input: CreateIdentityInput): Promise<{ id: string; name: string; token: string; keyId: string; publicKey: string }> {
    const name = typeof input.name === "string" ? input.name.trim() : "";
    if (!NAME_RE.test(name)) {
      throw new SigilError("invalid_arguments", "name must be 1-64 letters, digits, spaces, dots, dashes or underscores, starting with a letter or digit.");
    }
    const channels = parseChannels(input.channels);
    const parsed = parsePolicy(input.policy ?? {});
    if (!parsed.ok) throw new SigilError("invalid_policy", parsed.error);
    const id = randomId("id_");
    let email = `${id.replace("_", "-")}@agents.sigil.localhost`;
    if (input.email !== undefined) {
      const a = validateAddress(input.email);
      if (!a.ok) throw new SigilError("invalid_arguments", `email: ${a.reason}.`);
      email = a.address;
    }
    let phone: string | undefined;
    if (input.phone !== undefined) {
      const p = parsePhone(input.phone);
      if (!p.ok) throw new SigilError("invalid_arguments", `phone: ${p.reason}.`);
      phone = p.e164;
    }
    const token = newToken("agent");
    const key = this.newKeyRecord(id, "active");
    const now = new Date(this.now()).toISOString();
    key.notBefore = now;
    const record: IdentityRecord = {
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
    };
    await this.store.createIdentity(record);
    await this.chains.commit(id, () => ({ value: null })); // writes the genesis entry
    return { id, name, token, keyId: key.keyId, publicKey: key.publicKey };
  }

  private newKeyRecord(identityId: string, status: KeyRecord["status"]): KeyRecord {
    const kp = generateSigningKey();
    const keyId = keyThumbprint(kp.publicKey);
    return {
      keyId,
      publicKey: b64(kp.publicKey),
      sealed: seal(this.master.subkey("signing-keys"), kp.secretKey, signingAd(identityId, keyId)),
      createdAt: new Date(this.now()).toISOString(),
      status,
    };
  }

  async requireIdentity(id: string): Promise<IdentityRecord> {
    const rec = typeof id === "string" ? await this.store.getIdentity(id) : undefined;
    if (!rec) throw new SigilError("not_found", `No identity ${typeof id === "string" ? id.slice(0, 40) : ""}.`);
    return rec;
  }

  async listIdentities(): Promise<IdentityView[]> {
    return (await this.store.listIdentities()).map(publicView);
  }

  async showIdentity(id: string): Promise<IdentityView> {
    return publicView(await this.requireIdentity(id));
  }

  /**
   * New signing key. The rotation is an audit entry signed by the old key and co-signed by the new
   * one; the old key stays in the registry (retired, with its validity) so old entries verify.
   */
  async rotateKey(id: string): Promise<{ keyId: string; publicKey: string; previousKeyId: string }> {
    return this.store.withIdentityLock(id, async () => {
      const rec = await this.requireIdentity(id);
      if (rec.revokedAt) throw new SigilError("revoked", `Identity ${id} is revoked.`);
      const fresh = this.newKeyRecord(id, "pending");
      await this.store.updateIdentity(id, (r) => ({ ...r, keys: [...r.keys, fresh] }));
      const { secretKey } = await this.signer(id, fresh.keyId);
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
      await this.store.updateIdentity(id, (r) => ({
        ...r,
        updatedAt: at,
        keys: r.keys.map((k) =>
          k.keyId === fresh.keyId
            ? { ...k, status: "active" as const, notBefore: at }
            : k.status === "active"
              ? { ...k, status: "retired" as const, notAfter: at }
              : k,
        ),
      }));
      return { keyId: fresh.keyId, publicKey: fresh.publicKey, previousKeyId };
    });
  }

  /** New agent token; the old one stops working at once, in every process. */
  async rotateToken(id: string): Promise<{ token: string }> {
    const rec = await this.requireIdentity(id);
    if (rec.revokedAt) throw new SigilError("revoked", `Identity ${id} is revoked.`);
    const token = newToken("agent");
    await this.adminEvent(id, { tool: "token_rotated", phase: "event", decision: "ok" });
    await this.store.updateIdentity(id, (r) => ({ ...r, tokenHash: tokenHash(token), updatedAt: new Date(this.now()).toISOString() }));
    return { token };
  }

  /** Revokes: the registry first (so revocation never waits on anything), then the audit record. */
  async revoke(id: string): Promise<{ id: string; revokedAt: string }> {
    await this.requireIdentity(id);
    const at = new Date(this.now()).toISOString();
    const rec = await this.store.updateIdentity(id, (r) => (r.revokedAt ? r : { ...r, revokedAt: at, updatedAt: at }));
    await this.adminEvent(id, { tool: "identity_revoked", phase: "event", decision: "ok" });
    return { id, revokedAt: rec.revokedAt! };
  }

  async updatePolicy(id: string, policy: unknown): Promise<IdentityView> {
    const parsed = parsePolicy(policy);
    if (!parsed.ok) throw new SigilError("invalid_policy", parsed.error);
    await this.requireIdentity(id);
    return this.store.withIdentityLock(id, async () => {
      const current = await this.requireIdentity(id);
      // The next version after both the registry's and the log's: an update interrupted between
      // its audit entry and the registry write never has its version number reused.
      const { value: version } = await this.chains.commit(id, (state) => {
        const next = Math.max(current.policyVersion, state.policyVersion) + 1;
        return {
          value: next,
          draft: { session: "admin", tool: "policy_updated", phase: "event", decision: "ok", policyVersion: next, policyHash: policyHash(parsed.policy) },
        };
      });
      const rec = await this.store.updateIdentity(id, (r) => ({
        ...r,
        policy: parsed.policy as Record<string, unknown>,
        policyVersion: version,
        updatedAt: new Date(this.now()).toISOString(),
      }));
      return publicView(rec);
    });
  }

  // ---- vault ----------------------------------------------------------------------------------

  /** The identity's sealed secrets (see vault.ts). */
  get vault(): Vault {
    return (this.vaultInstance ??= new Vault(this.store, this.master, this.now));
  }
  private vaultInstance?: Vault;

  /**
   * Stores `value` as the next version of the identity's secret `name`. The audit log records the
   * name and version (never the value) before the sealed value is written; admin writers are
   * serialised by the identity's admin lock, so the recorded version is the one written.
   */
  async putSecret(id: string, name: string, value: string): Promise<{ name: string; version: number }> {
    assertSecretName(name);
    secretValueBytes(value).fill(0);
    return this.store.withIdentityLock(id, async () => {
      const rec = await this.requireIdentity(id);
      if (rec.revokedAt) throw new SigilError("revoked", `Identity ${id} is revoked.`);
      const version = await this.vault.nextVersion(id, name);
      await this.adminEvent(id, { tool: "secret_put", phase: "event", decision: "ok", name, version });
      try {
        return await this.vault.put(id, name, value, version);
      } catch (err) {
        await this.adminEvent(id, { tool: "secret_put", phase: "event", decision: "failed", name, version }).catch(() => {});
        throw err;
      }
    });
  }

  /** Deletes the identity's secret `name` (every version); the audit log records the name and the version deleted. */
  async deleteSecret(id: string, name: string): Promise<{ name: string; deleted: boolean; version?: number }> {
    assertSecretName(name);
    return this.store.withIdentityLock(id, async () => {
      await this.requireIdentity(id);
      const version = await this.vault.version(id, name);
      if (version === undefined) return { name, deleted: false };
      await this.adminEvent(id, { tool: "secret_deleted", phase: "event", decision: "ok", name, version });
      const deleted = await this.vault.delete(id, name);
      return { name, deleted, version };
    });
  }

  private async adminEvent(id: string, draft: Draft): Promise<void> {
    await this.chains.commit(id, () => ({ value: null, draft: { session: "admin", ...draft } }));
  }

  // ---- audit ----------------------------------------------------------------------------------

  publicKeys(rec: IdentityRecord): PublicKeyInfo[] {
    return rec.keys
      .map((k) => ({ keyId: k.keyId, publicKey: k.publicKey, status: k.status, notBefore: k.notBefore, notAfter: k.notAfter }));
  }

  async verify(id?: string): Promise<{ ok: boolean; identities: VerifyResult[] }> {
    const recs = id ? [await this.requireIdentity(id)] : await this.store.listIdentities();
    const identities: VerifyResult[] = [];
    for (const rec of recs) identities.push(await verifyChain(rec.id, this.store.audit.readLines(rec.id), this.publicKeys(rec)));
    return { ok: identities.every((r) => r.ok), identities };
  }

  async exportBundle(id: string): Promise<AuditBundle> {
    const rec = await this.requireIdentity(id);
    const entries: unknown[] = [];
    for await (const line of this.store.audit.readLines(id)) {
      try {
        entries.push(JSON.parse(line));
      } catch {
        entries.push(line); // kept as it is, so the verifier reports it
      }
    }
    return {
      format: "sigil-audit-bundle/v1",
      exportedAt: new Date(this.now()).toISOString(),
      identity: { id: rec.id, name: rec.name, createdAt: rec.createdAt },
      keys: this.publicKeys(rec),
      entries,
    };
  }

  async queryAudit(id: string, opts: { limit?: number; since?: number }): Promise<unknown[]> {
    await this.requireIdentity(id);
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

export function parseChannels(input: unknown): Channel[] {
  const list = Array.isArray(input) ? input : typeof input === "string" ? input.split(",") : [];
  const out = new Set<Channel>();
  for (const raw of list) {
    const c = typeof raw === "string" ? raw.trim() : "";
    if (c === "") continue;
    if (!(CHANNELS as readonly string[]).includes(c)) {
      throw new SigilError("invalid_arguments", `unknown channel "${c.slice(0, 20)}" (known: ${CHANNELS.join(", ")}).`);
    }
    out.add(c as Channel);
  }
  return CHANNELS.filter((c) => out.has(c));
}

export function publicView(rec: IdentityRecord): IdentityView {
  const active = rec.keys.find((k) => k.status === "active") ?? rec.keys[0]!;
  return {
    id: rec.id,
    name: rec.name,
    channels: rec.channels,
    email: rec.email,
    ...(rec.phone ? { phone: rec.phone } : {}),
    policy: rec.policy,
    policyVersion: rec.policyVersion,
    createdAt: rec.createdAt,
    ...(rec.revokedAt ? { revokedAt: rec.revokedAt } : {}),
    keyId: active.keyId,
    publicKey: active.publicKey,
    keys: rec.keys
      .filter((k) => k.status !== "pending")
      .map((k) => ({ keyId: k.keyId, publicKey: k.publicKey, status: k.status, notBefore: k.notBefore, notAfter: k.notAfter })),
  };
}

