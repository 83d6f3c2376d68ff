// One Maelstrom node: the real RaftNode (node/raft/node.ts) and state machine behind Maelstrom's
// protocol, serving the lin-kv workload. Raft messages between nodes travel as Maelstrom messages
// `{type: "raft", data: <base64 of the node codec's frame>}` (one way, no msg_id, no reply), so
// Maelstrom's network (latency, partitions) is the network Raft runs over.
//
// Input arrives as lines (handleLine); output leaves through `send` (one JSON line each) and logs
// through `log`; time is a tick timer. stdio.ts wires these to the process; the tests wire them to
// each other. Bad input never throws: a malformed request gets error 12 when it names a sender and
// a msg_id (otherwise a log line), an unknown request type error 10, a bad Raft frame is dropped and
// logged. A broken invariant of the core (RaftError INVARIANT) is a bug and is rethrown.
//
// Maelstrom never restarts a node from disk, so the log lives on a MemoryDisk: durable for the
// life of the process only, which is all Maelstrom's partition nemesis needs.

import {
  bootstrap,
  isRaftError,
  type Message,
  NODE_ID_BYTES_MAX,
  type NodeId,
  type RandomSource,
} from '../../consensus/index.ts';
import { decodeMessage, encodeMessage } from '../raft/codec.ts';
import { MemoryDisk } from '../raft/disk.ts';
import { type Outcome, RaftNode } from '../raft/node.ts';
import { DurableStorage } from '../raft/storage.ts';
import { cryptoRandom } from '../random.ts';
import {
  casCommand,
  LIN_KV_TYPES,
  type LinKvRequest,
  parseLinKv,
  readQuery,
  replyBody,
  writeCommand,
} from './lin_kv.ts';
import {
  type Body,
  type Envelope,
  ERROR,
  type ErrorCode,
  errorBody,
  parseLine,
} from './protocol.ts';

/** Nodes a cluster may have (Maelstrom runs a handful; Raft's cost grows with every voter). */
export const NODE_COUNT_MAX = 64;
/**
 * How many times a cas with create_if_not_exists retries when it lost a race: the key was absent
 * at its first step and had been created with exactly `from` at its second.
 */
export const CAS_CREATE_ATTEMPTS_MAX = 8;

export interface MaelstromNodeTimings {
  /** Raft tick interval. */
  readonly tickMs: number;
  readonly electionTicks: number;
  readonly heartbeatTicks: number;
  /** A request not done within this is answered with error 0 (indeterminate). */
  readonly requestTimeoutMs: number;
}

export const MAELSTROM_DEFAULTS: MaelstromNodeTimings = {
  tickMs: 20,
  electionTicks: 10,
  heartbeatTicks: 2,
  // Maelstrom's lin-kv client gives up after max(10 x latency, 1000 ms): answer before that.
  requestTimeoutMs: 800,
};

export interface MaelstromNodeOptions extends Partial<MaelstromNodeTimings> {
  /** Writes one message, already JSON, without the newline. */
  readonly send: (line: string) => void;
  readonly log: (text: string) => void;
  readonly random?: RandomSource;
  /** Starts the tick timer and returns what stops it (default: setInterval). */
  readonly startTimer?: (tick: () => void, everyMs: number) => () => void;
}

export interface MaelstromNodeStats {
  linesIn: number;
  requests: number;
  replies: number;
  raftIn: number;
  raftOut: number;
  /** Input refused: malformed lines, bad frames, messages for another node. */
  dropped: number;
}

const defaultTimer = (tick: () => void, everyMs: number): (() => void) => {
  const t = setInterval(tick, everyMs);
  return () => clearInterval(t);
};

