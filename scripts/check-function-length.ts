/**
 * Function-length check: fails listing every function longer than 60 lines of its own, or whose
 * whole extent (a closure with everything nested in it) is over 300 lines.
 *
 * Measured with the TypeScript compiler API. A function's extent runs from its first token (after
 * any JSDoc) to its closing token. Its own lines are the lines of that extent not touched by a
 * function nested in it (a line holding any part of a nested function counts as the nested one's),
 * blank and comment lines included. Functions are declarations, expressions, arrows, methods,
 * constructors and accessors; a nested class's methods are nested functions of the enclosing one.
 *
 * Usage: npm run check:function-length [-- [--max-own 60] [--max-total 300] [dir or file ...]]
 * (default: src). Exits 1 and lists the offenders, longest first; exits 0 with a one-line summary.
 */
import fs from 'node:fs';
import path from 'node:path';
import ts from 'typescript';

/** Limits the check enforces. */
export interface LengthLimits {
  /** Most lines a function may have of its own. @defaultValue 60 */
  maxOwn: number;
  /** Most lines a function's whole extent may span, nested functions included. @defaultValue 300 */
  maxTotal: number;
}

export const DEFAULT_LIMITS: LengthLimits = { maxOwn: 60, maxTotal: 300 };

/** One function's measure. */
export interface FunctionLength {
  file: string;
  /** 1-based line of the function's first token. */
  line: number;
  name: string;
  own: number;
  total: number;
}

type FunctionNode = ts.SignatureDeclaration & { body?: ts.Node };

function isFunction(node: ts.Node): node is FunctionNode {
  return (
    ts.isFunctionDeclaration(node) ||
    ts.isFunctionExpression(node) ||
    ts.isArrowFunction(node) ||
    ts.isMethodDeclaration(node) ||
    ts.isConstructorDeclaration(node) ||
    ts.isGetAccessorDeclaration(node) ||
    ts.isSetAccessorDeclaration(node)
  );
}

/** The functions directly nested in `node` (not those nested in them). */
function nestedFunctions(node: ts.Node): FunctionNode[] {
  const found: FunctionNode[] = [];
  const visit = (child: ts.Node): void => {
    if (isFunction(child)) found.push(child);
    else child.forEachChild(visit);
  };
  node.forEachChild(visit);
  return found;
}

function propertyNameText(name: ts.PropertyName | ts.BindingName): string {
  if (ts.isIdentifier(name) || ts.isPrivateIdentifier(name)) return name.text;
  if (ts.isStringLiteral(name) || ts.isNumericLiteral(name)) return name.text;
  return name.getText();
}

/** A readable name: the declared one, the variable or property it is assigned to, or the call it is passed to. */
function functionName(fn: FunctionNode): string {
  const container = ts.isClassLike(fn.parent) && fn.parent.name ? `${fn.parent.name.text}.` : '';
  if (ts.isConstructorDeclaration(fn)) return `${container}constructor`;
  if (fn.name) return container + propertyNameText(fn.name);
  const parent = fn.parent;
  if (ts.isVariableDeclaration(parent) || ts.isPropertyAssignment(parent) || ts.isPropertyDeclaration(parent)) {
    return propertyNameText(parent.name);
  }
  if (ts.isBinaryExpression(parent) && parent.operatorToken.kind === ts.SyntaxKind.EqualsToken) {
    return parent.left.getText();
  }
  if (ts.isCallExpression(parent) || ts.isNewExpression(parent)) {
    const callee = parent.expression.getText().replace(/\s+/g, '');
    return `<callback of ${callee.length > 40 ? `${callee.slice(0, 40)}…` : callee}>`;
  }
  if (ts.isExportAssignment(parent)) return '<default export>';
  return '<anonymous>';
}

