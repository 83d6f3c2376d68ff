// The spec helper (nix/lib.nix) on a microvm.nix guest made of stand-ins (nix/tests/eval-spec.nix:
// microvm.nix's options declared with its defaults, a real runner store path), evaluated and built
// with the real Nix CLI; the JSON it produces is checked with the product's own validator and
// node-side check, as `pcr vm run` and the node would.
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, expect, it } from 'vitest';
import { VM_RUN_DIR } from '../node/daemon.ts';
import { formatSpecErrors, validateVmSpec } from '../node/state/vm_spec.ts';
import { checkVmSpecOnNode } from '../node/vmm/spec.ts';
import {
  closeClients,
  type NodeProc,
  pcr,
  request,
  secretFileOf,
  startNode,
  stop,
  until,
} from '../test/procs.ts';
import { describeWithTools, NIXPKGS_LIB_TOOL, nixEnv } from '../test/tools.ts';
import { sweep } from '../test/vmm/helpers.ts';

const exec = promisify(execFile);
const file = join(dirname(fileURLToPath(import.meta.url)), 'tests', 'eval-spec.nix');

function args(guest: Record<string, unknown>, withGuestModule = true): string[] {
  return [
    file,
    '--arg',
    'libPath',
    process.env.PCR_NIXPKGS_LIB!,
    '--argstr',
    'guestJson',
    JSON.stringify(guest),
    '--arg',
    'withGuestModule',
    String(withGuestModule),
  ];
}

async function evalAttr(attr: string, guest: Record<string, unknown>, withGuestModule = true) {
  const r = await exec(
    'nix-instantiate',
    ['--eval', '--strict', '--json', '-A', attr, ...args(guest, withGuestModule)],
    { env: nixEnv() },
  );
  return JSON.parse(r.stdout) as unknown;
}

/** Builds the spec file (and so the stand-in runner) and returns its path. */
async function buildSpecFile(guest: Record<string, unknown>): Promise<string> {
  const r = await exec('nix-build', ['--no-out-link', '-A', 'file', ...args(guest)], {
    env: nixEnv(),
  });
  return r.stdout.trim();
}

const web = { networking: { hostName: 'web' }, microvm: { vcpu: 2, mem: 1024 } };

describeWithTools(
  ['nix-instantiate', 'nix-build', NIXPKGS_LIB_TOOL],
  'vmSpecOf / vmSpecFile',
  () => {
    it("takes the runner, vcpus and memory from the guest's microvm options", async () => {
      const spec = await evalAttr('spec', web);
      const runner = await evalAttr('runner', web);
      expect(spec).toEqual({ version: 1, name: 'web', runner, vcpus: 2, memoryMiB: 1024 });
      const r = validateVmSpec(spec);
      expect(r.ok ? [] : formatSpecErrors(r.errors)).toEqual([]);
    });

    it("uses microvm.nix's defaults (1 vcpu, 512 MiB) and the host name without the guest module", async () => {
      const spec = await evalAttr('spec', { networking: { hostName: 'db' } }, false);
      expect(spec).toMatchObject({ name: 'db', vcpus: 1, memoryMiB: 512 });
      expect(validateVmSpec(spec).ok).toBe(true);
    });

    it('builds a file that pcr vm run accepts, whose closure holds a runnable runner', async () => {
      const path = await buildSpecFile(web);
      expect(path).toMatch(/^\/nix\/store\/[0-9a-z]{32}-web\.json$/);
      const spec = JSON.parse(await readFile(path, 'utf8'));
      const r = validateVmSpec(spec);
      if (!r.ok) throw new Error(formatSpecErrors(r.errors));
      expect(await checkVmSpecOnNode(r.spec)).toEqual([]);
      const closure = await exec('nix-store', ['-qR', path], { env: nixEnv() });
      expect(closure.stdout.split('\n')).toContain(spec.runner);
    });

    it('vmSpecFiles makes one spec file per guest, named after the VM', async () => {
      expect(await evalAttr('files.web.name', web)).toBe('web.json');
      const file = await evalAttr('file.outPath', web);
      expect(await evalAttr('files.web.outPath', web)).toBe(file);
    });

    it('takes the name and restart policy from the guest module', async () => {
      const spec = await evalAttr('spec', {
        ...web,
        procurator: { vm: { name: 'web-2', restart: { policy: 'on-failure', maxAttempts: 3 } } },
      });
      expect(spec).toMatchObject({
        name: 'web-2',
        restart: { policy: 'on-failure', maxAttempts: 3 },
      });
      const r = validateVmSpec(spec);
      expect(r.ok && r.spec.restart).toMatchObject({ policy: 'on-failure', maxAttempts: 3 });
    });

    it('takes the health checks from the guest module; none when it gives none', async () => {
      const health = [
        { console: 'web ready', graceMs: 10_000 },
        { http: { host: '10.0.0.2', port: 80, path: '/health' }, intervalMs: 1000 },
      ];
      const spec = await evalAttr('spec', { ...web, procurator: { vm: { health } } });
      expect(spec).toMatchObject({ health });
      const r = validateVmSpec(spec);
      if (!r.ok) throw new Error(formatSpecErrors(r.errors));
      expect(r.spec.health).toEqual([
        { console: 'web ready', graceMs: 10_000 },
        {
          http: { host: '10.0.0.2', port: 80, path: '/health' },
          intervalMs: 1000,
          timeoutMs: 1000,
          graceMs: 30_000,
        },
      ]);
      expect(await evalAttr('spec', web)).not.toHaveProperty('health');
    });

    it('passes a bad check on to the validator, which names it', async () => {
      const spec = await evalAttr('spec', {
        ...web,
        procurator: { vm: { health: [{ http: { host: '10.0.0.2', port: 0 } }] } },
      });
      const r = validateVmSpec(spec);
      expect(r.ok ? '' : formatSpecErrors(r.errors)).toBe(
        'health[0].http.port: 0 must be an integer from 1 to 65535',
      );
    });

    it('refuses a name pcr would refuse: at evaluation with the guest module, by the validator without', async () => {
      const guest = { networking: { hostName: 'Web_1' } };
      await expect(evalAttr('spec', guest)).rejects.toThrow(/procurator\.vm\.name/);
      const spec = await evalAttr('spec', guest, false);
      const r = validateVmSpec(spec);
      expect(r.ok ? [] : r.errors.map((e) => e.path)).toEqual(['name']);
    });

    it('passes a memory size beyond the bound on to the validator, which refuses it', async () => {
      const spec = await evalAttr('spec', { ...web, microvm: { mem: 1 << 20 } });
      const r = validateVmSpec(spec);
      expect(r.ok ? '' : formatSpecErrors(r.errors)).toContain('VM_MEMORY_MIB_MAX');
    });
  },
);

