// Timing values every member should share: the comparison, the gossiped form's check, and two
// daemons in one process (real libp2p and gossipsub on loopback) that run different heartbeat
// intervals and find each other out through gossip.

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { until } from '../test/until.ts';
import { Daemon } from './daemon.ts';
import { CLUSTER_SECRET_FILE } from './identity.ts';
import { type SharedTiming, sharedTimingProblem, timingDifferences } from './shared_timing.ts';

const DEFAULTS: SharedTiming = {
  heartbeatIntervalMs: 400,
  electionTimeoutMs: 1000,
  fenceAfterMs: 4000,
  nodeDownAfterMs: 10_000,
};

describe('timing differences', () => {
  it('names each value that differs, ours then theirs', () => {
    expect(timingDifferences(DEFAULTS, DEFAULTS)).toEqual([]);
    expect(
      timingDifferences(DEFAULTS, {
        ...DEFAULTS,
        electionTimeoutMs: 2000,
        nodeDownAfterMs: 12_000,
      }),
    ).toEqual(['electionTimeoutMs 1000/2000', 'nodeDownAfterMs 10000/12000']);
  });

  it('refuses a gossiped form that is not four whole numbers of ms', () => {
    expect(sharedTimingProblem(DEFAULTS)).toBeUndefined();
    expect(sharedTimingProblem('fast')).toBe('timing is not an object');
    expect(sharedTimingProblem({ ...DEFAULTS, fenceAfterMs: '4s' })).toBe(
      'timing.fenceAfterMs is not a number of ms',
    );
    expect(sharedTimingProblem({ ...DEFAULTS, heartbeatIntervalMs: -1 })).toBe(
      'timing.heartbeatIntervalMs is not a number of ms',
    );
    const { nodeDownAfterMs: _, ...three } = DEFAULTS;
    expect(sharedTimingProblem(three)).toBe('timing.nodeDownAfterMs is not a number of ms');
  });
});

describe('members that run other timing values', () => {
  const daemons: Daemon[] = [];
  let base = '';
  afterAll(async () => {
    for (const d of daemons) await d.stop().catch(() => {});
    if (base !== '') await rm(base, { recursive: true, force: true });
  });

  it('are counted by the others through gossip, and only they', { timeout: 60_000 }, async () => {
    base = await mkdtemp(join(tmpdir(), 'pcr-timing-'));
    const logger = pino({ level: 'silent' });
    const common = {
      listen: ['/ip4/127.0.0.1/tcp/0'],
      logger,
      accel: 'tcg' as const,
      gossipMs: 200,
    };
    const a = await Daemon.start({ ...common, dataDir: join(base, 'a') });
    daemons.push(a);
    await until(() => a.node.status().state === 'leader', 5000, 'a leads');
    // b sends heartbeats every 200 ms (4 ticks) where a sends them every 400.
    const b = await Daemon.start({
      ...common,
      dataDir: join(base, 'b'),
      seeds: [a.addrs()[0]!],
      secretFile: join(base, 'a', CLUSTER_SECRET_FILE),
      heartbeatTicks: 4,
    });
    daemons.push(b);
    // c runs the defaults, as a does.
    const c = await Daemon.start({
      ...common,
      dataDir: join(base, 'c'),
      seeds: [a.addrs()[0]!],
      secretFile: join(base, 'a', CLUSTER_SECRET_FILE),
    });
    daemons.push(c);
    await until(
      () => a.gossip.view.get(c.id)?.metrics.timing !== undefined,
      30_000,
      "a to hear c's values",
    );
    await until(
      () =>
        a.timingMismatchedMembers().length === 1 &&
        b.timingMismatchedMembers().length === 2 &&
        c.timingMismatchedMembers().length === 1,
      30_000,
      'each to count the other',
    );
    expect(a.timingMismatchedMembers()).toEqual([b.id]);
    expect(b.timingMismatchedMembers().sort()).toEqual([a.id, c.id].sort());
    expect(c.timingMismatchedMembers()).toEqual([b.id]);
    const metrics = await (await fetch(a.metricsUrl)).text();
    expect(metrics).toMatch(/^pcr_timing_mismatched_members 1$/m);
  });
});
