/**
 * A property's explicit case count, capped during mutation runs (test/support/mutation-setup.ts
 * sets SIGIL_MUTATION_NUM_RUNS) so a property asked for 2,000 cases does not run them per mutant.
 */
export function runs(n: number): number {
  const cap = Number(process.env.SIGIL_MUTATION_NUM_RUNS);
  return Number.isFinite(cap) && cap > 0 ? Math.min(n, cap) : n;
}
