// The names of the files a node keeps in its data dir. A module of its own, with no imports, so
// that `pcr` can find a local node without loading the key and secret code (node/identity.ts).

export const PEER_KEY_FILE = 'peer.key';
export const CLUSTER_SECRET_FILE = 'cluster.secret';
/** Where a running node says how to reach it (for `pcr` on the same machine). */
export const NODE_INFO_FILE = 'node.json';
/**
 * The seeds a node was first started with, kept until it has a log: a node stopped before its
 * join brought it any entry, and started again without `--seed`, joins through them instead of
 * bootstrapping a cluster of its own (node/join_seeds.ts).
 */
export const JOIN_SEEDS_FILE = 'join-seeds.json';
