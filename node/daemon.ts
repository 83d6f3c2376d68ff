// The daemon: one member of a cluster. It starts, runs and stops the parts and wires them to the
// real world: libp2p for Raft and the API, LevelDB for the log, a ticker for time, the store, the
// VM supervisor and agent. Without state and without a seed it bootstraps a cluster of one; with a
// seed it joins. What it does not own lives in its own room: requests in node/api/ (router,
// handlers), membership policy and its executor in node/membership/, the metrics table in
// node_metrics.ts, the error vocabulary in errors.ts (docs/architecture.md).

import { bulkHostOf } from './store/bulk.ts';
import './polyfill.ts';
import { randomInt } from 'node:crypto';
import { mkdir, rm } from 'node:fs/promises';
import type { Server } from 'node:http';
import { join } from 'node:path';
import type { PeerId } from '@libp2p/interface';
import { peerIdFromString } from '@libp2p/peer-id';
import { type Multiaddr, multiaddr } from '@multiformats/multiaddr';
import type { Logger } from 'pino';
import { bootstrap, type NodeId, type RandomSource } from '../consensus/index.ts';
import { AGENT_STOP_TIMEOUT_MS, Agent } from './agent/agent.ts';
import type { HealthVerdict } from './agent/health_verdict.ts';
import { stopTimeoutMs } from './agent/reconciler.ts';
import { LOCAL_SOCKET_FILE, type LocalSocketServer, serveLocalSocket } from './api/local_socket.ts';
import { TRANSFER_WAIT_MS } from './api/member_handlers.ts';
import type { Request } from './api/requests.ts';
import { type ApiDeps, route } from './api/router.ts';
import { API_SESSION_PROTOCOL, serveSession } from './api/session.ts';
import { STORE_FETCH_TIMEOUT_MS } from './api/store_handlers.ts';
import {
  API_PROTOCOL,
  API_STREAMS_PER_CONNECTION_MAX,
  type ApiResponse,
  apiRequest,
  serveExchange,
} from './api/wire.ts';
import { writeFileAtomic } from './atomic_file.ts';
import {
  loadOrCreatePeerKey,
  loadOrCreateSecret,
  NODE_INFO_FILE,
  PEER_KEY_FILE,
} from './identity.ts';
import { keepJoinSeeds, keptJoinSeeds } from './join_seeds.ts';
import { MEMBERSHIP_DEFAULTS, transferee } from './membership/decide.ts';
import { MembershipExecutor, type MembershipPorts } from './membership/executor.ts';
import { quorumProblem } from './membership/quorum.ts';
import { Histogram, renderSamples, serveMetrics } from './metrics.ts';
import { uniqueName } from './names.ts';
import { NODE_METRICS, readMetrics } from './node_metrics.ts';
import { AddrBook, type StickyPort, stickyListen } from './p2p/addr_book.ts';
import { collectMetrics, GOSSIP_INTERVAL_MS, Gossip, type NodeMetrics } from './p2p/gossip.ts';
import { createHost, type Host } from './p2p/host.ts';
import {
  DuplicateInstanceError,
  INSTANCE_CHECK_TIMEOUT_MS,
  newInstanceNonce,
  serveInstance,
} from './p2p/instance.ts';
import { RaftTransport } from './p2p/raft_transport.ts';
import {
  DUTY_PERIOD_MS,
  FENCE_AFTER_MS_DEFAULT,
  FENCE_GRACEFUL_MS,
  fencingProblem,
  NODE_DOWN_AFTER_MS_DEFAULT,
  PlacementDuty,
} from './placement/duty.ts';
import { nodeRegistration, reserveProblem } from './placement/registration.ts';
import { RolloutDuty } from './placement/rollout_duty.ts';
import { LevelDisk } from './raft/level_disk.ts';
import { type Outcome, RaftNode } from './raft/node.ts';
import { DurableStorage } from './raft/storage.ts';
import {
  type DaemonRaftTiming,
  daemonRaftTiming,
  ELECTION_TIMEOUT_MS_DEFAULT,
  HEARTBEAT_INTERVAL_MS_DEFAULT,
  LEADER_LOST_TICKS,
  RAFT_TICK_MS,
  raftNodeTiming,
  raftTimingProblem,
} from './raft_timing.ts';
import { type SharedTiming, timingDifferences } from './shared_timing.ts';
import { knownGoodRoots } from './state/deploy_pins.ts';
import type { Command, Member, Query } from './state/machine.ts';
import { VM_REASON_BYTES_MAX, type VmState } from './state/vms.ts';
import type { FetchProgress } from './store/fetch.ts';
import { type StoreMode, StoreService } from './store/service.ts';
import { newCounters } from './store/store.ts';
import { PCR_VERSION } from './version.ts';
import type { Accelerator, Backend, BackendName, Capabilities } from './vmm/backend.ts';
import { defaultBackends, probeBackends } from './vmm/probe.ts';
import { Supervisor } from './vmm/supervisor.ts';
import { waitFor } from './wait.ts';
import { which } from './which.ts';

