// Health checks of the VMs running on this node: the agent's monitor runs each running instance's
// checks (the spec's `health`: node/state/health_spec.ts) and proposes `vm.health` through Raft
// only when the verdict (health_verdict.ts, pure) differs from the row's, so a steady state costs
// no Raft entry. The probes: a console check reads the console log the supervisor writes, as
// `pcr vm logs` does, incrementally and bounded; tcp connects; http GETs and expects 2xx. It owns
// no replicated state; what it proposes is re-checked at apply (node and generation).
//
// The guest's address: the project does not know it yet (no DHCP or address management on the
// operator's bridge), so tcp and http checks go to the `host` the spec names (docs/vm-spec.md).

import { request as httpRequest } from 'node:http';
import { connect } from 'node:net';
import { type HealthCheck, hostPort } from '../state/health_spec.ts';
import { specHash } from '../state/vm_spec.ts';
import type { VmHealth } from '../state/vms.ts';
import type { ObservedVm } from '../vmm/supervisor.ts';
import {
  appliedHealth,
  type CheckOutcome,
  type HealthVerdict,
  healthToPropose,
  settledOutcome,
  verdictOf,
} from './health_verdict.ts';
import type { DesiredVm } from './reconciler.ts';

/** How often the console log of a VM with a console check not yet seen is read. */
export const HEALTH_CONSOLE_POLL_MS = 500;
/** Console bytes one poll reads at most (a longer backlog is read over the next polls). */
export const HEALTH_CONSOLE_READ_BYTES_MAX = 256 * 1024;

/** A probe's answer: ok, or why not (short and stable: the row keeps it). */
export interface ProbeResult {
  readonly ok: boolean;
  readonly message?: string;
}

/** TCP: a connection to host:port opens within timeoutMs. */
export function probeTcp(host: string, port: number, timeoutMs: number): Promise<ProbeResult> {
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    const done = (r: ProbeResult): void => {
      clearTimeout(timer);
      socket.destroy();
      resolve(r);
    };
    const timer = setTimeout(
      () => done({ ok: false, message: `no connection within ${timeoutMs} ms` }),
      timeoutMs,
    );
    socket.once('connect', () => done({ ok: true }));
    socket.once('error', (e) => done({ ok: false, message: netMessage(e) }));
  });
}

/**
 * HTTP: `GET path` answers 2xx within timeoutMs. Redirects are not followed (a 3xx fails); the body
 * is not read (the connection is closed once the status is known).
 */
export function probeHttp(
  host: string,
  port: number,
  path: string,
  timeoutMs: number,
): Promise<ProbeResult> {
  return new Promise((resolve) => {
    const req = httpRequest({
      host,
      port,
      path,
      method: 'GET',
      agent: false,
      headers: { host: hostPort(host, port), 'user-agent': 'pcr-health', connection: 'close' },
    });
    const done = (r: ProbeResult): void => {
      clearTimeout(timer);
      req.destroy();
      resolve(r);
    };
    const timer = setTimeout(
      () => done({ ok: false, message: `no answer within ${timeoutMs} ms` }),
      timeoutMs,
    );
    req.once('response', (res) => {
      const status = res.statusCode ?? 0;
      res.destroy();
      done(status >= 200 && status < 300 ? { ok: true } : { ok: false, message: String(status) });
    });
    req.once('error', (e) => done({ ok: false, message: netMessage(e) }));
    req.end();
  });
}

function netMessage(e: Error): string {
  const code = (e as NodeJS.ErrnoException).code;
  if (code === 'ECONNREFUSED') return 'connection refused';
  if (code === 'EHOSTUNREACH' || code === 'ENETUNREACH') return 'unreachable';
  if (code === 'ECONNRESET') return 'connection reset';
  return code ?? e.message;
}

/** Reads a VM's console log from `offset` (the supervisor's consoleRead; VMM_NOT_FOUND: none yet). */
export type ConsoleReader = (
  name: string,
  offset: number,
  maxBytes: number,
) => Promise<{ data: string; next: number; size: number }>;

/**
 * Finds strings in lines of a console log as it grows: reads from the run's first byte on, at
 * most HEALTH_CONSOLE_READ_BYTES_MAX per poll, keeping only the tail of an unfinished line a
 * string could still complete. A log cut by the supervisor (smaller than where it read) is read
 * again from the run's (moved) first byte. A multi-byte character split across two reads is not
 * matched (reads are decoded one by one).
 */
export class ConsoleScan {
  private offset: number;
  private carry = '';
  private readonly seen: boolean[];
  private readonly keepChars: number;
  private readonly name: string;
  private readonly needles: readonly string[];
  private readonly runStart: () => number;

  /** `runStart`: where the run's output starts in the log now (the supervisor moves it on a cut). */
  constructor(name: string, needles: readonly string[], runStart: () => number) {
    this.name = name;
    this.needles = needles;
    this.runStart = runStart;
    this.offset = runStart();
    this.seen = needles.map(() => false);
    this.keepChars = Math.max(0, ...needles.map((n) => n.length - 1));
  }

  /** Which strings were seen so far (index as in the constructor's list). */
  found(): readonly boolean[] {
    return this.seen;
  }

