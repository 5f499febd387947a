// The QEMU backend's initramfs: a cpio "newc" archive, uncompressed (the kernel unpacks it faster
// than TCG inflates), with test/vm/init.c as /init, the modules that mount the host's `/` over
// virtio-9p and /modules listing them in load order; cached next to the kernel (qemu-kernel.ts).
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import type { QemuKernel } from './qemu-kernel.js';
import { resolveQemuModules } from './qemu-modules.js';

/** What the initramfs stage needs to mount the host root (dependencies are added). */
const INITRAMFS_MODULES = ['virtio_pci', '9pnet_virtio', '9p'];

/** Bumped when the layout of the cache or the initramfs changes. */
const CACHE_FORMAT = '1';

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
