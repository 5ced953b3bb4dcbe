/**
 * The README's code cannot rot: every fenced code block is marked, just before it, either
 * `<!-- example: examples/<file> -->` (the block is that file, or a verbatim excerpt of it, which
 * test/installed-package.test.ts runs) or `<!-- not an example: <why> -->`. An excerpt may sit
 * indented in its file, and a line of the block starting with `// …` stands for itself followed by
 * any lines of the file (code the README leaves out).
 */
import { expect } from 'chai';
import fs from 'node:fs';
import path from 'node:path';
import { ROOT } from '../dev/processes';

interface Block {
  /** 1-based line of the opening fence. */
  line: number;
  lang: string;
  text: string;
  marker: { example: string } | { notExample: string } | null;
}

const MARKER = /^<!--\s*(?:example:\s*(\S+)|not an example:\s*(.+?))\s*-->$/;

export function fencedBlocks(markdown: string): Block[] {
  const lines = markdown.split('\n');
  const blocks: Block[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = /^```(\S*)\s*$/.exec(lines[i]);
    if (!open) continue;
    const end = lines.findIndex((text, at) => at > i && /^```\s*$/.test(text));
    if (end < 0) throw new Error(`README.md:${i + 1}: code block never closed`);
    let before = i - 1;
    while (before >= 0 && lines[before].trim() === '') before--;
    const found = before >= 0 ? MARKER.exec(lines[before].trim()) : null;
    blocks.push({
      line: i + 1,
      lang: open[1],
      text: lines.slice(i + 1, end).join('\n'),
      marker: found ? (found[1] ? { example: found[1] } : { notExample: found[2] }) : null,
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

const LANG_EXTENSIONS: Record<string, string[]> = { ts: ['.ts', '.mts', '.cts'], js: ['.js', '.cjs', '.mjs'], sql: ['.sql'] };

describe('README code blocks are the examples', () => {
  const readme = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');
  const blocks = fencedBlocks(readme);

  it('finds the README blocks', () => {
    expect(blocks.filter((block) => ['ts', 'js'].includes(block.lang)).length).to.be.at.least(7);
  });

  it('marks every fenced block as an example or as not one', () => {
    const unmarked = blocks.filter((block) => !block.marker).map((block) => `README.md:${block.line} (${block.lang || 'no language'})`);
    expect(unmarked, 'add <!-- example: examples/<file> --> or <!-- not an example: <why> --> before these blocks').to.deep.equal([]);
  });

  it('takes each example block verbatim from its file under examples/, in that file\'s language', () => {
    const examples = blocks.filter((block) => block.marker && 'example' in block.marker);
    expect(examples).to.not.be.empty;
    for (const block of examples) {
      const name = (block.marker as { example: string }).example;
      const where = `README.md:${block.line} (${name})`;
      expect(name, where).to.match(/^examples\//);
      const file = path.join(ROOT, name);
      expect(fs.existsSync(file), `${where}: no such file`).to.equal(true);
      expect(LANG_EXTENSIONS[block.lang] ?? [], `${where}: a \`\`\`${block.lang} block`).to.include(path.extname(file));
      expect(isExcerpt(block.text, fs.readFileSync(file, 'utf8')), `${where}: the block is not a verbatim excerpt of ${name}:\n${block.text}`).to.equal(true);
    }
  });

  it('has every code block that is code (ts, js) taken from an example', () => {
    const code = blocks.filter((block) => ['ts', 'typescript', 'js', 'javascript'].includes(block.lang) && !(block.marker && 'example' in block.marker));
    expect(code.map((block) => `README.md:${block.line}`), 'TypeScript/JavaScript blocks must come from examples/').to.deep.equal([]);
  });

  it('matches excerpts strictly: indentation as a whole, `// …` elisions, nothing else', () => {
    const file = 'async function main() {\n  const a = 1;\n  // … later\n  check(a);\n  stop();\n}\n';
    expect(isExcerpt('const a = 1;\n// … later\nstop();', file)).to.equal(true);
    expect(isExcerpt(file, file)).to.equal(true);
    expect(isExcerpt('const a = 1;\nstop();', file)).to.equal(false);
    expect(isExcerpt('const a = 2;', file)).to.equal(false);
    expect(isExcerpt('  const a = 1;\n// … later', file)).to.equal(false);
    expect(isExcerpt('stop();\n  }', file)).to.equal(false);
  });
});
