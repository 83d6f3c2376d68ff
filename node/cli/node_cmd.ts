// `pcr node start`: run a member in the foreground. Arguments are checked before anything starts
// (node_args.ts); a config file (--config) gives any flag's value, flags override it. Logs go to
// stderr: readable lines on a terminal, JSON otherwise or with --log-format json (node/log.ts).
// The daemon's code is loaded only when a node starts.

import { hostname } from 'node:os';
import { type Command, InvalidArgumentError, type Option } from 'commander';
import type { Logger } from 'pino';
import type { Daemon, DaemonOptions } from '../daemon.ts';
import { LOG_FORMATS, type LogFormat } from '../log_format.ts';
import {
  ELECTION_TIMEOUT_HEARTBEATS_MIN,
  ELECTION_TIMEOUT_MS_DEFAULT,
  ELECTION_TIMEOUT_MS_MAX,
  electionTimeoutProblem,
  HEARTBEAT_INTERVAL_MS_DEFAULT,
  heartbeatIntervalProblem,
  RAFT_TICK_MS,
  raftTicks,
  raftTimingProblem,
} from '../raft_timing.ts';
import type { StoreMode } from '../store/service.ts';
import { CliError, defaultDataDir, EXIT } from './client.ts';
import { durationOption, integerOption } from './context.ts';
import type { ConfigKey } from './node_args.ts';
import { registerNodePlacementCommands } from './node_placement_cmds.ts';

// The checks, the logger and the daemon are loaded in the action: listing commands stays cheap.

/** `pcr node start`'s options as commander parsed them (with the config file's filled in). */
export interface StartOpts {
  config?: string;
  dataDir?: string;
  name?: string;
  listen: string[];
  advertise: string[];
  seed: string[];
  secretFile?: string;
  maxVoters: number;
  metrics: string;
  logLevel: string;
  logFormat: LogFormat;
  rejoin?: boolean;
  snapshotEntries?: number;
  keepEntries?: number;
  store: StoreMode;
  storeMaxMib?: number;
  cache: string;
  trustedKey: string[];
  cacheAuth: 'push' | 'read';
  cacheCompression: 'none' | 'remote' | 'zstd';
  upstream: string[];
  accel: 'auto' | 'kvm' | 'tcg';
  label: string[];
  reserveCpus: number;
  reserveMemoryMib: number;
  nodeDownAfter?: number;
  fenceAfter?: number;
  /** Raft's clock, whole milliseconds (node/raft_timing.ts). */
  heartbeatInterval: number;
  electionTimeout: number;
  json?: boolean;
}

/** Voters by default (the daemon's DAEMON_DEFAULTS.maxVoters; here to keep help cheap). */
const MAX_VOTERS_DEFAULT = 5;
const DEFAULT_LISTEN = '/ip4/127.0.0.1/tcp/0';

/**
 * A commander option parser for whole milliseconds that `problem` accepts (node/raft_timing.ts);
 * a bad value is a usage error (2), as every flag's own range is.
 */
function millisecondsOption(problem: (ms: number) => string | undefined): (v: string) => number {
  return (v) => {
    if (!/^\s*\d+\s*$/.test(v)) {
      throw new InvalidArgumentError(`expected whole milliseconds (e.g. 400), got '${v}'.`);
    }
    const ms = Number(v);
    const why = problem(ms);
    if (why !== undefined) throw new InvalidArgumentError(`${why}.`);
    return ms;
  };
}

/** `--store auto|nix|local|nix:DIR`. */
function storeMode(v: string): StoreMode {
  if (v === 'auto' || v === 'nix' || v === 'local') return v;
  if (v.startsWith('nix:/')) return { nixRoot: v.slice(4) };
  throw new InvalidArgumentError('auto, nix, local, or nix:/absolute/chroot/store');
}

function oneOf<T extends string>(values: readonly T[]): (v: string) => T {
  return (v) => {
    if (!(values as readonly string[]).includes(v))
      throw new InvalidArgumentError(values.join(', '));
    return v as T;
  };
}

const collect = (v: string, prev: string[]): string[] => [...prev, v];

