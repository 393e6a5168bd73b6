/**
 * vitest global setup: makes a PostgreSQL server available to the store tests.
 *
 * - `SIGIL_TEST_PG_URL` set: use that server (a superuser URL; tests create their own databases).
 * - else, PostgreSQL installed: start a throwaway cluster for this run and stop it at the end.
 * - else: say so plainly; the PostgreSQL variants are skipped, visibly. With
 *   `SIGIL_TEST_REQUIRE_PG=1` (CI) a missing PostgreSQL is a failure instead.
 */
import type { TestProject } from "vitest/node";
import { findPgBin, startCluster } from "./pg-cluster.mjs";

declare module "vitest" {
  export interface ProvidedContext {
    /** A superuser URL on the test server, or "" when there is none. */
    pgUrl: string;
    /** Why there is none. */
    pgNote: string;
    /** The PostgreSQL binaries (for tests that need a cluster of their own), or "". */
    pgBin: string;
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const bin = findPgBin() ?? "";
  let url = process.env.SIGIL_TEST_PG_URL ?? "";
  let note = "";
  let stop: (() => void) | undefined;
  if (!url) {
    if (!bin) {
      note = "PostgreSQL is not installed here (no initdb found; set SIGIL_TEST_PG_URL or SIGIL_PG_BIN): the PostgreSQL store tests are SKIPPED, only the embedded home is tested.";
    } else {
      try {
        const cluster = await startCluster({ bin });
        url = cluster.url;
        stop = cluster.stop;
        process.stderr.write(`\n[sigil tests] PostgreSQL: throwaway cluster from ${bin} at 127.0.0.1:${cluster.port}\n`);
      } catch (err) {
        note = `PostgreSQL is installed (${bin}) but a test cluster could not be started: ${(err as Error).message.slice(0, 500)}. The PostgreSQL store tests are SKIPPED.`;
      }
    }
  } else {
    process.stderr.write(`\n[sigil tests] PostgreSQL: using SIGIL_TEST_PG_URL\n`);
  }
  if (note) {
    process.stderr.write(`\n[sigil tests] *** ${note} ***\n\n`);
    if (process.env.SIGIL_TEST_REQUIRE_PG) throw new Error(`SIGIL_TEST_REQUIRE_PG is set: ${note}`);
  }
  project.provide("pgUrl", url);
  project.provide("pgNote", note);
  project.provide("pgBin", bin);
  return async () => stop?.();
}
