/**
 * The composition root: opens the home and builds every part once, each from only what it needs.
 * Nothing else constructs these parts. The server and the CLI take the parts they use from here;
 * agent tools never see this object (they get a ToolContext, src/pipeline/tool.ts) and admin tools
 * get the admin operations (AdminContext).
 *
 *   store + master key (identity/home.ts)
 *     └─ keyring (identity/keyring.ts)          sealed signing keys; what the audit chains sign with
 *        └─ chains (audit/chain.ts)             per-identity audit chains: the only writer of the log
 *           ├─ signers (identity/keyring.ts)    a Signer for an identity's active key
 *           ├─ identities (identity/identities.ts)  issue, rotate, revoke, update policy
 *           ├─ secrets (identity/secrets.ts)    the vault: admin put/delete/list, agent readers
 *           └─ audit (identity/audit-log.ts)    verify, export, query
 *     tenants (tenant/tenants.ts)               tenants, their admin tokens and keys
 *       └─ delegations (tenant/delegations.ts)  tenant-signed statements for identity keys
 *           └─ approvals (approval/approvals.ts)  pending approvals and decisions (in the identities' logs)
 *     approvers (approval/approvers.ts)         people who decide approvals; their sealed keys
 *       └─ tenantLog (tenant/log.ts)            each tenant's own chain (signed by its key): approvers, passkeys
 *     auth (identity/auth.ts)                   bearer token → principal
 *     providers (providers/index.ts)            email, telephony, card; created on first use
 *     oauth (oauth/)                            OAuth grants and tokens, clients, the consent signer
 *     inbox (inbound/messages.ts)               inbound mail and SMS, sealed; read by list_messages/read_message
 *   agent (pipeline/agent-call.ts)              what the agent pipeline uses and hands tools
 *   admin (pipeline/admin-call.ts)              what admin tools may call
 */
import path from "node:path";
import { keyedHash, randomId } from "./crypto/tokens.js";
import { sha256hex } from "./crypto/encoding.js";
import { AuditChains } from "./audit/chain.js";
import { providersFrom, type Providers } from "./providers/index.js";
import { type Config, configFrom } from "./config.js";
import { setVerifyThreads } from "./audit/verify-pool.js";
import { type Store, TENANT_ID_RE } from "../store/types.js";
import type { FileLayer } from "./util/fsx.js";
import { type HomeOptions, initHome, openHome } from "./identity/home.js";
import { ActiveSigners, Keyring } from "./identity/keyring.js";
import { Authenticator } from "./identity/auth.js";
import { armCrashPoint } from "./util/faults.js";
import { AuthenticatedStore, type TamperReport } from "./identity/authenticated-store.js";
import { RecordMac, TokenHashes } from "./identity/record-mac.js";
import { Identities, adminOutcome } from "./identity/identities.js";
import { Secrets } from "./identity/secrets.js";
import { ExfiltrationJournal } from "./policy/exfiltration-journal.js";
import { Vault } from "./identity/vault.js";
import { RefusalThrottle } from "./pipeline/throttle.js";
import { AuditLog } from "./identity/audit-log.js";
import { Tenants, ensureDefaultTenant } from "./tenant/tenants.js";
import { TenantKeyring, TenantLog, adopting, startTenantLogs, tenantOutcome } from "./tenant/log.js";
import { Delegations } from "./tenant/delegations.js";
import { Approvers } from "./approval/approvers.js";
import { Approvals } from "./approval/approvals.js";
import { Passkeys } from "./approval/passkeys.js";
import { PaymentKeys } from "./mandates/keys.js";
import { MandateDesk } from "./mandates/desk.js";
import type { AgentDeps } from "./pipeline/agent-call.js";
import type { AdminDeps } from "./pipeline/admin-call.js";
import { refId } from "./errors.js";
import { Grants } from "./oauth/grants.js";
import { OAuthClients } from "./oauth/clients.js";
import { ConsentSigner } from "./oauth/consent.js";
import { Inbox } from "./inbound/messages.js";

export { initHome };

export interface AppOptions extends HomeOptions {
  files?: FileLayer;
  now?: () => number;
}