/** The default name: the host name, cut to a valid node name. */
function defaultName(MEMBER_NAME_BYTES_MAX: number): string {
  const n = hostname()
    .split('.')[0]!
    .replace(/[^A-Za-z0-9._-]/g, '-')
    .replace(/^[^A-Za-z0-9]+/, '')
    .slice(0, MEMBER_NAME_BYTES_MAX);
  return n === '' ? 'node' : n;
}

/** `pcr node start`'s options (exported for the tests that parse a command line without starting). */
export function addStartOptions(cmd: Command): Command {
  return cmd
    .option(
      '--config <file>',
      'a JSON file of options (keys: the flags in camelCase); flags override it',
    )
    .option(
      '--data-dir <dir>',
      'where the node keeps its key, secret and log (default: PCR_DATA_DIR or ~/.local/share/pcr)',
    )
    .option(
      '--name <name>',
      "the node's name in tables and commands (default: the host name, made unique)",
    )
    .option(
      '--listen <multiaddr>',
      `address to listen on (repeatable; default ${DEFAULT_LISTEN}, loopback only)`,
      collect,
      [],
    )
    .option(
      '--advertise <addr>',
      'the address other machines reach this node at: an IP or host name (the listen port is kept) or a multiaddr (repeatable)',
      collect,
      [],
    )
    .option(
      '--seed <multiaddr>',
      'a member to join through, /ip4/IP/tcp/PORT/p2p/ID (repeatable)',
      collect,
      [],
    )
    .option(
      '--secret-file <file>',
      "the cluster secret, needed to join (a member's cluster.secret)",
    )
    .option(
      '--max-voters <n>',
      'how many members become voters',
      integerOption(1, 1000),
      MAX_VOTERS_DEFAULT,
    )
    .option('--metrics <host:port>', 'Prometheus metrics address', '127.0.0.1:0')
    .option(
      '--snapshot-entries <n>',
      'snapshot the state machine and compact the log every n entries',
      integerOption(1, 1e9),
    )
    .option(
      '--keep-entries <n>',
      'log entries kept behind a snapshot for slow followers',
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
      '--cache-auth <what>',
      'what needs a cache token: push (uploads, the default) or read (reads too)',
      oneOf(['push', 'read'] as const),
      'push' as const,
    )
    .option(
      '--cache-compression <how>',
      'how the cache serves NARs: none, remote (zstd except to loopback clients), zstd',
      oneOf(['none', 'remote', 'zstd'] as const),
      'none' as const,
    )
    .option(
      '--upstream <url>',
      'a binary cache asked for a path no member holds (repeatable); its key goes in --trusted-key',
      collect,
      [],
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
      oneOf(['auto', 'kvm', 'tcg'] as const),
      process.env.PCR_ACCEL ?? 'auto',
    )
    .option(
      '--label <key=value>',
      'a label placement constraints can match as label.KEY (repeatable), e.g. zone=a',
      collect,
      [],
    )
    .option(
      '--reserve-cpus <n>',
      'cpus kept from VMs (the capacity placement sees is the machine minus this)',
      integerOption(0, 4096),
      0,
    )
    .option(
      '--reserve-memory-mib <n>',
      'memory kept from VMs, in MiB',
      integerOption(0, 64 * 1024 * 1024),
      0,
    )
    .option(
      '--node-down-after <duration>',
      'the leader marks a node down after this long without an answer, and places its VMs elsewhere (default 10s)',
      durationOption(1000, 86_400_000),
    )
    .option(
      '--fence-after <duration>',
      'a node stops its VMs after this long without hearing a leader (default 4s; see docs/scheduling.md)',
      durationOption(500, 86_400_000),
    )
    .option(
      '--heartbeat-interval <ms>',
      `how often the Raft leader sends heartbeats, in milliseconds: a multiple of the ${RAFT_TICK_MS} ms tick ` +
        '(not rounded: other values are refused); every member should use the same values',
      millisecondsOption(heartbeatIntervalProblem),
      HEARTBEAT_INTERVAL_MS_DEFAULT,
    )
    .option(
      '--election-timeout <ms>',
      'how long a follower waits without hearing a leader before it campaigns, in milliseconds ' +
        `(each wait is randomized up to twice it): a multiple of the ${RAFT_TICK_MS} ms tick, at least ` +
        `${ELECTION_TIMEOUT_HEARTBEATS_MIN}x the heartbeat interval, at most ${ELECTION_TIMEOUT_MS_MAX}; ` +
        'every member should use the same values',
      millisecondsOption(electionTimeoutProblem),
      ELECTION_TIMEOUT_MS_DEFAULT,
    )
    .option(
      '--rejoin',
      "after a removal: wipe this data dir's Raft state and identity (keeps cluster.secret) and join through --seed as a new member",
    )
    .option(
      '--log-level <level>',
      'trace, debug, info, warn, error',
      oneOf(['trace', 'debug', 'info', 'warn', 'error'] as const),
      process.env.PCR_LOG_LEVEL ?? 'info',
    )
    .option(
      '--log-format <format>',
      'auto (readable lines on a terminal, JSON otherwise), text, json',
      oneOf(LOG_FORMATS),
      'auto' as LogFormat,
    )
    .option(
      '--json',
      'print the start banner as one JSON object on stdout (logs stay on stderr), and errors as JSON',
    );
}

