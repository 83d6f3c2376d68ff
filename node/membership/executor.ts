// The membership executor: the thin shell around decide() (decide.ts). On each tick it builds the
// MembershipView from Raft's status, the applied state and what the members last said about this
// node, asks decide() for the one thing to do, and does it through small ports (ask a member,
// commit a command, promote a learner, give up as removed). It decides nothing itself; the
// simulator drives the same decide() through its own shell.
//
// Two readings of the world are the executor's, and documented here because decide() trusts them:
// - leaderlessMs: its own clock, from the first tick it saw no leader.
// - lead: a leader that does not count this node (it is in no configuration of its own, which
//   happens once it applied its own removal) is no leader for it: a node outside the
//   configuration hears from nobody and must find out why (join, which members refuse).

import type { NodeId, StateType } from '../../consensus/index.ts';
import type { Request } from '../api/requests.ts';
import type { ApiResponse } from '../api/wire.ts';
import { JOIN_RETRY_MS_MAX, JoinBackoff } from '../join_backoff.ts';
import type { Outcome } from '../raft/node.ts';
import type { Command, Member } from '../state/machine.ts';
import {
  decide,
  MEMBERSHIP_DEFAULTS,
  type MembershipAction,
  type MembershipPolicy,
  type MembershipView,
  type PeerVerdict,
} from './decide.ts';

/** A member asked in a probe (member.check) gets this long to answer. */
export const PROBE_TIMEOUT_MS = 2000;

/** What the executor reads of Raft's status (RaftNode.status() has these and more). */
export interface RaftView {
  readonly state: StateType;
  readonly lead: NodeId;
  readonly lastIndex: number;
  readonly config: { readonly voters: readonly NodeId[]; readonly learners: readonly NodeId[] };
  readonly progress?: Readonly<Record<NodeId, { readonly match: number }>> | undefined;
  /**
   * No message from the leader for a few election timeouts. A node that may not campaign (a
   * learner, a node in no configuration) never times its leader out in Raft: removed while cut
   * off, it would name its last leader for ever and never find out (docs/sim.md, Findings).
   */
  readonly leaderSilent?: boolean;
  /** This node's log is empty (never part of a cluster). */
  readonly fresh: boolean;
}

export interface MembershipPorts {
  readonly self: NodeId;
  status(): RaftView;
  /** This node's row of the applied member table. */
  record(): Member | undefined;
  /** The applied state holds a tombstone for this node. */
  removedHere(): boolean;
  /** The addresses this process listens on. */
  addrs(): string[];
  /** The name this member should hold (made unique against the table), if it was given one. */
  name(): string | undefined;
  /** Whom to ask, in order: seeds and known members, never this node. */
  peers(): readonly NodeId[];
  ask(id: NodeId, req: Request, timeoutMs?: number): Promise<ApiResponse>;
  submit(c: Command): Promise<Outcome>;
  addVoter(id: NodeId): Promise<Outcome>;
  /** The cluster removed this node: stop taking part (called once). */
  removed(why: string): void;
  now(): number;
  readonly log: {
    info(fields: object, msg: string): void;
    warn(fields: object, msg: string): void;
    debug(fields: object, msg: string): void;
  };
}

/** What members answered to `member.check` about us, as one verdict; `removed` wins. */
export function combineVerdicts(
  answers: readonly (PeerVerdict | undefined)[],
): PeerVerdict | undefined {
  if (answers.includes('removed')) return 'removed';
  if (answers.includes('member')) return 'member';
  if (answers.includes('unknown')) return 'unknown';
  return undefined;
}

function verdictOfAnswer(r: ApiResponse | undefined): PeerVerdict | undefined {
  if (r === undefined) return undefined;
  if (!r.ok) return r.error.code === 'REMOVED' ? 'removed' : undefined;
  const v = r.verdict;
  return v === 'member' || v === 'removed' || v === 'unknown' ? v : undefined;
}

export class MembershipExecutor {
  private readonly p: MembershipPorts;
  private readonly policy: MembershipPolicy;
  private peerVerdict: PeerVerdict | undefined;
  private leaderlessSinceMs: number | undefined;
  private busy = false;
  private readonly joinBackoff = new JoinBackoff();
  /** Set once the removed action ran: the executor does nothing more. */
  private done = false;

  constructor(ports: MembershipPorts, policy: MembershipPolicy = MEMBERSHIP_DEFAULTS) {
    this.p = ports;
    this.policy = policy;
  }

  get isRemoved(): boolean {
    return this.done;
  }

  /**
   * Whether the cluster is known to count this node: a leader that has it in the configuration,
   * or a member that answered `member`. Until then the daemon holds back its VM agent.
   */
  counted(): boolean {
    if (this.done) return false;
    const st = this.p.status();
    const self = this.p.self;
    const inConfig = st.config.voters.includes(self) || st.config.learners.includes(self);
    if (this.p.removedHere()) return false;
    return (inConfig && st.lead !== '') || this.peerVerdict === 'member';
  }