export interface DaemonOptions {
  readonly dataDir: string;
  readonly listen: readonly string[];
  readonly seeds?: readonly string[];
  /** This node's name in the member table (`pcr node start --name`), validated by the caller. */
  readonly name?: string;
  /** Addresses other machines reach this node at (`--advertise`), instead of the listen ones. */
  readonly advertise?: readonly string[];
  /** The cluster secret to join with (a member's cluster.secret). */
  readonly secretFile?: string;
  /** How many members become voters; later ones stay learners. */
  readonly maxVoters?: number;
  /** Raft's clock (daemonRaftTiming; `pcr node start --heartbeat-interval`, `--election-timeout`). */
  readonly tickMs?: number;
  readonly electionTicks?: number;
  readonly heartbeatTicks?: number;
  readonly snapshotEntries?: number;
  readonly keepEntries?: number;
  /** Prometheus metrics listen address, host:port (loopback by default; port 0 picks one). */
  readonly metricsAddr?: string;
  /** Metrics gossip interval. */
  readonly gossipMs?: number;
  /** Which store this node uses (default auto: the machine's Nix store if nix is installed). */
  readonly store?: StoreMode;
  /** Size limit of the node-local store, in bytes. */
  readonly storeMaxBytes?: number;
  /** The HTTP binary cache's address, host:port (default 127.0.0.1:0), or 'off'. */
  readonly cacheAddr?: string;
  /** Store keys trusted besides the members' (Nix format `name:base64`). */
  readonly trustedKeys?: readonly string[];
  /** What needs a cache token: `push` (uploads only, the default) or `read` (reads too). */
  readonly cacheAuth?: 'push' | 'read';
  /** How the cache serves NARs: none (default), remote (zstd off loopback), zstd. */
  readonly cacheCompression?: 'none' | 'remote' | 'zstd';
  /** Binary caches asked for a path no member holds (their keys among trustedKeys). */
  readonly upstreams?: readonly string[];
  /** Environment for the nix CLI (tests: offline settings). */
  readonly nixEnv?: NodeJS.ProcessEnv;
  /** QEMU's accelerator: `auto` proves KVM by booting a kernel under it, else TCG. */
  readonly accel?: 'auto' | Accelerator;
  /**
   * Wipe this data dir's Raft state and peer identity (keeping the cluster secret) and join
   * through the seeds as a new node: how a removed node comes back (docs/membership.md).
   */
  readonly rejoin?: boolean;
  /** Labels placement constraints read (`--label k=v`), validated by the caller. */
  readonly labels?: Readonly<Record<string, string>>;
  /** Cores and memory kept from VMs (`--reserve-cpus`, `--reserve-memory-mib`). */
  readonly reserveCpus?: number;
  readonly reserveMemoryMiB?: number;
  /** The leader marks a node down after this long without a Raft answer (docs/scheduling.md). */
  readonly nodeDownAfterMs?: number;
  /** A node stops its VMs after this long without hearing a leader. */
  readonly fenceAfterMs?: number;
  readonly logger: Logger;
}

/**
 * The timing values every member should share (node/shared_timing.ts), defaults filled in: what
 * the fencing bound checks, what the placement duty runs with, what gossip tells the others.
 */
function sharedTimingOf(
  o: DaemonOptions,
  raft: { readonly heartbeatIntervalMs: number; readonly electionTimeoutMs: number },
): SharedTiming {
  return {
    heartbeatIntervalMs: raft.heartbeatIntervalMs,
    electionTimeoutMs: raft.electionTimeoutMs,
    fenceAfterMs: o.fenceAfterMs ?? FENCE_AFTER_MS_DEFAULT,
    nodeDownAfterMs: o.nodeDownAfterMs ?? NODE_DOWN_AFTER_MS_DEFAULT,
  };
}

/** Whether a TCP port can be listened on now (a moment later it may not: the caller handles that). */
async function portFree(host: string, port: number): Promise<boolean> {
  const { createServer } = await import('node:net');
  return new Promise((resolve) => {
    const probe = createServer();
    probe.once('error', () => resolve(false));
    probe.listen(port, host, () => probe.close(() => resolve(true)));
  });
}

/** How long this node's own addresses are reused before libp2p is asked again (see addrs()). */
export const ADDRS_CACHE_MS = 5000;
/** Member IDs kept parsed (keepConnected); past it the cache starts again. */
export const PEER_IDS_CACHED_MAX = 1024;

export const DAEMON_DEFAULTS = {
  maxVoters: 5,
  /**
   * Raft's clock (docs/operations.md, "Tuning" and "Failover"; D31, D42). Heartbeats every 400 ms
   * (idle cost, D42) and an election timeout of 1-2 s (2.5x and more): what bounds failover after a
   * partition or a paused leader. A leader whose process dies closes its connections, and its followers campaign within
   * leaderLostTicks of that instead (the kill -9 failover). `pcr node start --heartbeat-interval`
   * and `--election-timeout` change the heartbeat and the election timeout (node/raft_timing.ts).
   */
  tickMs: RAFT_TICK_MS,
  heartbeatTicks: HEARTBEAT_INTERVAL_MS_DEFAULT / RAFT_TICK_MS,
  electionTicks: ELECTION_TIMEOUT_MS_DEFAULT / RAFT_TICK_MS,
  leaderLostTicks: LEADER_LOST_TICKS,
  /** How often the background loop joins, promotes, refreshes this member's record and runs the
   * placement duty (the fencing inequality counts this period: DUTY_PERIOD_MS). */
  reconcileMs: DUTY_PERIOD_MS,
  /** A learner this close to the leader's last index is caught up. */
  promoteLagEntries: MEMBERSHIP_DEFAULTS.promoteLagEntries,
  /** A join or announce sent to another member gives up after this long. */
  peerRequestTimeoutMs: 6000,
  /** How long a leader waits for a transfer before it stops anyway. */
  transferWaitMs: TRANSFER_WAIT_MS,
  /**
   * A member with no connection is dialed again at most this often. libp2p closes connections
   * whose pings time out and never redials; Raft redials only the peers it sends to (leader to
   * followers), while gossip wants every member connected.
   */
  memberRedialMs: 2000,
  /** One redial gives up after this long. */
  memberDialTimeoutMs: 3000,
  /** A member asked to fetch a closure (store push) gets this long. */
  storeFetchTimeoutMs: STORE_FETCH_TIMEOUT_MS,
} as const;

export { PCR_VERSION };

/**
 * A node that may not campaign (a learner, a removed node) counts its leader as gone after this
 * many election timeouts without a message from it (node/membership/executor.ts, leaderSilent).
 */
export const LEADER_SILENT_ELECTION_TIMEOUTS = 2;

const cryptoRandom: RandomSource = { intn: (n) => randomInt(n) };

