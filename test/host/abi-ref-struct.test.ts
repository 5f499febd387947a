// Checks every struct layout of src/ioctl/abi.ts and src/ioctl/loop-abi.ts ("abi.ts" in the
// messages below) against an independent declaration of the same structs with ref-struct-di /
// ref-array-di, written from the uapi header text: they must lay them out identically. The
// check against the headers themselves (a C probe compiled with gcc) is abi-conformance.test.ts.
// No kernel and no compiler are needed.
import test from 'ava';
import { createRequire } from 'node:module';
import {
  DM_NAME_LIST_LAYOUT,
  DM_STRUCT_LAYOUTS,
  DM_TARGET_DEPS_LAYOUT,
  DM_TARGET_MSG_LAYOUT,
  DM_TARGET_SPEC_LAYOUT,
  DM_TARGET_VERSIONS_LAYOUT,
  type StructLayout,
} from '../../src/ioctl/abi.js';
import { LOOP_CONFIG_LAYOUT, LOOP_INFO64_LAYOUT, LOOP_STRUCT_LAYOUTS } from '../../src/ioctl/loop-abi.js';

/** Every struct layout the ioctl layer declares (abi.ts, loop-abi.ts). */
const STRUCT_LAYOUTS: readonly StructLayout[] = [...DM_STRUCT_LAYOUTS, ...LOOP_STRUCT_LAYOUTS];

interface RefType {
  size: number;
  alignment: number;
  indirection: number;
}
interface RefStructType extends RefType {
  fields: Record<string, { offset: number; type: RefType }>;
}
const require = createRequire(import.meta.url);
const ref = require('ref-napi') as { types: Record<'uint8' | 'uint32' | 'int32' | 'uint64' | 'char', RefType> };
const Struct = (require('ref-struct-di') as (r: unknown) => (fields: Record<string, RefType>) => RefStructType)(ref);
const ArrayType = (require('ref-array-di') as (r: unknown) => (type: RefType, length: number) => RefType)(ref);

const { uint8: u8, uint32: u32, int32: s32, uint64: u64, char } = ref.types;

/** A field list in header order; `flex` marks a flexible array member of that element type. */
type Decl = Array<[name: string, type: RefType] | [name: string, elem: RefType, flex: 'flex']>;

// Written from the header text, not from abi.ts.
const loopInfo64Decl: Decl = [
  ['lo_device', u64],
  ['lo_inode', u64],
  ['lo_rdevice', u64],
  ['lo_offset', u64],
  ['lo_sizelimit', u64],
  ['lo_number', u32],
  ['lo_encrypt_type', u32],
  ['lo_encrypt_key_size', u32],
  ['lo_flags', u32],
  ['lo_file_name', ArrayType(u8, 64)],
  ['lo_crypt_name', ArrayType(u8, 64)],
  ['lo_encrypt_key', ArrayType(u8, 32)],
  ['lo_init', ArrayType(u64, 2)],
];

function structOf(decl: Decl, flexAs?: string): RefStructType {
  const fields: Record<string, RefType> = {};
  for (const [name, type, flex] of decl) {
    if (!flex) fields[name] = type;
    else if (name === flexAs) fields[name] = ArrayType(type, 1); // [1] to learn its offset
  }
  return Struct(fields);
}

const refDecls: Record<string, Decl> = {
  dm_ioctl: [
    ['version', ArrayType(u32, 3)],
    ['data_size', u32],
    ['data_start', u32],
    ['target_count', u32],
    ['open_count', s32],
    ['flags', u32],
    ['event_nr', u32],
    ['padding', u32],
    ['dev', u64],
    ['name', ArrayType(char, 128)],
    ['uuid', ArrayType(char, 129)],
    ['data', ArrayType(char, 7)],
  ],
  dm_target_spec: [
    ['sector_start', u64],
    ['length', u64],
    ['status', s32],
    ['next', u32],
    ['target_type', ArrayType(char, 16)],
  ],
  dm_target_deps: [
    ['count', u32],
    ['padding', u32],
    ['dev', u64, 'flex'],
  ],
  dm_name_list: [
    ['dev', u64],
    ['next', u32],
    ['name', char, 'flex'],
  ],
  dm_target_versions: [
    ['next', u32],
    ['version', ArrayType(u32, 3)],
    ['name', char, 'flex'],
  ],
  dm_target_msg: [
    ['sector', u64],
    ['message', char, 'flex'],
  ],
  loop_info64: loopInfo64Decl,
  loop_config: [
    ['fd', u32],
    ['block_size', u32],
    ['info', structOf(loopInfo64Decl)],
    ['__reserved', ArrayType(u64, 8)],
  ],
};

function refDifferences(layout: StructLayout, decl: Decl): string[] {
  const diffs: string[] = [];
  const s = layout.cName;
  const fixed = structOf(decl);
  if (fixed.size !== layout.size) diffs.push(`sizeof(${s}): abi.ts ${layout.size}, ref-struct ${fixed.size}`);
  const declared = decl.map(([name]) => name);
  const inAbi = Object.keys(layout.fields);
  if (declared.join() !== inAbi.join())
    diffs.push(`${s} fields: abi.ts [${inAbi.join()}], ref-struct [${declared.join()}]`);
  for (const [name, , flex] of decl) {
    const want = layout.fields[name];
    if (!want) continue;
    const got = flex ? structOf(decl, name).fields[name]! : fixed.fields[name]!;
    if (got.offset !== want.offset)
      diffs.push(`offsetof(${s}, ${name}): abi.ts ${want.offset}, ref-struct ${got.offset}`);
    const size = flex ? 0 : got.type.size;
    if (size !== want.size) diffs.push(`sizeof(${s}.${name}): abi.ts ${want.size}, ref-struct ${size}`);
  }
  return diffs;
}

test('ref-struct-di declarations of every struct agree with abi.ts', (t) => {
  t.deepEqual(Object.keys(refDecls).sort(), STRUCT_LAYOUTS.map((l) => l.cName).sort());
  const diffs = STRUCT_LAYOUTS.flatMap((l) => refDifferences(l, refDecls[l.cName]!));
  t.deepEqual(diffs, []);
});

test('ref-struct-di sizes match the well-known totals', (t) => {
  // Spelled out so a wrong abi.ts and a wrong declaration cannot agree by accident.
  const sizes = Object.fromEntries(Object.entries(refDecls).map(([k, d]) => [k, structOf(d).size]));
  t.deepEqual(sizes, {
    dm_ioctl: 312,
    dm_target_spec: 40,
    dm_target_deps: 8,
    dm_name_list: 16,
    dm_target_versions: 16,
    dm_target_msg: 8,
    loop_info64: 232,
    loop_config: 304,
  });
  t.is(structOf(refDecls.dm_ioctl!).fields.dev!.offset, 40);
  t.is(structOf(refDecls.dm_name_list!, 'name').fields.name!.offset, 12);
  t.deepEqual(
    [
      DM_TARGET_SPEC_LAYOUT,
      DM_TARGET_DEPS_LAYOUT,
      DM_NAME_LIST_LAYOUT,
      DM_TARGET_VERSIONS_LAYOUT,
      DM_TARGET_MSG_LAYOUT,
      LOOP_INFO64_LAYOUT,
      LOOP_CONFIG_LAYOUT,
    ].map((l) => l.size),
    [40, 8, 16, 16, 8, 232, 304],
  );
});
