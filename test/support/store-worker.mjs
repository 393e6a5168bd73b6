/**
 * A separate sigil process for the store contract tests (test/store-contract.test.ts):
 *   node store-worker.mjs update|append <identityId> <tag> <n> <startAtMs>
 * opens the home named by the environment (SIGIL_HOME, SIGIL_STORE_URL), waits until startAtMs so
 * that every worker starts together, then does n read-modify-write updates of the identity, or n
 * audit chain commits, one after another. Prints nothing on success.
 */
import { openApp } from "../../dist/src/app.js";

const [mode, id, tag, nText, startAt] = process.argv.slice(2);
const n = Number(nText);
const app = await openApp({ home: process.env.SIGIL_HOME, env: process.env });
await new Promise((r) => setTimeout(r, Math.max(0, Number(startAt) - Date.now())));
for (let i = 0; i < n; i++) {
  if (mode === "update") {
    await app.store.updateIdentity(id, (r) => ({ ...r, policy: { ...r.policy, marks: [...(r.policy.marks ?? []), `${tag}:${i}`] } }));
  } else if (mode === "append") {
    await app.chains.commit(id, () => ({ value: null, draft: { tool: "contract_event", phase: "event", decision: "ok", worker: tag, i } }));
  } else {
    throw new Error(`unknown mode ${mode}`);
  }
}
await app.close();
