// The health checks of a VM spec (the spec's optional `health` list): their types, bounds and the
// pure validator that fills in their defaults, wired into validateVmSpec (node/state/vm_spec.ts).
// Issues have the spec validator's shape (code, path, message starting with the path). Evaluating
// the checks is the agent's (node/agent/health.ts); docs/deploy.md has the contract.
//
// The project does not know a guest's address yet (no DHCP or address management for taps), so a
// tcp or http check names the address it connects to (`host`, an IP literal: no name lookup);
// docs/vm-spec.md says so.

import { type Fail, isObj, type Obj, typeName, unknownFields } from './spec_fields.ts';

/** Checks one spec carries at most. */
export const HEALTH_CHECKS_MAX = 8;
/** The shortest interval between two runs of a tcp or http check. */
export const HEALTH_INTERVAL_MS_MIN = 100;
/** The longest interval, timeout or grace a check may give. */
export const HEALTH_MS_MAX = 3_600_000;
/** The shortest timeout of a tcp or http check. */
export const HEALTH_TIMEOUT_MS_MIN = 1;
/** The longest string a console check looks for. */
export const HEALTH_CONSOLE_BYTES_MAX = 256;
/** The longest path an http check asks for. */
export const HEALTH_HTTP_PATH_BYTES_MAX = 512;
/** The most runs in a row a tcp or http check's failureThreshold or successThreshold may ask. */
export const HEALTH_THRESHOLD_MAX = 10;
export const PORT_MIN = 1;
export const PORT_MAX = 65_535;

export const DEFAULT_HEALTH_INTERVAL_MS = 5000;
export const DEFAULT_HEALTH_TIMEOUT_MS = 2000;
export const DEFAULT_HEALTH_GRACE_MS = 30_000;

/** A check with its defaults filled in. */
export type HealthCheck =
  | {
      /** A line of the VM's console log containing this string (since the VM's start). */
      readonly console: string;
      /** After the start, how long before "not seen yet" counts as failing. */
      readonly graceMs: number;
    }
  | ({ readonly tcp: { readonly host: string; readonly port: number } } & ProbeTiming)
  | ({
      readonly http: { readonly host: string; readonly port: number; readonly path: string };
    } & ProbeTiming);

/** When a tcp or http check runs, and how many runs in a row change what it says. */
export interface ProbeTiming {
  readonly intervalMs: number;
  readonly timeoutMs: number;
  readonly graceMs: number;
  /**
   * Failed runs in a row before a passing check counts as failing; absent: 1 (every run counts,
   * and a spec that gives 1 hashes as one that gives nothing).
   */
  readonly failureThreshold?: number;
  /** Passing runs in a row before a failing or new check counts as passing; absent: 1. */
  readonly successThreshold?: number;
}

/** What the VM's network is, for the rule that tcp and http checks need one. */
export type HealthNetwork = 'none' | 'tap' | 'runner';

export interface HealthIssue {
  readonly code: 'SPEC_INVALID';
  readonly path: string;
  readonly message: string;
}

export type HealthResult =
  | { readonly ok: true; readonly checks: readonly HealthCheck[] }
  | { readonly ok: false; readonly errors: readonly HealthIssue[] };

const KINDS = ['console', 'tcp', 'http'] as const;
/** A request target: visible ASCII only (no space, no control character). */
const HTTP_PATH = /^\/[\x21-\x7e]*$/;

/**
 * Validates the spec's `health` value. `network`: `none` refuses tcp and http checks (nothing can
 * reach the guest); a runner closure brings its own network (microvm.nix interfaces), so a runner
 * spec may carry them.
 */
export function validateHealthChecks(input: unknown, network: HealthNetwork): HealthResult {
  const errors: HealthIssue[] = [];
  const fail: Fail = (path, what) => {
    errors.push({ code: 'SPEC_INVALID', path, message: `${path}: ${what}` });
    return undefined;
  };
  if (!Array.isArray(input)) {
    fail('health', `must be a list of checks, got ${typeName(input)}`);
    return { ok: false, errors };
  }
  if (input.length > HEALTH_CHECKS_MAX) {
    fail(
      'health',
      `has ${input.length} checks, above the maximum ${HEALTH_CHECKS_MAX} (HEALTH_CHECKS_MAX)`,
    );
    return { ok: false, errors };
  }
  const checks: HealthCheck[] = [];
  for (const [i, c] of (input as unknown[]).entries()) {
    const check = parseCheck(c, `health[${i}]`, network, fail);
    if (check !== undefined) checks.push(check);
  }
  return errors.length > 0 ? { ok: false, errors } : { ok: true, checks };
}

