/**
 * The checks of one audit entry that need nothing from the rest of its log: that a line parses to
 * an object and is byte for byte its own RFC 8785 canonical form, its hash recomputed over the
 * canonical body, and its signature(s) with strict encodings. The chain verifier (verify.ts), its
 * worker threads (verify-worker.ts) and receipt verification (provenance/receipt.ts) all use
 * these, so an entry means the same thing to each of them.
 */
import { keyThumbprint, verifySignature } from "../crypto/ed25519.js";
import { decodeBase64Strict } from "../crypto/jwk.js";
import { type AuditEntry, bodyHash, canonicalForms, signingStatement } from "./entry.js";

/** Why a line is not an entry at all (before anything about its place in the log is known). */
export type EntryDefect = "json" | "object" | "canonical" | "uncanonicalisable";

export const DEFECT_MESSAGE: Record<EntryDefect, string> = {
  json: "is not valid JSON (a torn or edited line)",
  object: "is not a JSON object",
  canonical: "is not in its canonical form (RFC 8785): the line was reformatted or repeats a member",
  uncanonicalisable: "cannot be canonicalised",
};

export interface Examined {
  entry?: AuditEntry;
  defect?: EntryDefect;
  /** The hash recomputed over the canonical body. */
  hash?: string;
  /** 1: `sig` verifies under the key `keyFor(entry.keyId)`; 0: it does not (or is not strictly encoded); -1: no such key. */
  sig: 1 | 0 | -1;
  /** The same for `sigNew` under the entry's own `newPublicKey`; -1 when the entry has neither. */
  sigNew: 1 | 0 | -1;
}

/** A signature as an entry must carry it: canonical standard base64 of exactly 64 bytes. */
export function strictSignature(s: unknown): Uint8Array | undefined {
  if (typeof s !== "string" || s.length !== 88) return undefined;
  const b = decodeBase64Strict(s);
  return b && b.length === 64 ? b : undefined;
}

/** An Ed25519 public key as an entry must carry it: canonical standard base64 of 32 bytes. */
export function strictPublicKey(s: unknown): Uint8Array | undefined {
  if (typeof s !== "string" || s.length !== 44) return undefined;
  const b = decodeBase64Strict(s);
  return b && b.length === 32 ? b : undefined;
}

/** Whether `keyId` is the RFC 7638 thumbprint of `publicKey`. */
export function isKeyIdOf(keyId: unknown, publicKey: Uint8Array): boolean {
  return typeof keyId === "string" && keyThumbprint(publicKey) === keyId;
}

export function examineEntry(raw: unknown, keyFor: (keyId: string) => Uint8Array | undefined): Examined {
  let e: unknown = raw;
  if (typeof raw === "string") {
    try {
      e = JSON.parse(raw);
    } catch {
      return { defect: "json", sig: -1, sigNew: -1 };
    }
  }
  if (typeof e !== "object" || e === null || Array.isArray(e)) return { defect: "object", sig: -1, sigNew: -1 };
  const entry = e as AuditEntry;
  let forms: { body: string; line: string };
  try {
    forms = canonicalForms(entry as unknown as Record<string, unknown>);
  } catch {
    return { entry, defect: "uncanonicalisable", sig: -1, sigNew: -1 };
  }
  if (typeof raw === "string" && raw !== forms.line) return { entry, defect: "canonical", sig: -1, sigNew: -1 };
  const hash = bodyHash(forms.body);
  const statement = signingStatement(hash);
  const pk = typeof entry.keyId === "string" ? keyFor(entry.keyId) : undefined;
  let sig: Examined["sig"] = -1;
  if (pk) {
    const s = strictSignature(entry.sig);
    sig = s && verifySignature(pk, statement, s) ? 1 : 0;
  }
  let sigNew: Examined["sigNew"] = -1;
  if (entry.sigNew !== undefined || entry.newPublicKey !== undefined) {
    const newPk = strictPublicKey(entry.newPublicKey);
    const s = strictSignature(entry.sigNew);
    sigNew = newPk && s && verifySignature(newPk, statement, s) ? 1 : 0;
  }
  return { entry, hash, sig, sigNew };
}