export class Daemon {
  readonly id: NodeId;
  readonly host: Host;
  readonly node: RaftNode;
  private readonly o: DaemonOptions;
  /** Raft's clock (daemonRaftTiming). */
  readonly timing: DaemonRaftTiming;
  /** The timing values every member should share, defaults filled in (sharedTimingOf). */
  private readonly shared: SharedTiming;
  private readonly log: Logger;
  private readonly disk: LevelDisk;
  private readonly transport: RaftTransport;
  readonly gossip: Gossip;
  private readonly applyLatency = new Histogram();
  private metricsServer: Server | undefined;
  /** The local API channel (node/api/local_socket.ts). */
  private localApi: LocalSocketServer | undefined;
  metricsUrl = '';
  /** Addresses learned outside the member table (seeds, join requests). */
  private readonly extraAddrs = new Map<NodeId, Multiaddr[]>();
  /** Where this node and its members listened, kept across restarts (node/p2p/addr_book.ts). */
  private readonly book: AddrBook;
  private ticker: NodeJS.Timeout | undefined;
  private reconciler: NodeJS.Timeout | undefined;
  /** Joins, keeps this member's record, promotes learners, finds out about a removal. */
  private readonly membership: MembershipExecutor;
  /** Placement: registration, fencing, and the leader's loop, lifecycle and drains. */
  readonly placement: PlacementDuty;
  /** The tables' change counts the placement duty last saw. */
  private placementChangesSeen = '';
  /** The leader's rolling updates of deployments (node/placement/rollout_duty.ts). */
  readonly rollouts: RolloutDuty;
  /** The tables' change counts the rollout duty last saw. */
  private rolloutChangesSeen = '';
  /** Why the cluster removed this node, once it knows. */
  private removedWhy: string | undefined;
  private settleRemoval: (why: string) => void = () => {};
  /** Resolves with the reason once the cluster removed this node and it stopped. */
  readonly removal = new Promise<string>((resolve) => {
    this.settleRemoval = resolve;
  });
  private stopping = false;
  /** This process's instance nonce: tells it apart from a copy running with the same identity. */
  private readonly nonce = newInstanceNonce();
  /** When each member was last redialed (keepConnected). */
  private readonly lastDial = new Map<NodeId, number>();
  /** Parsed member IDs (the 300 ms loop asks for each member's connections; parsing costs more). */
  private readonly peerIds = new Map<NodeId, PeerId>();
  /** The applied index whose member table rememberAddrs() last copied into the address book. */
  private addrsAppliedSeen = -1;
  /** membersTable()'s copy and the applied index it was read at. */
  private membersRead: readonly Member[] = [];
  private membersAt = -1;
  readonly stats = { memberRedials: 0 };
  /** Members whose gossiped timing values differ from ours, and how (docs/operations.md "Tuning"). */
  private readonly timingMismatches = new Map<NodeId, string>();
  /** The node's store, its P2P server and its binary cache (started in run()). */
  store: StoreService | undefined;
  /** What the API handlers (node/api/) see of this node. */
  private readonly api: ApiDeps;
  /** The VMM backends, what they can do here (probed once, in the background), the VMs. */
  private readonly backends: Record<BackendName, Backend>;
  readonly capabilities: Promise<Capabilities>;
  supervisor: Supervisor | undefined;
  agent: Agent | undefined;
  /** Runner closures this process made sure of (in the store, verified, on disk). */
  private readonly runnable = new Set<string>();
  /** The VM table's change count the agent last saw (it is poked when that moves). */
  private vmChangesSeen = -1;
  /** addrs(), until libp2p reports a change of this peer or ADDRS_CACHE_MS passes. */
  private addrsCache: { atMs: number; addrs: string[] } | undefined;
  /** The leader and term last logged (logLeaderChange). */
  private leaderSeen = '';
  /** The agent runs once a leader that counts this node is known (or a member vouched for it). */
  private agentStarted = false;

  private constructor(
    o: DaemonOptions,
    host: Host,
    disk: LevelDisk,
    storage: DurableStorage,
    book: AddrBook,
  ) {
    this.o = o;
    this.timing = daemonRaftTiming(o);
    this.shared = sharedTimingOf(o, this.timing);
    this.book = book;
    this.log = o.logger;
    this.host = host;
    this.disk = disk;
    this.id = host.peerId.toString();
    host.addEventListener('self:peer:update', () => {
      this.addrsCache = undefined;
    });
    let node: RaftNode | undefined;
    this.transport = new RaftTransport({
      host,
      addrsOf: (id) => this.addrsOf(id),
      deliver: (m) => node?.receive(m),
      reportUnreachable: (id) => node?.reportUnreachable(id),
      reportSnapshot: (id, ok) => node?.reportSnapshot(id, ok),
      warn: (msg, fields) => this.log.debug(fields ?? {}, msg),
    });
    node = new RaftNode({
      id: this.id,
      storage,
      disk,
      transport: this.transport,
      random: cryptoRandom,
      ...raftNodeTiming(this.timing, this.shared.fenceAfterMs),
      ...(o.snapshotEntries !== undefined ? { snapshotEntries: o.snapshotEntries } : {}),
      ...(o.keepEntries !== undefined ? { keepEntries: o.keepEntries } : {}),
      onApply: () => {
        if (node === undefined) return; // replaying the log inside RaftNode's constructor
        const changes = node.sm.vms.changes;
        if (changes !== this.vmChangesSeen) {
          this.vmChangesSeen = changes;
          if (this.agentStarted) this.agent?.poke();
        }
        const tables = `${changes}/${node.sm.nodes.changes}`;
        if (tables !== this.placementChangesSeen) {
          this.placementChangesSeen = tables;
          this.placement?.poke();
        }
        const rollouts = `${changes}/${node.sm.deployments.changes}`;
        if (rollouts !== this.rolloutChangesSeen) {
          this.rolloutChangesSeen = rollouts;
          this.rollouts?.poke();
        }
      },
      onFatal: (err) => {
        this.log.fatal({ err: err.message }, 'disk failed; the node stopped');
        void this.stop();
      },
    });
    this.node = node;
    this.backends = defaultBackends(
      o.accel !== undefined && o.accel !== 'auto' ? { qemu: { accelerator: o.accel } } : {},
    );
    this.capabilities = probeBackends(this.backends);
    const vmms = this.capabilities.then((c) =>
      (Object.keys(c.backends) as BackendName[]).filter((n) => c.backends[n].available),
    );
    this.gossip = new Gossip(
      host,
      async () => collectMetrics(this.id, PCR_VERSION, o.dataDir, await vmms, this.shared),
      o.gossipMs ?? GOSSIP_INTERVAL_MS,
      (m) => this.compareTiming(m),
    );
    this.api = {
      id: this.id,
      node,
      host,
      gossip: this.gossip,
      log: this.log,
      store: () => this.store,
      supervisor: () => this.supervisor,
      fetchProgress: new Map<string, FetchProgress>(),
      addrsOf: (id) => this.addrsOf(id),
      learnAddrs: (id, addrs) => this.extraAddrs.set(id, addrs),
      submit: (c) => this.submit(c),
      read: (q, stale) => this.read(q, stale),
      change: (type, id) => this.change(type, id),
      request: (addrs, req) => this.request(addrs, req),
      removedWhy: () => this.removedWhy,
      quorumProblem: () => this.quorumProblem(),
    };
    this.membership = new MembershipExecutor(this.membershipPorts(), {
      ...MEMBERSHIP_DEFAULTS,
      maxVoters: o.maxVoters ?? DAEMON_DEFAULTS.maxVoters,
    });
    this.placement = this.placementDuty(node, vmms);
    this.rollouts = new RolloutDuty({
      sm: () => node.sm,
      leader: () => node.leadership().lead === this.id,
      submit: async (c) => {
        const out = await this.submit(c);
        return out.ok ? out.result : { ok: false, code: 'invalid', message: out.message };
      },
      now: Date.now,
      // The evaluation at the next change by time alone (a wave's instances reaching minHealthyMs).
      after: (ms, f) => {
        const t = setTimeout(() => {
          if (!this.stopping) f();
        }, ms);
        t.unref();
        return () => clearTimeout(t);
      },
      log: this.log,
    });
  }

