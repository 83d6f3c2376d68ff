// `pcr deploy REF`'s client side with the real Nix on test flakes that need no nixpkgs
// (test/deploy/flakes.ts): evaluation, validation, the source from `nix flake metadata`, the build
// and the closure, then the order of push and submit. The member is not here: push and submit are
// recorded (node/cli/deploy_cmds.nix.test.ts runs the real push against a real node); each bad
// input stops before anything is built, pushed or submitted, as the case says.
import { rm } from 'node:fs/promises';
import { execa } from 'execa';
import { afterAll, describe, expect, it } from 'vitest';
import { WEB, writeTestFlake } from '../../test/deploy/flakes.ts';
import { describeWithTools, nixEnv } from '../../test/tools.ts';
import { DeployError, type DeploySubmit, deployFlake } from './flake.ts';
import { nixRunner } from './nix_cli.ts';

const nix = nixRunner(nixEnv());
const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

async function flake(t: Parameters<typeof writeTestFlake>[0]) {
  const f = await writeTestFlake(t);
  dirs.push(f.dir);
  return f;
}

/** push and submit that record what they were asked, in order. */
function recorder(o: { pushFails?: boolean } = {}) {
  const calls: string[] = [];
  const submitted: DeploySubmit[] = [];
  return {
    calls,
    submitted,
    push: async (path: string) => {
      calls.push(`push ${path}`);
      if (o.pushFails === true) throw new Error('UNAVAILABLE: the store is not started yet');
      return { imported: 2 };
    },
    submit: async (req: DeploySubmit) => {
      calls.push(`submit ${req.name}`);
      submitted.push(req);
      return { ok: true, noop: false, version: 1 };
    },
  };
}

async function valid(path: string): Promise<boolean> {
  const r = await execa('nix-store', ['--check-validity', path], { env: nixEnv(), reject: false });
  return r.exitCode === 0;
}

/** The error deployFlake throws, checked to be a DeployError. */
async function failure(p: Promise<unknown>): Promise<DeployError> {
  const e = await p.then(
    () => undefined,
    (x: unknown) => x,
  );
  expect(e).toBeInstanceOf(DeployError);
  return e as DeployError;
}

