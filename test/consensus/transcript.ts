// Data-driven transcript tests, in the manner of etcd-io/raft's testdata/*.txt (datadriven plus
// rafttest's InteractionEnv). A transcript is a series of blocks:
//
//   # a comment
//   command arg key=value key=(a,b)
//   optional input lines
//   ----
//   expected output lines
//
// separated by blank lines. An output that itself holds blank lines is written between a doubled
// separator (`----` twice before, twice after). This module owns the parser, the interpreter (the
// commands, over the in-test Network of network.ts, with an explicit message queue so that a test
// decides what is delivered when) and the text form of Readys, messages and entries. It does not
// own the test runner (consensus/transcript.test.ts) or the transcripts (consensus/testdata/).
//
// Commands (node IDs are "1", "2", ... in creation order; [IDs] means all nodes when omitted):
//   add-nodes N [voters=(1,2,3)] [learners=(4)] [prevote=true] [checkquorum=true] [election=10]
//             [heartbeat=1]       the first nodes form the group; later ones join with no membership
//   campaign ID                   MsgHup (pre-vote first when enabled)
//   propose ID DATA               DATA is one word or "quoted"
//   propose-conf-change ID type=addVoter|addLearner|removeNode node=X
//   tick ID N / tick-heartbeat ID / tick-election ID
//                                 tick-election ticks until the election timer fires once: a
//                                 non-leader's randomized timeout, a leader's check-quorum round
//   process-ready [IDs]           one Ready cycle each (persist, apply, advance); messages queued
//   deliver-msgs [IDs] [drop=true]  step (or drop) the queued messages addressed to IDs
//   stabilize [IDs]               process-ready and deliver-msgs in rounds until nothing happens
//   isolate ID / partition (1,2) (3) / heal   cut links; a message over a cut link is dropped
//   compact ID INDEX              snapshot at INDEX (<= applied) and drop the log up to it
//   read-index ID CTX / transfer-leader from=ID to=ID
//   restart ID                    lose volatile state, keep storage; queued messages stay queued
//   status ID / raft-log ID / raft-state
// A RaftError thrown by the caller's request prints as `error CODE: message`; anything else thrown
// fails the test. A message a node drops on receipt prints `ignored by ID: reason`.

import { decodeConfChange } from '../../consensus/confchange.ts';
import { RaftError } from '../../consensus/errors.ts';
import type { Config } from '../../consensus/raft.ts';
import type { RawNode } from '../../consensus/rawnode.ts';
import {
  type ConfChangeType,
  type ConfState,
  type Entry,
  type HardState,
  type Message,
  NONE,
  type NodeId,
  type Ready,
  type Snapshot,
  type StateType,
} from '../../consensus/types.ts';
import { DROP_REASONS, type DropReason } from '../../consensus/validate.ts';
import { Network } from './network.ts';

// -------------------------------------------------------------------------------------------------
// Parsing.

/** One argument of a command line: `3` is {key:'3', vals:[]}, `voters=(1,2)` is {key, vals}. */
export interface CmdArg {
  readonly key: string;
  readonly vals: readonly string[];
}

export interface Block {
  readonly cmd: string;
  readonly args: readonly CmdArg[];
  readonly input: readonly string[];
  readonly expected: string;
  /** 1-based line of the command, for messages. */
  readonly line: number;
  /** Lines [outputStart, outputEnd) (0-based) hold the expected output and its closing marks. */
  readonly outputStart: number;
  readonly outputEnd: number;
}

export interface Transcript {
  readonly lines: readonly string[];
  readonly blocks: readonly Block[];
}

const SEPARATOR = '----';

export class TranscriptError extends Error {
  constructor(where: string, message: string) {
    super(`${where}: ${message}`);
    this.name = 'TranscriptError';
  }
}

