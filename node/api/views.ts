// What `status`, `members` and `nodes` show: this member's Raft status, the configuration joined
// with the replicated member table, and the gossiped view of the nodes with their health.

import type { ApiDeps } from './deps.ts';

type ViewDeps = Pick<ApiDeps, 'id' | 'node' | 'gossip'>;

export function statusView(deps: ViewDeps): Record<string, unknown> {
  const st = deps.node.status();
  return {
    id: deps.id,
    state: st.state,
    leader: st.lead,
    term: st.term,
    commit: st.commit,
    applied: st.applied,
    members: membersView(deps, st),
  };
}

export function membersView(deps: ViewDeps, st = deps.node.status()): Record<string, unknown>[] {
  const r = deps.node.sm.query({ op: 'members' });
  const table = new Map((r.ok ? (r.members ?? []) : []).map((m) => [m.id, m]));
  const ids = new Set([...st.config.voters, ...st.config.learners, ...table.keys()]);
  return [...ids].sort().map((id) => ({
    id,
    ...(table.get(id)?.name !== undefined ? { name: table.get(id)?.name } : {}),
    addrs: table.get(id)?.addrs ?? [],
    role: st.config.voters.includes(id)
      ? 'voter'
      : st.config.learners.includes(id)
        ? 'learner'
        : 'member',
    leader: id === st.lead,
    ...(st.progress?.[id] !== undefined
      ? { match: st.progress[id]!.match, active: st.progress[id]!.recentActive }
      : {}),
  }));
}

export function nodesView(deps: ViewDeps): Record<string, unknown>[] {
  const now = Date.now();
  return [...deps.gossip.view.entries()]
    .sort(([a], [b]) => (a < b ? -1 : 1))
    .map(([id, e]) => ({
      ...e.metrics,
      id,
      lastSeenMs: now - e.lastSeen,
      health: deps.gossip.health(id, now),
    }));
}
