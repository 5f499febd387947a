// Checks every layout and constant of src/ioctl/abi.ts and src/ioctl/loop-abi.ts ("abi.ts" in
// the messages below) against the kernel's uapi headers: a C probe compiled here with gcc
// against <linux/dm-ioctl.h> and <linux/loop.h> prints sizeof/offsetof and every macro and enum
// value. The second, independent check (the same structs declared with ref-struct-di /
// ref-array-di) is abi-ref-struct.test.ts.
// No kernel is needed; gcc and linux-libc-dev are (the test fails, not skips, without them).
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  BLOCK_REQUESTS,
  DM_COMMANDS,
  DM_CONTROL_NODE,
  DM_DIR,
  DM_FLAGS,
  DM_IOCTL,
  DM_IOCTL_LAYOUT,
  DM_MAX_TYPE_NAME,
  DM_NAME_LEN,
  DM_NAME_LIST_FLAG_DOESNT_HAVE_UUID,
  DM_NAME_LIST_FLAG_HAS_UUID,
  DM_STRUCT_LAYOUTS,
  DM_UUID_LEN,
  DM_VERSION_MAJOR,
  DM_VERSION_MINOR,
  DM_VERSION_PATCHLEVEL,
  decodeDev,
  encodeDev,
  iowr,
  type StructLayout,
} from '../../src/ioctl/abi.js';
import {
  LO_FLAGS,
  LO_KEY_SIZE,
  LO_NAME_SIZE,
  LOOP_CONFIGURE_SETTABLE_FLAGS,
  LOOP_REQUESTS,
  LOOP_SET_STATUS_CLEARABLE_FLAGS,
  LOOP_SET_STATUS_SETTABLE_FLAGS,
  LOOP_STRUCT_LAYOUTS,
} from '../../src/ioctl/loop-abi.js';

/** Every struct layout the ioctl layer declares (abi.ts, loop-abi.ts). */
const STRUCT_LAYOUTS: readonly StructLayout[] = [...DM_STRUCT_LAYOUTS, ...LOOP_STRUCT_LAYOUTS];

const APT_HINT = 'install them with: apt-get install gcc linux-libc-dev';

// ---------------------------------------------------------------------------------------------
// What abi.ts claims, keyed by the C expression the probe evaluates
// ---------------------------------------------------------------------------------------------

/** Integer constants: C macro/enum name -> value according to abi.ts. */
function expectedConstants(): Map<string, bigint> {
  const m = new Map<string, bigint>();
  for (const cmd of Object.values(DM_COMMANDS)) {
    m.set(cmd.name, cmd.request);
    m.set(`${cmd.name}_CMD`, BigInt(cmd.nr));
  }
  for (const [name, value] of Object.entries(DM_FLAGS)) m.set(name, BigInt(value));
  for (const [name, value] of Object.entries(LOOP_REQUESTS)) m.set(name, value);
  for (const [name, value] of Object.entries(LO_FLAGS)) m.set(name, BigInt(value));
  for (const [name, value] of Object.entries(BLOCK_REQUESTS)) m.set(name, value);
  const plain: Record<string, number> = {
    DM_IOCTL,
    DM_NAME_LEN,
    DM_UUID_LEN,
    DM_MAX_TYPE_NAME,
    DM_VERSION_MAJOR,
    DM_VERSION_MINOR,
    DM_VERSION_PATCHLEVEL,
    DM_NAME_LIST_FLAG_HAS_UUID,
    DM_NAME_LIST_FLAG_DOESNT_HAVE_UUID,
    LO_NAME_SIZE,
    LO_KEY_SIZE,
    LOOP_SET_STATUS_SETTABLE_FLAGS,
    LOOP_SET_STATUS_CLEARABLE_FLAGS,
    LOOP_CONFIGURE_SETTABLE_FLAGS,
  };
  for (const [name, value] of Object.entries(plain)) m.set(name, BigInt(value));
  return m;
}

const expectedStrings: Record<string, string> = { DM_DIR, DM_CONTROL_NODE };

/** Layout facts: 'sizeof(struct x)', 'offsetof(struct x, f)', 'sizeof(struct x.f)' -> value. */
function expectedLayout(): Map<string, bigint> {
  const m = new Map<string, bigint>();
  for (const s of STRUCT_LAYOUTS) {
    m.set(`sizeof(struct ${s.cName})`, BigInt(s.size));
    for (const [f, l] of Object.entries(s.fields)) {
      m.set(`offsetof(struct ${s.cName}, ${f})`, BigInt(l.offset));
      // A flexible array member (size 0 in abi.ts) has no sizeof in C.
      if (l.size > 0) m.set(`sizeof(struct ${s.cName}.${f})`, BigInt(l.size));
    }
  }
  return m;
}

