// Public surface of the linearizability checker. See README.md for the history format and the CLI.

export { CheckerError, type CheckerErrorCode, isCheckerError } from './errors.ts';
export {
  describeInterval,
  type EventType,
  type HistoryEvent,
  type Operation,
  type Outcome,
  type PairedHistory,
  type PairOptions,
  type ParsedHistory,
  pairHistory,
  parseHistoryJsonLines,
  validateEvent,
} from './history.ts';
export {
  CACHE_BYTES_MAX_DEFAULT,
  type Candidate,
  CHECK_STEPS_MAX_DEFAULT,
  CHECK_TIMEOUT_MS_DEFAULT,
  type CheckOptions,
  type CheckResult,
  checkEvents,
  checkOperations,
  type KeyResult,
  type UnknownReason,
  type Verdict,
  type Violation,
  WINDOW_OPS_MAX,
} from './linearizability.ts';
export {
  type AnyModel,
  canonicalJson,
  casRegister,
  type Decoded,
  ERROR_KEY_DOES_NOT_EXIST,
  ERROR_PRECONDITION_FAILED,
  INDETERMINATE,
  type Indeterminate,
  type KvState,
  kvMap,
  type Model,
  partitionByKey,
  type RegisterInput,
  type RegisterOutput,
  type RegisterState,
  type StepResult,
} from './model.ts';
export {
  type ReportOptions,
  renderReportHtml,
  renderTimelineSvg,
  TIMELINE_OPS_MAX,
  type TimelineOptions,
} from './render.ts';
