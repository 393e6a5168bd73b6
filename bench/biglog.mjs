/**
 * Large audit logs for the bench, made quickly: entries are appended to an identity's log file
 * directly (the embedded home), each one a valid entry — hashed and chained exactly as the chain
 * writer does and signed with the identity's key (in worker threads: a signature does not feed
 * the next entry's hash, so only the hashing is sequential). `sigil audit verify` accepts them.
 *
 *   const { id, token } = await bigIdentity(openApp, { home, env, entries: 1_000_000, spanDays: 100 })
 *
 * The identity is created with a clock set `spanDays` in the past (so its key's validity starts
 * there) and its entries are `whoami` calls spread evenly from then to now: 1M entries over 100
 * days is the "10,000 calls a day". Then a process opens the home the ordinary way, which
 * replays the log once and, closing, writes the state snapshot a real server would have written.
 */
import { closeSync, openSync, writeSync, fsyncSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Worker } from "node:worker_threads";
import { createHash } from "node:crypto";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const dist = (p) => import(path.join(ROOT, "dist", p));

const SIGNER = `
import { parentPort, workerData } from "node:worker_threads";
import { createPrivateKey, sign } from "node:crypto";
const key = createPrivateKey({ key: Buffer.concat([Buffer.from("302e020100300506032b657004220420", "hex"), Buffer.from(workerData.seed)]), format: "der", type: "pkcs8" });
const prefix = Buffer.from("sigil-audit-entry-v1\\n");
parentPort.on("message", ({ id, hashes }) => {
  const sigs = hashes.map((h) => sign(null, Buffer.concat([prefix, Buffer.from(h)]), key).toString("base64"));
  parentPort.postMessage({ id, sigs });
});`;

function signerPool(seed, n) {
  const workers = Array.from({ length: n }, () => new Worker(SIGNER, { eval: true, workerData: { seed } }));
  const waiting = new Map();
  let next = 0;
  for (const w of workers) w.on("message", ({ id, sigs }) => (waiting.get(id)(sigs), waiting.delete(id)));
  return {
    sign: (hashes) =>
      new Promise((resolve) => {
        const id = next++;
        waiting.set(id, resolve);
        workers[id % workers.length].postMessage({ id, hashes });
      }),
    close: () => Promise.all(workers.map((w) => w.terminate())),
  };
}

export async function bigIdentity(openApp, { home, env, entries, spanDays = 100, name = "big" }) {
  const { entryHash, canonicalLine } = await dist("src/audit/entry.js");
  const end = Date.now() - 60_000;
  const start = end - spanDays * 86_400_000;
  const past = await openApp({ home, env, now: () => start });
  const created = await past.identities.create({ name, channels: ["sms"], phone: "+14155550100", policy: { allowedPhoneCountries: ["US"] } });
  const state = await past.chains.state(created.id);
  const { secretKey } = await past.keyring.signer(created.id, created.keyId);
  await past.close();
  if (entries <= 1) return created;

  const file = path.join(home, "audit", `${created.id}.jsonl`);
  const pool = signerPool(secretKey.subarray(0, 32), Math.max(1, (os.availableParallelism?.() ?? os.cpus().length)));
  const fd = openSync(file, "a");
  try {
    const step = (end - start) / entries;
    let prev = state.head;
    const zero = Buffer.from([0]);
    // Canonical (RFC 8785) forms of the entry body and of the line: keys in sorted order, ASCII
    // values without escapes. Checked against the writer's own for the first entry below.
    const canonical = (seq, ts) =>
      `{"decision":"allow","identity":"${created.id}","keyId":"${created.keyId}","phase":"call","prev":"${prev}","seq":${seq},"session":"s_bench","tool":"whoami","ts":"${ts}","v":1}`;
    const lineOf = (body, hash, sig) => {
      const [head, tail] = [body.slice(0, body.indexOf(',"identity"')), body.slice(body.indexOf(',"identity"'), body.indexOf(',"tool"'))];
      return `${head},"hash":"${hash}"${tail},"sig":"${sig}"${body.slice(body.indexOf(',"tool"'))}`;
    };
    const CHUNK = 4096;
    let pending = Promise.resolve();
    for (let from = 2; from <= entries; from += CHUNK) {
      const to = Math.min(entries, from + CHUNK - 1);
      const bodies = [];
      const hashes = [];
      for (let seq = from; seq <= to; seq++) {
        const ts = new Date(Math.floor(start + (seq - 1) * step)).toISOString();
        const body = canonical(seq, ts);
        const hash = createHash("sha256").update(zero).update(body).digest("hex");
        if (seq === 2) {
          const check = entryHash(JSON.parse(body));
          if (check !== hash) throw new Error("bench log: the canonical template does not hash like the chain writer");
        }
        bodies.push(body);
        hashes.push(hash);
        prev = hash;
      }
      const signed = pool.sign(hashes.map((h) => `${h}`));
      const write = pending;
      pending = (async () => {
        const sigs = await signed;
        await write;
        if (from === 2) {
          const first = lineOf(bodies[0], hashes[0], sigs[0]);
          if (first !== canonicalLine(JSON.parse(first))) throw new Error("bench log: the line template is not the writer's canonical line");
        }
        const lines = bodies.map((b, i) => lineOf(b, hashes[i], sigs[i]) + "\n").join("");
        writeSync(fd, lines);
      })();
      if (((from - 2) / CHUNK) % 8 === 7) await pending; // bounded memory
    }
    await pending;
    fsyncSync(fd);
  } finally {
    closeSync(fd);
    await pool.close();
  }
  // A process that opens the home replays the new entries once and writes the snapshot on close.
  const s = await openApp({ home, env });
  await s.chains.state(created.id);
  await s.close();
  return created;
}
