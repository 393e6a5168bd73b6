// Mutation runs execute the suite once per mutant: fewer fast-check cases keep that affordable.
import fc from "fast-check";

process.env.SIGIL_MUTATION_NUM_RUNS ??= "60";
fc.configureGlobal({ numRuns: Number(process.env.SIGIL_MUTATION_NUM_RUNS) });
