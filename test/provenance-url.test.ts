/**
 * sign_http_request signs only URLs that WHATWG and RFC 3986 parsers read alike (README: "URLs
 * sigil signs"). Each trick below sends an RFC 3986 client (curl, most HTTP libraries) somewhere
 * else than the origin and path a WHATWG parser — and so the signature — names. The table goes
 * through `evaluate`, where the pipeline decides, and through `signRequest` itself.
 */
import { generateKeyPairSync, randomBytes, sign as cryptoSign } from "node:crypto";
import { describe, expect, it } from "vitest";
import { evaluate } from "../src/policy/evaluate.js";
import { checkSigningUrl } from "../src/provenance/url.js";
import { signRequest } from "../src/provenance/http-signature.js";
import type { Signer } from "../src/crypto/jwk.js";

const usage = { countSince: () => 0, spentSince: () => 0 };
const policy = { allowedSigningOrigins: ["https://shop.example", "http://127.0.0.1:8080"] };
const decide = (url: string) => evaluate(policy as never, { kind: "sign", tool: "sign_http_request", url }, usage, Date.now());

const REFUSED: Array<[string, string, RegExp]> = [
  ["backslash before @ (WHATWG: shop.example; RFC 3986: evil.com)", "https://shop.example\\@evil.com/x", /backslash/],
  ["backslash as a path separator", "https://shop.example\\x", /backslash/],
  ["user@", "https://user@shop.example/", /userinfo/],
  [":pw@", "https://:pw@shop.example/", /userinfo/],
  ["user:pw@", "https://user:pw@shop.example/", /userinfo/],
  ["empty userinfo @", "https://@shop.example/", /userinfo/],
  ["@ after an escape", "https://shop.example%2F@evil.com/x", /userinfo/],
  ["@ after an escaped #", "https://evil.com%23@shop.example/", /userinfo/],
  ["escaped @ in the host", "https://shop.example%40evil.com/", /percent escape/],
  ["escaped dot in the host", "https://shop%2eexample/", /percent escape/],
  ["tab inside (WHATWG drops it)", "https://shop.ex\tample/", /control characters/],
  ["newline inside", "https://shop.example/\nx", /control characters/],
  ["NUL", "https://shop.example/\u0000", /control characters/],
  ["DEL", "https://shop.example/\u007f", /control characters/],
  ["leading space (WHATWG trims it)", " https://shop.example/", /whitespace/],
  ["space in the path", "https://shop.example/a b", /whitespace/],
  ["ideographic full stop (IDNA maps it to a dot)", "https://shop.example\u3002evil.com/", /non-ASCII/],
  ["fullwidth letters", "https://ｓhop.example/", /non-ASCII/],
  ["no slashes (WHATWG adds them; RFC 3986: a path)", "https:shop.example/x", /must start with/],
  ["three slashes", "https:///shop.example/x", /no host/],
  ["numeric IPv4 shorthand", "https://0x7f.1/", /host is read differently/],
  ["decimal IPv4", "https://2130706433/", /host is read differently/],
  ["non-canonical IPv6", "https://[0:0::1]/", /host is read differently/],
  ["dot segments", "https://shop.example/a/../admin", /rewritten/],
  ["escaped dot segments", "https://shop.example/a/%2e%2e/admin", /rewritten/],
  ["quote WHATWG escapes", "https://shop.example/a\"b", /rewritten/],
  ["port with a leading zero", "https://shop.example:0443/", /port/],
  ["empty port", "https://shop.example:/", /port/],
  ["relative", "/x", /must start with/],
];

describe("sign_http_request URL rules", () => {
  for (const [name, url, why] of REFUSED) {
    it(`refuses ${name}`, () => {
      const d = decide(url);
      expect(d).toMatchObject({ allow: false, reason: "invalid_arguments" });
      expect((d as { message: string }).message).toMatch(why);
      const c = checkSigningUrl(url);
      expect(c.ok).toBe(false);
    });
  }

  it("refuses them in signRequest too, whoever calls it", async () => {
    const { privateKey, publicKey } = generateKeyPairSync("ed25519");
    const signer: Signer = {
      keyId: "k",
      publicKey: new Uint8Array(Buffer.from(publicKey.export({ format: "jwk" }).x!, "base64url")),
      sign: (m) => new Uint8Array(cryptoSign(null, m, privateKey)),
    };
    const sign = (url: string) => signRequest({ method: "GET", url, tag: "web-bot-auth", signer, now: new Date(), nonce: randomBytes(64).toString("base64") });
    for (const [, url] of REFUSED) await expect(sign(url), url).rejects.toThrow();
    await expect(sign("https://shop.example/x")).resolves.toMatchObject({ url: "https://shop.example/x" });
  });

  it("allows plain URLs and returns the normalised URL that is signed", () => {
    const ok = (url: string, normalized: string) => {
      expect(decide(url)).toMatchObject({ allow: true, normalized: { kind: "sign", url: normalized, origin: new URL(normalized).origin } });
    };
    ok("https://shop.example", "https://shop.example/");
    ok("https://shop.example?q=1", "https://shop.example/?q=1");
    ok("HTTPS://Shop.EXAMPLE:443/Cart/42?x=1&y=%20#top", "https://shop.example/Cart/42?x=1&y=%20");
    ok("https://shop.example/a%2Fb/@user/~x", "https://shop.example/a%2Fb/@user/~x");
    ok("http://127.0.0.1:8080/x", "http://127.0.0.1:8080/x");
    // Allowed by these rules, refused by the policy: the origin still decides.
    expect(decide("https://xn--shp-sna.example/")).toMatchObject({ allow: false, reason: "origin_not_allowed" });
    expect(decide("https://shop.example.evil.com/")).toMatchObject({ allow: false, reason: "origin_not_allowed" });
    expect(decide("ftp://shop.example/")).toMatchObject({ allow: false, reason: "origin_not_allowed" });
    expect(decide("javascript:alert(1)")).toMatchObject({ allow: false, reason: "origin_not_allowed" });
  });
});
