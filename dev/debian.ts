/**
 * Debian packages a test needs (chromium, pgbouncer): installed when missing and this process may
 * (root, apt-get), since CI runs on a clean machine. Returns why the package cannot be had, or null.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';

let updated = false;

export function debianPackageProblem(file: string, pkg: string): string | null {
  if (fs.existsSync(file)) return null;
  if (process.getuid?.() !== 0 || !fs.existsSync('/usr/bin/apt-get')) return `${file} is missing and this process cannot install it (it needs root and apt-get: apt-get install ${pkg})`;
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  try {
    if (!updated) execFileSync('apt-get', ['update'], { stdio: 'ignore', timeout: 300_000, env });
    updated = true;
    execFileSync('apt-get', ['install', '-y', '--no-install-recommends', pkg], { stdio: 'ignore', timeout: 600_000, env });
  } catch (error) {
    return `apt-get install ${pkg} failed: ${(error as Error).message}`;
  }
  return fs.existsSync(file) ? null : `apt-get install ${pkg} left no ${file}`;
}
