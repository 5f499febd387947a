// One driver per home at a time: <home>/lock holds the owner's pid. A lock whose process is
// gone (a crash) is taken over.
import { closeSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { DevmapperError } from '../errors.js';

export class HomeLock {
  readonly path: string;

  private constructor(path: string) {
    this.path = path;
  }

  static acquire(home: string): HomeLock {
    const path = join(home, 'lock');
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        const fd = openSync(path, 'wx', 0o600);
        writeSync(fd, `${process.pid}\n`);
        closeSync(fd);
        return new HomeLock(path);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
        const owner = Number(readFileSync(path, 'utf8').trim());
        if (Number.isInteger(owner) && owner > 0 && isAlive(owner)) {
          throw new DevmapperError('ERR_DM_HOME_LOCKED', `${home} is in use by process ${owner}${owner === process.pid ? ' (this process: call cleanup() on the other driver first)' : ''}`);
        }
        rmSync(path, { force: true }); // stale: its owner died
      }
    }
    throw new DevmapperError('ERR_DM_HOME_LOCKED', `cannot take ${path}`);
  }

  release(): void {
    rmSync(this.path, { force: true });
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}
