/**
 * What the CLI prints never drives the operator's terminal: channel names, errors and row data
 * come from the database, where any role granted send() can put an escape sequence (set the
 * window title, clear the screen) or a bidirectional override. Such characters print as `\uXXXX`,
 * which in JSON output is the same string.
 */

/** C0 controls but tab and newline, DEL, C1 controls, and the bidirectional marks, overrides and isolates. */
const UNSAFE = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;

/** `text` with every character that could act on a terminal written as `\uXXXX`. */
export function printable(text: string): string {
  return text.replace(UNSAFE, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** Makes every string written to `stream` printable (the CLI's stdout and stderr, for the life of the process). */
export function guardOutput(stream: NodeJS.WritableStream): void {
  const write = stream.write.bind(stream) as (chunk: unknown, ...rest: unknown[]) => boolean;
  stream.write = ((chunk: unknown, ...rest: unknown[]) => write(typeof chunk === 'string' ? printable(chunk) : chunk, ...rest)) as typeof stream.write;
}
