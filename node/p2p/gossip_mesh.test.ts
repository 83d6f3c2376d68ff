// gossipsub's mesh as members run it (D49): small, because the publisher already sends to every
// member it is connected to (floodPublish) and the mesh only forwards copies. On real hosts: the
// meshes of a fully connected group stay within GOSSIP_MESH's bounds, every message still reaches
// everyone, and a member the publisher has no connection to gets it through the mesh.

import { afterEach, describe, expect, it } from 'vitest';
import { loopbackHosts } from '../../test/hosts.ts';
import { until } from '../../test/until.ts';
import { GOSSIP_MESH, type Host } from './host.ts';

const TOPIC = '/pcr/test-mesh/1';
let hosts: Host[] = [];
afterEach(async () => {
  await Promise.all(hosts.map((h) => h.stop()));
  hosts = [];
});

/** The mesh is on the class, not on the GossipSub interface. */
const mesh = (h: Host) =>
  (h.services.pubsub as unknown as { getMeshPeers(t: string): unknown[] }).getMeshPeers(TOPIC);

/** Subscribes every host; returns each host's count of TOPIC messages received. */
function listen(): number[] {
  const received = hosts.map(() => 0);
  for (const [i, h] of hosts.entries()) {
    h.services.pubsub!.subscribe(TOPIC);
    h.services.pubsub!.addEventListener('message', (e) => {
      if (e.detail.topic === TOPIC) received[i]!++;
    });
  }
  return received;
}

describe('the gossip mesh (GOSSIP_MESH)', () => {
  it('stays within Dlo..Dhi peers in a fully connected group of 8, and every message reaches all', {
    timeout: 60_000,
  }, async () => {
    hosts = await loopbackHosts(8, { gossip: true });
    for (const [i, a] of hosts.entries())
      for (const b of hosts.slice(i + 1)) await a.dial(b.getMultiaddrs());
    const received = listen();
    // gossipsub's defaults (D 6, Dhi 12) would mesh each host with 6 or 7 of the 7 others.
    await until(
      () =>
        hosts.every((h) => mesh(h).length >= GOSSIP_MESH.Dlo && mesh(h).length <= GOSSIP_MESH.Dhi)
          ? true
          : undefined,
      30_000,
      'meshes within bounds',
    );
    expect(Math.max(...hosts.map((h) => mesh(h).length))).toBeLessThan(6);
    for (let i = 0; i < 5; i++)
      await hosts[i % 8]!.services.pubsub!.publish(TOPIC, new TextEncoder().encode(`m${i}`));
    // Hosts 0-4 published one each: each of them gets the other four, hosts 5-7 all five.
    const expected = hosts.map((_, i) => (i < 5 ? 4 : 5));
    await until(
      () => (received.every((n, i) => n === expected[i]) ? true : undefined),
      20_000,
      'every message',
    );
  });

  it('carries a message to a member the publisher has no connection to', {
    timeout: 60_000,
  }, async () => {
    // a - b - c: a and c never dial each other (the allow list lets them; nothing asks).
    hosts = await loopbackHosts(3, { gossip: true });
    const [a, b, c] = hosts as [Host, Host, Host];
    await a.dial(b.getMultiaddrs());
    await b.dial(c.getMultiaddrs());
    const received = listen();
    await until(() => (mesh(b).length === 2 ? true : undefined), 30_000, 'b meshes with a and c');
    expect(a.getConnections(c.peerId)).toEqual([]);
    await a.services.pubsub!.publish(TOPIC, new TextEncoder().encode('hello'));
    await until(() => (received[2] === 1 ? true : undefined), 20_000, 'c gets it through b');
  });
});