export class MaelstromNode {
  readonly stats: MaelstromNodeStats = {
    linesIn: 0,
    requests: 0,
    replies: 0,
    raftIn: 0,
    raftOut: 0,
    dropped: 0,
  };
  private readonly opts: MaelstromNodeOptions;
  private readonly timings: MaelstromNodeTimings;
  private id: NodeId | undefined;
  private nodeIds: readonly NodeId[] = [];
  private raft: RaftNode | undefined;
  private stopTimer: (() => void) | undefined;
  private nextMsgId = 1;
  private lastLead: NodeId | undefined;
  private lastTerm = -1;
  private stopped = false;

  constructor(opts: MaelstromNodeOptions) {
    this.opts = opts;
    this.timings = {
      tickMs: opts.tickMs ?? MAELSTROM_DEFAULTS.tickMs,
      electionTicks: opts.electionTicks ?? MAELSTROM_DEFAULTS.electionTicks,
      heartbeatTicks: opts.heartbeatTicks ?? MAELSTROM_DEFAULTS.heartbeatTicks,
      requestTimeoutMs: opts.requestTimeoutMs ?? MAELSTROM_DEFAULTS.requestTimeoutMs,
    };
  }

  /** This node's ID once initialized. */
  get nodeId(): NodeId | undefined {
    return this.id;
  }

  /** The Raft node once initialized (tests and logs read its status). */
  get raftNode(): RaftNode | undefined {
    return this.raft;
  }

  /** Handles one input line (without its newline). */
  handleLine(line: string): void {
    if (this.stopped || line.trim() === '') return;
    this.stats.linesIn++;
    const parsed = parseLine(line);
    if (!parsed.ok) {
      this.stats.dropped++;
      this.opts.log(`malformed message (${parsed.problem}): ${abbreviate(line)}`);
      if (parsed.replyTo !== undefined) {
        this.emit(parsed.replyTo.src, {
          ...errorBody(ERROR.malformedRequest, parsed.problem),
          in_reply_to: parsed.replyTo.msgId,
        });
      }
      return;
    }
    const m = parsed.message;
    try {
      this.handleMessage(m);
    } catch (e) {
      // A broken invariant of the core is a bug: fail loudly rather than serve on.
      if (isRaftError(e) && e.code === 'INVARIANT') throw e;
      const err = e as Error;
      this.opts.log(`error while handling ${m.body.type}: ${err.stack ?? err.message}`);
      if (m.body.msg_id !== undefined && m.body.in_reply_to === undefined) {
        this.reply(m, errorBody(ERROR.crash, `internal error: ${err.message}`));
      }
    }
  }

  /** Stops the timer and the Raft node; unanswered requests are answered with error 0. */
  stop(): void {
    if (this.stopped) return;
    this.stopTimer?.();
    this.stopTimer = undefined;
    this.raft?.stop();
    this.stopped = true;
  }

  private handleMessage(m: Envelope): void {
    const body = m.body;
    if (this.id !== undefined && m.dest !== this.id) {
      this.stats.dropped++;
      this.opts.log(`dropped a ${body.type} message for ${m.dest}, not for ${this.id}`);
      return;
    }
    if (body.in_reply_to !== undefined) {
      // This node sends no requests, so no reply is expected: note it and move on.
      this.opts.log(
        `ignored an unexpected reply from ${m.src}: ${abbreviate(JSON.stringify(body))}`,
      );
      return;
    }
    if (body.type === 'init') return this.init(m);
    if (body.type === 'raft') return this.receiveRaft(m);
    if (LIN_KV_TYPES.has(body.type)) return this.request(m);
    if (body.type === 'error') {
      this.opts.log(`error message from ${m.src}: ${abbreviate(JSON.stringify(body))}`);
      return;
    }
    this.stats.dropped++;
    if (body.msg_id === undefined) {
      this.opts.log(`dropped a message of unknown type ${JSON.stringify(body.type)} from ${m.src}`);
      return;
    }
    this.replyError(m, ERROR.notSupported, `unsupported message type ${JSON.stringify(body.type)}`);
  }

