// Builds test/containerd-suite (containerd's snapshotter conformance suite driving our server)
// into .vm/containerd-suite/suite.test, offline, in GOPATH mode against Debian's
// golang-github-containerd-containerd-dev. scripts/test.mjs calls it on the host before the
// kernel tests (Go builds are slow under UML); the kernel test calls it again only when the
// stamp says the binary is missing or stale.
import { createHash } from 'node:crypto';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const PROJECT_ROOT = fileURLToPath(new URL('../../..', import.meta.url));
export const SUITE_SOURCE_DIR = join(PROJECT_ROOT, 'test/containerd-suite');
export const GOCODE = '/usr/share/gocode';
export const TESTSUITE_SOURCE = join(GOCODE, 'src/github.com/containerd/containerd/snapshots/testsuite/testsuite.go');
const OUT_DIR = join(PROJECT_ROOT, '.vm/containerd-suite');
export const SUITE_BINARY = join(OUT_DIR, 'suite.test');
const STAMP = join(OUT_DIR, 'suite.stamp');

export type SuiteBuild = { ok: true; binary: string; built: boolean } | { ok: false; reason: string };

function goBinary(): string | undefined {
  const which = spawnSync('sh', ['-c', 'command -v go'], { encoding: 'utf8' });
  const path = which.stdout.trim();
  return which.status === 0 && path ? path : undefined;
}

/** Why the suite cannot be built here, or undefined when it can. */
export function missingPrerequisite(): string | undefined {
  if (!goBinary()) return 'no Go toolchain (go) on PATH: apt-get install golang-go (scripts/bootstrap.mjs lists it)';
  if (!existsSync(TESTSUITE_SOURCE)) {
    return `containerd's Go sources are missing (${TESTSUITE_SOURCE}): apt-get install golang-github-containerd-containerd-dev (scripts/bootstrap.mjs lists it)`;
  }
  return undefined;
}

/** What the binary depends on: our Go source, the toolchain, containerd's sources (by mtime). */
function currentStamp(go: string): string {
  const hash = createHash('sha256');
  hash.update(readFileSync(join(SUITE_SOURCE_DIR, 'suite_test.go')));
  const goStat = statSync(go);
  hash.update(`go ${go} ${goStat.size} ${goStat.mtimeMs}\n`);
  hash.update(`testsuite ${statSync(TESTSUITE_SOURCE).mtimeMs}\n`);
  return hash.digest('hex');
}

/** True when the binary exists and was built from what is there now. */
export function suiteIsFresh(): boolean {
  const go = goBinary();
  if (!go || !existsSync(SUITE_BINARY) || !existsSync(STAMP)) return false;
  return readFileSync(STAMP, 'utf8').trim() === currentStamp(go);
}

/** Builds the suite unless it is fresh; a missing prerequisite is a reason, a compile error throws. */
export function buildContainerdSuite(): SuiteBuild {
  const missing = missingPrerequisite();
  if (missing) return { ok: false, reason: missing };
  if (suiteIsFresh()) return { ok: true, binary: SUITE_BINARY, built: false };
  const go = goBinary()!;
  mkdirSync(join(OUT_DIR, 'gopath'), { recursive: true });
  mkdirSync(join(OUT_DIR, 'gocache'), { recursive: true });
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    // GOPATH mode: Debian ships the sources, not modules; nothing is fetched.
    GO111MODULE: 'off',
    GOPATH: `${join(OUT_DIR, 'gopath')}:${GOCODE}`,
    GOCACHE: join(OUT_DIR, 'gocache'),
    GOFLAGS: '',
    GOPROXY: 'off',
    CGO_ENABLED: '0',
  };
  try {
    execFileSync(go, ['test', '-c', '-o', SUITE_BINARY, './test/containerd-suite'], {
      cwd: PROJECT_ROOT,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
      encoding: 'utf8',
    });
  } catch (error) {
    const e = error as { stderr?: string; stdout?: string; message: string };
    throw new Error(`building the containerd conformance suite failed: ${e.stderr || e.stdout || e.message}`);
  }
  writeFileSync(STAMP, `${currentStamp(go)}\n`);
  return { ok: true, binary: SUITE_BINARY, built: true };
}
