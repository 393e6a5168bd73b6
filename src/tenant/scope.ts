/**
 * A tenant admin's view of the admin operations: the same operations the root admin and the CLI
 * use, narrowed to one tenant. An identity of another tenant is refused exactly as a missing one
 * is (`not_found`, the same sentence), before anything else is looked at, so a tenant admin cannot
 * tell another tenant's identity from an id that does not exist; lists leave them out, and what a
 * tenant admin creates belongs to its tenant.
 */
import type { AdminContext } from "../pipeline/tool.js";
import type { IdentityRecord, Store } from "../../store/types.js";
import { Denied } from "../errors.js";
import { noSuchIdentity } from "../identity/records.js";
import { RecordTampered } from "../identity/record-mac.js";
import { tenantOf } from "./tenants.js";

/** Whether the identity belongs to the tenant. */
export type Membership = (rec: IdentityRecord, tenantId: string) => boolean | Promise<boolean>;

export const byRecord: Membership = (rec, tenantId) => tenantOf(rec) === tenantId;

export function scopedAdmin(ops: AdminContext, store: Pick<Store, "getIdentity">, tenantId: string, member: Membership = byRecord): AdminContext {
  /**
   * The record, or undefined when there is none — or when it fails its MAC (RecordTampered): a
   * record written without the master key is provably no tenant's, so a tenant admin is told what
   * it is told of a missing id (the store has audited the forgery).
   */
  const read = (id: string): Promise<IdentityRecord | undefined> =>
    store.getIdentity(id).catch((err: unknown) => (err instanceof RecordTampered ? undefined : Promise.reject(err)));
  /** Refuses (as missing) an identity that is not the tenant's; runs nothing else first. */
  const own = async (id: unknown): Promise<void> => {
    const rec = typeof id === "string" ? await read(id) : undefined;
    if (!rec || !(await member(rec, tenantId))) throw noSuchIdentity(id);
  };
  const mine = async (id: string): Promise<boolean> => {
    const rec = await read(id);
    return rec !== undefined && (await member(rec, tenantId));
  };
  const { identities, secrets, audit, tenants, approvers, approvals } = ops;
  return {
    identities: {
      create: async (input) => {
        // Another tenant is as unknown to a tenant admin as a tenant that does not exist.
        if (input.tenantId !== undefined && input.tenantId !== tenantId) throw new Denied("not_found", `No tenant ${String(input.tenantId).slice(0, 40)}.`);
        return identities.create({ ...input, tenantId });
      },
      list: async () => {
        const out = [];
        for (const v of await identities.list()) if (v.tenantId === tenantId && (await mine(v.id))) out.push(v);
        return out;
      },
      show: async (id) => (await own(id), identities.show(id)),
      updatePolicy: async (id, policy) => (await own(id), identities.updatePolicy(id, policy)),
      rotateKey: async (id) => (await own(id), identities.rotateKey(id)),
      rotateToken: async (id) => (await own(id), identities.rotateToken(id)),
      revoke: async (id) => (await own(id), identities.revoke(id)),
    },
    secrets: {
      put: async (id, name, value) => (await own(id), secrets.put(id, name, value)),
      delete: async (id, name) => (await own(id), secrets.delete(id, name)),
      resetGuard: async (id) => (await own(id), secrets.resetGuard(id)),
    },
    audit: {
      query: async (id, opts) => (await own(id), audit.query(id, opts)),
      verify: async (id) => {
        if (id !== undefined) return (await own(id), audit.verify(id));
        // Every log of the tenant's identities, one by one (never another tenant's).
        const identitiesOut = [];
        for (const v of await identities.list()) {
          if (v.tenantId !== tenantId || !(await mine(v.id))) continue;
          identitiesOut.push(...(await audit.verify(v.id)).identities);
        }
        return { ok: identitiesOut.every((r) => r.ok), identities: identitiesOut };
      },
    },
    tenants: {
      create: () => {
        throw noSuchTool();
      },
      list: async () => (await tenants.list()).filter((t) => t.id === tenantId),
    },
    approvers: {
      add: async (input) => {
        if (input.tenantId !== undefined && input.tenantId !== tenantId) throw new Denied("not_found", `No tenant ${String(input.tenantId).slice(0, 40)}.`);
        return approvers.add({ ...input, tenantId });
      },
      list: async (only) => {
        if (only !== undefined && only !== tenantId) throw new Denied("not_found", `No tenant ${String(only).slice(0, 40)}.`);
        return approvers.list(tenantId);
      },
      // Another tenant's approver is refused as a missing one (Approvers.require with the tenant).
      remove: async (id) => approvers.remove(id, tenantId),
    },
    approvals: {
      list: async (opts) => {
        if (opts.tenantId !== undefined && opts.tenantId !== tenantId) throw new Denied("not_found", `No tenant ${String(opts.tenantId).slice(0, 40)}.`);
        return approvals.list({ ...opts, tenantId });
      },
    },
  };
}

function noSuchTool(): Denied {
  return new Denied("tool_not_available", 'there is no admin tool "create_tenant".');
}
