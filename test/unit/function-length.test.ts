import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { checkPaths, findViolations, measureSource } from '../../scripts/check-function-length';

/** `count` statement lines, one per line. */
function statements(count: number, indent = '  '): string {
  return Array.from({ length: count }, (_, i) => `${indent}total += ${i};`).join('\n');
}

/** A function whose extent is `lines` lines: header, body statements, closing brace. */
function functionOf(name: string, lines: number): string {
  return `export function ${name}(): number {\n  let total = 0;\n${statements(lines - 4)}\n  return total;\n}\n`;
}

function violationsIn(text: string): string[] {
  return findViolations(measureSource('fixture.ts', text)).map((fn) => `${fn.name} ${fn.own}/${fn.total}`);
}

describe('function-length check', () => {
  it('passes a function of 60 lines and fails one of 61', () => {
    expect(measureSource('fixture.ts', functionOf('sixty', 60))).toEqual([
      { file: 'fixture.ts', line: 1, name: 'sixty', own: 60, total: 60 },
    ]);
    expect(violationsIn(functionOf('sixty', 60))).toEqual([]);
    expect(violationsIn(functionOf('sixtyOne', 61))).toEqual(['sixtyOne 61/61']);
  });

  it('does not count the lines of nested functions as the outer function’s own', () => {
    const inner = (name: string): string => `  const ${name} = (): number => {\n${statements(40, '    ')}\n    return 1;\n  };\n`;
    // 4 own lines + 3 nested arrows of 43 lines each + 50 own statements = 183 lines in all, 54 own.
    const outer = `export function outer(): number {\n  let total = 0;\n${inner('a')}${inner('b')}${inner('c')}${statements(50)}\n  return total + a() + b() + c();\n}\n`;
    const lengths = measureSource('fixture.ts', outer);
    expect(lengths.find((fn) => fn.name === 'outer')).toMatchObject({ own: 54, total: 183 });
    expect(lengths.filter((fn) => fn.name !== 'outer').map((fn) => [fn.name, fn.own])).toEqual([
      ['a', 43],
      ['b', 43],
      ['c', 43],
    ]);
    expect(violationsIn(outer)).toEqual([]);
  });

  it('counts a line shared by two one-line callbacks once', () => {
    const body = `${statements(58)}\n  const both = [1].map((x) => x + 1).concat([2].map((y) => y * 2));`;
    const text = `export function shared(): number[] {\n  let total = 0;\n${body}\n  return both;\n}\n`;
    // 63 lines, one of them holding nested functions: 62 own.
    expect(violationsIn(text)).toEqual(['shared 62/63']);
  });

  it('fails a closure over 300 lines in all even when its own part is short', () => {
    const helpers = Array.from({ length: 6 }, (_, i) => `  function helper${i}(): void {\n${statements(50, '    ')}\n  }\n`).join('');
    const closure = `export function createThing(): void {\n  let total = 0;\n${helpers}}\n`;
    // 2 own lines + 1 closing + 6 × 52 nested = 315 lines.
    expect(violationsIn(closure)).toEqual(['createThing 3/315']);
  });

  it('names methods, arrows assigned to properties and callbacks', () => {
    const text = [
      'class Store {',
      '  constructor() {}',
      '  get size(): number { return 1; }',
      '  save(): void {}',
      '}',
      'const handlers = { onMessage: () => 1 };',
      'app.get("/x", async () => 2);',
    ].join('\n');
    expect(measureSource('fixture.ts', text).map((fn) => fn.name)).toEqual([
      'Store.constructor',
      'Store.size',
      'Store.save',
      'onMessage',
      '<callback of app.get>',
    ]);
  });

  describe('over a directory', () => {
    let dir: string;
    beforeEach(() => {
      dir = fs.mkdtempSync(path.join(os.tmpdir(), 'function-length-'));
      fs.mkdirSync(path.join(dir, 'nested'));
      fs.writeFileSync(path.join(dir, 'ok.ts'), functionOf('fine', 60));
      fs.writeFileSync(path.join(dir, 'types.d.ts'), `declare function big(): void;\n`);
    });
    afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

    it('exits 0 with a summary when every function is within the limits', () => {
      expect(checkPaths([dir])).toEqual({
        code: 0,
        output: ['function length: 1 functions in 1 files, none over 60 own lines or 300 in all'],
      });
    });

    it('runs from the command line, listing each long function with its file and line, and exits 1', async () => {
      fs.writeFileSync(path.join(dir, 'nested', 'long.ts'), `// header\n\n${functionOf('tooLong', 61)}`);
      const script = path.join(__dirname, '../../scripts/check-function-length.ts');
      const run = promisify(execFile)(process.execPath, ['-r', '@swc-node/register', script, dir], {
        cwd: path.join(__dirname, '../..'),
      });
      await expect(run).rejects.toMatchObject({
        code: 1,
        stderr: `${path.join(dir, 'nested', 'long.ts')}:3 tooLong: 61 own lines (max 60)\nfunction length: 1 of 2 functions over 60 own lines or 300 in all (split them into named helpers)\n`,
      });
    });
  });
});
