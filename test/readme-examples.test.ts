/**
 * The documentation's code cannot rot: in README.md, CONTRIBUTING.md and every docs/*.md, every
 * fenced code block is marked, just before it, either `<!-- example: examples/<file> -->` (the block
 * is that file, or a verbatim excerpt of it, which test/installed-package.test.ts runs) or
 * `<!-- not an example: <why> -->`; the README's quick start marks its blocks `<!-- step … -->`, and
 * test/quick-start.test.ts runs them. An excerpt may sit indented in its file, and a line of the
 * block starting with `// …` stands for itself followed by any lines of the file (code the page
 * leaves out). Every relative link of those files reaches a file, and a heading when it names one.
 */
import { expect } from 'chai';
import fs from 'node:fs';
import path from 'node:path';
import { anchorsOf, fencedBlocks, isExcerpt, relativeLinks } from '../dev/markdown';
import { ROOT } from '../dev/processes';

const LANG_EXTENSIONS: Record<string, string[]> = { ts: ['.ts', '.mts', '.cts'], js: ['.js', '.cjs', '.mjs'], sql: ['.sql'] };

/** The documentation whose code blocks and links are checked, relative to ROOT. */
function documents(): string[] {
  const pages = fs.readdirSync(path.join(ROOT, 'docs')).filter((name) => name.endsWith('.md')).sort().map((name) => `docs/${name}`);
  return ['README.md', 'CONTRIBUTING.md', ...pages];
}

const read = (file: string) => fs.readFileSync(path.join(ROOT, file), 'utf8');

