// containerd's filter syntax, as its List calls use it (containerd's filters package is the
// reference): a filter is selectors joined by ',' (all must match); several filters in one
// request match when any does. A selector is a field path, optionally an operator and a value:
//   kind==committed   name!=x   parent~=^sha256:   labels."containerd.io/gc.root"   labels.a==b
// Field path parts are identifiers or quoted strings; values are quoted strings or runs of
// characters other than ',' (quotes: "..." with backslash escapes, or `...` raw).
import { createRequire } from 'node:module';
import { SnapshotError } from './errors.js';

const require = createRequire(import.meta.url);
/** A compiled `~=` pattern: true when it matches anywhere in the value (Go's MatchString). */
interface Pattern {
  test(input: string): boolean;
}
let re2js: typeof import('re2js') | undefined;

/**
 * A client's pattern compiled as containerd compiles it: a Go regexp, with RE2's syntax and its
 * linear-time matching (re2js is RE2's port to JavaScript). JavaScript's backtracking RegExp
 * would let one List request such as `labels.x~=(a+)+$` over a 4 KiB label hold the server's
 * only thread for good, and it reads some patterns differently from Go. Loaded on the first
 * `~=`, so importing the package does not pay for it.
 */
function compilePattern(source: string): Pattern {
  re2js ??= require('re2js') as typeof import('re2js');
  return re2js.RE2JS.compile(source);
}

type Operator = '==' | '!=' | '~=';

interface Selector {
  path: string[];
  operator: Operator | undefined;
  value: string;
  regexp: Pattern | undefined;
}

/** Looks a field path up in the thing being filtered; undefined when it has no such field. */
export type FieldLookup = (path: readonly string[]) => string | undefined;

export type Filter = (lookup: FieldLookup) => boolean;

const IDENT = /[A-Za-z0-9_]/;

/** Parses the filters of one List request; no filters (or only empty ones) match everything. */
export function parseFilters(filters: readonly string[]): Filter {
  const parsed = filters.filter((f) => f.trim() !== '').map(parseFilter);
  if (parsed.length === 0) return () => true;
  return (lookup) => parsed.some((selectors) => selectors.every((s) => matches(s, lookup)));
}

function matches(selector: Selector, lookup: FieldLookup): boolean {
  const actual = lookup(selector.path);
  switch (selector.operator) {
    case undefined:
      return actual !== undefined && actual !== '';
    case '==':
      return actual === selector.value;
    case '!=':
      return actual !== selector.value;
    case '~=':
      return actual !== undefined && selector.regexp!.test(actual);
  }
}

function parseFilter(text: string): Selector[] {
  const scanner = new Scanner(text);
  const selectors: Selector[] = [];
  for (;;) {
    selectors.push(parseSelector(scanner));
    scanner.skipSpace();
    if (scanner.done()) return selectors;
    scanner.expect(',');
  }
}

function parseSelector(scanner: Scanner): Selector {
  const path = [scanner.field()];
  while (scanner.peek() === '.') {
    scanner.next();
    path.push(scanner.field());
  }
  scanner.skipSpace();
  const operator = scanner.operator();
  if (!operator) return { path, operator: undefined, value: '', regexp: undefined };
  scanner.skipSpace();
  const value = scanner.value();
  let regexp: Pattern | undefined;
  if (operator === '~=') {
    try {
      regexp = compilePattern(value);
    } catch (error) {
      throw scanner.error(`${JSON.stringify(value)} is not a regular expression (${(error as Error).message})`);
    }
  }
  return { path, operator, value, regexp };
}

class Scanner {
  readonly #text: string;
  #at = 0;

  constructor(text: string) {
    this.#text = text;
  }

  done(): boolean {
    return this.#at >= this.#text.length;
  }

  peek(): string | undefined {
    return this.#text[this.#at];
  }

  next(): string {
    return this.#text[this.#at++]!;
  }

  skipSpace(): void {
    while (!this.done() && /\s/.test(this.peek()!)) this.#at++;
  }

  expect(char: string): void {
    if (this.peek() !== char) throw this.error(`expected ${JSON.stringify(char)}`);
    this.#at++;
  }

  /** One part of a field path: an identifier or a quoted string. */
  field(): string {
    this.skipSpace();
    const c = this.peek();
    if (c === '"' || c === '`') return this.quoted();
    const start = this.#at;
    while (!this.done() && IDENT.test(this.peek()!)) this.#at++;
    if (this.#at === start) throw this.error('expected a field name');
    return this.#text.slice(start, this.#at);
  }

  operator(): Operator | undefined {
    const two = this.#text.slice(this.#at, this.#at + 2);
    if (two === '==' || two === '!=' || two === '~=') {
      this.#at += 2;
      return two;
    }
    return undefined;
  }

  value(): string {
    const c = this.peek();
    if (c === '"' || c === '`') return this.quoted();
    const start = this.#at;
    while (!this.done() && this.peek() !== ',') this.#at++;
    const value = this.#text.slice(start, this.#at).trimEnd();
    if (value === '') throw this.error('expected a value');
    return value;
  }

  quoted(): string {
    const quote = this.next();
    let out = '';
    for (;;) {
      if (this.done()) throw this.error('unterminated quoted string');
      const c = this.next();
      if (c === quote) return out;
      if (c === '\\' && quote === '"') {
        if (this.done()) throw this.error('unterminated escape');
        const e = this.next();
        out += e === 'n' ? '\n' : e === 't' ? '\t' : e;
      } else {
        out += c;
      }
    }
  }

  error(reason: string): SnapshotError {
    return new SnapshotError('INVALID_ARGUMENT', `filter ${JSON.stringify(this.#text)} at ${this.#at}: ${reason}`);
  }
}