describeWithTools(
  ['nix-instantiate', 'nix-build', 'nix-store', NIXPKGS_LIB_TOOL],
  'a spec file from the helper, through pcr vm run on a real node',
  () => {
    let base = '';
    let node: NodeProc | undefined;
    afterAll(async () => {
      await closeClients();
      if (node !== undefined) {
        if (node.child.exitCode === null) await stop(node);
        await sweep(join(node.dataDir, VM_RUN_DIR));
      }
      if (base !== '') await rm(base, { recursive: true, force: true });
    });

    it('pcr vm run takes the built file and the node runs its runner', async () => {
      const file = await buildSpecFile(web);
      // Short: VMM sockets live under the data dir (unix socket paths are at most 107 bytes).
      base = await mkdtemp('/tmp/pcr-nixspec-');
      // The node's store is the machine's Nix store, where nix-build put the runner.
      const n = await startNode(base, 'n', ['--store', 'nix', '--cache', 'off']);
      node = n;
      // A VM is placed on a member of the table: the node's own record is committed once it leads
      // (a moment after node.json appears); `pcr vm run` before that is NOT_FOUND ("no member").
      await until(
        async () => {
          const r = await request(n, n, { op: 'members' }, 3000).catch(() => undefined);
          if (r?.ok !== true) return undefined;
          const me = (r.members as { id: string; addrs: string[] }[]).find((m) => m.id === n.id);
          return me !== undefined && me.addrs.length > 0 ? true : undefined;
        },
        30_000,
        'the node to record itself in the member table',
      );
      const run = await pcr([
        'vm',
        'run',
        file,
        '--on',
        n.id,
        '--json',
        '--addr',
        n.addr,
        '--secret-file',
        secretFileOf(n),
      ]);
      expect(run.exitCode, run.stderr).toBe(0);
      expect(JSON.parse(run.stdout)).toMatchObject({ name: 'web', state: 'running', node: n.id });
      // The rest in-process (the CLI's own requests), sparing two more CLI starts.
      await until(
        async () => {
          const r = await request(n, n, { op: 'vm.logs', name: 'web' });
          return r.ok && String(r.data).includes('stand-in runner up');
        },
        30_000,
        'the runner line in the console of web',
        200,
      );
      const rm = await request(n, n, { op: 'vm.rm', name: 'web' });
      expect(rm.ok, JSON.stringify(rm)).toBe(true);
    });
  },
);
