import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, sign as cryptoSign } from "node:crypto";
import { describe, expect, it } from "vitest";
import {
  noteKeyId,
  verifierKey,
  parseVerifierKey,
  signNote,
  openNote,
  checkpointBody,
  parseCheckpoint,
} from "../src/provenance/note.js";
import type { Signer } from "../src/crypto/jwk.js";

/** A Signer from a raw 32-byte Ed25519 seed (PKCS#8 DER wrapper, RFC 8410). */
function signerFromSeed(seed: Uint8Array): Signer {
  const der = Buffer.concat([Buffer.from("302e020100300506032b657004220420", "hex"), seed]);
  const privateKey = createPrivateKey({ key: der, format: "der", type: "pkcs8" });
  const x = createPublicKey(privateKey).export({ format: "jwk" }).x!;
  return {
    keyId: "test",
    publicKey: new Uint8Array(Buffer.from(x, "base64url")),
    sign: (m) => new Uint8Array(cryptoSign(null, m, privateKey)),
  };
}

function randomSigner(): Signer {
  const { privateKey } = generateKeyPairSync("ed25519");
  const seed = privateKey.export({ format: "jwk" }).d!;
  return signerFromSeed(new Uint8Array(Buffer.from(seed, "base64url")));
}

// Known answer from golang.org/x/mod/sumdb/note (REFERENCE.md).
const SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
const VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
const TEXT = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n";
const SIG = "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=";

function peterNeumann(): Signer {
  const parts = SKEY.split("+");
  const raw = Buffer.from(parts.slice(4).join("+"), "base64");
  expect(raw.length).toBe(33);
  expect(raw[0]).toBe(0x01);
  return signerFromSeed(new Uint8Array(raw.subarray(1)));
}

describe("verifier keys", () => {
  it("derive the known verifier key (and its key id) from the known signer key", () => {
    const s = peterNeumann();
    expect(Buffer.from(noteKeyId("PeterNeumann", s.publicKey)).toString("hex")).toBe("c74f20a3");
    expect(verifierKey("PeterNeumann", s.publicKey)).toBe(VKEY);
  });

  it("parse on the first two + only (the base64 part may contain +)", () => {
    const parsed = parseVerifierKey(VKEY);
    expect(parsed.name).toBe("PeterNeumann");
    expect(Buffer.from(parsed.keyId).toString("hex")).toBe("c74f20a3");
    expect(Buffer.from(parsed.publicKey)).toEqual(Buffer.from(peterNeumann().publicKey));
    // find a key whose base64 contains "+" to exercise the split rule
    for (let i = 0; i < 200; i++) {
      const s = randomSigner();
      const vk = verifierKey("log.example/x", s.publicKey);
      if (vk.split("+").length > 3) {
        expect(Buffer.from(parseVerifierKey(vk).publicKey)).toEqual(Buffer.from(s.publicKey));
        return;
      }
    }
    throw new Error("no key with + in its base64 found");
  });

  it("reject malformed keys and a key id that does not match", () => {
    expect(() => parseVerifierKey("PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW")).toThrow();
    expect(() => parseVerifierKey("PeterNeumann+c74f20a3")).toThrow();
    expect(() => parseVerifierKey("+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW")).toThrow();
    expect(() => parseVerifierKey("PeterNeumann+c74f20a3+AhpcAA==")).toThrow();
    expect(() => verifierKey("has space", peterNeumann().publicKey)).toThrow();
    expect(() => verifierKey("a+b", peterNeumann().publicKey)).toThrow();
  });
});

