// The vms workload's clients: each submits VM groups (a small runner VM, memoryMiB 64 or 128,
// count 1 or 2) through a random node, and now and then stops or removes one, recording each
// command as a history event (value: the group, its count and memory). Recorded as the kv
// workload records: ok -> ok; NOT_FOUND on a stop or rm (the group is not there: it is not
// running) -> ok; NO_LEADER, UNPLACEABLE (refused before proposing), a refused connection -> fail;
// a timeout, TIMEOUT and any other error -> info, and the client takes a new process number.

import type { Cluster } from './cluster.ts';
import type { GroupValue } from './vm_checker.ts';
import {
  type Answer,
  BACKOFF_MS,
  type ClientContext,
  DEFINITE_REFUSALS,
  errorOf,
  type RecordedEvent,
  sleep,
} from './workload.ts';

/** A vm.run waits up to PLACE_WAIT_MS (5 s) for its placement before it answers. */
export const VM_REQUEST_TIMEOUT_MS = 10_000;
/**
 * Instances (running or stopped: both hold a node's resources) a client keeps at once: two clients
 * then hold at most 4 of the 6 one-vcpu slots of 3 two-core nodes, 4 with one node down, so every
 * VM the clients want running stays placeable (and QEMU TCG guests share a loaded 2-core box).
 */
export const VM_CLIENT_INSTANCES_MAX = 2;
/** A client's pause between two commands. */
export const VM_THINK_MS = 2_000;
export const VM_MEMORY_MIB = [64, 128] as const;
export const VM_COUNTS = [1, 2] as const;
/** Refusals of a vm command after which it certainly had no effect. */
const VM_DEFINITE_REFUSALS: ReadonlySet<string> = new Set([...DEFINITE_REFUSALS, 'UNPLACEABLE']);

type VmF = 'run' | 'stop' | 'rm';

interface Group {
  readonly value: GroupValue;
  desired: 'running' | 'stopped';
}

export function vmCompletion(f: VmF, a: Answer): 'ok' | 'fail' | 'info' {
  if (a.kind === 'ok') return 'ok';
  if (a.kind === 'indeterminate') return 'info';
  if (a.code === 'NOT_FOUND' && f !== 'run') return 'ok';
  return VM_DEFINITE_REFUSALS.has(a.code) ? 'fail' : 'info';
}

async function askVm(cluster: Cluster, node: string, req: Parameters<Cluster['request']>[1]) {
  try {
    const resp = await cluster.request(node, req, VM_REQUEST_TIMEOUT_MS);
    return resp.ok
      ? ({ kind: 'ok', resp } as Answer)
      : ({ kind: 'refused', code: resp.error.code } as Answer);
  } catch (e) {
    const why = (e as Error).message;
    if (why.includes('ECONNREFUSED')) return { kind: 'refused', code: 'ECONNREFUSED' } as Answer;
    return { kind: 'indeterminate', why } as Answer;
  }
}

/**
 * The next command: mostly a new group while under the cap; otherwise now and then a stop or rm of
 * one of ours, so that instances run for several seconds (through faults) before they go.
 */
function nextCommand(
  ctx: ClientContext,
  groups: Group[],
  newName: () => string,
): { f: VmF; group: Group } | undefined {
  // A stopped instance keeps its node and resources (node/state/view.ts): it counts until removed.
  const live = groups.reduce((n, g) => n + (g.value.count ?? 1), 0);
  const r = ctx.random.intn(6);
  if ((groups.length === 0 || r < 3) && live < VM_CLIENT_INSTANCES_MAX) {
    const count = VM_COUNTS[ctx.random.intn(VM_COUNTS.length)]!;
    const memoryMiB = VM_MEMORY_MIB[ctx.random.intn(VM_MEMORY_MIB.length)]!;
    const value = {
      group: newName(),
      count: Math.min(count, VM_CLIENT_INSTANCES_MAX - live),
      memoryMiB,
    };
    return { f: 'run', group: { value, desired: 'running' } };
  }
  const running = groups.filter((g) => g.desired === 'running');
  if (r === 3 && running.length > 0) {
    return { f: 'stop', group: running[ctx.random.intn(running.length)]! };
  }
  if (r === 4 && groups.length > 0)
    return { f: 'rm', group: groups[ctx.random.intn(groups.length)]! };
  return undefined; // this round, nothing
}

/** One vms client: commands through a random node until done. */
export async function vmClient(
  ctx: ClientContext,
  runner: string,
  newName: () => string,
  history: RecordedEvent[],
): Promise<void> {
  let process = ctx.nextProcess();
  const groups: Group[] = [];
  while (!ctx.done()) {
    const next = nextCommand(ctx, groups, newName);
    if (next === undefined) {
      await sleep(VM_THINK_MS);
      continue;
    }
    const { f, group } = next;
    const node = ctx.cluster.nodes[ctx.random.intn(ctx.cluster.nodes.length)]!.name;
    const v = group.value;
    history.push({ type: 'invoke', process, f, value: v, time: ctx.now(), node });
    const req =
      f === 'run'
        ? ({
            op: 'vm.run',
            spec: { version: 1, name: v.group, runner, memoryMiB: v.memoryMiB, count: v.count },
          } as const)
        : ({ op: `vm.${f}`, name: v.group } as const);
    const a = await askVm(ctx.cluster, node, req);
    const type = vmCompletion(f, a);
    history.push({ type, process, f, value: v, time: ctx.now(), node, ...errorOf(a) });
    if (type === 'info') process = ctx.nextProcess();
    if (f === 'run' && type !== 'fail') groups.push(group);
    if (f === 'stop' && type !== 'fail') group.desired = 'stopped';
    if (f === 'rm' && type !== 'fail') groups.splice(groups.indexOf(group), 1);
    await sleep(type === 'ok' ? VM_THINK_MS : BACKOFF_MS);
  }
}
