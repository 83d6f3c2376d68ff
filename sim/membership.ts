// The simulator's executor of the membership policy: the product's pure decisions
// (node/membership/decide.ts: decide, decideJoin, verdictOf) carried out by simulated nodes, as
// the daemon carries them out (node/daemon.ts: reconcile, handleJoin, handleRemove). Each running
// node calls decide() every reconcileMs with a view of its RaftNode and does the one action it
// returns, never two at once: it joins through a seed, records itself, announces new addresses,
// probes the members when it hears from no leader, promotes a caught-up learner when it leads,
// and stops when it learns that it was removed. Requests between nodes (join, member.check) travel
// over a simulated link with latency and loss and are cut by partitions, like Raft messages.
//
// The operator (the membership nemesis) starts fresh nodes that join through a seed, removes
// members through a member (removeNode, then member.remove: a tombstone), and restarts removed
// nodes, which must find out that they were removed and stop. MembershipChecks
// (membership-checks.ts) records what must hold. A planted bug (tests only) breaks one rule.

import type { NodeId } from '../consensus/index.ts';
import {
  decide,
  decideJoin,
  type MembershipAction,
  type MembershipPolicy,
  type MembershipView,
  type PeerVerdict,
  verdictOf,
} from '../node/membership/decide.ts';
import type { Outcome, RaftNode } from '../node/raft/node.ts';
import type { Command } from '../node/state/machine.ts';
import type { SimCluster } from './cluster.ts';
import { MembershipChecks } from './membership-checks.ts';
import { msToUs, usToMs } from './queue.ts';
import { SimRandom } from './random.ts';

/** Bugs the tests plant in the executor to prove the checks fire (sim/membership.test.ts). */
export type PlantedMembershipBug =
  /** decide() is given no voter limit. */
  | 'ignoreMaxVoters'
  /** The leader's view shows every learner as caught up. */
  | 'promoteLagging'
  /** A removal commits removeNode but no member.remove (no tombstone). */
  | 'removeWithoutTombstone'
  /**
   * A node that was a member and is in no configuration joins, as decide() says, instead of
   * probing (the executor's rule below): it comes back under its identity if a member accepts it
   * before the tombstone is committed.
   */
  | 'rejoinRemoved';

export interface MembershipOptions {
  readonly policy: MembershipPolicy;
  /** Each running node calls decide() this often (the daemon: 300 ms at 50 ms ticks). */
  readonly reconcileMs: number;
  /** A join, announce or member.check without an answer gives up after this long. */
  readonly peerRequestTimeoutMs: number;
  /** The operator removes a member only while more than this many are in the configuration. */
  readonly membersMin: number;
  /** The operator retries a removal that failed after this long. */
  readonly operatorRetryMs: number;
  /** After the liveness check, removals must finish and removed nodes stop within this long. */
  readonly settleMs: number;
  readonly planted?: PlantedMembershipBug;
}

export const MEMBERSHIP_SIM_DEFAULTS: MembershipOptions = {
  // The daemon's policy scaled to the simulator's 10 ms ticks, with few voters so that the limit
  // binds: 5 nodes, at most 3 voters.
  policy: { maxVoters: 3, promoteLagEntries: 20, probeAfterMs: 1000 },
  reconcileMs: 100,
  peerRequestTimeoutMs: 1000,
  membersMin: 3,
  operatorRetryMs: 300,
  settleMs: 5000,
};

/** The link between nodes: the network's latency distribution and loss (sim/network.ts). */
const LINK_LATENCY_BASE_MS = 1;
const LINK_LATENCY_TAIL_MEAN_MS = 2;
const LINK_LATENCY_MAX_MS = 100;
const LINK_LOSS_PROBABILITY = 0.01;
/** A leader not heard from for this many election timeouts is no leader to the executor. */
const LEADER_SILENT_ELECTIONS = 2;

/** Which member a removal takes. */
export type RemoveTarget = 'voter' | 'learner' | 'leader' | 'any' | string;

export interface MembershipStats {
  launched: number;
  joinRequests: number;
  learnersAdded: number;
  joinsRefusedRemoved: number;
  promotions: number;
  records: number;
  announces: number;
  probes: number;
  removalsRequested: number;
  removalsDone: number;
  exits: number;
  removedRestarts: number;
  /**
   * Removed nodes left running at the end that could not learn it: restarted with nothing on
   * disk (they never held an entry), and every seed they know was removed too, so no member is
   * known to them. The daemon's node retries its seeds (and logs it); nothing else can tell it.
   */
  stranded: number;
}

