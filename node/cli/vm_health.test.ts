// `pcr vm status` and `vm list` show a VM's health, on a real node process: two VMs whose runner is
// a closure built by the real Nix (its bin/microvm-run prints a line and sleeps: a labelled
// stand-in for a hypervisor, as in nix/spec.test.ts), one with a console check its line passes,
// one with an http check against a real HTTP server on 127.0.0.1 that answers 503. The node's
// agent runs the checks and commits the verdicts through Raft; --json carries the row's field.

import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, expect, it } from 'vitest';
import { recorded } from '../../test/deploy/node.ts';
import { closeClients, type NodeProc, pcr, startNode, stop, until } from '../../test/procs.ts';
import { describeWithTools, nixEnv } from '../../test/tools.ts';
import { sweep } from '../../test/vmm/helpers.ts';
import { VM_RUN_DIR } from '../daemon.ts';
import { healthText } from './vm_cmds.ts';

const exec = promisify(execFile);
const LINE = 'stand-in web ready';

/** A runner closure whose microvm-run prints LINE and sleeps (no hypervisor: see the header). */
async function standInRunner(): Promise<string> {
  const script = `#!/bin/sh\\necho ${LINE}\\nexec /bin/sleep 600\\n`;
  const expr = `derivation {
    name = "microvm-run-health-${process.pid}-${Date.now()}";
    system = builtins.currentSystem;
    builder = "/bin/sh";
    args = [ "-c" "/bin/mkdir -p $out/bin && printf '${script}' > $out/bin/microvm-run && /bin/chmod +x $out/bin/microvm-run" ];
  }`;
  const { stdout } = await exec('nix-build', ['--no-out-link', '-E', expr], { env: nixEnv() });
  return stdout.trim().split('\n').at(-1)!;
}

let base = '';
let node: NodeProc | undefined;
let server: Server | undefined;
afterAll(async () => {
  await closeClients();
  server?.close();
  if (node !== undefined) {
    if (node.child.exitCode === null) await stop(node);
    await sweep(join(node.dataDir, VM_RUN_DIR));
  }
  if (base !== '') await rm(base, { recursive: true, force: true });
});

it('healthText: healthy since a time, unhealthy with the check and why, checking, none', () => {
  const now = new Date(2026, 11, 7, 12, 30, 0).getTime();
  const spec = { health: [{ console: 'x' }] };
  const since = new Date(2026, 11, 7, 12, 1, 7).getTime();
  const h = (healthy: boolean, message?: string) => ({
    generation: 5,
    healthy,
    sinceMs: since,
    check: 'http 10.0.0.2:80/health',
    ...(message !== undefined ? { message } : {}),
  });
  expect(healthText({ generation: 5, spec, health: h(true) }, now)).toBe('healthy since 12:01:07');
  expect(healthText({ generation: 5, spec, health: h(true) }, now + 86_400_000)).toBe(
    'healthy since 2026-12-07 12:01:07',
  );
  expect(healthText({ generation: 5, spec, health: h(false, '503') }, now)).toBe(
    'unhealthy: http 10.0.0.2:80/health: 503',
  );
  expect(healthText({ generation: 5, spec }, now)).toBe('checking');
  expect(healthText({ generation: 6, spec, health: h(true) }, now)).toBe('checking');
  expect(healthText({ generation: 5, spec: {}, health: h(true) }, now)).toBeUndefined();
});

describeWithTools(['nix-build'], 'health in pcr vm status on a real node', () => {
  it('shows healthy since, unhealthy with the http status, and --json carries the field', {
    timeout: 180_000,
  }, async () => {
    const runner = await standInRunner();
    server = createServer((_req, res) => {
      res.writeHead(503);
      res.end();
    });
    await new Promise<void>((r) => server!.listen(0, '127.0.0.1', r));
    const port = (server.address() as { port: number }).port;
    // Short: VMM sockets live under the data dir (unix socket paths are at most 107 bytes).
    base = await mkdtemp('/tmp/pcr-vmh-');
    // The node's store is the machine's Nix store, where nix-build put the runner.
    const n = await startNode(base, 'n', ['--name', 'n', '--store', 'nix', '--cache', 'off']);
    node = n;
    const on = (args: string[], timeoutMs?: number) =>
      pcr([...args, '--data-dir', n.dataDir], timeoutMs);
    // A VM is placed on a member of the table: the node's own record is committed once it leads.
    await recorded(n);
    const run = async (name: string, health: unknown[]) => {
      const file = join(base, `${name}.json`);
      await writeFile(file, JSON.stringify({ version: 1, name, runner, health }));
      const r = await on(['vm', 'run', file, '--json'], 120_000);
      expect(r.exitCode, r.stderr).toBe(0);
      expect(JSON.parse(r.stdout)).toMatchObject({ name, state: 'running' });
    };
    await run('hweb', [{ console: LINE }]);
    await run('hapi', [
      { http: { host: '127.0.0.1', port, path: '/health' }, intervalMs: 200, graceMs: 0 },
    ]);

    const status = async (name: string) => (await on(['vm', 'status', name])).stdout;
    const web = await until(
      async () => ((await status('hweb')).includes('healthy since') ? status('hweb') : undefined),
      30_000,
      'hweb healthy',
    );
    expect(web).toMatch(/^health {6}healthy since \d\d:\d\d:\d\d$/m);
    const api = await until(
      async () => ((await status('hapi')).includes('unhealthy') ? status('hapi') : undefined),
      30_000,
      'hapi unhealthy',
    );
    expect(api).toMatch(
      new RegExp(`^health {6}unhealthy: http 127\\.0\\.0\\.1:${port}/health: 503$`, 'm'),
    );

    const json = JSON.parse((await on(['vm', 'status', 'hweb', '--json'])).stdout);
    expect(json.health).toMatchObject({
      generation: json.generation,
      healthy: true,
      check: `console "${LINE}"`,
    });
    expect(json.health.sinceMs).toBeGreaterThan(0);

    const list = (await on(['vm', 'list'])).stdout;
    expect(list).toMatch(/^NAME\s+VERSION\s+NODE\s+DESIRED\s+STATE\s+HEALTH\s+MEMORY/m);
    expect(list).toMatch(/^hapi\s+1\s+.*\s+running\s+unhealthy\s+256 MiB/m);
    expect(list).toMatch(/^hweb\s+1\s+.*\s+running\s+healthy\s+256 MiB/m);

    for (const name of ['hweb', 'hapi']) {
      const r = await on(['vm', 'rm', name]);
      expect(r.exitCode, r.stderr).toBe(0);
    }
  });
});
