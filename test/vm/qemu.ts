// QEMU backend: Debian's generic amd64 kernel under qemu-system-x86_64 (TCG, no KVM needed).
// The guest starts in a small initramfs whose /init is test/vm/init.c (VM_STAGE=initramfs): it
// loads virtio + 9p, mounts the host's `/` (exported with -virtfs) and switches root to it; from
// there on it is the same PID 1 as under UML (see runner.ts and init.c for the share-dir contract).
// The kernel, its module index and the initramfs are prepared once and cached (qemu-kernel.ts,
// qemu-modules.ts, qemu-initramfs.ts); this file finds qemu and writes its command line.
import { existsSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { delimiter, join } from 'node:path';
import { prepareInitramfs } from './qemu-initramfs.js';
import { prepareKernel, prepareVmlinux } from './qemu-kernel.js';
import { availableModules, resolveQemuModules } from './qemu-modules.js';
import type { BootSpec } from './runner.js';

export interface QemuBootOptions {
  share: string;
  init: string;
  modules: string[];
  memory: string;
}

export const QEMU_BINARY = 'qemu-system-x86_64';
export const QEMU_INSTALL_HINT = 'apt-get install -y --no-install-recommends qemu-system-x86';
/** The 9p mount tag of the host's `/` (init.c's default for VM_ROOT_TAG). */
const ROOT_TAG = 'hostroot';
/**
 * 9p mount options of the guest's root. cache=loose lets the guest keep file data and metadata
 * in its page cache: a second `node` start then costs ~1 s instead of ~6 s under TCG. Sound here
 * because nothing on the host changes the files a job uses while it runs; the guest's writes
 * reach the host (init fsyncs the status file and syncs before powering off).
 */
const ROOT_OPTIONS = 'trans=virtio,version=9p2000.L,msize=262144,cache=loose';

/** Filesystems the tests format and mount, loaded when they are modules and present. */
const FILESYSTEM_MODULES = ['ext4', 'xfs'];

/** Finds the qemu executable in PATH, or throws with the command that installs it. */
export function qemuBinary(): string {
  for (const dir of (process.env.PATH ?? '/usr/bin:/bin').split(delimiter)) {
    const candidate = join(dir || '.', QEMU_BINARY);
    if (existsSync(candidate)) return candidate;
  }
  throw new Error(`${QEMU_BINARY} is not installed; run: ${QEMU_INSTALL_HINT}`);
}

/** qemu's -m takes '2G' or '2048M' (or a bare number of MiB); UML-style '2048m' works too. */
function memoryArg(memory: string): string {
  if (!/^\d+[kKmMgGtT]?$/.test(memory)) throw new Error(`qemu backend: bad memory size ${JSON.stringify(memory)}`);
  return memory.toUpperCase();
}

export function bootQemu(options: QemuBootOptions): BootSpec {
  const executable = qemuBinary();
  const kernel = prepareKernel();
  const vmlinux = prepareVmlinux(kernel);
  const initramfs = prepareInitramfs(kernel, options.init);
  const names = [...options.modules, ...availableModules(kernel, FILESYSTEM_MODULES)];
  writeFileSync(join(options.share, 'modules'), `${resolveQemuModules(kernel, names).join('\n')}\n`);
  const cmdline = [
    'console=ttyS0',
    'quiet',
    'loglevel=0', // in this order: quiet would raise the level again
    'panic=-1', // a panic reboots, which -no-reboot turns into qemu exiting: guest-died, not a hang
    'mitigations=off', // page-table isolation etc. cost a lot under TCG and protect nothing here
    'rdinit=/init',
    'VM_STAGE=initramfs',
    `VM_ROOT_TAG=${ROOT_TAG}`,
    `VM_ROOT_OPTIONS=${ROOT_OPTIONS}`,
    `VM_SHARE=${options.share}`,
  ];
  return {
    executable,
    args: [
      '-accel',
      'tcg',
      '-machine',
      'pc',
      '-cpu',
      'max',
      // Each vCPU is a host thread under TCG; keep a host core free for qemu's 9p server (on a
      // 2-core host -smp 2 booted ~1 s slower and started node no faster than -smp 1).
      '-smp',
      String(Math.min(2, Math.max(1, availableParallelism() - 1))),
      '-m',
      memoryArg(options.memory),
      '-nodefaults',
      '-no-user-config',
      '-display',
      'none',
      '-no-reboot',
      '-chardev',
      'stdio,id=console,signal=off',
      '-serial',
      'chardev:console',
      '-kernel',
      vmlinux,
      '-initrd',
      initramfs,
      '-append',
      cmdline.join(' '),
      '-virtfs',
      `local,path=/,mount_tag=${ROOT_TAG},security_model=none,multidevs=remap`,
    ],
    scratch: [],
  };
}
