import { describe, expect, it } from 'vitest';
import { KEY_BYTES_MAX } from '../state/machine.ts';
import { parseRequest } from './requests.ts';

describe('parseRequest', () => {
  it('refuses what is not a request, and ops it does not know', () => {
    expect(parseRequest(null)).toBe('a request is an object with an op');
    expect(parseRequest({ op: 7 })).toBe('a request is an object with an op');
    expect(parseRequest({ op: 'nope' })).toBe('unknown op "nope"');
    // An op name inherited from Object.prototype is not an op.
    expect(parseRequest({ op: 'toString' })).toBe('unknown op "toString"');
  });

  it("checks commands and queries with the state machine's own rules", () => {
    expect(parseRequest({ op: 'kv.put', key: 'k', value: 'v' })).toEqual({
      op: 'kv.put',
      key: 'k',
      value: 'v',
    });
    expect(parseRequest({ op: 'kv.put', key: 'k' })).toBe('value must be a string');
    expect(parseRequest({ op: 'kv.get', key: 'x'.repeat(KEY_BYTES_MAX + 1) })).toMatch(
      /KEY_BYTES_MAX/,
    );
    expect(parseRequest({ op: 'kv.list' })).toEqual({ op: 'kv.list' });
    expect(parseRequest({ op: 'kv.list', limit: 0 })).toBe('limit must be a positive integer');
    expect(parseRequest({ op: 'vm.stop', name: '' })).toBe('name must be a non-empty string');
  });

  it('checks the admin operations’ fields', () => {
    expect(parseRequest({ op: 'join', id: 'x' })).toBe('join needs id and addrs');
    expect(parseRequest({ op: 'raft.remove' })).toBe('remove needs id');
    expect(parseRequest({ op: 'raft.transfer', to: 3 })).toBe('to must be a member id');
    // Without --on the cluster places it; an --on that names nothing is refused at the door.
    expect(parseRequest({ op: 'vm.run', spec: {} })).toEqual({ op: 'vm.run', spec: {} });
    expect(parseRequest({ op: 'vm.run', spec: {}, node: '' })).toBe('name a node: --on ID');
    expect(parseRequest({ op: 'node.drain', node: 'n1', deadlineMs: -1 })).toMatch(
      /DRAIN_DEADLINE_MS_MAX/,
    );
    expect(parseRequest({ op: 'node.eligibility', node: 'n1', eligible: 'yes' })).toBe(
      'eligible must be true or false',
    );
    // Placements, node registrations and lifecycle verdicts are the nodes' own commands: no
    // client may send one (and apply re-checks every placement whoever proposed it).
    for (const op of ['vm.place', 'vm.release', 'vm.unplaced', 'node.register', 'node.status'])
      expect(parseRequest({ op })).toMatch(/unknown op|not an operation|unknown/i);
    expect(parseRequest({ op: 'vm.logs', name: 'a', offset: -1 })).toBe(
      'offset must be a non-negative integer',
    );
    expect(parseRequest({ op: 'store.info' })).toBe('store.info needs a store path');
    expect(parseRequest({ op: 'store.push', path: '/nix/store/x', to: [1] })).toBe(
      'name a node: --on ID',
    );
    expect(parseRequest({ op: 'store.stats' })).toEqual({ op: 'store.stats' });
  });
});
