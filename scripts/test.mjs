#!/usr/bin/env node
// `npm test`: everything from a fresh machine to the closing line.
//   1. the system packages the tests use (apt, when root; otherwise the exact command to run);
//      with --host-only only the host tests' (bootstrap.mjs HOST_APT_PACKAGES): nothing for a kernel
//   2. `npm ci` when node_modules is missing or older than package-lock.json
//   3. `tsc`
//   4. host tests (no kernel needed) with ava, here
//   5. kernel tests with ava: here on a real device-mapper host, else inside the test kernel
//   6. one closing line `N passed, N failed, N skipped` adding both up; non-zero exit on any failure
// Options: --host-only, --kernel-only, --match <ava pattern>, FILES... (dist/test/... .js paths
// or test/... .ts paths; kernel files run in the kernel).
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  build,
  canUseDeviceMapperHere,
  ensureAptPackages,
  ensureNodeModules,
  HOST_APT_PACKAGES,
  missingAptPackages,
  root,
  step,
  TEST_KERNEL_APT_PACKAGES,
} from './bootstrap.mjs';

process.chdir(root);

const args = process.argv.slice(2);
let hostOnly = false;
let kernelOnly = false;
const avaExtra = [];
const files = [];
while (args.length > 0) {
  const arg = args.shift();
  if (arg === '--host-only') hostOnly = true;
  else if (arg === '--kernel-only') kernelOnly = true;
  else if (arg === '--match' || arg === '-m') avaExtra.push('--match', args.shift());
  else files.push(arg.replace(/^test\/(.*)\.ts$/, 'dist/test/$1.js'));
}

/** Adds up ava's TAP summary (`# pass N` ...) from a stream of output. */
class TapCounter {
  passed = 0;
  failed = 0;
  skipped = 0;
  seenSummary = false;
  #pending = '';
  feed(chunk) {
    const text = this.#pending + chunk.toString();
    const lines = text.split('\n');
    this.#pending = lines.pop() ?? '';
    for (const line of lines) {
      const m = /^# (pass|fail|skip|todo) (\d+)\s*$/.exec(line.replace(/\r$/, ''));
      if (!m) continue;
      this.seenSummary = true;
      const n = Number(m[2]);
      if (m[1] === 'pass') this.passed += n;
      else if (m[1] === 'fail') this.failed += n;
      else this.skipped += n;
    }
  }
}

const avaCli = join(root, 'node_modules/ava/entrypoints/cli.mjs');
const avaArgs = (patterns) => [avaCli, '--tap', '--config', 'ava.config.mjs', ...avaExtra, ...patterns];

function runAvaHere(label, patterns, env = {}) {
  return new Promise((resolvePromise) => {
    step(`${label}: ava ${patterns.join(' ')}`);
    const counter = new TapCounter();
    const child = spawn(process.execPath, avaArgs(patterns), {
      stdio: ['ignore', 'pipe', 'inherit'],
      env: { ...process.env, ...env },
    });
    child.stdout.on('data', (chunk) => {
      process.stdout.write(chunk);
      counter.feed(chunk);
    });
    child.on('close', (code) => resolvePromise(settle(label, counter, code)));
  });
}

/** An ava run that failed without reporting a failed test (a crash, a guest that died) counts as one failure. */
function settle(label, counter, code) {
  if (code !== 0 && counter.failed === 0) {
    process.stdout.write(`${label}: ava ended with status ${code} without a test failure: counted as 1 failed\n`);
    counter.failed = 1;
  }
  if (!counter.seenSummary && code === 0) process.stdout.write(`${label}: no TAP summary seen\n`);
  return counter;
}

async function runKernelTests(patterns) {
  if (canUseDeviceMapperHere()) {
    step('device-mapper is available on this host: kernel tests run directly');
    return runAvaHere('kernel tests (this host)', patterns);
  }
  const { runInVm, exitStatusOf, umlRelease } = await import(join(root, 'dist/test/vm/runner.js'));
  const { guestEnv } = await import(join(root, 'dist/test/vm/guest-env.js'));
  const backend = process.env.DEVMAPPER_VM ?? 'uml';
  try {
    if (backend === 'uml') umlRelease();
  } catch (e) {
    process.stderr.write(
      `${e.message}\nNo device-mapper on this host and no test kernel: the kernel tests cannot run.\n`,
    );
    const counter = new TapCounter();
    counter.failed = 1;
    return counter;
  }
  step(`no device-mapper on this host: kernel tests run inside the ${backend} test kernel`);
  const counter = new TapCounter();
  // CI and the DEVMAPPER_* knobs (DEVMAPPER_LOAD_OPS was once dropped here: a 10,000-call run ran 1,000).
  const env = guestEnv();
  const result = await runInVm({
    command: ['sh', '-c', 'echo "guest kernel: $(uname -r)"; exec "$@"', 'sh', process.execPath, ...avaArgs(patterns)],
    cwd: root,
    env,
    backend,
    timeoutMs: 55 * 60_000, // containerd-suite.test.ts alone takes 3-5 min of it
    modules: ['dm-flakey', 'dm-zero'],
    onOutput: (chunk) => {
      process.stdout.write(chunk);
      counter.feed(chunk);
    },
  });
  if (result.outcome !== 'exited') {
    process.stdout.write(
      `\nthe test kernel ${result.outcome} after ${result.durationMs} ms\n${result.vmStderr.slice(-3000)}\n--- kernel log (tail)\n${result.kernelLog.slice(-4000)}\n`,
    );
  }
  return settle('kernel tests (VM)', counter, exitStatusOf(result));
}

