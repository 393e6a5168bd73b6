/**
 * The environment is read in one place (src/config.ts): every variable's default, what a bad value
 * gets (one error naming it, exit 2, nothing changed), and that the README's table and `--help`
 * list exactly the variables config.ts parses.
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { ConfigError, VARIABLES, parseConfig } from "../src/config.js";
import { CLI, ROOT, cleanupHomes, makeHome } from "./support/home.js";

afterAll(cleanupHomes);

describe("parseConfig", () => {
  it("gives every variable its documented default when the environment is empty, and blank counts as unset", () => {
    const defaults = {
      home: path.join(os.homedir(), ".sigil"),
      allowedHosts: [],
      allowedOrigins: [],
      maxSessionsPerIdentity: 32,
      requestTimeoutMs: 30_000,
      refusalsPerMinute: 60,
      approvalTimeoutMs: 120_000,
      providerTimeoutMs: 15_000,
      cardLatencyMs: 0,
    };
    expect(parseConfig({})).toStrictEqual(defaults);
    const blank = Object.fromEntries(VARIABLES.map((v) => [v.name, "  "]));
    expect(parseConfig(blank)).toStrictEqual(defaults);
  });

  it("parses a value for every variable", () => {
    const env = {
      SIGIL_HOME: "rel/home",
      SIGIL_STORE_URL: " postgresql://u:p@db:5432/sigil ",
      SIGIL_TOKEN: " sigil_agent_x ",
      SIGIL_TOKEN_FILE: "/run/token",
      SIGIL_APPROVER_TOKEN: " sigil_approver_y ",
      SIGIL_MASTER_KEY: "A".repeat(43) + "=",
      SIGIL_SMTP_URL: "smtp://u:p@mail:587",
      TWILIO_ACCOUNT_SID: "AC123",
      TWILIO_AUTH_TOKEN: "tok",
      SIGIL_TWILIO_API_URL: "http://127.0.0.1:9999",
      SIGIL_PROVIDER_TIMEOUT_MS: "750",
      SIGIL_DKIM_DOMAIN: "sigil.example",
      SIGIL_DKIM_SELECTOR: "s1",
      SIGIL_DKIM_PRIVATE_KEY_FILE: "/etc/dkim.pem",
      SIGIL_CARD_PROCESSOR_URL: "https://issuer.example/charges",
      SIGIL_CARD_PROCESSOR_TOKEN: "proc",
      SIGIL_CARD_DECLINE_ABOVE_CENTS: "900",
      SIGIL_CARD_LATENCY_MS: "40",
      SIGIL_APPROVAL_TIMEOUT_MS: "5000",
      SIGIL_PUBLIC_URL: "https://sigil.example/some/path",
      SIGIL_ALLOWED_HOSTS: "a.example:443, b.example ,",
      SIGIL_ALLOWED_ORIGINS: "https://a.example",
      SIGIL_MAX_SESSIONS_PER_IDENTITY: "5",
      SIGIL_REQUEST_TIMEOUT_MS: "1500",
      SIGIL_REFUSALS_PER_MINUTE: "1000000",
      SIGIL_VERIFY_THREADS: "0",
      SIGIL_INBOUND_SMTP_PORT: "2525",
      SIGIL_INBOUND_TLS_CERT_FILE: "/etc/mx.crt",
      SIGIL_INBOUND_TLS_KEY_FILE: "/etc/mx.key",
      SIGIL_TEST_DNS_FILE: "/tmp/dns.json",
      SIGIL_TEST_FAULTS: "datasync@/audit/=EIO",
      SIGIL_TEST_CRASH: "key_rotated:after-intent",
      SIGIL_TEST_CLOCK_OFFSET_MS: "7200000",
      SIGIL_TEST_OAUTH_HTTP_DOCUMENTS: "1",
    };
    // The test names every variable config.ts knows, so a new one cannot go untested.
    expect(Object.keys(env).sort()).toEqual(VARIABLES.map((v) => v.name).sort());
    expect(parseConfig(env)).toStrictEqual({
      home: path.resolve("rel/home"),
      storeUrl: "postgresql://u:p@db:5432/sigil",
      token: "sigil_agent_x",
      tokenFile: "/run/token",
      approverToken: "sigil_approver_y",
      masterKey: "A".repeat(43) + "=",
      smtpUrl: "smtp://u:p@mail:587",
      twilio: { accountSid: "AC123", authToken: "tok" },
      twilioApiUrl: "http://127.0.0.1:9999",
      providerTimeoutMs: 750,
      dkim: { domainName: "sigil.example", keySelector: "s1", privateKeyFile: "/etc/dkim.pem" },
      cardProcessorUrl: "https://issuer.example/charges",
      cardProcessorToken: "proc",
      cardDeclineAboveCents: 900,
      cardLatencyMs: 40,
      approvalTimeoutMs: 5000,
      publicUrl: "https://sigil.example",
      allowedHosts: ["a.example:443", "b.example"],
      allowedOrigins: ["https://a.example"],
      maxSessionsPerIdentity: 5,
      requestTimeoutMs: 1500,
      refusalsPerMinute: 1_000_000,
      verifyThreads: 0,
      inboundSmtpPort: 2525,
      inboundTls: { certFile: "/etc/mx.crt", keyFile: "/etc/mx.key" },
      testDnsFile: "/tmp/dns.json",
      testFaults: "datasync@/audit/=EIO",
      testCrash: "key_rotated:after-intent",
      testClockOffsetMs: 7_200_000,
      testOAuthHttpDocuments: true,
    });
  });

  const bad: Array<[Record<string, string>, RegExp]> = [
    [{ SIGIL_INBOUND_SMTP_PORT: "70000" }, /^SIGIL_INBOUND_SMTP_PORT must be a whole number from 0 to 65535, not "70000"\.$/],
    [{ SIGIL_INBOUND_TLS_CERT_FILE: "/etc/mx.crt" }, /STARTTLS needs both SIGIL_INBOUND_TLS_CERT_FILE and SIGIL_INBOUND_TLS_KEY_FILE, or neither/],
    [{ SIGIL_MAX_SESSIONS_PER_IDENTITY: "abc" }, /^SIGIL_MAX_SESSIONS_PER_IDENTITY must be a whole number from 1 to 10000, not "abc"\.$/],
    [{ SIGIL_MAX_SESSIONS_PER_IDENTITY: "0" }, /SIGIL_MAX_SESSIONS_PER_IDENTITY must be a whole number from 1 to 10000/],
    [{ SIGIL_REQUEST_TIMEOUT_MS: "-5" }, /^SIGIL_REQUEST_TIMEOUT_MS must be a whole number from 100 to 3600000, not "-5"\.$/],
    [{ SIGIL_PROVIDER_TIMEOUT_MS: "1.5" }, /^SIGIL_PROVIDER_TIMEOUT_MS must be a whole number from 1 to 600000/],
    [{ SIGIL_APPROVAL_TIMEOUT_MS: "10" }, /^SIGIL_APPROVAL_TIMEOUT_MS must be a whole number from 1000 to 3600000/],
    [{ SIGIL_REFUSALS_PER_MINUTE: "lots" }, /^SIGIL_REFUSALS_PER_MINUTE must be a whole number from 1 to 1000000/],
    [{ SIGIL_CARD_LATENCY_MS: "60001" }, /^SIGIL_CARD_LATENCY_MS must be a whole number from 0 to 60000/],
    [{ SIGIL_CARD_DECLINE_ABOVE_CENTS: "1e3" }, /^SIGIL_CARD_DECLINE_ABOVE_CENTS must be a whole number/],
    [{ SIGIL_VERIFY_THREADS: "many" }, /^SIGIL_VERIFY_THREADS must be a whole number/],
    [{ SIGIL_STORE_URL: "mysql://u:hunter2@db/x" }, /^SIGIL_STORE_URL \(or --store\) must start with postgres:\/\/ or postgresql:\/\/\.$/],
    [{ SIGIL_PUBLIC_URL: "http://sigil.example" }, /^SIGIL_PUBLIC_URL must be an https URL without credentials\.$/],
    [{ SIGIL_PUBLIC_URL: "https://u:hunter2@sigil.example" }, /^SIGIL_PUBLIC_URL must be an https URL without credentials\.$/],
    [{ SIGIL_CARD_PROCESSOR_URL: "not a url" }, /^SIGIL_CARD_PROCESSOR_URL must be an http\(s\) URL\.$/],
    [{ SIGIL_TWILIO_API_URL: "ftp://x" }, /^SIGIL_TWILIO_API_URL must be an http\(s\) URL\.$/],
    [{ SIGIL_DKIM_DOMAIN: "-bad-", SIGIL_DKIM_SELECTOR: "s1", SIGIL_DKIM_PRIVATE_KEY_FILE: "/k" }, /^SIGIL_DKIM_DOMAIN is not a domain name\.$/],
    [{ SIGIL_DKIM_SELECTOR: "s1" }, /DKIM needs all of SIGIL_DKIM_DOMAIN, SIGIL_DKIM_SELECTOR and SIGIL_DKIM_PRIVATE_KEY_FILE/],
    [{ TWILIO_AUTH_TOKEN: "hunter2" }, /Twilio needs both TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN/],
  ];
  for (const [env, message] of bad) {
    it(`refuses ${JSON.stringify(env)} with one ConfigError naming the variable`, () => {
      let err: unknown;
      try {
        parseConfig(env);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(ConfigError);
      expect((err as ConfigError).publicMessage).toMatch(message);
      expect((err as ConfigError).publicMessage).not.toContain("hunter2"); // a URL's or token's secret is never echoed
    });
  }

  it("names every bad variable at once", () => {
    expect(() => parseConfig({ SIGIL_REQUEST_TIMEOUT_MS: "x", SIGIL_CARD_LATENCY_MS: "y" })).toThrow(
      /^SIGIL_CARD_LATENCY_MS must be .*; SIGIL_REQUEST_TIMEOUT_MS must be /,
    );
  });
});

describe("one place", () => {
  it("no module but src/config.ts and the CLI entry reads process.env", () => {
    const readers: string[] = [];
    const walk = (dir: string): void => {
      for (const name of readdirSync(dir)) {
        const p = path.join(dir, name);
        if (statSync(p).isDirectory()) walk(p);
        else if (p.endsWith(".ts") && /process\.env\b/.test(readFileSync(p, "utf8").replace(/^\s*(\/\/|\/\*|\*).*$/gm, ""))) readers.push(path.relative(ROOT, p));
      }
    };
    for (const d of ["src", "store", "tools"]) walk(path.join(ROOT, d));
    expect(readers.sort()).toEqual(["src/cli/main.ts"]);
  });

  it("the README's Environment table is config.ts's list: each variable with its meaning and default", () => {
    const readme = readFileSync(path.join(ROOT, "README.md"), "utf8");
    const section = readme.slice(readme.indexOf("\n## Environment\n"), readme.indexOf("\n### Limits of the HTTP server"));
    const rows = section.split("\n").filter((l) => /^\| `[A-Z_]+` \|/.test(l));
    expect(rows).toEqual(VARIABLES.map((v) => `| \`${v.name}\` | ${v.meaning} | ${v.default} |`));
  });

  it("`sigil --help` lists every variable", () => {
    const r = spawnSync(process.execPath, [CLI, "--help"], { encoding: "utf8" });
    expect(r.status).toBe(0);
    for (const v of VARIABLES) expect(r.stdout).toContain(v.name);
  });
});

describe("a bad value through the CLI", () => {
  it("stops the command with exit 2 and one sentence naming the variable, before anything is created or changed", () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), "sigil-config-"));
    try {
      const fresh = path.join(dir, "home");
      const r = spawnSync(process.execPath, [CLI, "init"], {
        env: { ...process.env, SIGIL_HOME: fresh, SIGIL_STORE_URL: "", SIGIL_MAX_SESSIONS_PER_IDENTITY: "abc" },
        encoding: "utf8",
      });
      expect(r.status).toBe(2);
      expect(r.stderr).toBe('sigil: SIGIL_MAX_SESSIONS_PER_IDENTITY must be a whole number from 1 to 10000, not "abc".\n');
      expect(r.stdout).toBe("");
      expect(existsSync(fresh)).toBe(false); // no home, no master key
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }

    const home = makeHome();
    const before = home.json<unknown[]>(["identity", "list"]).length;
    const created = home.cli(["identity", "create", "--name", "x", "--channels", "email"], { env: { SIGIL_REQUEST_TIMEOUT_MS: "-1" } });
    expect(created.code).toBe(2);
    expect(created.stderr).toMatch(/^sigil: SIGIL_REQUEST_TIMEOUT_MS must be a whole number from 100 to 3600000, not "-1"\.\n$/);
    expect(home.json<unknown[]>(["identity", "list"]).length).toBe(before);
  });
});