function parseCheck(
  c: unknown,
  p: string,
  network: HealthNetwork,
  fail: Fail,
): HealthCheck | undefined {
  if (!isObj(c))
    return fail(p, `must be an object with one of console, tcp, http; got ${typeName(c)}`);
  const kinds = KINDS.filter((k) => c[k] !== undefined);
  if (kinds.length !== 1) {
    const got = kinds.length === 0 ? 'none' : kinds.join(' and ');
    return fail(p, `must have exactly one of console, tcp, http (got ${got})`);
  }
  const kind = kinds[0]!;
  if (kind === 'console') {
    unknownFields(c, ['console', 'graceMs'], `${p}.`, fail);
    const text = parseConsole(c.console, `${p}.console`, fail);
    const graceMs = timing(c, 'graceMs', 0, DEFAULT_HEALTH_GRACE_MS, p, fail);
    return text === undefined || graceMs === undefined ? undefined : { console: text, graceMs };
  }
  unknownFields(
    c,
    [kind, 'intervalMs', 'timeoutMs', 'graceMs', 'failureThreshold', 'successThreshold'],
    `${p}.`,
    fail,
  );
  if (network === 'none') {
    fail(
      `${p}.${kind}`,
      'needs a network to reach the guest, and the spec has network "none" (give network {"mode":"tap", ...})',
    );
  }
  const target = parseTarget(c[kind], `${p}.${kind}`, kind === 'http', fail);
  const intervalMs = timing(
    c,
    'intervalMs',
    HEALTH_INTERVAL_MS_MIN,
    DEFAULT_HEALTH_INTERVAL_MS,
    p,
    fail,
  );
  // The default timeout never exceeds the interval given (an interval of 1 s alone is fine).
  const timeoutMs = timing(
    c,
    'timeoutMs',
    HEALTH_TIMEOUT_MS_MIN,
    Math.min(DEFAULT_HEALTH_TIMEOUT_MS, intervalMs ?? DEFAULT_HEALTH_TIMEOUT_MS),
    p,
    fail,
  );
  const graceMs = timing(c, 'graceMs', 0, DEFAULT_HEALTH_GRACE_MS, p, fail);
  const failureThreshold = threshold(c, 'failureThreshold', p, fail);
  const successThreshold = threshold(c, 'successThreshold', p, fail);
  if (intervalMs !== undefined && timeoutMs !== undefined && timeoutMs > intervalMs) {
    fail(
      `${p}.timeoutMs`,
      `${timeoutMs} is above ${p}.intervalMs ${intervalMs} (a run must end before the next one)`,
    );
    return undefined;
  }
  if (target === undefined || intervalMs === undefined || timeoutMs === undefined) return undefined;
  if (graceMs === undefined || failureThreshold === undefined || successThreshold === undefined)
    return undefined;
  const t: ProbeTiming = {
    intervalMs,
    timeoutMs,
    graceMs,
    ...(failureThreshold > 1 ? { failureThreshold } : {}),
    ...(successThreshold > 1 ? { successThreshold } : {}),
  };
  return kind === 'tcp'
    ? { tcp: { host: target.host, port: target.port }, ...t }
    : { http: { host: target.host, port: target.port, path: target.path ?? '/' }, ...t };
}

function parseConsole(v: unknown, p: string, fail: Fail): string | undefined {
  if (typeof v !== 'string') return fail(p, `must be a string, got ${typeName(v)}`);
  const bytes = Buffer.byteLength(v);
  if (bytes === 0 || bytes > HEALTH_CONSOLE_BYTES_MAX) {
    return fail(
      p,
      `must be 1 to ${HEALTH_CONSOLE_BYTES_MAX} bytes (HEALTH_CONSOLE_BYTES_MAX), got ${bytes}`,
    );
  }
  if (/[\r\n]/.test(v)) return fail(p, 'must not contain a line break (it is found within a line)');
  return v;
}