/** Fills the options not given on the command line from the config file, through each flag's parser. */
async function applyConfig(cmd: Command, o: StartOpts): Promise<void> {
  if (o.config === undefined) return;
  const file = o.config;
  const { CONFIG_LIST_KEYS, readConfig } = await import('./node_args.ts');
  const values = await readConfig(file);
  const byKey = new Map(cmd.options.map((opt: Option) => [opt.attributeName(), opt]));
  const target = o as unknown as Record<string, unknown>;
  for (const [key, value] of values) {
    if (cmd.getOptionValueSource(key) === 'cli' || key === ('config' as ConfigKey)) continue;
    const opt = byKey.get(key)!;
    const parse = (v: string, prev: unknown): unknown => {
      try {
        return opt.parseArg !== undefined ? opt.parseArg(v, prev) : v;
      } catch (e) {
        throw new CliError(`--config ${file}: ${key}: ${(e as Error).message}`, EXIT.badArgument);
      }
    };
    if (CONFIG_LIST_KEYS.has(key))
      target[key] = (value as string[]).reduce<unknown>((acc, v) => parse(v, acc), []);
    else target[key] = parse(value as string, undefined);
  }
}

/** Checks every argument that names something outside (files, addresses, the data dir). */
async function checkArguments(o: StartOpts, dataDir: string): Promise<string> {
  const { checkDataDir, checkListen, checkSecretFile, checkSeed, existingPeerId } = await import(
    './node_args.ts'
  );
  const { MEMBER_NAME_BYTES_MAX, memberNameProblem } = await import('../state/machine.ts');
  for (const s of o.seed) checkSeed(s, undefined);
  for (const l of o.listen) checkListen('--listen', l);
  for (const a of o.advertise) if (a.startsWith('/')) checkListen('--advertise', a);
  if (o.secretFile !== undefined) await checkSecretFile(o.secretFile);
  const name = o.name ?? defaultName(MEMBER_NAME_BYTES_MAX);
  const why = memberNameProblem(name);
  if (why !== undefined)
    throw new CliError(`--name ${JSON.stringify(name)}: ${why}`, EXIT.badArgument);
  await checkDataDir(dataDir);
  // A seed that is this node itself: known only once the data dir's key is read.
  const self = await existingPeerId(dataDir);
  for (const s of o.seed) checkSeed(s, self);
  return name;
}

/**
 * The heartbeat interval and the election timeout together (each flag's own bounds were checked as
 * it was parsed): a usage error (2) with the numbers.
 */
export function checkRaftTiming(o: Pick<StartOpts, 'heartbeatInterval' | 'electionTimeout'>): void {
  const why = raftTimingProblem({
    heartbeatIntervalMs: o.heartbeatInterval,
    electionTimeoutMs: o.electionTimeout,
  });
  if (why !== undefined) throw new CliError(why, EXIT.usage);
}

/** The fencing inequality and the reserves, before anything starts (exit 11 with the numbers). */
async function checkPlacementFlags(o: StartOpts): Promise<void> {
  const duty = await import('../placement/duty.ts');
  const { reserveProblem } = await import('../placement/registration.ts');
  const fencing = duty.fencingProblem({
    fenceAfterMs: o.fenceAfter ?? duty.FENCE_AFTER_MS_DEFAULT,
    nodeDownAfterMs: o.nodeDownAfter ?? duty.NODE_DOWN_AFTER_MS_DEFAULT,
    electionTimeoutMs: o.electionTimeout,
  });
  if (fencing !== undefined) {
    throw new CliError(fencing, EXIT.badArgument, {
      hint: 'raise --node-down-after, or lower --fence-after or --election-timeout (docs/scheduling.md)',
    });
  }
  const reserve = reserveProblem(o.reserveCpus, o.reserveMemoryMib);
  if (reserve !== undefined) throw new CliError(reserve, EXIT.badArgument);
}

