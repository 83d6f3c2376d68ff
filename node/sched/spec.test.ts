import { describe, expect, it } from 'vitest';
import {
  AFFINITIES_MAX,
  AFFINITY_WEIGHT_MAX,
  CONSTRAINT_VALUE_BYTES_MAX,
  CONSTRAINT_VALUES_MAX,
  CONSTRAINTS_MAX,
  LABEL_KEY_BYTES_MAX,
  LABEL_VALUE_BYTES_MAX,
  LABELS_MAX,
  SPREAD_WEIGHT_MAX,
  VM_COUNT_MAX,
  validateLabels,
  validatePlacementFields,
} from './spec.ts';

function errorsOf(input: Record<string, unknown>): string[] {
  const r = validatePlacementFields(input);
  return r.ok ? [] : r.errors.map((e) => e.message);
}
const zoneA = { attribute: 'label.zone', operator: '=', value: 'a' };

describe('validatePlacementFields: defaults and a full spec', () => {
  it('fills the defaults', () => {
    expect(validatePlacementFields({})).toEqual({
      ok: true,
      fields: {
        count: 1,
        constraints: [],
        affinities: [],
        allowSharing: false,
        packing: 'binpack',
      },
    });
  });

  it('accepts every field', () => {
    const r = validatePlacementFields({
      count: 3,
      constraints: [
        zoneA,
        { attribute: 'label.ssd', operator: 'exists' },
        { attribute: 'arch', operator: 'in', value: ['x86_64'] },
      ],
      affinities: [{ ...zoneA, weight: -50 }],
      spread: { attribute: 'label.rack', weight: 40 },
      allowSharing: true,
      packing: 'spread',
    });
    expect(r.ok).toBe(true);
    if (r.ok) {
      expect(r.fields.count).toBe(3);
      expect(r.fields.constraints[1]).toEqual({ attribute: 'label.ssd', operator: 'exists' });
      expect(r.fields.spread).toEqual({ attribute: 'label.rack', weight: 40 });
    }
  });

  it('spread weight defaults to the maximum', () => {
    const r = validatePlacementFields({ spread: { attribute: 'label.zone' } });
    expect(r.ok && r.fields.spread?.weight).toBe(SPREAD_WEIGHT_MAX);
  });
});