type PeerRequest =
  | {
      readonly op: 'join';
      readonly id: NodeId;
      readonly addrs: readonly string[];
      /** Sent by a member about its new addresses (decide: announce), not by a new node. */
      readonly announce: boolean;
    }
  | { readonly op: 'check'; readonly id: NodeId };

type Reply =
  | { readonly ok: true; readonly verdict?: PeerVerdict }
  | { readonly ok: false; readonly code: string; readonly message: string };

/** The executor's state in one process (a restart starts afresh). */
interface Exec {
  readonly incarnation: number;
  busy: boolean;
  verdict: PeerVerdict | undefined;
  leaderlessSinceMs: number;
}

/** An API answer from a RaftNode outcome, as the daemon's answer() makes it. */
function answer(o: Outcome): Reply {
  if (!o.ok) return { ok: false, code: o.code, message: o.message };
  if (!o.result.ok) return { ok: false, code: o.result.code, message: o.result.message };
  return { ok: true };
}

export class MembershipSim {
  readonly options: MembershipOptions;
  readonly checks: MembershipChecks;
  readonly stats: MembershipStats = {
    launched: 0,
    joinRequests: 0,
    learnersAdded: 0,
    joinsRefusedRemoved: 0,
    promotions: 0,
    records: 0,
    announces: 0,
    probes: 0,
    stranded: 0,
    removalsRequested: 0,
    removalsDone: 0,
    exits: 0,
    removedRestarts: 0,
  };
  private readonly cluster: SimCluster;
  /** The link's latency and loss, and the operator's choices: streams of their own. */
  private readonly linkRandom: SimRandom;
  private readonly choiceRandom: SimRandom;
  private readonly execs = new Map<string, Exec>();
  private readonly seeds = new Map<string, string[]>();
  /** Removals the operator has not finished. */
  private readonly removing = new Set<string>();

  constructor(cluster: SimCluster, options: MembershipOptions) {
    this.cluster = cluster;
    this.options = options;
    this.linkRandom = SimRandom.fork(cluster.seed, 'membership-link');
    this.choiceRandom = SimRandom.fork(cluster.seed, 'membership-operator');
    this.checks = new MembershipChecks(
      cluster,
      options.policy.maxVoters,
      options.policy.promoteLagEntries,
    );
  }

  /** Starts every node's reconcile timer (a random phase each, then every reconcileMs). */
  start(): void {
    const phase = SimRandom.fork(this.cluster.seed, 'membership-phase');
    for (const id of this.cluster.ids) {
      this.every(id, 1 + phase.intn(msToUs(this.options.reconcileMs)));
    }
  }

  private every(id: string, delayUs: number): void {
    this.cluster.queue.after(delayUs, () => {
      // A paused process runs no timer; a down one has none.
      if (this.cluster.processOf(id) === 'up') this.cluster.inProcess(id, () => this.reconcile(id));
      this.every(id, msToUs(this.options.reconcileMs));
    });
  }

  // ---------------------------------------------------------------------------------------------
  // The executor: decide() and its one action.

  private exec(id: string): Exec {
    const incarnation = this.cluster.incarnationOf(id);
    let ex = this.execs.get(id);
    if (ex === undefined || ex.incarnation !== incarnation) {
      ex = { incarnation, busy: false, verdict: undefined, leaderlessSinceMs: this.cluster.nowMs };
      this.execs.set(id, ex);
    }
    return ex;
  }

  private addrs(id: string): string[] {
    // A restarted process listens on new addresses (port 0), so records and announces happen.
    return [`/sim/${id}/${this.cluster.incarnationOf(id)}`];
  }

