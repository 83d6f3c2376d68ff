// The deployment requests through the real API: a daemon in this process (real libp2p on
// loopback, real LevelDB), the product's client. Submit (a version, then a no-op), bad input,
// get and list, promote and rollback refused with the reason, and vm.run, vm.stop, vm.rm on the
// deployment's group refused with a pointer to pcr deploy; a spec no node could hold refused
// (UNPLACEABLE) before anything is committed, as vm.run refuses it. docs/deploy.md, "API and CLI".

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { until } from '../../test/until.ts';
import { Daemon } from '../daemon.ts';
import { CLUSTER_SECRET_FILE, readSecret } from '../identity.ts';
import type { Deployment } from '../state/deployments.ts';
import { ApiClient } from './client.ts';

const logger = pino({ level: process.env.PCR_LOG_LEVEL ?? 'silent' });
let dir: string;
let daemon: Daemon | undefined;
let client: ApiClient | undefined;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'pcr-deploy-api-'));
  daemon = await Daemon.start({
    dataDir: join(dir, 'a'),
    listen: ['/ip4/127.0.0.1/tcp/0'],
    logger,
    accel: 'tcg',
  });
  await until(() => daemon!.node.status().state === 'leader', 5000);
  // The node's capacity and backends in the node table: until then nothing is refused as
  // unplaceable (a member still starting may be the one that fits).
  await until(() => daemon!.node.sm.nodes.get(daemon!.id) !== undefined, 60_000);
  const secret = await readSecret(join(dir, 'a', CLUSTER_SECRET_FILE));
  client = await ApiClient.connect(daemon.addrs()[0]!, secret);
});

afterAll(async () => {
  await client?.close();
  await daemon?.stop().catch(() => {});
  await rm(dir, { recursive: true, force: true });
});

// A runner no store holds: an instance placed here waits for its closure, nothing starts. Two
// instances on one node: allowSharing (else no node could hold the group: UNPLACEABLE).
const runner = '/nix/store/0c6lw3rq0qvd4n4ys4fvnnbd5bxxc0nk-microvm-run-web';
const spec = { version: 1, runner, memoryMiB: 256, count: 2, allowSharing: true };
const source = { flake: 'git+file:///src', rev: 'abc123' };

