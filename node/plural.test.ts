import { expect, it } from 'vitest';
import { plural } from './plural.ts';

it('is singular for exactly one, plural otherwise, irregular when told', () => {
  expect([0, 1, 2].map((n) => plural(n, 'path'))).toEqual(['0 paths', '1 path', '2 paths']);
  expect([1, 3].map((n) => plural(n, 'retry', 'retries'))).toEqual(['1 retry', '3 retries']);
});
