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
  MEMBERSHIP_SIM_DEFAULTS,
  type MembershipOptions,
  MembershipSim,
  type MembershipStats,
  type MembershipSummary,
  type PlantedMembershipBug,
  type RemoveTarget,
} from './membership.ts';
export { applyChange, diffMembers, MembershipChecks } from './membership-checks.ts';
export {
  applyFault,
  type Fault,
  GENERATE_DEFAULTS,
  type GenerateOptions,
  generateMembershipSchedule,
  generateSchedule,
  healAll,
  isNemesisKind,
  type MembershipDriver,
  NEMESIS_KINDS,
  NEMESIS_KINDS_DEFAULT,
  NemesisFileError,
  type NemesisKind,
  parseDuration,
  parseSchedule,
  REMOVE_TARGETS,
  resolveTarget,
  scheduleFaults,
  TARGET_RULES,
  type Target,
} from './nemesis.ts';
export { NETWORK_DEFAULTS, type NetworkOptions, type NetworkStats, SimNetwork } from './network.ts';
export {
  machineOf,
  PLACEMENT_DRIFT_MAX,
  PLACEMENT_SIM_DEFAULTS,
  type PlacementOptions,
  PlacementSim,
  type PlacementStats,
  type PlantedPlacementBug,
} from './placement.ts';
export { type PlacementCheckCounts, PlacementChecks } from './placement-checks.ts';
export {
  converged,
  PLACEMENT_RUN_DEFAULTS,
  type PlacementRunOptions,
  type PlacementRunResult,
  runPlacementSimulation,
} from './placement-run.ts';
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
