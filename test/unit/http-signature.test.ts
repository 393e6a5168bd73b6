/**
 * sigil's RFC 9421 verifier (verifyRequest, src/provenance/http-signature.ts), pinned check by
 * check (issue 20): every signature below is built by hand here — its Signature-Input, its
 * signature base line by line, and a real Ed25519 signature over it — and is valid in every respect
 * but the one under test, so each refusal is reached by the check meant for it and names it.
 * Interoperability with other verifiers and signers: test/provenance-http-signature.test.ts.
 */
import { generateKeyPairSync, sign as cryptoSign } from "node:crypto";
import { describe, expect, it } from "vitest";
import { jwkThumbprint } from "../../src/crypto/jwk.js";
import { MAX_EXPIRES_SECONDS, buildSignatureBase, signDirectoryResponse, signRequest, verifyRequest, type VerifyRequestInput } from "../../src/provenance/http-signature.js";
import { checkSigningUrl } from "../../src/provenance/url.js";

const { privateKey, publicKey: publicKeyObject } = generateKeyPairSync("ed25519");
const publicKey = new Uint8Array(Buffer.from(publicKeyObject.export({ format: "jwk" }).x!, "base64url"));
const KID = jwkThumbprint(publicKey);
const NOW = 1_750_000_000;
const URL_ = "https://Shop.Example:443/pay/a%20b?x=1&y=2#frag";
const NONCE = Buffer.alloc(64, 9).toString("base64");

type Forge = {
  /** Covered component identifiers (serialised) with the value each has in the base. */
  components?: Array<[string, string]>;
  /** Everything after the inner list of identifiers in Signature-Input. */
  params?: string;
  label?: string;
  /** Extra request headers. */
  headers?: Record<string, string>;
};
const PARAMS = (over: { created?: number; expires?: number; tag?: string } = {}) =>
  `;created=${over.created ?? NOW};expires=${over.expires ?? NOW + 60};keyid="${KID}";alg="ed25519";nonce="${NONCE}";tag="${over.tag ?? "agent-browser-auth"}"`;
const AUTH_PATH: Array<[string, string]> = [
  ['"@authority"', "shop.example"],
  ['"@path"', "/pay/a%20b"],
];

/** Headers carrying one signature over exactly the given base. */
function forge(f: Forge = {}): Record<string, string> {
  const components = f.components ?? AUTH_PATH;
  const label = f.label ?? "sig1";
  const sigParams = `(${components.map(([id]) => id).join(" ")})${f.params ?? PARAMS()}`;
  const base = [...components.map(([id, v]) => `${id}: ${v}`), `"@signature-params": ${sigParams}`].join("\n");
  const sig = cryptoSign(null, Buffer.from(base, "utf8"), privateKey).toString("base64");
  return { ...f.headers, "Signature-Input": `${label}=${sigParams}`, Signature: `${label}=:${sig}:` };
}
const verify = (headers: Record<string, string>, over: Partial<VerifyRequestInput> = {}) =>
  verifyRequest({ method: "get", url: URL_, headers, now: new Date(NOW * 1000), keys: [{ publicKey }], ...over });
const error = async (headers: Record<string, string>, over: Partial<VerifyRequestInput> = {}): Promise<string> => {
  const r = await verify(headers, over);
  return r.ok ? "ok" : r.error;
};

