import { defineConfig } from "vitest/config";

/**
 * The in-process unit tests of the decision modules, for `npm run test:mutation` (Stryker). No
 * PostgreSQL global setup and no end-to-end files: Stryker mutates src/ and these tests import it
 * directly. fast-check properties run fewer cases per mutant (test/support/mutation-setup.ts).
 */
export default defineConfig({
  test: {
    include: [
      "test/policy.test.ts",
      "test/email-address.test.ts",
      "test/exfiltration.test.ts",
      "test/provenance-http-signature.test.ts",
      "test/unit/**/*.test.ts",
    ],
    setupFiles: ["test/support/mutation-setup.ts"],
    testTimeout: 60_000,
    pool: "forks",
  },
});
