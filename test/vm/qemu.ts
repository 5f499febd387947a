// QEMU backend: Debian's generic amd64 kernel under qemu-system-x86_64 (TCG, no KVM needed).
// The guest starts in a small initramfs whose /init is test/vm/init.c (VM_STAGE=initramfs): it
// loads virtio + 9p, mounts the host's `/` (exported with -virtfs) and switches root to it; from
// there on it is the same PID 1 as under UML (see runner.ts and init.c for the share-dir contract).
//
// Everything the backend needs is prepared once and cached under <project>/.vm/qemu/:
//   linux-image-<abi>-amd64_<version>/         the kernel package, unpacked with dpkg-deb -x
//     root/boot/vmlinuz-<release>
//     root/lib/modules/<release>/modules.dep   generated here (the package has none, and the
//                                              host may have no depmod); modules decompressed
//     softdeps.json                            "pre:" soft dependencies, resolved to module names
//     vmlinux-<release>                        the bzImage's payload, decompressed (PVH boot)
//     initramfs-<hash>.cpio                    keyed by the init binary and the module list
// The first kernel package is chosen with apt (`linux-image-amd64`'s dependency) and fetched with
// `apt-get download`; later runs use the cached one without asking apt (apt-cache is slow here).
// To move to a newer kernel, delete .vm/qemu.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
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
import { availableParallelism } from 'node:os';
import { basename, delimiter, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { resolveModules, type BootSpec } from './runner.js';

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
/** What the initramfs stage needs to mount the host root (dependencies are added). */
const INITRAMFS_MODULES = ['virtio_pci', '9pnet_virtio', '9p'];
/** Filesystems the tests format and mount, loaded when they are modules and present. */
const FILESYSTEM_MODULES = ['ext4', 'xfs'];
/** Bumped when the layout of the cache or the initramfs changes. */
const CACHE_FORMAT = '1';

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

/** Finds the qemu executable in PATH, or throws with the command that installs it. */
export function qemuBinary(): string {
  for (const dir of (process.env.PATH ?? '/usr/bin:/bin').split(delimiter)) {
    const candidate = join(dir || '.', QEMU_BINARY);
    if (existsSync(candidate)) return candidate;
  }
  throw new Error(`${QEMU_BINARY} is not installed; run: ${QEMU_INSTALL_HINT}`);
}

function run(command: string, args: string[], cwd?: string): string {
  try {
    return execFileSync(command, args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (error) {
    const e = error as { stderr?: string; message: string };
    throw new Error(`qemu backend: \`${command} ${args.join(' ')}\` failed: ${(e.stderr ?? '').trim() || e.message}`);
  }
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

function walkModules(dir: string, found: string[] = []): string[] {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) walkModules(path, found);
    else if (/\.ko(\.(xz|zst|gz))?$/.test(entry.name)) found.push(path);
  }
  return found;
}

/** The NUL-separated key=value strings of an ELF64 (little-endian) module's .modinfo section. */
function readModinfo(file: string): string[] {
  const elf = readFileSync(file);
  if (elf.readUInt32BE(0) !== 0x7f454c46 || elf[4] !== 2 || elf[5] !== 1) {
    throw new Error(`qemu backend: ${file} is not a little-endian ELF64 module`);
  }
  const shoff = Number(elf.readBigUInt64LE(0x28));
  const shentsize = elf.readUInt16LE(0x3a);
  const shnum = elf.readUInt16LE(0x3c);
  const section = (i: number) => {
    const at = shoff + i * shentsize;
    return {
      name: elf.readUInt32LE(at),
      offset: Number(elf.readBigUInt64LE(at + 0x18)),
      size: Number(elf.readBigUInt64LE(at + 0x20)),
    };
  };
  const names = section(elf.readUInt16LE(0x3e));
  for (let i = 0; i < shnum; i++) {
    const s = section(i);
    const start = names.offset + s.name;
    if (elf.toString('latin1', start, elf.indexOf(0, start)) === '.modinfo') {
      return elf
        .toString('latin1', s.offset, s.offset + s.size)
        .split('\0')
        .filter(Boolean);
    }
  }
  return [];
}

/** The kernel's name for a module file: basename without .ko, '-' read as '_'. */
function kernelModuleName(path: string): string {
  return basename(path)
    .replace(/\.ko(\.[a-z]+)?$/, '')
    .replace(/-/g, '_');
}

/**
 * Writes <tree>/modules.dep the way depmod would (each module's whole dependency closure, nearest
 * first) from the modules' own .modinfo `depends=`, and the `softdep=pre:` names resolved through
 * the modules' aliases to `softdepsFile` (name -> module file names to load first). Compressed
 * modules are decompressed first, so the guest's finit_module needs no decompression support.
 */
export function indexModules(tree: string, softdepsFile: string): void {
  let files = walkModules(join(tree, 'kernel'));
  const compressed = files.filter((file) => !file.endsWith('.ko'));
  for (const [ext, tool] of [
    ['.xz', 'xz'],
    ['.zst', 'zstd'],
    ['.gz', 'gzip'],
  ] as const) {
    const batch = compressed.filter((file) => file.endsWith(ext));
    // -f: replace a .ko left by an interrupted run; zstd alone keeps its input without --rm.
    const flags = tool === 'zstd' ? ['-d', '-q', '-f', '--rm'] : ['-d', '-q', '-f'];
    for (let i = 0; i < batch.length; i += 500) run(tool, [...flags, ...batch.slice(i, i + 500)]);
  }
  if (compressed.length > 0) files = walkModules(join(tree, 'kernel')).filter((file) => file.endsWith('.ko'));
  const relative = new Map<string, string>(); // kernel name -> path relative to the tree
  const depends = new Map<string, string[]>();
  const softPre = new Map<string, string[]>();
  const aliases = new Map<string, string[]>();
  for (const file of files) {
    const name = kernelModuleName(file);
    relative.set(name, file.slice(tree.length + 1));
    for (const entry of readModinfo(file)) {
      const eq = entry.indexOf('=');
      const key = entry.slice(0, eq);
      const value = entry.slice(eq + 1);
      if (key === 'depends')
        depends.set(
          name,
          value
            .split(',')
            .filter(Boolean)
            .map((d) => d.replace(/-/g, '_')),
        );
      else if (key === 'alias' && !/[*?[]/.test(value)) aliases.set(value, [...(aliases.get(value) ?? []), name]);
      else if (key === 'softdep') {
        // "pre: a b post: c": only the pre: part matters for loading order.
        let pre = false;
        for (const word of value.split(/\s+/).filter(Boolean)) {
          if (word === 'pre:' || word === 'post:') pre = word === 'pre:';
          else if (pre) softPre.set(name, [...(softPre.get(name) ?? []), word]);
        }
      }
    }
  }
  const closure = (name: string, seen = new Set<string>()): string[] => {
    const out: string[] = [];
    for (const dep of depends.get(name) ?? []) {
      if (seen.has(dep)) continue;
      seen.add(dep);
      out.push(dep, ...closure(dep, seen));
    }
    return out;
  };
  const lines: string[] = [];
  for (const [name, path] of relative) {
    const deps = closure(name)
      .map((dep) => relative.get(dep))
      .filter((p): p is string => p !== undefined);
    lines.push(`${path}:${deps.map((d) => ` ${d}`).join('')}`);
  }
  writeFileSync(join(tree, 'modules.dep'), `${lines.join('\n')}\n`);
  // A soft dependency names a module or an alias ("crypto-crc32c"); for an alias with several
  // providers take the generic C one, which works on every CPU the guest may emulate.
  const softdeps: Record<string, string[]> = {};
  for (const [name, wanted] of softPre) {
    const chosen: string[] = [];
    for (const want of wanted) {
      const direct = want.replace(/-/g, '_');
      if (relative.has(direct)) {
        chosen.push(direct);
        continue;
      }
      const providers = [...new Set(aliases.get(want) ?? [])].filter((p) => relative.has(p)).sort();
      const pick = providers.find((p) => p.endsWith('_generic')) ?? providers[0];
      if (pick) chosen.push(pick);
    }
    if (chosen.length > 0) softdeps[name] = chosen.map((c) => basename(relative.get(c)!).replace(/\.ko$/, ''));
  }
  writeFileSync(softdepsFile, `${JSON.stringify(softdeps, null, 1)}\n`);
}

/**
 * Module files in load order for `names`, their dependencies and the soft (pre:) dependencies
 * of all of those, which resolveModules alone does not know about (ext4 and libcrc32c need a
 * crc32c implementation loaded first, and the guest has no modprobe to fetch it on demand).
 */
export function resolveQemuModules(kernel: QemuKernel, names: string[]): string[] {
  const softdeps = JSON.parse(readFileSync(join(kernel.dir, 'softdeps.json'), 'utf8')) as Record<string, string[]>;
  const ordered: string[] = [];
  const expanding = new Set<string>();
  const add = (name: string): void => {
    const key = name.replace(/-/g, '_');
    if (expanding.has(key)) return;
    expanding.add(key);
    for (const path of resolveModules(kernel.moduleTree, [name])) {
      for (const pre of softdeps[kernelModuleName(path)] ?? []) add(pre);
    }
    ordered.push(name);
  };
  for (const name of names) add(name);
  return resolveModules(kernel.moduleTree, ordered);
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

/** Which of `names` the kernel has as a module or built in. */
function available(kernel: QemuKernel, names: string[]): string[] {
  return names.filter((name) => {
    try {
      resolveModules(kernel.moduleTree, [name]);
      return true;
    } catch {
      return false;
    }
  });
}

// --- initramfs (cpio "newc", uncompressed: the kernel unpacks it faster than TCG inflates) ---

interface CpioEntry {
  name: string;
  mode: number;
  data?: Buffer;
  rdev?: [number, number];
}

function cpio(entries: CpioEntry[]): Buffer {
  const parts: Buffer[] = [];
  let size = 0;
  const push = (buf: Buffer): void => {
    parts.push(buf);
    size += buf.length;
    const pad = (4 - (size % 4)) % 4;
    if (pad) {
      parts.push(Buffer.alloc(pad));
      size += pad;
    }
  };
  const hex = (n: number): string => n.toString(16).padStart(8, '0');
  let ino = 1;
  const trailer: CpioEntry = { name: 'TRAILER!!!', mode: 0 };
  for (const entry of [...entries, trailer]) {
    const data = entry.data ?? Buffer.alloc(0);
    const [major, minor] = entry.rdev ?? [0, 0];
    const fields = [
      ino++,
      entry.mode,
      0,
      0,
      1,
      0,
      data.length,
      0,
      0,
      major,
      minor,
      Buffer.byteLength(entry.name) + 1,
      0,
    ];
    push(Buffer.from(`070701${fields.map(hex).join('')}${entry.name}\0`, 'latin1'));
    if (data.length > 0) push(data);
  }
  return Buffer.concat(parts);
}

const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFCHR = 0o020000;

/** The initramfs for this kernel and init binary: /init, /modules and the modules it lists. */
export function prepareInitramfs(kernel: QemuKernel, init: string): string {
  const modules = resolveQemuModules(kernel, INITRAMFS_MODULES);
  const initBinary = readFileSync(init);
  const hash = createHash('sha256')
    .update(CACHE_FORMAT)
    .update(initBinary)
    .update(modules.join('\n'))
    .digest('hex')
    .slice(0, 12);
  const image = join(kernel.dir, `initramfs-${hash}.cpio`);
  if (existsSync(image)) return image;
  const entries: CpioEntry[] = [
    { name: 'dev', mode: S_IFDIR | 0o755 },
    { name: 'dev/console', mode: S_IFCHR | 0o600, rdev: [5, 1] },
    { name: 'proc', mode: S_IFDIR | 0o755 },
    { name: 'sys', mode: S_IFDIR | 0o755 },
    { name: 'newroot', mode: S_IFDIR | 0o755 },
    { name: 'lib', mode: S_IFDIR | 0o755 },
    { name: 'lib/modules', mode: S_IFDIR | 0o755 },
    { name: 'init', mode: S_IFREG | 0o755, data: initBinary },
  ];
  const inImage = modules.map((path) => `/lib/modules/${basename(path)}`);
  for (const [i, path] of modules.entries()) {
    entries.push({ name: inImage[i]!.slice(1), mode: S_IFREG | 0o644, data: readFileSync(path) });
  }
  entries.push({ name: 'modules', mode: S_IFREG | 0o644, data: Buffer.from(`${inImage.join('\n')}\n`) });
  const partial = `${image}.${process.pid}.tmp`;
  writeFileSync(partial, cpio(entries));
  renameSync(partial, image);
  return image;
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
  const names = [...options.modules, ...available(kernel, FILESYSTEM_MODULES)];
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
