// The node's Prometheus metrics as one table: each row names a metric, says what it means and how
// to read it from the live components at scrape time. Adding a metric is adding a row; the
// rendering (node/metrics.ts) and the daemon's wiring do not change.

import type { Status } from '../consensus/index.ts';
import type { Sample } from './metrics.ts';
import type { RaftTransportStats } from './p2p/raft_transport.ts';
import type { NodeStats } from './raft/node.ts';
import type { StoreCounters } from './store/store.ts';

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
  readonly daemon: { readonly memberRedials: number; readonly timingMismatchedMembers: number };
  readonly store: Readonly<StoreCounters>;
  /** Uses of each cache token on this node (not replicated). */
  readonly tokenUses: ReadonlyMap<string, number>;
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
    name: 'pcr_timing_mismatched_members',
    help: "Members whose gossiped heartbeat, election, fence-after or node-down-after values differ from this node's.",
    type: 'gauge',
    read: (s) => s.daemon.timingMismatchedMembers,
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
  {
    name: 'pcr_cache_requests_total',
    help: 'Binary cache narinfo lookups by result: local (held here), member (fetched from a member on the miss), upstream (from an upstream cache), miss (nobody had it, or still fetching).',
    type: 'counter',
    read: (s) => [
      { labels: { result: 'local' }, value: s.store.cacheLocalHits },
      { labels: { result: 'member' }, value: s.store.cacheMemberHits },
      { labels: { result: 'upstream' }, value: s.store.cacheUpstreamHits },
      { labels: { result: 'miss' }, value: s.store.cacheMisses },
    ],
  },
  {
    name: 'pcr_cache_served_bytes_total',
    help: 'NAR bytes the binary cache sent over HTTP.',
    type: 'counter',
    read: (s) => s.store.cacheBytesServed,
  },
  {
    name: 'pcr_store_served_bytes_total',
    help: 'NAR bytes served, to Nix over HTTP and to members over the store protocol.',
    type: 'counter',
    read: (s) => s.store.bytesServed,
  },
  {
    name: 'pcr_store_fetched_bytes_total',
    help: 'NAR bytes fetched from members.',
    type: 'counter',
    read: (s) => s.store.bytesFetched,
  },
  {
    name: 'pcr_store_fetch_batches_total',
    help: 'NAR batches fetched from members by path: bulk (a bulk connection, docs/store.md) or stream (a nars stream: the member offered no bulk connection, or it could not be reached).',
    type: 'counter',
    read: (s) => [
      { labels: { path: 'bulk' }, value: s.store.bulkTransfers },
      { labels: { path: 'stream' }, value: s.store.streamTransfers },
    ],
  },
  {
    name: 'pcr_cache_uploads_total',
    help: 'Uploads to the binary cache (nix copy --to) by result: accepted (a path committed) or refused (a NAR or narinfo).',
    type: 'counter',
    read: (s) => [
      { labels: { result: 'accepted' }, value: s.store.uploadsAccepted },
      { labels: { result: 'refused' }, value: s.store.uploadsRefused },
    ],
  },
  {
    name: 'pcr_cache_received_bytes_total',
    help: 'Upload bytes received (as sent, compressed) of NARs that passed their checks.',
    type: 'counter',
    read: (s) => s.store.uploadBytesReceived,
  },
  {
    name: 'pcr_cache_auth_refused_total',
    help: 'Binary cache requests refused for their credential (none, unknown or revoked, under-scoped).',
    type: 'counter',
    read: (s) => s.store.authRefused,
  },
  {
    name: 'pcr_cache_token_uses_total',
    help: 'Requests this node served under each cache token (counted per node, not replicated).',
    type: 'counter',
    read: (s) =>
      [...s.tokenUses.entries()]
        .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
        .map(([token, value]) => ({ labels: { token }, value })),
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
