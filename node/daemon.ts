// The daemon: one member of a cluster. It wires the node core (RaftNode) to the real world: libp2p
// for Raft and the API, LevelDB for the log, a ticker for time. Without state and without a seed
// it bootstraps a cluster of one; with a seed it asks to join (any member forwards the change to
// the leader) and starts as a learner, which the leader promotes to voter once caught up while
// there are fewer than maxVoters voters. Roles are assigned, never configured.

import './polyfill.ts';
import { randomInt } from 'node:crypto';
import { mkdir, rename, rm, writeFile } from 'node:fs/promises';
import type { Server } from 'node:http';
import { join } from 'node:path';
import type { Connection, PeerId } from '@libp2p/interface';
import { peerIdFromString } from '@libp2p/peer-id';
import { type Multiaddr, multiaddr } from '@multiformats/multiaddr';
import type { Logger } from 'pino';
import { bootstrap, type NodeId, type RandomSource } from '../consensus/index.ts';
import { Agent } from './agent/agent.ts';
import { LOCAL_SOCKET_FILE, type LocalSocketServer, serveLocalSocket } from './api/local_socket.ts';
import { API_SESSION_PROTOCOL, serveSession } from './api/session.ts';
import {
  API_PROTOCOL,
  API_STREAMS_PER_CONNECTION_MAX,
  type ApiRequest,
  type ApiResponse,
  apiError,
  apiRequest,
  serveExchange,
} from './api/wire.ts';
import { loadOrCreatePeerKey, loadOrCreateSecret, NODE_INFO_FILE } from './identity.ts';
import { JOIN_RETRY_MS_MAX, JoinBackoff } from './join_backoff.ts';
import { Histogram, renderSamples, type Sample, serveMetrics } from './metrics.ts';
import { uniqueName } from './names.ts';
import { collectMetrics, GOSSIP_INTERVAL_MS, Gossip } from './p2p/gossip.ts';
import { createHost, type Host } from './p2p/host.ts';
import {
  DuplicateInstanceError,
  findOtherInstance,
  INSTANCE_CHECK_TIMEOUT_MS,
  isInstanceNonce,
  newInstanceNonce,
  serveInstance,
} from './p2p/instance.ts';
import { RaftTransport } from './p2p/raft_transport.ts';
import { LevelDisk } from './raft/level_disk.ts';
import { type Outcome, RaftNode } from './raft/node.ts';
import { DurableStorage } from './raft/storage.ts';
import type { Command, Member, Query } from './state/machine.ts';
import { VM_REASON_BYTES_MAX, type VmState } from './state/vms.ts';
import type { FetchProgress } from './store/fetch.ts';
import { type StoreMode, StoreService } from './store/service.ts';
import { PCR_VERSION } from './version.ts';
import type { Accelerator, Backend, BackendName, Capabilities } from './vmm/backend.ts';
import { defaultBackends, probeBackends } from './vmm/probe.ts';
import { Supervisor } from './vmm/supervisor.ts';
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
  readonly tickMs?: number;
  readonly electionTicks?: number;
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
  /** Environment for the nix CLI (tests: offline settings). */
  readonly nixEnv?: NodeJS.ProcessEnv;
  /** QEMU's accelerator: `auto` proves KVM by booting a kernel under it, else TCG. */
  readonly accel?: 'auto' | Accelerator;
  readonly logger: Logger;
}

export const DAEMON_DEFAULTS = {
  maxVoters: 5,
  tickMs: 50,
  electionTicks: 6,
  /** How often the background loop joins, promotes and refreshes this member's record. */
  reconcileMs: 300,
  /** A learner this close to the leader's last index is caught up. */
  promoteLagEntries: 20,
  /** A join or announce sent to another member gives up after this long. */
  peerRequestTimeoutMs: 6000,
  /** How long a leader waits for a transfer before it stops anyway. */
  transferWaitMs: 2000,
  /**
   * A member with no connection is dialed again at most this often. libp2p closes connections
   * whose pings time out and never redials; Raft redials only the peers it sends to (leader to
   * followers), while gossip wants every member connected.
   */
  memberRedialMs: 2000,
  /** One redial gives up after this long. */
  memberDialTimeoutMs: 3000,
  /** A member asked to fetch a closure (store push) gets this long. */
  storeFetchTimeoutMs: 3_600_000,
} as const;

export { PCR_VERSION };

const cryptoRandom: RandomSource = { intn: (n) => randomInt(n) };

