/**
 * Approvers' passkeys (README "Console"; SPEC §9): WebAuthn credentials registered in the console,
 * then used to sign in and to approve. The ceremonies are @simplewebauthn/server's (attestation
 * `none`: the credential is trusted because the approver registered it while signed in, not
 * because of its maker); nothing of WebAuthn is verified by hand here.
 *
 * Each stored passkey is MAC'd under the master key (kind `passkey`, bound to the approver and
 * the credential id): a store writer cannot add a credential of their own to an approver, nor move
 * one to another approver; a record that fails is ignored (fail closed). An approval made with a
 * passkey answers a challenge that is the hash of the decision statement (`passkeyChallenge`), so
 * the assertion recorded in the `approval_decided` entry proves which authenticator approved which
 * exact action.
 *
 * Registering one is recorded in the approver's tenant's audit log (src/tenant/log.ts): an intent
 * `passkey_registered` naming the credential, its public key and the relying party, then the
 * record with its `ok` result. A passkey counts (to sign in, to approve) only if that log records
 * it for this approver with this public key.
 */
import { b64url } from "../crypto/encoding.js";
import { Denied } from "../errors.js";
import type { MasterKey } from "../crypto/master-key.js";
import { RecordMac } from "../identity/record-mac.js";
import type { ApproverRecord, PasskeyRecord, Store } from "../../store/types.js";
import type { PasskeyAssertion } from "./approvals.js";
import { PASSKEY_REGISTERED, type ChainState } from "../audit/chain.js";

/** The tenant logs, as passkeys use them (src/tenant/log.ts). */
export interface PasskeyLog {
  state(tenantId: string): Promise<Pick<ChainState, "passkey">>;
  change<T>(tenantId: string, tool: string, fields: Record<string, unknown>, apply: () => Promise<T>): Promise<T>;
}

export const PASSKEY_RECORD_KIND = "passkey";
const MAX_PASSKEYS = 20;

/** Who the passkeys are for: this server's origin and RP ID (its host name). */
export interface RelyingParty {
  id: string;
  origin: string;
  name: string;
}

const webauthn = () => import("@simplewebauthn/server");

export class Passkeys {
  private readonly macs: RecordMac;

  constructor(
    private readonly store: Pick<Store, "listPasskeys" | "updatePasskeys">,
    master: MasterKey,
    private readonly now: () => number,
    /** The tenants' audit logs: each registration recorded there, each use checked against it. */
    private readonly log?: PasskeyLog,
  ) {
    this.macs = RecordMac.from(master);
  }

  private macId = (approverId: string, credentialId: string): string => `${approverId}/${credentialId}`;

  /** The approver's passkeys that sigil wrote (a record failing its MAC is left out), whatever the tenant's log says. */
  async authentic(approverId: string): Promise<PasskeyRecord[]> {
    return (await this.store.listPasskeys(approverId)).filter((p) => p.approverId === approverId && this.macs.check(PASSKEY_RECORD_KIND, this.macId(approverId, p.id), p));
  }

  /** The approver's passkeys that count: sigil wrote them and the tenant's log records their registration, same key. */
  async list(approverId: string): Promise<PasskeyRecord[]> {
    const all = await this.authentic(approverId);
    if (!this.log || all.length === 0) return all;
    const states = new Map<string, Pick<ChainState, "passkey">>();
    const out: PasskeyRecord[] = [];
    for (const p of all) {
      let st = states.get(p.tenantId);
      if (!st) states.set(p.tenantId, (st = await this.log.state(p.tenantId)));
      const logged = st.passkey(p.id);
      if (logged && logged.approverId === approverId && logged.publicKey === p.publicKey) out.push(p);
    }
    return out;
  }

  async registrationOptions(approver: ApproverRecord, rp: RelyingParty): Promise<Record<string, unknown>> {
    const { generateRegistrationOptions } = await webauthn();
    const existing = await this.authentic(approver.id);
    return (await generateRegistrationOptions({
      rpName: rp.name,
      rpID: rp.id,
      userName: approver.email ?? approver.name,
      userDisplayName: approver.name,
      userID: new TextEncoder().encode(approver.id),
      attestationType: "none",
      excludeCredentials: existing.map((p) => ({ id: p.id, ...(p.transports ? { transports: p.transports } : {}) })),
      authenticatorSelection: { residentKey: "required", userVerification: "preferred" },
    })) as unknown as Record<string, unknown>;
  }

