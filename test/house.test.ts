/**
 * The shape of lib/ (DESIGN.md decision 21): no import cycle, type-only imports included, so each
 * part depends only on parts below it; and no file so long that a newcomer cannot read it whole.
 */
import { expect } from 'chai';
import fs from 'node:fs';
import path from 'node:path';

const LIB = path.join(__dirname, '..', 'lib');
const MAX_LINES = 350;

const sources = (fs.readdirSync(LIB, { recursive: true }) as string[]).filter((file) => file.endsWith('.ts')).sort();

/** Each lib/ file's relative imports and re-exports (type-only ones too), as lib/-relative paths. */
function importGraph(): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  for (const file of sources) {
    const text = fs.readFileSync(path.join(LIB, file), 'utf8');
    const targets = [...text.matchAll(/^(?:import|export)\s[^;]*?\sfrom\s+'(\.{1,2}\/[^']+)'/gms)].map(([, spec]) => {
      const base = path.join(path.dirname(file), spec);
      const found = [`${base}.ts`, path.join(base, 'index.ts')].find((candidate) => sources.includes(candidate));
      if (!found) throw new Error(`lib/${file} imports ${spec}, which is no file of lib/`);
      return found;
    });
    graph.set(file, targets);
  }
  return graph;
}

/** The strongly connected components with more than one file, or a file importing itself (Tarjan). */
function cycles(graph: Map<string, string[]>): string[][] {
  let next = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const found: string[][] = [];
  const visit = (file: string) => {
    index.set(file, next);
    low.set(file, next++);
    stack.push(file);
    for (const target of graph.get(file) ?? []) {
      if (!index.has(target)) {
        visit(target);
        low.set(file, Math.min(low.get(file)!, low.get(target)!));
      } else if (stack.includes(target)) {
        low.set(file, Math.min(low.get(file)!, index.get(target)!));
      }
    }
    if (low.get(file) === index.get(file)) {
      const component: string[] = [];
      let member: string;
      do {
        member = stack.pop()!;
        component.push(member);
      } while (member !== file);
      if (component.length > 1 || graph.get(file)!.includes(file)) found.push(component.sort());
    }
  };
  for (const file of graph.keys()) if (!index.has(file)) visit(file);
  return found;
}

describe('the house (lib/)', () => {
  it('has no import cycle, type-only imports included', () => {
    expect(cycles(importGraph())).to.deep.equal([]);
  });

  it('finds a cycle when there is one (the check above can fail)', () => {
    const graph = new Map([['a.ts', ['b.ts']], ['b.ts', ['c.ts']], ['c.ts', ['a.ts']], ['d.ts', ['a.ts']]]);
    expect(cycles(graph)).to.deep.equal([['a.ts', 'b.ts', 'c.ts']]);
  });

  it(`has no file over ${MAX_LINES} lines`, () => {
    const long = sources.map((file) => ({ file, lines: fs.readFileSync(path.join(LIB, file), 'utf8').split('\n').length - 1 }))
      .filter(({ lines }) => lines > MAX_LINES);
    expect(long).to.deep.equal([]);
  });

  it('keeps the public surface in lib/index.ts, and every wing a folder of its own', () => {
    const top = fs.readdirSync(LIB, { withFileTypes: true });
    expect(top.filter((entry) => entry.isDirectory()).map((entry) => entry.name).sort())
      .to.deep.equal(['channels', 'cli', 'db', 'listener', 'ops', 'process', 'relay', 'triggers']);
    expect(top.filter((entry) => entry.isFile()).map((entry) => entry.name)).to.include('index.ts');
  });
});
