// Carries out a nemesis plan (nemesis.ts) on the real cluster, and undoes it: DROP rules in the
// nodes' own namespaces (partitions), iptables' statistic match (loss; tc netem does not work
// on these machines), kill -9 and restart, SIGSTOP and SIGCONT, libfaketime offsets (skew).

import type { Cluster } from './cluster.ts';
import type { Fault } from './nemesis.ts';
import { CHAIN_LOSS, CHAIN_PARTITION, iptablesIn } from './netns.ts';

export async function applyFault(cluster: Cluster, f: Fault): Promise<void> {
  switch (f.kind) {
    case 'partition':
      for (const d of f.drops) {
        const from = cluster.node(d.from).addr;
        await iptablesIn(d.node, ['-A', CHAIN_PARTITION, '-s', from, '-j', 'DROP']);
      }
      return;
    case 'loss':
      for (const name of f.nodes) {
        // Only the node's peers' packets: the harness's own client traffic is not the target.
        for (const peer of cluster.nodes.filter((n) => n.name !== name)) {
          await iptablesIn(name, [
            '-A',
            CHAIN_LOSS,
            '-s',
            peer.addr,
            '-m',
            'statistic',
            '--mode',
            'random',
            '--probability',
            String(f.probability),
            '-j',
            'DROP',
          ]);
        }
      }
      return;
    case 'kill':
      for (const name of f.nodes) await cluster.kill(cluster.node(name));
      return;
    case 'pause':
      for (const name of f.nodes) cluster.signal(cluster.node(name), 'SIGSTOP');
      return;
    case 'skew':
      for (const name of f.nodes) cluster.skew(cluster.node(name), f.offsetS);
      return;
  }
}

export async function healFault(cluster: Cluster, f: Fault): Promise<void> {
  switch (f.kind) {
    case 'partition':
      for (const n of new Set(f.drops.map((d) => d.node))) {
        await iptablesIn(n, ['-F', CHAIN_PARTITION]);
      }
      return;
    case 'loss':
      for (const n of f.nodes) await iptablesIn(n, ['-F', CHAIN_LOSS]);
      return;
    case 'kill':
      for (const name of f.nodes) {
        const n = cluster.node(name);
        if (!cluster.running(n)) await cluster.startNode(n);
      }
      return;
    case 'pause':
      for (const name of f.nodes) cluster.signal(cluster.node(name), 'SIGCONT');
      return;
    case 'skew':
      for (const name of f.nodes) cluster.skew(cluster.node(name), 0);
      return;
  }
}

/** Counts the DROP rules in our chains on every node (the cleanup test asserts zero after heal). */
export async function countRules(cluster: Cluster): Promise<number> {
  let rules = 0;
  for (const n of cluster.nodes) {
    for (const chain of [CHAIN_PARTITION, CHAIN_LOSS]) {
      const out = await iptablesIn(n.name, ['-S', chain]);
      rules += out.split('\n').filter((l) => l.startsWith('-A')).length;
    }
  }
  return rules;
}
