// Shared set-up for `npm test` and `npm run demo` on a fresh machine: the Debian packages
// (installed when root, else the exact command is printed), `npm ci` when node_modules is
// missing or stale, and the tsc build.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, rmSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');

// What the tests need from Debian, in two lists. HOST_APT_PACKAGES: the host tests that need no
// kernel support (`npm test -- --host-only` installs only these): gcc and the libc/uapi headers
// for the ABI probe (C structs against <linux/dm-ioctl.h>) and the C side of the bench host part.
// KERNEL_APT_PACKAGES: the test kernels (UML, and QEMU for the latency benchmarks; the host tests
// that boot them, vm-runner and power-cut, are left out of --host-only when these are missing),
// mkfs for thin devices, dmsetup/losetup as the independent reference in tests, libdevmapper's
// headers for the benchmark's libdevmapper program (bench/c/dm-libdm.c); the engine tests:
// containerd + runc (the real engine driving the snapshotter), busybox-static (the test images'
// only binary), golang-go + containerd's Go sources (its snapshotter conformance suite, built
// offline), thin-provisioning-tools (thin_check of the pool's metadata), umoci (a reference
// unpack of image layers) and debootstrap (a real Debian image: test/real-image/build.ts).
export const HOST_APT_PACKAGES = ['gcc', 'libc6-dev', 'linux-libc-dev'];
export const KERNEL_APT_PACKAGES = [
  'user-mode-linux',
  'qemu-system-x86',
  'e2fsprogs',
  'dmsetup',
  'util-linux',
  'procps',
  'libdevmapper-dev',
  'containerd',
  'runc',
  'busybox-static',
  'golang-go',
  'golang-github-containerd-containerd-dev',
  'thin-provisioning-tools',
  'umoci',
  'debootstrap',
];
/** Both lists: what `npm test` (host and kernel tests) installs. */
export const APT_PACKAGES = [...HOST_APT_PACKAGES, ...KERNEL_APT_PACKAGES];
/** The packages the host tests that boot the test kernel (test/vm, test/power-cut) need. */
export const TEST_KERNEL_APT_PACKAGES = ['user-mode-linux', 'qemu-system-x86', 'e2fsprogs', 'util-linux', 'procps'];

export function step(message) {
  process.stdout.write(`\n== ${message}\n`);
}

export function missingAptPackages(packages) {
  return packages.filter((pkg) => {
    // biome-ignore lint/suspicious/noTemplateCurlyInString: dpkg-query's own format syntax
    const r = spawnSync('dpkg-query', ['-W', '-f=${Status}', pkg], { encoding: 'utf8' });
    return r.status !== 0 || !r.stdout.includes('install ok installed');
  });
}

export function ensureAptPackages(packages = APT_PACKAGES) {
  const missing = missingAptPackages(packages);
  if (missing.length === 0) return;
  const command = `apt-get update && apt-get install -y --no-install-recommends ${missing.join(' ')}`;
  if (process.getuid?.() !== 0) {
    process.stderr.write(`These Debian packages are needed: ${missing.join(', ')}.\nRun as root:\n  ${command}\n`);
    process.exit(1);
  }
  step(`installing ${missing.join(' ')}`);
  execFileSync('apt-get', ['update', '-q'], { stdio: 'inherit' });
  execFileSync('apt-get', ['install', '-y', '-q', '--no-install-recommends', ...missing], {
    stdio: 'inherit',
    env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
  });
}

export function ensureNodeModules() {
  const stamp = join(root, 'node_modules/.package-lock.json');
  if (existsSync(stamp) && statSync(stamp).mtimeMs >= statSync(join(root, 'package-lock.json')).mtimeMs) return;
  step('npm ci');
  execFileSync('npm', ['ci', '--no-audit', '--no-fund'], { stdio: 'inherit', cwd: root });
}

export function build() {
  step('tsc');
  removeStaleOutput();
  execFileSync(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.json'], {
    stdio: 'inherit',
    cwd: root,
  });
}

/**
 * tsc never deletes what it once emitted: a test file renamed or split would still run from its
 * old dist/ copy. Drops every dist/ .js (and .d.ts/.map) whose .ts source is gone.
 */
function removeStaleOutput(dir = join(root, 'dist')) {
  if (!existsSync(dir)) return;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) {
      removeStaleOutput(path);
      continue;
    }
    const source = /^(.*)\.(js|d\.ts|js\.map|d\.ts\.map)$/.exec(entry.name);
    if (!source) continue;
    const ts = join(root, relative(join(root, 'dist'), dir), `${source[1]}.ts`);
    if (!existsSync(ts)) rmSync(path);
  }
}

/** True when this process can talk to device-mapper itself (a real dm host, as root). */
export function canUseDeviceMapperHere() {
  if (!existsSync('/dev/mapper/control')) return false;
  const probe = spawnSync(
    process.execPath,
    [
      '--input-type=module',
      '-e',
      "const { DeviceMapper } = await import('./dist/src/index.js'); const dm = DeviceMapper.open(); dm.version(); dm.close();",
    ],
    { encoding: 'utf8', cwd: root },
  );
  return probe.status === 0;
}