/** Device numbers checked against glibc's makedev/major/minor (same split as the kernel's). */
const DEV_SAMPLES: ReadonlyArray<readonly [number, number]> = [
  [253, 0],
  [7, 300],
  [259, 65536],
  [4095, 1048575],
  [1, 255],
];

// ---------------------------------------------------------------------------------------------
// The C probe
// ---------------------------------------------------------------------------------------------

function cString(s: string): string {
  return JSON.stringify(s); // a C string literal for these plain ASCII keys
}

function probeSource(): string {
  const lines: string[] = [];
  const emit = (key: string, expr: string) => lines.push(`  U(${cString(key)}, ${expr});`);
  for (const name of expectedConstants().keys()) emit(name, name);
  for (const s of STRUCT_LAYOUTS) {
    emit(`sizeof(struct ${s.cName})`, `sizeof(struct ${s.cName})`);
    for (const [f, l] of Object.entries(s.fields)) {
      emit(`offsetof(struct ${s.cName}, ${f})`, `offsetof(struct ${s.cName}, ${f})`);
      if (l.size > 0) emit(`sizeof(struct ${s.cName}.${f})`, `sizeof(((struct ${s.cName} *)0)->${f})`);
    }
  }
  for (const [major, minor] of DEV_SAMPLES) emit(`makedev(${major}, ${minor})`, `makedev(${major}, ${minor})`);
  const strings = Object.keys(expectedStrings).map((name) => `  S(${cString(name)}, ${name});`);
  return `#include <stdio.h>
#include <stddef.h>
#include <sys/sysmacros.h>
#include <linux/ioctl.h> /* _IOWR, which dm-ioctl.h uses without including */
#include <linux/dm-ioctl.h>
#include <linux/loop.h>
#include <linux/fs.h>

static int first = 1;
#define U(key, expr) do { printf("%s\\n  \\"%s\\": \\"%llu\\"", first ? "" : ",", key, (unsigned long long)(expr)); first = 0; } while (0)
#define S(key, expr) do { printf("%s\\n  \\"%s\\": \\"%s\\"", first ? "" : ",", key, expr); first = 0; } while (0)

int main(void) {
  printf("{");
${lines.join('\n')}
${strings.join('\n')}
  printf("\\n}\\n");
  return 0;
}
`;
}

type Probe = { ok: true; values: Record<string, string>; macros: Set<string> } | { ok: false; error: string };

