// A small argument parser: `--flag`, `--key value`, `--key=value`, positionals. Unknown
// options are usage errors (exit status 2), never ignored.
import { DevmapperError, InvalidArgumentError } from '../errors.js';

export class UsageError extends DevmapperError {
  /** Print the whole command list after the message (an unknown or missing command). */
  readonly showUsage: boolean;
  constructor(message: string, showUsage = false) {
    super('ERR_DM_USAGE', message);
    this.showUsage = showUsage;
  }
}

export interface OptionSpec {
  /** Options that take a value. */
  values?: readonly string[];
  /** Options that are booleans. */
  flags?: readonly string[];
  /** Options that may repeat (collected as arrays). */
  repeated?: readonly string[];
}

export interface Parsed {
  positionals: string[];
  values: Map<string, string>;
  repeated: Map<string, string[]>;
  flags: Set<string>;
}

export function parseArgs(argv: readonly string[], spec: OptionSpec): Parsed {
  const values = new Set(spec.values ?? []);
  const flags = new Set(spec.flags ?? []);
  const repeated = new Set(spec.repeated ?? []);
  const parsed: Parsed = { positionals: [], values: new Map(), repeated: new Map(), flags: new Set() };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--') {
      parsed.positionals.push(...argv.slice(i + 1));
      break;
    }
    if (!arg.startsWith('--') || arg === '-') {
      parsed.positionals.push(arg);
      continue;
    }
    const eq = arg.indexOf('=');
    const name = eq >= 0 ? arg.slice(2, eq) : arg.slice(2);
    if (flags.has(name)) {
      if (eq >= 0) throw new UsageError(`--${name} takes no value`);
      parsed.flags.add(name);
    } else if (values.has(name) || repeated.has(name)) {
      const value = eq >= 0 ? arg.slice(eq + 1) : argv[++i];
      if (value === undefined) throw new UsageError(`--${name} needs a value`);
      if (repeated.has(name)) parsed.repeated.set(name, [...(parsed.repeated.get(name) ?? []), value]);
      else parsed.values.set(name, value);
    } else {
      throw new UsageError(`unknown option --${name}`);
    }
  }
  return parsed;
}

export function expectPositionals(parsed: Parsed, min: number, max: number, usage: string): string[] {
  if (parsed.positionals.length < min || parsed.positionals.length > max) throw new UsageError(`usage: ${usage}`);
  return parsed.positionals;
}

/** Runs one of the library's argument checks: what it rejects is a usage error here. */
export function checkArgument<T>(check: () => T): T {
  try {
    return check();
  } catch (error) {
    if (error instanceof InvalidArgumentError) throw new UsageError(error.message);
    throw error;
  }
}