describe("a hand-built signature verifies, and the result says what it covered", () => {
  it("@authority and @path, with every parameter", async () => {
    expect(await verify(forge())).toStrictEqual({
      ok: true,
      label: "sig1",
      keyid: KID,
      tag: "agent-browser-auth",
      created: NOW,
      expires: NOW + 60,
      nonce: NONCE,
      components: ['"@authority"', '"@path"'],
    });
  });
  it("every derived component has its RFC 9421 value", async () => {
    const components: Array<[string, string]> = [
      ...AUTH_PATH,
      ['"@query"', "?x=1&y=2"],
      ['"@method"', "GET"],
      ['"@scheme"', "https"],
      ['"@target-uri"', "https://shop.example/pay/a%20b?x=1&y=2"],
      ['"@request-target"', "/pay/a%20b?x=1&y=2"],
    ];
    expect(await error(forge({ components }))).toBe("ok");
    // Each value is checked: a wrong one is a bad signature.
    for (let i = 2; i < components.length; i++) {
      const wrong = components.map((c, j): [string, string] => (j === i ? [c[0], c[1] + "x"] : c));
      expect(await error(forge({ components: wrong })), components[i]![0]).toBe("bad signature");
    }
  });
  it("an empty query is ? and an empty path is /", async () => {
    const components: Array<[string, string]> = [
      ['"@authority"', "shop.example"],
      ['"@path"', "/"],
      ['"@query"', "?"],
      ['"@request-target"', "/"],
    ];
    expect(await error(forge({ components }), { url: "https://shop.example" })).toBe("ok");
  });
  it("a covered header, and a covered member of a dictionary header (an item or an inner list)", async () => {
    const headers = { "Signature-Agent": '  sig1="https://agent.example", other=(1 2)  ', "X-A": "  v  " };
    const components: Array<[string, string]> = [
      ...AUTH_PATH,
      ['"signature-agent";key="sig1"', '"https://agent.example"'],
      ['"signature-agent";key="other"', "(1 2)"],
      ['"x-a"', "v"],
    ];
    const r = await verify(forge({ components, headers }));
    expect(r).toMatchObject({ ok: true, components: ['"@authority"', '"@path"', '"signature-agent";key="sig1"', '"signature-agent";key="other"', '"x-a"'] });
    // The whole field, trimmed, when covered without key.
    const whole = await verify(forge({ components: [...AUTH_PATH, ['"signature-agent"', 'sig1="https://agent.example", other=(1 2)']], headers }));
    expect(whole.ok).toBe(true);
  });
  it("alg and nonce are optional; without a nonce the result has none", async () => {
    const params = `;created=${NOW};expires=${NOW + 60};keyid="${KID}";tag="web-bot-auth"`;
    const r = await verify(forge({ params, components: [['"@authority"', "shop.example"]] }));
    expect(r).toStrictEqual({ ok: true, label: "sig1", keyid: KID, tag: "web-bot-auth", created: NOW, expires: NOW + 60, components: ['"@authority"'] });
  });
});

describe("labels", () => {
  it("the only signature is used whatever its label; of several, sig1 unless one is named", async () => {
    expect(await verify(forge({ label: "mine" }))).toMatchObject({ ok: true, label: "mine" });
    const a = forge({ label: "a" });
    const b = forge({ label: "b", components: [['"@authority"', "shop.example"], ['"@path"', "/wrong"]] });
    const two = { "Signature-Input": `${a["Signature-Input"]}, ${b["Signature-Input"]}`, Signature: `${a.Signature}, ${b.Signature}` };
    expect(await error(two)).toBe("no signature input sig1");
    expect(await verify(two, { label: "a" })).toMatchObject({ ok: true, label: "a" });
    expect(await error(two, { label: "b" })).toBe("bad signature");
  });
  it("a missing, non-list or unmatched Signature-Input or Signature is refused by name", async () => {
    const h = forge();
    expect(await error({})).toBe("no signature");
    expect(await error({ ...h, "Signature-Input": "sig1=1" })).toBe("no signature input sig1");
    expect(await error({ ...h, Signature: "sig2=:AAAA:" })).toBe("no signature sig1");
    expect(await error({ ...h, Signature: "sig1=(1 2)" })).toBe("no signature sig1");
    expect(await error({ ...h, Signature: 'sig1="AAAA"' })).toBe("no signature sig1");
    expect(await error({ ...h, Signature: h.Signature.replace(/:(.)/, (_m, c: string) => `:${c === "A" ? "B" : "A"}`) })).toBe("bad signature");
  });
});

