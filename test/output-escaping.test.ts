/**
 * Output cannot be forged by input: whatever the CLI prints that came from a file, an argument or
 * a mail header — receipt and bundle fields, identity ids and names, header values, error details
 * — reaches the terminal with its control characters and terminal sequences escaped, so it can
 * neither rewrite the screen nor fake a line of sigil's own output.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { cleanupHomes, makeHome, stdioClient, type Home, type Identity } from "./support/home.js";
import { printableJson, printableText, shown } from "../dist/src/util/printable.js";

/** ESC sequences (clear screen, set title, colour), CR, BEL, BS, DEL, a C1 CSI, line/paragraph separators, a bidi override. */
const HOSTILE = "\x1b[2J\x1b]0;owned\x07\r\b\x7f\u009b31m\u2028\u2029\u202e";
const FAKE_LINE = "\nok   id_00000000000000000000: 1 entries verify";
const RAW = /[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]/;

afterAll(cleanupHomes);

/** Nothing raw, and no line that starts like one of sigil's verdicts except the real one. */
function expectInert(out: string): void {
  expect(out).not.toMatch(RAW);
  expect(out).not.toMatch(/^ok {3}id_0{20}/m);
}

describe("the escaping itself", () => {
  it("shows every control character, separator and bidi control visibly and keeps the rest", () => {
    expect(shown(`a${HOSTILE}b\n`)).toBe("a\\x1B[2J\\x1B]0;owned\\x07\\x0D\\x08\\x7F\\x9B31m\\u2028\\u2029\\u202Eb\\x0A");
    expect(shown("Zoë — 東京 ✓ 😀 \\")).toBe("Zoë — 東京 ✓ 😀 \\");
    expect(printableText("line 1\nline\r2\x1b")).toBe("line 1\nline\\x0D2\\x1B");
    const json = printableJson(JSON.stringify({ v: HOSTILE }));
    expect(json).not.toMatch(RAW);
    expect(JSON.parse(json)).toEqual({ v: HOSTILE }); // the same document to any JSON reader
  });
});

describe("the CLI escapes what it prints from input", () => {
  let home: Home;
  let a: Identity;
  beforeAll(async () => {
    home = makeHome();
    a = home.createIdentity({ channels: "" });
    const { client } = await stdioClient(home, a.token);
    await client.callTool({ name: "whoami", arguments: {} });
    await client.close();
  });

  it("receipt verify: hostile receipt fields in the verdict line, in text and JSON", () => {
    const receipt = home.json(["receipt", "show", a.id, "2"]);
    receipt.identity = `${a.id}${HOSTILE}${FAKE_LINE}`;
    receipt.entry.tool = `whoami${HOSTILE}`;
    const file = path.join(home.dir, "receipt.json");
    writeFileSync(file, JSON.stringify(receipt));
    const text = home.cli(["receipt", "verify", file]);
    expect(text.code).toBe(1);
    expect(text.stdout).toMatch(/^FAIL id_\w+\\x1B\[2J/);
    expectInert(text.stdout + text.stderr);
    const json = home.cli(["receipt", "verify", file, "--json"]);
    expectInert(json.stdout + json.stderr);
    expect(JSON.parse(json.stdout).identityId).toBe(receipt.identity);
  });

  it("audit verify --bundle: a hostile identity id and entry fields", () => {
    const bundle = home.json(["audit", "export", a.id]);
    bundle.identity.id = `${a.id}${HOSTILE}${FAKE_LINE}`;
    bundle.entries[1].keyId = `k${HOSTILE}${FAKE_LINE}`;
    const file = path.join(home.dir, "bundle.json");
    writeFileSync(file, JSON.stringify(bundle));
    for (const args of [["audit", "verify", "--bundle", file], ["audit", "verify", "--bundle", file, "--json"]]) {
      const r = home.cli(args);
      expect(r.code).toBe(1);
      expectInert(r.stdout + r.stderr);
    }
    expect(home.cli(["audit", "verify", "--bundle", file]).stdout).toMatch(/^FAIL id_\w+\\x1B\[2J.*\\x0Aok {3}id_0+/);
  });

  it("error lines: a hostile argument echoed in an error, and in a usage error", () => {
    const missing = home.cli(["identity", "show", `id_${HOSTILE}${FAKE_LINE}`]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/^sigil: No identity id_\\x1B\[2J/);
    expectInert(missing.stdout + missing.stderr);
    const usage = home.cli(["audit", "verify", `--x${HOSTILE}`]);
    expect(usage.code).toBe(2);
    expectInert(usage.stderr);
    const keys = home.cli(["audit", "verify", "--bundle", path.join(home.dir, "bundle.json"), "--keys", `/nonexistent/${HOSTILE}`]);
    expect(keys.code).toBe(1);
    expect(keys.stderr).toMatch(/cannot be read/);
    expectInert(keys.stderr);
  });

  it("receipt verify-email: hostile mail headers in the JSON report and the error line", () => {
    const jwks = path.join(home.dir, "keys.json");
    writeFileSync(jwks, home.cli(["keys", "export", a.id]).stdout);
    const eml = [
      `From: "Bank${HOSTILE}" <a@example.com>`,
      `To: b${"\u2028"}@example.com`,
      `Message-ID: <x${"\u009b"}@example.com>`,
      `Subject: hi`,
      `Sigil-Signature: v=1; id=${a.id}${"\x1b"}[2J; kid=x; ts=1; sig=AAAA`,
      ``,
      `body`,
      ``,
    ].join("\r\n");
    const file = path.join(home.dir, "mail.eml");
    writeFileSync(file, Buffer.from(eml, "utf8"));
    for (const args of [["receipt", "verify-email", file, "--keys", jwks], ["receipt", "verify-email", file, "--keys", jwks, "--json"]]) {
      const r = home.cli(args);
      expect(r.code).toBe(1);
      expectInert(r.stdout + r.stderr);
    }
    expect(readFileSync(file, "utf8")).toContain("\x1b"); // the hostile bytes really were there
  });
});
