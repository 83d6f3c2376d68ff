// The node's libp2p host: TCP, the cluster's private network (pre-shared key), noise, yamux,
// identify and ping. Peers are dialed explicitly (libp2p 3 does not auto-dial); the node redials
// its members itself.

import '../polyfill.ts';
import { noise } from '@chainsafe/libp2p-noise';
import { yamux } from '@chainsafe/libp2p-yamux';
import { type GossipSub, gossipsub } from '@libp2p/gossipsub';
import { identify } from '@libp2p/identify';
import type { PrivateKey } from '@libp2p/interface';
import { ping } from '@libp2p/ping';
import { tcp } from '@libp2p/tcp';
import { type Multiaddr, multiaddr } from '@multiformats/multiaddr';
import { createLibp2p, type Libp2p } from 'libp2p';
import { installQuietLengthPrefixes } from './length_prefix.ts';
import { clusterProtector } from './protector.ts';
import { installHalfWindowUpdates } from './yamux_window.ts';

/**
 * libp2p pings every connection this often (its default is 10 s) and closes one whose ping times
 * out. Raft and gossip carry their own liveness; the ping only finds dead connections for the
 * member redial (daemon), so it need not be frequent: at 10 s it was the largest item of an idle
 * member's CPU after Raft's heartbeats (docs/operations.md, "Idle cost").
 */
export const CONNECTION_PING_INTERVAL_MS = 60_000;

export interface HostOptions {
  readonly privateKey: PrivateKey;
  /** The cluster secret in the swarm-key format (95 bytes; node/p2p/protector.ts uses it). */
  readonly psk: Uint8Array;
  readonly listen: readonly string[];
  /**
   * What to tell others to dial instead of the listen addresses (`--advertise`): full multiaddrs,
   * or a bare IP or host name that replaces the host part of each listen address (port kept).
   */
  readonly advertise?: readonly string[];
  /** Loopback and test networks dial each other a lot: allow them past the inbound rate limit. */
  readonly allow?: readonly string[];
  /** Run gossipsub (members do; the `pcr` client does not). */
  readonly gossip?: boolean;
}

export type Host = Libp2p<{
  identify: ReturnType<ReturnType<typeof identify>>;
  ping: ReturnType<ReturnType<typeof ping>>;
  pubsub?: GossipSub;
}>;

export async function createHost(o: HostOptions): Promise<Host> {
  installHalfWindowUpdates();
  installQuietLengthPrefixes();
  return (await createLibp2p({
    privateKey: o.privateKey,
    addresses: { listen: [...o.listen], ...advertised(o.advertise ?? []) },
    transports: [tcp()],
    connectionProtector: clusterProtector({ psk: o.psk }),
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    connectionManager: { allow: [...(o.allow ?? ['/ip4/127.0.0.0/ipcidr/8'])] },
    connectionMonitor: { pingInterval: CONNECTION_PING_INTERVAL_MS },
    services: {
      identify: identify(),
      ping: ping(),
      ...(o.gossip === true
        ? {
            pubsub: gossipsub({
              allowPublishToZeroTopicPeers: true,
              // Members often share one IP (tests, one machine): without this, more than 10
              // same-IP peers score each other negative and no mesh forms (docs/decisions.md D22).
              scoreParams: { IPColocationFactorWeight: 0 },
              // Copies of a message are dropped before their signature is checked (D45).
              fastMsgIdFn: fastMessageId,
              heartbeatInterval: GOSSIP_HEARTBEAT_MS,
            }),
          }
        : {}),
    },
  })) as unknown as Host;
}

/**
 * gossipsub's own clock (its default is 1 s): mesh upkeep, and IHAVE to the peers outside the
 * mesh. Members publish every GOSSIP_INTERVAL_MS (gossip.ts) and each publisher sends to every subscribed
 * peer (floodPublish), so the mesh only forwards copies; at 1 s the heartbeat's IHAVEs were a
 * tenth of an idle 16-member cluster's CPU (D46).
 */
export const GOSSIP_HEARTBEAT_MS = 5_000;

/**
 * A gossip message's ID before it is verified: its author and sequence number, what gossipsub's
 * StrictSign message ID is made of (the author's key and the sequence number). gossipsub remembers
 * it only once the message verified, so a forged copy cannot shadow the real one; without it,
 * every copy a member gets from its mesh (up to D = 6) was checked, an ed25519 verification each.
 */
export function fastMessageId(m: { from?: Uint8Array; seqno?: Uint8Array }): string {
  if (m.from === undefined || m.seqno === undefined) return '';
  return `${Buffer.from(m.from.buffer, m.from.byteOffset, m.from.byteLength).toString('base64')}/${Buffer.from(m.seqno.buffer, m.seqno.byteOffset, m.seqno.byteLength).toString('hex')}`;
}

/** libp2p's address options for `--advertise` (see HostOptions.advertise). */
function advertised(advertise: readonly string[]): {
  announce?: string[];
  announceFilter?: (mas: Multiaddr[]) => Multiaddr[];
} {
  if (advertise.length === 0) return {};
  const full = advertise.filter((a) => a.startsWith('/'));
  const hosts = advertise.filter((a) => !a.startsWith('/'));
  if (hosts.length === 0) return { announce: full };
  return {
    ...(full.length > 0 ? { announce: full } : {}),
    announceFilter: (mas) => {
      const out = new Map<string, Multiaddr>();
      for (const a of full) out.set(a, multiaddr(a));
      for (const ma of mas) {
        for (const h of hosts) {
          const proto = /^\d+\.\d+\.\d+\.\d+$/.test(h) ? 'ip4' : h.includes(':') ? 'ip6' : 'dns';
          const text = ma.toString().replace(/^\/(ip4|ip6|dns4|dns6|dns)\/[^/]+/, `/${proto}/${h}`);
          out.set(text, multiaddr(text));
        }
      }
      return [...out.values()];
    },
  };
}
