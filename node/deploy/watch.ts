// `pcr deploy watch GIT_URL`: the GitOps pull loop, run outside the cluster (a CI box, an
// operator's machine; docs/deploy.md). Every interval it reads the branch's head with
// `git ls-remote` (no clone to notice that nothing changed); a new head is deployed, each named
// deployment from the flake pinned to that commit, through deployFlake as `pcr deploy` does. The
// decisions are watch_decision.ts's (pure); this module carries them out through the effects the
// caller passes (git, Nix, the member), prints one event per line, and stops when `signal` fires:
// at once while it waits, after the deployment in hand while it deploys.

import { setTimeout as sleep } from 'node:timers/promises';
import { DeployError, type DeployOutcome } from './flake.ts';
import {
  type CommitOutcome,
  headOfLsRemote,
  pinnedFlake,
  remember,
  type WatchMemory,
  type WatchSource,
  watchAction,
} from './watch_decision.ts';

/** One line of watch's output (text for people, the object itself with --json). */
export type WatchEvent =
  | { event: 'watching'; url: string; branch: string; intervalMs: number; names?: string[] }
  | { event: 'commit'; commit: string; branch: string }
  | { event: 'deployed'; commit: string; name: string; version: number; noop: boolean }
  | { event: 'failed'; commit: string; name?: string; message: string; nixText?: string }
  | { event: 'unreachable'; commit: string; message: string }
  | { event: 'git-failed'; message: string }
  | { event: 'done'; commit: string; outcome: CommitOutcome }
  | { event: 'stopped' };

/** A member connection for one commit's deploys. */
export interface WatchMember {
  /** deployFlake of REF against the member (`pcr deploy REF`'s own steps). */
  deploy(ref: string): Promise<DeployOutcome>;
  close(): Promise<void>;
}

export interface WatchEffects {
  /** `git ls-remote URL refs/heads/BRANCH`'s stdout; throws with git's text. */
  lsRemote(s: WatchSource): Promise<string>;
  /** The deployments of a flake (deploymentNames). */
  names(flake: string): Promise<string[]>;
  /** Throws when the member cannot be reached: the commit is tried again next interval. */
  openMember(): Promise<WatchMember>;
  log(e: WatchEvent): void;
}

export interface WatchOptions {
  readonly source: WatchSource;
  readonly intervalMs: number;
  /** The deployments to deploy; all of the commit's `procurator.deployments` when absent. */
  readonly names?: readonly string[];
}

/** Runs until `signal` aborts; returns what it remembers then (for tests). */
export async function runWatch(
  o: WatchOptions,
  fx: WatchEffects,
  signal: AbortSignal,
): Promise<WatchMemory> {
  let memory: WatchMemory = { failed: [] };
  let seen: string | undefined;
  fx.log({
    event: 'watching',
    url: o.source.gitUrl,
    branch: o.source.branch,
    intervalMs: o.intervalMs,
    ...(o.names !== undefined ? { names: [...o.names] } : {}),
  });
  while (!signal.aborted) {
    const head = await readHead(o.source, fx);
    if (head !== undefined && !signal.aborted) {
      const action = watchAction(memory, head);
      if (action.kind === 'deploy') {
        if (head !== seen) fx.log({ event: 'commit', commit: head, branch: o.source.branch });
        seen = head;
        const outcome = await deployCommit(o, fx, head, signal);
        if (outcome !== 'unreachable') fx.log({ event: 'done', commit: head, outcome });
        memory = remember(memory, head, outcome);
      }
    }
    await sleep(o.intervalMs, undefined, { signal }).catch(() => {});
  }
  fx.log({ event: 'stopped' });
  return memory;
}

async function readHead(s: WatchSource, fx: WatchEffects): Promise<string | undefined> {
  try {
    const head = headOfLsRemote(await fx.lsRemote(s), s.branch);
    if (head === undefined) fx.log({ event: 'git-failed', message: `no branch ${s.branch}` });
    return head;
  } catch (e) {
    fx.log({ event: 'git-failed', message: (e as Error).message });
    return undefined;
  }
}

