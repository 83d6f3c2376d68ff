// A guided tour of the consensus core for a newcomer (`npm start`): three nodes in one process,
// driven through the in-process Cluster (cluster.ts), whose Ready loop plays the caller's contract.
// It shows a leader election, replicated key=value writes, the leader cut off and replaced in a
// higher term, the old leader rejoining and catching up (its unreplicated write discarded), and a
// linearizable ReadIndex read. Deterministic: one seed, logical ticks, no clock. main() only
// computes and prints through `print`; running this file is the only thing that touches stdout.

import { pathToFileURL } from 'node:url';
import { Cluster, type ClusterNode, type StateMachine } from './cluster.ts';
import type { Entry, Message, NodeId } from './types.ts';

const SEED = 7;
const IDS: readonly NodeId[] = ['n1', 'n2', 'n3'];
/** Bound on the ticks each stage may take before the demo gives up (it takes far fewer). */
const STAGE_TICKS_MAX = 200;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** The application: a key=value map. Each committed entry is a "key=value" string. */
export class KvStore implements StateMachine {
  readonly data = new Map<string, string>();
  /** Every command applied, in order: replicas must agree on it entry for entry. */
  readonly log: string[] = [];

  apply(e: Entry): void {
    const cmd = decoder.decode(e.data);
    const eq = cmd.indexOf('=');
    this.data.set(cmd.slice(0, eq), cmd.slice(eq + 1));
    this.log.push(cmd);
  }

  snapshot(): Uint8Array {
    return encoder.encode(JSON.stringify({ data: [...this.data], log: this.log }));
  }

  restore(bytes: Uint8Array): void {
    const s = JSON.parse(decoder.decode(bytes)) as { data: [string, string][]; log: string[] };
    this.data.clear();
    for (const [k, v] of s.data) this.data.set(k, v);
    this.log.length = 0;
    this.log.push(...s.log);
  }

  describe(): string {
    return [...this.data].map(([k, v]) => `${k}=${v}`).join(' ');
  }
}

export interface DemoNodeState {
  readonly id: NodeId;
  readonly state: string;
  readonly term: number;
  readonly commit: number;
  readonly applied: number;
  readonly data: Readonly<Record<string, string>>;
  readonly log: readonly string[];
}

export interface DemoResult {
  readonly leader: NodeId;
  readonly firstLeader: NodeId;
  readonly firstTerm: number;
  readonly term: number;
  readonly nodes: readonly DemoNodeState[];
  /** The linearizable read made at the end. */
  readonly read: { readonly node: NodeId; readonly key: string; readonly value: string };
}

type Kv = Cluster<KvStore>;

