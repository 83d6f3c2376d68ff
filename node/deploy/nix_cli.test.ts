// `nix path-info --json` in both of Nix's shapes: the list (2.8 to 2.18) and the object keyed by
// path (2.19 on); a path Nix calls invalid is refused by name in either.
import { describe, expect, it } from 'vitest';
import { NixCliError, parsePathInfos } from './nix_cli.ts';

const a = `/nix/store/${'a'.repeat(32)}-a-1`;
const b = `/nix/store/${'b'.repeat(32)}-b-1`;

describe('parsePathInfos', () => {
  it('reads the list shape', () => {
    const json = JSON.stringify([
      { path: a, narSize: 10, references: [b], narHash: 'sha256-x' },
      { path: b, narSize: 20, references: [] },
    ]);
    expect(parsePathInfos(json)).toEqual([
      { path: a, narSize: 10, references: [b] },
      { path: b, narSize: 20, references: [] },
    ]);
  });

  it('reads the object shape', () => {
    const json = JSON.stringify({
      [a]: { narSize: 10, references: [b] },
      [b]: { narSize: 20, references: [] },
    });
    expect(parsePathInfos(json)).toEqual([
      { path: a, narSize: 10, references: [b] },
      { path: b, narSize: 20, references: [] },
    ]);
  });

  it('refuses a path that is not valid, in either shape', () => {
    expect(() => parsePathInfos(JSON.stringify([{ path: a, valid: false }]))).toThrow(NixCliError);
    expect(() => parsePathInfos(JSON.stringify({ [a]: null }))).toThrow(
      /a-1 is not in the local Nix store/,
    );
  });
});
