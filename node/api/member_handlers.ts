// Membership requests: a node asking to join (or announcing new addresses), leadership transfer,
// removal of a member, and the check that no second process runs with an asker's identity.

import type { Connection } from '@libp2p/interface';
import { peerIdFromString } from '@libp2p/peer-id';
import { multiaddr } from '@multiformats/multiaddr';
import { decideJoin, transferee, verdictOf } from '../membership/decide.ts';
import { findOtherInstance, isInstanceNonce } from '../p2p/instance.ts';
import type { Member } from '../state/machine.ts';
import { waitFor } from '../wait.ts';
import { type ApiDeps, answer } from './deps.ts';
import type { RequestOf } from './requests.ts';
import { type ApiResponse, apiError } from './wire.ts';

/** How long a leader waits for a transfer before it stops anyway (or the request gives up). */
export const TRANSFER_WAIT_MS = 2000;

export async function handleJoin(deps: ApiDeps, req: RequestOf<'join'>): Promise<ApiResponse> {
  const { id, addrs } = req;
  try {
    peerIdFromString(id);
    for (const a of addrs) multiaddr(a);
  } catch (e) {
    return apiError('INVALID', `join: ${(e as Error).message}`);
  }
  const cfg = deps.node.status().config;
  const d = decideJoin(
    id,
    addrs,
    {
      voters: cfg.voters,
      learners: cfg.learners,
      record: deps.node.sm.member(id),
      removed: deps.node.sm.isRemoved(id),
    },
    req.announce === true,
  );
  // The joiner's name goes with its first record; it makes the name unique itself later.
  const named = (m: Member): Member =>
    req.name !== undefined && m.name === undefined ? { ...m, name: req.name } : m;
  switch (d.kind) {
    case 'refuse-removed':
      return apiError(
        'REMOVED',
        `node ${id} was removed from the cluster and cannot join again under that identity: ` +
          'start it with --rejoin to join as a new member',
      );
    case 'refuse-not-member':
      return apiError(
        'NOT_FOUND',
        `node ${id} is not in this member's configuration: it was removed, or its removal is being applied`,
      );
    case 'already':
      return { ok: true, already: true };
    case 'update-addrs':
      deps.learnAddrs(
        id,
        addrs.map((a) => multiaddr(a)),
      );
      return answer(await deps.submit({ op: 'member.put', member: named(d.member) }));
    case 'add-learner': {
      deps.learnAddrs(
        id,
        addrs.map((a) => multiaddr(a)),
      );
      // The address first, so that the leader can reach a new learner as soon as it is added.
      const put = await deps.submit({ op: 'member.put', member: named(d.member) });
      if (!put.ok || !put.result.ok) return answer(put);
      const added = await deps.change('addLearner', id);
      if (!added.ok) return answer(added);
      deps.log.info({ id }, 'added a learner');
      return { ok: true };
    }
  }
}

/** `member.check`: this member's applied view of the asker (decide.ts verdictOf). */
export function handleMemberCheck(deps: ApiDeps, req: RequestOf<'member.check'>): ApiResponse {
  const cfg = deps.node.status().config;
  const verdict = verdictOf(req.id, {
    voters: cfg.voters,
    learners: cfg.learners,
    removed: deps.node.sm.isRemoved(req.id),
  });
  return { ok: true, verdict };
}

export async function handleTransfer(
  deps: ApiDeps,
  req: RequestOf<'raft.transfer'>,
): Promise<ApiResponse> {
  const st = deps.node.status();
  if (st.lead === '') return apiError('NO_LEADER', 'no leader yet: retry shortly');
  const to =
    req.to ??
    transferee(
      deps.id,
      st.config.voters,
      st.progress === undefined
        ? undefined
        : Object.fromEntries(Object.entries(st.progress).map(([id, p]) => [id, p.match])),
    );
  if (to === undefined || !st.config.voters.includes(to))
    return apiError('INVALID', `${String(to)} is not a voter`);
  deps.node.transferLeader(to);
  const ok = await waitFor(() => deps.node.status().lead === to, TRANSFER_WAIT_MS);
  return ok
    ? { ok: true, leader: to }
    : apiError('TIMEOUT', `leadership did not move to ${to} in time`);
}

/**
 * `pcr operator raft remove-peer ID`: out of the configuration, then a tombstone (which also
 * releases its VMs). Idempotent, so a retry after a failure in between finishes the job; done only
 * once the tombstone is committed. A leader asked to remove itself hands leadership over first and
 * passes the request to the new leader: removed, it could no longer commit the tombstone.
 */
export async function handleRemove(
  deps: ApiDeps,
  req: RequestOf<'raft.remove'>,
): Promise<ApiResponse> {
  const st = deps.node.status();
  const inConfig = st.config.voters.includes(req.id) || st.config.learners.includes(req.id);
  if (!inConfig && deps.node.sm.member(req.id) === undefined && !deps.node.sm.isRemoved(req.id))
    return apiError('NOT_FOUND', `no member ${req.id}: see pcr members`);
  if (req.id === deps.id && st.state === 'leader' && st.config.voters.length > 1) {
    const moved = await handleTransfer(deps, { op: 'raft.transfer' });
    if (!moved.ok) return moved;
    const to = deps.addrsOf(String(moved.leader));
    return deps
      .request(to, req)
      .catch((e: Error) =>
        apiError('UNAVAILABLE', `the new leader did not take the removal: ${e.message}`),
      );
  }
  if (inConfig) {
    const out = await deps.change('removeNode', req.id);
    if (!out.ok) return answer(out);
  }
  const tomb = await deps.submit({ op: 'member.remove', id: req.id, atMs: Date.now() });
  if (!tomb.ok || !tomb.result.ok) return answer(tomb);
  return { ok: true };
}

export async function handleInstanceCheck(
  deps: ApiDeps,
  req: RequestOf<'instance.check'>,
  connection: Connection,
): Promise<ApiResponse> {
  if (req.id !== connection.remotePeer.toString() || !isInstanceNonce(req.nonce)) {
    return apiError('INVALID', "instance.check takes the asker's own id and a nonce");
  }
  const at = await findOtherInstance(deps.host, connection, req.nonce);
  if (at !== undefined) {
    deps.log.warn({ id: req.id, at }, 'refused a second process with the identity of a member');
  }
  return { ok: true, duplicate: at ?? false };
}