describeWithTools(['nix', 'nix-store', 'git'], 'pcr deploy REF with the real Nix', () => {
  it('evaluates, builds, pushes the closure, then submits with the git source', {
    timeout: 120_000,
  }, async () => {
    const { dir, salt } = await flake({ deployments: WEB, git: true });
    const rev = (await execa('git', ['rev-parse', 'HEAD'], { cwd: dir })).stdout.trim();
    const r = recorder();
    const out = await deployFlake(`${dir}#web`, { nix, ...r });
    const runner = out.request.spec.runner as string;
    expect(runner).toMatch(new RegExp(`^/nix/store/[0-9a-z]{32}-microvm-run-${salt}$`));
    expect(r.calls).toEqual([`push ${runner}`, 'submit web']);
    expect(r.submitted[0]).toEqual({
      op: 'deploy.submit',
      name: 'web',
      spec: { version: 1, name: 'web', runner, memoryMiB: 64, count: 2 },
      update: { maxParallel: 1 },
      source: {
        flake: expect.stringContaining(`rev=${rev}`),
        rev,
        commit: rev,
        narHash: expect.stringMatching(/^sha256-/),
      },
    });
    // The closure: the runner and the library it refers to, both built here.
    const names = out.closure.map((i) => i.path.slice(44)).sort();
    expect(names).toEqual([`microvm-run-${salt}`, `pcr-test-lib-1.0-${salt}`]);
    expect(await valid(runner)).toBe(true);
    expect(out).toMatchObject({ imported: 2, answer: { ok: true, version: 1 } });
  });

  it('takes the full attribute path alike; a dry run builds but pushes and submits nothing', {
    timeout: 120_000,
  }, async () => {
    const { dir } = await flake({ deployments: WEB });
    const r = recorder();
    const out = await deployFlake(`path:${dir}#procurator.deployments.web`, {
      nix,
      ...r,
      dryRun: true,
    });
    expect(r.calls).toEqual([]);
    expect(out.answer).toBeUndefined();
    expect(await valid(out.request.spec.runner as string)).toBe(true);
    // A path flake: no rev, no commit.
    expect(Object.keys(out.request.source).sort()).toEqual(['flake', 'narHash']);
  });

  describe('bad input: a clear error, nothing submitted', () => {
    it('a flake without the output names the deployments it has', async () => {
      const { dir } = await flake({ deployments: WEB });
      const r = recorder();
      const e = await failure(deployFlake(`${dir}#api`, { nix, ...r }));
      expect(e.kind).toBe('missing');
      expect(e.message).toContain('has no output procurator.deployments.api (it has: web)');
      expect(r.calls).toEqual([]);
    });

    it('a flake without procurator.deployments at all says so', async () => {
      const { dir } = await flake({ outputs: '{ packages = { }; }' });
      const e = await failure(deployFlake(`${dir}#web`, { nix, ...recorder() }));
      expect(e.kind).toBe('missing');
      expect(e.message).toContain('it has no procurator.deployments');
    });

    it("an evaluation error carries Nix's own text", async () => {
      const { dir } = await flake({ deployments: 'web = throw "the web deployment is broken";' });
      const r = recorder();
      const e = await failure(deployFlake(`${dir}#web`, { nix, ...r }));
      expect(e.kind).toBe('eval');
      expect(e.nixText).toContain('the web deployment is broken');
      expect(r.calls).toEqual([]);
    });

    it('an invalid spec is refused by the validator before anything is built', async () => {
      const { dir, salt } = await flake({
        deployments: 'web = { spec = { version = 1; runner = runner; memoryMiB = 1048576; }; };',
      });
      const e = await failure(deployFlake(`${dir}#web`, { nix, ...recorder() }));
      expect(e.kind).toBe('invalid');
      expect(e.message).toContain('VM_MEMORY_MIB_MAX');
      const runner = (
        await execa('nix', ['eval', '--raw', `${dir}#procurator.deployments.web.spec.runner`], {
          env: nixEnv(),
        })
      ).stdout;
      expect(runner).toContain(salt);
      expect(await valid(runner)).toBe(false);
    });

    it('a spec named after another deployment, a spec that is not one, an update that is not a set', async () => {
      const cases: [string, RegExp][] = [
        [
          'web = { spec = { version = 1; name = "db"; runner = runner; }; };',
          /spec\.name "db" differs/,
        ],
        ['web = { spec = runner.outPath; };', /spec: expected a VM spec/],
        [
          'web = { spec = { version = 1; runner = runner; }; update = 3; };',
          /update: must be an object/,
        ],
        [
          'web = { spec = { version = 1; runner = runner; }; health = [ ]; };',
          /unknown attribute health/,
        ],
      ];
      for (const [deployments, why] of cases) {
        const { dir } = await flake({ deployments });
        const e = await failure(deployFlake(`${dir}#web`, { nix, ...recorder() }));
        expect(e.kind, deployments).toBe('invalid');
        expect(e.message, deployments).toMatch(why);
      }
    });

    it("the member's refusal of the check stops the deploy before the closure is pushed", {
      timeout: 120_000,
    }, async () => {
      const { dir } = await flake({ deployments: WEB });
      const r = recorder();
      const refusal = new Error('UNPLACEABLE: no node fits (label.zone = mars: 3 nodes removed)');
      const e = await deployFlake(`${dir}#web`, {
        nix,
        ...r,
        check: async (req) => {
          r.calls.push(`check ${req.name}`);
          throw refusal;
        },
      }).catch((x: unknown) => x);
      expect(e).toBe(refusal);
      expect(r.calls).toEqual(['check web']);
      // Accepted, it runs first, then the push and the submit.
      const ok = recorder();
      await deployFlake(`${dir}#web`, {
        nix,
        ...ok,
        check: async (req) => {
          ok.calls.push(`check ${req.name}`);
        },
      });
      expect(ok.calls[0]).toBe('check web');
      expect(ok.calls.at(-1)).toBe('submit web');
      expect(ok.calls.filter((c) => c.startsWith('push ')).length).toBeGreaterThan(0);
    });

    it("a build failure carries Nix's text and pushes nothing", { timeout: 120_000 }, async () => {
      const { dir } = await flake({
        deployments: WEB,
        runnerScript: 'echo the runner build exploded >&2; exit 3',
      });
      const r = recorder();
      const e = await failure(deployFlake(`${dir}#web`, { nix, ...r }));
      expect(e.kind).toBe('build');
      expect(e.nixText).toContain('the runner build exploded');
      expect(r.calls).toEqual([]);
    });

    it('a runner path the flake does not build is a build error', async () => {
      const { dir } = await flake({
        deployments: `web = { spec = { version = 1; runner = "/nix/store/${'0'.repeat(32)}-not-built"; }; };`,
      });
      const e = await failure(deployFlake(`${dir}#web`, { nix, ...recorder() }));
      expect(e.kind).toBe('build');
      expect(e.message).toContain('not in the local Nix store');
    });

    it('a push failure submits nothing', { timeout: 120_000 }, async () => {
      const { dir } = await flake({ deployments: WEB });
      const r = recorder({ pushFails: true });
      const e = await failure(deployFlake(`${dir}#web`, { nix, ...r }));
      expect(e.kind).toBe('push');
      expect(e.message).toContain('the store is not started yet');
      expect(r.calls).toHaveLength(1);
      expect(r.submitted).toEqual([]);
    });
  });
});