export class Daemon {
  readonly id: NodeId;
  readonly host: Host;
  readonly node: RaftNode;
  private readonly o: DaemonOptions;
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
  private ticker: NodeJS.Timeout | undefined;
  private reconciler: NodeJS.Timeout | undefined;
  private busy = false;
  private readonly joinBackoff = new JoinBackoff();
  private stopping = false;
  /** This process's instance nonce: tells it apart from a copy running with the same identity. */
  private readonly nonce = newInstanceNonce();
  /** When each member was last redialed (keepConnected). */
  private readonly lastDial = new Map<NodeId, number>();
  readonly stats = { memberRedials: 0 };
  /** The node's store, its P2P server and its binary cache (started in run()). */
  store: StoreService | undefined;
  /** Closure fetches started through the API, by the client's progress id. */
  private readonly fetchProgress = new Map<string, FetchProgress>();
  /** The VMM backends, what they can do here (probed once, in the background), the VMs. */
  private readonly backends: Record<BackendName, Backend>;
  readonly capabilities: Promise<Capabilities>;
  supervisor: Supervisor | undefined;
  agent: Agent | undefined;
  /** Runner closures this process made sure of (in the store, verified, on disk). */
  private readonly runnable = new Set<string>();
  /** The VM table's change count the agent last saw (it is poked when that moves). */
  private vmChangesSeen = -1;