  private view(id: string, node: RaftNode, ex: Exec): MembershipView {
    const st = node.status();
    const now = this.cluster.nowMs;
    // A node that may not campaign (a learner, a node in no configuration) never times its leader
    // out: removed, it would name its last leader for ever, which sends it nothing any more, and
    // never probe. The executor counts a leader only while it is heard from: within two election
    // timeouts of its last message (Raft's electionElapsed, reset by each message of the leader).
    const raft = node.rn.raft;
    const silent =
      st.state !== 'leader' &&
      raft.electionElapsed >= LEADER_SILENT_ELECTIONS * raft.electionTimeout;
    const lead = silent ? '' : st.lead;
    if (lead !== '') ex.leaderlessSinceMs = now;
    let match: Record<string, number> | undefined;
    if (st.progress !== undefined) {
      match = {};
      for (const [k, p] of Object.entries(st.progress)) {
        const lagging = this.options.planted === 'promoteLagging' && p.isLearner;
        match[k] = lagging ? st.lastIndex : p.match;
      }
    }
    return {
      self: id,
      state: st.state,
      lead,
      voters: st.config.voters,
      learners: st.config.learners,
      ...(match === undefined ? {} : { match }),
      lastIndex: st.lastIndex,
      record: node.sm.member(id),
      removedHere: node.sm.isRemoved(id),
      peerVerdict: ex.verdict,
      addrs: this.addrs(id),
      // decide() lets only a node that applied nothing join; the planted bug 'rejoinRemoved'
      // calls every node fresh, so a former member joins again (docs/sim.md, Findings).
      fresh: this.options.planted === 'rejoinRemoved' || node.sm.applied === 0,
      leaderlessMs: lead === '' ? now - ex.leaderlessSinceMs : 0,
    };
  }

  private policy(): MembershipPolicy {
    const p = this.options.policy;
    return this.options.planted === 'ignoreMaxVoters'
      ? { ...p, maxVoters: Number.POSITIVE_INFINITY }
      : p;
  }

  private reconcile(id: string): void {
    const node = this.cluster.raftNode(id);
    if (node === undefined) return;
    const ex = this.exec(id);
    if (ex.busy) return;
    const view = this.view(id, node, ex);
    const action = decide(view, this.policy());
    if (action !== undefined) this.carryOut(id, node, ex, action, view);
  }

  private carryOut(
    id: string,
    node: RaftNode,
    ex: Exec,
    action: MembershipAction,
    view: MembershipView,
  ): void {
    const done = (): void => {
      ex.busy = false;
    };
    switch (action.kind) {
      case 'removed':
        this.stats.exits++;
        this.cluster.exit(id, action.why);
        return;
      case 'record':
        ex.busy = true;
        this.stats.records++;
        this.submitThen(id, node, { op: 'member.put', member: action.member }, done);
        return;
      case 'promote': {
        ex.busy = true;
        const st = node.status();
        this.checks.promotionProposed({
          leader: id,
          term: st.term,
          id: action.id,
          commitAtProposal: st.commit,
        });
        this.changeThen(id, node, 'addVoter', action.id, (o) => {
          if (o.ok) {
            this.stats.promotions++;
            this.cluster.note('promoted', { node: action.id, by: id });
          }
          done();
        });
        return;
      }
      case 'join': {
        ex.busy = true;
        const table = node.sm.query({ op: 'members' });
        const known = table.ok ? (table.members ?? []).map((m) => m.id) : [];
        const targets = unique([...(this.seeds.get(id) ?? []), ...known]).filter((t) => t !== id);
        this.tryEach(id, ex, targets, { op: 'join', id, addrs: view.addrs, announce: false }, done);
        return;
      }
      case 'announce': {
        ex.busy = true;
        this.stats.announces++;
        const targets = [...view.voters, ...view.learners].filter((t) => t !== id);
        const req = { op: 'join', id, addrs: action.addrs, announce: true } as const;
        this.tryEach(id, ex, targets, req, done);
        return;
      }
      case 'probe':
        ex.busy = true;
        this.stats.probes++;
        this.probe(id, node, ex, view, done);
        return;
    }
  }

  /** Sends `req` to each target in turn until one accepts (a REMOVED answer also ends it). */
  private tryEach(
    from: string,
    ex: Exec,
    targets: readonly string[],
    req: PeerRequest,
    done: () => void,
  ): void {
    const next = (i: number): void => {
      if (i >= targets.length) return done();
      if (req.op === 'join') this.stats.joinRequests++;
      this.request(from, targets[i]!, req, (r) => {
        if (r.ok) return done();
        if (r.code === 'REMOVED') {
          // A member answered that this node was removed (decideJoin: refuse-removed).
          ex.verdict = 'removed';
          return done();
        }
        next(i + 1);
      });
    };
    next(0);
  }

