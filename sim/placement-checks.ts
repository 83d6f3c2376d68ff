// What must hold in a placement run (docs/sim.md, "Placement runs"), checked as the run goes:
// - one copy: no instance has VMM processes alive on two nodes at once, observed by the simulated
//   VMMs (sim/vmm.ts), not read from the replicated state;
// - capacity: what runs on a node (its live VMMs' vcpus and memory) fits the capacity it
//   registered;
// - placement: a committed vm.place puts an instance only on a node that was `ready` in the node
//   table at that index (not down, draining or ineligible).
// The state is read only to know why a copy exists: a copy left behind by a planned move (a drain's
// vm.release, a vm.put that moved or deleted the instance) may overlap its replacement while it
// stops, by design (docs/scheduling.md, "Drain": the old copy stops as its replacement starts).
// Such a copy is exempt from the first two checks. A copy left behind because its node went down
// or left is never exempt: fencing must have stopped it before the replacement started.
// The committed history is read once per index, from the first node that applies it.

import type { Entry } from '../consensus/index.ts';
import type { NodeStatus, Resources } from '../node/sched/types.ts';
import { decodeEnvelope, type StateMachine } from '../node/state/machine.ts';
import { statusOf } from '../node/state/nodes.ts';
import type { VmSpec } from '../node/state/vm_spec.ts';
import type { ViolationKind } from './cluster.ts';
import type { VmmObserver } from './vmm.ts';

/** Commands whose unplacement of an instance is a planned move (its old copy may overlap). */
const PLANNED_MOVES = new Set(['vm.release', 'vm.put', 'vm.rm', 'deploy.step']);

interface Copy {
  readonly node: string;
  readonly resources: Resources;
  readonly generation: number;
}

export interface PlacementCheckCounts {
  /** VMM processes started (every launch and every restart after a crash). */
  copiesStarted: number;
  /** Starts that overlapped a copy left behind by a planned move (allowed). */
  plannedOverlaps: number;
  /** Committed placements checked against the node table. */
  placementsChecked: number;
}

export class PlacementChecks implements VmmObserver {
  readonly counts: PlacementCheckCounts = {
    copiesStarted: 0,
    plannedOverlaps: 0,
    placementsChecked: 0,
  };
  private readonly capacityOf: (node: string) => Resources;
  private readonly report: (kind: ViolationKind, node: string, message: string) => void;
  private readonly nowMs: () => number;
  /** Instance -> node -> its live copy there. */
  private readonly copies = new Map<string, Map<string, Copy>>();
  /** The committed state, as of the last index read: instance -> node ('' unplaced)... */
  private readonly committedNode = new Map<string, string>();
  /** ...and its generation (the index of its group's last vm.put). */
  private readonly committedGeneration = new Map<string, number>();
  /** `instance@node` -> the command that took the instance off that node (until placed back). */
  private readonly leftBy = new Map<string, string>();
  private nodeStatus = new Map<string, NodeStatus>();
  private lastIndex = 0;
  /** Each finding is reported once per subject. */
  private readonly reported = new Set<string>();

  constructor(o: {
    capacityOf: (node: string) => Resources;
    report: (kind: ViolationKind, node: string, message: string) => void;
    nowMs: () => number;
  }) {
    this.capacityOf = o.capacityOf;
    this.report = o.report;
    this.nowMs = o.nowMs;
  }

  // ---------------------------------------------------------------------------------------------
  // The VMMs.

  started(node: string, name: string, spec: VmSpec, generation: number): void {
    this.counts.copiesStarted++;
    let m = this.copies.get(name);
    if (m === undefined) {
      m = new Map();
      this.copies.set(name, m);
    }
    m.set(node, { node, resources: { cpus: spec.vcpus, memoryMiB: spec.memoryMiB }, generation });
    for (const other of m.values()) {
      if (other.node !== node && (this.exempt(name, other.node) || this.exempt(name, node)))
        this.counts.plannedOverlaps++;
    }
    this.checkCopies(name);
    this.checkCapacity(node);
  }

  ended(node: string, name: string): void {
    const m = this.copies.get(name);
    m?.delete(node);
    if (m?.size === 0) this.copies.delete(name);
  }

  /** Nodes where a copy of `name` is alive. */
  copiesOf(name: string): string[] {
    return [...(this.copies.get(name)?.keys() ?? [])].sort();
  }

  /** Every check over everything alive now (the run calls it periodically). */
  sweep(nodes: readonly string[]): void {
    for (const name of this.copies.keys()) this.checkCopies(name);
    for (const n of nodes) this.checkCapacity(n);
  }

