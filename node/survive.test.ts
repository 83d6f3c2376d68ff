// What users do to a cluster, on real node processes (issue "Survive what users do").
// A whole cluster restarted at once (a power cut): three nodes started as the README starts them
// (any port: tcp/0), all stopped, all started again without seeds. Each comes back on the port it
// had (node/p2p/addr_book.ts), so the member table's addresses still hold: a leader is elected and
// a write is served, after SIGTERM of all and after kill -9 of all. Then large values: through
// the CLI from standard input and from a file, and refused by the bound's name when too large.

import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  closeClients,
  kill9,
  type NodeProc,
  PCR,
  pcr,
  request,
  secretFileOf,
  startCluster,
  startNode,
  stop,
  until,
} from '../test/procs.ts';
import { VALUE_BYTES_MAX } from './state/machine.ts';

/** From the last start to a leader and an acknowledged write (election 300 ms, redial 2 s). */
const RECOVERY_BOUND_MS = 30_000;

let base = '';
const procs: NodeProc[] = [];

beforeAll(async () => {
  base = await mkdtemp(join(tmpdir(), 'pcr-restart-'));
});
afterAll(async () => {
  await closeClients();
  for (const p of procs) if (p.child.exitCode === null) await kill9(p).catch(() => {});
  await rm(base, { recursive: true, force: true });
});

async function voters(p: NodeProc): Promise<number> {
  const r = await request(p, p, { op: 'status' }, 3000).catch(() => undefined);
  if (r?.ok !== true) return 0;
  return (r.members as { role: string }[]).filter((m) => m.role === 'voter').length;
}

/** Starts every node again, without seeds, and waits for a served write through each. */
async function restartAll(nodes: NodeProc[], value: string): Promise<NodeProc[]> {
  await closeClients();
  const again: NodeProc[] = [];
  for (const p of nodes) {
    const q = await startNode(base, p.name);
    procs.push(q);
    expect(q.id).toBe(p.id);
    expect(q.addr).toBe(p.addr); // the port it had
    expect(q.metrics).toBe(p.metrics); // and its metrics port (asked for port 0 too)
    again.push(q);
  }
  for (const q of again) {
    await until(
      async () => {
        const r = await request(q, q, { op: 'kv.put', key: 'k', value }, 3000).catch(
          () => undefined,
        );
        return r?.ok === true ? true : undefined;
      },
      RECOVERY_BOUND_MS,
      `a write through ${q.name} after the restart of all`,
    );
  }
  const r = await request(again[0]!, again[0]!, { op: 'kv.get', key: 'k' });
  expect(r).toMatchObject({ ok: true, value });
  return again;
}

let nodes: NodeProc[] = [];

describe('a whole cluster restarted at once', () => {
  it('comes back without seeds after SIGTERM of all, and after kill -9 of all', async () => {
    nodes = await startCluster(base, ['a', 'b', 'c'], [], procs);
    await until(
      async () => ((await voters(nodes[0]!)) === 3 ? true : undefined),
      30_000,
      '3 voters',
    );
    const put = await request(nodes[0]!, nodes[0]!, { op: 'kv.put', key: 'k', value: 'v0' });
    expect(put.ok).toBe(true);

    for (const p of nodes) await stop(p);
    nodes = await restartAll(nodes, 'v1');

    for (const p of nodes) await kill9(p);
    nodes = await restartAll(nodes, 'v2');
  }, 240_000);
});

describe('large values', () => {
  const kvArgs = (p: NodeProc) => ['--addr', p.addr, '--secret-file', secretFileOf(p)];

  it('pcr kv put reads a value from standard input or a file, up to VALUE_BYTES_MAX', async () => {
    const p = nodes[0]!;
    const value = 'v'.repeat(VALUE_BYTES_MAX);
    const fromStdin = await execa(PCR, ['kv', 'put', 'big', '-', ...kvArgs(p)], {
      input: value,
      reject: false,
    });
    expect(fromStdin.exitCode, fromStdin.stderr).toBe(0);
    expect(await request(p, p, { op: 'kv.get', key: 'big' })).toMatchObject({ ok: true, value });

    const file = join(base, 'value.txt');
    await writeFile(file, 'from a file\n');
    const fromFile = await pcr(['kv', 'put', 'f', '--file', file, ...kvArgs(p)]);
    expect(fromFile.exitCode, fromFile.stderr).toBe(0);
    expect(await request(p, p, { op: 'kv.get', key: 'f' })).toMatchObject({
      value: 'from a file\n',
    });

    const tooBig = await execa(PCR, ['kv', 'put', 'big', '-', ...kvArgs(p)], {
      input: `${value}x`,
      reject: false,
    });
    expect(tooBig.exitCode).toBe(2);
    expect(tooBig.stderr).toContain('VALUE_BYTES_MAX');
    expect(tooBig.stderr).not.toMatch(/\n\s+at /); // one line, no stack trace
  });

  it('a 10 MiB put through the API is refused by the name of its bound, and the node serves on', async () => {
    const p = nodes[1]!;
    const r = await request(p, p, { op: 'kv.put', key: 'huge', value: 'h'.repeat(10 << 20) });
    expect(r).toMatchObject({
      ok: false,
      error: { code: 'INVALID', message: expect.stringContaining('API_REQUEST_BYTES_MAX') },
    });
    const just = await request(p, p, {
      op: 'kv.put',
      key: 'huge',
      value: 'h'.repeat(VALUE_BYTES_MAX + 1),
    });
    expect(just).toMatchObject({
      ok: false,
      error: { message: expect.stringContaining('VALUE_BYTES_MAX') },
    });
    expect(await request(p, p, { op: 'kv.put', key: 'small', value: 's' })).toMatchObject({
      ok: true,
    });
  });
});
