/**
 * The vault: per-identity secrets, sealed at rest under the master key.
 *
 * - Each value is sealed with XChaCha20-Poly1305 under the `vault` subkey, with associated data
 *   `sigil-secret-v1\n<identityId>\n<name>\n<version>`: a ciphertext copied to another identity,
 *   another name or another version fails to open.
 * - Names are validated here (one rule for the CLI, the admin tools and vault_get): 1-256
 *   characters, `/`-separated segments of letters, digits, `.`, `_`, `-`, each starting with a
 *   letter or digit; no `..`, no leading or trailing `/`, no empty segment, no control or
 *   non-ASCII characters, and no segment that names an object prototype slot (`__proto__`,
 *   `constructor`, `prototype`).
 * - Values are UTF-8 text of 1 byte to 64 KiB. They are never logged, never put in an error, never
 *   written anywhere in plaintext; callers record the name and version only.
 * - Versions count up on every overwrite (1, 2, …). A secret deleted and put again starts again
 *   at 1: the store keeps no tombstone (the audit log keeps the history).
 */
import { type MasterKey } from "../crypto/master-key.js";
import { open as openSealed, seal } from "../crypto/seal.js";
import { Denied, SigilError } from "../errors.js";
import type { SecretRecord, Store } from "../../store/types.js";

export const SECRET_NAME_MAX = 256;
export const SECRET_VALUE_MAX_BYTES = 64 * 1024;

const SEGMENT_RE = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;
const RESERVED_SEGMENTS = new Set(["__proto__", "constructor", "prototype"]);

/** Why `name` is not a valid secret name, or undefined when it is. Never echoes the name. */
export function secretNameProblem(name: unknown): string | undefined {
  if (typeof name !== "string" || name.length === 0) return "a secret name must be a non-empty string";
  if (name.length > SECRET_NAME_MAX) return `a secret name must be at most ${SECRET_NAME_MAX} characters`;
  if (name.includes("..")) return "a secret name must not contain \"..\"";
  if (name.startsWith("/") || name.endsWith("/")) return "a secret name must not start or end with \"/\"";
  for (const seg of name.split("/")) {
    if (seg === "") return "a secret name must not contain an empty segment (\"//\")";
    if (!SEGMENT_RE.test(seg)) {
      return "a secret name is made of letters, digits, \".\", \"_\", \"-\" and \"/\" separators, each part starting with a letter or digit";
    }
    if (RESERVED_SEGMENTS.has(seg)) return "a secret name must not use a reserved word (__proto__, constructor, prototype)";
  }
  return undefined;
}

export function assertSecretName(name: unknown): asserts name is string {
  const problem = secretNameProblem(name);
  if (problem) throw new Denied("invalid_arguments", `${problem}.`);
}

/** The bytes of a secret value, validated (1 byte to 64 KiB of UTF-8). */
export function secretValueBytes(value: unknown): Buffer {
  if (typeof value !== "string") throw new Denied("invalid_arguments", "the secret value must be a string.");
  const bytes = Buffer.from(value, "utf8");
  if (bytes.length === 0) throw new Denied("invalid_arguments", "the secret value must not be empty.");
  if (bytes.length > SECRET_VALUE_MAX_BYTES) {
    throw new Denied("invalid_arguments", `the secret value must be at most ${SECRET_VALUE_MAX_BYTES} bytes.`);
  }
  return bytes;
}

export const secretAd = (identityId: string, name: string, version: number): string =>
  `sigil-secret-v1\n${identityId}\n${name}\n${version}`;

export interface SecretValue {
  name: string;
  version: number;
  value: string;
  updatedAt: string;
}

export class Vault {
  constructor(
    private readonly store: Store,
    private readonly master: MasterKey,
    private readonly now: () => number = Date.now,
  ) {}

  private get key(): Buffer {
    return this.master.subkey("vault");
  }

  /** The version the next put of `name` will get (callers hold the identity's admin lock). */
  async nextVersion(identityId: string, name: string): Promise<number> {
    assertSecretName(name);
    return ((await this.store.getSecret(identityId, name))?.version ?? 0) + 1;
  }

  /**
   * Seals and stores `value` as the next version of `name`. When `expectVersion` is given, the
   * write is refused (conflict) unless it would become exactly that version.
   */
  async put(identityId: string, name: string, value: string, expectVersion?: number): Promise<{ name: string; version: number }> {
    assertSecretName(name);
    const bytes = secretValueBytes(value);
    try {
      const rec = await this.store.putSecret(identityId, name, (previous): SecretRecord => {
        const version = previous + 1;
        if (expectVersion !== undefined && version !== expectVersion) {
          throw new SigilError("conflict", "the secret changed while it was being written; try again.");
        }
        return { name, version, sealed: seal(this.key, bytes, secretAd(identityId, name, version)), updatedAt: new Date(this.now()).toISOString() };
      });
      return { name: rec.name, version: rec.version };
    } finally {
      bytes.fill(0);
    }
  }

  /** The current version of `name`, opened; undefined when there is none. */
  async get(identityId: string, name: string): Promise<SecretValue | undefined> {
    assertSecretName(name);
    const rec = await this.store.getSecret(identityId, name);
    if (!rec) return undefined;
    if (rec.name !== name || !Number.isSafeInteger(rec.version) || rec.version < 1) {
      throw new SigilError("secret_unreadable", "the stored secret is damaged and cannot be opened.");
    }
    let plain: Uint8Array;
    try {
      plain = openSealed(this.key, rec.sealed, secretAd(identityId, name, rec.version));
    } catch {
      // The ciphertext does not belong here (moved, altered, or another master key): never guess.
      throw new SigilError("secret_unreadable", "the stored secret cannot be opened (it was altered or does not belong to this identity and name).");
    }
    const value = Buffer.from(plain).toString("utf8");
    plain.fill(0);
    return { name, version: rec.version, value, updatedAt: rec.updatedAt };
  }

  /** The current version of `name` without opening it. */
  async version(identityId: string, name: string): Promise<number | undefined> {
    assertSecretName(name);
    return (await this.store.getSecret(identityId, name))?.version;
  }

  async delete(identityId: string, name: string): Promise<boolean> {
    assertSecretName(name);
    return this.store.deleteSecret(identityId, name);
  }

  /** The names of the identity's secrets (records the name rule cannot produce, such as the exfiltration guard's, are not secrets). */
  async names(identityId: string): Promise<string[]> {
    return (await this.store.listSecretNames(identityId)).filter((n) => secretNameProblem(n) === undefined);
  }
}
