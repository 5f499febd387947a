// The QEMU backend's module index of an unpacked Debian kernel: modules.dep written the way
// depmod would from the modules' own .modinfo (compressed modules decompressed first), the
// "pre:" soft dependencies resolved to module files, and the load order of a list of modules
// with all their dependencies (the guest has no modprobe).
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import type { QemuKernel } from './qemu-kernel.js';
import { run } from './qemu-host-tool.js';
import { resolveModules } from './runner.js';

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

/** Which of `names` the kernel has as a module or built in. */
export function availableModules(kernel: QemuKernel, names: string[]): string[] {
  return names.filter((name) => {
    try {
      resolveModules(kernel.moduleTree, [name]);
      return true;
    } catch {
      return false;
    }
  });
}