  /** member.check to every member this node knows of; the newest answer is kept. */
  private probe(id: string, node: RaftNode, ex: Exec, view: MembershipView, done: () => void) {
    const table = node.sm.query({ op: 'members' });
    const known = table.ok ? (table.members ?? []).map((m) => m.id) : [];
    const targets = unique([
      ...view.voters,
      ...view.learners,
      ...known,
      ...(this.seeds.get(id) ?? []),
    ]).filter((t) => t !== id);
    let waiting = targets.length;
    if (waiting === 0) return done();
    for (const t of targets) {
      this.request(id, t, { op: 'check', id }, (r) => {
        if (r.ok && r.verdict !== undefined) ex.verdict = r.verdict;
        if (--waiting === 0) done();
      });
    }
  }

  // ---------------------------------------------------------------------------------------------
  // The link between nodes, and how a member serves join and member.check.

  private linkDelayUs(): number {
    const extra = msToUs(this.linkRandom.exponential(LINK_LATENCY_TAIL_MEAN_MS));
    return Math.max(1, Math.min(msToUs(LINK_LATENCY_MAX_MS), msToUs(LINK_LATENCY_BASE_MS) + extra));
  }

  /** One way over the link: lost 1% of the time, cut by partitions, refused by a down process. */
  private hop(from: string, to: string, deliver: () => void): void {
    if (this.linkRandom.chance(LINK_LOSS_PROBABILITY)) return;
    this.cluster.queue.after(this.linkDelayUs(), () => {
      const ids = this.cluster.ids;
      if (!this.cluster.topology.connected(ids.indexOf(from), ids.indexOf(to))) return;
      this.cluster.inProcess(to, deliver);
    });
  }

  /** A request from `from` to `to`; onReply runs once in `from`'s process (TIMEOUT if no answer). */
  private request(from: string, to: string, req: PeerRequest, onReply: (r: Reply) => void): void {
    const incarnation = this.cluster.incarnationOf(from);
    let answered = false;
    const finish = (r: Reply): void => {
      if (answered || this.cluster.incarnationOf(from) !== incarnation) return;
      answered = true;
      this.cluster.inProcess(from, () => onReply(r));
    };
    this.cluster.schedule(this.options.peerRequestTimeoutMs, () =>
      finish({ ok: false, code: 'TIMEOUT', message: `${to} did not answer` }),
    );
    this.hop(from, to, () => this.serve(to, req, (r) => this.hop(to, from, () => finish(r))));
  }

  private serve(to: string, req: PeerRequest, reply: (r: Reply) => void): void {
    const node = this.cluster.raftNode(to);
    if (node === undefined) return;
    if (req.op === 'check') {
      const st = node.status();
      const verdict = verdictOf(req.id, {
        voters: st.config.voters,
        learners: st.config.learners,
        removed: node.sm.isRemoved(req.id),
      });
      reply({ ok: true, verdict });
      return;
    }
    this.handleJoin(to, node, req, reply);
  }

  /** node/daemon.ts handleJoin, with decideJoin. */
  private handleJoin(
    to: string,
    node: RaftNode,
    req: { id: NodeId; addrs: readonly string[]; announce: boolean },
    reply: (r: Reply) => void,
  ): void {
    const st = node.status();
    const d = decideJoin(
      req.id,
      req.addrs,
      {
        voters: st.config.voters,
        learners: st.config.learners,
        record: node.sm.member(req.id),
        removed: node.sm.isRemoved(req.id),
      },
      // The planted 'rejoinRemoved' answers an announce as a join (the old rule).
      req.announce && this.options.planted !== 'rejoinRemoved',
    );
    switch (d.kind) {
      case 'refuse-removed':
        this.stats.joinsRefusedRemoved++;
        reply({ ok: false, code: 'REMOVED', message: `${req.id} was removed from the cluster` });
        return;
      case 'already':
        reply({ ok: true });
        return;
      case 'update-addrs':
        this.submitThen(to, node, { op: 'member.put', member: d.member }, (o) => reply(answer(o)));
        return;
      case 'refuse-not-member':
        // Only a member announces; one this member's configuration does not hold was removed
        // (or is not applied here yet): adding it would bring it back (docs/sim.md, Findings).
        reply({ ok: false, code: 'NOT_MEMBER', message: `${req.id} is not a member here` });
        return;
      case 'add-learner':
        // The record first, so that the leader can reach the new node once it is a learner.
        this.submitThen(to, node, { op: 'member.put', member: d.member }, (o) => {
          const put = answer(o);
          if (!put.ok) return reply(put);
          this.changeThen(to, node, 'addLearner', req.id, (c) => {
            if (c.ok) {
              this.stats.learnersAdded++;
              this.cluster.note('learner-added', { node: req.id, via: to });
            }
            reply(answer(c));
          });
        });
        return;
    }
  }