  view(): MembershipView {
    const st = this.p.status();
    const self = this.p.self;
    const inConfig = st.config.voters.includes(self) || st.config.learners.includes(self);
    const lead = inConfig && st.leaderSilent !== true ? st.lead : '';
    const now = this.p.now();
    if (lead !== '') this.leaderlessSinceMs = undefined;
    else this.leaderlessSinceMs ??= now;
    const match =
      st.progress === undefined
        ? undefined
        : Object.fromEntries(Object.entries(st.progress).map(([id, pr]) => [id, pr.match]));
    return {
      self,
      state: st.state,
      lead,
      voters: st.config.voters,
      learners: st.config.learners,
      ...(match !== undefined ? { match } : {}),
      lastIndex: st.lastIndex,
      record: this.p.record(),
      removedHere: this.p.removedHere(),
      peerVerdict: this.peerVerdict,
      addrs: this.p.addrs(),
      name: this.p.name(),
      fresh: st.fresh,
      leaderlessMs: this.leaderlessSinceMs === undefined ? 0 : now - this.leaderlessSinceMs,
    };
  }

  /** One reconcile step: decide, then carry out the one action. Overlapping ticks are skipped. */
  async tick(): Promise<MembershipAction | undefined> {
    if (this.busy || this.done) return undefined;
    this.busy = true;
    try {
      const action = decide(this.view(), this.policy);
      if (action !== undefined) await this.carryOut(action);
      return action;
    } finally {
      this.busy = false;
    }
  }

  private async carryOut(a: MembershipAction): Promise<void> {
    switch (a.kind) {
      case 'removed':
        this.done = true;
        this.p.log.warn({ why: a.why }, 'this node was removed from the cluster; stopping');
        this.p.removed(a.why);
        return;
      case 'join':
        if (!this.joinBackoff.due(this.p.now())) return;
        return this.join(this.p.addrs(), false);
      case 'announce':
        return this.join(a.addrs, true);
      case 'probe':
        return this.probe();
      case 'record': {
        const out = await this.p.submit({ op: 'member.put', member: a.member });
        if (out.ok && !out.result.ok && out.result.code === 'removed') this.peerVerdict = 'removed';
        return;
      }
      case 'promote': {
        const out = await this.p.addVoter(a.id);
        if (out.ok) this.p.log.info({ id: a.id }, 'promoted a caught-up learner to voter');
        return;
      }
    }
  }

  /**
   * Asks each peer in turn to record us with these addresses, until one accepts or refuses us. A
   * join that fails backs off (JoinBackoff) and says so at warn once per change of reason.
   */
  private async join(addrs: readonly string[], announce: boolean): Promise<void> {
    const name = this.p.name();
    const req: Request = {
      op: 'join',
      id: this.p.self,
      addrs,
      ...(announce ? { announce: true } : {}),
      ...(name !== undefined ? { name } : {}),
    };
    let reason = 'no seed or member to ask';
    let waiting = 'waiting for a seed';
    for (const id of this.p.peers()) {
      const resp = await this.p.ask(id, req).catch((e: Error) => e);
      if (resp instanceof Error || (!resp.ok && resp.error.code === 'UNAVAILABLE')) {
        reason = `${id} unreachable`;
        waiting = 'waiting for the seed to be reachable';
        continue;
      }
      if (resp.ok) {
        if (!announce) this.joinBackoff.succeeded();
        this.p.log.info(
          { via: id },
          announce ? 'announced new addresses' : 'join accepted; catching up as a learner',
        );
        return;
      }
      if (resp.error.code === 'REMOVED') {
        this.peerVerdict = 'removed';
        return;
      }
      reason = `${id} answered ${resp.error.code}: ${resp.error.message}`;
      waiting = 'waiting for the seed to accept the join';
    }
    if (announce) return;
    const f = this.joinBackoff.failed(reason.replace(/:.*/, ''), this.p.now());
    const fields = { reason, retryMs: f.retryMs };
    if (f.changed) {
      this.p.log.warn(
        fields,
        `${waiting} (retrying with back-off up to ${JOIN_RETRY_MS_MAX / 1000} s)`,
      );
    } else this.p.log.debug(fields, 'join not accepted yet');
  }

  /** Asks every peer at once whether it still counts us; keeps the combined answer. */
  private async probe(): Promise<void> {
    const answers = await Promise.all(
      this.p
        .peers()
        .map((id) =>
          this.p
            .ask(id, { op: 'member.check', id: this.p.self }, PROBE_TIMEOUT_MS)
            .then(verdictOfAnswer, () => undefined),
        ),
    );
    const v = combineVerdicts(answers);
    if (v !== undefined) this.peerVerdict = v;
    this.p.log.debug({ verdict: v ?? 'no answer' }, 'asked the members about this node');
  }
}
