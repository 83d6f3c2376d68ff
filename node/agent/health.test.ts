// Health checks on the node: the probes against real TCP and HTTP servers on 127.0.0.1 (real
// sockets), the console scan over a console log read through the supervisor's consoleRead (what
// `pcr vm logs` reads), and the monitor with a fake clock (no timers): grace, interval, a proposal
// only when the verdict changes, a restart, a VM being replaced.

import { appendFile, mkdir, mkdtemp, rm, truncate, writeFile } from 'node:fs/promises';
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { specHash, type VmSpec, validateVmSpec } from '../state/vm_spec.ts';
import type { VmHealth } from '../state/vms.ts';
import { type ObservedVm, Supervisor } from '../vmm/supervisor.ts';
import {
  ConsoleScan,
  HEALTH_CONSOLE_POLL_MS,
  HEALTH_CONSOLE_READ_BYTES_MAX,
  HealthMonitor,
  probeHttp,
  probeTcp,
} from './health.ts';
import { appliedHealth, type HealthVerdict } from './health_verdict.ts';
import type { DesiredVm } from './reconciler.ts';

const listen = async <S extends Server | HttpServer>(server: S): Promise<number> => {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return (server.address() as { port: number }).port;
};
const close = (server: Server | HttpServer): Promise<void> =>
  new Promise((r) => {
    (server as HttpServer).closeAllConnections?.();
    server.close(() => r());
  });

/** A port nothing listens on: one a server had, closed again. */
async function closedPort(): Promise<number> {
  const s = createServer();
  const port = await listen(s);
  await close(s);
  return port;
}

describe('probes over real sockets on 127.0.0.1', () => {
  let http: HttpServer;
  let silent: Server;
  let httpPort = 0;
  let silentPort = 0;
  let status = 200;
  const seen: { url?: string; host?: string }[] = [];
  const held: Socket[] = [];
  beforeAll(async () => {
    http = createHttpServer((req, res) => {
      seen.push({ url: req.url, host: req.headers.host });
      res.writeHead(status, status === 302 ? { location: '/elsewhere' } : {});
      res.end('body');
    });
    httpPort = await listen(http);
    // Accepts connections and never answers.
    silent = createServer((s) => void held.push(s));
    silentPort = await listen(silent);
  });
  afterAll(async () => {
    for (const s of held) s.destroy();
    await close(http);
    await close(silent);
  });

  it('tcp: a listening port passes, a closed one is refused', async () => {
    expect(await probeTcp('127.0.0.1', httpPort, 2000)).toEqual({ ok: true });
    expect(await probeTcp('127.0.0.1', await closedPort(), 2000)).toEqual({
      ok: false,
      message: 'connection refused',
    });
  });

  it('http: 2xx passes; 503 and a 302 (not followed) fail with the status; path and Host sent', async () => {
    status = 204;
    expect(await probeHttp('127.0.0.1', httpPort, '/health?x=1', 2000)).toEqual({ ok: true });
    expect(seen.at(-1)).toEqual({ url: '/health?x=1', host: `127.0.0.1:${httpPort}` });
    status = 503;
    expect(await probeHttp('127.0.0.1', httpPort, '/', 2000)).toEqual({
      ok: false,
      message: '503',
    });
    status = 302;
    expect(await probeHttp('127.0.0.1', httpPort, '/', 2000)).toEqual({
      ok: false,
      message: '302',
    });
    expect(seen.map((s) => s.url)).not.toContain('/elsewhere');
  });

  it('http: refused, and no answer within the timeout', async () => {
    expect(await probeHttp('127.0.0.1', await closedPort(), '/', 2000)).toEqual({
      ok: false,
      message: 'connection refused',
    });
    expect(await probeHttp('127.0.0.1', silentPort, '/', 150)).toEqual({
      ok: false,
      message: 'no answer within 150 ms',
    });
  });
});