/** `--label k=v` flags as a map; a malformed or invalid label is a bad argument (exit 11). */
async function parseLabels(flags: readonly string[]): Promise<Record<string, string>> {
  const labels: Record<string, string> = {};
  for (const f of flags) {
    const eq = f.indexOf('=');
    if (eq <= 0)
      throw new CliError(`--label ${JSON.stringify(f)}: write KEY=VALUE`, EXIT.badArgument);
    const k = f.slice(0, eq);
    if (Object.hasOwn(labels, k))
      throw new CliError(`--label ${k} is given twice`, EXIT.badArgument);
    labels[k] = f.slice(eq + 1);
  }
  const { validateLabels } = await import('../sched/spec.ts');
  const why = validateLabels(labels);
  if (why.length > 0) throw new CliError(why.join('\n'), EXIT.badArgument);
  return labels;
}

/** What the daemon gets of checked options: every flag, and Raft's clock in ticks. */
export function daemonOptions(
  o: StartOpts,
  checked: {
    readonly dataDir: string;
    readonly name: string;
    readonly labels: Record<string, string>;
    readonly logger: Logger;
  },
): DaemonOptions {
  const { heartbeatTicks, electionTicks } = raftTicks({
    heartbeatIntervalMs: o.heartbeatInterval,
    electionTimeoutMs: o.electionTimeout,
  });
  return {
    dataDir: checked.dataDir,
    name: checked.name,
    listen: o.listen.length > 0 ? o.listen : [DEFAULT_LISTEN],
    ...(o.advertise.length > 0 ? { advertise: o.advertise } : {}),
    seeds: o.seed,
    ...(o.secretFile !== undefined ? { secretFile: o.secretFile } : {}),
    maxVoters: o.maxVoters,
    metricsAddr: o.metrics,
    tickMs: RAFT_TICK_MS,
    heartbeatTicks,
    electionTicks,
    ...(o.snapshotEntries !== undefined ? { snapshotEntries: o.snapshotEntries } : {}),
    ...(o.keepEntries !== undefined ? { keepEntries: o.keepEntries } : {}),
    store: o.store,
    ...(o.storeMaxMib !== undefined ? { storeMaxBytes: o.storeMaxMib * 1024 * 1024 } : {}),
    cacheAddr: o.cache,
    trustedKeys: o.trustedKey,
    cacheAuth: o.cacheAuth,
    cacheCompression: o.cacheCompression,
    upstreams: o.upstream,
    accel: o.accel,
    ...(o.rejoin === true ? { rejoin: true } : {}),
    labels: checked.labels,
    reserveCpus: o.reserveCpus,
    reserveMemoryMiB: o.reserveMemoryMib,
    ...(o.nodeDownAfter !== undefined ? { nodeDownAfterMs: o.nodeDownAfter } : {}),
    ...(o.fenceAfter !== undefined ? { fenceAfterMs: o.fenceAfter } : {}),
    logger: checked.logger,
  };
}

const isLoopback = (a: string): boolean => /^\/(ip4\/127\.|ip6\/::1\/|dns4?\/localhost\/)/.test(a);