  done(): boolean {
    return this.seen.every(Boolean);
  }

  /** Reads what the log gained since the last poll; resolves with found(). */
  async poll(read: ConsoleReader): Promise<readonly boolean[]> {
    let r: Awaited<ReturnType<ConsoleReader>>;
    try {
      r = await read(this.name, this.offset, HEALTH_CONSOLE_READ_BYTES_MAX);
    } catch (e) {
      if ((e as { code?: string }).code === 'VMM_NOT_FOUND') return this.seen; // no log yet
      throw e;
    }
    if (r.size < this.offset) {
      // Cut: what this scan read is gone; read the run's part of what was kept.
      this.offset = Math.min(this.runStart(), r.size);
      this.carry = '';
      return this.poll(read);
    }
    this.offset = r.next;
    this.scan(r.data);
    return this.seen;
  }

  private scan(data: string): void {
    const lines = (this.carry + data).split('\n');
    const partial = lines.pop() ?? '';
    for (const line of [...lines, partial]) {
      this.needles.forEach((n, i) => {
        if (!this.seen[i] && line.includes(n)) this.seen[i] = true;
      });
    }
    this.carry = this.keepChars === 0 ? '' : partial.slice(-this.keepChars);
  }
}

/** What the monitor needs of the node. */
export interface HealthDeps {
  now(): number;
  readConsole: ConsoleReader;
  /** Commits vm.health; resolves when committed (or when the row has it already). */
  propose(name: string, generation: number, verdict: HealthVerdict, atMs: number): Promise<void>;
  onError?(what: string, err: Error): void;
  /** False: no timers; the caller runs runDue() (deterministic tests with a fake clock). */
  timers?: boolean;
}

/** One run of one generation of one VM. */
interface Tracker {
  readonly name: string;
  readonly generation: number;
  readonly startedAtMs: number;
  readonly checks: readonly HealthCheck[];
  /** The outcome that counts for each check (settledOutcome: thresholds applied). */
  readonly outcomes: (CheckOutcome | undefined)[];
  /** Each tcp or http check's last run's `ok` and how many runs in a row had it. */
  readonly streaks: ({ ok: boolean; runs: number } | undefined)[];
  /** When each tcp or http check runs next (console checks: unused). */
  readonly dueAtMs: number[];
  readonly running: boolean[];
  console?: { scan: ConsoleScan; dueAtMs: number; index: number[]; polling: boolean };
  /** Where the run's console output starts, as the supervisor last said (a cut moves it). */
  consoleOffset: number;
  /** The row's verdict as last seen, or as this monitor committed it since. */
  known: VmHealth | undefined;
  proposing: boolean;
}

/** A tcp or http check's run over real sockets. */
function probe(c: HealthCheck): Promise<ProbeResult> {
  if ('tcp' in c) return probeTcp(c.tcp.host, c.tcp.port, c.timeoutMs);
  if ('http' in c) return probeHttp(c.http.host, c.http.port, c.http.path, c.timeoutMs);
  return Promise.resolve({ ok: false, message: 'not a probe' });
}

export class HealthMonitor {
  private readonly trackers = new Map<string, Tracker>();
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  private readonly deps: HealthDeps;

  constructor(deps: HealthDeps) {
    this.deps = deps;
  }

  /**
   * The agent's round: tracks each desired-running VM with checks whose running VMM runs its
   * current spec (a run of a generation; a new run starts over), forgets the rest.
   */
  update(desired: readonly DesiredVm[], observed: readonly ObservedVm[]): void {
    if (this.closed) return;
    const byName = new Map(observed.map((o) => [o.name, o]));
    const keep = new Set<string>();
    for (const d of desired) {
      const o = byName.get(d.name);
      const checks = d.spec.health ?? [];
      if (d.state !== 'running' || checks.length === 0 || o?.phase !== 'running') continue;
      if (o.specHash !== specHash(d.spec)) continue; // being replaced
      const startedAtMs = o.startedAtMs ?? o.sinceMs;
      let t = this.trackers.get(d.name);
      if (t === undefined || t.generation !== d.generation || t.startedAtMs !== startedAtMs) {
        t = this.track(d, checks, startedAtMs, o.consoleOffset ?? 0);
        this.trackers.set(d.name, t);
      }
      t.consoleOffset = o.consoleOffset ?? 0;
      // The committed row is the truth, unless a proposal of ours is in flight.
      if (!t.proposing) t.known = d.health?.generation === d.generation ? d.health : undefined;
      keep.add(d.name);
    }
    for (const name of [...this.trackers.keys()]) if (!keep.has(name)) this.trackers.delete(name);
    this.evaluateAll();
    this.schedule();
  }

  /** Runs every check that is due now and evaluates; resolves when their runs ended. */
  async runDue(): Promise<void> {
    const now = this.deps.now();
    const runs: Promise<void>[] = [];
    for (const t of this.trackers.values()) {
      t.checks.forEach((c, i) => {
        if ('console' in c || t.running[i] || t.dueAtMs[i]! > now) return;
        runs.push(this.runProbe(t, i, c));
      });
      const con = t.console;
      if (con !== undefined && !con.polling && !con.scan.done() && con.dueAtMs <= now)
        runs.push(this.pollConsole(t, con));
    }
    await Promise.all(runs);
    this.schedule();
  }