  private init(m: Envelope): void {
    const { node_id: nodeId, node_ids: nodeIds } = m.body;
    const problem = initProblem(nodeId, nodeIds);
    if (problem !== undefined) return this.replyError(m, ERROR.malformedRequest, problem);
    const id = nodeId as string;
    const ids = nodeIds as string[];
    if (this.id !== undefined) {
      // Maelstrom sends init once; a repeat that agrees is answered again, one that does not is
      // refused (a node cannot change its identity or its group).
      const same = this.id === id && sameMembers(this.nodeIds, ids);
      if (same) return this.reply(m, { type: 'init_ok' });
      return this.replyError(
        m,
        ERROR.malformedRequest,
        `already initialized as ${this.id} of [${this.nodeIds.join(', ')}]`,
      );
    }
    this.id = id;
    // Sorted: every member must write the very same bootstrap entries (indexes 1..n, term 1).
    this.nodeIds = [...ids].sort();
    const storage = new DurableStorage();
    bootstrap(storage.mem, this.nodeIds);
    const disk = new MemoryDisk();
    disk.write(DurableStorage.initialOps(storage.mem), () => {});
    const t = this.timings;
    this.raft = new RaftNode({
      id,
      storage,
      disk,
      transport: { send: (msg) => this.sendRaft(msg) },
      random: this.opts.random ?? cryptoRandom,
      electionTicks: t.electionTicks,
      heartbeatTicks: t.heartbeatTicks,
      requestTimeoutTicks: Math.max(1, Math.ceil(t.requestTimeoutMs / t.tickMs)),
      onFatal: (err) => this.opts.log(`raft node stopped: ${err.message}`),
    });
    this.stopTimer = (this.opts.startTimer ?? defaultTimer)(() => this.tick(), t.tickMs);
    this.opts.log(
      `initialized as ${id} of [${this.nodeIds.join(', ')}]: tick ${t.tickMs} ms, election ` +
        `${t.electionTicks} ticks, heartbeat ${t.heartbeatTicks} ticks, request timeout ` +
        `${t.requestTimeoutMs} ms`,
    );
    this.reply(m, { type: 'init_ok' });
  }

  private tick(): void {
    const raft = this.raft;
    if (raft === undefined || this.stopped) return;
    raft.tick();
    const { lead, term } = raft.rn.raft;
    if (lead !== this.lastLead || term !== this.lastTerm) {
      this.lastLead = lead;
      this.lastTerm = term;
      this.opts.log(`term ${term}: ${lead === '' ? 'no leader' : `leader ${lead}`}`);
    }
  }

  private sendRaft(msg: Message): void {
    this.stats.raftOut++;
    const data = Buffer.from(encodeMessage(msg)).toString('base64');
    this.emit(msg.to, { type: 'raft', data });
  }

  private receiveRaft(m: Envelope): void {
    const raft = this.raft;
    if (raft === undefined) {
      this.stats.dropped++;
      this.opts.log(`dropped a raft message from ${m.src}: not initialized yet`);
      return;
    }
    const data = m.body.data;
    if (typeof data !== 'string') {
      this.stats.dropped++;
      this.opts.log(`dropped a raft message from ${m.src}: data is not a base64 string`);
      return;
    }
    const decoded = decodeMessage(Buffer.from(data, 'base64'));
    if ('error' in decoded) {
      this.stats.dropped++;
      this.opts.log(`dropped a raft frame from ${m.src}: ${decoded.error}`);
      return;
    }
    if (decoded.from !== m.src) {
      this.stats.dropped++;
      this.opts.log(`dropped a raft frame from ${m.src} claiming to be from ${decoded.from}`);
      return;
    }
    this.stats.raftIn++;
    raft.receive(decoded);
  }