export function registerNodeCommands(program: Command): void {
  const node = program
    .command('node')
    .description('run a member of a cluster; list, drain and inspect the nodes placement uses');
  registerNodePlacementCommands(node);
  const start = addStartOptions(
    node
      .command('start')
      .description(
        'start a member: without a seed and without state it bootstraps a new cluster of one (a node once started with seeds and never joined uses those)',
      ),
  );
  start.action(async (o: StartOpts, cmd: Command) => {
    await applyConfig(cmd, o);
    checkRaftTiming(o);
    const dataDir = o.dataDir ?? defaultDataDir();
    const name = await checkArguments(o, dataDir);
    const labels = await parseLabels(o.label);
    await checkPlacementFlags(o);
    const { createLogger } = await import('../log.ts');
    const logger = createLogger(o.logLevel, o.logFormat);
    const { Daemon: DaemonClass } = await import('../daemon.ts');
    let daemon: Daemon;
    try {
      daemon = await DaemonClass.start(daemonOptions(o, { dataDir, name, labels, logger }));
    } catch (e) {
      // The trace goes to the log at debug; the user sees one line (pcr.ts).
      logger.debug({ err: (e as Error).stack }, 'start failed');
      throw (await import('./node_args.ts')).explainStartError(e);
    }
    // The signal listeners go in before the banner: whoever reads the banner (a person, a test,
    // a supervisor) may press Ctrl-C at once, and a SIGINT with no listener kills Node with 130.
    const { onStopSignals } = await import('./stop_signals.ts');
    let done: (removed: string | undefined) => void = () => {};
    const removal = new Promise<string | undefined>((resolve) => {
      done = resolve;
    });
    const unlisten = onStopSignals({
      stop: (sig) => {
        logger.info({ sig }, 'stopping');
        daemon.stop().then(
          () => done(undefined),
          () => done(undefined),
        );
      },
      force: (sig) =>
        logger.warn({ sig }, 'second signal: exiting now, before the graceful stop finished'),
    });
    void daemon.removal.then(done);
    const info = startInfo(daemon, name, dataDir);
    if (o.json === true) process.stdout.write(`${JSON.stringify(info)}\n`);
    else process.stderr.write(banner(info));
    const removed = await removal;
    unlisten();
    if (removed !== undefined) {
      throw new CliError(
        `node ${name} (${daemon.id}) was removed from the cluster (${removed}); it stopped its ` +
          'VMs and left',
        EXIT.removed,
        {
          hint: `to join again as a new member: pcr node start --rejoin --seed <a member's address> --data-dir ${dataDir}`,
        },
      );
    }
  });
}

interface Started {
  readonly id: string;
  readonly metricsUrl: string;
  readonly store?:
    | { readonly cacheUrl?: string | undefined; readonly publicKey: string }
    | undefined;
  addrs(): string[];
}

/** What a person (the banner) or a program (--json) needs after start: who, where, how to join. */
export interface StartInfo {
  readonly id: string;
  readonly name: string;
  readonly dataDir: string;
  readonly addrs: string[];
  /** Every address is loopback: other machines cannot join (see --listen and --advertise). */
  readonly loopbackOnly: boolean;
  /** The address another node joins through (the first one other machines can reach, if any). */
  readonly seed: string;
  readonly secretFile: string;
  /** The command line that starts another node joining this one. */
  readonly join: string;
  readonly metrics: string;
  readonly cache?: { readonly url: string; readonly publicKey: string };
}

function startInfo(d: Started, name: string, dataDir: string): StartInfo {
  const addrs = d.addrs();
  const reachable = addrs.filter((a) => !isLoopback(a));
  const seed = reachable[0] ?? addrs[0] ?? '';
  const secretFile = `${dataDir}/cluster.secret`;
  const cacheUrl = d.store?.cacheUrl;
  return {
    id: d.id,
    name,
    dataDir,
    addrs,
    loopbackOnly: reachable.length === 0,
    seed,
    secretFile,
    join: `${process.env.PCR_PROGRAM ?? 'pcr'} node start --data-dir <another dir> --seed ${seed} --secret-file ${secretFile}`,
    metrics: d.metricsUrl,
    ...(cacheUrl !== undefined ? { cache: { url: cacheUrl, publicKey: d.store!.publicKey } } : {}),
  };
}

function banner(i: StartInfo): string {
  return (
    `pcr node ${i.name} (${i.id}) listening on ${i.addrs.join(' ')}\n` +
    (i.loopbackOnly
      ? "listening on loopback only: other machines cannot join; for a cluster across machines use --listen /ip4/0.0.0.0/tcp/4001 --advertise <this machine's IP> (docs/operations.md)\n"
      : '') +
    `metrics: ${i.metrics}\n` +
    (i.cache !== undefined
      ? `binary cache: ${i.cache.url} (trusted-public-keys: ${i.cache.publicKey})\n`
      : '') +
    `join it: ${i.join}\n`
  );
}
