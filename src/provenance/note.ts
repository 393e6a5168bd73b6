/**
 * C2SP signed-note (https://c2sp.org/signed-note) with Ed25519 keys, and the C2SP tlog-checkpoint
 * body (https://c2sp.org/tlog-checkpoint) that sigil signs so others can hold it to its log size.
 *
 * A note is UTF-8 text ending in `\n`, a blank line, then one line per signature:
 * `— <key name> <base64(4-byte key id || 64-byte signature)>\n`. The signature is over the text
 * bytes exactly (no prefix: see domains.ts for why that is safe). Compatible with Go's
 * golang.org/x/mod/sumdb/note (tested against its documented known answer).
 */
import { createHash } from "node:crypto";
import { DOMAIN_PREFIX_START } from "./domains.js";
import {
  assertPublicKey,
  base64,
  decodeBase64Strict,
  signChecked,
  verifyEd25519,
  type Signer,
} from "../crypto/jwk.js";

/** C2SP signature type byte for Ed25519. */
const ALG_ED25519 = 0x01;
const EM_DASH = "\u2014";
const SIG_PREFIX = `${EM_DASH} `;
/** Limits from the C2SP spec / the Go implementation. */
const MAX_NOTE_BYTES = 1 << 20;
const MAX_SIGNATURES = 100;

/** True when the string has no lone surrogate, i.e. encodes to well-formed UTF-8. */
function isWellFormed(s: string): boolean {
  return !/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/.test(s);
}

function isValidKeyName(name: string): boolean {
  // Non-empty, well-formed UTF-8, no Unicode spaces and no `+` (C2SP signed-note "Signatures").
  return name.length > 0 && !/[\s+\u0085]/u.test(name) && !/[\u0000-\u001F\u007F]/.test(name) && isWellFormed(name);
}

function assertKeyName(name: string): void {
  if (!isValidKeyName(name)) throw new Error("invalid note key name");
}

/** First 4 bytes of SHA-256(name || 0x0A || 0x01 || public key). */
export function noteKeyId(name: string, publicKey: Uint8Array): Uint8Array {
  assertKeyName(name);
  assertPublicKey(publicKey);
  const h = createHash("sha256")
    .update(Buffer.from(name, "utf8"))
    .update(Uint8Array.of(0x0a, ALG_ED25519))
    .update(publicKey)
    .digest();
  return new Uint8Array(h.subarray(0, 4));
}

function hex8(id: Uint8Array): string {
  return Buffer.from(id).toString("hex");
}

/** The verifier key string `<name>+<hex key id>+<base64(0x01 || public key)>`. */
export function verifierKey(name: string, publicKey: Uint8Array): string {
  const id = noteKeyId(name, publicKey);
  const encoded = base64(Uint8Array.of(ALG_ED25519, ...publicKey));
  return `${name}+${hex8(id)}+${encoded}`;
}

/**
 * Parses a verifier key. The base64 part may itself contain `+`, so the string is split on its
 * first two `+` only. The key id is checked against the name and key.
 */
export function parseVerifierKey(s: string): { name: string; keyId: Uint8Array; publicKey: Uint8Array } {
  const first = s.indexOf("+");
  const second = first < 0 ? -1 : s.indexOf("+", first + 1);
  if (first <= 0 || second < 0) throw new Error("malformed verifier key");
  const name = s.slice(0, first);
  const idHex = s.slice(first + 1, second);
  const keyB64 = s.slice(second + 1);
  if (!isValidKeyName(name)) throw new Error("malformed verifier key: bad name");
  if (!/^[0-9a-f]{8}$/.test(idHex)) throw new Error("malformed verifier key: bad key id");
  const raw = decodeBase64Strict(keyB64);
  if (!raw || raw.length !== 33 || raw[0] !== ALG_ED25519) {
    throw new Error("malformed verifier key: not an Ed25519 key");
  }
  const publicKey = raw.subarray(1);
  const keyId = noteKeyId(name, publicKey);
  if (hex8(keyId) !== idHex) throw new Error("malformed verifier key: key id does not match");
  return { name, keyId, publicKey };
}

function assertNoteText(text: string): void {
  if (typeof text !== "string" || text.length === 0 || !text.endsWith("\n")) {
    throw new Error("note text must be non-empty and end in a newline");
  }
  if (!isWellFormed(text)) throw new Error("note text must be well-formed UTF-8");
  // Control characters other than newline would let a note hide content from a human reader.
  if (/[\u0000-\u0009\u000B-\u001F\u007F]/.test(text)) {
    throw new Error("note text must not contain control characters other than newline");
  }
}

/**
 * Signs `text` with each signer and returns the note. Refuses text that could be mistaken for
 * another sigil signing format (see domains.ts).
 */