describe('ConsoleScan over a console log read as pcr vm logs reads it', () => {
  let runDir = '';
  let sup: Supervisor;
  let log = '';
  beforeAll(async () => {
    runDir = await mkdtemp(join(tmpdir(), 'pcr-health-'));
    sup = new Supervisor({ runDir, backends: {} });
    log = sup.paths('web').console;
    await mkdir(dirname(log), { recursive: true });
  });
  afterAll(async () => {
    await sup.close();
    await rm(runDir, { recursive: true, force: true });
  });
  const read = (name: string, offset: number, maxBytes: number) =>
    sup.consoleRead(name, offset, maxBytes);

  it('finds a string within a line, also when a line arrives in pieces; never across lines', async () => {
    await writeFile(log, '');
    const scan = new ConsoleScan('web', ['web ready', 'ab'], () => 0);
    expect(await scan.poll(read)).toEqual([false, false]);
    await appendFile(log, 'booting\nweb re');
    expect(await scan.poll(read)).toEqual([false, false]);
    await appendFile(log, 'ady on :80\na\nb\n');
    expect(await scan.poll(read)).toEqual([true, false]);
    await appendFile(log, 'xab');
    expect(await scan.poll(read)).toEqual([true, true]);
    expect(scan.done()).toBe(true);
  });

  it("ignores what the log held before the run's first byte", async () => {
    await writeFile(log, 'web ready (the previous run)\n');
    const start = Buffer.byteLength('web ready (the previous run)\n');
    const scan = new ConsoleScan('web', ['web ready'], () => start);
    expect(await scan.poll(read)).toEqual([false]);
    await appendFile(log, 'web ready\n');
    expect(await scan.poll(read)).toEqual([true]);
  });

  it('reads at most HEALTH_CONSOLE_READ_BYTES_MAX per poll', async () => {
    await writeFile(log, `${'x'.repeat(HEALTH_CONSOLE_READ_BYTES_MAX)}\nweb ready\n`);
    const scan = new ConsoleScan('web', ['web ready'], () => 0);
    expect(await scan.poll(read)).toEqual([false]);
    expect(await scan.poll(read)).toEqual([true]);
  });

  it('reads again from the run start after the log was cut, and waits for a log that is not there', async () => {
    await writeFile(log, `${'x\n'.repeat(100)}`);
    let start = 50;
    const scan = new ConsoleScan('web', ['web ready'], () => start);
    expect(await scan.poll(read)).toEqual([false]);
    // The supervisor cut the log to its last 20 bytes (the run's start moved to 0), then the
    // guest wrote its line.
    await truncate(log, 0);
    await writeFile(log, 'x\n'.repeat(10));
    start = 0;
    await appendFile(log, 'web ready\n');
    expect(await scan.poll(read)).toEqual([true]);
    const none = new ConsoleScan('nothing', ['web ready'], () => 0);
    expect(await none.poll(read)).toEqual([false]);
  });
});