export function parseTranscript(text: string, name = '<transcript>'): Transcript {
  const lines = text.split('\n');
  // A final newline leaves one empty string behind: it is not a line of the file.
  if (lines.length > 0 && lines[lines.length - 1] === '') lines.pop();
  const blocks: Block[] = [];
  let i = 0;
  while (i < lines.length) {
    const line = lines[i]!;
    const trimmed = line.trim();
    if (trimmed === '' || trimmed.startsWith('#')) {
      i++;
      continue;
    }
    const cmdLine = i;
    const { cmd, args } = parseCommandLine(trimmed, `${name}:${cmdLine + 1}`);
    i++;
    const input: string[] = [];
    while (i < lines.length && lines[i] !== SEPARATOR) input.push(lines[i++]!);
    if (i >= lines.length) {
      throw new TranscriptError(`${name}:${cmdLine + 1}`, `'${cmd}' has no '${SEPARATOR}' line`);
    }
    i++; // the separator
    const outputStart = i;
    const expected: string[] = [];
    if (i < lines.length && lines[i] === SEPARATOR) {
      // Doubled separator: the output runs until `----` `----`, blank lines included.
      i++;
      for (;;) {
        if (i >= lines.length) {
          throw new TranscriptError(`${name}:${cmdLine + 1}`, 'unterminated doubled separator');
        }
        if (lines[i] === SEPARATOR && lines[i + 1] === SEPARATOR) {
          i += 2;
          break;
        }
        expected.push(lines[i++]!);
      }
    } else {
      while (i < lines.length && lines[i]!.trim() !== '') expected.push(lines[i++]!);
    }
    blocks.push({
      cmd,
      args,
      input,
      expected: expected.join('\n'),
      line: cmdLine + 1,
      outputStart,
      outputEnd: i,
    });
  }
  return { lines, blocks };
}

/** Splits `name a b=c d=(e,f) "g h"` into the command and its arguments. */
export function parseCommandLine(line: string, where: string): { cmd: string; args: CmdArg[] } {
  const tokens: string[] = [];
  let cur = '';
  let depth = 0;
  let quoted = false;
  for (const ch of line) {
    if (quoted) {
      cur += ch;
      if (ch === '"') quoted = false;
    } else if (ch === '"') {
      cur += ch;
      quoted = true;
    } else if (ch === '(') {
      depth++;
      cur += ch;
    } else if (ch === ')') {
      depth--;
      cur += ch;
    } else if (/\s/.test(ch) && depth === 0) {
      if (cur !== '') tokens.push(cur);
      cur = '';
    } else {
      cur += ch;
    }
  }
  if (quoted || depth !== 0) throw new TranscriptError(where, `unbalanced quotes or parentheses`);
  if (cur !== '') tokens.push(cur);
  const [cmd, ...rest] = tokens;
  if (cmd === undefined) throw new TranscriptError(where, 'empty command');
  const args = rest.map((tok): CmdArg => {
    const eq = tok.indexOf('=');
    if (eq < 0) return { key: unquote(tok), vals: [] };
    const key = tok.slice(0, eq);
    const v = tok.slice(eq + 1);
    if (v.startsWith('(') && v.endsWith(')')) {
      const inner = v.slice(1, -1).trim();
      return { key, vals: inner === '' ? [] : inner.split(',').map((s) => unquote(s.trim())) };
    }
    return { key, vals: [unquote(v)] };
  });
  return { cmd, args };
}

function unquote(s: string): string {
  return s.length >= 2 && s.startsWith('"') && s.endsWith('"') ? s.slice(1, -1) : s;
}

// -------------------------------------------------------------------------------------------------
// Text forms, close to etcd's DescribeMessage / DescribeReady. Entries are "term/index", a
// message's Log is "logTerm/index".

const STATE_NAMES: Record<StateType, string> = {
  follower: 'StateFollower',
  preCandidate: 'StatePreCandidate',
  candidate: 'StateCandidate',
  leader: 'StateLeader',
};

const decoder = new TextDecoder();

export function describeEntry(e: Entry): string {
  if (e.type === 'confChange') {
    const cc = decodeConfChange(e.data);
    const what = typeof cc === 'string' ? `<invalid: ${cc}>` : `${cc.type} ${cc.nodeId}`;
    return `${e.term}/${e.index} EntryConfChange ${what}`;
  }
  return `${e.term}/${e.index} EntryNormal ${JSON.stringify(decoder.decode(e.data))}`;
}

export function describeConfState(cs: ConfState): string {
  return `Voters:[${sortIds(cs.voters).join(' ')}] Learners:[${sortIds(cs.learners).join(' ')}]`;
}

export function describeSnapshot(s: Snapshot): string {
  const md = s.metadata;
  return `Index:${md.index} Term:${md.term} ConfState:${describeConfState(md.confState)}`;
}

export function describeHardState(hs: HardState): string {
  return `Term:${hs.term} Vote:${hs.vote === NONE ? '0' : hs.vote} Commit:${hs.commit}`;
}