export async function signNote(
  text: string,
  signers: Array<{ name: string; signer: Signer }>,
): Promise<string> {
  assertNoteText(text);
  if (text.startsWith(DOMAIN_PREFIX_START) || text.startsWith('"')) {
    throw new Error("note text must not start with a reserved signing prefix");
  }
  if (signers.length === 0) throw new Error("a note needs at least one signer");
  const message = new Uint8Array(Buffer.from(text, "utf8"));
  let out = `${text}\n`;
  for (const { name, signer } of signers) {
    const id = noteKeyId(name, signer.publicKey);
    const sig = await signChecked(signer, message);
    out += `${SIG_PREFIX}${name} ${base64(Uint8Array.of(...id, ...sig))}\n`;
  }
  if (Buffer.byteLength(out, "utf8") > MAX_NOTE_BYTES) throw new Error("note too large");
  return out;
}

/**
 * Opens a signed note: returns its text and the names of the known keys whose signatures
 * verified. Signatures by unknown keys (no verifier with that name and key id) are ignored.
 * Throws when the note is malformed, when a known key's signature does not verify, or when no
 * known key signed it.
 */
export function openNote(
  note: string,
  verifiers: Array<{ name: string; publicKey: Uint8Array }>,
): { text: string; verifiedBy: string[] } {
  if (typeof note !== "string" || Buffer.byteLength(note, "utf8") > MAX_NOTE_BYTES) {
    throw new Error("malformed note");
  }
  const split = note.lastIndexOf("\n\n");
  if (split < 0) throw new Error("malformed note: no signature block");
  const text = note.slice(0, split + 1);
  assertNoteText(text);
  const sigBlock = note.slice(split + 2);
  if (!sigBlock.endsWith("\n")) throw new Error("malformed note: signature block");
  const lines = sigBlock.slice(0, -1).split("\n");
  if (lines.length > MAX_SIGNATURES) throw new Error("malformed note: too many signatures");

  const known = verifiers.map((v) => ({ name: v.name, publicKey: v.publicKey, id: hex8(noteKeyId(v.name, v.publicKey)) }));
  const message = new Uint8Array(Buffer.from(text, "utf8"));
  const verifiedBy: string[] = [];
  for (const line of lines) {
    if (!line.startsWith(SIG_PREFIX)) throw new Error("malformed note: signature line");
    const rest = line.slice(SIG_PREFIX.length);
    const space = rest.indexOf(" ");
    if (space <= 0 || rest.indexOf(" ", space + 1) >= 0) throw new Error("malformed note: signature line");
    const name = rest.slice(0, space);
    if (!isValidKeyName(name)) throw new Error("malformed note: key name");
    const raw = decodeBase64Strict(rest.slice(space + 1));
    if (!raw || raw.length < 5) throw new Error("malformed note: signature");
    const id = hex8(raw.subarray(0, 4));
    const verifier = known.find((k) => k.name === name && k.id === id);
    if (!verifier) continue; // unknown key: ignored, as the spec requires
    if (!verifyEd25519(verifier.publicKey, message, raw.subarray(4))) {
      throw new Error(`invalid signature by known key ${name}`);
    }
    if (!verifiedBy.includes(name)) verifiedBy.push(name);
  }
  if (verifiedBy.length === 0) throw new Error("note has no verifiable signature by a known key");
  return { text, verifiedBy };
}

export type Checkpoint = {
  origin: string;
  size: number;
  rootHash: Uint8Array;
  /** Optional extension lines after the hash (C2SP tlog-checkpoint), without their newlines. */
  extensions: string[];
};

function assertOrigin(origin: string): void {
  if (origin.length === 0 || /[\u0000-\u001F\u007F]/.test(origin) || !isWellFormed(origin)) {
    throw new Error("invalid checkpoint origin");
  }
  if (origin.startsWith(DOMAIN_PREFIX_START)) throw new Error("checkpoint origin uses a reserved prefix");
}

/** The checkpoint body `<origin>\n<size>\n<base64 root hash>\n` (to be signed with signNote). */
export function checkpointBody(origin: string, size: number, rootHash: Uint8Array): string {
  assertOrigin(origin);
  if (!Number.isSafeInteger(size) || size < 0) throw new Error("checkpoint size must be a non-negative integer");
  if (rootHash.length !== 32) throw new Error("checkpoint root hash must be 32 bytes (SHA-256)");
  return `${origin}\n${size}\n${base64(rootHash)}\n`;
}

/** Parses a checkpoint body (the text of an opened note). Throws on anything malformed. */
export function parseCheckpoint(text: string): Checkpoint {
  if (!text.endsWith("\n")) throw new Error("malformed checkpoint: must end in a newline");
  const lines = text.slice(0, -1).split("\n");
  const [origin, sizeText, hashText, ...extensions] = lines;
  if (origin === undefined || sizeText === undefined || hashText === undefined) {
    throw new Error("malformed checkpoint: needs origin, size and hash lines");
  }
  assertOrigin(origin);
  if (!/^(0|[1-9][0-9]*)$/.test(sizeText)) throw new Error("malformed checkpoint: size");
  const size = Number(sizeText);
  if (!Number.isSafeInteger(size)) throw new Error("malformed checkpoint: size too large");
  const rootHash = decodeBase64Strict(hashText);
  if (!rootHash || rootHash.length !== 32) throw new Error("malformed checkpoint: root hash");
  if (extensions.some((e) => e.length === 0)) throw new Error("malformed checkpoint: empty extension line");
  return { origin, size, rootHash, extensions };
}
