import { describe, expect, it } from 'vitest';
import {
  attributeProblem,
  type Constraint,
  compareOrdered,
  constraintText,
  matches,
  type NodeAttrs,
} from './constraint.ts';

const n: NodeAttrs = {
  name: 'n1',
  arch: 'x86_64',
  backends: ['qemu', 'microvm'],
  labels: { zone: 'a', cores: '16', kernel: '6.1.10' },
};
const c = (
  attribute: string,
  operator: Constraint['operator'],
  value?: Constraint['value'],
): Constraint => (value === undefined ? { attribute, operator } : { attribute, operator, value });

describe('constraint operators', () => {
  it('= and != on single values', () => {
    expect(matches(c('name', '=', 'n1'), n)).toBe(true);
    expect(matches(c('arch', '=', 'aarch64'), n)).toBe(false);
    expect(matches(c('label.zone', '!=', 'a'), n)).toBe(false);
    expect(matches(c('label.zone', '!=', 'b'), n)).toBe(true);
  });

  it('backend is multi-valued: = means one of, != means none of', () => {
    expect(matches(c('backend', '=', 'microvm'), n)).toBe(true);
    expect(matches(c('backend', '=', 'firecracker'), n)).toBe(false);
    expect(matches(c('backend', '!=', 'qemu'), n)).toBe(false);
    expect(matches(c('backend', 'in', ['firecracker', 'qemu']), n)).toBe(true);
    expect(matches(c('backend', 'not_in', ['firecracker']), n)).toBe(true);
  });

  it('in and not_in', () => {
    expect(matches(c('label.zone', 'in', ['a', 'b']), n)).toBe(true);
    expect(matches(c('label.zone', 'in', ['b']), n)).toBe(false);
    expect(matches(c('label.zone', 'not_in', ['b', 'c']), n)).toBe(true);
    expect(matches(c('label.zone', 'not_in', ['a']), n)).toBe(false);
  });

  it('exists and not_exists', () => {
    expect(matches(c('label.zone', 'exists'), n)).toBe(true);
    expect(matches(c('label.gpu', 'exists'), n)).toBe(false);
    expect(matches(c('label.gpu', 'not_exists'), n)).toBe(true);
    expect(matches(c('label.zone', 'not_exists'), n)).toBe(false);
  });

  it('a node lacking the attribute satisfies only the negative operators', () => {
    expect(matches(c('label.gpu', '=', 'x'), n)).toBe(false);
    expect(matches(c('label.gpu', 'in', ['x']), n)).toBe(false);
    expect(matches(c('label.gpu', '>', '1'), n)).toBe(false);
    expect(matches(c('label.gpu', '!=', 'x'), n)).toBe(true);
    expect(matches(c('label.gpu', 'not_in', ['x']), n)).toBe(true);
  });

  it('ordered operators: numbers numerically, versions component by component', () => {
    expect(matches(c('label.cores', '>', '8'), n)).toBe(true); // 16 > 8, not "16" < "8"
    expect(matches(c('label.cores', '>=', '16'), n)).toBe(true);
    expect(matches(c('label.cores', '<', '16'), n)).toBe(false);
    expect(matches(c('label.cores', '<=', '16'), n)).toBe(true);
    expect(matches(c('label.kernel', '>', '6.1.9'), n)).toBe(true); // 10 > 9, not lexicographic
    expect(matches(c('label.kernel', '<', '6.2'), n)).toBe(true);
    expect(matches(c('label.zone', '>', '1'), n)).toBe(false); // "a" has no order: fails
  });

  it('compareOrdered', () => {
    expect(compareOrdered('2.5', '2.10')).toBe(1); // two decimals
    expect(compareOrdered('1.2.10', '1.2.9')).toBe(1);
    expect(compareOrdered('1.2', '1.2.0')).toBe(0);
    expect(compareOrdered('-1', '0')).toBe(-1);
    expect(compareOrdered('-1', '1.2.3')).toBeUndefined();
    expect(compareOrdered('abc', '1')).toBeUndefined();
  });
});

describe('attributes and texts', () => {
  it('knows name, arch, backend and label.*; names the fix for a bare label', () => {
    for (const a of ['name', 'arch', 'backend', 'label.zone'])
      expect(attributeProblem(a)).toBeUndefined();
    expect(attributeProblem('zone')).toMatch(/unknown attribute "zone".*label\.zone/);
    expect(attributeProblem('label.')).toMatch(/unknown attribute/);
  });

  it('constraintText is what a reason shows', () => {
    expect(constraintText(c('label.zone', '=', 'a'))).toBe('label.zone = a');
    expect(constraintText(c('arch', 'in', ['x86_64', 'aarch64']))).toBe(
      'arch in [x86_64, aarch64]',
    );
    expect(constraintText(c('label.ssd', 'exists'))).toBe('label.ssd exists');
  });
});
