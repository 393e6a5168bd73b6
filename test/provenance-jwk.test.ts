import { generateKeyPairSync, createPublicKey, sign as cryptoSign } from "node:crypto";
import { describe, expect, it } from "vitest";
import { helpers, jwkToKeyID } from "web-bot-auth";
import {
  publicJwk,
  jwkThumbprint,
  jwks,
  verifyEd25519,
  publicKeyObject,
  signChecked,
  type Signer,
} from "../src/crypto/jwk.js";
import { ALL_DOMAINS, DOMAIN_PREFIX_START } from "../src/provenance/domains.js";

function randomSigner(): Signer {
  const { privateKey, publicKey } = generateKeyPairSync("ed25519");
  const x = publicKey.export({ format: "jwk" }).x!;
  return {
    keyId: "k1",
    publicKey: new Uint8Array(Buffer.from(x, "base64url")),
    sign: (m) => new Uint8Array(cryptoSign(null, m, privateKey)),
  };
}

// RFC 8037 Appendix A.1 / A.3.
const RFC8037_X = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";
const RFC8037_THUMBPRINT = "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k";
const rfcKey = new Uint8Array(Buffer.from(RFC8037_X, "base64url"));

describe("publicJwk / jwkThumbprint", () => {
  it("encodes x as unpadded base64url", () => {
    expect(publicJwk(rfcKey)).toEqual({ kty: "OKP", crv: "Ed25519", x: RFC8037_X });
  });

  it("reproduces the RFC 8037 §A.3 thumbprint", () => {
    expect(jwkThumbprint(rfcKey)).toBe(RFC8037_THUMBPRINT);
  });

  it("agrees with web-bot-auth's thumbprint (jsonwebkey-thumbprint) on random keys", async () => {
    for (let i = 0; i < 20; i++) {
      const { publicKey } = randomSigner();
      const theirs = await jwkToKeyID(publicJwk(publicKey), helpers.WEBCRYPTO_SHA256, helpers.BASE64URL_DECODE);
      expect(jwkThumbprint(publicKey)).toBe(theirs);
    }
    expect(await jwkToKeyID(publicJwk(rfcKey), helpers.WEBCRYPTO_SHA256, helpers.BASE64URL_DECODE)).toBe(
      RFC8037_THUMBPRINT,
    );
  });

  it("rejects keys that are not 32 bytes", () => {
    expect(() => publicJwk(new Uint8Array(31))).toThrow();
    expect(() => jwkThumbprint(new Uint8Array(33))).toThrow();
  });

  it("imports into node:crypto as the same key", () => {
    const s = randomSigner();
    const exported = createPublicKey({ key: publicJwk(s.publicKey), format: "jwk" }).export({ format: "jwk" });
    expect(exported.x).toBe(publicJwk(s.publicKey).x);
    expect(publicKeyObject(s.publicKey).asymmetricKeyType).toBe("ed25519");
  });
});

describe("jwks", () => {
  it("lists current and retired keys with kid, use, alg and NumericDate validity", () => {
    const a = randomSigner().publicKey;
    const b = randomSigner().publicKey;
    const set = jwks([
      { publicKey: a, notBefore: "2025-01-01T00:00:00.000Z", notAfter: "2025-06-01T00:00:00.500Z", status: "retired" },
      { publicKey: b, notBefore: "2025-06-01T00:00:00Z", status: "active" },
    ]);
    expect(set).toEqual({
      keys: [
        { kty: "OKP", crv: "Ed25519", x: publicJwk(a).x, kid: jwkThumbprint(a), use: "sig", alg: "EdDSA", nbf: 1735689600, exp: 1748736000 },
        { kty: "OKP", crv: "Ed25519", x: publicJwk(b).x, kid: jwkThumbprint(b), use: "sig", alg: "EdDSA", nbf: 1748736000 },
      ],
    });
    expect("exp" in set.keys[1]!).toBe(false);
  });

  it("refuses invalid times, inverted windows and duplicate keys", () => {
    const a = randomSigner().publicKey;
    expect(() => jwks([{ publicKey: a, notBefore: "yesterday", status: "active" }])).toThrow();
    expect(() =>
      jwks([{ publicKey: a, notBefore: "2025-02-01T00:00:00Z", notAfter: "2025-01-01T00:00:00Z", status: "retired" }]),
    ).toThrow();
    expect(() =>
      jwks([
        { publicKey: a, notBefore: "2025-01-01T00:00:00Z", status: "retired" },
        { publicKey: a, notBefore: "2025-01-01T00:00:00Z", status: "active" },
      ]),
    ).toThrow();
  });
});

describe("key helpers", () => {
  it("verifyEd25519 accepts good and rejects tampered or malformed signatures", async () => {
    const s = randomSigner();
    const msg = new TextEncoder().encode("hello");
    const sig = await signChecked(s, msg);
    expect(verifyEd25519(s.publicKey, msg, sig)).toBe(true);
    expect(verifyEd25519(s.publicKey, new TextEncoder().encode("hellO"), sig)).toBe(false);
    expect(verifyEd25519(s.publicKey, msg, sig.subarray(1))).toBe(false);
  });

  it("signChecked refuses a signer whose signature is not by its public key", async () => {
    const a = randomSigner();
    const b = randomSigner();
    await expect(signChecked({ ...a, sign: b.sign }, new Uint8Array([1]))).rejects.toThrow();
  });
});

describe("domain prefixes", () => {
  it("are distinct, newline-terminated, and none is a prefix of another", () => {
    for (const d of ALL_DOMAINS) {
      expect(d.startsWith(DOMAIN_PREFIX_START)).toBe(true);
      expect(d.endsWith("\n")).toBe(true);
      for (const e of ALL_DOMAINS) if (d !== e) expect(e.startsWith(d)).toBe(false);
    }
    expect(new Set(ALL_DOMAINS).size).toBe(ALL_DOMAINS.length);
  });
});
