/**
 * Signed checkpoints: RFC 6962 Merkle trees (known answers), C2SP signed notes of each log,
 * published over HTTP and by the CLI, and `sigil audit verify --checkpoint` detecting what plain
 * verification cannot: a truncated, rolled back or rewritten log.
 */
import { createHash } from "node:crypto";
import { copyFileSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { inclusionProof, merkleRoot, verifyInclusion } from "../src/provenance/checkpoint.js";
import { openNote, parseCheckpoint } from "../src/provenance/note.js";
import { cleanupHomes, makeHome, startHttpServer, type Home } from "./support/home.js";

afterAll(cleanupHomes);

const leaf = (hex: string): Buffer => createHash("sha256").update(Buffer.concat([Buffer.from([0]), Buffer.from(hex, "hex")])).digest();

// The RFC 6962 test vectors used by Certificate Transparency implementations (e.g. Go's
// transparency-dev/merkle): leaf data, and the tree hash after each leaf is added.
const LEAVES = ["", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f"];
const ROOTS = [
  "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
  "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
  "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
  "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
  "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
  "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
  "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
  "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
];

describe("RFC 6962 Merkle trees", () => {
  it("reproduce the known tree hashes", () => {
    const leaves = LEAVES.map(leaf);
    for (let n = 1; n <= leaves.length; n++) expect(merkleRoot(leaves.slice(0, n)).toString("hex")).toBe(ROOTS[n - 1]);
    expect(merkleRoot([]).toString("hex")).toBe(createHash("sha256").digest("hex"));
  });

  it("inclusion proofs verify for every leaf of every size up to 20, and fail for anything else", () => {
    const leaves = Array.from({ length: 20 }, (_, i) => leaf(i.toString(16).padStart(2, "0")));
    for (let n = 1; n <= leaves.length; n++) {
      const tree = leaves.slice(0, n);
      const root = merkleRoot(tree);
      for (let m = 0; m < n; m++) {
        const proof = inclusionProof(tree, m);
        expect(verifyInclusion(tree[m]!, m, n, proof, root)).toBe(true);
        expect(verifyInclusion(leaf("ff"), m, n, proof, root)).toBe(false);
        if (n > 1) {
          expect(verifyInclusion(tree[m]!, (m + 1) % n, n, proof, root)).toBe(false);
          expect(verifyInclusion(tree[m]!, m, n, proof.slice(1), root)).toBe(false);
          expect(verifyInclusion(tree[m]!, m, n, [...proof, root], root)).toBe(false);
        }
      }
    }
  });
});

function logFile(home: Home, id: string): string {
  return path.join(home.env.SIGIL_HOME!, "audit", `${id}.jsonl`);
}

/** Appends exactly two entries to the identity's log (an admin change: a vault secret stored, intent and result). */
let puts = 0;
function twoEntries(home: Home, id: string): void {
  home.json(["secret", "put", id, `filler-${++puts}`], { input: "v" });
}

function entryCount(home: Home, id: string): number {
  return readFileSync(logFile(home, id), "utf8").trim().split("\n").length;
}

describe("checkpoints of an identity's audit log", () => {
  it("are C2SP signed notes over <origin, size, Merkle root>, signed by the identity's key; the HTTP server publishes the same bytes", async () => {
    const home = makeHome();
    const a = home.createIdentity({ name: "cp", channels: "", policy: {} });
    twoEntries(home, a.id);
    const cp = home.json(["audit", "checkpoint", a.id]);
    expect(cp).toMatchObject({ origin: `sigil/${a.id}`, size: 3, keyId: a.keyId });
    const raw = home.cli(["audit", "checkpoint", a.id]).stdout;
    expect(raw).toBe(cp.note);
    const opened = openNote(cp.note, [{ name: `sigil/${a.id}`, publicKey: new Uint8Array(Buffer.from(a.publicKey, "base64")) }]);
    const body = parseCheckpoint(opened.text);
    const hashes = readFileSync(logFile(home, a.id), "utf8").trim().split("\n").map((l) => Buffer.from(JSON.parse(l).hash, "hex"));
    expect(body.size).toBe(3);
    expect(Buffer.from(body.rootHash).equals(merkleRoot(hashes))).toBe(true);
    // another key does not open it
    const stranger = home.createIdentity({ name: "other", channels: "", policy: {} });
    expect(() => openNote(cp.note, [{ name: `sigil/${a.id}`, publicKey: new Uint8Array(Buffer.from(stranger.publicKey, "base64")) }])).toThrow();

    const server = await startHttpServer(home);
    try {
      const res = await fetch(`${new URL(server.url).origin}/identities/${a.id}/checkpoint`);
      expect(res.status).toBe(200);
      expect(res.headers.get("content-type")).toMatch(/^text\/plain/);
      expect(await res.text()).toBe(cp.note); // same size, same key: Ed25519 is deterministic
      expect(entryCount(home, a.id)).toBe(3); // publishing writes nothing
    } finally {
      await server.stop();
    }
  }, 30_000);

  it("detect truncation, rollback and rewritten history that plain verification accepts", () => {
    const home = makeHome();
    const a = home.createIdentity({ name: "victim", channels: "", policy: {} });
    twoEntries(home, a.id);
    home.json(["identity", "rotate-key", a.id]);
    twoEntries(home, a.id);
    const file = logFile(home, a.id);
    const snapshot = path.join(home.dir, "old.jsonl");
    copyFileSync(file, snapshot); // 7 entries: what a rollback would restore
    twoEntries(home, a.id);
    twoEntries(home, a.id);
    const cpFile = path.join(home.dir, "cp.txt");
    writeFileSync(cpFile, home.cli(["audit", "checkpoint", a.id]).stdout); // size 11, signed by the rotated key
    const verify = () => home.cli(["audit", "verify", "--checkpoint", cpFile, "--json"]);

    // The untouched log, and the log after more entries, still hold the checkpoint.
    expect(JSON.parse(verify().stdout)).toMatchObject({ ok: true, checkpoint: { ok: true, size: 11, identityId: a.id } });
    twoEntries(home, a.id);
    const grown = verify();
    expect(grown.code).toBe(0);
    expect(JSON.parse(grown.stdout).checkpoint).toMatchObject({ ok: true, size: 11, logEntries: 13 });
    expect(home.cli(["audit", "verify", a.id, "--checkpoint", cpFile]).stdout).toMatch(/ok {3}checkpoint sigil\/\S+ size 11/);

    // Truncation: keep the first four entries. Plain verification cannot tell.
    const lines = readFileSync(file, "utf8").trim().split("\n");
    writeFileSync(file, lines.slice(0, 4).join("\n") + "\n");
    expect(home.json(["audit", "verify", a.id]).ok).toBe(true);
    const truncated = verify();
    expect(truncated.code).toBe(1);
    expect(JSON.parse(truncated.stdout)).toMatchObject({ ok: false, checkpoint: { ok: false, size: 11, logEntries: 4 } });
    expect(JSON.parse(truncated.stdout).checkpoint.error).toMatch(/truncated or rolled back/);
    expect(truncated.stderr).toMatch(/truncated or rolled back/);

    // Rollback to the snapshot: same.
    copyFileSync(snapshot, file);
    expect(home.json(["audit", "verify", a.id]).ok).toBe(true);
    expect(verify().code).toBe(1);

    // Rewritten history: from the snapshot, the operator appends other (validly signed) entries
    // until the log is as long as before. Plain verification accepts it; the checkpoint does not.
    twoEntries(home, a.id);
    twoEntries(home, a.id);
    home.json(["identity", "revoke", a.id]);
    expect(entryCount(home, a.id)).toBe(13);
    expect(home.json(["audit", "verify", a.id]).ok).toBe(true);
    const rewritten = verify();
    expect(rewritten.code).toBe(1);
    expect(JSON.parse(rewritten.stdout).checkpoint.error).toMatch(/history rewritten/);
  });

  it("check a bundle against a checkpoint offline, and refuse a checkpoint of another identity or a forged one", () => {
    const home = makeHome();
    const a = home.createIdentity({ name: "bundled", channels: "", policy: {} });
    const b = home.createIdentity({ name: "bystander", channels: "", policy: {} });
    twoEntries(home, a.id);
    twoEntries(home, a.id);
    const cpFile = path.join(home.dir, "cp.json");
    writeFileSync(cpFile, home.cli(["audit", "checkpoint", a.id, "--json"]).stdout); // the --json form works too
    const bundleFile = path.join(home.dir, "bundle.json");
    const bundle = JSON.parse(home.cli(["audit", "export", a.id]).stdout);
    writeFileSync(bundleFile, JSON.stringify(bundle));
    const offline = { env: { SIGIL_HOME: path.join(home.dir, "nowhere") } };
    const ok = home.cli(["audit", "verify", "--bundle", bundleFile, "--checkpoint", cpFile, "--json"], offline);
    expect(ok.code).toBe(0);
    expect(JSON.parse(ok.stdout)).toMatchObject({ ok: true, checkpoint: { ok: true, size: 5 } });

    writeFileSync(bundleFile, JSON.stringify({ ...bundle, entries: bundle.entries.slice(0, 2) }));
    const cut = home.cli(["audit", "verify", "--bundle", bundleFile, "--checkpoint", cpFile, "--json"], offline);
    expect(cut.code).toBe(1);
    expect(JSON.parse(cut.stdout).identities[0].ok).toBe(true); // the shorter bundle itself verifies
    expect(JSON.parse(cut.stdout).checkpoint.error).toMatch(/truncated or rolled back/);

    // A checkpoint about `a` checked as `b`'s: refused with a clear sentence.
    const wrongId = home.cli(["audit", "verify", b.id, "--checkpoint", cpFile]);
    expect(wrongId.code).toBe(1);
    expect(wrongId.stderr).toMatch(/checkpoint is about/);

    // A note claiming to be a's, signed by b's key: does not verify.
    const bNote = home.cli(["audit", "checkpoint", b.id]).stdout;
    const forged = bNote.replace(`sigil/${b.id}`, `sigil/${a.id}`);
    const forgedFile = path.join(home.dir, "forged.txt");
    writeFileSync(forgedFile, forged);
    const r = home.cli(["audit", "verify", "--checkpoint", forgedFile, "--json"]);
    expect(r.code).toBe(1);
    expect(JSON.parse(r.stdout).checkpoint.error).toMatch(/does not verify/);
  });
});
