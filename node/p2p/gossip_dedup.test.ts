// gossipsub on real hosts, as members run it: a message reaches a member once from its author and
// again from every mesh peer that forwards it; only the first copy is verified (D45). Counted on
// the ed25519 verifications the hosts make while a message goes round a full mesh of four.

import { generateKeyPair } from '@libp2p/crypto/keys';
import { afterEach, describe, expect, it } from 'vitest';
import { loopbackHosts } from '../../test/hosts.ts';
import { until } from '../../test/until.ts';
import { fastMessageId, type Host } from './host.ts';

const TOPIC = '/pcr/test-dedup/1';
const MESSAGES = 10;
let hosts: Host[] = [];
afterEach(async () => {
  await Promise.all(hosts.map((h) => h.stop()));
  hosts = [];
});

describe('gossip message IDs before verification', () => {
  it('are the author and the sequence number', () => {
    const a = { from: new Uint8Array([1, 2, 3]), seqno: new Uint8Array([0, 0, 0, 7]) };
    expect(fastMessageId(a)).toBe(fastMessageId({ from: a.from.slice(), seqno: a.seqno.slice() }));
    expect(fastMessageId(a)).not.toBe(fastMessageId({ ...a, seqno: new Uint8Array([0, 0, 0, 8]) }));
    expect(fastMessageId(a)).not.toBe(fastMessageId({ ...a, from: new Uint8Array([1, 2, 4]) }));
    expect(fastMessageId({ seqno: a.seqno })).toBe('');
  });

  it('let a member verify each message once, not each copy its mesh forwards', {
    timeout: 60_000,
  }, async () => {
    hosts = await loopbackHosts(4, { gossip: true });
    for (const [i, a] of hosts.entries())
      for (const b of hosts.slice(i + 1)) await a.dial(b.getMultiaddrs());
    const received = hosts.map(() => 0);
    for (const [i, h] of hosts.entries()) {
      h.services.pubsub!.subscribe(TOPIC);
      h.services.pubsub!.addEventListener('message', (e) => {
        if (e.detail.topic === TOPIC) received[i]!++;
      });
    }
    // Every member meshed with the three others (D = 6 covers them all). The mesh is on the
    // class, not on the GossipSub interface.
    const mesh = (h: Host) =>
      (h.services.pubsub as unknown as { getMeshPeers(t: string): unknown[] }).getMeshPeers(TOPIC);
    await until(() => hosts.every((h) => mesh(h).length === 3), 20_000, 'a full mesh');

    // Count the ed25519 verifications from here on (all keys share the class).
    const proto = Object.getPrototypeOf((await generateKeyPair('Ed25519')).publicKey) as {
      verify: (...a: unknown[]) => unknown;
    };
    const verify = proto.verify;
    let verified = 0;
    proto.verify = function (this: unknown, ...a: unknown[]) {
      verified++;
      return verify.apply(this, a);
    };
    try {
      for (let i = 0; i < MESSAGES; i++) {
        await hosts[0]!.services.pubsub!.publish(TOPIC, new TextEncoder().encode(`m${i}`));
      }
      await until(() => received.slice(1).every((n) => n === MESSAGES), 20_000, 'every message');
      // The forwarded copies arrive after the first: give them time to be counted.
      await new Promise((r) => setTimeout(r, 1000));
    } finally {
      proto.verify = verify;
    }
    // Each of the three others verified each message once; the copies (two more each, from the
    // other two members' forwarding) were dropped first.
    expect(received.slice(1)).toEqual([MESSAGES, MESSAGES, MESSAGES]);
    expect(verified).toBe(MESSAGES * 3);
  });
});
