// The lexical layer of the thin targets' status and table lines: whitespace-separated tokens
// (the kernel's DMEMIT("%s ", ...) leaves a trailing space) and unsigned decimal numbers.
import { ParseError } from '../errors.js';
import { U64_MAX } from './units.js';

const DECIMAL = /^[0-9]+$/;

/** Splits a kernel line into tokens; leading/trailing whitespace (the trailing space) is dropped. */
export function tokens(line: string): string[] {
  const t = line.trim();
  return t === '' ? [] : t.split(/\s+/);
}

/** A u64 printed with %llu / %lu. */
export function u64(token: string | undefined, field: string, what: string, line: string): bigint {
  if (token === undefined) throw new ParseError(what, line, `missing ${field}`);
  if (!DECIMAL.test(token))
    throw new ParseError(what, line, `${field} ${JSON.stringify(token)} is not a decimal number`);
  const n = BigInt(token);
  if (n > U64_MAX) throw new ParseError(what, line, `${field} ${token} does not fit in 64 bits`);
  return n;
}