describe("signed notes", () => {
  it("reproduce the sumdb/note known answer exactly", async () => {
    const note = await signNote(TEXT, [{ name: "PeterNeumann", signer: peterNeumann() }]);
    expect(note).toBe(`${TEXT}\n\u2014 PeterNeumann ${SIG}\n`);
  });

  it("open the known note with the verifier key", () => {
    const { name, publicKey } = parseVerifierKey(VKEY);
    const note = `${TEXT}\n\u2014 PeterNeumann ${SIG}\n`;
    expect(openNote(note, [{ name, publicKey }])).toEqual({ text: TEXT, verifiedBy: ["PeterNeumann"] });
  });

  it("round-trip with several signers, ignoring unknown keys", async () => {
    const a = randomSigner();
    const b = randomSigner();
    const note = await signNote("hello\n\nworld\n", [
      { name: "a.example", signer: a },
      { name: "b.example", signer: b },
    ]);
    expect(openNote(note, [{ name: "b.example", publicKey: b.publicKey }])).toEqual({
      text: "hello\n\nworld\n",
      verifiedBy: ["b.example"],
    });
    const both = openNote(note, [
      { name: "a.example", publicKey: a.publicKey },
      { name: "b.example", publicKey: b.publicKey },
    ]);
    expect(both.verifiedBy).toEqual(["a.example", "b.example"]);
    // same name, different key: unknown, so ignored; no known key left: throws
    expect(() => openNote(note, [{ name: "a.example", publicKey: b.publicKey }])).toThrow(/no verifiable signature/);
  });

  it("reject tampered text, a bad signature by a known key, and malformed notes", async () => {
    const s = randomSigner();
    const v = [{ name: "k", publicKey: s.publicKey }];
    const note = await signNote("size 10\n", [{ name: "k", signer: s }]);
    expect(() => openNote(note.replace("10", "11"), v)).toThrow();
    const [text, sigLine] = note.split("\n\n");
    const raw = Buffer.from(sigLine!.slice(4, -1), "base64");
    raw[10] = raw[10]! ^ 1;
    expect(() => openNote(`${text}\n\n\u2014 k ${raw.toString("base64")}\n`, v)).toThrow(/invalid signature/);
    expect(() => openNote(note.slice(0, -1), v)).toThrow(); // no final newline
    expect(() => openNote("size 10\n", v)).toThrow(); // no signature block
    expect(() => openNote(note.replace("\u2014 ", "- "), v)).toThrow();
    expect(() => openNote(note.replace(" k ", " k  "), v)).toThrow();
  });

  it("refuse unsignable text", async () => {
    const s = [{ name: "k", signer: randomSigner() }];
    await expect(signNote("no newline", s)).rejects.toThrow();
    await expect(signNote("", s)).rejects.toThrow();
    await expect(signNote("tab\there\n", s)).rejects.toThrow();
    await expect(signNote("sigil-email-v1\nfrom:a@b\n", s)).rejects.toThrow(/reserved/);
    await expect(signNote("ok\n", [])).rejects.toThrow();
  });
});

describe("checkpoints", () => {
  const root = createHash("sha256").update("root").digest();

  it("format and parse the C2SP tlog-checkpoint body", () => {
    const body = checkpointBody("sigil.example/audit/agent-1", 42, root);
    expect(body).toBe(`sigil.example/audit/agent-1\n42\n${root.toString("base64")}\n`);
    const cp = parseCheckpoint(body);
    expect(cp.origin).toBe("sigil.example/audit/agent-1");
    expect(cp.size).toBe(42);
    expect(Buffer.from(cp.rootHash)).toEqual(root);
    expect(cp.extensions).toEqual([]);
    expect(parseCheckpoint(`${body}ext line\n`).extensions).toEqual(["ext line"]);
  });

  it("sign as a note and open again", async () => {
    const s = randomSigner();
    const note = await signNote(checkpointBody("sigil.example/audit/a", 0, root), [{ name: "sigil.example/audit/a", signer: s }]);
    const { text } = openNote(note, [{ name: "sigil.example/audit/a", publicKey: s.publicKey }]);
    expect(parseCheckpoint(text).size).toBe(0);
  });

  it("reject malformed checkpoints", () => {
    const h = root.toString("base64");
    expect(() => parseCheckpoint(`o\n42\n${h}`)).toThrow();
    expect(() => parseCheckpoint(`o\n042\n${h}\n`)).toThrow();
    expect(() => parseCheckpoint(`o\n-1\n${h}\n`)).toThrow();
    expect(() => parseCheckpoint(`o\n1\nAAAA\n`)).toThrow();
    expect(() => parseCheckpoint(`o\n1\n`)).toThrow();
    expect(() => parseCheckpoint(`\n1\n${h}\n`)).toThrow();
    expect(() => parseCheckpoint(`o\n1\n${h}\n\n`)).toThrow();
    expect(() => checkpointBody("o", -1, root)).toThrow();
    expect(() => checkpointBody("o", 1.5, root)).toThrow();
    expect(() => checkpointBody("a\nb", 1, root)).toThrow();
    expect(() => checkpointBody("o", 1, root.subarray(1))).toThrow();
  });
});
