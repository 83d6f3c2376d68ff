// `pcr node start`'s argument checks and config file, in process.

import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { EXIT } from './client.ts';
import { CONFIG_BYTES_MAX, checkSeed, closest, readConfig, SEED_FORM } from './node_args.ts';

const ID = '12D3KooWLjB3nhgf1kbk1mFPRjCHPGNyjk1jyZ2FacBXG8pJdXSu';
const dir = await mkdtemp(join(tmpdir(), 'pcr-args-'));
afterAll(() => rm(dir, { recursive: true, force: true }));

describe('checkSeed', () => {
  it('accepts a TCP multiaddr ending with a peer ID', () => {
    expect(checkSeed(`/ip4/10.0.0.1/tcp/4001/p2p/${ID}`, undefined)).toBe(
      `/ip4/10.0.0.1/tcp/4001/p2p/${ID}`,
    );
    expect(checkSeed(`/dns4/node1.example/tcp/4001/p2p/${ID}`, 'other')).toBeTruthy();
  });
  it.each([
    [`/ip4/10.0.0.1/tcp/4001/p2p/${ID}'`, /not a peer ID/],
    ['/ip4/10.0.0.1/tcp/4001', /does not end with \/p2p/],
    [`/ip4/10.0.0.1/foo/4001/p2p/${ID}`, /not a multiaddr.*foo/],
    ['10.0.0.1:4001', /not a multiaddr/],
    [`/ip4/10.0.0.1/udp/4001/p2p/${ID}`, /no \/tcp/],
    [`/ip4/300.0.0.1/tcp/4001/p2p/${ID}`, /not a multiaddr/],
  ])('refuses %s with the right form and exit code 11', (seed, why) => {
    let err: { message: string; exitCode: number; hint?: string } | undefined;
    try {
      checkSeed(seed, undefined);
    } catch (e) {
      err = e as typeof err;
    }
    expect(err?.message).toMatch(why);
    expect(err?.exitCode).toBe(EXIT.badArgument);
    expect(err?.hint).toContain(SEED_FORM);
  });
  it('refuses the node itself', () => {
    expect(() => checkSeed(`/ip4/10.0.0.1/tcp/4001/p2p/${ID}`, ID)).toThrow(/this node itself/);
  });
});

describe('config file', () => {
  it('gives each flag its value as the flag would take it', async () => {
    const file = join(dir, 'ok.json');
    await writeFile(
      file,
      JSON.stringify({ name: 'n1', maxVoters: 3, seed: `/ip4/10.0.0.1/tcp/4001/p2p/${ID}` }),
    );
    const c = await readConfig(file);
    expect(c.get('name')).toBe('n1');
    expect(c.get('maxVoters')).toBe('3');
    expect(c.get('seed')).toEqual([`/ip4/10.0.0.1/tcp/4001/p2p/${ID}`]);
  });
  it('refuses an unknown key with the closest one, and wrong types', async () => {
    const file = join(dir, 'bad.json');
    await writeFile(file, JSON.stringify({ dataDri: '/x' }));
    await expect(readConfig(file)).rejects.toMatchObject({
      exitCode: EXIT.badArgument,
      hint: 'did you mean "dataDir"?',
    });
    await writeFile(file, JSON.stringify({ listen: [1] }));
    await expect(readConfig(file)).rejects.toThrow(/listen is a list of strings/);
    await writeFile(file, '[1]');
    await expect(readConfig(file)).rejects.toThrow(/not a JSON object/);
    await writeFile(file, '{');
    await expect(readConfig(file)).rejects.toThrow(/not JSON/);
    await expect(readConfig(join(dir, 'missing.json'))).rejects.toThrow(/cannot be read/);
  });
  it(`refuses a file larger than CONFIG_BYTES_MAX (${CONFIG_BYTES_MAX} bytes)`, async () => {
    const file = join(dir, 'big.json');
    await writeFile(file, `{"name":"${'x'.repeat(CONFIG_BYTES_MAX)}"}`);
    await expect(readConfig(file)).rejects.toThrow(/CONFIG_BYTES_MAX/);
  });
  it('suggests the closest name', () => {
    expect(closest('lsiten', ['listen', 'seed'])).toBe('listen');
    expect(closest('zzzzzzzz', ['listen', 'seed'])).toBeUndefined();
  });
});

describe('the fencing check of pcr node start', () => {
  it('uses the daemon’s election timeout', async () => {
    const { ELECTION_TIMEOUT_MS } = await import('./node_cmd.ts');
    const { DAEMON_DEFAULTS } = await import('../daemon.ts');
    expect(ELECTION_TIMEOUT_MS).toBe(DAEMON_DEFAULTS.tickMs * DAEMON_DEFAULTS.electionTicks);
  });
});