export interface App {
  readonly home: string;
  /** The environment, parsed once (src/config.ts). */
  readonly config: Config;
  readonly now: () => number;
  /** This process's id, recorded in intent entries (to tell an orphaned intent from a live one). */
  readonly instanceId: string;
  readonly outboxDir: string;
  readonly store: Store;
  readonly keyring: Keyring;
  readonly chains: AuditChains;
  readonly signers: ActiveSigners;
  readonly auth: Authenticator;
  readonly tenants: Tenants;
  /** The tenants' delegation statements for their identities' keys (issue, serve, check membership). */
  readonly delegations: Delegations;
  readonly identities: Identities;
  readonly secrets: Secrets;
  readonly audit: AuditLog;
  readonly approvers: Approvers;
  readonly approvals: Approvals;
  /** Approvers' passkeys (WebAuthn), registered and used in the console. */
  readonly passkeys: Passkeys;
  /** Tenants' own audit logs: approvers added and removed, passkeys registered (src/tenant/log.ts). */
  readonly tenantLog: TenantLog;
  /** P-256 keys for payment mandates: identities' payments keys, tenants' provider keys (src/mandates/keys.ts). */
  readonly payments: PaymentKeys;
  readonly providers: Providers;
  /** Inbound messages (SPEC §12): stored sealed per identity; the SMTP listener and the SMS webhook hand them over. */
  readonly inbox: Inbox;
  /** The agent pipeline's dependencies (it hands tools narrow capabilities made from these). */
  readonly agent: AgentDeps;
  /** The admin surface: the admin-token check and the operations admin tools call. */
  readonly admin: AdminDeps;
  /** OAuth (src/oauth/): grants and their tokens, clients, the consent form's signer. */
  readonly oauth: { grants: Grants; clients: OAuthClients; signer: ConsentSigner };
  /** Keyed hash (HMAC under the master key's audit subkey) for values the audit log must not hold. */
  auditHash(value: string): string;
  close(): Promise<void>;
}

