// The node's Prometheus metrics as one table: each row names a metric, says what it means and how
// to read it from the live components at scrape time. Adding a metric is adding a row; the
// rendering (node/metrics.ts) and the daemon's wiring do not change.

import type { Status } from '../consensus/index.ts';
import type { Sample } from './metrics.ts';
import type { RaftTransportStats } from './p2p/raft_transport.ts';
import type { NodeStats } from './raft/node.ts';

/** What the rows read from: snapshots of the components' counters, taken once per scrape. */
export interface MetricSources {
  readonly status: Status & { applied: number };
  readonly node: NodeStats;
  readonly transport: RaftTransportStats;
  readonly gossip: {
    readonly published: number;
    readonly received: number;
    readonly refused: number;
  };
  readonly daemon: { readonly memberRedials: number };
  readonly store: { readonly quarantined: number };
}

/** One value, or one value per label set (a labelled family). */
export type MetricValue = number | readonly { labels: Record<string, string>; value: number }[];

export interface MetricDef {
  readonly name: string;
  readonly help: string;
  readonly type: 'counter' | 'gauge';
  readonly read: (s: MetricSources) => MetricValue;
}

export const NODE_METRICS: readonly MetricDef[] = [
  { name: 'pcr_raft_term', help: 'Current Raft term.', type: 'gauge', read: (s) => s.status.term },
  {
    name: 'pcr_raft_commit_index',
    help: 'Highest log index known committed.',
    type: 'gauge',
    read: (s) => s.status.commit,
  },
  {
    name: 'pcr_raft_applied_index',
    help: 'Highest log index applied to the state machine.',
    type: 'gauge',
    read: (s) => s.status.applied,
  },
  {
    name: 'pcr_raft_is_leader',
    help: '1 if this member is the leader.',
    type: 'gauge',
    read: (s) => (s.status.state === 'leader' ? 1 : 0),
  },
  {
    name: 'pcr_raft_voters',
    help: 'Voters in the configuration.',
    type: 'gauge',
    read: (s) => s.status.config.voters.length,
  },
  {
    name: 'pcr_raft_learners',
    help: 'Learners in the configuration.',
    type: 'gauge',
    read: (s) => s.status.config.learners.length,
  },
  {
    name: 'pcr_raft_elections_total',
    help: 'Elections started by this member.',
    type: 'counter',
    read: (s) => s.status.stats.elections,
  },
  {
    name: 'pcr_raft_pre_elections_total',
    help: 'Pre-vote rounds started by this member.',
    type: 'counter',
    read: (s) => s.status.stats.preElections,
  },
  {
    name: 'pcr_raft_became_leader_total',
    help: 'Times this member became leader.',
    type: 'counter',
    read: (s) => s.status.stats.becameLeader,
  },
  {
    name: 'pcr_raft_snapshots_sent_total',
    help: 'Snapshots sent to lagging followers.',
    type: 'counter',
    read: (s) => s.status.stats.snapshotsSent,
  },
  {
    name: 'pcr_raft_proposals_total',
    help: 'Commands proposed through this member.',
    type: 'counter',
    read: (s) => s.node.proposals,
  },
  {
    name: 'pcr_raft_disk_batches_total',
    help: 'Synced disk batches (group commits).',
    type: 'counter',
    read: (s) => s.node.diskBatches,
  },
  {
    name: 'pcr_raft_snapshots_taken_total',
    help: 'Snapshots of the state machine taken here.',
    type: 'counter',
    read: (s) => s.node.snapshotsTaken,
  },
  {
    name: 'pcr_raft_snapshots_restored_total',
    help: 'Snapshots received from the leader and installed.',
    type: 'counter',
    read: (s) => s.node.snapshotsRestored,
  },
  {
    name: 'pcr_raft_request_timeouts_total',
    help: 'Requests that timed out.',
    type: 'counter',
    read: (s) => s.node.timeouts,
  },
  {
    name: 'pcr_raft_messages_dropped_total',
    help: 'Raft messages dropped by the core, by reason.',
    type: 'counter',
    read: (s) =>
      Object.entries(s.status.stats.dropped).map(([reason, value]) => ({
        labels: { reason },
        value,
      })),
  },
  {
    name: 'pcr_transport_frames_sent_total',
    help: 'Raft frames written to peers.',
    type: 'counter',
    read: (s) => s.transport.framesSent,
  },
  {
    name: 'pcr_transport_frames_received_total',
    help: 'Raft frames received from peers.',
    type: 'counter',
    read: (s) => s.transport.framesReceived,
  },
  {
    name: 'pcr_transport_bad_frames_total',
    help: 'Raft frames refused (malformed, oversized, spoofed).',
    type: 'counter',
    read: (s) => s.transport.badFrames,
  },
  {
    name: 'pcr_transport_snapshot_chunks_sent_total',
    help: 'Snapshot chunks streamed to lagging members.',
    type: 'counter',
    read: (s) => s.transport.snapshotChunksSent,
  },
  {
    name: 'pcr_transport_snapshots_refused_total',
    help: 'Inbound snapshot streams refused (bad size, overrun, truncated, spoofed).',
    type: 'counter',
    read: (s) => s.transport.snapshotsRefused,
  },
  {
    name: 'pcr_member_redials_total',
    help: 'Dials of members this node held no connection to.',
    type: 'counter',
    read: (s) => s.daemon.memberRedials,
  },
  {
    name: 'pcr_gossip_messages_published_total',
    help: 'Metrics messages published.',
    type: 'counter',
    read: (s) => s.gossip.published,
  },
  {
    name: 'pcr_gossip_messages_received_total',
    help: 'Metrics messages accepted.',
    type: 'counter',
    read: (s) => s.gossip.received,
  },
  {
    name: 'pcr_gossip_messages_refused_total',
    help: 'Metrics messages refused.',
    type: 'counter',
    read: (s) => s.gossip.refused,
  },
  {
    name: 'pcr_store_quarantined_total',
    help: 'Damaged NARs quarantined.',
    type: 'counter',
    read: (s) => s.store.quarantined,
  },
];

/** Reads every row of the table into samples, in table order. */
export function readMetrics(table: readonly MetricDef[], s: MetricSources): Sample[] {
  return table.flatMap((d): Sample[] => {
    const v = d.read(s);
    const base = { name: d.name, help: d.help, type: d.type };
    if (typeof v === 'number') return [{ ...base, value: v }];
    return v.map((x) => ({ ...base, value: x.value, labels: x.labels }));
  });
}