export function main(print: (line: string) => void = console.log): DemoResult {
  // Which messages to print as they are delivered (none by default).
  let tracing: (m: Message) => boolean = () => false;
  const cluster: Kv = new Cluster({
    ids: IDS,
    seed: SEED,
    electionTicks: 10,
    heartbeatTicks: 1,
    newStateMachine: () => new KvStore(),
    trace: (m, delivered) => {
      if (tracing(m)) print(`    ${describeMessage(m)}${delivered ? '' : '   (dropped)'}`);
    },
  });
  const section = (title: string): void => {
    print('');
    print(`== ${title}`);
  };

  section('1. Three nodes start');
  print('Every node starts as a follower in term 0 with an empty log. Nobody leads yet. Time');
  print('moves in ticks; a follower that hears no leader for a random 10 to 19 ticks campaigns.');
  printTable(print, cluster);

  section('2. Leader election');
  print('Ticking every node until one wins. With pre-vote, a node first asks whether it could');
  print('win (without changing its term), then campaigns for real in the next term:');
  tracing = () => true;
  const electionTicks = tickUntil(cluster, () => cluster.leader() !== undefined);
  tracing = () => false;
  const first = cluster.leader()!;
  const firstTerm = first.rn.raft.term;
  print(
    `After ${electionTicks} ticks, ${first.id} leads term ${firstTerm}. Its first act is to append`,
  );
  print('an empty entry of its term (index 1): committing it tells the new leader what is');
  print('committed, and commits any entries left by earlier leaders with it.');
  printTable(print, cluster);

  section('3. Replicated writes');
  for (const cmd of ['x=1', 'y=2', 'z=3']) first.rn.propose(encoder.encode(cmd));
  print(`The client proposes x=1, y=2, z=3 on ${first.id}. The leader appends them, sends them`);
  print('to the followers, counts acknowledgements, commits once a majority (2 of 3) holds them,');
  print('and every node applies committed entries to its own key=value map:');
  cluster.stabilize();
  printTable(print, cluster);

  section(`4. The leader ${first.id} is cut off`);
  cluster.isolate(first.id);
  first.rn.propose(encoder.encode('x=lost'));
  cluster.stabilize();
  const lostIndex = first.rn.raft.raftLog.lastIndex();
  const lostTerm = first.rn.raft.term;
  print(
    `Every message to or from ${first.id} is now dropped. A client still reaches it and writes`,
  );
  print(`x=lost: ${first.id} appends it (its last index grows) but can never commit it alone.`);
  printTable(print, cluster);
  print('Ticking on. The others stop hearing heartbeats and elect a new leader in a higher term;');
  print(`${first.id} notices it lost its quorum (check-quorum) and steps down:`);
  tickUntil(cluster, () => {
    const l = cluster.leader();
    return l !== undefined && l !== first && first.rn.raft.state !== 'leader';
  });
  const second = cluster.leader()!;
  print(`${second.id} leads term ${second.rn.raft.term}.`);
  for (const cmd of ['x=10', 'w=4']) second.rn.propose(encoder.encode(cmd));
  cluster.stabilize();
  print(`The new leader commits x=10 and w=4 with the one follower it can reach, a majority:`);
  printTable(print, cluster);

  section(`5. ${first.id} rejoins`);
  // A new leader assumes each follower's log matches its own up to where it stood when elected.
  const probeAfter = (second.rn.status().progress?.[first.id]?.next ?? 1) - 1;
  const newTerm = second.rn.raft.term;
  print(`The partition heals. Pre-vote kept ${first.id} from raising its term while it was alone,`);
  print(`so it cannot disrupt the new leader; the next heartbeat makes it follow term ${newTerm}.`);
  print(
    `${second.id} assumed, when elected, that every log matches its own up to index ${probeAfter} and`,
  );
  print(
    `sends ${first.id} the entries after it (a follower whose log disagreed would refuse, and the`,
  );
  print(
    `leader would back up). ${first.id}'s entry ${lostIndex} (x=lost, term ${lostTerm}) conflicts with the`,
  );
  print(
    `leader's entry ${lostIndex} (term ${newTerm}); it was never committed, so it is replaced:`,
  );
  cluster.rejoin(first.id);
  tracing = () => true;
  tickUntil(cluster, () => cluster.nodes.every((n) => n.applied === second.applied));
  tracing = () => false;
  printTable(print, cluster);

  section('6. A linearizable read (ReadIndex)');
  const reader = first;
  const readKey = 'x';
  print(
    `A client asks ${reader.id}, a follower, for ${readKey}. Reading its own map could be stale,`,
  );
  print(`so ${reader.id} asks the leader for a read index: the leader notes its commit index and`);
  print('confirms with a heartbeat round that a majority still follows it (no newer leader),');
  print(
    `then answers. Once ${reader.id} has applied up to that index, its local read is linearizable:`,
  );
  tracing = () => true;
  reader.rn.readIndex('read-x');
  cluster.stabilize();
  tracing = () => false;
  const rs = reader.reads.find((r) => r.context === 'read-x');
  if (rs === undefined) throw new Error('the read index never came back');
  const value = reader.sm.data.get(readKey);
  if (value === undefined) throw new Error(`${readKey} is not set on ${reader.id}`);
  print(
    `Read index ${rs.index}, ${reader.id} applied ${reader.applied}: ${readKey} = ${value} (the value committed last).`,
  );

  section('Final state');
  printTable(print, cluster);
  const logs = cluster.nodes.map((n) => n.sm.log.join(','));
  if (logs.some((l) => l !== logs[0])) throw new Error(`replicas diverged: ${logs.join(' | ')}`);
  print(
    `All nodes applied the same ${cluster.nodes[0]!.sm.log.length} commands in the same order.`,
  );

  return {
    leader: cluster.leader()!.id,
    firstLeader: first.id,
    firstTerm,
    term: cluster.leader()!.rn.raft.term,
    nodes: cluster.nodes.map(nodeState),
    read: { node: reader.id, key: readKey, value },
  };
}

/** Ticks every node, letting the group settle after each tick, until `done`; returns the ticks. */
function tickUntil(cluster: Kv, done: () => boolean): number {
  for (let t = 1; t <= STAGE_TICKS_MAX; t++) {
    cluster.tickAll();
    cluster.stabilize();
    if (done()) return t;
  }
  throw new Error(`the demo did not reach its next stage within ${STAGE_TICKS_MAX} ticks`);
}

function nodeState(n: ClusterNode<KvStore>): DemoNodeState {
  const s = n.rn.status();
  return {
    id: n.id,
    state: s.state,
    term: s.term,
    commit: s.commit,
    applied: n.applied,
    data: Object.fromEntries(n.sm.data),
    log: [...n.sm.log],
  };
}

function printTable(print: (line: string) => void, cluster: Kv): void {
  const header = ['node', 'state', 'term', 'last', 'commit', 'applied', 'key=value map'];
  const rows = cluster.nodes.map((n) => {
    const s = n.rn.status();
    return [
      n.id + (cluster.isIsolated(n.id) ? ' (cut off)' : ''),
      s.state,
      String(s.term),
      String(s.lastIndex),
      String(s.commit),
      String(n.applied),
      n.sm.describe() || '-',
    ];
  });
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: readonly string[]): string =>
    `  ${cells.map((c, i) => c.padEnd(widths[i]!)).join('  ')}`.trimEnd();
  print(line(header));
  for (const r of rows) print(line(r));
}

function describeMessage(m: Message): string {
  const what =
    m.type === 'MsgVoteResp' || m.type === 'MsgPreVoteResp'
      ? `${m.type} ${m.reject ? 'rejected' : 'granted'}`
      : m.type === 'MsgApp'
        ? `${m.type} ${m.entries.length} entries after index ${m.index}, commit ${m.commit}`
        : m.type === 'MsgAppResp'
          ? `${m.type} ${m.reject ? `rejects ${m.index}, hint ${m.rejectHint}` : `matches up to ${m.index}`}`
          : m.type === 'MsgReadIndex' || m.type === 'MsgReadIndexResp'
            ? `${m.type} ${m.context}${m.type === 'MsgReadIndexResp' ? ` index ${m.index}` : ''}`
            : m.type === 'MsgHeartbeat' || m.type === 'MsgHeartbeatResp'
              ? `${m.type}${m.context === '' ? '' : ` ${m.context}`}`
              : m.type;
  return `${m.from} -> ${m.to}  term ${m.term}  ${what}`;
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main();
}
