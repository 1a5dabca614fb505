/**
 * Sums a V8 CPU profile (`.cpuprofile`, from bench/lib/role.ts's `{ cpuProfile }` requests) into where
 * the time went: self time by area (a package in node_modules, a file of src/, Node's internals, the
 * garbage collector, idle), inclusive time by area (a sample counts once for every area on its stack:
 * "time spent in or under BullMQ"), and the functions with the most self time.
 *
 * Usage as a script: node -r @swc-node/register bench/lib/cpu-profile.ts <file.cpuprofile> [messages]
 */
import { readFileSync } from 'node:fs';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

/** The area a frame belongs to: `bullmq`, `src/router/inbound.ts`, `node:internal`, `(garbage collector)`… */
export function areaOf(url: string, functionName: string): string {
  if (!url) return functionName.startsWith('(') ? functionName : '(native)';
  const nm = url.lastIndexOf('node_modules/');
  if (nm >= 0) {
    const rest = url.slice(nm + 'node_modules/'.length).split('/');
    return rest[0]!.startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0]!;
  }
  const src = url.lastIndexOf('/src/');
  if (src >= 0) return url.slice(src + 1).replace(/\.js$/, '.ts');
  if (url.includes('/bench/')) return 'bench';
  if (url.startsWith('node:')) return 'node:internal';
  return url;
}

export interface CpuSummary {
  /** Sampled time, idle excluded (ms). */
  busyMs: number;
  idleMs: number;
  selfByArea: { area: string; ms: number; share: number }[];
  inclusiveByArea: { area: string; ms: number; share: number }[];
  topFunctions: { fn: string; ms: number; share: number }[];
}

function ranked(m: Map<string, number>, busyUs: number, n: number, key: 'area' | 'fn') {
  return [...m.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, n)
    .map(([k, us]) => ({ [key]: k, ms: Math.round(us / 100) / 10, share: Math.round((us / busyUs) * 1000) / 10 }) as never);
}

export function summariseProfile(profile: Profile, top = 25): CpuSummary {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const selfUs = new Map<number, number>();
  for (let i = 0; i < profile.samples.length; i++) {
    const id = profile.samples[i]!;
    // timeDeltas[i] is the time from the previous sample to this one: charged to this sample.
    selfUs.set(id, (selfUs.get(id) ?? 0) + Math.max(0, profile.timeDeltas[i] ?? 0));
  }
  const areasOnStack = new Map<number, Set<string>>();
  const stackAreas = (id: number): Set<string> => {
    const known = areasOnStack.get(id);
    if (known) return known;
    const n = byId.get(id)!;
    const p = parent.get(id);
    const set = new Set(p === undefined ? [] : stackAreas(p));
    set.add(areaOf(n.callFrame.url, n.callFrame.functionName));
    areasOnStack.set(id, set);
    return set;
  };
  const self = new Map<string, number>();
  const inclusive = new Map<string, number>();
  const fns = new Map<string, number>();
  let idleUs = 0;
  let busyUs = 0;
  for (const [id, us] of selfUs) {
    const { functionName, url, lineNumber } = byId.get(id)!.callFrame;
    const area = areaOf(url, functionName);
    if (area === '(idle)') {
      idleUs += us;
      continue;
    }
    busyUs += us;
    self.set(area, (self.get(area) ?? 0) + us);
    for (const a of stackAreas(id)) if (a !== '(root)') inclusive.set(a, (inclusive.get(a) ?? 0) + us);
    const fn = `${functionName || '(anonymous)'} ${area}:${lineNumber + 1}`;
    fns.set(fn, (fns.get(fn) ?? 0) + us);
  }
  return {
    busyMs: Math.round(busyUs / 1000),
    idleMs: Math.round(idleUs / 1000),
    selfByArea: ranked(self, busyUs, top, 'area'),
    inclusiveByArea: ranked(inclusive, busyUs, top, 'area'),
    topFunctions: ranked(fns, busyUs, top, 'fn'),
  };
}

export function summariseProfileFile(file: string, top?: number): CpuSummary {
  return summariseProfile(JSON.parse(readFileSync(file, 'utf8')) as Profile, top);
}

if (require.main === module) {
  const [file, messages] = process.argv.slice(2);
  const s = summariseProfileFile(file!, 30);
  const per = (ms: number) => (messages ? ` (${((ms / Number(messages)) * 1000).toFixed(0)} µs/msg)` : '');
  console.log(`busy ${s.busyMs} ms${per(s.busyMs)}, idle ${s.idleMs} ms`);
  for (const [title, rows] of [
    ['self by area', s.selfByArea],
    ['inclusive by area', s.inclusiveByArea],
    ['top functions (self)', s.topFunctions],
  ] as const) {
    console.log(`\n${title}`);
    for (const r of rows as { area?: string; fn?: string; ms: number; share: number }[])
      console.log(`  ${String(r.share).padStart(5)} %  ${String(r.ms).padStart(8)} ms${per(r.ms)}  ${r.area ?? r.fn}`);
  }
}
