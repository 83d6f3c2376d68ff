// `pcr store gc --max-freed SIZE`: sizes as Nix's --max-freed takes them (powers of 1024).

import { describe, expect, it } from 'vitest';
import { parseSize } from './store_gc_cmd.ts';

describe('parseSize', () => {
  it('reads bytes and K, M, G, T suffixes (powers of 1024), with or without iB', () => {
    expect(parseSize('1')).toBe(1);
    expect(parseSize('500M')).toBe(500 * 1024 ** 2);
    expect(parseSize('2g')).toBe(2 * 1024 ** 3);
    expect(parseSize('3KiB')).toBe(3 * 1024);
    expect(parseSize('1T')).toBe(1024 ** 4);
  });
  it('refuses anything else with a usage exit', () => {
    for (const bad of ['', '0', '-1', 'lots', '1.5G', '2P', `${'9'.repeat(16)}`]) {
      expect(() => parseSize(bad), bad).toThrow(/a size like 500M/);
    }
  });
});