export function describeMessage(m: Message): string {
  let s = `${m.from}->${m.to} ${m.type} Term:${m.term} Log:${m.logTerm}/${m.index}`;
  if (m.commit !== 0) s += ` Commit:${m.commit}`;
  if (m.reject) s += ` Rejected (Hint: ${m.rejectHint})`;
  if (m.context !== '') s += ` Context:${JSON.stringify(m.context)}`;
  if (m.entries.length > 0) s += ` Entries:[${m.entries.map(describeEntry).join(', ')}]`;
  if (m.snapshot !== undefined) s += ` Snapshot: ${describeSnapshot(m.snapshot)}`;
  return s;
}

export function describeReady(rd: Ready): string[] {
  const out = [`Ready MustSync=${rd.mustSync}:`];
  if (rd.softState !== undefined) {
    const lead = rd.softState.lead === NONE ? '0' : rd.softState.lead;
    out.push(`Lead:${lead} State:${STATE_NAMES[rd.softState.state]}`);
  }
  if (rd.hardState !== undefined) out.push(`HardState ${describeHardState(rd.hardState)}`);
  if (rd.snapshot !== undefined) out.push(`Snapshot ${describeSnapshot(rd.snapshot)}`);
  if (rd.entries.length > 0) out.push('Entries:', ...rd.entries.map(describeEntry));
  if (rd.readStates.length > 0) {
    out.push('ReadStates:');
    for (const rs of rd.readStates)
      out.push(`Index:${rs.index} Context:${JSON.stringify(rs.context)}`);
  }
  if (rd.committedEntries.length > 0) {
    out.push('CommittedEntries:', ...rd.committedEntries.map(describeEntry));
  }
  if (rd.messages.length > 0) out.push('Messages:', ...rd.messages.map(describeMessage));
  return out;
}

/** Node IDs in a stable order: numerically when both are numbers, else as strings. */
export function compareIds(a: NodeId, b: NodeId): number {
  const na = Number(a);
  const nb = Number(b);
  if (Number.isInteger(na) && Number.isInteger(nb) && na !== nb) return na - nb;
  return a < b ? -1 : a > b ? 1 : 0;
}

function sortIds(ids: Iterable<NodeId>): NodeId[] {
  return [...ids].sort(compareIds);
}

// -------------------------------------------------------------------------------------------------
// The interpreter.

interface NodeSettings {
  readonly preVote: boolean;
  readonly checkQuorum: boolean;
  readonly electionTicks: number;
  readonly heartbeatTicks: number;
}

/** stabilizeRoundsMax: a stabilize that has not gone quiet after this many rounds is a livelock. */
const STABILIZE_ROUNDS_MAX = 1000;

/** Seeds the election timeouts of the n-th node created; restarts reseed from a second range. */
const NODE_SEED_BASE = 1000;
const RESTART_SEED_BASE = 7000;

/**
 * The state a transcript runs against: a Network of RawNodes (which plays the caller's contract)
 * and a queue of messages sent and not yet delivered. Commands print what happens into `out`.
 */
export class TranscriptEnv {
  readonly net: Network;
  /** Messages sent and not yet delivered, in send order. */
  queue: Message[] = [];
  private readonly settings = new Map<NodeId, NodeSettings>();
  private restarts = 0;
  private out: string[] = [];
  private indent = '';

  constructor() {
    this.net = new Network([], {
      configure: (c: Config): Config => {
        const s = this.settings.get(c.id);
        if (s === undefined) return c;
        return {
          ...c,
          preVote: s.preVote,
          checkQuorum: s.checkQuorum,
          electionTicks: s.electionTicks,
          heartbeatTicks: s.heartbeatTicks,
        };
      },
    });
    this.net.onReady = (_id, rd) => {
      for (const line of describeReady(rd)) this.print(line);
    };
  }

  /** Runs one block and returns its output ("ok" when it printed nothing). */
  handle(b: Block): string {
    this.out = [];
    this.indent = '';
    try {
      this.dispatch(b);
    } catch (e) {
      // The caller's own requests fail with RaftError: that is behaviour worth recording.
      if (!(e instanceof RaftError)) throw e;
      this.print(`error ${e.code}: ${e.message}`);
    }
    return this.out.length === 0 ? 'ok' : this.out.join('\n');
  }

  private print(line: string): void {
    this.out.push(`${this.indent}${line}`.trimEnd());
  }

  private indented(yes: boolean, fn: () => void): void {
    const saved = this.indent;
    if (yes) this.indent += '  ';
    try {
      fn();
    } finally {
      this.indent = saved;
    }
  }