describe('HealthMonitor with a fake clock', () => {
  let http: HttpServer;
  let port = 0;
  let status = 503;
  let now = 1_000_000;
  let monitor: HealthMonitor | undefined;
  beforeAll(async () => {
    http = createHttpServer((_req, res) => {
      res.writeHead(status);
      res.end();
    });
    port = await listen(http);
  });
  afterAll(async () => close(http));
  afterEach(() => monitor?.close());

  function specOf(health: unknown[]): VmSpec {
    const r = validateVmSpec({ version: 1, name: 'web', runner: RUNNER, health });
    if (!r.ok) throw new Error(r.errors.map((e) => e.message).join('; '));
    return r.spec;
  }
  const RUNNER = '/nix/store/0c6lw3rq0qvd4n4ys4fvnnbd5bxxc0nk-microvm-run-web';
  const observedOf = (
    spec: VmSpec,
    startedAtMs: number,
    phase: ObservedVm['phase'] = 'running',
  ): ObservedVm => ({
    name: 'web',
    backend: 'microvm',
    specHash: specHash(spec),
    generation: 7,
    phase,
    sinceMs: startedAtMs,
    attempts: 0,
    adopted: false,
    startedAtMs,
    consoleOffset: 0,
  });

  /** A monitor whose proposals commit at once into `row` (as the state machine applies them). */
  function harness() {
    const proposals: HealthVerdict[] = [];
    const state: { row: VmHealth | undefined } = { row: undefined };
    monitor = new HealthMonitor({
      now: () => now,
      timers: false,
      readConsole: async () => ({ data: '', next: 0, size: 0 }),
      propose: async (_name, generation, v, atMs) => {
        proposals.push(v);
        state.row = appliedHealth(state.row, generation, v, atMs);
      },
    });
    const desired = (spec: VmSpec): DesiredVm[] => [
      {
        name: 'web',
        spec,
        generation: 7,
        state: 'running',
        ...(state.row !== undefined ? { health: state.row } : {}),
      },
    ];
    return { proposals, state, desired, m: monitor };
  }
  /** Lets the proposals' promise callbacks run. */
  const settle = () => new Promise((r) => setImmediate(r));

  it('counts no failure within the grace; proposes on each change of verdict only', async () => {
    const spec = specOf([
      { http: { host: '127.0.0.1', port, path: '/health' }, intervalMs: 1000, graceMs: 5000 },
    ]);
    const { proposals, desired, m } = harness();
    const start = now;
    status = 503;
    m.update(desired(spec), [observedOf(spec, start)]);
    expect(m.tracked()).toEqual(['web']);
    await m.runDue();
    await settle();
    expect(proposals).toEqual([]); // a failure within the grace
    now = start + 500;
    await m.runDue(); // not due yet: nothing runs
    now = start + 5000;
    await m.runDue();
    await settle();
    const check = `http 127.0.0.1:${port}/health`;
    expect(proposals).toEqual([{ healthy: false, check, message: '503' }]);
    // Steady: more runs, the row holds the verdict, nothing more is proposed.
    for (let i = 1; i <= 5; i++) {
      now = start + 5000 + i * 1000;
      m.update(desired(spec), [observedOf(spec, start)]);
      await m.runDue();
      await settle();
    }
    expect(proposals).toHaveLength(1);
    status = 200;
    now += 1000;
    await m.runDue();
    await settle();
    expect(proposals.at(-1)).toEqual({ healthy: true, check });
    for (let i = 1; i <= 3; i++) {
      now += 1000;
      m.update(desired(spec), [observedOf(spec, start)]);
      await m.runDue();
      await settle();
    }
    expect(proposals).toHaveLength(2);
  });

  it('with failureThreshold, one failed run among passing ones proposes nothing; enough in a row do', async () => {
    const spec = specOf([
      {
        http: { host: '127.0.0.1', port, path: '/health' },
        intervalMs: 1000,
        graceMs: 0,
        failureThreshold: 3,
      },
    ]);
    const { proposals, desired, m } = harness();
    const start = now;
    const run = async (code: number) => {
      status = code;
      m.update(desired(spec), [observedOf(spec, start)]);
      await m.runDue();
      await settle();
      now += 1000;
    };
    await run(200);
    const check = `http 127.0.0.1:${port}/health`;
    expect(proposals).toEqual([{ healthy: true, check }]);
    // A flap: one or two failed runs between passing ones.
    for (const code of [503, 200, 503, 503, 200]) await run(code);
    expect(proposals).toHaveLength(1);
    for (const code of [503, 503, 503]) await run(code);
    expect(proposals).toEqual([
      { healthy: true, check },
      { healthy: false, check, message: '503' },
    ]);
  });

  it('a console check fails when its grace ends unseen; a restarted healthy VM is proposed unhealthy', async () => {
    const spec = specOf([{ console: 'web ready', graceMs: 2000 }]);
    const { proposals, state, desired, m } = harness();
    const start = now;
    m.update(desired(spec), [observedOf(spec, start)]);
    await m.runDue();
    await settle();
    expect(proposals).toEqual([]);
    now = start + HEALTH_CONSOLE_POLL_MS;
    await m.runDue();
    expect(proposals).toEqual([]);
    now = start + 2000;
    await m.runDue();
    await settle();
    expect(proposals).toEqual([
      {
        healthy: false,
        check: 'console "web ready"',
        message: 'not seen within 2000 ms of the start',
      },
    ]);
    // The row says healthy (from an earlier run); the VM starts again: unhealthy until it passes.
    state.row = { generation: 7, healthy: true, sinceMs: now, check: 'console "web ready"' };
    now += 100;
    m.update(desired(spec), [observedOf(spec, now)]);
    await settle();
    expect(proposals.at(-1)).toMatchObject({ healthy: false, check: 'restart' });
  });

  it('tracks only a running VM that runs its current spec', async () => {
    const spec = specOf([{ console: 'web ready' }]);
    const other = specOf([{ console: 'other' }]);
    const { m, desired } = harness();
    m.update(desired(spec), [observedOf(other, now)]);
    expect(m.tracked()).toEqual([]);
    m.update(desired(spec), [observedOf(spec, now, 'backoff')]);
    expect(m.tracked()).toEqual([]);
    m.update(desired(specOf([])), [observedOf(specOf([]), now)]);
    expect(m.tracked()).toEqual([]);
    m.update(desired(spec), [observedOf(spec, now)]);
    expect(m.tracked()).toEqual(['web']);
    m.update([], [observedOf(spec, now)]);
    expect(m.tracked()).toEqual([]);
  });
});