/** Every named deployment from the flake at `commit`; one that fails does not stop the others. */
async function deployCommit(
  o: WatchOptions,
  fx: WatchEffects,
  commit: string,
  signal: AbortSignal,
): Promise<CommitOutcome> {
  const flake = pinnedFlake(o.source, commit);
  let names: readonly string[];
  try {
    names = o.names ?? (await fx.names(flake));
  } catch (e) {
    fx.log(failure(commit, undefined, e));
    return 'failed';
  }
  if (names.length === 0) {
    fx.log({ event: 'failed', commit, message: 'the flake has no procurator.deployments' });
    return 'failed';
  }
  let member: WatchMember;
  try {
    member = await fx.openMember();
  } catch (e) {
    fx.log({ event: 'unreachable', commit, message: (e as Error).message });
    return 'unreachable';
  }
  let failed = false;
  try {
    for (const name of names) {
      if (signal.aborted) return 'unreachable';
      try {
        const out = await member.deploy(`${flake}#${name}`);
        const a = out.answer ?? {};
        fx.log({
          event: 'deployed',
          commit,
          name,
          version: Number(a.version),
          noop: a.noop === true,
        });
      } catch (e) {
        fx.log(failure(commit, name, e));
        failed = true;
      }
    }
  } finally {
    await member.close().catch(() => {});
  }
  return failed ? 'failed' : 'deployed';
}

function failure(commit: string, name: string | undefined, e: unknown): WatchEvent {
  const nixText = e instanceof DeployError && e.nixText !== '' ? { nixText: e.nixText } : {};
  return {
    event: 'failed',
    commit,
    ...(name !== undefined ? { name } : {}),
    message: (e as Error).message,
    ...nixText,
  };
}

/** git's stderr kept in an event (the end of it: where git says what went wrong). */
export const GIT_ERROR_CHARS_MAX = 2000;

const short = (commit: string): string => commit.slice(0, 12);

/** An event for people: one line (a failure's Nix text follows it, indented). */
export function watchEventText(e: WatchEvent): string {
  switch (e.event) {
    case 'watching':
      return `watching ${e.url} ${e.branch} every ${e.intervalMs / 1000} s: ${e.names?.join(', ') ?? 'every deployment of procurator.deployments'}`;
    case 'commit':
      return `${short(e.commit)}: new head of ${e.branch}`;
    case 'deployed':
      return `${short(e.commit)}: ${e.name}: ${e.noop ? `unchanged (version ${e.version})` : `version ${e.version} submitted`}`;
    case 'failed': {
      const head = `${short(e.commit)}: ${e.name !== undefined ? `${e.name}: ` : ''}failed: ${e.message}`;
      return e.nixText === undefined ? head : `${head}\n${e.nixText.replace(/^/gm, '  ')}`;
    }
    case 'unreachable':
      return `${short(e.commit)}: the member is unreachable (${e.message}); tried again next interval`;
    case 'git-failed':
      return `git ls-remote failed: ${e.message}; tried again next interval`;
    case 'done':
      return e.outcome === 'deployed'
        ? `${short(e.commit)}: deployed`
        : `${short(e.commit)}: failed; not tried again until a new commit (or a restart of watch)`;
    case 'stopped':
      return 'stopped';
  }
}

/** The real `git ls-remote` (execa, imported when used). */
export async function gitLsRemote(s: WatchSource): Promise<string> {
  const { execa } = await import('execa');
  const r = await execa('git', ['ls-remote', s.gitUrl, `refs/heads/${s.branch}`], {
    reject: false,
    stdin: 'ignore',
    // Never ask for a password on a terminal: watch runs unattended.
    env: { ...process.env, GIT_TERMINAL_PROMPT: '0' },
  });
  if (r.failed && r.exitCode === undefined) throw new Error(`cannot run git: ${r.shortMessage}`);
  if (r.exitCode !== 0)
    throw new Error(String(r.stderr).trim().slice(-GIT_ERROR_CHARS_MAX) || `exit ${r.exitCode}`);
  return String(r.stdout);
}