  private placementDuty(node: RaftNode, vmms: Promise<string[]>): PlacementDuty {
    const o = this.o;
    const machine = nodeRegistration(o.reserveCpus ?? 0, o.reserveMemoryMiB ?? 0);
    let backends: string[] | undefined;
    void vmms.then((b) => {
      backends = b;
    });
    return new PlacementDuty({
      self: this.id,
      tickMs: this.timing.tickMs,
      ...this.shared,
      sm: () => node.sm,
      raft: () => ({ leader: node.leadership().lead === this.id, ...node.contact() }),
      counted: () => this.membership.counted(),
      // The machine's cores and memory are read once: a node registers what it had at start
      // (docs/scheduling.md), and the duty asks every 300 ms.
      registration: () => ({ ...machine, labels: o.labels ?? {}, backends }),
      submit: async (c) => {
        const out = await this.submit(c);
        return out.ok ? out.result : { ok: false, code: 'invalid', message: out.message };
      },
      barrier: async () => (await this.read({ op: 'members' }, false)).ok,
      now: Date.now,
      pokeAgent: () => this.agent?.poke(),
      log: this.log,
    });
  }

  static async start(o: DaemonOptions): Promise<Daemon> {
    let seeds = o.seeds ?? [];
    const timing = daemonRaftTiming(o);
    const clock = raftTimingProblem(timing, timing.tickMs);
    if (clock !== undefined) throw new Error(clock);
    const fencing = fencingProblem(sharedTimingOf(o, timing));
    if (fencing !== undefined) throw new Error(fencing);
    const reserve = reserveProblem(o.reserveCpus ?? 0, o.reserveMemoryMiB ?? 0);
    if (reserve !== undefined) throw new Error(reserve);
    if (o.rejoin === true && seeds.length === 0) {
      throw new Error('--rejoin joins as a new node through a member: give --seed');
    }
    await mkdir(o.dataDir, { recursive: true, mode: 0o700 });
    // The LevelDB lock first: a second process on this data dir stops here, having touched nothing.
    const { disk, records } = await LevelDisk.open(join(o.dataDir, 'raft'));
    let host: Host | undefined;
    let d: Daemon | undefined;
    try {
      if (o.rejoin === true) await wipeIdentity(o, disk, records);
      const fresh = records.size === 0;
      if (fresh && seeds.length > 0) await keepJoinSeeds(o.dataDir, seeds);
      else if (fresh) {
        // Stopped before its join brought any entry: join again, never bootstrap (join_seeds.ts).
        seeds = await keptJoinSeeds(o.dataDir);
        if (seeds.length > 0) {
          o.logger.info({ seeds }, 'no log yet: joining through the seeds of an earlier start');
        }
      }
      const privateKey = await loadOrCreatePeerKey(o.dataDir);
      const psk = await loadOrCreateSecret(o.dataDir, o.secretFile, fresh && seeds.length === 0);
      const book = new AddrBook(o.dataDir);
      host = await listenWhereWeWere(o, book, (listen) =>
        createHost({
          privateKey,
          psk,
          listen,
          ...(o.advertise !== undefined ? { advertise: o.advertise } : {}),
          gossip: true,
        }),
      );
      const storage = DurableStorage.recover(records);
      if (fresh && seeds.length === 0) {
        bootstrap(storage.mem, [host.peerId.toString()]);
        await new Promise<void>((res, rej) =>
          disk.write(DurableStorage.initialOps(storage.mem), (e) => (e ? rej(e) : res())),
        );
        o.logger.info({ id: host.peerId.toString() }, 'bootstrapped a new cluster');
      }
      d = new Daemon(o, host, disk, storage, book);
      for (const s of seeds) {
        const ma = multiaddr(s);
        const id = ma.getComponents().find((c) => c.name === 'p2p')?.value;
        if (id !== undefined) {
          d.extraAddrs.set(id, [ma]);
          book.remember(id, [ma.decapsulateCode(421).toString()]);
        }
      }
      await d.run();
      return d;
    } catch (e) {
      await d?.agent?.stop().catch(() => {});
      await d?.supervisor?.close().catch(() => {});
      await d?.store?.close().catch(() => {});
      d?.metricsServer?.close();
      await d?.localApi?.close();
      if (host !== undefined) await Promise.resolve(host.stop()).catch(() => {});
      await disk.close().catch(() => {});
      throw e;
    }
  }

