// Public surface of the deterministic cluster simulator. See docs/sim.md.

export {
  CLUSTER_DEFAULTS,
  type ClusterOptions,
  DRIFT_MAX,
  DRIFT_MIN,
  type FaultRecord,
  type NodeInfo,
  type ProcessState,
  type SafetyViolation,
  SimCluster,
  type ViolationKind,
} from './cluster.ts';
export { DISK_LATENCY_DEFAULT, type DiskLatency, type DiskStats, SimDisk } from './disk.ts';
export {
  applyFault,
  type Fault,
  GENERATE_DEFAULTS,
  type GenerateOptions,
  generateSchedule,
  healAll,
  isNemesisKind,
  NEMESIS_KINDS,
  NemesisFileError,
  type NemesisKind,
  parseDuration,
  parseSchedule,
  resolveTarget,
  scheduleFaults,
  TARGET_RULES,
  type Target,
} from './nemesis.ts';
export { NETWORK_DEFAULTS, type NetworkOptions, type NetworkStats, SimNetwork } from './network.ts';
export { EventQueue, msToUs, usToMs } from './queue.ts';
export { forkSeed, SimRandom } from './random.ts';
export {
  type CheckSummary,
  historyHash,
  type Liveness,
  RUN_DEFAULTS,
  type RunOptions,
  type RunResult,
  runSimulation,
  type Verdict,
} from './run.ts';
export {
  type Groups,
  isPartitionMode,
  PARTITION_MODES,
  type PartitionMode,
  partitionGroups,
  Topology,
} from './topology.ts';
export {
  History,
  type NemesisEvent,
  type OpCounts,
  type RunEvent,
  WORKLOAD_DEFAULTS,
  Workload,
  type WorkloadOptions,
} from './workload.ts';