/** Measures every function in one source text. */
export function measureSource(fileName: string, text: string): FunctionLength[] {
  const source = ts.createSourceFile(fileName, text, ts.ScriptTarget.Latest, true);
  const lineOf = (pos: number): number => source.getLineAndCharacterOfPosition(pos).line;
  const results: FunctionLength[] = [];
  const visit = (node: ts.Node): void => {
    if (isFunction(node) && node.body) {
      const first = lineOf(node.getStart(source));
      const last = lineOf(node.getEnd());
      const nestedLines = new Set<number>();
      for (const nested of nestedFunctions(node)) {
        const nestedLast = lineOf(nested.getEnd());
        for (let line = lineOf(nested.getStart(source)); line <= nestedLast; line++) nestedLines.add(line);
      }
      const total = last - first + 1;
      results.push({ file: fileName, line: first + 1, name: functionName(node), own: total - nestedLines.size, total });
    }
    node.forEachChild(visit);
  };
  visit(source);
  return results;
}

/** The functions over either limit, longest own first. */
export function findViolations(lengths: FunctionLength[], limits: LengthLimits = DEFAULT_LIMITS): FunctionLength[] {
  return lengths
    .filter((fn) => fn.own > limits.maxOwn || fn.total > limits.maxTotal)
    .sort((a, b) => b.own - a.own || b.total - a.total);
}

const SOURCE_FILE = /\.(ts|tsx|mts|cts)$/;

/** The TypeScript source files under each path (declaration files skipped), in a stable order. */
export function sourceFiles(paths: string[]): string[] {
  const files: string[] = [];
  const walk = (entry: string): void => {
    if (fs.statSync(entry).isDirectory()) {
      for (const child of fs.readdirSync(entry).sort()) walk(path.join(entry, child));
    } else if (SOURCE_FILE.test(entry) && !entry.endsWith('.d.ts')) {
      files.push(entry);
    }
  };
  for (const entry of paths) walk(entry);
  return files;
}

export function describeViolation(fn: FunctionLength, limits: LengthLimits = DEFAULT_LIMITS): string {
  const over: string[] = [];
  if (fn.own > limits.maxOwn) over.push(`${fn.own} own lines (max ${limits.maxOwn})`);
  if (fn.total > limits.maxTotal) over.push(`${fn.total} lines in all (max ${limits.maxTotal})`);
  return `${fn.file}:${fn.line} ${fn.name}: ${over.join(', ')}`;
}

/** Runs the check over `paths`; returns the exit code and the lines to print. */
export function checkPaths(paths: string[], limits: LengthLimits = DEFAULT_LIMITS): { code: number; output: string[] } {
  const files = sourceFiles(paths);
  const lengths = files.flatMap((file) => measureSource(file, fs.readFileSync(file, 'utf8')));
  const violations = findViolations(lengths, limits);
  if (violations.length === 0) {
    return {
      code: 0,
      output: [`function length: ${lengths.length} functions in ${files.length} files, none over ${limits.maxOwn} own lines or ${limits.maxTotal} in all`],
    };
  }
  return {
    code: 1,
    output: [
      ...violations.map((fn) => describeViolation(fn, limits)),
      `function length: ${violations.length} of ${lengths.length} functions over ${limits.maxOwn} own lines or ${limits.maxTotal} in all (split them into named helpers)`,
    ],
  };
}

function parseArgs(argv: string[]): { paths: string[]; limits: LengthLimits } {
  const limits = { ...DEFAULT_LIMITS };
  const paths: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (arg === '--max-own' || arg === '--max-total') {
      const value = Number(argv[++i]);
      if (!Number.isInteger(value) || value < 1) throw new Error(`${arg} needs a positive whole number`);
      limits[arg === '--max-own' ? 'maxOwn' : 'maxTotal'] = value;
    } else {
      paths.push(arg);
    }
  }
  return { paths: paths.length > 0 ? paths : ['src'], limits };
}

if (require.main === module) {
  const { paths, limits } = parseArgs(process.argv.slice(2));
  const { code, output } = checkPaths(paths, limits);
  (code === 0 ? console.log : console.error)(output.join('\n'));
  process.exitCode = code;
}