/** Opens an initialised home; refuses to start when the registry or master key is missing or wrong. */
export async function openApp(opts: AppOptions): Promise<App> {
  const config = configFrom(opts);
  const { store: backend, master } = await openHome({ ...opts, config });
  const offset = config.testClockOffsetMs ?? 0; // test suite only (SIGIL_TEST_CLOCK_OFFSET_MS)
  const now = opts.now ?? (offset ? () => Date.now() + offset : Date.now);
  // A home made before tenants existed gets its default tenant (and key) on first open; its
  // identities, which name no tenant, belong to it. A home that cannot be written stays readable.
  await ensureDefaultTenant(backend, master, now).catch(() => {});
  const instanceId = randomId("inst_", 8);
  // Sealed signing keys authenticate themselves (AEAD bound to identity and key id) and which key
  // signs is the log's decision, so the keyring reads the backend directly: it can sign the entry
  // that records a tampered record's refusal.
  // Its record writes (key rotation) go through the authenticated store, so they are MAC'd.
  const keyring = new Keyring({ getIdentity: (id) => backend.getIdentity(id), updateIdentity: (id, update) => store.updateIdentity(id, update) }, master, now);
  const chains = new AuditChains({
    backend: backend.audit,
    keyring,
    now,
    instanceId,
    instanceAlive: (id) => backend.instanceAlive(id),
    snapshotKey: master.subkey("chain-snapshot"),
    adminOutcome: (id, intent) => adminOutcome(store, id, intent),
    trustedKeys: (id) => audit.trustedKeys(id),
  });
  // Every other part reads identities through record MACs (src/identity/authenticated-store.ts).
  const store = new AuthenticatedStore(backend, RecordMac.from(master), tamperAuditor(chains));
  const tokens = TokenHashes.from(master);
  const outboxDir = path.join(opts.home, "outbox");
  const auditKey = master.subkey("audit-hmac");
  const auditHash = (value: string): string => keyedHash(auditKey, value);
  const signers = new ActiveSigners(store, keyring, chains);
  const tenants = new Tenants(store, master, now);
  // Tenants' own logs (approvers, passkeys): the same chains over the same backend, signed by the tenant key.
  const tenantChains = new AuditChains({
    backend: backend.audit,
    keyring: new TenantKeyring(store, tenants, async (t) => {
      // Only a home older than tenant logs, on its first open (see startTenantLogs below).
      if (!(await adopting(backend, RecordMac.from(master)))) return { approvers: [], passkeys: [] };
      const own = (await backend.listApprovers()).filter((a) => a.tenantId === t && approvers.authentic(a));
      return { approvers: own, passkeys: (await Promise.all(own.map((a) => passkeys.authentic(a.id)))).flat() };
    }),
    now,
    instanceId,
    instanceAlive: (id) => backend.instanceAlive(id),
    adminOutcome: (t, intent) => tenantOutcome({ approver: async (id) => { const a = await backend.getApprover(id); return approvers.authentic(a) ? a : undefined; }, passkeys: (id) => passkeys.authentic(id) }, t, intent),
  });
  const tenantLog = new TenantLog(tenantChains, instanceId);
  const delegations = new Delegations(store, tenants, now);
  keyring.refreshWith((rec, at) => delegations.refreshed(rec, at));
  const payments = new PaymentKeys(store, master, now);
  const identities = new Identities(store, chains, keyring, tokens, now, instanceId, delegations, payments);
  const approvers = new Approvers(store, master, now, async (t) => TENANT_ID_RE.test(t) && (await store.getTenant(t)) !== undefined, tenantLog);
  const passkeys = new Passkeys(store, master, now, tenantLog);
  const approvals = new Approvals(store, chains, approvers, now);
  const auth = new Authenticator(store, tokens, RecordMac.from(master), approvers);
  const vault = new Vault(store, master, now);
  // The exfiltration guard's journal: agent calls check and extend it, `resetGuard` acknowledges what it lost.
  const guard = new ExfiltrationJournal(store, master, now, (id, name) => vault.get(id, name));
  const secrets = new Secrets(store, chains, vault, instanceId, guard, now);
  const audit = new AuditLog(store, chains, now, delegations);
  const throttle = new RefusalThrottle(chains, config.refusalsPerMinute);
  const providers = providersFrom(config, outboxDir);
  const publicUrl = config.publicUrl;
  const grants = new Grants(store, chains, tokens, RecordMac.from(master), now, instanceId);
  const oauth = {
    grants,
    clients: new OAuthClients(store, RecordMac.from(master), now, { allowLoopbackHttp: config.testOAuthHttpDocuments === true }),
    signer: new ConsentSigner(master.subkey("oauth-consent"), now),
  };
  const inbox = new Inbox({ store, chains, key: master.subkey("inbound-seal"), hash: auditHash, now });
  setVerifyThreads(config.verifyThreads);
  armCrashPoint(config.testCrash);
  const app: App = {
    home: opts.home,
    config,
    now,
    instanceId,
    outboxDir,
    store,
    keyring,
    chains,
    signers,
    auth,
    tenants,
    delegations,
    identities,
    secrets,
    audit,
    approvers,
    approvals,
    passkeys,
    tenantLog,
    payments,
    providers,
    inbox,
    admin: { auth, store, member: delegations.member, ops: { identities, secrets, audit, tenants, approvers, approvals } },
    agent: { store, chains, instanceId, now, hash: auditHash, tokens, signers, secrets, approvals, mandates: new MandateDesk(store, payments, chains, now), exfiltration: guard, throttle, providers, inbox, oauthGrants: grants, ...(publicUrl !== undefined ? { publicUrl } : {}) },
    oauth,
    auditHash,
    close: async () => {
      await throttle.flush(); // the summaries of refusals throttled in this minute
      await chains.close().catch(() => {}); // state snapshots: an optimisation, never a reason to fail
      await tenantChains.close().catch(() => {});
      await store.close();
    },
  };
  // A home older than tenant logs: each tenant's log starts with the approvers and passkeys it holds.
  await startTenantLogs(backend, RecordMac.from(master), tenantLog, now).catch(() => {});
  await store.registerInstance(instanceId);
  return app;
}

/**
 * Records a refused (tampered) registry record in the identity's own log — `record_check`, decision
 * `deny`, reason `record_tampered` — and on stderr: once per distinct forgery per process (each
 * call it refuses is audited by the pipeline as well).
 */
function tamperAuditor(chains: AuditChains): (report: TamperReport) => Promise<void> {
  const seen = new Set<string>();
  return async (report) => {
    const key = `${report.id}\n${sha256hex(JSON.stringify(report.record) ?? "")}`;
    if (seen.has(key)) return;
    if (seen.size > 1000) seen.clear();
    seen.add(key);
    const ref = refId();
    process.stderr.write(
      `sigil: record_tampered: the registry record of ${report.kind === "tenant" ? "tenant " : ""}${report.id} fails its integrity check (changed without the master key); it is refused (${ref})\n`,
    );
    if (report.kind === "tenant") return; // its own log is signed with the key this record holds, which is not to be trusted now: stderr only
    await chains.commit(report.id, () => ({
      value: null,
      draft: { session: "registry", tool: "record_check", phase: "event", decision: "deny", reason: "record_tampered", record: report.kind, ref },
    }));
  };
}