  /**
   * Runs `then` with the outcome in `id`'s process as a continuation (after the RaftNode call that
   * answered returned, as an await would), unless that process died meanwhile.
   */
  private continuation<T>(id: string, node: RaftNode, then: (x: T) => void): (x: T) => void {
    return (x) =>
      this.cluster.schedule(0, () => {
        if (this.cluster.raftNode(id) === node) this.cluster.inProcess(id, () => then(x));
      });
  }

  private submitThen(id: string, node: RaftNode, c: Command, then: (o: Outcome) => void): void {
    node.submit(c, this.continuation(id, node, then));
  }

  private changeThen(
    id: string,
    node: RaftNode,
    type: 'addLearner' | 'addVoter' | 'removeNode',
    nodeId: NodeId,
    then: (o: Outcome) => void,
  ): void {
    node.changeMembership({ type, nodeId }, this.continuation(id, node, then));
  }

  // ---------------------------------------------------------------------------------------------
  // The operator: what the membership nemesis does.

  /** The members of the committed configuration that are running (or paused). */
  private liveMembers(): string[] {
    const c = this.checks.committedConfig();
    return this.cluster.ids.filter(
      (id) =>
        (c.voters.includes(id) || c.learners.includes(id)) && this.cluster.processOf(id) !== 'down',
    );
  }

  /** Starts a node that never ran; it joins through `seed` (default: a running member). */
  join(node?: string, seed?: string): void {
    const fresh = this.cluster.ids.filter(
      (id) => this.cluster.incarnationOf(id) === 0 && this.cluster.isRetired(id),
    );
    const id = node ?? fresh[0];
    if (id === undefined || !fresh.includes(id)) return;
    const members = this.liveMembers();
    const via =
      seed ?? (members.length > 0 ? this.choiceRandom.pick(members) : this.cluster.ids[0]!);
    this.seeds.set(id, [via]);
    this.stats.launched++;
    this.cluster.note('join', { node: id, seed: via });
    this.cluster.launch(id);
  }

  /** Removes a member through a running member (remove-peer), retried until it is done. */
  remove(target: RemoveTarget): void {
    const c = this.checks.committedConfig();
    const members = [...c.voters, ...c.learners].filter((id) => !this.removing.has(id));
    if (members.length <= this.options.membersMin) return;
    let id: string | undefined;
    const leader = this.cluster.leader();
    if (target === 'leader')
      id = leader !== undefined && members.includes(leader) ? leader : undefined;
    else if (target === 'voter' || target === 'learner' || target === 'any') {
      const pool = members.filter((m) =>
        target === 'any' ? true : (target === 'voter' ? c.voters : c.learners).includes(m),
      );
      id = pool.length > 0 ? this.choiceRandom.pick(pool.sort()) : undefined;
    } else id = members.includes(target) ? target : undefined;
    if (id === undefined) return;
    this.removing.add(id);
    this.stats.removalsRequested++;
    this.cluster.note('remove', { node: id });
    this.removeAttempt(id);
  }

  private removeAttempt(id: string, retried = false): void {
    const members = this.liveMembers().filter((m) => m !== id);
    const candidates = members.length > 0 ? members : this.liveMembers();
    const retry = (): void =>
      this.cluster.schedule(this.options.operatorRetryMs, () => this.removeAttempt(id, true));
    if (candidates.length === 0) return retry();
    // The first attempt through any member; a retry through the leader, where an earlier attempt
    // that did remove the node is seen (a follower forwards a removeNode of a non-member, and the
    // leader drops it: the attempt times out).
    const leader = this.cluster.leader();
    const via =
      retried && leader !== undefined && candidates.includes(leader)
        ? leader
        : this.choiceRandom.pick(candidates);
    let answered = false;
    const finish = (r: Reply): void => {
      if (answered) return;
      answered = true;
      if (!r.ok) return retry();
      this.removing.delete(id);
      this.stats.removalsDone++;
      this.cluster.note('removal-done', { node: id, via });
    };
    this.cluster.schedule(this.options.peerRequestTimeoutMs, () =>
      finish({ ok: false, code: 'TIMEOUT', message: 'no answer' }),
    );
    // The operator's own link (like a client's): about 1 ms, never cut.
    this.cluster.schedule(1, () =>
      this.cluster.inProcess(via, () => {
        const node = this.cluster.raftNode(via);
        if (node !== undefined) {
          this.handleRemove(via, node, id, (r) => this.cluster.schedule(1, () => finish(r)));
        }
      }),
    );
  }

