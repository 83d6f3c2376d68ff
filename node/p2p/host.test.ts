// --advertise: what a host tells others to dial instead of its listen addresses.

import { generateKeyPair } from '@libp2p/crypto/keys';
import { generateKey } from '@libp2p/pnet';
import { describe, expect, it } from 'vitest';
import { createHost } from './host.ts';

async function host(advertise: string[]) {
  const psk = new Uint8Array(95);
  generateKey(psk);
  return createHost({
    privateKey: await generateKeyPair('Ed25519'),
    psk,
    listen: ['/ip4/127.0.0.1/tcp/0'],
    advertise,
  });
}

describe('createHost advertise', () => {
  it('a bare IP replaces the host part of each listen address, the port kept', async () => {
    const h = await host(['10.1.2.3']);
    try {
      const addrs = h.getMultiaddrs().map(String);
      const port = /\/tcp\/(\d+)/.exec(addrs[0]!)![1];
      expect(addrs).toEqual([`/ip4/10.1.2.3/tcp/${port}/p2p/${h.peerId}`]);
    } finally {
      await h.stop();
    }
  });
  it('a full multiaddr is announced as given', async () => {
    const h = await host(['/dns4/node1.example/tcp/4001']);
    try {
      expect(h.getMultiaddrs().map(String)).toEqual([
        `/dns4/node1.example/tcp/4001/p2p/${h.peerId}`,
      ]);
    } finally {
      await h.stop();
    }
  });
  it('without it, the listen addresses', async () => {
    const h = await host([]);
    try {
      expect(h.getMultiaddrs().map(String)[0]).toMatch(/^\/ip4\/127\.0\.0\.1\/tcp\/\d+\/p2p\//);
    } finally {
      await h.stop();
    }
  });
});