  /** A copy left behind on `node` by a planned move, while the instance is placed elsewhere. */
  private exempt(name: string, node: string): boolean {
    if (this.committedNode.get(name) === node) return false;
    return PLANNED_MOVES.has(this.leftBy.get(`${name}@${node}`) ?? '');
  }

  /**
   * A copy of an older spec than the committed one (a vm.put replaced it): its node stops it to
   * start the new one. Placement counts the new spec's resources at once, so while a slow guest
   * stops, the room it gave up may already hold other instances (Nomad counts a stopping
   * allocation as free too): not counted against capacity. Fencing never changes a generation.
   */
  private outdated(name: string, c: Copy): boolean {
    return c.generation < (this.committedGeneration.get(name) ?? 0);
  }

  private checkCopies(name: string): void {
    const live = [...(this.copies.get(name)?.values() ?? [])].filter(
      (c) => !this.exempt(name, c.node),
    );
    if (live.length < 2) return;
    const nodes = live.map((c) => c.node).sort();
    this.once(
      'two-copies',
      nodes[0]!,
      name,
      `${name} runs on ${nodes.join(' and ')} at once (generations ${live.map((c) => c.generation).join(', ')}; ` +
        `committed node ${this.committedNode.get(name) || 'none'}, left ${nodes
          .map((n) => `${n} by ${this.leftBy.get(`${name}@${n}`) ?? 'nothing'}`)
          .join(', ')})`,
    );
  }

  private checkCapacity(node: string): void {
    let cpus = 0;
    let memoryMiB = 0;
    const names: string[] = [];
    for (const [name, m] of this.copies) {
      const c = m.get(node);
      if (c === undefined || this.exempt(name, node) || this.outdated(name, c)) continue;
      cpus += c.resources.cpus;
      memoryMiB += c.resources.memoryMiB;
      names.push(name);
    }
    const cap = this.capacityOf(node);
    if (cpus <= cap.cpus && memoryMiB <= cap.memoryMiB) return;
    this.once(
      'over-capacity',
      node,
      node,
      `${node} runs ${cpus} cpus and ${memoryMiB} MiB (${names.sort().join(' ')}); it registered ${cap.cpus} cpus and ${cap.memoryMiB} MiB`,
    );
  }

  private once(kind: ViolationKind, node: string, subject: string, message: string): void {
    const key = `${kind}/${subject}`;
    if (this.reported.has(key)) return;
    this.reported.add(key);
    this.report(kind, node, `${message} (at ${Math.round(this.nowMs())} ms)`);
  }

  // ---------------------------------------------------------------------------------------------
  // The committed history.

  /** An entry applied by a node (SimCluster.onApply); only the first application of an index counts. */
  applied(e: Entry, sm: StateMachine): void {
    if (e.index <= this.lastIndex) return;
    this.lastIndex = e.index;
    let op = e.type === 'normal' ? '' : 'conf-change';
    if (e.type === 'normal' && e.data.byteLength > 0) {
      const env = decodeEnvelope(e.data);
      if (typeof env !== 'string') op = env.command.op;
    }
    const seen = new Set<string>();
    for (const vm of sm.vms.all()) {
      seen.add(vm.name);
      this.committedGeneration.set(vm.name, vm.generation);
      const prev = this.committedNode.get(vm.name) ?? '';
      if (vm.node === prev) continue;
      if (prev !== '') this.leftBy.set(`${vm.name}@${prev}`, op);
      if (vm.node !== '') {
        this.leftBy.delete(`${vm.name}@${vm.node}`);
        if (op === 'vm.place') this.checkPlaced(e.index, vm.name, vm.node);
      }
      this.committedNode.set(vm.name, vm.node);
    }
    for (const [name, node] of this.committedNode) {
      if (seen.has(name)) continue;
      if (node !== '') this.leftBy.set(`${name}@${node}`, op);
      this.committedNode.delete(name);
      this.committedGeneration.delete(name);
    }
    this.nodeStatus = new Map(sm.nodes.list().map((n) => [n.id, statusOf(n)]));
  }

  private checkPlaced(index: number, name: string, node: string): void {
    this.counts.placementsChecked++;
    const status = this.nodeStatus.get(node);
    if (status === 'ready') return;
    this.once(
      'placed-on-unready',
      node,
      `${name}@${index}`,
      `vm.place at index ${index} put ${name} on ${node}, which was ${status ?? 'not registered'} at index ${index - 1}`,
    );
  }
}
