// Real libp2p hosts for the tests of what runs over them: each on loopback, all holding one fresh
// cluster secret, built as members build theirs (createHost: TCP, the protector, noise, yamux).

import { generateKeyPair } from '@libp2p/crypto/keys';
import { generateKey } from '@libp2p/pnet';
import { createHost, type Host } from '../node/p2p/host.ts';

/**
 * `count` hosts listening on 127.0.0.1, sharing a newly generated cluster secret; with `gossip`,
 * running gossipsub as members do.
 */
export async function loopbackHosts(count: number, o: { gossip?: boolean } = {}): Promise<Host[]> {
  const psk = new Uint8Array(95);
  generateKey(psk);
  return Promise.all(
    Array.from({ length: count }, async () =>
      createHost({
        privateKey: await generateKeyPair('Ed25519'),
        psk,
        listen: ['/ip4/127.0.0.1/tcp/0'],
        ...(o.gossip === true ? { gossip: true } : {}),
      }),
    ),
  );
}
