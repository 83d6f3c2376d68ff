// The spec's health checks: defaults filled in, every bound at its edge, the network rule, and
// errors that name the field path (as the rest of the spec's do).

import { describe, expect, it } from 'vitest';
import {
  HEALTH_CHECKS_MAX,
  HEALTH_CONSOLE_BYTES_MAX,
  HEALTH_HTTP_PATH_BYTES_MAX,
  HEALTH_INTERVAL_MS_MIN,
  HEALTH_MS_MAX,
  HEALTH_THRESHOLD_MAX,
  healthCheckLabel,
  isIpLiteral,
} from './health_spec.ts';
import { specHash, validateVmSpec } from './vm_spec.ts';

const TAP = { version: 1, name: 'web', kernel: '/k', network: { mode: 'tap', bridge: 'br0' } };
const RUNNER = '/nix/store/0c6lw3rq0qvd4n4ys4fvnnbd5bxxc0nk-microvm-run-web';

function errors(health: unknown, base: Record<string, unknown> = TAP): string[] {
  const r = validateVmSpec({ ...base, health });
  return r.ok ? [] : r.errors.map((e) => e.message);
}

function checks(health: unknown, base: Record<string, unknown> = TAP): unknown {
  const r = validateVmSpec({ ...base, health });
  if (!r.ok) throw new Error(r.errors.map((e) => e.message).join('\n'));
  return r.spec.health;
}

const http = (x: Record<string, unknown> = {}, t: Record<string, unknown> = {}) => ({
  http: { host: '10.0.0.2', port: 80, ...x },
  ...t,
});