describe("parameters", () => {
  it("created and expires must be integers; keyid a string; alg ed25519; tag an accepted one; nonce a string", async () => {
    const drop = (name: string) => PARAMS().replace(new RegExp(`;${name}=[^;]+`), "");
    expect(await error(forge({ params: drop("created") }))).toBe("created and expires are required integers");
    expect(await error(forge({ params: drop("expires") }))).toBe("created and expires are required integers");
    expect(await error(forge({ params: PARAMS().replace(`;created=${NOW}`, `;created="${NOW}"`) }))).toBe("created and expires are required integers");
    expect(await error(forge({ params: PARAMS().replace(`;expires=${NOW + 60}`, `;expires=${NOW + 60}.5`) }))).toBe("created and expires are required integers");
    expect(await error(forge({ params: drop("keyid") }))).toBe("keyid is required");
    expect(await error(forge({ params: PARAMS().replace(`keyid="${KID}"`, "keyid=abc") }))).toBe("keyid is required");
    expect(await error(forge({ params: PARAMS().replace('alg="ed25519"', 'alg="rsa-pss-sha512"') }))).toBe("unsupported alg");
    expect(await error(forge({ params: drop("tag") }))).toBe("unacceptable tag");
    expect(await error(forge({ params: PARAMS({ tag: "other" }) }))).toBe("unacceptable tag");
    expect(await error(forge(), { tags: ["web-bot-auth"] })).toBe("unacceptable tag");
    expect(await error(forge({ params: PARAMS({ tag: "agent-payer-auth" }) }))).toBe("ok");
    expect(await error(forge({ params: PARAMS({ tag: "web-bot-auth" }) }), { tags: ["web-bot-auth"] })).toBe("ok");
    expect(await error(forge({ params: PARAMS().replace(`nonce="${NONCE}"`, "nonce=7") }))).toBe("malformed nonce");
  });

  it("the time window: created not in the future (beyond the allowed skew), not expired, at most 480 seconds", async () => {
    expect(MAX_EXPIRES_SECONDS).toBe(480);
    const at = (created: number, expires: number) => forge({ params: PARAMS({ created, expires }) });
    expect(await error(at(NOW, NOW))).toBe("ok"); // created now and expiring now: both bounds inclusive
    expect(await error(at(NOW + 1, NOW + 60))).toBe("created in the future");
    expect(await error(at(NOW + 1, NOW + 60), { skewSeconds: 1 })).toBe("ok");
    expect(await error(at(NOW + 2, NOW + 60), { skewSeconds: 1 })).toBe("created in the future");
    expect(await error(at(NOW - 60, NOW - 1))).toBe("signature expired");
    expect(await error(at(NOW - 480, NOW))).toBe("ok");
    expect(await error(at(NOW - 481, NOW))).toBe("validity window too long");
    expect(await error(at(NOW, NOW - 1))).toBe("signature expired");
    expect(await error(at(NOW - 10, NOW - 20), { now: new Date((NOW - 30) * 1000), skewSeconds: 100 })).toBe("validity window too long");
    // An invalid clock is a refusal, not an exception (1aed2a8).
    expect(await verify(at(NOW, NOW + 60), { now: new Date(Number.NaN) })).toEqual({ ok: false, error: "invalid time" });
  });
});

describe("covered components", () => {
  it("@authority must be covered; @path too, except for web-bot-auth", async () => {
    expect(await error(forge({ components: [['"@path"', "/pay/a%20b"]] }))).toBe("@authority not covered");
    expect(await error(forge({ components: [['"@authority"', "shop.example"]] }))).toBe("@path not covered");
    expect(await error(forge({ components: [['"@authority"', "shop.example"]], params: PARAMS({ tag: "web-bot-auth" }) }))).toBe("ok");
  });
  it("a Signature-Agent header must be covered", async () => {
    expect(await error(forge({ headers: { "Signature-Agent": 'sig1="https://agent.example"' } }))).toBe("Signature-Agent present but not covered");
  });
  it("derived components take no parameters; unknown ones are refused", async () => {
    expect(await error(forge({ components: [...AUTH_PATH, ['"@query";req', "?x=1&y=2"]] }))).toBe("unsupported parameters on @query");
    expect(await error(forge({ components: [...AUTH_PATH, ['"@status"', "200"]] }))).toBe("malformed component @status: unsupported derived component @status");
  });
  it("a covered header must be present, and only the key parameter (a string) is understood", async () => {
    expect(await error(forge({ components: [...AUTH_PATH, ['"x-a"', "v"]] }))).toBe("covered header x-a missing");
    const headers = { "X-D": 'm="v"' };
    expect(await error(forge({ components: [...AUTH_PATH, ['"x-d";key="n"', '"v"']], headers }))).toBe("x-d has no member n");
    expect(await error(forge({ components: [...AUTH_PATH, ['"x-d";key=1', '"v"']], headers }))).toBe("unsupported parameters on x-d");
    expect(await error(forge({ components: [...AUTH_PATH, ['"x-d";sf', 'm="v"']], headers }))).toBe("unsupported parameters on x-d");
    expect(await error(forge({ components: [...AUTH_PATH, ['"x-d";key="m";sf', '"v"']], headers }))).toBe("unsupported parameters on x-d");
    expect(await error(forge({ components: [...AUTH_PATH, ['"x-d";key="m"', "("]], headers: { "X-D": "m=(" } }))).toMatch(/^malformed component x-d: /);
  });
  it("a value that cannot appear in a signature base is refused before the signature is checked", async () => {
    expect(await error(forge({ components: [...AUTH_PATH, ['"x-a"', "a\u0001b"]], headers: { "X-A": "a\u0001b" } }))).toMatch(/^malformed: component "x-a" has a value/);
  });
});