  private async run(): Promise<void> {
    await serveInstance(this.host, this.nonce);
    await this.host.handle(
      API_PROTOCOL,
      (stream, connection) => {
        serveExchange(stream, (req) => route(this.api, req, connection)).catch((e: Error) =>
          this.log.debug({ err: e.message }, 'api exchange failed'),
        );
      },
      {
        maxInboundStreams: API_STREAMS_PER_CONNECTION_MAX,
        maxOutboundStreams: API_STREAMS_PER_CONNECTION_MAX,
      },
    );
    await this.host.handle(
      API_SESSION_PROTOCOL,
      (stream, connection) => {
        serveSession(stream, (req) => route(this.api, req, connection)).catch((e: Error) =>
          this.log.debug({ err: e.message }, 'api session failed'),
        );
      },
      {
        maxInboundStreams: API_STREAMS_PER_CONNECTION_MAX,
        maxOutboundStreams: API_STREAMS_PER_CONNECTION_MAX,
      },
    );
    // Before any Raft traffic: refuse to run beside another live process with our identity.
    await this.checkUnique();
    const cacheAddr = this.o.cacheAddr ?? '127.0.0.1:0';
    const [chost, askedCachePort] = cacheAddr === 'off' ? ['', 0] : splitHostPort(cacheAddr);
    const cport = cacheAddr === 'off' ? 0 : await this.stickyPort('cache', chost, askedCachePort);
    // NARs between members also go over a TCP listener of their own (docs/store.md, D41).
    const bulkHost = bulkHostOf(this.o.listen);
    this.store = await StoreService.start({
      dataDir: this.o.dataDir,
      host: this.host,
      peerId: this.id,
      mode: this.o.store ?? 'auto',
      nixAvailable: which('nix') !== undefined,
      ...(this.o.storeMaxBytes !== undefined ? { localMaxBytes: this.o.storeMaxBytes } : {}),
      ...(cacheAddr !== 'off' ? { cache: { host: chost, port: cport } } : {}),
      trustedKeys: this.o.trustedKeys ?? [],
      cacheAuth: {
        lookup: (sha256) => this.node.sm.tokens.byHash(sha256),
        readNeedsToken: this.o.cacheAuth === 'read',
      },
      ...(this.o.cacheCompression !== undefined
        ? { cacheCompression: this.o.cacheCompression }
        : {}),
      upstreams: this.o.upstreams ?? [],
      peers: () => this.otherMembers(),
      // A cache miss does not wait for members the leader marked down (docs/store.md).
      down: (id) => this.node.sm.nodes.get(id)?.down === true,
      // The runners of the VMs placed here, and every deployment's known-good boot closures (a
      // rollback or an auto-revert must find them: docs/deploy.md).
      pins: () => [
        ...this.node.sm.vms
          .list(this.id)
          .flatMap((v) => (v.spec.runner !== undefined ? [v.spec.runner] : [])),
        ...knownGoodRoots(this.node.sm.deployments.list()),
      ],
      addrsOf: (id) => this.addrsOf(id),
      ...(bulkHost !== undefined ? { bulkHost } : {}),
      log: this.log,
      ...(this.o.nixEnv !== undefined ? { env: this.o.nixEnv } : {}),
    });
    await this.startVms();
    await this.transport.start();
    this.gossip.start();
    this.ticker = setInterval(() => this.node.tick(), this.timing.tickMs);
    this.reconciler = setInterval(() => void this.reconcile(), DAEMON_DEFAULTS.reconcileMs);
    const [mhost, askedMetricsPort] = splitHostPort(this.o.metricsAddr ?? '127.0.0.1:0');
    const mport = await this.stickyPort('metrics', mhost, askedMetricsPort);
    const served = await serveMetrics(mhost, mport, () => this.renderMetrics());
    this.metricsServer = served.server;
    this.metricsUrl = served.url;
    this.book.setPort('metrics', Number(new URL(served.url).port));
    if (this.store.cacheUrl !== undefined)
      this.book.setPort('cache', Number(new URL(this.store.cacheUrl).port));
    // Optional: without it (a data dir path too long for a socket), local pcr uses libp2p.
    this.localApi = await serveLocalSocket(join(this.o.dataDir, LOCAL_SOCKET_FILE), (req) =>
      route(this.api, req, undefined),
    ).catch((e: Error) => {
      this.log.warn({ err: e.message }, 'no local API socket: pcr here will use libp2p');
      return undefined;
    });
    const addrs = this.addrs();
    const socket = this.localApi?.path;
    // Replaced whole: a pcr reading it never sees half a file. Not synced: it describes this
    // process, and a machine that lost power has none to describe.
    await writeFileAtomic(
      join(this.o.dataDir, NODE_INFO_FILE),
      `${JSON.stringify({ id: this.id, addrs, metrics: this.metricsUrl, cache: this.store.cacheUrl, socket, pid: process.pid }, null, 2)}\n`,
    );
    this.log.info({ id: this.id, addrs }, 'node started');
  }

  /**
   * Asks the members we know (and the seeds) whether another live process holds our peer ID;
   * throws DuplicateInstanceError if one does. Best effort by design: members that do not answer
   * within INSTANCE_CHECK_TIMEOUT_MS are not evidence either way (docs/protocols.md); the bound
   * keeps a cold restart, with members still down, from waiting long at start.
   */
  private async checkUnique(): Promise<void> {
    const targets = new Map<NodeId, Multiaddr[]>(this.extraAddrs);
    for (const m of this.membersTable()) {
      if (m.id !== this.id) targets.set(m.id, this.addrsOf(m.id));
    }
    targets.delete(this.id);
    const answers = await Promise.all(
      [...targets].map(async ([id, addrs]) => {
        if (addrs.length === 0) return undefined;
        const r = await apiRequest(
          this.host,
          addrs,
          { op: 'instance.check', id: this.id, nonce: this.nonce },
          INSTANCE_CHECK_TIMEOUT_MS,
        ).catch(() => undefined);
        return r?.ok === true && typeof r.duplicate === 'string'
          ? { id, at: r.duplicate }
          : undefined;
      }),
    );
    const dup = answers.find((a) => a !== undefined);
    if (dup !== undefined) {
      throw new DuplicateInstanceError(
        `another process is already running as this node (peer ID ${this.id}), at ${dup.at} as ` +
          `seen by member ${dup.id}: was this data dir copied from a running node? Stop that ` +
          'process, or start this one with a new --data-dir to join as a new member',
      );
    }
  }

  /** This node's name in the member table, if it was given one. */
  get name(): string | undefined {
    return this.o.name;
  }

  /**
   * This node's announced addresses. libp2p rebuilds them on every call (about a tenth of an idle
   * follower's CPU when the 300 ms loop asked twice a round), so they are kept until libp2p says
   * they changed (`self:peer:update`) or ADDRS_CACHE_MS passed.
   */
  addrs(): string[] {
    const now = Date.now();
    if (this.addrsCache === undefined || now - this.addrsCache.atMs >= ADDRS_CACHE_MS) {
      this.addrsCache = { atMs: now, addrs: this.host.getMultiaddrs().map(String) };
    }
    return [...this.addrsCache.addrs];
  }

