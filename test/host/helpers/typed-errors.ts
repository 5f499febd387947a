// Assertions that a call throws one of the project's typed errors, with its code (and, for an
// InvalidArgumentError, the argument it names).
import type { ExecutionContext } from 'ava';
import { InvalidArgumentError, ParseError } from '../../../src/errors.js';

export function invalid(t: ExecutionContext, fn: () => unknown, argument: string): void {
  const err = t.throws(fn, { instanceOf: InvalidArgumentError });
  t.is(err?.argument, argument, err?.message);
  t.is(err?.code, 'ERR_DM_INVALID_ARGUMENT');
}

export function parseError(t: ExecutionContext, fn: () => unknown, message?: RegExp): void {
  const err = t.throws(fn, { instanceOf: ParseError });
  t.is(err?.code, 'ERR_DM_PARSE');
  if (message) t.regex(err?.message ?? '', message);
}