describe("keys", () => {
  it("the key whose thumbprint is the keyid is used, inside its window (whole seconds, inclusive)", async () => {
    const other = new Uint8Array(Buffer.from(generateKeyPairSync("ed25519").publicKey.export({ format: "jwk" }).x!, "base64url"));
    const iso = (s: number) => new Date(s * 1000).toISOString();
    expect(await error(forge(), { keys: [{ publicKey: other }] })).toBe("unknown key");
    expect(await error(forge(), { keys: [{ publicKey: other }, { publicKey }] })).toBe("ok");
    expect(await error(forge(), { keys: [{ publicKey, notBefore: iso(NOW) }] })).toBe("ok");
    expect(await error(forge(), { keys: [{ publicKey, notBefore: new Date(NOW * 1000 + 999).toISOString() }] })).toBe("ok");
    expect(await error(forge(), { keys: [{ publicKey, notBefore: iso(NOW + 1) }] })).toBe("key not valid at created");
    expect(await error(forge(), { keys: [{ publicKey, notAfter: iso(NOW) }] })).toBe("ok");
    expect(await error(forge(), { keys: [{ publicKey, notAfter: new Date(NOW * 1000 - 1).toISOString() }] })).toBe("key not valid at created");
    expect(await error(forge(), { keys: [{ publicKey, notBefore: "soon" }] })).toBe("key not valid at created");
    expect(await error(forge(), { keys: [{ publicKey, notAfter: "later" }] })).toBe("key not valid at created");
  });
});

describe("malformed requests", () => {
  it("a header given twice (in any case), a URL that is not http(s) or carries credentials", async () => {
    const h = forge();
    expect(await error({ ...h, "signature-input": h["Signature-Input"] })).toBe("malformed: header signature-input given twice");
    expect(await error(h, { url: "ftp://shop.example/pay" })).toBe("malformed: url must be http or https");
    expect(await error(h, { url: "https://u:p@shop.example/pay" })).toBe("malformed: url must not carry credentials");
    expect(await error(h, { url: "/pay" })).toBe("malformed: url must be an absolute URL");
    expect(await error({ ...h, Signature: "sig1=:AAAA" })).toMatch(/^malformed: /);
  });
});

describe("signRequest's refusals name their rule", () => {
  const signer = { keyId: "k", publicKey, sign: (m: Uint8Array) => new Uint8Array(cryptoSign(null, m, privateKey)) };
  const base = { method: "GET", url: "https://shop.example/", tag: "web-bot-auth" as const, signer, now: new Date(NOW * 1000), nonce: NONCE };
  it("each input", async () => {
    await expect(signRequest({ ...base, expiresInSeconds: 1.5 })).rejects.toThrow("expiresInSeconds must be an integer between 1 and 480");
    await expect(signRequest({ ...base, expiresInSeconds: 481 })).rejects.toThrow("expiresInSeconds must be an integer between 1 and 480");
    await expect(signRequest({ ...base, nonce: Buffer.alloc(63).toString("base64") })).rejects.toThrow("nonce must be 64 random bytes in padded standard base64");
    await expect(signRequest({ ...base, tag: "x" as never })).rejects.toThrow("unknown signature tag");
    await expect(signRequest({ ...base, method: "G T" })).rejects.toThrow("invalid HTTP method");
    for (const h of ["Signature", "signature-input", "Signature-Agent"]) {
      await expect(signRequest({ ...base, headers: { [h]: "x" } })).rejects.toThrow(`the request already carries ${h.toLowerCase()}`);
    }
    await expect(signRequest({ ...base, headers: { "Content-Digest": "sha-256=:AAAA:" }, bodyDigest: "sha-256=:BBBB:" })).rejects.toThrow(
      "bodyDigest does not match the request's Content-Digest header",
    );
    await expect(signRequest({ ...base, bodyDigest: "sha-256=AAAA" })).rejects.toThrow("bodyDigest must be a Content-Digest value such as sha-256=:…:");
    await expect(signRequest({ ...base, signatureAgent: "http://agent.example" })).rejects.toThrow("signatureAgent must be an https URL");
    await expect(signRequest({ ...base, now: new Date(Number.NaN) })).rejects.toThrow("invalid time");
  });
  it("a matching Content-Digest header and bodyDigest (up to surrounding space) are covered once, trimmed", async () => {
    const s = await signRequest({ ...base, headers: { "Content-Digest": " sha-256=:AAAA: " }, bodyDigest: "sha-256=:AAAA:  " });
    expect(s.components).toEqual(['"@authority"', '"@path"', '"content-digest"']);
    expect(s.signatureBase.split("\n")[2]).toBe('"content-digest": sha-256=:AAAA:');
    expect(s.expires - s.created).toBe(60);
    expect(s.headers).not.toHaveProperty("Signature-Agent");
  });
});

