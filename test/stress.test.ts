import { describe, expect, it } from 'vitest';
import { parseArgs, STRESS_RUNS_MAX, UsageError } from './stress.ts';

describe('test:stress arguments', () => {
  it('takes runs, load and the vitest arguments after --', () => {
    expect(parseArgs(['--runs', '3', '--load', '0', '--', 'node/vmm'])).toEqual({
      runs: 3,
      load: 0,
      vitestArgs: ['node/vmm'],
    });
  });
  it(`refuses bad counts and more than STRESS_RUNS_MAX (${STRESS_RUNS_MAX}) runs`, () => {
    expect(() => parseArgs(['--runs', '0'])).toThrow(UsageError);
    expect(() => parseArgs(['--runs', 'x'])).toThrow(/whole number/);
    expect(() => parseArgs(['--runs', String(STRESS_RUNS_MAX)])).not.toThrow();
    expect(() => parseArgs(['--runs', String(STRESS_RUNS_MAX + 1)])).toThrow(/at most/);
    expect(() => parseArgs(['--load', '-1'])).toThrow(UsageError);
    expect(() => parseArgs(['--bogus'])).toThrow(/unknown argument --bogus/);
  });
});
