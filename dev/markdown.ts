/**
 * The documentation's Markdown as the tests read it: fenced code blocks with the marker before
 * each (test/readme-examples.test.ts, test/quick-start.test.ts), excerpts, headings' anchors and
 * relative links.
 */
/** What the comment before a block says it is: an excerpt of an example, not one (and why), or a quick-start step (test/quick-start.test.ts). */
export type Marker = { example: string } | { notExample: string } | { step: string };

export interface Block {
  /** 1-based line of the opening fence. */
  line: number;
  lang: string;
  text: string;
  marker: Marker | null;
}

/** An HTML comment alone on its line; MARKER_KINDS tells what it says. */
const MARKER = /^<!--\s*(.+?)\s*-->$/;

/** The kinds of marker, tried in order on a comment's text: a new kind is one more entry. */
const MARKER_KINDS: Array<{ pattern: RegExp; marker: (match: RegExpExecArray) => Marker }> = [
  { pattern: /^example:\s*(\S+)$/, marker: (match) => ({ example: match[1] }) },
  { pattern: /^not an example:\s*(.+)$/, marker: (match) => ({ notExample: match[1] }) },
  { pattern: /^(step\s.+)$/, marker: (match) => ({ step: match[1] }) },
];

function markerOf(line: string): Marker | null {
  const comment = MARKER.exec(line.trim());
  if (!comment) return null;
  for (const kind of MARKER_KINDS) {
    const match = kind.pattern.exec(comment[1]);
    if (match) return kind.marker(match);
  }
  return null;
}

/** The fenced blocks of `markdown`, each with the marker on its last non-blank line before it. `file` names it in errors. */
export function fencedBlocks(markdown: string, file = 'README.md'): Block[] {
  const lines = markdown.split('\n');
  const blocks: Block[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = /^```(\S*)\s*$/.exec(lines[i]);
    if (!open) continue;
    const end = lines.findIndex((text, at) => at > i && /^```\s*$/.test(text));
    if (end < 0) throw new Error(`${file}:${i + 1}: code block never closed`);
    let before = i - 1;
    while (before >= 0 && lines[before].trim() === '') before--;
    blocks.push({
      line: i + 1,
      lang: open[1],
      text: lines.slice(i + 1, end).join('\n'),
      marker: before >= 0 ? markerOf(lines[before]) : null,
    });
    i = end;
  }
  return blocks;
}

const indentOf = (line: string) => line.length - line.trimStart().length;
const ELISION = /^\/\/ …/;

/** Whether `excerpt` is `file`, or a run of its lines (re-indented as a whole, `// …` lines eliding). */
export function isExcerpt(excerpt: string, file: string): boolean {
  const want = excerpt.replace(/\n+$/, '').split('\n');
  const have = file.replace(/\n+$/, '').split('\n');
  const matchFrom = (start: number): boolean => {
    const indent = have[start].slice(0, indentOf(have[start]) - indentOf(want[0]));
    if (indentOf(have[start]) < indentOf(want[0]) || indent.trim() !== '') return false;
    const same = (wanted: string, line: string | undefined) => line !== undefined && (wanted === '' ? line.trim() === '' : line === indent + wanted);
    let at = start;
    for (let j = 0; j < want.length; j++) {
      if (!same(want[j], have[at])) return false;
      at++;
      if (ELISION.test(want[j].trim()) && j + 1 < want.length) {
        while (at < have.length && !same(want[j + 1], have[at])) at++;
      }
    }
    return true;
  };
  return have.some((_line, start) => matchFrom(start));
}

/** The Markdown outside fenced and indented code blocks, as lines (code lines blanked, so line numbers hold). */
function proseLines(markdown: string): string[] {
  let fenced = false;
  let previousBlank = true;
  let indented = false;
  return markdown.split('\n').map((line) => {
    if (/^```/.test(line)) {
      fenced = !fenced;
      previousBlank = false;
      return '';
    }
    if (fenced) return '';
    const blank = line.trim() === '';
    // An indented code block starts after a blank line and lasts while lines are indented or blank;
    // an indented line right after a list item's text is the item's continuation, not code.
    if (!blank && /^( {4}|\t)/.test(line) && (indented || previousBlank) && !/^\s*([-*]|\d+\.) /.test(line)) indented = true;
    else if (!blank) indented = false;
    previousBlank = blank;
    return indented ? '' : line;
  });
}

/** GitHub's anchor for a heading: lower-case, punctuation dropped, spaces to `-`, repeats numbered. */
export function anchorsOf(markdown: string): Set<string> {
  const anchors = new Set<string>();
  const seen = new Map<string, number>();
  for (const line of proseLines(markdown)) {
    const heading = /^#{1,6}\s+(.+?)\s*#*\s*$/.exec(line);
    if (!heading) continue;
    const slug = heading[1].toLowerCase().replace(/[^\p{L}\p{N}\s_-]/gu, '').replace(/\s/g, '-');
    const count = seen.get(slug) ?? 0;
    seen.set(slug, count + 1);
    anchors.add(count === 0 ? slug : `${slug}-${count}`);
  }
  return anchors;
}

interface Link { line: number; target: string }

/** The relative links (`[text](path)`, `[text](path#anchor)`, `[text](#anchor)`, images too) outside code. */
export function relativeLinks(markdown: string): Link[] {
  const links: Link[] = [];
  proseLines(markdown).forEach((line, index) => {
    const prose = line.replace(/`[^`]*`/g, '``');
    for (const [, target] of prose.matchAll(/\]\(([^)\s]+)(?:\s+"[^"]*")?\)/g)) {
      if (!/^[a-z][a-z0-9+.-]*:/i.test(target)) links.push({ line: index + 1, target });
    }
  });
  return links;
}

