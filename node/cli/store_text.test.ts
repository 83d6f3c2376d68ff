// What `pcr store push`, `verify` and `stats` print for people: counts with the right plural,
// members by name and short ID, byte counts readable, what the store holds before its traffic.

import { describe, expect, it } from 'vitest';
import { shortId } from '../names.ts';
import { pushText, statsRows, verifyText } from './store_cmds.ts';

const P = '/nix/store/0c6lw3rq0qvd4n4ys4fvnnbd5bxxc0nk-hello';
const ID = '12D3KooWLjB3nhgf1kbk1mFPRjCHPGNyjk1jyZ2FacBXG8pJdXSu';
const OTHER = '12D3KooWPc1dmW8YVFd3hBtj1DNCmRwUx5d8weebKdbzsyYPRdmu';
const MS = [{ id: ID, name: 'beta' }];

describe('store output for people', () => {
  it('push: one path, several, none (already there); members by name', () => {
    const r = (imported: number) => ({ imported, replicated: [ID], failed: { [OTHER]: 'no' } });
    expect(pushText(P, r(1), MS)).toBe(
      [
        `${P}: 1 path imported into the member's store`,
        `fetched by beta (${shortId(ID)})`,
        `NOT fetched by ${shortId(OTHER)}: no`,
      ].join('\n'),
    );
    expect(pushText(P, r(4), MS).split('\n')[0]).toBe(
      `${P}: 4 paths imported into the member's store`,
    );
    expect(pushText(P, r(0), MS).split('\n')[0]).toBe(
      `${P}: already in the member's store (nothing imported)`,
    );
  });

  it('verify: one path and one quarantined are singular', () => {
    const one = verifyText({
      checked: 1,
      bytes: 2 ** 20,
      damaged: [],
      repaired: [],
      failed: {},
      quarantined: [{ path: P, reason: 'hash' }],
    });
    expect(one).toMatch(/^checked 1 path \(1\.0 MiB\): 0 damaged$/m);
    expect(one).toMatch(/^1 path remains quarantined \(.* fetches it from the members\):$/m);
    const two = verifyText({
      checked: 2,
      bytes: 0,
      damaged: [],
      repaired: [],
      failed: {},
      quarantined: [
        { path: P, reason: 'hash' },
        { path: P, reason: 'size' },
      ],
    });
    expect(two).toMatch(/^checked 2 paths/m);
    expect(two).toMatch(/^2 paths remain quarantined \(.* fetches them /m);
  });

  it('stats: what is held first, large byte counts also in MiB', () => {
    const rows = statsRows({
      ok: true,
      publicKey: 'k:x',
      hits: 3,
      bytesServed: 10,
      kind: 'nix',
      paths: 4,
      bytes: 3 * 2 ** 20,
      inQuarantine: 0,
    });
    expect(rows.map((r) => r.counter)).toEqual([
      'kind',
      'paths',
      'bytes',
      'inQuarantine',
      'publicKey',
      'hits',
      'bytesServed',
    ]);
    expect(rows.find((r) => r.counter === 'bytes')!.value).toBe(`${3 * 2 ** 20} (3.0 MiB)`);
    expect(rows.find((r) => r.counter === 'bytesServed')!.value).toBe(10);
  });
});