describe('validatePlacementFields: bad input, each naming its field and bound', () => {
  it('count: bounds at their edges', () => {
    expect(errorsOf({ count: VM_COUNT_MAX })).toEqual([]);
    expect(errorsOf({ count: VM_COUNT_MAX + 1 })).toEqual([
      `count: ${VM_COUNT_MAX + 1} is out of bounds: 1..${VM_COUNT_MAX} (VM_COUNT_MAX)`,
    ]);
    expect(errorsOf({ count: 0 })[0]).toMatch(/^count: 0 is out of bounds/);
    expect(errorsOf({ count: 1.5 })[0]).toMatch(/^count: must be an integer/);
    expect(errorsOf({ count: '2' })[0]).toMatch(/^count: must be an integer/);
  });

  it('constraints: count bound at its edge', () => {
    expect(errorsOf({ constraints: Array(CONSTRAINTS_MAX).fill(zoneA) })).toEqual([]);
    expect(errorsOf({ constraints: Array(CONSTRAINTS_MAX + 1).fill(zoneA) })[0]).toMatch(
      /^constraints: has 33 entries, above the maximum 32 \(CONSTRAINTS_MAX\)/,
    );
    expect(errorsOf({ constraints: {} })[0]).toMatch(/^constraints: must be an array/);
  });

  it('constraints: unknown attribute, operator, field; missing or wrong value', () => {
    expect(
      errorsOf({ constraints: [{ attribute: 'zone', operator: '=', value: 'a' }] })[0],
    ).toMatch(/^constraints\[0\]\.attribute: unknown attribute "zone".*label\.zone/);
    expect(
      errorsOf({ constraints: [{ attribute: 'arch', operator: '~', value: 'a' }] })[0],
    ).toMatch(/^constraints\[0\]\.operator: must be one of/);
    expect(errorsOf({ constraints: [{ ...zoneA, weight: 3 }] })[0]).toMatch(
      /^constraints\[0\]\.weight: unknown field/,
    );
    expect(errorsOf({ constraints: [{ attribute: 'arch', operator: '=' }] })[0]).toMatch(
      /^constraints\[0\]\.value: = needs a string value/,
    );
    expect(
      errorsOf({ constraints: [{ attribute: 'label.a', operator: 'exists', value: 'x' }] })[0],
    ).toMatch(/^constraints\[0\]\.value: exists takes no value/);
    expect(
      errorsOf({ constraints: [{ attribute: 'label.a', operator: 'in', value: [] }] })[0],
    ).toMatch(/^constraints\[0\]\.value: must be a non-empty array/);
    expect(
      errorsOf({ constraints: [{ attribute: 'label.a', operator: 'in', value: ['x', 'x'] }] })[0],
    ).toMatch(/lists a value twice/);
    expect(errorsOf({ constraints: ['zone=a'] })[0]).toMatch(
      /^constraints\[0\]: must be an object/,
    );
  });

  it('constraints: value bounds at their edges', () => {
    const list = (n: number) => Array.from({ length: n }, (_, i) => `v${i}`);
    expect(
      errorsOf({
        constraints: [{ attribute: 'label.a', operator: 'in', value: list(CONSTRAINT_VALUES_MAX) }],
      }),
    ).toEqual([]);
    expect(
      errorsOf({
        constraints: [
          { attribute: 'label.a', operator: 'in', value: list(CONSTRAINT_VALUES_MAX + 1) },
        ],
      })[0],
    ).toMatch(/CONSTRAINT_VALUES_MAX/);
    const long = 'x'.repeat(CONSTRAINT_VALUE_BYTES_MAX);
    expect(
      errorsOf({ constraints: [{ attribute: 'label.a', operator: '=', value: long }] }),
    ).toEqual([]);
    expect(
      errorsOf({ constraints: [{ attribute: 'label.a', operator: '=', value: `${long}x` }] })[0],
    ).toMatch(/CONSTRAINT_VALUE_BYTES_MAX/);
  });

  it('ordered operators: labels only, numbers or versions only', () => {
    expect(
      errorsOf({ constraints: [{ attribute: 'label.cores', operator: '>=', value: '8' }] }),
    ).toEqual([]);
    expect(
      errorsOf({ constraints: [{ attribute: 'label.kernel', operator: '<', value: '6.1.10' }] }),
    ).toEqual([]);
    expect(
      errorsOf({ constraints: [{ attribute: 'arch', operator: '>', value: '1' }] })[0],
    ).toMatch(/applies to label\.<key> only/);
    expect(
      errorsOf({ constraints: [{ attribute: 'label.zone', operator: '>', value: 'b' }] })[0],
    ).toMatch(/needs a number or a dotted version/);
  });

  it('label keys in attributes: bound at its edge and grammar', () => {
    const key = 'k'.repeat(LABEL_KEY_BYTES_MAX);
    expect(errorsOf({ constraints: [{ attribute: `label.${key}`, operator: 'exists' }] })).toEqual(
      [],
    );
    expect(
      errorsOf({ constraints: [{ attribute: `label.${key}k`, operator: 'exists' }] })[0],
    ).toMatch(/LABEL_KEY_BYTES_MAX/);
    expect(errorsOf({ constraints: [{ attribute: 'label.Zone', operator: 'exists' }] })[0]).toMatch(
      /a-z 0-9/,
    );
  });

  it('impossible constraints are refused at once', () => {
    expect(errorsOf({ constraints: [zoneA, { ...zoneA, value: 'b' }] })[0]).toMatch(
      /^constraints: label\.zone = a contradicts label\.zone = "b"/,
    );
    expect(errorsOf({ constraints: [zoneA, { ...zoneA, operator: '!=' }] })[0]).toMatch(
      /contradicts label\.zone !=/,
    );
    expect(
      errorsOf({
        constraints: [zoneA, { attribute: 'label.zone', operator: 'not_in', value: ['a'] }],
      })[0],
    ).toMatch(/contradicts/);
    expect(
      errorsOf({
        constraints: [zoneA, { attribute: 'label.zone', operator: 'in', value: ['b', 'c'] }],
      })[0],
    ).toMatch(/contradicts/);
    expect(
      errorsOf({
        constraints: [
          { attribute: 'label.x', operator: 'exists' },
          { attribute: 'label.x', operator: 'not_exists' },
        ],
      })[0],
    ).toMatch(/exists and not_exists/);
    // backend is multi-valued: a node may run both
    expect(
      errorsOf({
        constraints: [
          { attribute: 'backend', operator: '=', value: 'qemu' },
          { attribute: 'backend', operator: '=', value: 'microvm' },
        ],
      }),
    ).toEqual([]);
  });

  it('affinities: bound at its edge, weight required within bounds', () => {
    const a = { ...zoneA, weight: 10 };
    expect(errorsOf({ affinities: Array(AFFINITIES_MAX).fill(a) })).toEqual([]);
    expect(errorsOf({ affinities: Array(AFFINITIES_MAX + 1).fill(a) })[0]).toMatch(
      /AFFINITIES_MAX/,
    );
    expect(errorsOf({ affinities: [{ ...zoneA, weight: AFFINITY_WEIGHT_MAX }] })).toEqual([]);
    expect(errorsOf({ affinities: [{ ...zoneA, weight: -AFFINITY_WEIGHT_MAX }] })).toEqual([]);
    expect(errorsOf({ affinities: [{ ...zoneA, weight: AFFINITY_WEIGHT_MAX + 1 }] })[0]).toMatch(
      /^affinities\[0\]\.weight: .*AFFINITY_WEIGHT_MAX/,
    );
    expect(errorsOf({ affinities: [{ ...zoneA, weight: 0 }] })[0]).toMatch(/non-zero/);
    expect(errorsOf({ affinities: [zoneA] })[0]).toMatch(/^affinities\[0\]\.weight/);
  });

  it('spread, allowSharing, packing', () => {
    expect(
      errorsOf({ spread: { attribute: 'label.zone', weight: SPREAD_WEIGHT_MAX + 1 } })[0],
    ).toMatch(/^spread\.weight: .*SPREAD_WEIGHT_MAX/);
    expect(errorsOf({ spread: { attribute: 'label.zone', weight: 0 } })[0]).toMatch(
      /^spread\.weight/,
    );
    expect(errorsOf({ spread: { attribute: 'zone' } })[0]).toMatch(
      /^spread\.attribute: unknown attribute/,
    );
    expect(errorsOf({ spread: { attribute: 'label.zone', targets: [] } })[0]).toMatch(
      /^spread\.targets: unknown field/,
    );
    expect(errorsOf({ spread: 'zone' })[0]).toMatch(/^spread: must be an object/);
    expect(errorsOf({ allowSharing: 'yes' })[0]).toMatch(/^allowSharing: must be true or false/);
    expect(errorsOf({ packing: 'firstfit' })[0]).toMatch(/^packing: must be "binpack" or "spread"/);
  });

  it('collects every error at once', () => {
    expect(errorsOf({ count: 0, packing: 'x', allowSharing: 1 })).toHaveLength(3);
  });
});

describe('validateLabels', () => {
  it('bounds at their edges', () => {
    const many = (n: number) =>
      Object.fromEntries(Array.from({ length: n }, (_, i) => [`k${i}`, 'v']));
    expect(validateLabels(many(LABELS_MAX))).toEqual([]);
    expect(validateLabels(many(LABELS_MAX + 1))[0]).toMatch(/LABELS_MAX/);
    expect(validateLabels({ zone: 'v'.repeat(LABEL_VALUE_BYTES_MAX) })).toEqual([]);
    expect(validateLabels({ zone: 'v'.repeat(LABEL_VALUE_BYTES_MAX + 1) })[0]).toMatch(
      /LABEL_VALUE_BYTES_MAX/,
    );
    expect(validateLabels({ [`${'k'.repeat(LABEL_KEY_BYTES_MAX + 1)}`]: 'v' })[0]).toMatch(
      /LABEL_KEY_BYTES_MAX/,
    );
    expect(validateLabels({ 'Bad Key': 'v' })[0]).toMatch(/a-z 0-9/);
    expect(validateLabels({ zone: 'tab\there' })[0]).toMatch(/printable ASCII/);
  });
});
