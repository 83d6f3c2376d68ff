// `pcr node start`: run a member in the foreground. Logs (pino, JSON) go to stderr.

import { type Command, InvalidArgumentError } from 'commander';
import pino from 'pino';
import { DAEMON_DEFAULTS, Daemon } from '../daemon.ts';
import type { StoreMode } from '../store/service.ts';
import { CliError, defaultDataDir, EXIT } from './client.ts';
import { integerOption } from './context.ts';

interface StartOpts {
  dataDir?: string;
  listen: string[];
  seed: string[];
  secretFile?: string;
  maxVoters: number;
  metrics: string;
  logLevel: string;
  snapshotEntries?: number;
  keepEntries?: number;
  store: StoreMode;
  storeMaxMib?: number;
  cache: string;
  trustedKey: string[];
  accel: 'auto' | 'kvm' | 'tcg';
  rejoin?: boolean;
}

/** `--store auto|nix|local|nix:DIR`. */
function storeMode(v: string): StoreMode {
  if (v === 'auto' || v === 'nix' || v === 'local') return v;
  if (v.startsWith('nix:/')) return { nixRoot: v.slice(4) };
  throw new InvalidArgumentError('auto, nix, local, or nix:/absolute/chroot/store');
}

const collect = (v: string, prev: string[]): string[] => [...prev, v];

export function registerNodeCommands(program: Command): void {
  const node = program.command('node').description('run a member of a cluster');
  node
    .command('start')
    .description(
      'start a member: without a seed and without state it bootstraps a new cluster of one',
    )
    .option(
      '--data-dir <dir>',
      'where the node keeps its key, secret and log (default: PCR_DATA_DIR or ~/.local/share/pcr)',
    )
    .option('--listen <multiaddr>', 'address to listen on (repeatable)', collect, [])
    .option('--seed <multiaddr>', 'a member to join through (repeatable)', collect, [])
    .option(
      '--secret-file <file>',
      "the cluster secret, needed to join (a member's cluster.secret)",
    )
    .option(
      '--max-voters <n>',
      'how many members become voters',
      integerOption(1, 1000),
      DAEMON_DEFAULTS.maxVoters,
    )
    .option('--metrics <host:port>', 'Prometheus metrics address', '127.0.0.1:0')
    .option(
      '--snapshot-entries <n>',
      'snapshot the state machine and compact the log every n entries',
      integerOption(1, 1e9),
    )
    .option(
      '--store <mode>',
      "the node's store: auto (the Nix store if nix is installed), nix, local, or nix:DIR (a chroot store)",
      storeMode,
      'auto' as StoreMode,
    )
    .option(
      '--store-max-mib <n>',
      'size limit of the node-local store (least recently used paths go first)',
      integerOption(1, 1 << 30),
    )
    .option(
      '--cache <host:port>',
      "the binary cache's HTTP address for Nix (loopback by default), or off",
      '127.0.0.1:0',
    )
    .option(
      '--trusted-key <name:key>',
      "a store key trusted besides the members' (repeatable), e.g. cache.nixos.org-1:...",
      collect,
      [],
    )
    .option(
      '--accel <accel>',
      "QEMU's accelerator: auto (KVM if a probe boot proves it works, else TCG), kvm, tcg",
      (v: string) => {
        if (v !== 'auto' && v !== 'kvm' && v !== 'tcg')
          throw new InvalidArgumentError('auto, kvm or tcg');
        return v;
      },
      process.env.PCR_ACCEL ?? 'auto',
    )
    .option(
      '--keep-entries <n>',
      'log entries kept behind a snapshot for slow followers',
      integerOption(1, 1e9),
    )
    .option(
      '--rejoin',
      "after a removal: wipe this data dir's Raft state and identity (keeps cluster.secret) and join through --seed as a new member",
    )
    .option(
      '--log-level <level>',
      'trace, debug, info, warn, error',
      process.env.PCR_LOG_LEVEL ?? 'info',
    )
    .action(async (o: StartOpts) => {
      const dataDir = o.dataDir ?? defaultDataDir();
      const logger = pino({ level: o.logLevel }, pino.destination(2));
      const daemon = await Daemon.start({
        dataDir,
        listen: o.listen.length > 0 ? o.listen : ['/ip4/127.0.0.1/tcp/0'],
        seeds: o.seed,
        ...(o.secretFile !== undefined ? { secretFile: o.secretFile } : {}),
        maxVoters: o.maxVoters,
        metricsAddr: o.metrics,
        ...(o.snapshotEntries !== undefined ? { snapshotEntries: o.snapshotEntries } : {}),
        ...(o.keepEntries !== undefined ? { keepEntries: o.keepEntries } : {}),
        store: o.store,
        ...(o.storeMaxMib !== undefined ? { storeMaxBytes: o.storeMaxMib * 1024 * 1024 } : {}),
        cacheAddr: o.cache,
        trustedKeys: o.trustedKey,
        accel: o.accel,
        ...(o.rejoin === true ? { rejoin: true } : {}),
        logger,
      });
      const addr = daemon.addrs()[0];
      process.stderr.write(
        `pcr node ${daemon.id} listening on ${daemon.addrs().join(' ')}\n` +
          `metrics: ${daemon.metricsUrl}\n` +
          (daemon.store?.cacheUrl !== undefined
            ? `binary cache: ${daemon.store.cacheUrl} (trusted-public-keys: ${daemon.store.publicKey})\n`
            : '') +
          `join it: pcr node start --data-dir <another dir> --seed ${addr} --secret-file ${dataDir}/cluster.secret\n`,
      );
      const removed = await new Promise<string | undefined>((resolve) => {
        const stop = (sig: string): void => {
          logger.info({ sig }, 'stopping');
          daemon.stop().then(
            () => resolve(undefined),
            () => resolve(undefined),
          );
        };
        process.once('SIGTERM', () => stop('SIGTERM'));
        process.once('SIGINT', () => stop('SIGINT'));
        void daemon.removal.then(resolve);
      });
      if (removed !== undefined) {
        throw new CliError(
          `node ${daemon.id} was removed from the cluster (${removed}); it stopped its VMs and ` +
            `left. To join again as a new member: pcr node start --rejoin --seed <a member's ` +
            `address> --data-dir ${dataDir}`,
          EXIT.removed,
        );
      }
    });
}
