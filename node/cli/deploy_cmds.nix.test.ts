// `pcr deploy` with the real Nix, through bin/pcr and against a real node: a dry run and each bad
// input as the user sees it (exit code, code, Nix's text), and the push of a built closure into a
// node's own store over the CLI's connection, checked at the moment of the submit (recorded here;
// the rollouts that follow a real submit are node/deploy_cluster.test.ts).
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, expect, it } from 'vitest';
import { WEB, writeTestFlake } from '../../test/deploy/flakes.ts';
import { closeClients, type NodeProc, PCR, startNode, stop } from '../../test/procs.ts';
import { describeWithTools, nixEnv } from '../../test/tools.ts';
import { type DeploySubmit, deployFlake } from '../deploy/flake.ts';
import { localClosure, nixRunner } from '../deploy/nix_cli.ts';
import { connect, EXIT } from './client.ts';
import { pushPath } from './store_cmds.ts';

const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

async function flake(t: Parameters<typeof writeTestFlake>[0]) {
  const f = await writeTestFlake(t);
  dirs.push(f.dir);
  return f;
}

/** bin/pcr with Nix configured for this machine (offline, root, no build users). */
async function pcr(args: string[]) {
  const r = await execa(PCR, args, { env: nixEnv(), reject: false, stdin: 'ignore' });
  return { exitCode: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr) };
}

describeWithTools(['nix', 'nix-store', 'git'], 'pcr deploy through bin/pcr', () => {
  it('--dry-run evaluates and builds, prints the request, exits 0', {
    timeout: 120_000,
  }, async () => {
    const { dir, salt } = await flake({ deployments: WEB, git: true });
    const r = await pcr(['deploy', `${dir}#web`, '--dry-run', '--json']);
    expect(r.exitCode, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out).toMatchObject({ op: 'deploy.submit', name: 'web', imported: 0, paths: 2 });
    expect(out.spec.runner).toContain(`microvm-run-${salt}`);
    expect(out.source.commit).toMatch(/^[0-9a-f]{40}$/);
    expect(out.answer).toBeUndefined();
  });

  it("each bad input: its exit code and code, with Nix's text", { timeout: 120_000 }, async () => {
    const missing = await flake({ deployments: WEB });
    const broken = await flake({ deployments: 'web = throw "web is broken";' });
    const invalid = await flake({
      deployments: 'web = { spec = { version = 1; runner = runner; vcpus = 0; }; };',
    });
    const failing = await flake({
      deployments: WEB,
      runnerScript: 'echo no runner today >&2; exit 1',
    });
    const cases: [string, number, string, RegExp][] = [
      [
        `${missing.dir}#api`,
        EXIT.notFound,
        'NOT_FOUND',
        /has no output procurator\.deployments\.api \(it has: web\)/,
      ],
      [`${broken.dir}#web`, EXIT.failed, 'EVAL_FAILED', /web is broken/],
      [`${invalid.dir}#web`, EXIT.usage, 'SPEC_INVALID', /vcpus/],
      [`${failing.dir}#web`, EXIT.failed, 'BUILD_FAILED', /no runner today/],
    ];
    for (const [ref, exit, code, why] of cases) {
      const r = await pcr(['deploy', ref, '--dry-run', '--json']);
      expect(r.exitCode, `${ref}: ${r.stdout}`).toBe(exit);
      const e = JSON.parse(r.stdout).error;
      expect(e.code, ref).toBe(code);
      expect(e.message, ref).toMatch(why);
    }
  });
});

describeWithTools(['nix', 'nix-store', 'git'], 'pcr deploy against a real node', () => {
  let base = '';
  let node: NodeProc | undefined;
  afterAll(async () => {
    await closeClients();
    if (node !== undefined && node.child.exitCode === null) await stop(node);
    if (base !== '') await rm(base, { recursive: true, force: true });
  });

  it("pushes the built closure into the node's own store before the submit", {
    timeout: 180_000,
  }, async () => {
    const { dir, salt } = await flake({ deployments: WEB });
    base = await mkdtemp(join(tmpdir(), 'pcr-deploy-'));
    // A node-local store: the push has to copy the closure out of the machine's Nix store.
    node = await startNode(base, 'n', ['--store', 'local', '--cache', 'off']);
    const c = await connect({ dataDir: node.dataDir, timeout: '120' });
    try {
      const order: string[] = [];
      const submitted: DeploySubmit[] = [];
      const nix = nixRunner(nixEnv());
      const out = await deployFlake(`${dir}#web`, {
        nix,
        push: async (path) => {
          order.push('push');
          return { imported: Number((await pushPath(c, path)).imported) };
        },
        submit: async (req) => {
          // By now the member holds every path of the runner's closure.
          for (const i of await localClosure(nix, [String(req.spec.runner)])) {
            const r = await c.request({ op: 'store.info', path: i.path });
            order.push(`held ${i.path.slice(44)}: ${r.here}`);
          }
          order.push('submit');
          submitted.push(req);
          return { ok: true };
        },
      });
      expect(order[0]).toBe('push');
      expect(order.at(-1)).toBe('submit');
      expect(order.slice(1, -1).sort()).toEqual([
        `held microvm-run-${salt}: true`,
        `held pcr-test-lib-1.0-${salt}: true`,
      ]);
      expect(out.imported).toBe(2);
      expect(String(submitted[0]?.spec.runner)).toContain(`microvm-run-${salt}`);
    } finally {
      await c.close();
    }
  });
});
