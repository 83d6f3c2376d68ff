// The binary cache Nix users expect, on real node processes: tokens made with `pcr store token
// create` (replicated: made through one member, checked by another), `nix copy --to` node A with
// the push token in a real netrc file, `pcr store token list` counting its uses, `pcr store
// stats` and /metrics counting the uploads; node B started with `--cache-auth read` refuses Nix
// without a token and serves it with a read token (fetching the closure from A: a member hit), and
// `nix store verify` passes; a revoked token is refused at once.

import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, expect, it } from 'vitest';
import {
  closeClients,
  kill9,
  type NodeProc,
  pcr,
  request,
  secretFileOf,
  startNode,
  until,
} from '../test/procs.ts';
import { CLOSURE_EXPR, nixBuild, nixClosure } from '../test/store/nix_fixtures.ts';
import { describeWithTools, nixEnv } from '../test/tools.ts';
import { NODE_INFO_FILE } from './identity.ts';
import { formatPublicKey, formatSecretKey, generateSecretKey } from './store/keys.ts';

let base = '';
const procs: NodeProc[] = [];
const ci = generateSecretKey('ci-1');

beforeAll(async () => {
  base = await mkdtemp(join(tmpdir(), 'pcr-cache-upload-'));
});
afterAll(async () => {
  await closeClients();
  for (const p of procs) if (p.child.exitCode === null) await kill9(p).catch(() => {});
  await rm(base, { recursive: true, force: true });
});