  private dispatch(b: Block): void {
    const a = new Args(b);
    switch (b.cmd) {
      case 'add-nodes':
        return this.addNodes(a);
      case 'campaign':
        return this.rn(a.id(0)).campaign();
      case 'propose':
        return this.rn(a.id(0)).propose(new TextEncoder().encode(a.positional(1)));
      case 'propose-conf-change': {
        const type = a.keyword('type') as ConfChangeType;
        if (!['addVoter', 'addLearner', 'removeNode'].includes(type)) {
          throw a.error(`type must be addVoter, addLearner or removeNode, not ${type}`);
        }
        return this.rn(a.id(0)).proposeConfChange({ type, nodeId: a.keyword('node') });
      }
      case 'tick':
        return this.tick(a.id(0), a.int(1));
      case 'tick-heartbeat': {
        const id = a.id(0);
        return this.tick(id, this.rn(id).raft.heartbeatTimeout);
      }
      case 'tick-election':
        return this.tickElection(a.id(0));
      case 'process-ready':
        this.processReady(this.nodesOr(a.ids()), false);
        return;
      case 'deliver-msgs': {
        const ids = this.nodesOr(a.ids());
        this.deliverMsgs(ids, a.bool('drop', false), ids.length > 1);
        return;
      }
      case 'stabilize':
        return this.stabilize(this.nodesOr(a.ids()));
      case 'isolate':
        return this.net.isolate(a.id(0));
      case 'partition':
        // partition (1,2) (3): links between the groups are cut.
        return this.net.partition(...b.args.map((arg) => arg.key.replace(/[()]/g, '').split(',')));
      case 'heal':
        return this.net.heal();
      case 'compact':
        return this.compact(a.id(0), a.int(1));
      case 'read-index':
        return this.rn(a.id(0)).readIndex(a.positional(1));
      case 'transfer-leader':
        return this.rn(a.id('from')).transferLeader(a.id('to'));
      case 'restart':
        return this.restart(a.id(0));
      case 'status':
        return this.status(a.id(0));
      case 'raft-log':
        return this.raftLog(a.id(0));
      case 'raft-state':
        return this.raftState();
      default:
        throw a.error(`unknown command '${b.cmd}'`);
    }
  }

  private rn(id: NodeId): RawNode {
    return this.net.node(id).rn;
  }

  private ids(): NodeId[] {
    return sortIds(this.net.nodes.keys());
  }

  // add-nodes N [voters=(..)] [learners=(..)] [prevote=] [checkquorum=] [election=] [heartbeat=]
  private addNodes(a: Args): void {
    const n = a.int(0);
    const first = this.net.nodes.size + 1;
    const newIds: NodeId[] = [];
    for (let i = 0; i < n; i++) newIds.push(String(first + i));
    const voters = a.list('voters');
    const learners = a.list('learners');
    // The first nodes make up the initial group unless told otherwise; later ones join empty and
    // learn the membership from the leader.
    const cs: ConfState =
      voters !== undefined || learners !== undefined
        ? { voters: voters ?? [], learners: learners ?? [] }
        : this.net.nodes.size === 0
          ? { voters: newIds, learners: [] }
          : { voters: [], learners: [] };
    const s: NodeSettings = {
      preVote: a.bool('prevote', true),
      checkQuorum: a.bool('checkquorum', true),
      electionTicks: a.intOr('election', 10),
      heartbeatTicks: a.intOr('heartbeat', 1),
    };
    for (const id of newIds) {
      this.settings.set(id, s);
      this.net.add(id, cs, NODE_SEED_BASE + this.net.nodes.size);
      this.print(`${id}: ${describeConfState(cs)}`);
    }
    this.print(
      `PreVote:${s.preVote} CheckQuorum:${s.checkQuorum} Election:${s.electionTicks} Heartbeat:${s.heartbeatTicks}`,
    );
  }

  private tick(id: NodeId, n: number): void {
    for (let i = 0; i < n; i++) this.rn(id).tick();
  }

  /**
   * Ticks until the node's election timer fires once: a follower or candidate reaches its
   * randomized timeout and campaigns; a leader runs its check-quorum round.
   */
  private tickElection(id: NodeId): void {
    const r = this.rn(id).raft;
    const timeout = r.state === 'leader' ? r.electionTimeout : r.randomizedElectionTimeout;
    this.tick(id, Math.max(1, timeout - r.electionElapsed));
  }

