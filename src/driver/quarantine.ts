// <home>/quarantine: what check --repair set aside (never deleted), and the thin ids it may own.
// A quarantined record keeps its thin id from being deleted as leaked until someone looks.
import { lstatSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { readRegularFile } from './metadata-files.js';
import { claimedThinId } from './metadata-schema.js';
import { assertDirectory } from './safe-open.js';

/**
 * The quarantine's files, sorted (none when it does not exist). A file or a symlink where the
 * directory belongs is ERR_DM_UNSAFE_PATH, as for repair's moves (safe-open.ts): never
 * followed, so no file outside the home is listed or read as a quarantined record.
 */
export function quarantinedFiles(dir: string): string[] {
  try {
    assertDirectory(dir, lstatSync(dir), "the home's quarantine directory (remove it, then check again)");
    return readdirSync(dir)
      .sort()
      .map((name) => join(dir, name));
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw error;
  }
}

/**
 * The thin ids quarantined layer records name (undefined in the list: a record naming none
 * readable; a whole pack set aside, unreadable, is one such). Other files kept there (a pool's
 * old metadata after a repair) name none.
 */
export function quarantinedThinIds(dir: string): Array<number | undefined> {
  return quarantinedFiles(dir)
    .filter((path) => /(\.layer\.json|\/layers\.pack)\.[0-9.]+$/.test(path))
    .map((path) => {
      try {
        return claimedThinId(JSON.parse(readRegularFile(path)));
      } catch {
        return undefined;
      }
    });
}
