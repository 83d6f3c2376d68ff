// `pcr maelstrom` as real processes behind the router (router.ts): the init handshake, bad input,
// a 3-node cluster's lin-kv answers, and a run with partitions whose history must be linearizable.
// A cluster of deliberately broken nodes checks that the harness can fail at all.

import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { runLinKvTest } from './harness.ts';
import { Router } from './router.ts';

let router: Router | undefined;
afterEach(async () => {
  await router?.stop();
  router = undefined;
});

const TSX_LOADER = new URL('../../node_modules/tsx/dist/loader.mjs', import.meta.url).href;
const LONELY_NODE = fileURLToPath(new URL('../../test/maelstrom/lonely_node.ts', import.meta.url));

/** Retries while refused with 11 (no leader yet, or an election under way). */
async function served(r: Router, node: string, body: Record<string, unknown>) {
  const end = Date.now() + 10_000;
  for (;;) {
    const res = await r.request('c1', node, { type: String(body.type), ...body }, 2_000);
    if (!res.ok) throw new Error(`${node} did not answer ${JSON.stringify(body)} in time`);
    if (!(res.body.type === 'error' && res.body.code === 11) || Date.now() > end) return res.body;
    await new Promise((x) => setTimeout(x, 50));
  }
}

describe('pcr maelstrom processes', () => {
  it('does the init handshake, answers bad input with 12 or 10, and survives garbage', async () => {
    router = await Router.start({ nodeCount: 1 });
    const r = router;
    r.sendRaw('n0', 'not json at all {');
    r.sendRaw('n0', '{"src":"c1","dest":"n0","body":{"type":"raft","data":"%%%"}}');
    const noKey = await r.request('c1', 'n0', { type: 'read' }, 2_000);
    expect(noKey.ok && noKey.body).toMatchObject({ type: 'error', code: 12 });
    const noValue = await r.request('c1', 'n0', { type: 'write', key: 1 }, 2_000);
    expect(noValue.ok && noValue.body).toMatchObject({ type: 'error', code: 12 });
    const unknown = await r.request('c1', 'n0', { type: 'txn', txn: [] }, 2_000);
    expect(unknown.ok && unknown.body).toMatchObject({ type: 'error', code: 10 });
    // Still serving: a single-node group elects itself and answers.
    expect(await served(r, 'n0', { type: 'write', key: 1, value: 1 })).toMatchObject({
      type: 'write_ok',
    });
    expect(await served(r, 'n0', { type: 'read', key: 1 })).toMatchObject({ value: 1 });
    expect(r.isRunning('n0')).toBe(true);
    expect(r.problems).toEqual([]);
    expect(r.logs('n0').some((l) => /malformed message \(not JSON/.test(l))).toBe(true);
  });

  it('serves write, read and cas on a 3-node cluster, with errors 20 and 22', async () => {
    router = await Router.start({ nodeCount: 3, latencyMs: { min: 0, max: 5 } });
    const r = router;
    expect(await served(r, 'n0', { type: 'read', key: 7 })).toMatchObject({
      type: 'error',
      code: 20,
    });
    expect(await served(r, 'n1', { type: 'write', key: 7, value: 1 })).toMatchObject({
      type: 'write_ok',
    });
    expect(await served(r, 'n2', { type: 'read', key: 7 })).toMatchObject({
      type: 'read_ok',
      value: 1,
    });
    expect(await served(r, 'n0', { type: 'cas', key: 7, from: 2, to: 3 })).toMatchObject({
      type: 'error',
      code: 22,
    });
    expect(await served(r, 'n2', { type: 'cas', key: 7, from: 1, to: 3 })).toMatchObject({
      type: 'cas_ok',
    });
    expect(await served(r, 'n1', { type: 'cas', key: 8, from: 1, to: 3 })).toMatchObject({
      type: 'error',
      code: 20,
    });
    expect(await served(r, 'n1', { type: 'read', key: 7 })).toMatchObject({ value: 3 });
    expect(r.problems).toEqual([]);
    expect(r.stats.routed).toBeGreaterThan(0);
  });

  it('stays linearizable through partitions into random halves, and serves after the heal', async () => {
    const report = await runLinKvTest({
      nodeCount: 3,
      timeMs: 12_000,
      clients: 4,
      nemesis: 'partition',
      nemesisIntervalMs: 2_000,
      finalHealMs: 3_000,
      latencyMs: { min: 0, max: 3 },
      seed: 20_251_123,
    });
    const c = report.counts;
    console.log(
      `partition run: ${c.ok} ok, ${c.fail} fail, ${c.info} info; ${report.okAfterFinalHeal} ok ` +
        `after the final heal; ${report.router.dropped} messages cut; verdict ${report.check.verdict}`,
    );
    expect(report.problems).toEqual([]);
    expect(report.nemesis.filter((e) => e.action === 'partition').length).toBeGreaterThanOrEqual(2);
    expect(report.router.dropped).toBeGreaterThan(0);
    expect(report.check.verdict).toBe('ok');
    expect(c.ok).toBeGreaterThan(100);
    expect(report.okAfterFinalHeal).toBeGreaterThan(20);
  });

  it('finds the violation in a cluster of nodes that do not replicate (the harness can fail)', async () => {
    const report = await runLinKvTest({
      nodeCount: 3,
      timeMs: 2_000,
      clients: 3,
      nemesis: 'none',
      keys: 1,
      seed: 7,
      command: [process.execPath, '--import', TSX_LOADER, LONELY_NODE],
    });
    expect(report.counts.ok).toBeGreaterThan(20);
    expect(report.check.verdict).toBe('violation');
  });
});
