// What every command is given (Io), and how a command opens the home. The options given to
// `init` are kept in <home>/cli-options.json so later commands open the home the same way (while
// init runs they are in cli-options.init.json, so a command that finds an interrupted init can say
// so and `cleanup` can bring down what it left).
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { Driver } from '../driver/driver.js';
import { readRegularFile } from '../driver/metadata-files.js';
import { type DriverOptions, resolveOptions } from '../driver/options.js';
import { DevmapperError, MetadataError } from '../errors.js';
import { assertHome, RECORDED_OPTIONS, unfinishedInit } from './home.js';
import { requireDeviceMapper } from './host.js';

export interface Io {
  out: (text: string) => void;
  json: boolean;
  home: string;
  /** --wait: how long to wait for a home another process holds (DriverOptions.lockTimeoutMs). */
  lockTimeoutMs?: number;
}

export function optionsFile(home: string): string {
  return join(home, RECORDED_OPTIONS);
}

export function recordedOptions(home: string, lockTimeoutMs?: number, file = optionsFile(home)): DriverOptions {
  if (!existsSync(file)) {
    const unfinished = unfinishedInit(home);
    if (unfinished) throw new DevmapperError('ERR_DM_NOT_INITIALISED', unfinished.message);
    throw new DevmapperError(
      'ERR_DM_NOT_INITIALISED',
      `${home} is not initialised: run \`devmapper init --home ${home}\` first`,
    );
  }
  let recorded: unknown;
  try {
    recorded = JSON.parse(readRegularFile(file));
  } catch (error) {
    throw new MetadataError(
      file,
      undefined,
      `cannot be read as JSON (${(error as Error).message}): it holds the options \`devmapper init\` was given; fix or rewrite it with the same options`,
      { cause: error },
    );
  }
  if (typeof recorded !== 'object' || recorded === null || Array.isArray(recorded)) {
    throw new MetadataError(
      file,
      undefined,
      `holds ${recorded === null ? 'null' : Array.isArray(recorded) ? 'an array' : typeof recorded}, not the options object \`devmapper init\` wrote`,
    );
  }
  if ('home' in recorded) throw new MetadataError(file, 'home', 'is not an option kept here (the home is --home)');
  const options: DriverOptions = {
    ...(recorded as DriverOptions),
    home,
    ...(lockTimeoutMs === undefined ? {} : { lockTimeoutMs }),
  };
  try {
    resolveOptions(options);
  } catch (error) {
    const argument = (error as { argument?: string }).argument;
    throw new MetadataError(file, argument, (error as Error).message, { cause: error });
  }
  return options;
}

/**
 * Opens the home with the options `init` recorded (and --wait's lock timeout). `command` names
 * the command in messages; `write: false` for the commands that work on a read-only home.
 */
export async function openDriver(
  home: string,
  lockTimeoutMs?: number,
  access: { command: string; write: boolean } = { command: 'this command', write: true },
): Promise<Driver> {
  assertHome(home, access);
  requireDeviceMapper();
  return Driver.init(recordedOptions(home, lockTimeoutMs));
}

export async function withDriver<T>(
  io: Io,
  body: (driver: Driver) => Promise<T>,
  access: { command: string; write: boolean },
): Promise<T> {
  const driver = await openDriver(io.home, io.lockTimeoutMs, access);
  try {
    return await body(driver);
  } finally {
    await driver.close(); // keeps mounts and devices: the next command adopts them
  }
}