ensureAptPackages(hostOnly ? HOST_APT_PACKAGES : undefined);
ensureNodeModules();
build();

/** The host test files (built) that boot the test kernel: they import the VM runner or the power-cut driver. */
function bootsTestKernel(file) {
  const text = readFileSync(join(root, file), 'utf8');
  return /from '\.\.\/(vm\/runner|power-cut\/[^']*)\.js'/.test(text);
}

/**
 * --host-only needs nothing for a kernel: the host tests that boot the test kernel (the VM
 * runner's self-tests, the power cuts) run only when its packages are already installed, and
 * are counted as skipped, saying why, when they are not.
 */
function hostTestFiles(requested) {
  const all =
    requested.length > 0
      ? requested
      : readdirSync(join(root, 'dist/test/host'))
          .filter((f) => f.endsWith('.test.js'))
          .sort()
          .map((f) => `dist/test/host/${f}`);
  if (!hostOnly) return { run: all, skipped: [] };
  const missing = missingAptPackages(TEST_KERNEL_APT_PACKAGES);
  if (missing.length === 0) return { run: all, skipped: [] };
  const skipped = all.filter(bootsTestKernel);
  if (skipped.length > 0) {
    process.stdout.write(
      `--host-only: skipping ${skipped.join(', ')}: they boot the test kernel, whose packages are not installed (${missing.join(', ')}); ` +
        'npm test without --host-only installs them\n',
    );
  }
  return { run: all.filter((f) => !skipped.includes(f)), skipped };
}

const hostFiles = files.filter((f) => !f.includes('/kernel/'));
const kernelFiles = files.filter((f) => f.includes('/kernel/'));
const runHost = !kernelOnly && (files.length === 0 || hostFiles.length > 0);
const runKernel = !hostOnly && (files.length === 0 || kernelFiles.length > 0);

const totals = { passed: 0, failed: 0, skipped: 0 };
const add = (c) => {
  totals.passed += c.passed;
  totals.failed += c.failed;
  totals.skipped += c.skipped;
};
// containerd's conformance suite is a Go test binary: built here on the host (a Go build under
// UML takes minutes); the kernel test skips, saying why, when Go or containerd's sources are missing.
if (runKernel && (kernelFiles.length === 0 || kernelFiles.some((f) => f.includes('containerd-suite')))) {
  const { buildContainerdSuite } = await import(join(root, 'dist/test/containerd-suite/build.js'));
  step('containerd conformance suite: go test -c (GOPATH mode, offline)');
  try {
    const result = buildContainerdSuite();
    if (!result.ok) process.stdout.write(`not built: ${result.reason}\n`);
  } catch (error) {
    // the kernel test reports it (it tries the build again and fails with the compiler's output)
    process.stdout.write(`${error.message}\n`);
  }
}
// A real Debian image (debootstrap + umoci), made on the host once per checkout; the kernel
// test skips, saying why, when it could not be made (no mirror, no root).
if (runKernel && (kernelFiles.length === 0 || kernelFiles.some((f) => f.includes('real-image')))) {
  const { buildRealImage } = await import(join(root, 'dist/test/real-image/build.js'));
  step('real image: debootstrap --variant=minbase bookworm, packed by umoci (once per checkout)');
  const result = buildRealImage();
  if (!result.ok) process.stdout.write(`not built: ${result.reason}\n`);
}
if (runHost) {
  const { run, skipped } = hostTestFiles(hostFiles);
  totals.skipped += skipped.length; // one per file: its tests did not run
  if (run.length > 0) add(await runAvaHere('host tests', run));
}
if (runKernel) add(await runKernelTests(kernelFiles.length ? kernelFiles : ['dist/test/kernel/**/*.test.js']));

process.stdout.write(`\n${totals.passed} passed, ${totals.failed} failed, ${totals.skipped} skipped\n`);
process.exit(totals.failed > 0 ? 1 : 0);