  /** Verifies a registration answering `challenge` and stores the passkey. */
  async register(approver: ApproverRecord, response: unknown, challenge: string, rp: RelyingParty, name: string): Promise<PasskeyRecord> {
    const { verifyRegistrationResponse } = await webauthn();
    let info;
    try {
      const v = await verifyRegistrationResponse({ response: response as never, expectedChallenge: challenge, expectedOrigin: rp.origin, expectedRPID: rp.id, requireUserVerification: false });
      if (!v.verified || !v.registrationInfo) throw new Error("not verified");
      info = v.registrationInfo;
    } catch {
      throw new Denied("passkey_invalid", "the passkey registration did not verify; nothing was stored.");
    }
    const cred = info.credential;
    const record = this.macs.seal(PASSKEY_RECORD_KIND, this.macId(approver.id, cred.id), {
      id: cred.id,
      approverId: approver.id,
      tenantId: approver.tenantId,
      publicKey: b64url(Buffer.from(cred.publicKey)),
      counter: cred.counter,
      ...(cred.transports ? { transports: [...cred.transports] } : {}),
      name: name.slice(0, 64) || "passkey",
      createdAt: new Date(this.now()).toISOString(),
    } as PasskeyRecord);
    const check = (all: PasskeyRecord[]): void => {
      if (all.some((p) => p.id === record.id)) throw new Denied("passkey_exists", "this passkey is already registered.");
      if (all.length >= MAX_PASSKEYS) throw new Denied("too_many_passkeys", `an approver may register at most ${MAX_PASSKEYS} passkeys.`);
    };
    check(await this.store.listPasskeys(approver.id)); // refused before anything is recorded
    const store = () =>
      this.store.updatePasskeys(approver.id, (all) => {
        check(all);
        return [...all, record];
      });
    if (!this.log) await store();
    else {
      const fields = { approverId: approver.id, credentialId: record.id, credentialPublicKey: record.publicKey, rpId: rp.id, origin: rp.origin, name: record.name, by: "approver" };
      await this.log.change(approver.tenantId, PASSKEY_REGISTERED, fields, store);
    }
    return record;
  }

  /** Options for an assertion: any of the approver's passkeys (or, without one, a discoverable credential), answering `challenge` when given. */
  async authenticationOptions(rp: RelyingParty, opts: { approverId?: string; challenge?: string } = {}): Promise<Record<string, unknown>> {
    const { generateAuthenticationOptions } = await webauthn();
    const allow = opts.approverId ? (await this.list(opts.approverId)).map((p) => ({ id: p.id, ...(p.transports ? { transports: p.transports } : {}) })) : [];
    return (await generateAuthenticationOptions({
      rpID: rp.id,
      allowCredentials: allow,
      userVerification: "preferred",
      ...(opts.challenge ? { challenge: Buffer.from(opts.challenge, "base64url") } : {}),
    })) as unknown as Record<string, unknown>;
  }

  /**
   * Verifies an assertion by one of `approverId`'s passkeys answering `challenge`; moves its
   * signature counter on (a cloned authenticator's replayed counter is refused by the library).
   */
  async verify(approverId: string, response: unknown, challenge: string, rp: RelyingParty): Promise<{ passkey: PasskeyRecord; assertion: PasskeyAssertion }> {
    const { verifyAuthenticationResponse } = await webauthn();
    const r = response as { id?: unknown; response?: { authenticatorData?: unknown; clientDataJSON?: unknown; signature?: unknown } };
    const passkey = typeof r?.id === "string" ? (await this.list(approverId)).find((p) => p.id === r.id) : undefined;
    if (!passkey) throw new Denied("passkey_invalid", "this passkey is not registered for this approver.");
    try {
      const v = await verifyAuthenticationResponse({
        response: response as never,
        expectedChallenge: challenge,
        expectedOrigin: rp.origin,
        expectedRPID: rp.id,
        credential: { id: passkey.id, publicKey: Buffer.from(passkey.publicKey, "base64url"), counter: passkey.counter, ...(passkey.transports ? { transports: passkey.transports as never } : {}) },
        requireUserVerification: false,
      });
      if (!v.verified) throw new Error("not verified");
      const at = new Date(this.now()).toISOString();
      await this.store.updatePasskeys(approverId, (all) =>
        all.map((p) => (p.id === passkey.id && this.macs.check(PASSKEY_RECORD_KIND, this.macId(approverId, p.id), p) ? this.macs.seal(PASSKEY_RECORD_KIND, this.macId(approverId, p.id), { ...p, counter: v.authenticationInfo.newCounter, lastUsedAt: at }) : p)),
      );
    } catch {
      throw new Denied("passkey_invalid", "the passkey assertion did not verify; nothing was recorded.");
    }
    return {
      passkey,
      assertion: {
        credentialId: passkey.id,
        publicKey: passkey.publicKey,
        authenticatorData: String(r.response?.authenticatorData ?? ""),
        clientDataJSON: String(r.response?.clientDataJSON ?? ""),
        signature: String(r.response?.signature ?? ""),
        challenge,
      },
    };
  }
}
