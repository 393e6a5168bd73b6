/**
 * Throwaway PostgreSQL clusters for tests and benchmarks: `initdb` into a temp dir, `pg_ctl start`
 * on a free loopback port, `stop()` removes everything. Plain JavaScript so that `bench/pg.mjs`
 * can use it as well as the vitest global setup.
 *
 * PostgreSQL refuses to run as root, so as root the cluster runs as the `postgres` user
 * (`runuser -u postgres`), in a directory handed over to it.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { chownSync, existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";

/** The directory with initdb/pg_ctl, or undefined when PostgreSQL is not installed. */
export function findPgBin(env = process.env) {
  if (env.SIGIL_PG_BIN && existsSync(path.join(env.SIGIL_PG_BIN, "initdb"))) return env.SIGIL_PG_BIN;
  const base = "/usr/lib/postgresql";
  if (existsSync(base)) {
    const versions = readdirSync(base)
      .filter((v) => existsSync(path.join(base, v, "bin", "initdb")))
      .sort((a, b) => Number(b) - Number(a));
    if (versions[0]) return path.join(base, versions[0], "bin");
  }
  try {
    const dir = execFileSync("pg_config", ["--bindir"], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim();
    if (existsSync(path.join(dir, "initdb"))) return dir;
  } catch {
    /* not on PATH */
  }
  return undefined;
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

function postgresUser() {
  const r = spawnSync("id", ["-u", "postgres"], { encoding: "utf8" });
  const g = spawnSync("id", ["-g", "postgres"], { encoding: "utf8" });
  if (r.status !== 0) throw new Error("running as root, but there is no `postgres` user to run PostgreSQL as");
  return { uid: Number(r.stdout.trim()), gid: Number(g.stdout.trim()) };
}

/**
 * Starts a cluster. Returns `{ url, port, dir, bin, stop, stopServer, startServer, restart }`;
 * `url` is the superuser's URL for the `postgres` database (trust auth, loopback only).
 */
export async function startCluster(opts = {}) {
  const bin = opts.bin ?? findPgBin();
  if (!bin) throw new Error("PostgreSQL is not installed (no initdb found)");
  const dir = mkdtempSync(path.join(os.tmpdir(), "sigil-pg-"));
  const asRoot = typeof process.getuid === "function" && process.getuid() === 0;
  if (asRoot) {
    const { uid, gid } = postgresUser();
    chownSync(dir, uid, gid);
  }
  const run = (cmd, args, check = true) => {
    const full = asRoot ? ["runuser", ["-u", "postgres", "--", path.join(bin, cmd), ...args]] : [path.join(bin, cmd), args];
    const r = spawnSync(full[0], full[1], { cwd: dir, encoding: "utf8", timeout: 60_000 });
    if (check && r.status !== 0) throw new Error(`${cmd} failed: ${(r.stderr || r.stdout || String(r.error)).slice(0, 2000)}`);
    return r;
  };
  const data = path.join(dir, "data");
  run("initdb", ["-D", data, "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync"]);
  let port = 0;
  const settings = {
    listen_addresses: "127.0.0.1",
    unix_socket_directories: dir,
    fsync: "off",
    synchronous_commit: "off",
    full_page_writes: "off",
    max_connections: "400",
    shared_buffers: "64MB",
    ...(opts.settings ?? {}),
  };
  const startServer = () => {
    const o = [`-p ${port}`, ...Object.entries(settings).map(([k, v]) => `-c ${k}=${v}`)].join(" ");
    run("pg_ctl", ["-D", data, "-l", path.join(dir, "log"), "-w", "-t", "30", "-o", o, "start"]);
  };
  const stopServer = (mode = "fast") => run("pg_ctl", ["-D", data, "-m", mode, "-w", "stop"], false);
  for (let attempt = 0; ; attempt++) {
    port = opts.port ?? (await freePort());
    try {
      startServer();
      break;
    } catch (err) {
      if (attempt >= 2 || opts.port) {
        rmSync(dir, { recursive: true, force: true });
        throw err;
      }
    }
  }
  let stopped = false;
  const stop = () => {
    if (stopped) return;
    stopped = true;
    stopServer("immediate");
    rmSync(dir, { recursive: true, force: true });
  };
  process.once("exit", stop);
  return {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    port,
    dir,
    bin,
    stop,
    stopServer,
    startServer,
    restart(mode = "fast") {
      stopServer(mode);
      startServer();
    },
  };
}

/** `url` with its database name replaced. */
export function withDatabase(url, name) {
  const u = new URL(url);
  u.pathname = "/" + name;
  return u.toString();
}