  /** Stops the timers and forgets every run; proposals in flight end on their own. */
  close(): void {
    this.closed = true;
    clearTimeout(this.timer);
    this.trackers.clear();
  }

  /** After close(): tracks again from the next update() (the agent started again). */
  resume(): void {
    this.closed = false;
  }

  /** The VMs tracked now (tests, status). */
  tracked(): string[] {
    return [...this.trackers.keys()].sort();
  }

  /** A new run: every check due now, nothing known of it yet. */
  private track(
    d: DesiredVm,
    checks: readonly HealthCheck[],
    startedAtMs: number,
    consoleOffset: number,
  ): Tracker {
    const now = this.deps.now();
    const t: Tracker = {
      name: d.name,
      generation: d.generation,
      startedAtMs,
      checks,
      outcomes: checks.map(() => undefined),
      streaks: checks.map(() => undefined),
      dueAtMs: checks.map(() => now),
      running: checks.map(() => false),
      consoleOffset,
      known: undefined,
      proposing: false,
    };
    const consoles = checks.flatMap((c, i) => ('console' in c ? [i] : []));
    if (consoles.length > 0) {
      const needles = consoles.map((i) => (checks[i] as { console: string }).console);
      const scan = new ConsoleScan(d.name, needles, () => t.consoleOffset);
      t.console = { scan, dueAtMs: now, index: consoles, polling: false };
    }
    return t;
  }

  private async runProbe(t: Tracker, i: number, c: HealthCheck): Promise<void> {
    const interval = 'console' in c ? 0 : c.intervalMs;
    t.running[i] = true;
    t.dueAtMs[i] = this.deps.now() + interval;
    let run: CheckOutcome;
    try {
      const r = await probe(c);
      run = {
        ok: r.ok,
        ...(r.message !== undefined ? { message: r.message } : {}),
        atMs: this.deps.now(),
      };
    } catch (e) {
      run = { ok: false, message: (e as Error).message, atMs: this.deps.now() };
    } finally {
      t.running[i] = false;
    }
    const last = t.streaks[i];
    const runs = last?.ok === run.ok ? last.runs + 1 : 1;
    t.streaks[i] = { ok: run.ok, runs };
    t.outcomes[i] = settledOutcome(c, t.outcomes[i], run, runs);
    this.evaluate(t);
    this.schedule();
  }

  private async pollConsole(t: Tracker, con: NonNullable<Tracker['console']>): Promise<void> {
    con.polling = true;
    con.dueAtMs = this.deps.now() + HEALTH_CONSOLE_POLL_MS;
    try {
      const found = await con.scan.poll(this.deps.readConsole);
      const at = this.deps.now();
      con.index.forEach((ci, k) => {
        if (found[k] === true && t.outcomes[ci] === undefined)
          t.outcomes[ci] = { ok: true, atMs: at };
      });
    } catch (e) {
      this.deps.onError?.(`health: console of ${t.name}`, e as Error);
    } finally {
      con.polling = false;
    }
    this.evaluate(t);
    this.schedule();
  }

  private evaluateAll(): void {
    for (const t of this.trackers.values()) this.evaluate(t);
  }

  /** Proposes the verdict when it differs from the row's (one proposal per VM at a time). */
  private evaluate(t: Tracker): void {
    if (this.closed || this.trackers.get(t.name) !== t || t.proposing) return;
    const now = this.deps.now();
    const verdict = verdictOf(t.checks, t.outcomes, t.startedAtMs, now);
    const next = healthToPropose(t.known, t.generation, verdict, t.startedAtMs);
    if (next === undefined) return;
    t.proposing = true;
    this.deps.propose(t.name, t.generation, next, now).then(
      () => {
        t.known = appliedHealth(t.known, t.generation, next, now);
        t.proposing = false;
        this.evaluate(t); // the checks may have moved on meanwhile
      },
      (e: Error) => {
        // Retried when the checks are next evaluated (Raft may be without a leader for a while).
        t.proposing = false;
        this.deps.onError?.(`health of ${t.name}`, e);
      },
    );
  }

  /** One timer, for the earliest due check or console poll. */
  private schedule(): void {
    if (this.closed || this.deps.timers === false) return;
    clearTimeout(this.timer);
    let next = Number.POSITIVE_INFINITY;
    for (const t of this.trackers.values()) {
      t.checks.forEach((c, i) => {
        if (!('console' in c) && !t.running[i]) next = Math.min(next, t.dueAtMs[i]!);
      });
      if (t.console !== undefined && !t.console.scan.done() && !t.console.polling)
        next = Math.min(next, t.console.dueAtMs);
    }
    if (next === Number.POSITIVE_INFINITY) return;
    this.timer = setTimeout(
      () => {
        this.runDue().catch((e: Error) => this.deps.onError?.('health checks', e));
      },
      Math.max(0, next - this.deps.now()),
    );
    this.timer.unref();
  }
}