function runProbe(): Probe {
  const dir = mkdtempSync(join(tmpdir(), 'devmapper-abi-probe-'));
  try {
    const src = join(dir, 'probe.c');
    const exe = join(dir, 'probe');
    writeFileSync(src, probeSource());
    const cc = spawnSync('gcc', ['-std=gnu11', '-Wall', '-o', exe, src], { encoding: 'utf8' });
    if (cc.error) {
      const err = cc.error as NodeJS.ErrnoException;
      return {
        ok: false,
        error: `cannot run gcc (${err.code ?? err.message}): the ABI probe needs gcc and the kernel uapi headers; ${APT_HINT}`,
      };
    }
    if (cc.status !== 0) {
      if (/linux\/(dm-ioctl|loop)\.h/.test(cc.stderr) && /No such file/.test(cc.stderr)) {
        return {
          ok: false,
          error: `kernel uapi headers are missing (<linux/dm-ioctl.h>, <linux/loop.h>); ${APT_HINT}\n${cc.stderr}`,
        };
      }
      // An "undeclared" error names something abi.ts declares that the headers lack.
      return {
        ok: false,
        error: `the ABI probe did not compile (an undeclared name is one abi.ts declares but the headers lack):\n${cc.stderr}`,
      };
    }
    const run = spawnSync(exe, [], { encoding: 'utf8' });
    if (run.status !== 0) return { ok: false, error: `the ABI probe failed: ${run.stderr}` };
    const values = JSON.parse(run.stdout) as Record<string, string>;

    // Every macro the two headers define, to catch names abi.ts does not declare.
    const pp = spawnSync('gcc', ['-dM', '-E', '-x', 'c', '-'], {
      input: '#include <linux/dm-ioctl.h>\n#include <linux/loop.h>\n',
      encoding: 'utf8',
    });
    const macros = new Set<string>();
    for (const m of pp.stdout.matchAll(/^#define ((?:DM|LOOP|LO)_\w+)[ \t]/gm)) macros.add(m[1]!);
    // Enumerators survive preprocessing; macros do not, so this finds only enum members.
    const pe = spawnSync('gcc', ['-E', '-P', '-x', 'c', '-'], {
      input: '#include <linux/dm-ioctl.h>\n#include <linux/loop.h>\n',
      encoding: 'utf8',
    });
    for (const m of pe.stdout.matchAll(/\b(DM_\w+_CMD|LO_FLAGS_\w+)\b/g)) macros.add(m[1]!);
    return { ok: true, values, macros };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const probe = runProbe();

function probeValues(t: { fail: (m: string) => void }): Record<string, string> | undefined {
  if (!probe.ok) {
    t.fail(probe.error);
    return undefined;
  }
  return probe.values;
}

/** Lines "key: abi.ts says X, header says Y" for every disagreement. */
function differences(expected: Map<string, bigint>, actual: Record<string, string>): string[] {
  const diffs: string[] = [];
  for (const [key, value] of expected) {
    const got = actual[key];
    if (got === undefined) diffs.push(`${key}: not printed by the probe`);
    else if (BigInt(got) !== value)
      diffs.push(
        `${key}: abi.ts says ${value} (0x${value.toString(16)}), header says ${got} (0x${BigInt(got).toString(16)})`,
      );
  }
  return diffs;
}

// ---------------------------------------------------------------------------------------------
// Tests against the C headers
// ---------------------------------------------------------------------------------------------

test('struct sizes, field offsets and field sizes match the uapi headers', (t) => {
  const values = probeValues(t);
  if (!values) return;
  const expected = expectedLayout();
  t.true(expected.size > 60, 'every struct and field of abi.ts is probed');
  t.deepEqual(differences(expected, values), []);
});

/** The request and command-number keys of expectedConstants(). */
function isRequestKey(key: string): boolean {
  return key in DM_COMMANDS || key.endsWith('_CMD') || key in LOOP_REQUESTS;
}

test('dm and loop request numbers and command numbers match the uapi headers', (t) => {
  const values = probeValues(t);
  if (!values) return;
  const requests = new Map([...expectedConstants()].filter(([k]) => isRequestKey(k)));
  t.is(requests.size, 18 * 2 + Object.keys(LOOP_REQUESTS).length);
  t.deepEqual(differences(requests, values), []);
});

test('flags, limits and interface version match the uapi headers', (t) => {
  const values = probeValues(t);
  if (!values) return;
  const rest = new Map([...expectedConstants()].filter(([k]) => !isRequestKey(k)));
  t.true(rest.has('DM_IMA_MEASUREMENT_FLAG') && rest.has('LO_FLAGS_DIRECT_IO') && rest.has('DM_VERSION_MINOR'));
  t.deepEqual(differences(rest, values), []);
  const stringDiffs = Object.entries(expectedStrings)
    .filter(([k, v]) => values[k] !== v)
    .map(([k, v]) => `${k}: abi.ts says ${JSON.stringify(v)}, header says ${JSON.stringify(values[k])}`);
  t.deepEqual(stringDiffs, []);
});

test('every DM_*, LOOP_* and LO_* name the headers define is declared in abi.ts', (t) => {
  if (!probe.ok) return t.fail(probe.error);
  // Deliberately not in abi.ts: the header's build-date string, the legacy struct loop_info
  // requests (arch-dependent layout, replaced by the *64 pair) and the obsolete crypto types.
  const ignored = (name: string) =>
    name === 'DM_VERSION_EXTRA' ||
    name === 'LOOP_SET_STATUS' ||
    name === 'LOOP_GET_STATUS' ||
    name.startsWith('LO_CRYPT_');
  const declared = new Set([...expectedConstants().keys(), ...Object.keys(expectedStrings)]);
  const missing = [...probe.macros].filter((n) => !ignored(n) && !declared.has(n)).sort();
  t.true(probe.macros.size > 50, "the preprocessor listed the headers' names");
  t.deepEqual(missing, [], `names in the headers that abi.ts does not declare: ${missing.join(', ')}`);
});

test('encodeDev/decodeDev agree with glibc makedev/major/minor', (t) => {
  const values = probeValues(t);
  if (!values) return;
  for (const [major, minor] of DEV_SAMPLES) {
    const c = BigInt(values[`makedev(${major}, ${minor})`] ?? '-1');
    t.is(encodeDev(major, minor), c, `makedev(${major}, ${minor})`);
    t.deepEqual(decodeDev(c), { major, minor });
  }
});

test('dm requests are unsigned values above 2^31 and independent of the _IOC variant', (t) => {
  for (const cmd of Object.values(DM_COMMANDS)) {
    t.is(typeof cmd.request, 'bigint');
    t.true(cmd.request > 0x7fff_ffffn, `${cmd.name} exceeds a signed 32-bit int`);
    // _IOWR of a 312-byte struct encodes the same on asm-generic and on powerpc/mips.
    t.is(iowr(DM_IOCTL, cmd.nr, DM_IOCTL_LAYOUT.size, 'ppc64'), iowr(DM_IOCTL, cmd.nr, DM_IOCTL_LAYOUT.size, 'x64'));
  }
  t.is(DM_COMMANDS.DM_VERSION.request, 0xc138fd00n);
  t.is(DM_COMMANDS.DM_GET_TARGET_VERSION.request, 0xc138fd11n);
});