describe('health checks in the VM spec', () => {
  it('fills in the defaults of each kind', () => {
    expect(
      checks([{ console: 'web ready' }, { tcp: { host: '10.0.0.2', port: 22 } }, http()]),
    ).toEqual([
      { console: 'web ready', graceMs: 30_000 },
      { tcp: { host: '10.0.0.2', port: 22 }, intervalMs: 5000, timeoutMs: 2000, graceMs: 30_000 },
      {
        http: { host: '10.0.0.2', port: 80, path: '/' },
        intervalMs: 5000,
        timeoutMs: 2000,
        graceMs: 30_000,
      },
    ]);
    expect(
      checks([http({ path: '/health' }, { intervalMs: 100, timeoutMs: 100, graceMs: 0 })]),
    ).toEqual([
      {
        http: { host: '10.0.0.2', port: 80, path: '/health' },
        intervalMs: 100,
        timeoutMs: 100,
        graceMs: 0,
      },
    ]);
  });

  it('holds HEALTH_CHECKS_MAX at its edge', () => {
    const many = (n: number) => Array.from({ length: n }, (_, i) => ({ console: `line ${i}` }));
    expect(errors(many(HEALTH_CHECKS_MAX))).toEqual([]);
    expect(errors(many(HEALTH_CHECKS_MAX + 1))).toEqual([
      `health: has ${HEALTH_CHECKS_MAX + 1} checks, above the maximum ${HEALTH_CHECKS_MAX} (HEALTH_CHECKS_MAX)`,
    ]);
    expect(errors({ console: 'x' })).toEqual(['health: must be a list of checks, got an object']);
  });

  it('holds the interval, timeout and grace bounds at their edges; the timeout within the interval', () => {
    const t = (timing: Record<string, unknown>) => errors([http({}, timing)]);
    expect(t({ intervalMs: HEALTH_INTERVAL_MS_MIN, timeoutMs: HEALTH_INTERVAL_MS_MIN })).toEqual(
      [],
    );
    expect(t({ intervalMs: HEALTH_INTERVAL_MS_MIN - 1, timeoutMs: 50 })).toEqual([
      `health[0].intervalMs: ${HEALTH_INTERVAL_MS_MIN - 1} is below the minimum ${HEALTH_INTERVAL_MS_MIN} (HEALTH_INTERVAL_MS_MIN)`,
    ]);
    expect(t({ intervalMs: 1000, timeoutMs: 1000 })).toEqual([]);
    expect(t({ intervalMs: 1000, timeoutMs: 1001 })).toEqual([
      'health[0].timeoutMs: 1001 is above health[0].intervalMs 1000 (a run must end before the next one)',
    ]);
    // The default timeout (2000) shrinks to a shorter interval.
    expect(checks([http({}, { intervalMs: 1999 })])).toMatchObject([
      { intervalMs: 1999, timeoutMs: 1999 },
    ]);
    expect(t({ timeoutMs: 0 })).toEqual([
      'health[0].timeoutMs: 0 is below the minimum 1 (HEALTH_TIMEOUT_MS_MIN)',
    ]);
    expect(t({ graceMs: HEALTH_MS_MAX })).toEqual([]);
    expect(t({ graceMs: HEALTH_MS_MAX + 1 })).toEqual([
      `health[0].graceMs: ${HEALTH_MS_MAX + 1} is above the maximum ${HEALTH_MS_MAX} (HEALTH_MS_MAX)`,
    ]);
    expect(t({ intervalMs: HEALTH_MS_MAX + 1 })[0]).toMatch(
      /^health\[0\]\.intervalMs: .*HEALTH_MS_MAX/,
    );
    expect(t({ graceMs: -1 })).toEqual(['health[0].graceMs: -1 is below the minimum 0']);
    expect(t({ graceMs: 1.5 })).toEqual([
      'health[0].graceMs: must be an integer (milliseconds), got number 1.5',
    ]);
    expect(errors([{ console: 'up', graceMs: 0 }])).toEqual([]);
  });

  it('takes failure and success thresholds (1..HEALTH_THRESHOLD_MAX) on tcp and http checks; 1 is dropped', () => {
    expect(
      checks([
        http({}, { failureThreshold: 3, successThreshold: HEALTH_THRESHOLD_MAX }),
        { tcp: { host: '10.0.0.2', port: 22 }, failureThreshold: 1, successThreshold: 1 },
      ]),
    ).toEqual([
      {
        http: { host: '10.0.0.2', port: 80, path: '/' },
        intervalMs: 5000,
        timeoutMs: 2000,
        graceMs: 30_000,
        failureThreshold: 3,
        successThreshold: HEALTH_THRESHOLD_MAX,
      },
      { tcp: { host: '10.0.0.2', port: 22 }, intervalMs: 5000, timeoutMs: 2000, graceMs: 30_000 },
    ]);
    // The default given spells the same spec: no restart of VMs whose spec did not change.
    const hash = (t: Record<string, unknown>) => {
      const r = validateVmSpec({ ...TAP, health: [http({}, t)] });
      if (!r.ok) throw new Error('spec');
      return specHash(r.spec);
    };
    expect(hash({ failureThreshold: 1, successThreshold: 1 })).toBe(hash({}));
    expect(hash({ failureThreshold: 2 })).not.toBe(hash({}));
    for (const bad of [0, HEALTH_THRESHOLD_MAX + 1, 1.5, '3']) {
      expect(errors([http({}, { failureThreshold: bad })])).toEqual([
        `health[0].failureThreshold: ${JSON.stringify(bad)} must be an integer from 1 to ${HEALTH_THRESHOLD_MAX} (HEALTH_THRESHOLD_MAX): runs in a row`,
      ]);
    }
    expect(errors([http({}, { successThreshold: 0 })])).toEqual([
      `health[0].successThreshold: 0 must be an integer from 1 to ${HEALTH_THRESHOLD_MAX} (HEALTH_THRESHOLD_MAX): runs in a row`,
    ]);
    // A console check has no runs to count.
    expect(errors([{ console: 'up', failureThreshold: 2 }])).toEqual([
      'health[0].failureThreshold: unknown field (known: console, graceMs)',
    ]);
  });

  it('checks ports (1..65535), hosts (IP literals) and http paths (HEALTH_HTTP_PATH_BYTES_MAX)', () => {
    expect(errors([http({ port: 1 }), http({ port: 65_535 })])).toEqual([]);
    expect(errors([http({ port: 0 })])).toEqual([
      'health[0].http.port: 0 must be an integer from 1 to 65535',
    ]);
    expect(errors([{ tcp: { host: '10.0.0.2', port: 65_536 } }])).toEqual([
      'health[0].tcp.port: 65536 must be an integer from 1 to 65535',
    ]);
    expect(errors([{ tcp: { port: 22 } }])).toEqual([
      "health[0].tcp.host: is required: the guest's IP address (pcr does not know guest addresses yet)",
    ]);
    expect(errors([http({ host: 'web.local' })])).toEqual([
      'health[0].http.host: "web.local" must be an IPv4 or IPv6 address (no host names)',
    ]);
    expect(checks([http({ host: 'FD00::2' })])).toMatchObject([{ http: { host: 'fd00::2' } }]);
    const path = (n: number) => `/${'a'.repeat(n - 1)}`;
    expect(errors([http({ path: path(HEALTH_HTTP_PATH_BYTES_MAX) })])).toEqual([]);
    expect(errors([http({ path: path(HEALTH_HTTP_PATH_BYTES_MAX + 1) })])).toEqual([
      `health[0].http.path: is ${HEALTH_HTTP_PATH_BYTES_MAX + 1} bytes, above the maximum ${HEALTH_HTTP_PATH_BYTES_MAX} (HEALTH_HTTP_PATH_BYTES_MAX)`,
    ]);
    expect(errors([http({ path: 'health' })])).toEqual([
      'health[0].http.path: "health" must start with "/" and hold visible ASCII only (percent-encode the rest)',
    ]);
    expect(errors([http({ path: '/a b' })])[0]).toMatch(/^health\[0\]\.http\.path: /);
  });

  it('checks the console string (1..HEALTH_CONSOLE_BYTES_MAX bytes, one line)', () => {
    expect(errors([{ console: 'x'.repeat(HEALTH_CONSOLE_BYTES_MAX) }])).toEqual([]);
    expect(errors([{ console: 'x'.repeat(HEALTH_CONSOLE_BYTES_MAX + 1) }])).toEqual([
      `health[0].console: must be 1 to ${HEALTH_CONSOLE_BYTES_MAX} bytes (HEALTH_CONSOLE_BYTES_MAX), got ${HEALTH_CONSOLE_BYTES_MAX + 1}`,
    ]);
    expect(errors([{ console: '' }])[0]).toMatch(/^health\[0\]\.console: must be 1 to/);
    expect(errors([{ console: 'a\nb' }])).toEqual([
      'health[0].console: must not contain a line break (it is found within a line)',
    ]);
  });

  it('refuses a tcp or http check on a VM without network; a runner brings its own', () => {
    const none = { version: 1, name: 'web', kernel: '/k' };
    expect(errors([{ console: 'up' }], none)).toEqual([]);
    expect(errors([http()], none)).toEqual([
      'health[0].http: needs a network to reach the guest, and the spec has network "none" (give network {"mode":"tap", ...})',
    ]);
    expect(
      errors([{ tcp: { host: '10.0.0.2', port: 22 } }], { ...none, network: { mode: 'none' } }),
    ).toHaveLength(1);
    expect(errors([http()], { version: 1, name: 'web', runner: RUNNER })).toEqual([]);
  });

  it('refuses a check of no kind or of two, unknown fields, and timings a console check has not', () => {
    expect(errors([{}])).toEqual([
      'health[0]: must have exactly one of console, tcp, http (got none)',
    ]);
    expect(errors([{ console: 'up', tcp: { host: '10.0.0.2', port: 1 } }])).toEqual([
      'health[0]: must have exactly one of console, tcp, http (got console and tcp)',
    ]);
    expect(errors([{ console: 'up', intervalMs: 1000 }])).toEqual([
      'health[0].intervalMs: unknown field (known: console, graceMs)',
    ]);
    expect(errors([http({ method: 'HEAD' })])).toEqual([
      'health[0].http.method: unknown field (known: host, port, path)',
    ]);
    expect(errors([http({}, { retries: 3 })])).toEqual([
      'health[0].retries: unknown field (known: http, intervalMs, timeoutMs, graceMs, failureThreshold, successThreshold)',
    ]);
    expect(errors(['up'])).toEqual([
      'health[0]: must be an object with one of console, tcp, http; got string "up"',
    ]);
  });

  it('labels each check as people read it', () => {
    const r = validateVmSpec({
      ...TAP,
      health: [
        { console: 'web ready' },
        { tcp: { host: '10.0.0.2', port: 22 } },
        http({ host: 'fd00::2', path: '/health' }),
      ],
    });
    if (!r.ok) throw new Error('spec');
    expect(r.spec.health!.map(healthCheckLabel)).toEqual([
      'console "web ready"',
      'tcp 10.0.0.2:22',
      'http [fd00::2]:80/health',
    ]);
  });

  it('tells IP literals from other text', () => {
    for (const ok of [
      '10.0.0.2',
      '255.255.255.255',
      '::',
      '::1',
      'fd00::2',
      '1:2:3:4:5:6:7:8',
      '::ffff:10.0.0.1',
      '1::8',
    ])
      expect(isIpLiteral(ok), ok).toBe(true);
    for (const bad of [
      '256.0.0.1',
      '10.0.0',
      '01.0.0.1',
      'web',
      '1:2:3:4:5:6:7:8:9',
      '1::2::3',
      ':1',
      '1:2:3:4:5:6:7::8:9',
      '',
      '::g',
    ])
      expect(isIpLiteral(bad), bad).toBe(false);
  });
});
