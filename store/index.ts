/**
 * Chooses the store backend: the embedded home by default, PostgreSQL when a `postgres://` URL is
 * given (`SIGIL_STORE_URL` or `--store`). The home directory stays in use either way: it holds the
 * master key file (unless SIGIL_MASTER_KEY is set) and the offline outbox.
 */
import { realpathSync } from "node:fs";
import { type FileLayer, realFiles } from "../src/util/fsx.js";
import { createLocks } from "../src/util/lock.js";
import { FileStore } from "./file/index.js";
import { PostgresStore } from "./postgres/index.js";
import { isPostgresUrl, redactUrl } from "./postgres/db.js";
import { type Store, StoreError } from "./types.js";

export interface StoreOptions {
  home: string;
  files?: FileLayer;
  /** A `postgres://` or `postgresql://` URL; absent or empty: the embedded home. */
  storeUrl?: string;
}

/** The home's real path: its `locks/` directory holds every cross-process lock of the home (see src/util/lock.ts). */
export function lockNamespace(home: string): string {
  try {
    return realpathSync(home);
  } catch {
    return home;
  }
}

export function openFileStore(opts: StoreOptions): Store {
  return new FileStore(opts.home, opts.files ?? realFiles, createLocks(lockNamespace(opts.home)));
}

export function openStore(opts: StoreOptions): Store {
  const url = opts.storeUrl?.trim();
  if (!url) return openFileStore(opts);
  if (!isPostgresUrl(url)) throw new StoreError("the store URL must start with postgres:// or postgresql://", "unreadable");
  return new PostgresStore(url);
}

/** Where a store keeps its data, for messages (never a password). */
export function describeStore(opts: StoreOptions): string {
  const url = opts.storeUrl?.trim();
  return url ? `the PostgreSQL store ${redactUrl(url)}` : opts.home;
}

export type { Store } from "./types.js";
