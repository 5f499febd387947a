// The QEMU backend's Debian kernel, prepared once and cached under <project>/.vm/qemu/:
//   linux-image-<abi>-amd64_<version>/         the kernel package, unpacked with dpkg-deb -x
//     root/boot/vmlinuz-<release>
//     root/lib/modules/<release>/modules.dep   generated here (the package has none, and the
//                                              host may have no depmod); modules decompressed
//     softdeps.json                            "pre:" soft dependencies, resolved to module names
//     vmlinux-<release>                        the bzImage's payload, decompressed (PVH boot)
//     initramfs-<hash>.cpio                    keyed by the init binary and the module list
//                                              (qemu-initramfs.ts)
// The first kernel package is chosen with apt (`linux-image-amd64`'s dependency) and fetched with
// `apt-get download`; later runs use the cached one without asking apt (apt-cache is slow here).
// To move to a newer kernel, delete .vm/qemu. The module index is qemu-modules.ts.
import { execFileSync } from 'node:child_process';
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { run } from './qemu-host-tool.js';
import { indexModules } from './qemu-modules.js';

const projectRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const qemuCache = join(projectRoot, '.vm', 'qemu');

export interface QemuKernel {
  /** The cache directory of this kernel package. */
  dir: string;
  /** e.g. 'linux-image-6.1.0-56-amd64_6.1.192-2' */
  package: string;
  /** e.g. '6.1.0-56-amd64' */
  release: string;
  vmlinuz: string;
  moduleTree: string;
}

function cachedKernels(): string[] {
  if (!existsSync(qemuCache)) return [];
  return readdirSync(qemuCache)
    .filter(
      (name) => name.startsWith('linux-image-') && !name.includes('.tmp') && existsSync(join(qemuCache, name, 'root')),
    )
    .sort((a, b) => a.localeCompare(b, 'en', { numeric: true }));
}

function kernelAt(dir: string): QemuKernel {
  const modulesRoot = join(dir, 'root', 'lib', 'modules');
  const release = readdirSync(modulesRoot)[0];
  if (!release) throw new Error(`qemu backend: no module tree in ${modulesRoot}`);
  return {
    dir,
    package: basename(dir),
    release,
    vmlinuz: join(dir, 'root', 'boot', `vmlinuz-${release}`),
    moduleTree: join(modulesRoot, release),
  };
}

/** The package apt would install for `linux-image-amd64`, as 'name_version'. */
function currentKernelPackage(): string {
  const depends = run('apt-cache', ['depends', 'linux-image-amd64']);
  const name = /Depends:\s*(linux-image-[0-9][^\s]*-amd64)\b/.exec(depends)?.[1];
  if (!name) throw new Error(`qemu backend: cannot tell which kernel linux-image-amd64 is from:\n${depends}`);
  const show = run('apt-cache', ['show', '--no-all-versions', name]);
  const version = /^Version:\s*(\S+)/m.exec(show)?.[1];
  if (!version) throw new Error(`qemu backend: no version for ${name} in apt-cache show`);
  return `${name}_${version}`;
}

/**
 * The unpacked Debian kernel: the cached one, else the current linux-image-<abi>-amd64 fetched
 * with apt-get download and unpacked with dpkg-deb -x (never installed). Safe to race: each
 * preparer works in its own temporary directory and renames it into place.
 */
export function prepareKernel(): QemuKernel {
  const cached = cachedKernels();
  if (cached.length > 0) return kernelAt(join(qemuCache, cached[cached.length - 1]!));
  const pkg = currentKernelPackage();
  const [name, version] = pkg.split('_') as [string, string];
  mkdirSync(qemuCache, { recursive: true });
  const work = mkdtempSync(join(qemuCache, `${pkg}.tmp-`));
  try {
    run('apt-get', ['download', `${name}=${version}`], work);
    const deb = readdirSync(work).find((file) => file.endsWith('.deb'));
    if (!deb) throw new Error(`qemu backend: apt-get download ${name}=${version} produced no .deb in ${work}`);
    run('dpkg-deb', ['-x', join(work, deb), join(work, 'root')]);
    rmSync(join(work, deb));
    const kernel = kernelAt(work);
    if (!existsSync(kernel.vmlinuz)) throw new Error(`qemu backend: ${name} has no ${kernel.vmlinuz}`);
    indexModules(kernel.moduleTree, join(work, 'softdeps.json'));
    chmodSync(work, 0o755);
    const final = join(qemuCache, pkg);
    try {
      renameSync(work, final);
    } catch (error) {
      if (!existsSync(join(final, 'root'))) throw error; // else a concurrent run got there first
    }
    return kernelAt(final);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/**
 * The kernel as an uncompressed ELF vmlinux, for qemu's PVH entry: decompressing Debian's
 * xz-packed bzImage under TCG takes seconds at every boot, so do it once here. The payload is
 * located through the bzImage header (setup_sects, payload_offset, payload_length; the last 4
 * bytes of the payload are the decompressed size). Falls back to the bzImage when the payload
 * is in a format not handled here or the ELF lacks the PVH entry note.
 */
export function prepareVmlinux(kernel: QemuKernel): string {
  const vmlinux = join(kernel.dir, `vmlinux-${kernel.release}`);
  if (existsSync(vmlinux)) return vmlinux;
  const unusable = join(kernel.dir, `vmlinux-${kernel.release}.unusable`);
  if (existsSync(unusable)) return kernel.vmlinuz;
  const image = readFileSync(kernel.vmlinuz);
  const setupSectors = image[0x1f1] || 4;
  const start = (setupSectors + 1) * 512 + image.readUInt32LE(0x248);
  const payload = image.subarray(start, start + image.readUInt32LE(0x24c) - 4);
  const tools: [number[], string, string[]][] = [
    [[0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00], 'xz', ['-dc', '--single-stream']],
    [[0x28, 0xb5, 0x2f, 0xfd], 'zstd', ['-dc']],
    [[0x1f, 0x8b], 'gzip', ['-dc']],
  ];
  const tool = tools.find(([magic]) => magic.every((byte, i) => payload[i] === byte));
  let elf: Buffer | undefined;
  if (tool) {
    try {
      elf = execFileSync(tool[1], tool[2], { input: payload, maxBuffer: 1 << 30, stdio: ['pipe', 'pipe', 'ignore'] });
    } catch {
      elf = undefined;
    }
  }
  // XEN_ELFNOTE_PHYS32_ENTRY (18) in a "Xen" note: what qemu needs to boot an ELF kernel.
  const pvhNote = Buffer.from([18, 0, 0, 0, 0x58, 0x65, 0x6e, 0]); // n_type, then the name
  const hasPvhNote = (e: Buffer): boolean => {
    for (let at = e.indexOf(pvhNote); at >= 8; at = e.indexOf(pvhNote, at + 1)) {
      if (e.readUInt32LE(at - 8) === 4) return true; // n_namesz of "Xen\0"
    }
    return false;
  };
  if (elf?.readUInt32BE(0) !== 0x7f454c46 || !hasPvhNote(elf)) {
    writeFileSync(unusable, `no PVH-bootable vmlinux could be extracted from ${kernel.vmlinuz}\n`);
    return kernel.vmlinuz;
  }
  const partial = `${vmlinux}.${process.pid}.tmp`;
  writeFileSync(partial, elf);
  renameSync(partial, vmlinux);
  return vmlinux;
}
