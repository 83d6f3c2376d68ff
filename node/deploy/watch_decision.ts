// The pure part of `pcr deploy watch` (docs/deploy.md, "pcr deploy watch"): what the GitOps loop
// does given the commit it deployed last, the commits whose deploy failed, and the branch's head
// now; how it reads the head from `git ls-remote`; and the flake reference that pins an evaluation
// to one commit. No clock, no I/O: the loop in watch.ts carries the decisions out.

/** How often the branch is looked at: bounds and default of `--interval`. */
export const WATCH_INTERVAL_MS_MIN = 1000;
export const WATCH_INTERVAL_MS_MAX = 86_400_000;
export const WATCH_INTERVAL_MS_DEFAULT = 60_000;
/** Commits whose deploy failed, remembered so that none is tried again every interval. */
export const WATCH_FAILED_COMMITS_MAX = 64;
/** The repository URL as given (the pinned flake reference must stay under DEPLOY_REF_BYTES_MAX). */
export const WATCH_URL_BYTES_MAX = 2048;
/** A branch name (git allows longer; no host's UI does). */
export const WATCH_BRANCH_BYTES_MAX = 255;

/** What the loop remembers between intervals. */
export interface WatchMemory {
  /** The last commit every named deployment was submitted from (absent at start). */
  readonly deployed?: string;
  /** Commits whose deploy failed, oldest first, at most WATCH_FAILED_COMMITS_MAX. */
  readonly failed: readonly string[];
}

export type WatchAction =
  | { readonly kind: 'deploy'; readonly commit: string }
  | { readonly kind: 'idle'; readonly why: 'deployed' | 'failed-before' };

/**
 * The head is deployed when it is new: not the commit deployed last, not one that failed (a failed
 * commit is tried again only when the branch moves to another commit, or watch restarts).
 */
export function watchAction(m: WatchMemory, head: string): WatchAction {
  if (head === m.deployed) return { kind: 'idle', why: 'deployed' };
  if (m.failed.includes(head)) return { kind: 'idle', why: 'failed-before' };
  return { kind: 'deploy', commit: head };
}

/**
 * How a commit's deploy ended: every deployment submitted (a no-op counts), one failed (its
 * evaluation, build, push or submit), or the member could not be reached at all (nothing of the
 * commit was tried: the next interval tries again).
 */
export type CommitOutcome = 'deployed' | 'failed' | 'unreachable';

export function remember(m: WatchMemory, commit: string, outcome: CommitOutcome): WatchMemory {
  switch (outcome) {
    case 'deployed':
      return { deployed: commit, failed: m.failed.filter((c) => c !== commit) };
    case 'failed': {
      const failed = [...m.failed.filter((c) => c !== commit), commit];
      const kept = failed.slice(Math.max(0, failed.length - WATCH_FAILED_COMMITS_MAX));
      return { ...(m.deployed !== undefined ? { deployed: m.deployed } : {}), failed: kept };
    }
    case 'unreachable':
      return m;
  }
}

/** A full commit id (SHA-1, or SHA-256 for repositories in that format). */
const COMMIT = /^(?:[0-9a-f]{40}|[0-9a-f]{64})$/;

/** The commit `refs/heads/BRANCH` points at in `git ls-remote` output, or undefined when absent. */
export function headOfLsRemote(output: string, branch: string): string | undefined {
  const want = `refs/heads/${branch}`;
  for (const line of output.split('\n')) {
    const [commit, ref] = line.trim().split(/\s+/);
    if (ref === want && commit !== undefined && COMMIT.test(commit)) return commit;
  }
  return undefined;
}

export interface WatchSource {
  /** The URL git is given (`file:///x` for a path `/x`). */
  readonly gitUrl: string;
  readonly branch: string;
}

/** URL schemes Nix's git fetcher and `git ls-remote` both take. */
const SCHEMES = ['file:', 'http:', 'https:', 'ssh:', 'git:'];

/** The repository and branch as given on the command line, checked (pure); else the reason. */
export function watchSource(url: string, branch: string): WatchSource | string {
  if (Buffer.byteLength(url) > WATCH_URL_BYTES_MAX)
    return `the URL is longer than WATCH_URL_BYTES_MAX ${WATCH_URL_BYTES_MAX}`;
  const gitUrl = url.startsWith('/') ? `file://${url}` : url;
  let parsed: URL;
  try {
    parsed = new URL(gitUrl);
  } catch {
    return `${JSON.stringify(url)} is not a URL (e.g. https://host/repo.git, ssh://git@host/repo.git, file:///srv/repo; scp-like host:path is not taken by Nix)`;
  }
  if (!SCHEMES.includes(parsed.protocol))
    return `${JSON.stringify(url)}: the scheme ${parsed.protocol} is not one of ${SCHEMES.join(' ')}`;
  if (parsed.search !== '' || parsed.hash !== '')
    return `${JSON.stringify(url)}: a query or fragment is not taken (the branch is --branch)`;
  const problem = branchProblem(branch);
  return problem === undefined
    ? { gitUrl, branch }
    : `--branch ${JSON.stringify(branch)}: ${problem}`;
}

/** git's rules for a ref name (git check-ref-format), narrowed to the characters URLs keep as is. */
function branchProblem(b: string): string | undefined {
  if (b === '' || Buffer.byteLength(b) > WATCH_BRANCH_BYTES_MAX)
    return `expected 1 to WATCH_BRANCH_BYTES_MAX ${WATCH_BRANCH_BYTES_MAX} bytes`;
  if (!/^[A-Za-z0-9._/-]+$/.test(b)) return 'only letters, digits, . _ / - are taken';
  if (b.startsWith('-') || b.startsWith('/') || b.endsWith('/') || b.endsWith('.'))
    return 'not a branch name (git check-ref-format)';
  if (b.includes('..') || b.includes('//') || b.endsWith('.lock') || /(^|\/)\./.test(b))
    return 'not a branch name (git check-ref-format)';
  return undefined;
}

/** The flake reference of the repository at exactly `commit` (the evaluation is pinned to it). */
export function pinnedFlake(s: WatchSource, commit: string): string {
  if (!COMMIT.test(commit)) throw new Error(`not a full commit id: ${JSON.stringify(commit)}`);
  return `git+${s.gitUrl}?ref=${s.branch}&rev=${commit}`;
}