  private constructor(o: DaemonOptions, host: Host, disk: LevelDisk, storage: DurableStorage) {
    this.o = o;
    this.log = o.logger;
    this.host = host;
    this.disk = disk;
    this.id = host.peerId.toString();
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
      electionTicks: o.electionTicks ?? DAEMON_DEFAULTS.electionTicks,
      heartbeatTicks: 1,
      requestTimeoutTicks: Math.ceil(5000 / (o.tickMs ?? DAEMON_DEFAULTS.tickMs)),
      ...(o.snapshotEntries !== undefined ? { snapshotEntries: o.snapshotEntries } : {}),
      ...(o.keepEntries !== undefined ? { keepEntries: o.keepEntries } : {}),
      onApply: () => {
        if (node === undefined) return; // replaying the log inside RaftNode's constructor
        const changes = node.sm.vms.changes;
        if (changes !== this.vmChangesSeen) {
          this.vmChangesSeen = changes;
          this.agent?.poke();
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
      async () => collectMetrics(this.id, PCR_VERSION, o.dataDir, await vmms),
      o.gossipMs ?? GOSSIP_INTERVAL_MS,
    );
  }

  static async start(o: DaemonOptions): Promise<Daemon> {
    await mkdir(o.dataDir, { recursive: true, mode: 0o700 });
    // The LevelDB lock first: a second process on this data dir stops here, having touched nothing.
    const { disk, records } = await LevelDisk.open(join(o.dataDir, 'raft'));
    let host: Host | undefined;
    let d: Daemon | undefined;
    try {
      const fresh = records.size === 0;
      const seeds = o.seeds ?? [];
      const privateKey = await loadOrCreatePeerKey(o.dataDir);
      const psk = await loadOrCreateSecret(o.dataDir, o.secretFile, fresh && seeds.length === 0);
      host = await createHost({
        privateKey,
        psk,
        listen: o.listen,
        ...(o.advertise !== undefined ? { advertise: o.advertise } : {}),
        gossip: true,
      });
      const storage = DurableStorage.recover(records);
      if (fresh && seeds.length === 0) {
        bootstrap(storage.mem, [host.peerId.toString()]);
        await new Promise<void>((res, rej) =>
          disk.write(DurableStorage.initialOps(storage.mem), (e) => (e ? rej(e) : res())),
        );
        o.logger.info({ id: host.peerId.toString() }, 'bootstrapped a new cluster');
      }
      d = new Daemon(o, host, disk, storage);
      for (const s of seeds) {
        const ma = multiaddr(s);
        const id = ma.getComponents().find((c) => c.name === 'p2p')?.value;
        if (id !== undefined) d.extraAddrs.set(id, [ma]);
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
        serveExchange(stream, (req) => this.handle(req, connection)).catch((e: Error) =>
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
        serveSession(stream, (req) => this.handle(req, connection)).catch((e: Error) =>
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
    const [chost, cport] = cacheAddr === 'off' ? ['', 0] : splitHostPort(cacheAddr);
    this.store = await StoreService.start({
      dataDir: this.o.dataDir,
      host: this.host,
      peerId: this.id,
      mode: this.o.store ?? 'auto',
      nixAvailable: which('nix') !== undefined,
      ...(this.o.storeMaxBytes !== undefined ? { localMaxBytes: this.o.storeMaxBytes } : {}),
      ...(cacheAddr !== 'off' ? { cache: { host: chost, port: cport } } : {}),
      trustedKeys: this.o.trustedKeys ?? [],
      peers: () => this.otherMembers(),
      pins: () =>
        this.node.sm.vms
          .list(this.id)
          .flatMap((v) => (v.spec.runner !== undefined ? [v.spec.runner] : [])),
      addrsOf: (id) => this.addrsOf(id),
      log: this.log,
      ...(this.o.nixEnv !== undefined ? { env: this.o.nixEnv } : {}),
    });
    await this.startVms();
    await this.transport.start();
    this.gossip.start();
    const tickMs = this.o.tickMs ?? DAEMON_DEFAULTS.tickMs;
    this.ticker = setInterval(() => this.node.tick(), tickMs);
    this.reconciler = setInterval(() => void this.reconcile(), DAEMON_DEFAULTS.reconcileMs);
    const [mhost, mport] = splitHostPort(this.o.metricsAddr ?? '127.0.0.1:0');
    const served = await serveMetrics(mhost, mport, () => this.renderMetrics());
    this.metricsServer = served.server;
    this.metricsUrl = served.url;
    // Optional: without it (a data dir path too long for a socket), local pcr uses libp2p.
    this.localApi = await serveLocalSocket(join(this.o.dataDir, LOCAL_SOCKET_FILE), (req) =>
      this.handle(req, undefined),
    ).catch((e: Error) => {
      this.log.warn({ err: e.message }, 'no local API socket: pcr here will use libp2p');
      return undefined;
    });
    const addrs = this.addrs();
    const socket = this.localApi?.path;
    // Written whole, then renamed: a pcr reading it never sees half a file.
    const info = join(this.o.dataDir, NODE_INFO_FILE);
    await writeFile(
      `${info}.tmp`,
      `${JSON.stringify({ id: this.id, addrs, metrics: this.metricsUrl, cache: this.store.cacheUrl, socket, pid: process.pid }, null, 2)}\n`,
    );
    await rename(`${info}.tmp`, info);
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
    const table = this.node.sm.query({ op: 'members' });
    for (const m of table.ok ? (table.members ?? []) : []) {
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

  private async handleInstanceCheck(
    req: ApiRequest,
    connection: Connection | undefined,
  ): Promise<ApiResponse> {
    if (connection === undefined) return apiError('INVALID', 'instance.check comes over libp2p');
    if (req.id !== connection.remotePeer.toString() || !isInstanceNonce(req.nonce)) {
      return apiError('INVALID', "instance.check takes the asker's own id and a nonce");
    }
    const at = await findOtherInstance(this.host, connection, req.nonce);
    if (at !== undefined) {
      this.log.warn({ id: req.id, at }, 'refused a second process with the identity of a member');
    }
    return { ok: true, duplicate: at ?? false };
  }

  addrs(): string[] {
    return this.host.getMultiaddrs().map(String);
  }

  /** This node's name in the member table, if it was given one. */
  get name(): string | undefined {
    return this.o.name;
  }

  private addrsOf(id: NodeId): Multiaddr[] {
    const m = this.member(id);
    const fromTable = m === undefined ? [] : m.addrs.map((a) => multiaddr(a));
    return [...fromTable, ...(this.extraAddrs.get(id) ?? [])];
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
        desiredForThisNode: () =>
          this.node.sm.vms.list(this.id).map((v) => ({
            name: v.name,
            spec: v.spec,
            generation: v.generation,
            state: v.desired,
          })),
        report: (name, state, reason) => this.reportVm(name, state, reason),
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
    });
    this.agent.start();
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

  /** Peer IDs of the other members (the store asks them for closures). */
  private otherMembers(): string[] {
    const table = this.node.sm.query({ op: 'members' });
    return (table.ok ? (table.members ?? []) : []).map((m) => m.id).filter((id) => id !== this.id);
  }

  private member(id: NodeId): Member | undefined {
    return this.node.sm.member(id);
  }

  // ---------------------------------------------------------------------------------------------
  // Background duties: join, keep our record current, promote learners.

  /** Dials members we hold no connection to (each at most every memberRedialMs). */
  private keepConnected(): void {
    const now = Date.now();
    const table = this.node.sm.query({ op: 'members' });
    for (const m of table.ok ? (table.members ?? []) : []) {
      if (m.id === this.id || m.addrs.length === 0) continue;
      if ((this.lastDial.get(m.id) ?? 0) + DAEMON_DEFAULTS.memberRedialMs > now) continue;
      let peer: PeerId;
      try {
        peer = peerIdFromString(m.id);
      } catch {
        continue;
      }
      if (this.host.getConnections(peer).length > 0) continue;
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
    if (this.busy || this.stopping) return;
    this.keepConnected();
    this.busy = true;
    try {
      const st = this.node.status();
      const inConfig = st.config.voters.includes(this.id) || st.config.learners.includes(this.id);
      if (!inConfig && st.lead === '') return await this.join();
      const me = this.member(this.id);
      const addrs = this.addrs();
      if (st.lead === '') {
        // Restarted on new addresses, members dial the old ones and we hear from no leader: tell a
        // member we can reach, which records our addresses through Raft.
        if (me !== undefined && me.addrs.join() !== addrs.join()) await this.announce(addrs);
        return;
      }
      const role = st.config.voters.includes(this.id) ? 'voter' : 'learner';
      const table = this.node.sm.query({ op: 'members' });
      const name =
        this.o.name === undefined
          ? undefined
          : uniqueName(this.o.name, this.id, table.ok ? (table.members ?? []) : []);
      if (
        me === undefined ||
        me.role !== role ||
        me.addrs.join() !== addrs.join() ||
        me.name !== name
      ) {
        await this.submit({
          op: 'member.put',
          member: { id: this.id, addrs, role, ...(name !== undefined ? { name } : {}) },
        });
        return;
      }
      if (st.state === 'leader') await this.promote();
    } catch (e) {
      this.log.debug({ err: (e as Error).message }, 'reconcile failed');
    } finally {
      this.busy = false;
    }
  }

  private async join(): Promise<void> {
    if (!this.joinBackoff.due(Date.now())) return;
    for (const [id, addrs] of this.extraAddrs) {
      const resp = await this.request(addrs, {
        op: 'join',
        id: this.id,
        addrs: this.addrs(),
        ...(this.o.name !== undefined ? { name: this.o.name } : {}),
      }).catch((e: Error) => apiError('UNAVAILABLE', e.message));
      if (resp.ok) {
        this.joinBackoff.succeeded();
        this.log.info({ seed: id }, 'join accepted; catching up as a learner');
        return;
      }
      const seed = addrs.map(String).join(' ');
      const f = this.joinBackoff.failed(`${id} ${resp.error.code}`, Date.now());
      const what =
        resp.error.code === 'UNAVAILABLE'
          ? 'waiting for the seed to be reachable'
          : 'waiting for the seed to accept the join';
      const fields = {
        seed,
        code: resp.error.code,
        reason: resp.error.message,
        retryMs: f.retryMs,
      };
      if (f.changed)
        this.log.warn(
          fields,
          `${what} (retrying with back-off up to ${JOIN_RETRY_MS_MAX / 1000} s)`,
        );
      else this.log.debug(fields, 'join not accepted yet');
    }
  }

  private async announce(addrs: string[]): Promise<void> {
    const st = this.node.status();
    for (const id of [...st.config.voters, ...st.config.learners]) {
      if (id === this.id) continue;
      const to = this.addrsOf(id);
      if (to.length === 0) continue;
      const resp = await this.request(to, { op: 'join', id: this.id, addrs }).catch(
        () => undefined,
      );
      if (resp?.ok === true) {
        this.log.info({ via: id }, 'announced new addresses');
        return;
      }
    }
  }

  private async promote(): Promise<void> {
    const st = this.node.status();
    const maxVoters = this.o.maxVoters ?? DAEMON_DEFAULTS.maxVoters;
    if (st.config.voters.length >= maxVoters) return;
    const last = this.node.storage.lastIndex();
    for (const id of st.config.learners) {
      const pr = st.progress?.[id];
      if (pr === undefined || pr.match + DAEMON_DEFAULTS.promoteLagEntries < last) continue;
      const out = await this.change('addVoter', id);
      if (out.ok) this.log.info({ id }, 'promoted a caught-up learner to voter');
      return;
    }
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

  private request(addrs: Multiaddr[], req: ApiRequest): Promise<ApiResponse> {
    return apiRequest(this.host, addrs, req, DAEMON_DEFAULTS.peerRequestTimeoutMs);
  }

  /** `connection` is undefined for the local socket (node/api/local_socket.ts). */
  private async handle(raw: unknown, connection: Connection | undefined): Promise<ApiResponse> {
    if (typeof raw !== 'object' || raw === null || typeof (raw as ApiRequest).op !== 'string') {
      return apiError('INVALID', 'a request is an object with an op');
    }
    const req = raw as ApiRequest;
    const stale = req.stale === true;
    switch (req.op) {
      case 'status':
        return { ok: true, ...this.statusView() };
      case 'kv.get':
        return answer(await this.read({ op: 'kv.get', key: req.key as string }, stale));
      case 'kv.list':
        return answer(
          await this.read(
            {
              op: 'kv.list',
              prefix: (req.prefix as string) ?? '',
              ...(req.limit !== undefined ? { limit: req.limit as number } : {}),
            },
            stale,
          ),
        );
      case 'kv.put':
        return answer(
          await this.submit({ op: 'kv.put', key: req.key as string, value: req.value as string }),
        );
      case 'kv.cas':
        return answer(
          await this.submit({
            op: 'kv.cas',
            key: req.key as string,
            from: req.from as string | null,
            to: req.to as string,
          }),
        );
      case 'kv.del':
        return answer(await this.submit({ op: 'kv.del', key: req.key as string }));
      case 'members':
        return { ok: true, members: this.membersView() };
      case 'nodes':
        return { ok: true, nodes: this.nodesView() };
      case 'join':
        return this.handleJoin(req);
      case 'instance.check':
        return this.handleInstanceCheck(req, connection);
      case 'raft.transfer':
        return this.handleTransfer(req);
      case 'raft.remove':
        return this.handleRemove(req);
      case 'vm.run': {
        const node = this.resolveNode(req.node);
        if (typeof node !== 'string') return node;
        return answer(await this.submit({ op: 'vm.put', spec: req.spec, node, atMs: Date.now() }));
      }
      case 'vm.get':
        return answer(await this.read({ op: 'vm.get', name: req.name as string }, stale));
      case 'vm.list': {
        let node: string | undefined;
        if (req.node !== undefined) {
          const r = this.resolveNode(req.node);
          if (typeof r !== 'string') return r;
          node = r;
        }
        return answer(
          await this.read({ op: 'vm.list', ...(node !== undefined ? { node } : {}) }, stale),
        );
      }
      case 'vm.stop':
        return answer(
          await this.submit({ op: 'vm.stop', name: req.name as string, atMs: Date.now() }),
        );
      case 'vm.rm':
        return answer(await this.submit({ op: 'vm.rm', name: req.name as string }));
      case 'vm.logs':
        return this.handleVmLogs(req);
      case 'store.info':
      case 'store.where':
      case 'store.fetch':
      case 'store.progress':
      case 'store.push':
      case 'store.stats':
        return this.handleStore(req).catch((e: Error) => {
          const code = (e as { code?: string }).code;
          return apiError(
            code === 'NOT_FOUND' || code === 'NO_HOLDER'
              ? 'NOT_FOUND'
              : code === 'BAD_STORE_PATH'
                ? 'INVALID'
                : 'UNAVAILABLE',
            `${code !== undefined ? `${code}: ` : ''}${e.message}`,
          );
        });
      default:
        return apiError('INVALID', `unknown op ${JSON.stringify(req.op)}`);
    }
  }

  private async handleStore(req: ApiRequest): Promise<ApiResponse> {
    const store = this.store;
    if (store === undefined) return apiError('UNAVAILABLE', 'the store is not started yet');
    const path = req.path;
    if (req.op !== 'store.stats' && req.op !== 'store.progress' && typeof path !== 'string') {
      return apiError('INVALID', `${req.op} needs a store path`);
    }
    switch (req.op) {
      case 'store.info': {
        const info = await store.info(path as string);
        if (info !== undefined) return { ok: true, here: true, info };
        return { ok: true, here: false, holders: await store.where(path as string) };
      }
      case 'store.where':
        return { ok: true, holders: await store.where(path as string) };
      case 'store.fetch': {
        const id = typeof req.progressId === 'string' ? req.progressId : undefined;
        try {
          const report = await store.fetch(path as string, (p) => {
            if (id !== undefined) this.fetchProgress.set(id, p);
          });
          return { ok: true, ...report };
        } finally {
          if (id !== undefined) this.fetchProgress.delete(id);
        }
      }
      case 'store.progress': {
        const p =
          typeof req.progressId === 'string' ? this.fetchProgress.get(req.progressId) : undefined;
        return { ok: true, ...(p !== undefined ? { progress: p } : {}) };
      }
      case 'store.push': {
        const imported = await store.importFromNix(path as string);
        const replicated: string[] = [];
        const failed: Record<string, string> = {};
        for (const target of Array.isArray(req.to) ? req.to : []) {
          const id = this.resolveNode(target);
          if (typeof id !== 'string') return id;
          if (id === this.id) continue;
          const r = await apiRequest(
            this.host,
            this.addrsOf(id),
            { op: 'store.fetch', path },
            DAEMON_DEFAULTS.storeFetchTimeoutMs,
          ).catch((e: Error) => apiError('UNAVAILABLE', e.message));
          if (r.ok) replicated.push(id);
          else failed[id] = r.error.message;
        }
        return { ok: true, imported, replicated, failed };
      }
      default:
        return { ok: true, ...(await store.stats()) };
    }
  }

  /** A member's full peer ID from the ID or a unique prefix of it. */
  private resolveNode(x: unknown): string | ApiResponse {
    if (typeof x !== 'string' || x.length === 0) return apiError('INVALID', 'name a node: --on ID');
    const table = this.node.sm.query({ op: 'members' });
    const ids = (table.ok ? (table.members ?? []) : []).map((m) => m.id);
    const hits = ids.filter((id) => id.startsWith(x));
    if (hits.length === 1) return hits[0]!;
    if (hits.length === 0) return apiError('NOT_FOUND', `no member ${x}: see pcr members`);
    return apiError('INVALID', `${x} names ${hits.length} members: give more of the ID`);
  }

  /** A VM's console log, read where the VM runs (a member forwards to that node). */
  private async handleVmLogs(req: ApiRequest): Promise<ApiResponse> {
    if (typeof req.name !== 'string') return apiError('INVALID', 'vm.logs needs a name');
    if (
      req.offset !== undefined &&
      (!Number.isSafeInteger(req.offset) || (req.offset as number) < 0)
    )
      return apiError('INVALID', 'offset must be a non-negative integer');
    const vm = this.node.sm.vms.get(req.name);
    if (vm === undefined) return apiError('NOT_FOUND', `no VM ${req.name}`);
    if (vm.node !== this.id) {
      if (req.forwarded === true) {
        return apiError('UNAVAILABLE', `${req.name} runs on ${vm.node}, not here`);
      }
      const to = this.addrsOf(vm.node);
      if (to.length === 0) return apiError('UNAVAILABLE', `no address for ${vm.node}`);
      return this.request(to, { ...req, forwarded: true }).catch((e: Error) =>
        apiError('UNAVAILABLE', `node ${vm.node} (runs ${req.name}) unreachable: ${e.message}`),
      );
    }
    const read = await this.supervisor
      ?.consoleRead(req.name, req.offset as number | undefined, VM_LOGS_BYTES_MAX)
      .catch((e: { code?: string }) => {
        // Committed but not started here yet: no console so far.
        if (e.code === 'VMM_NOT_FOUND') return { data: '', next: 0, size: 0 };
        throw e;
      });
    if (read === undefined) return apiError('UNAVAILABLE', 'this node is still starting');
    return { ok: true, ...read };
  }

  private async handleJoin(req: ApiRequest): Promise<ApiResponse> {
    const id = req.id;
    const addrs = req.addrs;
    if (
      typeof id !== 'string' ||
      !Array.isArray(addrs) ||
      !addrs.every((a) => typeof a === 'string')
    ) {
      return apiError('INVALID', 'join needs id and addrs');
    }
    try {
      peerIdFromString(id);
      for (const a of addrs) multiaddr(a as string);
    } catch (e) {
      return apiError('INVALID', `join: ${(e as Error).message}`);
    }
    const cfg = this.node.status().config;
    const list = addrs as string[];
    const role = cfg.voters.includes(id)
      ? 'voter'
      : cfg.learners.includes(id)
        ? 'learner'
        : undefined;
    // Already a member: a restarted node announcing new addresses (nothing to do if unchanged).
    if (role !== undefined && this.member(id)?.addrs.join() === list.join())
      return { ok: true, already: true };
    this.extraAddrs.set(
      id,
      list.map((a) => multiaddr(a)),
    );
    // The address first, so that the leader can reach a new learner as soon as it is added.
    const name = typeof req.name === 'string' ? req.name : undefined;
    const put = await this.submit({
      op: 'member.put',
      member: { id, addrs: list, role: role ?? 'learner', ...(name !== undefined ? { name } : {}) },
    });
    if (!put.ok || role !== undefined) return answer(put);
    const added = await this.change('addLearner', id);
    if (!added.ok) return answer(added);
    this.log.info({ id }, 'added a learner');
    return { ok: true };
  }

  private async handleTransfer(req: ApiRequest): Promise<ApiResponse> {
    const st = this.node.status();
    if (st.lead === '') return apiError('NO_LEADER', 'no leader yet: retry shortly');
    const to = typeof req.to === 'string' ? req.to : this.bestTransferee();
    if (to === undefined || !st.config.voters.includes(to))
      return apiError('INVALID', `${String(to)} is not a voter`);
    this.node.transferLeader(to);
    const ok = await waitFor(() => this.node.status().lead === to, DAEMON_DEFAULTS.transferWaitMs);
    return ok
      ? { ok: true, leader: to }
      : apiError('TIMEOUT', `leadership did not move to ${to} in time`);
  }

  private async handleRemove(req: ApiRequest): Promise<ApiResponse> {
    if (typeof req.id !== 'string') return apiError('INVALID', 'remove needs id');
    const out = await this.change('removeNode', req.id);
    if (!out.ok) return answer(out);
    await this.submit({ op: 'member.remove', id: req.id });
    return { ok: true };
  }

  private bestTransferee(): NodeId | undefined {
    const st = this.node.status();
    let best: NodeId | undefined;
    let bestMatch = -1;
    for (const id of st.config.voters) {
      if (id === this.id) continue;
      const m = st.progress?.[id]?.match ?? -1;
      if (m > bestMatch) {
        best = id;
        bestMatch = m;
      }
    }
    return best;
  }

  statusView(): Record<string, unknown> {
    const st = this.node.status();
    return {
      id: this.id,
      state: st.state,
      leader: st.lead,
      term: st.term,
      commit: st.commit,
      applied: st.applied,
      members: this.membersView(st),
    };
  }

  private membersView(st = this.node.status()): Record<string, unknown>[] {
    const r = this.node.sm.query({ op: 'members' });
    const table = new Map((r.ok ? (r.members ?? []) : []).map((m) => [m.id, m]));
    const ids = new Set([...st.config.voters, ...st.config.learners, ...table.keys()]);
    return [...ids].sort().map((id) => ({
      id,
      ...(table.get(id)?.name !== undefined ? { name: table.get(id)?.name } : {}),
      addrs: table.get(id)?.addrs ?? [],
      role: st.config.voters.includes(id)
        ? 'voter'
        : st.config.learners.includes(id)
          ? 'learner'
          : 'member',
      leader: id === st.lead,
      ...(st.progress?.[id] !== undefined
        ? { match: st.progress[id]!.match, active: st.progress[id]!.recentActive }
        : {}),
    }));
  }

  renderMetrics(): string {
    const st = this.node.status();
    const ns = this.node.stats;
    const ts = this.transport.stats;
    const g = this.gossip.stats;
    const c = (
      name: string,
      help: string,
      value: number,
      labels?: Record<string, string>,
    ): Sample => ({
      name,
      help,
      type: 'counter',
      value,
      ...(labels !== undefined ? { labels } : {}),
    });
    const gauge = (name: string, help: string, value: number): Sample => ({
      name,
      help,
      type: 'gauge',
      value,
    });
    const samples: Sample[] = [
      gauge('pcr_raft_term', 'Current Raft term.', st.term),
      gauge('pcr_raft_commit_index', 'Highest log index known committed.', st.commit),
      gauge(
        'pcr_raft_applied_index',
        'Highest log index applied to the state machine.',
        st.applied,
      ),
      gauge('pcr_raft_is_leader', '1 if this member is the leader.', st.state === 'leader' ? 1 : 0),
      gauge('pcr_raft_voters', 'Voters in the configuration.', st.config.voters.length),
      gauge('pcr_raft_learners', 'Learners in the configuration.', st.config.learners.length),
      c('pcr_raft_elections_total', 'Elections started by this member.', st.stats.elections),
      c(
        'pcr_raft_pre_elections_total',
        'Pre-vote rounds started by this member.',
        st.stats.preElections,
      ),
      c('pcr_raft_became_leader_total', 'Times this member became leader.', st.stats.becameLeader),
      c(
        'pcr_raft_snapshots_sent_total',
        'Snapshots sent to lagging followers.',
        st.stats.snapshotsSent,
      ),
      c('pcr_raft_proposals_total', 'Commands proposed through this member.', ns.proposals),
      c('pcr_raft_disk_batches_total', 'Synced disk batches (group commits).', ns.diskBatches),
      c(
        'pcr_raft_snapshots_taken_total',
        'Snapshots of the state machine taken here.',
        ns.snapshotsTaken,
      ),
      c(
        'pcr_raft_snapshots_restored_total',
        'Snapshots received from the leader and installed.',
        ns.snapshotsRestored,
      ),
      c('pcr_raft_request_timeouts_total', 'Requests that timed out.', ns.timeouts),
      ...Object.entries(st.stats.dropped).map(([reason, v]) =>
        c('pcr_raft_messages_dropped_total', 'Raft messages dropped by the core, by reason.', v, {
          reason,
        }),
      ),
      c('pcr_transport_frames_sent_total', 'Raft frames written to peers.', ts.framesSent),
      c(
        'pcr_transport_frames_received_total',
        'Raft frames received from peers.',
        ts.framesReceived,
      ),
      c(
        'pcr_transport_bad_frames_total',
        'Raft frames refused (malformed, oversized, spoofed).',
        ts.badFrames,
      ),
      c(
        'pcr_transport_snapshot_chunks_sent_total',
        'Snapshot chunks streamed to lagging members.',
        ts.snapshotChunksSent,
      ),
      c(
        'pcr_transport_snapshots_refused_total',
        'Inbound snapshot streams refused (bad size, overrun, truncated, spoofed).',
        ts.snapshotsRefused,
      ),
      c(
        'pcr_member_redials_total',
        'Dials of members this node held no connection to.',
        this.stats.memberRedials,
      ),
      c('pcr_gossip_messages_published_total', 'Metrics messages published.', g.published),
      c('pcr_gossip_messages_received_total', 'Metrics messages accepted.', g.received),
      c('pcr_gossip_messages_refused_total', 'Metrics messages refused.', g.refused),
    ];
    return `${renderSamples(samples)}\n${this.applyLatency.render('pcr_apply_latency_seconds', 'From proposal to apply on this member, for writes through it.')}`;
  }

  private nodesView(): Record<string, unknown>[] {
    const now = Date.now();
    return [...this.gossip.view.entries()]
      .sort(([a], [b]) => (a < b ? -1 : 1))
      .map(([id, e]) => ({
        ...e.metrics,
        id,
        lastSeenMs: now - e.lastSeen,
        health: this.gossip.health(id, now),
      }));
  }

  // ---------------------------------------------------------------------------------------------

  /** Stops cleanly; a leader first hands leadership to the most caught-up voter. */
  async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    clearInterval(this.reconciler);
    this.gossip.stop();
    const st = this.node.status();
    if (!this.node.isStopped && st.state === 'leader') {
      const to = this.bestTransferee();
      if (to !== undefined) {
        this.node.transferLeader(to);
        await waitFor(() => this.node.status().state !== 'leader', DAEMON_DEFAULTS.transferWaitMs);
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

function answer(o: Outcome): ApiResponse {
  if (!o.ok) {
    const code =
      o.code === 'INVALID'
        ? 'INVALID'
        : o.code === 'NO_LEADER' || o.code === 'PROPOSAL_DROPPED'
          ? 'NO_LEADER'
          : 'TIMEOUT';
    return apiError(code, o.message);
  }
  const r = o.result;
  if (!r.ok) {
    const code =
      r.code === 'notFound' ? 'NOT_FOUND' : r.code === 'casMismatch' ? 'CAS_MISMATCH' : 'INVALID';
    return apiError(code, r.message);
  }
  const { ok: _ok, ...rest } = r;
  return { ok: true, index: o.index, ...rest };
}

/** Bytes of console log one vm.logs answer carries at most. */
export const VM_LOGS_BYTES_MAX = 1024 * 1024;
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

function waitFor(cond: () => boolean, ms: number): Promise<boolean> {
  const start = Date.now();
  return new Promise((resolve) => {
    const t = setInterval(() => {
      if (cond()) {
        clearInterval(t);
        resolve(true);
      } else if (Date.now() - start > ms) {
        clearInterval(t);
        resolve(false);
      }
    }, 10);
  });
}
