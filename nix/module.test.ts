// The NixOS module (nix/module.nix) evaluated for real: nixpkgs' module system (lib.evalModules
// from $PCR_NIXPKGS_LIB) with the real `nix-instantiate`, against typed declarations of the few
// NixOS options it sets (nix/tests/nixos-options.nix) and stand-in packages (nixpkgs cannot be
// fetched here). Asserts on the unit, its credentials, the firewall, and the refused combinations.
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { expect, it } from 'vitest';
import { describeWithTools, NIXPKGS_LIB_TOOL, nixEnv } from '../test/tools.ts';

const exec = promisify(execFile);
const here = dirname(fileURLToPath(import.meta.url));

interface Evaluated {
  failedAssertions: string[];
  unit: null | {
    serviceConfig: Record<string, string | number | boolean | string[]>;
    wantedBy: string[];
    after: string[];
    environment: Record<string, string>;
    path: string[];
  };
  tmpfiles: string[];
  firewallTcpPorts: number[];
  systemPackages: { name: string; text: string | null }[];
  nixSettings: Record<string, string[]>;
  stubs: {
    procurator: string;
    nix: string;
    iproute2: string;
    xz: string;
    zstd: string;
    coreutils: string;
  };
}

/** Evaluates the module with `services.procurator = settings`; rejects with Nix's error text. */
async function evalModule(settings: Record<string, unknown>): Promise<Evaluated> {
  const r = await exec(
    'nix-instantiate',
    [
      '--eval',
      '--strict',
      '--json',
      join(here, 'tests', 'eval-module.nix'),
      '--arg',
      'libPath',
      process.env.PCR_NIXPKGS_LIB!,
      '--argstr',
      'settingsJson',
      JSON.stringify(settings),
    ],
    { env: nixEnv() },
  );
  return JSON.parse(r.stdout) as Evaluated;
}

async function evalError(settings: Record<string, unknown>): Promise<string> {
  try {
    await evalModule(settings);
  } catch (e) {
    return (e as { stderr: string }).stderr;
  }
  throw new Error(`evaluation succeeded for ${JSON.stringify(settings)}`);
}

/**
 * The [Service] section as NixOS writes it (a list is one line per value, booleans as true/false),
 * with the store paths of the stand-in packages replaced by /bin/echo so that systemd finds an
 * executable.
 */
function renderService(r: Evaluated): string {
  const lines = ['[Unit]', 'Description=procurator (rendered by module.test.ts)', '[Service]'];
  for (const [key, value] of Object.entries(r.unit!.serviceConfig)) {
    for (const v of Array.isArray(value) ? value : [value]) {
      const text = String(v).replace(/\/nix\/store\/[0-9a-z]{32}-[^/ ]+\/bin\/\S+/g, '/bin/echo');
      lines.push(`${key}=${text}`);
    }
  }
  return `${lines.join('\n')}\n`;
}

const SEED = '/ip4/10.0.0.1/tcp/4001/p2p/12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo';