  /** Runs one Ready cycle on each node; with `header`, names the node before its Ready. */
  private processReady(ids: readonly NodeId[], header: boolean): boolean {
    let any = false;
    for (const id of ids) {
      const node = this.net.node(id);
      if (!node.rn.hasReady()) {
        if (!header) this.print(`${ids.length > 1 ? `${id}: ` : ''}<empty Ready>`);
        continue;
      }
      any = true;
      const named = header || ids.length > 1;
      if (named) this.print(`> ${id} handling Ready`);
      this.indented(named, () => {
        const before = describeConfState(node.confState);
        this.queue.push(...this.net.handleReady(id));
        const after = describeConfState(node.confState);
        if (after !== before) this.print(`applied ConfState ${after}`);
      });
    }
    return any;
  }

  /** Delivers (or drops) the queued messages addressed to `ids`; returns whether there were any. */
  private deliverMsgs(ids: readonly NodeId[], drop: boolean, header: boolean): boolean {
    let any = false;
    for (const id of ids) {
      const mine = this.queue.filter((m) => m.to === id);
      if (mine.length === 0) continue;
      any = true;
      this.queue = this.queue.filter((m) => m.to !== id);
      if (header) this.print(`> ${id} receiving messages`);
      this.indented(header, () => {
        for (const m of mine) this.deliver(m, drop);
      });
    }
    return any;
  }

  private deliver(m: Message, drop: boolean): void {
    if (drop) return this.print(`dropped: ${describeMessage(m)}`);
    if (!this.net.nodes.has(m.to))
      return this.print(`dropped (no such node): ${describeMessage(m)}`);
    if (!this.net.canDeliver(m)) return this.print(`dropped (partition): ${describeMessage(m)}`);
    this.print(describeMessage(m));
    const r = this.rn(m.to).raft;
    const before = { ...r.stats.dropped };
    this.rn(m.to).step(m);
    const reasons = DROP_REASONS.filter((k: DropReason) => r.stats.dropped[k] > before[k]);
    if (reasons.length > 0) this.print(`  ignored by ${m.to}: ${reasons.join(', ')}`);
  }

  /** Like etcd's stabilize: handle every Ready, then deliver every message, until quiet. */
  private stabilize(ids: readonly NodeId[]): void {
    for (let round = 0; round < STABILIZE_ROUNDS_MAX; round++) {
      const readied = this.processReady(ids, true);
      const delivered = this.deliverMsgs(ids, false, true);
      if (!readied && !delivered) return;
    }
    throw new Error(`stabilize did not go quiet within ${STABILIZE_ROUNDS_MAX} rounds`);
  }

  private compact(id: NodeId, index: number): void {
    const r = this.rn(id).raft;
    if (index > r.raftLog.applied) {
      throw new Error(`compact ${id} ${index}: only applied entries (<= ${r.raftLog.applied})`);
    }
    this.net.compact(id, index);
    const snap = this.net.node(id).storage.snapshot();
    this.print(
      `${id}: snapshot ${describeSnapshot(snap)}; log ${r.raftLog.firstIndex()}..${r.raftLog.lastIndex()}`,
    );
  }

  private restart(id: NodeId): void {
    this.net.restart(id, RESTART_SEED_BASE + this.restarts++);
    const st = this.rn(id).status();
    this.print(
      `${id}: HardState ${describeHardState({ term: st.term, vote: st.vote, commit: st.commit })} Applied:${st.applied} Log:${st.firstIndex}..${st.lastIndex}`,
    );
  }

  private status(id: NodeId): void {
    const st = this.rn(id).status();
    const lead = st.lead === NONE ? '0' : st.lead;
    this.print(
      `${id}: ${STATE_NAMES[st.state]} HardState ${describeHardState({ term: st.term, vote: st.vote, commit: st.commit })} Lead:${lead} Applied:${st.applied} Log:${st.firstIndex}..${st.lastIndex}`,
    );
    this.print(describeConfState(st.config));
    if (st.leadTransferee !== NONE) this.print(`LeadTransferee:${st.leadTransferee}`);
    if (st.progress === undefined) return;
    for (const pid of sortIds(Object.keys(st.progress))) {
      const p = st.progress[pid]!;
      const state = `State${p.state[0]!.toUpperCase()}${p.state.slice(1)}`;
      let line = `${pid}: ${state} match=${p.match} next=${p.next}`;
      if (p.isLearner) line += ' learner';
      if (p.paused) line += ' paused';
      if (p.recentActive) line += ' active';
      this.print(line);
    }
  }