describe('documentation code blocks are the examples', () => {
  const files = documents();
  const blocksOf = new Map(files.map((file) => [file, fencedBlocks(read(file), file)]));
  const all = [...blocksOf].flatMap(([file, blocks]) => blocks.map((block) => ({ file, block })));

  it('checks README.md, CONTRIBUTING.md and every page of docs/, and finds their blocks', () => {
    expect(files).to.include.members(['README.md', 'CONTRIBUTING.md', 'docs/getting-started.md', 'docs/callbacks-and-listeners.md']);
    expect(all.filter(({ block }) => ['ts', 'js'].includes(block.lang)).length).to.be.at.least(25);
  });

  it('marks every fenced block as an example or as not one', () => {
    const unmarked = all.filter(({ block }) => !block.marker).map(({ file, block }) => `${file}:${block.line} (${block.lang || 'no language'})`);
    expect(unmarked, 'add <!-- example: examples/<file> --> or <!-- not an example: <why> --> (or, in the quick start, <!-- step … -->) before these blocks').to.deep.equal([]);
  });

  it('takes each example block verbatim from its file under examples/, in that file\'s language', () => {
    const examples = all.filter(({ block }) => block.marker && 'example' in block.marker);
    expect(examples).to.not.be.empty;
    for (const { file: page, block } of examples) {
      const name = (block.marker as { example: string }).example;
      const where = `${page}:${block.line} (${name})`;
      expect(name, where).to.match(/^examples\//);
      const file = path.join(ROOT, name);
      expect(fs.existsSync(file), `${where}: no such file`).to.equal(true);
      expect(LANG_EXTENSIONS[block.lang] ?? [], `${where}: a \`\`\`${block.lang} block`).to.include(path.extname(file));
      expect(isExcerpt(block.text, fs.readFileSync(file, 'utf8')), `${where}: the block is not a verbatim excerpt of ${name}:\n${block.text}`).to.equal(true);
    }
  });

  it('has every code block that is code (ts, js) taken from an example, but the README quick start\'s steps, which test/quick-start.test.ts runs', () => {
    const code = all.filter(({ file, block }) => ['ts', 'typescript', 'js', 'javascript'].includes(block.lang)
      && !(block.marker && 'example' in block.marker) && !(file === 'README.md' && block.marker && 'step' in block.marker));
    expect(code.map(({ file, block }) => `${file}:${block.line}`), 'TypeScript/JavaScript blocks must come from examples/').to.deep.equal([]);
    const steps = all.filter(({ block }) => block.marker && 'step' in block.marker);
    expect(steps.filter(({ file }) => file !== 'README.md').map(({ file, block }) => `${file}:${block.line}`), 'quick-start steps live in the README').to.deep.equal([]);
    expect(steps.length).to.be.at.least(8);
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

  it('reads markers as the last non-blank line before a fence, and names the file of a block never closed', () => {
    const blocks = fencedBlocks('<!-- example: examples/a.ts -->\n\n```ts\nx\n```\n<!-- not an example: why not -->\n```sql\ny\n```\n<!-- something else -->\n```\nz\n```\n<!-- step 2: run -->\n```sh\nw\n```\ntext\n');
    expect(blocks.slice(0, 4).map((block) => block.marker)).to.deep.equal([{ example: 'examples/a.ts' }, { notExample: 'why not' }, null, { step: 'step 2: run' }]);
    expect(() => fencedBlocks('```sh\nnever closed\n', 'docs/x.md')).to.throw('docs/x.md:1: code block never closed');
  });
});

describe('docs/errors.md', () => {
  it('lists every error class of lib/errors.ts with each of its codes', () => {
    const table = read('docs/errors.md');
    const missing: string[] = [];
    for (const [, name, codes] of fs.readFileSync(path.join(ROOT, 'lib', 'errors.ts'), 'utf8').matchAll(/class (\w+) extends CodedError<([^>]+)>/g)) {
      const row = table.split('\n').find((line) => line.startsWith(`| \`${name}\` |`));
      if (!row) missing.push(name);
      for (const [code] of codes.matchAll(/PGPUBSUB_[A-Z_]+/g)) if (row && !row.includes(`\`${code}\``)) missing.push(`${name} ${code}`);
    }
    expect(missing, 'add them to docs/errors.md').to.deep.equal([]);
  });
});

describe('documentation links', () => {
  const files = documents();

  it('finds GitHub\'s anchors and the relative links outside code', () => {
    const page = '# Title `x()`\n\n## What "exactly once" covers\n\n## Title x\n\n## Title x\n\n```sh\n# not a heading [a](b.md)\n```\n\n    [c](d.md)\n\nSee [e](f.md#g), `[h](i.md)`, [j](https://k) and ![l](m.png).\n';
    expect([...anchorsOf(page)]).to.deep.equal(['title-x', 'what-exactly-once-covers', 'title-x-1', 'title-x-2']);
    expect(relativeLinks(page).map((link) => link.target)).to.deep.equal(['f.md#g', 'm.png']);
  });

  it('points every relative link at an existing file, and every anchor at a heading of it', () => {
    const broken: string[] = [];
    for (const file of files) {
      for (const { line, target } of relativeLinks(read(file))) {
        const [pathPart, anchor] = target.split('#', 2);
        const resolved = pathPart === '' ? path.join(ROOT, file) : path.resolve(ROOT, path.dirname(file), decodeURIComponent(pathPart));
        const where = `${file}:${line} (${target})`;
        if (!resolved.startsWith(ROOT + path.sep) || !fs.existsSync(resolved)) broken.push(`${where}: no such file`);
        else if (anchor !== undefined && !(resolved.endsWith('.md') && anchorsOf(fs.readFileSync(resolved, 'utf8')).has(anchor))) {
          broken.push(`${where}: no heading #${anchor} in ${path.relative(ROOT, resolved)}`);
        }
      }
    }
    expect(broken).to.deep.equal([]);
  });

  it('keeps the README short (at most 16,000 bytes), linking every page of docs/', () => {
    const readme = read('README.md');
    expect(Buffer.byteLength(readme), 'README.md bytes: move the detail to a page of docs/').to.be.at.most(16_000);
    const linked = new Set(relativeLinks(readme).map((link) => path.normalize(link.target.split('#')[0])));
    const pages = files.filter((file) => file.startsWith('docs/'));
    expect(pages.filter((page) => !linked.has(path.normalize(page))), 'pages of docs/ the README does not link').to.deep.equal([]);
  });
});