describeWithTools(
  ['nix-instantiate', 'systemd-analyze', NIXPKGS_LIB_TOOL],
  'services.procurator',
  () => {
    it('sets nothing when disabled', async () => {
      const r = await evalModule({});
      expect(r.unit).toBeNull();
      expect(r.systemPackages).toEqual([]);
      expect(r.firewallTcpPorts).toEqual([]);
      expect(r.failedAssertions).toEqual([]);
    });

    it('runs pcr node start from the package, restarting on failure, in its StateDirectory', async () => {
      const r = await evalModule({ enable: true });
      const s = r.unit!.serviceConfig;
      expect(s.ExecStart).toBe(
        `${r.stubs.procurator}/bin/pcr node start --data-dir /var/lib/procurator ` +
          '--listen /ip4/0.0.0.0/tcp/4001 --max-voters 5 --store nix --cache 127.0.0.1:4002 ' +
          '--metrics 127.0.0.1:9464 --log-level info',
      );
      expect(s.Restart).toBe('on-failure');
      expect(s.StateDirectory).toBe('procurator');
      expect(s.StateDirectoryMode).toBe('0700');
      expect(s.LoadCredential).toEqual([]);
      expect(r.unit!.wantedBy).toEqual(['multi-user.target']);
      expect(r.unit!.path).toEqual([r.stubs.nix, r.stubs.iproute2, r.stubs.xz, r.stubs.zstd]);
      expect(r.unit!.environment).toEqual({ NIX_REMOTE: 'daemon', HOME: '/var/lib/procurator' });
      expect(r.tmpfiles).toEqual([]);
      expect(r.failedAssertions).toEqual([]);
    });

    it('keeps VMs across daemon restarts and opens only the devices VMMs need', async () => {
      const s = (await evalModule({ enable: true })).unit!.serviceConfig;
      expect(s.KillMode).toBe('process');
      expect(s.DevicePolicy).toBe('closed');
      expect(s.DeviceAllow).toEqual([
        '/dev/kvm rw',
        '/dev/net/tun rw',
        '/dev/vhost-net rw',
        '/dev/vhost-vsock rw',
      ]);
      expect(s.ProtectSystem).toBe('strict');
      expect(s.ReadWritePaths).toEqual(['/var/lib/procurator']);
      expect(s.NoNewPrivileges).toBe(true);
    });

    it('passes the cluster secret as a systemd credential, never its path on the command line', async () => {
      const r = await evalModule({
        enable: true,
        seeds: [SEED],
        secretFile: '/run/keys/pcr.secret',
      });
      const s = r.unit!.serviceConfig;
      expect(s.LoadCredential).toEqual(['cluster.secret:/run/keys/pcr.secret']);
      expect(s.ExecStart).toContain(`--seed ${SEED} `);
      expect(s.ExecStart).toMatch(/ --secret-file %d\/cluster\.secret$/);
      expect(s.ExecStart).not.toContain('/run/keys');
      expect(r.failedAssertions).toEqual([]);
    });

    it('passes labels, reserves and the lifecycle bounds as start flags; refuses a bad label', async () => {
      const placed = await evalModule({
        enable: true,
        labels: { zone: 'a', disk: 'ssd' },
        reserve: { cpus: 1, memoryMiB: 512 },
        nodeDownAfter: '20s',
        fenceAfter: '5s',
      });
      const start = placed.unit!.serviceConfig.ExecStart;
      expect(start).toContain(" --label 'disk=ssd' --label 'zone=a' ");
      expect(start).toContain(' --reserve-cpus 1 --reserve-memory-mib 512 ');
      expect(start).toContain(' --node-down-after 20s --fence-after 5s ');
      const plain = (await evalModule({ enable: true })).unit!.serviceConfig.ExecStart;
      expect(plain).not.toMatch(/--label|--reserve|--node-down-after|--fence-after/);
      expect(await evalError({ enable: true, labels: { 'Bad Key': 'x' } })).toContain(
        'services.procurator.labels',
      );
    });

    it("passes Raft's heartbeat interval and election timeout, and refuses what the daemon would", async () => {
      const r = await evalModule({ enable: true, heartbeatInterval: 200, electionTimeout: 2000 });
      expect(r.failedAssertions).toEqual([]);
      expect(r.unit!.serviceConfig.ExecStart).toContain(
        ' --heartbeat-interval 200 --election-timeout 2000 ',
      );
      const plain = (await evalModule({ enable: true })).unit!.serviceConfig.ExecStart;
      expect(plain).not.toMatch(/--heartbeat-interval|--election-timeout/);
      for (const settings of [
        { heartbeatInterval: 120 },
        { heartbeatInterval: 0 },
        { electionTimeout: 50_050 },
      ]) {
        expect(await evalError({ enable: true, ...settings })).toContain(
          `services.procurator.${Object.keys(settings)[0]}`,
        );
      }
      // Under 2.5 heartbeats, with the other value given or the daemon's default.
      expect((await evalModule({ enable: true, electionTimeout: 950 })).failedAssertions).toEqual([
        expect.stringContaining(
          'electionTimeout (950 ms) must be at least 2.5 x heartbeatInterval (400 ms)',
        ),
      ]);
      expect(
        (await evalModule({ enable: true, heartbeatInterval: 100, electionTimeout: 250 }))
          .failedAssertions,
      ).toEqual([]);
    });

    it('passes the node name, and none when it is left to the host name', async () => {
      const named = await evalModule({ enable: true, name: 'host1' });
      expect(named.unit!.serviceConfig.ExecStart).toContain(' --name host1 ');
      const unnamed = await evalModule({ enable: true });
      expect(unnamed.unit!.serviceConfig.ExecStart).not.toContain('--name');
    });

    it('systemd itself reads every directive of the unit without a complaint', async () => {
      const r = await evalModule({
        enable: true,
        secretFile: '/run/keys/pcr.secret',
        cache: { secretKeyFile: '/run/keys/store.key' },
        extraArgs: ['a%b $x'],
      });
      const dir = await mkdtemp(join(tmpdir(), 'pcr-unit-'));
      try {
        const unit = join(dir, 'procurator.service');
        await writeFile(unit, renderService(r));
        const v = await exec('systemd-analyze', ['verify', unit]);
        // Unknown keys and unparsable values are warnings on stderr, with exit code 0.
        expect(v.stderr.trim()).toBe('');
        // And the check can fail: a misspelt directive is reported.
        await writeFile(unit, `${renderService(r)}ProtectSystm=strict\n`);
        const bad = await exec('systemd-analyze', ['verify', unit]);
        expect(bad.stderr).toContain("Unknown key 'ProtectSystm'");
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    });

    it('refuses a seed without a secret file', async () => {
      const r = await evalModule({ enable: true, seeds: [SEED] });
      expect(r.failedAssertions).toEqual([
        expect.stringContaining('seeds is set but secretFile is not'),
      ]);
    });

    it('refuses secrets in the Nix store', async () => {
      const r = await evalModule({ enable: true, secretFile: '/nix/store/abc-cluster.secret' });
      expect(r.failedAssertions).toEqual([expect.stringContaining('must not be in the Nix store')]);
    });

    it('refuses a store limit without the local store, and passes it with the local store', async () => {
      const refused = await evalModule({ enable: true, store: { maxMiB: 512 } });
      expect(refused.failedAssertions).toEqual([
        expect.stringContaining('store.maxMiB limits the node-local store only'),
      ]);
      const ok = await evalModule({ enable: true, store: { mode: 'local', maxMiB: 512 } });
      expect(ok.failedAssertions).toEqual([]);
      expect(ok.unit!.serviceConfig.ExecStart).toContain(' --store local --store-max-mib 512 ');
    });

    it('refuses malformed addresses at evaluation, naming the option', async () => {
      expect(await evalError({ enable: true, seeds: ['/ip4/10.0.0.1/tcp/4001'] })).toContain(
        'services.procurator.seeds',
      );
      expect(await evalError({ enable: true, listen: ['/dns4/a/tcp/1'] })).toContain(
        'services.procurator.listen',
      );
      expect(await evalError({ enable: true, listen: [] })).toContain('services.procurator.listen');
      expect(await evalError({ enable: true, name: '-web' })).toContain('services.procurator.name');
      expect(await evalError({ enable: true, cache: { listen: '127.0.0.1' } })).toContain(
        'services.procurator.cache.listen',
      );
      expect(await evalError({ enable: true, dataDir: 'var/lib/pcr' })).toContain(
        'services.procurator.dataDir',
      );
      expect(await evalError({ enable: true, dataDir: '/srv/my pcr' })).toContain(
        'services.procurator.dataDir',
      );
      expect(await evalError({ enable: true, maxVoters: 0 })).toContain(
        'services.procurator.maxVoters',
      );
    });

    it('opens the libp2p ports, and the cache and metrics ports only beyond loopback', async () => {
      const loopback = await evalModule({
        enable: true,
        openFirewall: true,
        listen: ['/ip4/0.0.0.0/tcp/4001', '/ip6/::/tcp/4001', '/ip4/0.0.0.0/tcp/4011'],
      });
      expect(loopback.firewallTcpPorts).toEqual([4001, 4011]);
      const wide = await evalModule({
        enable: true,
        openFirewall: true,
        cache: { listen: '0.0.0.0:5000' },
        metricsListen: '[::]:9100',
      });
      expect(wide.firewallTcpPorts).toEqual([4001, 5000, 9100]);
      const closed = await evalModule({ enable: true, cache: { listen: '0.0.0.0:5000' } });
      expect(closed.firewallTcpPorts).toEqual([]);
    });

    it('passes the cache options: tokens for reads, compression, upstream caches', async () => {
      const r = await evalModule({
        enable: true,
        cache: {
          auth: 'read',
          compression: 'remote',
          upstreams: ['https://cache.example', 'http://10.0.0.1:5000'],
        },
      });
      expect(r.unit!.serviceConfig.ExecStart).toContain(
        ' --cache-auth read --cache-compression remote --upstream https://cache.example --upstream http://10.0.0.1:5000 ',
      );
      expect(r.failedAssertions).toEqual([]);
    });

    it('refuses to open a port picked at start (0)', async () => {
      const r = await evalModule({
        enable: true,
        openFirewall: true,
        listen: ['/ip4/0.0.0.0/tcp/0'],
      });
      expect(r.failedAssertions).toEqual([expect.stringContaining('cannot open port 0')]);
    });

    it('points Nix at the node cache only with its public key', async () => {
      const key = 'pcr-test-1:AAAAC3NzaC1lZDI1NTE5AAAAIKf0fKlEjoXGFUtUZ+Uk2zY=';
      const r = await evalModule({
        enable: true,
        cache: { listen: '0.0.0.0:4002', useAsSubstituter: true, publicKey: key },
      });
      expect(r.failedAssertions).toEqual([]);
      expect(r.nixSettings).toEqual({
        substituters: ['http://127.0.0.1:4002'],
        'trusted-public-keys': [key],
      });
      const noKey = await evalModule({ enable: true, cache: { useAsSubstituter: true } });
      expect(noKey.failedAssertions).toEqual([expect.stringContaining('cache.publicKey')]);
      expect((await evalModule({ enable: true })).nixSettings).toEqual({});
    });

    it('installs a given store key from a credential before each start; no cache is --cache off', async () => {
      const r = await evalModule({
        enable: true,
        cache: { listen: null, secretKeyFile: '/run/keys/store.key' },
      });
      const s = r.unit!.serviceConfig;
      expect(s.LoadCredential).toEqual(['store.key:/run/keys/store.key']);
      expect(s.ExecStartPre).toEqual([
        `${r.stubs.coreutils}/bin/install -m 0600 %d/store.key /var/lib/procurator/store.key`,
      ]);
      expect(s.ExecStart).toContain(' --cache off ');
    });

    it('escapes extra arguments for systemd (% and $) and quotes them as one word each', async () => {
      const r = await evalModule({
        enable: true,
        extraArgs: ['--snapshot-entries', '50000', 'a%b $x'],
      });
      expect(r.unit!.serviceConfig.ExecStart).toMatch(/ --snapshot-entries 50000 'a%%b \$\$x'$/);
    });

    it('uses a tmpfiles rule for a data dir outside /var/lib, and points the pcr wrapper at it', async () => {
      const r = await evalModule({ enable: true, dataDir: '/srv/pcr' });
      expect(r.tmpfiles).toEqual(['d /srv/pcr 0700 root root -']);
      expect(r.unit!.serviceConfig.StateDirectory).toBeUndefined();
      expect(r.unit!.serviceConfig.ExecStart).toContain('--data-dir /srv/pcr ');
      expect(r.systemPackages).toEqual([
        {
          name: 'pcr',
          text:
            // biome-ignore lint/suspicious/noTemplateCurlyInString: a shell expansion, not a template
            'export PCR_DATA_DIR="${PCR_DATA_DIR:-/srv/pcr}"\n' +
            `exec ${r.stubs.procurator}/bin/pcr "$@"\n`,
        },
      ]);
    });
  },
);