  /** The member table's addresses of a peer first, then those learned aside and remembered. */
  private addrsOf(id: NodeId): Multiaddr[] {
    const m = this.member(id);
    const seen = new Set<string>();
    const out: Multiaddr[] = [];
    // libp2p dials a list only if every address names the same peer: name it on each.
    const add = (a: Multiaddr | string): void => {
      const bare = (typeof a === 'string' ? multiaddr(a) : a).decapsulateCode(421);
      const key = bare.toString();
      if (!seen.has(key)) {
        seen.add(key);
        out.push(bare.encapsulate(`/p2p/${id}`));
      }
    };
    for (const a of m?.addrs ?? []) add(a);
    for (const a of this.extraAddrs.get(id) ?? []) add(a);
    for (const a of this.book.addrsOf(id)) add(a);
    return out;
  }

  /** Remembers the members' current addresses (and ours), written only when they changed. */
  private rememberAddrs(): void {
    // The member table changes only by applying entries: read it again only after one.
    if (this.node.sm.applied !== this.addrsAppliedSeen) {
      this.addrsAppliedSeen = this.node.sm.applied;
      for (const m of this.membersTable()) {
        if (m.id !== this.id) this.book.remember(m.id, m.addrs);
      }
    }
    this.book.setListen(this.addrs());
    this.book
      .flush()
      .catch((e: Error) => this.log.warn({ err: e.message }, 'address book not written'));
  }

  /**
   * The supervisor (adopting VMs that kept running while the daemon was down) and the agent that
   * reconciles this node's VMs with the replicated VM table (docs/vmm.md).
   */
  private async startVms(): Promise<void> {
    const supervisor = new Supervisor({
      runDir: join(this.o.dataDir, VM_RUN_DIR),
      backends: this.backends,
      onEvent: (e) => this.log.info({ vm: e.name, event: e.kind, detail: e.detail }, 'vm event'),
    });
    const found = await supervisor.recover();
    if (found.length > 0) this.log.info({ vms: found.map((v) => v.name) }, 'VMs found again');
    this.supervisor = supervisor;
    this.agent = new Agent({
      supervisor,
      deps: {
        // A fenced node runs nothing (docs/scheduling.md, "Fencing").
        desiredForThisNode: () =>
          (this.placement.isFenced() ? [] : this.node.sm.vms.list(this.id)).map((v) => ({
            name: v.name,
            spec: v.spec,
            generation: v.generation,
            state: v.desired,
            ...(v.health !== undefined ? { health: v.health } : {}),
          })),
        report: (name, state, reason) => this.reportVm(name, state, reason),
        proposeHealth: (name, generation, verdict, atMs) =>
          this.proposeHealth(name, generation, verdict, atMs),
        // The node's store is the authority on what is here, not the file system: a path on
        // disk that the store does not hold (another tool put it there) is fetched and verified.
        closurePresent: (path) => this.runnable.has(path),
        ensureClosure: async (path, onProgress) => {
          await this.store!.ensureRunnable(path, (p) =>
            onProgress({ bytes: p.bytesDone, paths: p.pathsDone }),
          );
          this.runnable.add(path);
        },
      },
      onError: (what, err) => this.log.warn({ err: err.message }, what),
      // A fenced node's VMs, and a copy the cluster moved away (its replacement may be starting
      // elsewhere), get FENCE_GRACEFUL_MS before the VMM is forced: reconciler.ts stopTimeoutMs.
      stopTimeoutMs: (name, why) =>
        stopTimeoutMs(why, {
          fenced: this.placement.isFenced(),
          wantedElsewhere: this.node.sm.vms.get(name)?.desired === 'running',
          fastMs: FENCE_GRACEFUL_MS,
          gracefulMs: AGENT_STOP_TIMEOUT_MS,
        }),
    });
    // The agent starts once the cluster is known to count this node (reconcile()): a removed
    // node, restarted, must not start VMs the cluster released while it was away.
  }

  /**
   * The port to listen on for an HTTP listener asked for `asked`: a given port as is; for 0, the
   * one this node had last time when it is still free (else 0, with a warning).
   */
  private async stickyPort(name: StickyPort, host: string, asked: number): Promise<number> {
    const last = this.book.port(name);
    if (asked !== 0 || last === undefined) return asked;
    if (await portFree(host, last)) return last;
    this.log.warn({ listener: name, port: last }, 'the port of last time is taken: a new one');
    return 0;
  }

  /** Commits a VM's state as this node's agent sees it, for the VM's current generation. */
  private async reportVm(name: string, state: VmState, reason?: string): Promise<void> {
    const vm = this.node.sm.vms.get(name);
    if (vm === undefined || vm.node !== this.id) return; // removed or moved: nothing to say
    const why =
      reason === undefined
        ? undefined
        : Buffer.from(reason)
            .subarray(0, VM_REASON_BYTES_MAX)
            .toString('utf8')
            .replace(/\uFFFD$/, '');
    const out = await this.submit({
      op: 'vm.report',
      name,
      node: this.id,
      generation: vm.generation,
      state,
      ...(why !== undefined ? { reason: why } : {}),
      atMs: Date.now(),
    });
    if (!out.ok) throw new Error(`report of ${name} ${state} not committed: ${out.message}`);
  }

  /**
   * Commits a health verdict of this node's run of `generation` (vm.health). A stale result (the
   * row moved on, or holds this verdict already) is no error: nothing is left to say.
   */
  private async proposeHealth(
    name: string,
    generation: number,
    verdict: HealthVerdict,
    atMs: number,
  ): Promise<void> {
    const out = await this.submit({
      op: 'vm.health',
      name,
      node: this.id,
      generation,
      healthy: verdict.healthy,
      check: verdict.check,
      ...(verdict.message !== undefined ? { message: verdict.message } : {}),
      atMs,
    });
    // Committed; the state machine's own answer (stale, notFound) needs nothing more from us.
    if (!out.ok) throw new Error(`health of ${name} not committed: ${out.message}`);
  }