describeWithTools(['nix', 'nix-store', 'xz'], 'nix copy --to a node, with tokens', () => {
  let a: NodeProc;
  let b: NodeProc;
  let root = '';
  let env: NodeJS.ProcessEnv = {};
  const cli = (p: NodeProc, args: string[]) =>
    pcr([...args, '--addr', p.addr, '--secret-file', secretFileOf(a)]);
  const cacheOf = async (p: NodeProc) =>
    (JSON.parse(await readFile(join(p.dataDir, NODE_INFO_FILE), 'utf8')) as { cache: string })
      .cache;
  const nix = (args: string[], netrc?: string, more = '') =>
    execa('nix', args, {
      env: {
        ...env,
        NIX_CONFIG: `${env.NIX_CONFIG}\n${netrc !== undefined ? `netrc-file = ${netrc}\n` : ''}${more}`,
      },
      reject: false,
      all: true,
    });
  async function netrcWith(name: string, secret: string): Promise<string> {
    const f = join(base, `netrc-${name}`);
    await writeFile(f, `machine 127.0.0.1 login pcr password ${secret}\n`);
    return f;
  }
  async function token(p: NodeProc, name: string, flags: string[]): Promise<string> {
    const r = await cli(p, ['store', 'token', 'create', '--name', name, ...flags, '--json']);
    expect(r.exitCode, r.stderr).toBe(0);
    return (JSON.parse(r.stdout) as { token: string }).token;
  }
  async function signedBuild(salt: string): Promise<string> {
    const path = await nixBuild(base, CLOSURE_EXPR, salt);
    await execa('nix', ['store', 'sign', '--key-file', join(base, 'ci.sk'), '-r', path], { env });
    return path;
  }

  beforeAll(async () => {
    env = { ...nixEnv(), XDG_CACHE_HOME: join(base, 'xdg') };
    await writeFile(join(base, 'ci.sk'), formatSecretKey(ci));
    root = await signedBuild(`cache-upload-${process.pid}-${Date.now()}`);
    const common = ['--store', 'local', '--trusted-key', formatPublicKey(ci.publicKey)];
    a = await startNode(base, 'a', common);
    procs.push(a);
    b = await startNode(base, 'b', [
      ...common,
      '--cache-auth',
      'read',
      '--seed',
      a.addr,
      '--secret-file',
      secretFileOf(a),
    ]);
    procs.push(b);
    await until(
      async () => {
        const r = await request(a, a, { op: 'members' }, 3000).catch(() => undefined);
        return r?.ok === true && (r.members as unknown[]).length === 2 ? true : undefined;
      },
      60_000,
      '2 members',
    );
  }, 180_000);

  it('a push token made through B uploads to A; uses, stats and /metrics count it', {
    timeout: 120_000,
  }, async () => {
    const push = await netrcWith('push', await token(b, 'ci', ['--push']));
    const closure = (await nixClosure(root)).sort();
    const up = await nix(['copy', '--to', await cacheOf(a), root], push);
    expect(up.exitCode, up.all).toBe(0);
    const stats = JSON.parse((await cli(a, ['store', 'stats', '--json'])).stdout);
    expect(stats).toMatchObject({ uploadsAccepted: closure.length, uploadsRefused: 0, paths: 4 });
    expect(stats.uploadBytesReceived).toBeGreaterThan(0);
    const list = await cli(a, ['store', 'token', 'list', '--json']);
    const tokens = JSON.parse(list.stdout).tokens as { name: string; uses: number }[];
    expect(tokens.find((t) => t.name === 'ci')?.uses).toBeGreaterThanOrEqual(2 * closure.length);
    expect(list.stdout).not.toMatch(/sha256|[0-9a-f]{64}/);
    const human = await cli(a, ['store', 'token', 'list']);
    expect(human.stdout).toMatch(/^ci\s+push\s/m);
    const metrics = await (await fetch(a.metrics)).text();
    expect(metrics).toContain(`pcr_cache_uploads_total{result="accepted"} ${closure.length}`);
    expect(metrics).toMatch(/pcr_cache_token_uses_total\{token="ci"\} \d+/);
  });

  it('B (--cache-auth read) refuses Nix without a token, serves it with one, from A', {
    timeout: 120_000,
  }, async () => {
    const cache = await cacheOf(b);
    const key = JSON.parse((await cli(b, ['store', 'stats', '--json'])).stdout).publicKey;
    const trusted = `trusted-public-keys = ${key}\n`;
    const none = await netrcWith('none', 'x');
    const denied = await nix(
      ['copy', '--from', cache, '--to', join(base, 'd0'), root],
      none,
      trusted,
    );
    // A refused read is a 400, which Nix reports (a 401 it would take for "absent", silently).
    expect(denied.exitCode).not.toBe(0);
    expect(denied.all).toContain('HTTP error 400');
    const refused = JSON.parse((await cli(b, ['store', 'stats', '--json'])).stdout);
    expect(refused.authRefused).toBeGreaterThanOrEqual(1);
    const reader = await netrcWith('read', await token(a, 'reader', ['--read']));
    const dest = join(base, 'd1');
    const got = await execa('nix', ['copy', '--from', cache, '--to', dest, root], {
      env: {
        ...env,
        XDG_CACHE_HOME: join(base, 'xdg-reader'),
        NIX_CONFIG: `${env.NIX_CONFIG}\nnetrc-file = ${reader}\n${trusted}`,
      },
      reject: false,
      all: true,
    });
    expect(got.exitCode, got.all).toBe(0);
    const verify = await nix(['store', 'verify', '--store', dest, '-r', root], reader, trusted);
    expect(verify.exitCode, verify.all).toBe(0);
    const stats = JSON.parse((await cli(b, ['store', 'stats', '--json'])).stdout);
    expect(stats.cacheMemberHits).toBeGreaterThanOrEqual(1);
    expect(stats.cacheHitRatio).toBeGreaterThan(0);
    expect(stats.cacheHitRatio).toBeLessThanOrEqual(1);
    const human = await cli(b, ['store', 'stats']);
    expect(human.stdout).toMatch(/^cacheMemberHits\s+[1-9]/m);
    const metrics = await (await fetch(b.metrics)).text();
    expect(metrics).toMatch(/pcr_cache_requests_total\{result="member"\} [1-9]/);
    expect(metrics).toMatch(/pcr_cache_auth_refused_total [1-9]/);
    // A read token does not upload.
    const other = await signedBuild(`cache-upload-read-${Date.now()}`);
    const up = await nix(['copy', '--to', await cacheOf(a), other], reader);
    expect(up.exitCode).not.toBe(0);
    expect(up.all).toContain('403');
  });

  it('a revoked token is refused at once by every member', { timeout: 120_000 }, async () => {
    const push = await netrcWith('push2', await token(a, 'ci2', ['--push']));
    const revoked = await cli(b, ['store', 'token', 'revoke', 'ci2']);
    expect(revoked.exitCode, revoked.stderr).toBe(0);
    const other = await signedBuild(`cache-upload-revoked-${Date.now()}`);
    // Revoked through B, committed: A applies it before it answers a read of the table.
    await until(
      async () => {
        const l = JSON.parse((await cli(a, ['store', 'token', 'list', '--json'])).stdout);
        return (l.tokens as { name: string }[]).some((t) => t.name === 'ci2') ? undefined : true;
      },
      30_000,
      'the revocation on A',
    );
    const up = await nix(['copy', '--to', await cacheOf(a), other], push);
    expect(up.exitCode).not.toBe(0);
    expect(up.all).toContain('unknown or was revoked');
    const again = await cli(a, ['store', 'token', 'revoke', 'ci2']);
    expect(again.exitCode).toBe(7);
  });

  it('pcr store gc frees what no VM needs: dry run, then --max-freed', {
    timeout: 120_000,
  }, async () => {
    const closure = await nixClosure(root);
    const dry = await cli(a, ['store', 'gc', '--dry-run', '--json']);
    expect(dry.exitCode, dry.stderr).toBe(0);
    const planned = JSON.parse(dry.stdout) as { paths: string[]; dryRun: boolean };
    expect(planned.dryRun).toBe(true);
    expect(planned.paths).toContain(root);
    expect(planned.paths.length).toBeGreaterThanOrEqual(closure.length);
    const bad = await cli(a, ['store', 'gc', '--max-freed', 'lots']);
    expect(bad.exitCode).toBe(11);
    const one = await cli(a, ['store', 'gc', '--max-freed', '1']);
    expect(one.exitCode, one.stderr).toBe(0);
    expect(one.stdout).toMatch(/freed 1 paths/);
    const info = await cli(a, ['store', 'info', root, '--json']);
    expect(JSON.parse(info.stdout).here).toBe(false);
  });
});
