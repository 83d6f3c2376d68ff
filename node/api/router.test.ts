// The router's door, with fakes of the node behind ApiDeps (no libp2p, no Raft): a node that knows
// it was removed says so; a NO_LEADER names the unreachable voters when a quorum is out of reach;
// error codes pass through unchanged.

import type { Connection } from '@libp2p/interface';
import { describe, expect, it } from 'vitest';
import type { Outcome } from '../raft/node.ts';
import type { Command } from '../state/machine.ts';
import { type ApiDeps, route } from './router.ts';

const noConnection = {} as Connection;

function fakeDeps(over: Partial<ApiDeps> & { outcome?: Outcome }): {
  deps: ApiDeps;
  submitted: Command[];
} {
  const submitted: Command[] = [];
  const deps = {
    removedWhy: () => undefined,
    quorumProblem: () => undefined,
    submit: async (c: Command) => {
      submitted.push(c);
      return over.outcome ?? { ok: true, index: 1, result: { ok: true, revision: 1 } };
    },
    ...over,
  } as unknown as ApiDeps;
  return { deps, submitted };
}

const noLeader: Outcome = {
  ok: false,
  code: 'NO_LEADER',
  message: 'no leader',
  indeterminate: false,
};

describe('route', () => {
  it('a node that knows it was removed answers REMOVED, and proposes nothing', async () => {
    const { deps, submitted } = fakeDeps({ removedWhy: () => 'a member answered removed' });
    expect(await route(deps, { op: 'kv.put', key: 'k', value: 'v' }, noConnection)).toEqual({
      ok: false,
      error: {
        code: 'REMOVED',
        message: 'this node was removed from the cluster (a member answered removed)',
      },
    });
    expect(submitted).toEqual([]);
  });

  it('NO_LEADER names the unreachable voters when a quorum is out of reach', async () => {
    const why = 'no quorum: 2 of 3 voters unreachable (b, c)';
    const { deps } = fakeDeps({ outcome: noLeader, quorumProblem: () => why });
    expect(await route(deps, { op: 'kv.put', key: 'k', value: 'v' }, noConnection)).toEqual({
      ok: false,
      error: { code: 'NO_LEADER', message: why },
    });
    const plain = fakeDeps({ outcome: noLeader });
    expect(await route(plain.deps, { op: 'kv.del', key: 'k' }, noConnection)).toEqual({
      ok: false,
      error: { code: 'NO_LEADER', message: 'no leader' },
    });
  });

  it('a command reaches the log field by field: what a client adds stays out', async () => {
    const { deps, submitted } = fakeDeps({});
    const r = await route(deps, { op: 'kv.put', key: 'k', value: 'v', extra: 'x' }, noConnection);
    expect(r).toEqual({ ok: true, index: 1, revision: 1 });
    expect(submitted).toEqual([{ op: 'kv.put', key: 'k', value: 'v' }]);
  });

  it('a bad request is INVALID before anything runs', async () => {
    const { deps, submitted } = fakeDeps({});
    expect(await route(deps, { op: 'kv.put', key: 3 }, noConnection)).toMatchObject({
      ok: false,
      error: { code: 'INVALID', message: 'key must be a string' },
    });
    expect(submitted).toEqual([]);
  });
});
