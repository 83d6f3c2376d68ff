// `nix path-info --json` in both of Nix's shapes, as the store reads it: the list (Nix 2.8 to
// 2.18, what the Nix on these machines prints) and the object keyed by path, null for an invalid
// path, with null for an absent deriver or ca (2.19 on). The samples are written the way each
// version prints them; the same path must give the same info from either.
import { describe, expect, it } from 'vitest';
import { nixPathInfoEntries } from './nix_json.ts';
import { pathInfosOfNixJson } from './nix_store.ts';

const a = `/nix/store/${'a'.repeat(32)}-hello-2.12`;
const b = `/nix/store/${'b'.repeat(32)}-glibc-2.39`;
const drv = `/nix/store/${'d'.repeat(32)}-hello-2.12.drv`;
const nix32 = `sha256:${'1'.repeat(52)}`;
const sri = 'sha256-' + Buffer.alloc(32, 0x42).toString('base64');

const listShape = JSON.stringify([
  {
    path: a,
    narHash: nix32,
    narSize: 1000,
    references: [b, a],
    deriver: drv,
    signatures: ['cache.example-1:c2ln'],
    valid: true,
  },
  { path: b, valid: false },
]);
const objectShape = JSON.stringify({
  [a]: {
    narHash: nix32,
    narSize: 1000,
    references: [b, a],
    deriver: drv,
    signatures: ['cache.example-1:c2ln'],
    ca: null,
    registrationTime: 1700000000,
    ultimate: false,
  },
  [b]: null,
});

describe('nix path-info --json, both shapes', () => {
  it('gives the same infos from the list and from the object; invalid paths are left out', () => {
    const fromList = pathInfosOfNixJson(listShape);
    expect(fromList).toEqual([
      {
        path: a,
        narHash: nix32,
        narSize: 1000,
        references: [a, b],
        deriver: drv,
        sigs: ['cache.example-1:c2ln'],
      },
    ]);
    expect(pathInfosOfNixJson(objectShape)).toEqual(fromList);
  });

  it('reads an SRI hash and leaves null fields out', () => {
    const [info] = pathInfosOfNixJson(
      JSON.stringify({
        [a]: { narHash: sri, narSize: 5, references: [], deriver: null, ca: null, signatures: [] },
      }),
    );
    expect(info!.narHash).toMatch(/^sha256:[0-9a-z]{52}$/);
    expect(info).not.toHaveProperty('deriver');
    expect(info).not.toHaveProperty('ca');
  });

  it('marks an invalid path of the object shape as valid: false, and refuses what is neither shape', () => {
    expect(nixPathInfoEntries(JSON.stringify({ [b]: null }))).toEqual([{ path: b, valid: false }]);
    expect(() => nixPathInfoEntries('"text"')).toThrow(/neither a list nor an object/);
    expect(() => nixPathInfoEntries(JSON.stringify([{ narSize: 1 }]))).toThrow(/without a path/);
    expect(() => nixPathInfoEntries(JSON.stringify([null]))).toThrow(/without a path/);
  });
});
