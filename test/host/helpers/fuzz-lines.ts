// Line generators for the fuzz properties of the status and table grammars: token and
// character mutations of valid lines, separators, and random lines from the grammars' vocabulary.
import fc from 'fast-check';
import { U64_MAX, u64 } from './fuzz-harness.js';

export type TokenOp =
  | { op: 'drop' | 'dup'; i: number }
  | { op: 'swap'; i: number; j: number }
  | { op: 'replace'; i: number; token: string };
export type CharOp =
  | { op: 'char'; pos: number; ch: string }
  | { op: 'insert'; pos: number; junk: string }
  | { op: 'delete'; pos: number; n: number };
export interface LineMutation {
  tokenOps: TokenOp[];
  charOps: CharOp[];
}

export const beyondU64 = fc.bigInt({ min: U64_MAX + 1n, max: U64_MAX << 70n });
const negative = fc.bigInt({ min: -U64_MAX - 2n, max: -1n });
const numeral = fc.oneof(u64.map(String), beyondU64.map(String), negative.map(String));
const GRAMMAR_TOKENS = [
  'rw',
  'ro',
  'out_of_data_space',
  'ignore_discard',
  'discard_passdown',
  'no_discard_passdown',
  'error_if_no_space',
  'queue_if_no_space',
  'needs_check',
  '-',
  'Fail',
  'Error',
  'skip_block_zeroing',
  'read_only',
  'SKIP_BLOCK_ZEROING',
  'Read_Only',
  '0',
  '1',
  '4',
  '5',
  '128',
  '127',
  '2097152',
  '2097280',
  '16777215',
  '16777216',
  '253:0',
  '/dev/loop0',
];
const nastyToken = fc.oneof(
  numeral,
  fc.tuple(numeral, numeral).map(([a, b]) => `${a}/${b}`),
  fc.constantFrom(
    '18446744073709551616',
    '18446744073709551615',
    '00000000000000000000000000001',
    '-0',
    '+1',
    '0x10',
    '1e3',
    '1.5',
    '--',
    '/',
    '1/',
    '/1',
    '1/2/3',
    '5/3',
    '-/-',
    '',
    '__proto__',
    'constructor',
    'toString',
    'hasOwnProperty',
    'valueOf',
    '١٢٣',
    '１２',
    'NaN',
    'Infinity',
    '\u00a0',
    '\u2028',
    '\ufeff',
    '\0',
    's\u212aip_block_zeroing',
  ),
  fc.constantFrom(...GRAMMAR_TOKENS),
  fc.string({ unit: 'binary', maxLength: 6 }),
  fc.string({ unit: fc.constantFrom('0', '1', '9', '/', '-', ' ', '\t'), maxLength: 30 }),
);
const tokenOp: fc.Arbitrary<TokenOp> = fc.oneof(
  fc.record({ op: fc.constantFrom('drop' as const, 'dup' as const), i: fc.nat(20) }),
  fc.record({ op: fc.constant('swap' as const), i: fc.nat(20), j: fc.nat(20) }),
  fc.record({ op: fc.constant('replace' as const), i: fc.nat(20), token: nastyToken }),
);
const charOp: fc.Arbitrary<CharOp> = fc.oneof(
  fc.record({
    op: fc.constant('char' as const),
    pos: fc.nat(300),
    ch: fc.oneof(
      fc.string({ unit: 'binary', minLength: 1, maxLength: 1 }),
      fc.constantFrom(' ', '/', '-', '0', '9', '\0', '\u00a0', '\n', '\ud800'),
    ),
  }),
  fc.record({
    op: fc.constant('insert' as const),
    pos: fc.nat(300),
    junk: fc.oneof(
      fc.string({ unit: 'binary', maxLength: 8 }),
      nastyToken,
      fc.constantFrom(' ', ' - ', '/', '99999999999999999999999'),
    ),
  }),
  fc.record({ op: fc.constant('delete' as const), pos: fc.nat(300), n: fc.integer({ min: 1, max: 6 }) }),
);
export const lineMutation: fc.Arbitrary<LineMutation> = fc
  .record({ tokenOps: fc.array(tokenOp, { maxLength: 4 }), charOps: fc.array(charOp, { maxLength: 4 }) })
  .filter((m) => m.tokenOps.length + m.charOps.length > 0);

export function mutateTokens(tokens: readonly string[], ops: readonly TokenOp[]): string[] {
  const t = [...tokens];
  for (const o of ops) {
    if (t.length === 0) {
      if (o.op === 'replace') t.push(o.token);
      continue;
    }
    const i = o.i % t.length;
    if (o.op === 'swap') {
      const j = o.j % t.length;
      [t[i], t[j]] = [t[j]!, t[i]!];
    } else if (o.op === 'replace') t[i] = o.token;
    else if (o.op === 'drop') t.splice(i, 1);
    else t.splice(i, 0, t[i]!);
  }
  return t;
}

export function mutateChars(line: string, ops: readonly CharOp[]): string {
  let s = line;
  for (const o of ops) {
    const p = o.pos % (s.length + 1);
    if (o.op === 'char') s = s.slice(0, p) + o.ch + s.slice(p + 1);
    else if (o.op === 'insert') s = s.slice(0, p) + o.junk + s.slice(p);
    else s = s.slice(0, p) + s.slice(p + o.n);
  }
  return s;
}

export const sepArb = fc.constantFrom(' ', ' ', ' ', '  ', '\t', ' \t ');
export const leadArb = fc.constantFrom('', '', ' ', '\t');
export const trailArb = fc.constantFrom('', ' ', ' ', '\n', ' \n', '\t ');

export function joinLine(tokens: readonly string[], seps: readonly string[], lead: string, trail: string): string {
  return lead + tokens.map((tok, i) => (i === 0 ? tok : (seps[(i - 1) % seps.length] ?? ' ') + tok)).join('') + trail;
}

/** Random lines: arbitrary text, and token soup from the grammars' own vocabulary. */
export const randomLine = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 80 }),
  fc.string({ unit: 'binary-ascii', maxLength: 80 }),
  fc.string({ unit: 'grapheme-ascii', maxLength: 80 }),
  fc
    .tuple(fc.array(nastyToken, { maxLength: 11 }), fc.array(sepArb, { minLength: 1, maxLength: 3 }), leadArb, trailArb)
    .map(([tokens, seps, lead, trail]) => joinLine(tokens, seps, lead, trail)),
);

/**
 * Valid lines' tokens mutated: token operations, joined again with one to `maxSeps` separators
 * (cycled) and a trail, then character operations.
 */
export function mutatedLine(tokens: fc.Arbitrary<readonly string[]>, maxSeps = 2): fc.Arbitrary<string> {
  return fc
    .tuple(tokens, lineMutation, fc.array(sepArb, { minLength: 1, maxLength: maxSeps }), trailArb)
    .map(([toks, m, seps, trail]) => mutateChars(joinLine(mutateTokens(toks, m.tokenOps), seps, '', trail), m.charOps));
}

/** A thin-pool data block size in sectors: a multiple of 128 (64 KiB) up to 1 GiB. */
export const blockSizeArb = fc.integer({ min: 1, max: 16384 }).map((k) => BigInt(k * 128));