  private raftLog(id: NodeId): void {
    const log = this.rn(id).raft.raftLog;
    const ents = log.allEntries();
    if (ents.length === 0) {
      this.print(`log is empty: first index=${log.firstIndex()}, last index=${log.lastIndex()}`);
      return;
    }
    for (const e of ents) this.print(describeEntry(e));
  }

  private raftState(): void {
    for (const id of this.ids()) {
      const r = this.rn(id).raft;
      const role = r.trk.isVoter(id) ? 'Voter' : r.trk.learners.has(id) ? 'Learner' : 'Non-member';
      const lead = r.lead === NONE ? '0' : r.lead;
      this.print(`${id}: ${STATE_NAMES[r.state]} (${role}) Term:${r.term} Lead:${lead}`);
    }
  }

  /** All nodes when `given` is empty. */
  private nodesOr(given: NodeId[]): NodeId[] {
    return given.length > 0 ? given : this.ids();
  }
}

/** Typed access to a block's arguments, with errors that name the block. */
class Args {
  private readonly b: Block;

  constructor(b: Block) {
    this.b = b;
  }

  error(message: string): TranscriptError {
    return new TranscriptError(`line ${this.b.line} (${this.b.cmd})`, message);
  }

  private positionals(): string[] {
    return this.b.args.filter((a) => a.vals.length === 0).map((a) => a.key);
  }

  private find(key: string): CmdArg | undefined {
    return this.b.args.find((a) => a.key === key && a.vals.length > 0);
  }

  positional(i: number): string {
    const v = this.positionals()[i];
    if (v === undefined) throw this.error(`missing argument ${i + 1}`);
    return v;
  }

  keyword(key: string): string {
    const a = this.find(key);
    if (a === undefined || a.vals.length !== 1) throw this.error(`missing ${key}=`);
    return a.vals[0]!;
  }

  /** A node ID, by position or by key. */
  id(at: number | string): NodeId {
    return typeof at === 'number' ? this.positional(at) : this.keyword(at);
  }

  /** All positional node IDs; filled in by the env when empty. */
  ids(): NodeId[] {
    return this.positionals();
  }

  int(at: number): number {
    const v = Number(this.positional(at));
    if (!Number.isSafeInteger(v) || v < 0)
      throw this.error(`argument ${at + 1} is not a count or index`);
    return v;
  }

  intOr(key: string, dflt: number): number {
    const a = this.find(key);
    if (a === undefined) return dflt;
    const v = Number(a.vals[0]);
    if (!Number.isSafeInteger(v) || v <= 0) throw this.error(`${key}= is not a positive integer`);
    return v;
  }

  bool(key: string, dflt: boolean): boolean {
    const a = this.find(key);
    if (a === undefined) return dflt;
    if (a.vals[0] === 'true') return true;
    if (a.vals[0] === 'false') return false;
    throw this.error(`${key}= must be true or false`);
  }

  list(key: string): string[] | undefined {
    const a = this.b.args.find((x) => x.key === key);
    return a === undefined ? undefined : [...a.vals];
  }
}

// -------------------------------------------------------------------------------------------------
// Running a whole transcript.

export interface Mismatch {
  readonly line: number;
  readonly cmd: string;
  readonly expected: string;
  readonly actual: string;
}

export interface TranscriptResult {
  /** The transcript with every expected output replaced by the actual one. */
  readonly rewritten: string;
  readonly mismatches: readonly Mismatch[];
}

/** Runs every block of a transcript against a fresh environment. */
export function runTranscript(text: string, name = '<transcript>'): TranscriptResult {
  const t = parseTranscript(text, name);
  const env = new TranscriptEnv();
  const mismatches: Mismatch[] = [];
  const out: string[] = [];
  let copied = 0;
  for (const b of t.blocks) {
    let actual: string;
    try {
      actual = env.handle(b);
    } catch (e) {
      const err = e instanceof Error ? e : new Error(String(e));
      err.message = `${name}:${b.line}: ${b.cmd}: ${err.message}`;
      throw err;
    }
    if (actual !== b.expected) {
      mismatches.push({ line: b.line, cmd: b.cmd, expected: b.expected, actual });
    }
    out.push(...t.lines.slice(copied, b.outputStart));
    const actualLines = actual.split('\n');
    if (actualLines.some((l) => l.trim() === '')) {
      out.push(SEPARATOR, ...actualLines, SEPARATOR, SEPARATOR);
    } else {
      out.push(...actualLines);
    }
    copied = b.outputEnd;
  }
  out.push(...t.lines.slice(copied));
  return { rewritten: `${out.join('\n')}\n`, mismatches };
}
