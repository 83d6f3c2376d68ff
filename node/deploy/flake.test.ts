// The pure parts of `pcr deploy REF`: how REF names a deployment, the source read from
// `nix flake metadata --json`, the update policy's shape. flake.nix.test.ts runs the rest with the
// real Nix.
import { describe, expect, it } from 'vitest';
import {
  DEPLOY_REF_BYTES_MAX,
  DEPLOY_SOURCE_BYTES_MAX,
  DeployError,
  resolveDeployRef,
  sourceOfMetadata,
  updatePolicyProblem,
} from './flake.ts';

describe('resolveDeployRef', () => {
  it('reads .#web as .#procurator.deployments.web', () => {
    expect(resolveDeployRef('.#web')).toEqual({
      flake: '.',
      attrPath: 'procurator.deployments.web',
      name: 'web',
      installable: '.#procurator.deployments.web',
    });
  });

  it('keeps a full attribute path and names the deployment by its last component', () => {
    expect(resolveDeployRef('github:o/r#procurator.deployments.db')).toMatchObject({
      flake: 'github:o/r',
      attrPath: 'procurator.deployments.db',
      name: 'db',
    });
    expect(resolveDeployRef('path:/x#staging.web-2')).toMatchObject({
      attrPath: 'staging.web-2',
      name: 'web-2',
    });
  });

  it('refuses what does not name one deployment', () => {
    for (const bad of [
      '.',
      'web',
      '#web',
      '.#',
      '.#a..b',
      '.#Web',
      '.#a.b_c',
      `.#${'a'.repeat(41)}`,
    ]) {
      expect(() => resolveDeployRef(bad), bad).toThrow(DeployError);
    }
  });

  it('takes a REF of DEPLOY_REF_BYTES_MAX bytes and refuses one more', () => {
    const at = (n: number) => `path:/${'x'.repeat(n - 'path:/#web'.length)}#web`;
    expect(at(DEPLOY_REF_BYTES_MAX)).toHaveLength(DEPLOY_REF_BYTES_MAX);
    expect(resolveDeployRef(at(DEPLOY_REF_BYTES_MAX)).name).toBe('web');
    expect(() => resolveDeployRef(at(DEPLOY_REF_BYTES_MAX + 1))).toThrow(/DEPLOY_REF_BYTES_MAX/);
  });
});

describe('sourceOfMetadata', () => {
  it('takes the locked URL, rev, narHash, and the rev as the commit of a git source', () => {
    const git = {
      url: 'git+file:///src?ref=main&rev=abc',
      locked: { type: 'git', rev: 'abc', narHash: 'sha256-x' },
    };
    expect(sourceOfMetadata(git)).toEqual({
      flake: 'git+file:///src?ref=main&rev=abc',
      rev: 'abc',
      narHash: 'sha256-x',
      commit: 'abc',
    });
  });

  it('has no rev or commit for a path or a dirty tree', () => {
    expect(
      sourceOfMetadata({ url: 'path:/src', locked: { type: 'path', narHash: 'sha256-y' } }),
    ).toEqual({
      flake: 'path:/src',
      narHash: 'sha256-y',
    });
  });

  it('refuses a field beyond DEPLOY_SOURCE_BYTES_MAX', () => {
    const url = (n: number) => ({ url: 'u'.repeat(n), locked: {} });
    expect(sourceOfMetadata(url(DEPLOY_SOURCE_BYTES_MAX)).flake).toHaveLength(
      DEPLOY_SOURCE_BYTES_MAX,
    );
    expect(() => sourceOfMetadata(url(DEPLOY_SOURCE_BYTES_MAX + 1))).toThrow(
      /DEPLOY_SOURCE_BYTES_MAX/,
    );
  });
});

describe("updatePolicyProblem (the state machine's validateUpdatePolicy, before anything is pushed)", () => {
  it('takes none or a valid policy, refuses anything else with the field named', () => {
    expect(updatePolicyProblem(undefined, 1)).toBeUndefined();
    expect(updatePolicyProblem({ maxParallel: 1 }, 1)).toBeUndefined();
    expect(updatePolicyProblem([1], 1)).toMatch(/update: must be an object/);
    expect(updatePolicyProblem(3, 1)).toMatch(/update: must be an object/);
    expect(updatePolicyProblem({ maxParalel: 1 }, 1)).toMatch(/update.maxParalel: unknown field/);
    expect(updatePolicyProblem({ canary: 3 }, 2)).toMatch(/canary/);
  });
});
