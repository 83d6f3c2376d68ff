// Planted bugs: test-only switches that each break one safety rule of Raft on purpose, so that the
// simulator (sim/) and the Jepsen harness can prove they would catch such a bug ("the harness has
// teeth"). The state is private to this module: the only way in is plantBug(), which refuses to
// run unless the process is a vitest run or was started with an explicit, unmistakable consent in
// its environment, and which hands back the undo function. Nothing exports a flag anyone could
// flip, and consensus/index.ts does not re-export plantBug. See docs/sim.md.
//
// The checks stay in the product's code path (one isPlanted() call at each of the two rules):
// with nothing planted they are a counter compare.

/** The rules that can be broken. */
export type PlantedBug =
  /** §5.4.1: grant votes and pre-votes without checking that the candidate's log is up to date. */
  | 'voteWithoutLogCheck'
  /** §5.4.2: count replicas of entries of earlier terms toward commit (Figure 8). */
  | 'commitEarlierTerm';

export const PLANTED_BUGS: readonly PlantedBug[] = ['voteWithoutLogCheck', 'commitEarlierTerm'];

/** The value PCR_PLANTED_BUGS must hold to allow planting outside vitest. */
export const PLANTED_BUGS_CONSENT = 'I understand this breaks safety';

const active = new Map<PlantedBug, number>();
let plantedCount = 0;

function environment(): Record<string, string | undefined> {
  const p = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process;
  return p?.env ?? {};
}

/** Whether this process may plant bugs: a vitest run, or an explicit consent. */
export function plantingAllowed(): boolean {
  const env = environment();
  return env.VITEST === 'true' || env.PCR_PLANTED_BUGS === PLANTED_BUGS_CONSENT;
}

/**
 * Turns a planted bug on until the returned function is called (calls nest: the bug stays on
 * while any planting is not undone). Throws unless planting is allowed (see plantingAllowed).
 */
export function plantBug(name: PlantedBug): () => void {
  if (!PLANTED_BUGS.includes(name)) {
    throw new Error(
      `unknown planted bug ${JSON.stringify(name)}; known: ${PLANTED_BUGS.join(', ')}`,
    );
  }
  if (!plantingAllowed()) {
    throw new Error(
      `refusing to plant bug '${name}': planted bugs break Raft's safety and exist only for ` +
        'testing the test harness. They run under vitest, or with ' +
        `PCR_PLANTED_BUGS='${PLANTED_BUGS_CONSENT}' in the environment.`,
    );
  }
  active.set(name, (active.get(name) ?? 0) + 1);
  plantedCount++;
  let undone = false;
  return () => {
    if (undone) return;
    undone = true;
    active.set(name, active.get(name)! - 1);
    plantedCount--;
  };
}

/** Whether the bug is planted now. */
export function isPlanted(name: PlantedBug): boolean {
  return plantedCount > 0 && (active.get(name) ?? 0) > 0;
}
