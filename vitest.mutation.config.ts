import { defineConfig } from "vitest/config";

/**
 * The in-process unit tests of the decision modules, for `npm run test:mutation` (Stryker). No
 * PostgreSQL global setup and no end-to-end files: Stryker mutates src/ and these tests import it
 * directly. fast-check properties run fewer cases per mutant (test/support/mutation-setup.ts).
 *
 * When `SIGIL_MUTATE` names one module, only the test files that exercise it are loaded (the map
 * below): Stryker's dry run and every mutant run then pay for those files only.
 */
const TESTS_FOR: Record<string, string[]> = {
  "src/policy/evaluate.ts": ["test/unit/evaluate.test.ts", "test/policy.test.ts", "test/approval-policy.test.ts"],
  "src/policy/email-address.ts": ["test/unit/email-address.test.ts", "test/email-address.test.ts"],
  "src/policy/exfiltration.ts": ["test/unit/exfiltration.test.ts", "test/exfiltration.test.ts"],
  "src/audit/verify.ts": ["test/unit/audit-verify.test.ts", "test/unit/audit-verify-threads.test.ts"],
  "src/audit/verify-entry.ts": ["test/unit/audit-verify.test.ts"],
  "src/provenance/receipt.ts": ["test/unit/receipt-verify.test.ts"],
  "src/provenance/http-signature.ts": ["test/unit/http-signature.test.ts", "test/provenance-http-signature.test.ts"],
  "src/approval/evidence.ts": ["test/approval-evidence.test.ts"],
  "src/identity/record-mac.ts": ["test/record-mac.test.ts"],
};
const ALL = [
  "test/policy.test.ts",
  "test/email-address.test.ts",
  "test/exfiltration.test.ts",
  "test/provenance-http-signature.test.ts",
  "test/approval-policy.test.ts",
  "test/approval-evidence.test.ts",
  "test/record-mac.test.ts",
  "test/unit/**/*.test.ts",
];
// A module may be given with a line range (`src/policy/evaluate.ts:100-120`, Stryker's syntax).
const mutated = (process.env.SIGIL_MUTATE ?? "").split(",").filter((m) => m !== "").map((m) => m.replace(/:[\d:-]+$/, ""));
const include = mutated.length > 0 && mutated.every((m) => m in TESTS_FOR) ? [...new Set(mutated.flatMap((m) => TESTS_FOR[m]!))] : ALL;

export default defineConfig({
  test: {
    include,
    setupFiles: ["test/support/mutation-setup.ts"],
    testTimeout: 60_000,
    pool: "forks",
  },
});