  /**
   * Compares a member's gossiped timing values with ours; logs at warn when it starts or stops
   * differing (once per change, not per message).
   */
  private compareTiming(m: NodeMetrics): void {
    if (m.timing === undefined) return;
    const differs = timingDifferences(this.shared, m.timing).join(', ');
    if ((this.timingMismatches.get(m.id) ?? '') === differs) return;
    const fields = { member: this.node.sm.member(m.id)?.name ?? m.id, differs };
    if (differs === '') {
      this.timingMismatches.delete(m.id);
      this.log.info(fields, 'cluster member runs our timing values again');
    } else {
      this.timingMismatches.set(m.id, differs);
      this.log.warn(
        { ...fields, values: 'ours/theirs' },
        'cluster members run other timing values: fencing and elections assume the same (docs/operations.md, "Tuning")',
      );
    }
  }

  /** Current members whose timing values differ from ours (removed ones no longer count). */
  timingMismatchedMembers(): NodeId[] {
    return [...this.timingMismatches.keys()].filter((id) => this.node.sm.member(id) !== undefined);
  }

  /** Peer IDs of the other members (the store asks them for closures). */
  private otherMembers(): string[] {
    return this.membersTable()
      .map((m) => m.id)
      .filter((id) => id !== this.id);
  }

  /**
   * The member table, sorted by ID. It changes only by applying entries, so it is read again only
   * after one: the 300 ms loop and the membership view read it every round.
   */
  private membersTable(): readonly Member[] {
    if (this.membersAt !== this.node.sm.applied) {
      const table = this.node.sm.query({ op: 'members' });
      this.membersRead = table.ok ? (table.members ?? []) : [];
      this.membersAt = this.node.sm.applied;
    }
    return this.membersRead;
  }

  private member(id: NodeId): Member | undefined {
    return this.node.sm.member(id);
  }

  // ---------------------------------------------------------------------------------------------
  // Background duties: join, keep our record current, promote learners.

  /** A member ID as a PeerId, undefined if it is not one; parsed once per ID. */
  private peerIdOf(id: NodeId): PeerId | undefined {
    let peer = this.peerIds.get(id);
    if (peer === undefined) {
      try {
        peer = peerIdFromString(id);
      } catch {
        return undefined;
      }
      // Members come and go rarely; a table past its bound starts again rather than grow.
      if (this.peerIds.size >= PEER_IDS_CACHED_MAX) this.peerIds.clear();
      this.peerIds.set(id, peer);
    }
    return peer;
  }

  /** Dials members we hold no connection to (each at most every memberRedialMs). */
  private keepConnected(): void {
    const now = Date.now();
    for (const m of this.membersTable()) {
      if (m.id === this.id || m.addrs.length === 0) continue;
      if ((this.lastDial.get(m.id) ?? 0) + DAEMON_DEFAULTS.memberRedialMs > now) continue;
      const peer = this.peerIdOf(m.id);
      if (peer === undefined || this.host.getConnections(peer).length > 0) continue;
      this.lastDial.set(m.id, now);
      this.stats.memberRedials++;
      this.host
        .dial(this.addrsOf(m.id), {
          signal: AbortSignal.timeout(DAEMON_DEFAULTS.memberDialTimeoutMs),
        })
        .catch((e: Error) => this.log.debug({ id: m.id, err: e.message }, 'member redial failed'));
    }
  }

  private async reconcile(): Promise<void> {
    if (this.stopping) return;
    this.logLeaderChange();
    this.rememberAddrs();
    this.keepConnected();
    await this.membership.tick().catch((e: Error) => {
      this.log.debug({ err: e.message }, 'membership step failed');
      return undefined;
    });
    await this.placement.tick().catch((e: Error) => {
      this.log.debug({ err: e.message }, 'placement step failed');
    });
    this.rollouts.tick();
    // The agent acts once this node is counted and its state proved current, or once it fenced
    // itself (then it only stops VMs): docs/scheduling.md, "Fencing".
    const mayAct =
      (this.membership.counted() && this.placement.agentMayAct()) || this.placement.isFenced();
    if (!this.agentStarted && !this.stopping && mayAct) {
      this.agentStarted = true;
      this.agent?.start();
    }
  }

  /**
   * One info line when the leader this node knows changes (seen by the 300 ms loop, so a change
   * and its reversal inside one period go unlogged): operators and Jepsen reports read elections
   * from the logs.
   */
  private logLeaderChange(): void {
    const st = this.node.leadership();
    const seen = `${st.lead}@${st.term}`;
    if (seen === this.leaderSeen) return;
    this.leaderSeen = seen;
    if (st.lead === '') this.log.info({ term: st.term }, 'no leader known');
    else this.log.info({ leader: st.lead, term: st.term, self: st.lead === this.id }, 'leader');
  }

  /** The ports of the membership executor (node/membership/executor.ts). */
  private membershipPorts(): MembershipPorts {
    return {
      self: this.id,
      status: () => {
        const raft = this.node.rn.raft;
        const st = this.node.status();
        return {
          ...st,
          lastIndex: this.node.storage.lastIndex(),
          leaderSilent:
            st.state !== 'leader' &&
            raft.electionElapsed >= LEADER_SILENT_ELECTION_TIMEOUTS * raft.electionTimeout,
          // Nothing in its log: never part of a cluster. Not `applied === 0`: a member restarted
          // with a log but no commit index it knows of has applied nothing either (and, removed
          // meanwhile, would join again instead of finding out).
          fresh: this.node.storage.lastIndex() === 0,
        };
      },
      record: () => this.member(this.id),
      removedHere: () => this.node.sm.isRemoved(this.id),
      addrs: () => this.addrs(),
      name: () => {
        if (this.o.name === undefined) return undefined;
        return uniqueName(this.o.name, this.id, this.membersTable());
      },
      peers: () => this.peers(),
      ask: (id, req, timeoutMs) => {
        const to = this.addrsOf(id);
        if (to.length === 0) return Promise.reject(new Error(`no address for ${id}`));
        return apiRequest(this.host, to, req, timeoutMs ?? DAEMON_DEFAULTS.peerRequestTimeoutMs);
      },
      submit: (c) => this.submit(c),
      addVoter: (id) => this.change('addVoter', id),
      removed: (why) => void this.leaveAsRemoved(why),
      now: () => Date.now(),
      log: this.log,
    };
  }

