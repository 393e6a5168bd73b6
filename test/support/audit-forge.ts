/**
 * Builds audit logs entry by entry with real Ed25519 keys, exactly as the chain writer seals them
 * (src/audit/chain.ts), so that tests can make logs a careful forger would: validly hashed,
 * linked and signed everywhere except the one property under test.
 */
import { b64 } from "../../src/crypto/encoding.js";
import { cryptoReady } from "../../src/crypto/sodium.js";
import { generateSigningKey, keyThumbprint, sign } from "../../src/crypto/ed25519.js";
import { ZERO_HASH, canonicalLine, entryHash, signingStatement } from "../../src/audit/entry.js";
import type { PublicKeyInfo } from "../../src/audit/verify.js";

export interface ForgeKey {
  keyId: string;
  publicKey: string;
  secretKey: Uint8Array;
}

export async function newKey(): Promise<ForgeKey> {
  await cryptoReady();
  const kp = generateSigningKey();
  return { keyId: keyThumbprint(kp.publicKey), publicKey: b64(kp.publicKey), secretKey: kp.secretKey };
}

export type Entry = Record<string, any>;

/** Seals an entry body: hash over its canonical body, `sig` by `key`, `sigNew` by `cosign`. */
export function seal(body: Entry, key: ForgeKey, cosign?: ForgeKey): Entry {
  const b = { ...body };
  delete b.hash;
  delete b.sig;
  delete b.sigNew;
  const hash = entryHash(b);
  const statement = signingStatement(hash);
  const e: Entry = { ...b, hash, sig: b64(sign(key.secretKey, statement)) };
  if (cosign) e.sigNew = b64(sign(cosign.secretKey, statement));
  return e;
}

const T0 = Date.parse("2026-01-01T00:00:00.000Z");

export class ForgedLog {
  readonly entries: Entry[] = [];
  /** Keys with the windows the real writer gives them (registry-style PublicKeyInfo). */
  readonly keys: PublicKeyInfo[] = [];
  active!: ForgeKey;
  private clock = T0;

  constructor(readonly identity = "id_0123456789abcdef0123") {}

  static async create(identity?: string): Promise<ForgedLog> {
    const log = new ForgedLog(identity);
    const k = await newKey();
    log.active = k;
    log.keys.push({ keyId: k.keyId, publicKey: k.publicKey, status: "active", notBefore: new Date(log.clock).toISOString() });
    log.push({ tool: "identity_created", phase: "event", decision: "ok", name: "forged", channels: [], publicKey: k.publicKey, policyVersion: 1 });
    return log;
  }

  get head(): string {
    return this.entries.length ? this.entries[this.entries.length - 1]!.hash : ZERO_HASH;
  }

  /** The next entry's place and time (ts advances one second per entry unless given). */
  body(draft: Entry, opts: { ts?: number } = {}): Entry {
    if (opts.ts === undefined) this.clock += 1000;
    const ts = opts.ts ?? this.clock;
    return { v: 1, seq: this.entries.length + 1, ts: new Date(ts).toISOString(), identity: this.identity, ...draft, keyId: this.active.keyId, prev: this.head };
  }

  push(draft: Entry, opts: { ts?: number; key?: ForgeKey } = {}): Entry {
    const body = this.body(draft, opts);
    if (opts.key) body.keyId = opts.key.keyId;
    const e = seal(body, opts.key ?? this.active);
    this.entries.push(e);
    return e;
  }

  call(n = 1): void {
    for (let i = 0; i < n; i++) this.push({ tool: "whoami", phase: "call", decision: "allow", session: `s_${this.entries.length}` });
  }

  /** A key rotation as older logs record it: one `event` entry that hands signing over. */
  async rotate(): Promise<ForgeKey> {
    return this.handOver(await newKey(), { phase: "event", decision: "ok" });
  }

  /**
   * A key rotation as the writer records it now (src/identity/identities.ts `rotateKey`): an intent
   * naming the incoming key, then its result; only an `ok` result hands signing over. Returns the
   * incoming key (active afterwards only when `result` is `ok`).
   */
  async rotateAsIntent(result: "ok" | "failed" | "unknown" = "ok"): Promise<ForgeKey> {
    const next = await newKey();
    const intent = this.push({ tool: "key_rotated", session: "admin", phase: "intent", decision: "allow", incomingKeyId: next.keyId });
    const fields = { session: "admin", phase: "result", intent: intent.seq, decision: result };
    if (result !== "ok") {
      this.push({ tool: "key_rotated", ...fields });
      return next;
    }
    return this.handOver(next, fields);
  }

  private handOver(next: ForgeKey, fields: Entry): ForgeKey {
    const body = this.body({ tool: "key_rotated", ...fields, previousKeyId: this.active.keyId, newKeyId: next.keyId, newPublicKey: next.publicKey });
    this.entries.push(seal(body, this.active, next));
    const at = body.ts as string;
    for (const k of this.keys) if (k.keyId === this.active.keyId) Object.assign(k, { status: "retired", notAfter: at });
    this.keys.push({ keyId: next.keyId, publicKey: next.publicKey, status: "active", notBefore: at });
    this.active = next;
    return next;
  }

  lines(): string[] {
    return this.entries.map((e) => canonicalLine(e));
  }

  /** A copy that can grow on its own (a fork of the same log). */
  fork(): ForgedLog {
    const f = new ForgedLog(this.identity);
    f.entries.push(...this.entries.map((e) => ({ ...e })));
    f.keys.push(...this.keys.map((k) => ({ ...k })));
    f.active = this.active;
    f.clock = this.clock;
    return f;
  }

  /** The keys as a JWKS, the way `GET /identities/<id>/keys` publishes them (seconds, kid = thumbprint). */
  jwks(): { identity: string; keys: Entry[] } {
    return {
      identity: this.identity,
      keys: this.keys.map((k) => {
        const x = Buffer.from(k.publicKey, "base64").toString("base64url");
        const j: Entry = { kty: "OKP", crv: "Ed25519", x, kid: k.keyId, use: "sig", alg: "EdDSA", nbf: Math.floor(Date.parse(k.notBefore!) / 1000) };
        if (k.notAfter) j.exp = Math.floor(Date.parse(k.notAfter) / 1000);
        return j;
      }),
    };
  }

  /** An exported bundle of this log with these (or its own) keys. */
  bundle(keys: PublicKeyInfo[] = this.keys): Entry {
    return { format: "sigil-audit-bundle/v1", exportedAt: new Date(this.clock).toISOString(), identity: { id: this.identity, name: "forged", createdAt: new Date(T0).toISOString() }, keys, entries: this.entries };
  }
}