function parseTarget(
  v: unknown,
  p: string,
  http: boolean,
  fail: Fail,
): { host: string; port: number; path?: string } | undefined {
  if (!isObj(v))
    return fail(p, `must be an object {host, port${http ? ', path?' : ''}}, got ${typeName(v)}`);
  unknownFields(v, http ? ['host', 'port', 'path'] : ['host', 'port'], `${p}.`, fail);
  let host: string | undefined;
  if (v.host === undefined) {
    fail(
      `${p}.host`,
      "is required: the guest's IP address (pcr does not know guest addresses yet)",
    );
  } else if (typeof v.host !== 'string' || !isIpLiteral(v.host)) {
    fail(`${p}.host`, `${JSON.stringify(v.host)} must be an IPv4 or IPv6 address (no host names)`);
  } else host = v.host.toLowerCase();
  const port = v.port;
  if (!Number.isSafeInteger(port) || (port as number) < PORT_MIN || (port as number) > PORT_MAX) {
    fail(`${p}.port`, `${JSON.stringify(port)} must be an integer from ${PORT_MIN} to ${PORT_MAX}`);
  }
  let path: string | undefined;
  if (http && v.path !== undefined) {
    if (typeof v.path !== 'string') fail(`${p}.path`, `must be a string, got ${typeName(v.path)}`);
    else if (Buffer.byteLength(v.path) > HEALTH_HTTP_PATH_BYTES_MAX)
      fail(
        `${p}.path`,
        `is ${Buffer.byteLength(v.path)} bytes, above the maximum ${HEALTH_HTTP_PATH_BYTES_MAX} (HEALTH_HTTP_PATH_BYTES_MAX)`,
      );
    else if (!HTTP_PATH.test(v.path))
      fail(
        `${p}.path`,
        `${JSON.stringify(v.path)} must start with "/" and hold visible ASCII only (percent-encode the rest)`,
      );
    else path = v.path;
  }
  if (host === undefined || !Number.isSafeInteger(port)) return undefined;
  if ((port as number) < PORT_MIN || (port as number) > PORT_MAX) return undefined;
  if (http && v.path !== undefined && path === undefined) return undefined;
  return { host, port: port as number, ...(path !== undefined ? { path } : {}) };
}

/** A run count of a check (failureThreshold, successThreshold), 1 when absent. */
function threshold(
  c: Obj,
  key: 'failureThreshold' | 'successThreshold',
  p: string,
  fail: Fail,
): number | undefined {
  const v = c[key];
  if (v === undefined) return 1;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 1 || v > HEALTH_THRESHOLD_MAX) {
    return fail(
      `${p}.${key}`,
      `${JSON.stringify(v)} must be an integer from 1 to ${HEALTH_THRESHOLD_MAX} (HEALTH_THRESHOLD_MAX): runs in a row`,
    );
  }
  return v;
}

/** An integer timing field of a check, its default when absent. */
function timing(
  c: Obj,
  key: 'intervalMs' | 'timeoutMs' | 'graceMs',
  min: number,
  dflt: number,
  p: string,
  fail: Fail,
): number | undefined {
  const v = c[key];
  const path = `${p}.${key}`;
  if (v === undefined) return dflt;
  if (typeof v !== 'number' || !Number.isSafeInteger(v))
    return fail(path, `must be an integer (milliseconds), got ${typeName(v)}`);
  if (v < min) {
    const name =
      key === 'intervalMs'
        ? ' (HEALTH_INTERVAL_MS_MIN)'
        : key === 'timeoutMs'
          ? ' (HEALTH_TIMEOUT_MS_MIN)'
          : '';
    return fail(path, `${v} is below the minimum ${min}${name}`);
  }
  if (v > HEALTH_MS_MAX)
    return fail(path, `${v} is above the maximum ${HEALTH_MS_MAX} (HEALTH_MS_MAX)`);
  return v;
}

/** A check as people read it (`vm.health`'s `check`, `pcr vm status`). */
export function healthCheckLabel(c: HealthCheck): string {
  if ('console' in c) return `console ${JSON.stringify(c.console)}`;
  if ('tcp' in c) return `tcp ${hostPort(c.tcp.host, c.tcp.port)}`;
  return `http ${hostPort(c.http.host, c.http.port)}${c.http.path}`;
}

/** `10.0.0.2:80`, `[fd00::2]:80`. */
export function hostPort(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

/** An IPv4 dotted quad or an IPv6 address (RFC 4291 text forms, an IPv4 tail allowed). */
export function isIpLiteral(s: string): boolean {
  return isIpv4(s) || isIpv6(s);
}

function isIpv4(s: string): boolean {
  const parts = s.split('.');
  return (
    parts.length === 4 && parts.every((x) => /^(0|[1-9][0-9]{0,2})$/.test(x) && Number(x) <= 255)
  );
}

function isIpv6(s: string): boolean {
  if (s.length > 45 || !/^[0-9a-fA-F:.]+$/.test(s)) return false;
  const halves = s.split('::');
  if (halves.length > 2) return false;
  const groups = halves.map((h) => (h === '' ? [] : h.split(':')));
  const all = groups.flat();
  const last = all.at(-1) ?? '';
  const v4 = last.includes('.');
  if (v4 && !isIpv4(last)) return false;
  const hex = v4 ? all.slice(0, -1) : all;
  if (!hex.every((g) => /^[0-9a-fA-F]{1,4}$/.test(g))) return false;
  const units = hex.length + (v4 ? 2 : 0);
  return halves.length === 2 ? units <= 7 : units === 8;
}