  /**
   * How a member serves the operator's remove-peer: node/daemon.ts handleRemove (removeNode, then
   * member.remove), made idempotent for the operator's retries, and done only once the tombstone is
   * committed (the daemon answers ok whatever member.remove did: without a tombstone a removed node
   * never finds out). A leader whose configuration no longer holds the node (an earlier attempt
   * removed it) goes straight to member.remove.
   */
  private handleRemove(via: string, node: RaftNode, id: string, reply: (r: Reply) => void): void {
    const st = node.status();
    const inConfig = st.config.voters.includes(id) || st.config.learners.includes(id);
    const tombstone = (): void => {
      if (this.options.planted === 'removeWithoutTombstone' || node.sm.isRemoved(id)) {
        return reply({ ok: true });
      }
      this.submitThen(
        via,
        node,
        { op: 'member.remove', id, atMs: Math.floor(this.cluster.nowMs) },
        (o) => {
          const r = answer(o);
          // notFound and no tombstone: the node has no record, so none can be written (docs/sim.md).
          reply(r.ok || node.sm.isRemoved(id) || r.code === 'notFound' ? { ok: true } : r);
        },
      );
    };
    if (st.state === 'leader' && !inConfig) return tombstone();
    this.changeThen(via, node, 'removeNode', id, (o) => {
      const r = answer(o);
      if (!r.ok) return reply(r);
      tombstone();
    });
  }

  /** Restarts one node that stopped because it was removed: it must find out again, and stop. */
  restartRemoved(): void {
    const exited = this.cluster.ids.filter(
      (id) => this.cluster.isRetired(id) && this.cluster.incarnationOf(id) > 0,
    );
    if (exited.length === 0) return;
    this.stats.removedRestarts++;
    this.cluster.restart(this.choiceRandom.pick(exited));
  }

  // ---------------------------------------------------------------------------------------------
  // The end of a run.

  /** Removals finished and every removed node stopped. */
  settled(): boolean {
    if (this.removing.size > 0) return false;
    for (const id of this.checks.removed.keys()) {
      if (this.cluster.processOf(id) !== 'down') return false;
    }
    return true;
  }

  /** A node's Raft state as a finding shows it: what it believes (its role, leader, term). */
  private raftOf(id: string): string {
    const n = this.cluster.node(id);
    if (n.role === undefined) return '';
    return ` (${n.role}, leader ${n.leader ?? 'none'}, term ${n.term}, applied ${n.applied})`;
  }

  /** After the settle phase: every removed node must have stopped. */
  finish(): void {
    for (const [id, at] of this.checks.removed) {
      const p = this.cluster.processOf(id);
      if (p === 'down') continue;
      const seeds = this.seeds.get(id) ?? [];
      if (
        this.cluster.node(id).applied === 0 &&
        seeds.length > 0 &&
        seeds.every((s) => this.checks.removed.has(s))
      ) {
        this.stats.stranded++;
        continue;
      }
      this.cluster.reportViolation(
        'removed-not-stopped',
        id,
        `${id}, removed at index ${at}, was still ${p === 'up' ? 'running' : p} at ${usToMs(this.cluster.queue.now)} ms${this.raftOf(id)}`,
      );
    }
  }

  /** The committed configuration and who is where, for the run's summary. */
  summary(): MembershipSummary {
    const c = this.checks.committedConfig();
    return {
      voters: [...c.voters],
      learners: [...c.learners],
      removed: [...this.checks.removed.keys()].sort(),
      exited: this.cluster.ids.filter(
        (id) => this.cluster.isRetired(id) && this.cluster.incarnationOf(id) > 0,
      ),
      promotionsChecked: this.checks.promotionsChecked,
      stats: { ...this.stats },
    };
  }
}

export interface MembershipSummary {
  readonly voters: readonly string[];
  readonly learners: readonly string[];
  /** Removed by a committed removeNode. */
  readonly removed: readonly string[];
  /** Stopped by themselves (removed nodes that found out). */
  readonly exited: readonly string[];
  readonly promotionsChecked: number;
  readonly stats: MembershipStats;
}

function unique(xs: readonly string[]): string[] {
  return [...new Set(xs)];
}