describe('deploy API', () => {
  it('submits a version, answers a no-op for the same one, and refuses bad input at the door or at apply', async () => {
    const c = client!;
    const first = await c.request({ op: 'deploy.submit', name: 'web', spec, source });
    expect(first).toMatchObject({
      ok: true,
      noop: false,
      version: 1,
      deployment: { name: 'web', rollout: { to: 1, state: 'running' } },
    });
    const again = await c.request({ op: 'deploy.submit', name: 'web', spec, source });
    expect(again).toMatchObject({ ok: true, noop: true, version: 1 });
    const next = await c.request({
      op: 'deploy.submit',
      name: 'web',
      spec: { ...spec, memoryMiB: 512 },
      update: { maxParallel: 2 },
      source,
    });
    expect(next).toMatchObject({ ok: true, noop: false, version: 2 });
    const bad = await c.request({
      op: 'deploy.submit',
      name: 'web',
      spec: { ...spec, vcpus: 0 },
      update: { maxParallel: 65 },
      source,
    });
    expect(bad).toMatchObject({ ok: false, error: { code: 'INVALID' } });
    expect(JSON.stringify(bad)).toMatch(/vcpus/);
    const policy = await c.request({
      op: 'deploy.submit',
      name: 'web',
      spec,
      update: { maxParallel: 65 },
      source,
    });
    expect(JSON.stringify(policy)).toMatch(/DEPLOY_PARALLEL_MAX/);
    expect(await c.request({ op: 'deploy.submit', name: 'web', spec })).toMatchObject({
      ok: false,
      error: { code: 'INVALID', message: 'source must be an object' },
    });
  });

  it('get and list answer the table; an unknown name is NOT_FOUND', async () => {
    const c = client!;
    const got = await c.request({ op: 'deploy.get', name: 'web' });
    expect(got).toMatchObject({
      ok: true,
      deployment: { name: 'web', versions: [{ n: 1 }, { n: 2, update: { maxParallel: 2 } }] },
    });
    expect(
      (got as unknown as { deployment: { versions: { source: object }[] } }).deployment.versions[0]!
        .source,
    ).toMatchObject(source);
    expect(await c.request({ op: 'deploy.list', stale: true })).toMatchObject({
      ok: true,
      deployments: [{ name: 'web' }],
    });
    expect(await c.request({ op: 'deploy.get', name: 'nope' })).toMatchObject({
      ok: false,
      error: { code: 'NOT_FOUND' },
    });
  });

  it('promote and rollback say why they cannot act', async () => {
    const c = client!;
    expect(await c.request({ op: 'deploy.promote', name: 'web' })).toMatchObject({
      ok: false,
      error: { code: 'INVALID', message: expect.stringMatching(/no canary rollout waiting/) },
    });
    expect(await c.request({ op: 'deploy.rollback', name: 'web' })).toMatchObject({
      ok: false,
      error: { code: 'INVALID', message: expect.stringMatching(/no known-good version/) },
    });
    expect(await c.request({ op: 'deploy.rollback', name: 'web', to: 0 })).toMatchObject({
      ok: false,
      error: { code: 'INVALID', message: 'to must be a version number' },
    });
    expect(await c.request({ op: 'deploy.promote', name: 'nope' })).toMatchObject({
      ok: false,
      error: { code: 'NOT_FOUND' },
    });
  });

  it('vm.run, vm.stop and vm.rm on the deployment group point at pcr deploy', async () => {
    const c = client!;
    for (const req of [
      { op: 'vm.run', spec: { ...spec, name: 'web' } },
      { op: 'vm.stop', name: 'web' },
      { op: 'vm.rm', name: 'web-1' },
    ]) {
      expect(await c.request(req)).toMatchObject({
        ok: false,
        error: { code: 'INVALID', message: expect.stringMatching(/deployment web.*pcr deploy/) },
      });
    }
    expect(await c.request({ op: 'vm.list', group: 'web' })).toMatchObject({
      ok: true,
      vms: [
        { name: 'web-0', desired: 'running' },
        { name: 'web-1', desired: 'running' },
      ],
    });
  });

  it('refuses a spec no node could ever hold (UNPLACEABLE, as vm.run) and commits nothing', async () => {
    const c = client!;
    const mars = {
      ...spec,
      constraints: [{ attribute: 'label.zone', operator: '=', value: 'mars' }],
    };
    // A new deployment: refused with what the filters removed, and no deployment exists.
    const first = await c.request({ op: 'deploy.submit', name: 'db', spec: mars, source });
    expect(first).toMatchObject({
      ok: false,
      error: { code: 'UNPLACEABLE', message: expect.stringMatching(/no node fits/) },
    });
    // vm.run says the same of the same spec.
    const run = await c.request({ op: 'vm.run', spec: { ...mars, name: 'db' } });
    expect(run).toMatchObject({ ok: false, error: { code: 'UNPLACEABLE' } });
    expect((run as { error: { message: string } }).error.message).toBe(
      (first as { error: { message: string } }).error.message,
    );
    expect(await c.request({ op: 'deploy.get', name: 'db' })).toMatchObject({
      ok: false,
      error: { code: 'NOT_FOUND' },
    });
    // Two instances on one node without allowSharing: refused too.
    const apart = await c.request({
      op: 'deploy.submit',
      name: 'db',
      spec: { ...spec, allowSharing: false },
      source,
    });
    expect(apart).toMatchObject({ ok: false, error: { code: 'UNPLACEABLE' } });
    // A new version of an existing deployment: refused, the versions unchanged.
    const versions = async () =>
      (
        (await c.request({ op: 'deploy.get', name: 'web' })) as unknown as {
          deployment: Deployment;
        }
      ).deployment.versions;
    const before = await versions();
    const next = await c.request({ op: 'deploy.submit', name: 'web', spec: mars, source });
    expect(next).toMatchObject({ ok: false, error: { code: 'UNPLACEABLE' } });
    expect(await versions()).toEqual(before);
    // The same spec, placeable, is taken.
    expect(
      await c.request({ op: 'deploy.submit', name: 'db', spec: { ...spec, count: 1 }, source }),
    ).toMatchObject({ ok: true, version: 1 });
  });

  it('deploy.check answers what deploy.submit would, and commits nothing', async () => {
    const c = client!;
    const mars = {
      ...spec,
      constraints: [{ attribute: 'label.zone', operator: '=', value: 'mars' }],
    };
    const versions = async (name: string) =>
      (
        (await c.request({ op: 'deploy.get', name })) as unknown as {
          deployment: Deployment;
        }
      ).deployment.versions;
    const current = { ...spec, memoryMiB: 264 };
    const submitted = (await c.request({
      op: 'deploy.submit',
      name: 'web',
      spec: current,
      source,
    })) as unknown as { version: number };
    const before = await versions('web');
    // Unplaceable: the submit's very refusal (message included), for a new deployment and a new
    // version of one.
    const refusal = await c.request({ op: 'deploy.submit', name: 'nowhere', spec: mars, source });
    expect(await c.request({ op: 'deploy.check', name: 'nowhere', spec: mars })).toEqual(refusal);
    expect(await c.request({ op: 'deploy.check', name: 'web', spec: mars })).toMatchObject({
      ok: false,
      error: { code: 'UNPLACEABLE' },
    });
    // Bad input at the door, as the submit: an unknown update field.
    expect(
      await c.request({ op: 'deploy.check', name: 'web', spec, update: { nope: 1 } }),
    ).toMatchObject({
      ok: false,
      error: { code: 'INVALID', message: expect.stringMatching(/nope/) },
    });
    // The newest version again: a no-op, with its number.
    expect(await c.request({ op: 'deploy.check', name: 'web', spec: current })).toEqual({
      ok: true,
      noop: true,
      version: submitted.version,
    });
    // A placeable new version: ok; nothing was committed by any of these.
    expect(
      await c.request({ op: 'deploy.check', name: 'web', spec: { ...spec, memoryMiB: 300 } }),
    ).toEqual({ ok: true });
    expect(await versions('web')).toEqual(before);
    expect(await c.request({ op: 'deploy.get', name: 'nowhere' })).toMatchObject({
      ok: false,
      error: { code: 'NOT_FOUND' },
    });
  });

  it('a re-submission of the newest version stays a no-op when no node could hold it any more', async () => {
    const c = client!;
    const get = async () =>
      ((await c.request({ op: 'deploy.get', name: 'db' })) as unknown as { deployment: Deployment })
        .deployment;
    const newest = (await get()).versions.at(-1)!;
    const same = { ...spec, count: 1 };
    // The only node ineligible: nothing new can be placed (what `pcr deploy watch` meets after
    // the cluster shrank), but the running version submitted again is still no change.
    expect(
      await c.request({ op: 'node.eligibility', node: daemon!.id, eligible: false }),
    ).toMatchObject({ ok: true });
    try {
      expect(
        await c.request({ op: 'deploy.submit', name: 'db', spec: same, source }),
      ).toMatchObject({ ok: true, noop: true, version: newest.n });
      expect(
        await c.request({
          op: 'deploy.submit',
          name: 'db',
          spec: { ...same, memoryMiB: 300 },
          source,
        }),
      ).toMatchObject({ ok: false, error: { code: 'UNPLACEABLE' } });
      expect((await get()).versions.at(-1)!.n).toBe(newest.n);
    } finally {
      await c.request({ op: 'node.eligibility', node: daemon!.id, eligible: true });
    }
  });
});