  /** Members this node knows (configuration and table), then the seeds; never itself. */
  private peers(): NodeId[] {
    const st = this.node.status();
    const ids = new Set([...st.config.voters, ...st.config.learners, ...this.otherMembers()]);
    for (const id of this.extraAddrs.keys()) ids.add(id);
    ids.delete(this.id);
    return [...ids];
  }

  /** "no quorum: ..." when this member reaches fewer than a majority of the voters. */
  private quorumProblem(): string | undefined {
    const st = this.node.status();
    return quorumProblem(this.id, st.config.voters, (id) => {
      const peer = this.peerIdOf(id);
      return peer !== undefined && this.host.getConnections(peer).length > 0;
    });
  }

  /**
   * The cluster removed this node: stop the VMs it runs (the cluster released them), then Raft
   * and everything else; `removal` resolves with the reason for `pcr node start` to exit with.
   */
  private async leaveAsRemoved(why: string): Promise<void> {
    this.removedWhy = why; // the executor said so, once
    await this.agent?.stop().catch(() => {});
    await this.supervisor?.stopAll().catch((e: Error) => {
      this.log.warn({ err: e.message }, 'stopping the VMs failed');
    });
    await this.stop();
    this.settleRemoval(why);
  }

  // ---------------------------------------------------------------------------------------------
  // Client API.

  private submit(c: Command): Promise<Outcome> {
    const start = performance.now();
    return new Promise((r) =>
      this.node.submit(c, (o) => {
        if (o.ok) this.applyLatency.observe((performance.now() - start) / 1000);
        r(o);
      }),
    );
  }
  private read(q: Query, stale: boolean): Promise<Outcome> {
    return new Promise((r) => this.node.read(q, r, { stale }));
  }
  private change(type: 'addLearner' | 'addVoter' | 'removeNode', nodeId: NodeId): Promise<Outcome> {
    return new Promise((r) => this.node.changeMembership({ type, nodeId }, r));
  }

  private request(addrs: Multiaddr[], req: Request): Promise<ApiResponse> {
    return apiRequest(this.host, addrs, req, DAEMON_DEFAULTS.peerRequestTimeoutMs);
  }

  /** The voter a stopping leader hands over to (membership/decide.ts transferee). */
  private bestTransferee(): NodeId | undefined {
    const st = this.node.status();
    const match =
      st.progress === undefined
        ? undefined
        : Object.fromEntries(Object.entries(st.progress).map(([id, p]) => [id, p.match]));
    return transferee(this.id, st.config.voters, match);
  }

  renderMetrics(): string {
    const samples = readMetrics(NODE_METRICS, {
      status: this.node.status(),
      node: this.node.stats,
      transport: this.transport.stats,
      gossip: this.gossip.stats,
      daemon: {
        memberRedials: this.stats.memberRedials,
        timingMismatchedMembers: this.timingMismatchedMembers().length,
      },
      store: this.store?.counters ?? newCounters(),
      tokenUses: this.store?.tokenUses ?? new Map(),
    });
    return `${renderSamples(samples)}\n${this.applyLatency.render('pcr_apply_latency_seconds', 'From proposal to apply on this member, for writes through it.')}`;
  }

  // ---------------------------------------------------------------------------------------------

  /** Stops cleanly; a leader first hands leadership to the most caught-up voter. */
  async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    clearInterval(this.reconciler);
    this.rollouts.stop();
    this.gossip.stop();
    const st = this.node.status();
    if (!this.node.isStopped && st.state === 'leader') {
      const to = this.bestTransferee();
      if (to !== undefined) {
        this.node.transferLeader(to);
        const moved = await waitFor(() => this.node.status().state !== 'leader', TRANSFER_WAIT_MS);
        if (moved) this.log.info({ to }, 'handed leadership over before stopping');
        else
          this.log.warn(
            { to, waitedMs: TRANSFER_WAIT_MS },
            'leadership transfer did not finish in time; stopping anyway (the others elect)',
          );
      }
    }
    clearInterval(this.ticker);
    this.metricsServer?.close();
    await this.localApi?.close();
    // The VMs keep running: the next daemon on this data dir adopts them.
    await this.agent?.stop().catch(() => {});
    await this.supervisor?.close().catch(() => {});
    await this.store?.close().catch(() => {});
    this.node.stop();
    await this.transport.close();
    await this.host.stop();
    await this.disk.close();
    await rm(join(this.o.dataDir, NODE_INFO_FILE), { force: true });
    this.log.info('node stopped');
  }
}

/** --rejoin: deletes every Raft record (one synced batch) and the peer key; keeps the secret. */
async function wipeIdentity(
  o: DaemonOptions,
  disk: LevelDisk,
  records: Map<string, Uint8Array>,
): Promise<void> {
  const ops = [...records.keys()].map((key) => ({ type: 'del' as const, key }));
  await new Promise<void>((res, rej) => disk.write(ops, (e) => (e ? rej(e) : res())));
  records.clear();
  await rm(join(o.dataDir, PEER_KEY_FILE), { force: true });
  o.logger.info('wiped the Raft state and peer identity: joining as a new node');
}

export { VM_LOGS_BYTES_MAX } from './api/vm_handlers.ts';
/** Where the node's VMs live under the data dir (the supervisor's run dir). */
export const VM_RUN_DIR = 'vms';

function splitHostPort(addr: string): [string, number] {
  const i = addr.lastIndexOf(':');
  const port = Number(addr.slice(i + 1));
  if (i <= 0 || !Number.isInteger(port) || port < 0 || port > 65535) {
    throw new Error(`metrics address ${JSON.stringify(addr)} is not host:port`);
  }
  return [addr.slice(0, i), port];
}

/**
 * Starts the host on the addresses this node had last time where the options leave the port to
 * chance (tcp/0); if one of those ports is taken now, on fresh ports, saying so: the members then
 * learn the new addresses when this node announces them.
 */
async function listenWhereWeWere(
  o: DaemonOptions,
  book: AddrBook,
  create: (listen: readonly string[]) => Promise<Host>,
): Promise<Host> {
  const sticky = stickyListen(o.listen, book.listen);
  if (sticky.join() === o.listen.join()) return create(o.listen);
  try {
    return await create(sticky);
  } catch (e) {
    o.logger.warn(
      { err: (e as Error).message, wanted: sticky },
      'the addresses this node had last time are taken; listening on new ports',
    );
    return create(o.listen);
  }
}
