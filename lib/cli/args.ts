/** Option parsers and table output shared by the CLI's commands. */
import { InvalidArgumentError } from 'commander';

/** Parses a positive integer option value; anything else is a usage error naming the option. */
export function positiveInteger(name: string) {
  return (value: string): number => {
    const parsed = Number(value);
    if (!/^\d+$/.test(value) || !Number.isSafeInteger(parsed) || parsed < 1) {
      throw new InvalidArgumentError(`${name} must be a positive integer, got '${value}'.`);
    }
    return parsed;
  };
}

/** Parses a TCP port (0 to 65535; 0 takes any free port). */
export function portNumber(name: string) {
  return (value: string): number => {
    const parsed = Number(value);
    if (!/^\d+$/.test(value) || parsed > 65535) throw new InvalidArgumentError(`${name} must be a port number from 0 to 65535, got '${value}'.`);
    return parsed;
  };
}

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** `30s`, `15m`, `12h`, `7d` (or plain milliseconds) as milliseconds. */
export function parseDuration(name: string) {
  return (value: string): number => {
    const match = /^(\d+)(ms|s|m|h|d)?$/.exec(value.trim());
    if (!match) throw new InvalidArgumentError(`${name} must be a duration such as 30s, 15m, 12h or 7d; got '${value}'`);
    return Number(match[1]) * UNITS[match[2] ?? 'ms'];
  };
}

/** A duration (parseDuration) above zero: an interval of 0 would loop without pause. */
export function positiveDuration(name: string) {
  const parse = parseDuration(name);
  return (value: string): number => {
    const ms = parse(value);
    if (ms <= 0) throw new InvalidArgumentError(`${name} must be longer than 0, such as 2s or 500ms; got '${value}'`);
    return ms;
  };
}

/** Prints rows under a header, columns padded to their widest cell. */
export function printTable(header: readonly string[], rows: readonly (readonly string[])[]): void {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  for (const row of [header, ...rows]) process.stdout.write(`${row.map((cell, i) => cell.padEnd(widths[i])).join('  ').trimEnd()}\n`);
}

/** A comma-separated option value as a list, blanks dropped. */
export function commaList(value: string): string[] {
  return value.split(',').map((name) => name.trim()).filter(Boolean);
}