  private request(m: Envelope): void {
    this.stats.requests++;
    const raft = this.raft;
    if (raft === undefined) {
      return this.replyError(m, ERROR.temporarilyUnavailable, 'not initialized yet');
    }
    const req = parseLinKv(m.body);
    if ('problem' in req) return this.replyError(m, ERROR.malformedRequest, req.problem);
    const answer = (o: Outcome): void => this.reply(m, replyBody(req.f, o));
    switch (req.f) {
      case 'read':
        return raft.read(readQuery(req), answer);
      case 'write':
        return raft.submit(writeCommand(req), answer);
      case 'cas':
        if (!req.createIfNotExists) return raft.submit(casCommand(req, req.from), answer);
        return this.casOrCreate(raft, req, CAS_CREATE_ATTEMPTS_MAX, (body) => this.reply(m, body));
    }
  }

  /**
   * cas with create_if_not_exists, in atomic steps of the state machine: cas(from -> to); if the key
   * was absent, create(to) only-if-absent; if that finds the key created meanwhile with exactly
   * `from`, start over. Each reply comes from one atomic step (that step is the linearization
   * point) and every earlier step had no effect, so the whole is linearizable.
   */
  private casOrCreate(
    raft: RaftNode,
    req: Extract<LinKvRequest, { f: 'cas' }>,
    attemptsLeft: number,
    done: (body: Body) => void,
  ): void {
    raft.submit(casCommand(req, req.from), (first) => {
      if (!(first.ok && !first.result.ok && first.result.code === 'notFound')) {
        return done(replyBody('cas', first));
      }
      raft.submit(casCommand(req, null), (second) => {
        if (!(second.ok && !second.result.ok && second.result.code === 'casMismatch')) {
          return done(replyBody('cas', second));
        }
        const current = second.result.current;
        if (current !== req.from) {
          return done(
            errorBody(
              ERROR.preconditionFailed,
              `current value ${current ?? '?'} is not ${req.from}`,
            ),
          );
        }
        if (attemptsLeft <= 1) {
          // No step took effect: a definite failure.
          return done(
            errorBody(ERROR.temporarilyUnavailable, 'cas kept racing with creations: retry'),
          );
        }
        this.casOrCreate(raft, req, attemptsLeft - 1, done);
      });
    });
  }

  private replyError(m: Envelope, code: ErrorCode, text: string): void {
    if (m.body.msg_id === undefined) {
      this.opts.log(`error ${code} for a ${m.body.type} from ${m.src} without msg_id: ${text}`);
      return;
    }
    this.reply(m, errorBody(code, text));
  }

  private reply(m: Envelope, body: Body): void {
    this.stats.replies++;
    const inReplyTo = m.body.msg_id;
    this.emit(m.src, inReplyTo === undefined ? body : { ...body, in_reply_to: inReplyTo });
  }

  private emit(dest: string, body: Body): void {
    const src = this.id ?? '';
    this.opts.send(JSON.stringify({ src, dest, body: { ...body, msg_id: this.nextMsgId++ } }));
  }
}

function initProblem(nodeId: unknown, nodeIds: unknown): string | undefined {
  const validId = (x: unknown): x is string =>
    typeof x === 'string' && x.length > 0 && Buffer.byteLength(x) <= NODE_ID_BYTES_MAX;
  if (!validId(nodeId)) return 'init needs node_id, a non-empty string';
  if (!Array.isArray(nodeIds) || !nodeIds.every(validId)) {
    return 'init needs node_ids, a list of non-empty strings';
  }
  if (nodeIds.length > NODE_COUNT_MAX) return `more than NODE_COUNT_MAX (${NODE_COUNT_MAX}) nodes`;
  if (new Set(nodeIds).size !== nodeIds.length) return 'node_ids must be distinct';
  if (!nodeIds.includes(nodeId)) return `node_ids must include node_id ${nodeId}`;
  return undefined;
}

function sameMembers(a: readonly string[], b: readonly string[]): boolean {
  const sa = [...a].sort();
  const sb = [...b].sort();
  return sa.length === sb.length && sa.every((x, i) => x === sb[i]);
}

function abbreviate(s: string, max = 200): string {
  return s.length <= max ? s : `${s.slice(0, max)}... (${s.length} characters)`;
}