describe("the survivors issue 20's run left in http-signature.ts", () => {
  const signer = { keyId: "k", publicKey, sign: (m: Uint8Array) => new Uint8Array(cryptoSign(null, m, privateKey)) };

  it("a component covered twice is refused when the base is built (the same identifier, not the same name with another key)", async () => {
    expect(() => buildSignatureBase([{ name: "@path", value: "/" }, { name: "@path", value: "/" }], "()")).toThrow('component "@path" covered twice');
    expect(buildSignatureBase([{ name: "x-d", params: [["key", "a"]], value: "1" }, { name: "x-d", params: [["key", "b"]], value: "2" }], "()")).toBe(
      '"x-d";key="a": 1\n"x-d";key="b": 2\n"@signature-params": ()',
    );
    expect(await error(forge({ components: [...AUTH_PATH, ['"@path"', "/pay/a%20b"]] }))).toMatch(/covered twice/);
  });

  it("a URL with a username only or a password only is refused like one with both", async () => {
    const h = forge();
    expect(await error(h, { url: "https://u@shop.example/pay" })).toBe("malformed: url must not carry credentials");
    expect(await error(h, { url: "https://:p@shop.example/pay" })).toBe("malformed: url must not carry credentials");
  });

  it("signRequest refuses a URL the signing-URL check refuses, with that check's own sentence", async () => {
    const url = "https://shop.example\\@evil.com/x";
    const checked = checkSigningUrl(url);
    expect(checked.ok).toBe(false);
    await expect(
      signRequest({ method: "GET", url, tag: "web-bot-auth", signer, now: new Date(NOW * 1000), nonce: NONCE }),
    ).rejects.toThrow(new Error(checked.ok ? "" : checked.problem));
  });

  it("a component identifier that is not a string is malformed, and a single parameter other than key is not understood", async () => {
    expect(await error(forge({ components: [["1", "x"], ...AUTH_PATH] }))).toBe("malformed component");
    const headers = { "X-D": 'm="v"' };
    expect(await error(forge({ components: [...AUTH_PATH, ['"x-d";name="m"', '"v"']], headers }))).toBe("unsupported parameters on x-d");
  });

  it("signDirectoryResponse: at least one key, a lifetime of 1 to 86400 whole seconds (300 by default), and an authority without /?#@ or spaces", async () => {
    const dir = { signers: [signer], authority: "sigil.example", now: new Date(NOW * 1000), nonce: NONCE };
    const ok = await signDirectoryResponse(dir);
    expect([ok.created, ok.expires]).toEqual([NOW, NOW + 300]);
    expect((await signDirectoryResponse({ ...dir, expiresInSeconds: 1 })).expires).toBe(NOW + 1);
    expect((await signDirectoryResponse({ ...dir, expiresInSeconds: 86_400 })).expires).toBe(NOW + 86_400);
    await expect(signDirectoryResponse({ ...dir, signers: [] })).rejects.toThrow("the directory needs at least one key");
    for (const bad of [0, -1, 1.5, 86_401]) {
      await expect(signDirectoryResponse({ ...dir, expiresInSeconds: bad })).rejects.toThrow("expiresInSeconds must be an integer between 1 and 86400");
    }
    for (const authority of ["", "a/b", "a?b", "a#b", "u@a", "a b", "a\tb"]) {
      await expect(signDirectoryResponse({ ...dir, authority })).rejects.toThrow("invalid authority");
    }
    expect((await signDirectoryResponse({ ...dir, authority: "localhost:8080", scheme: "http" })).signatures[0]!.signatureBase).toMatch(/^"@authority";req: localhost:8080\n/);
  });
});
