import { Packr } from 'msgpackr';
import { describe, expect, it } from 'vitest';
import { collectMetrics, GOSSIP_INTERVAL_MS, Gossip, METRICS_BYTES_MAX } from './gossip.ts';
import type { Host } from './host.ts';

const packr = new Packr({ useRecords: false });

describe('metrics gossip: what is accepted into the cluster view', () => {
  // receive() is the whole inbound path after gossipsub's signature check; no host is needed.
  const g = (): Gossip => new Gossip({} as Host, () => collectMetrics('x', '0', '/', []));

  it('accepts a well-formed message from the node it describes, with health by age', async () => {
    const gossip = g();
    const m = await collectMetrics('peerA', '0.1.0', '/', ['qemu']);
    expect(gossip.receive('peerA', packr.pack(m))).toBe(true);
    expect(gossip.view.get('peerA')?.metrics).toEqual(m);
    const now = Date.now();
    expect(gossip.health('peerA', now)).toBe('alive');
    expect(gossip.health('peerA', now + 4 * GOSSIP_INTERVAL_MS)).toBe('suspect');
    expect(gossip.health('peerA', now + 20 * GOSSIP_INTERVAL_MS)).toBe('down');
    expect(gossip.health('never-seen')).toBe('down');
  });

  it('refuses unsigned, spoofed, oversized, undecodable and malformed messages', async () => {
    const gossip = g();
    const m = await collectMetrics('peerA', '0.1.0', '/', []);
    expect(gossip.receive(undefined, packr.pack(m))).toBe(false);
    expect(gossip.receive('peerB', packr.pack(m))).toBe(false);
    expect(gossip.receive('peerA', new Uint8Array(METRICS_BYTES_MAX + 1))).toBe(false);
    expect(gossip.receive('peerA', new Uint8Array([0xc1, 0xff]))).toBe(false);
    expect(gossip.receive('peerA', packr.pack({ ...m, load1: 'high' }))).toBe(false);
    expect(gossip.receive('peerA', packr.pack({ ...m, vmms: [1] }))).toBe(false);
    expect(gossip.stats).toMatchObject({ received: 0, refused: 6 });
    expect(gossip.view.size).toBe(0);
  });
});
