/**
 * The deployment files (deploy/k8s, docker-compose.yml, docs/deployment.md) checked against the code
 * they deploy: the variables src/config.ts reads, the metrics the app registers, the routes every
 * role serves, the roles main.ts accepts, the collections and unique indexes of the models.
 *
 * YAML is parsed with js-yaml, which is already in node_modules (a dependency of jest's tooling);
 * it has no type declarations here, hence the small typed wrapper.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import mongoose from 'mongoose';
import { loadConfig } from '../../src/config';
import { createMetrics } from '../../src/metrics';
import { QueueName } from '../../src/queue/names';
import { registerChannelMetrics, registerQueueMetrics } from '../../src/queue/queue-metrics';
import type { Queues } from '../../src/queue/queues';
import type { Intake } from '../../src/queue/intake';
import { registerIdentityModels } from '../../src/identity/models';
import { registerRouterModels } from '../../src/router/models';
import { registerPrivacyModels } from '../../src/privacy/models';
import { createBlobStore } from '../../src/channels/whatsapp-web/store';
import { startTestApp } from '../helpers/app';

const ROOT = path.resolve(__dirname, '../..');
const K8S = path.join(ROOT, 'deploy/k8s');

interface JsYaml {
  safeLoadAll?: (source: string) => unknown[];
  loadAll: (source: string) => unknown[];
}
const jsYaml = createRequire(__filename)('js-yaml') as JsYaml;
/** js-yaml 3 has safeLoadAll; in js-yaml 4 loadAll is the safe one. */
const loadAll = jsYaml.safeLoadAll ?? jsYaml.loadAll;

const read = (file: string) => readFileSync(path.join(ROOT, file), 'utf8');

// ---- the manifests -------------------------------------------------------------------------

type Labels = Record<string, string>;
interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Labels };
}
interface HttpProbe {
  httpGet?: { path: string; port: string | number };
}
interface Container {
  name: string;
  args?: string[];
  ports?: { name?: string; containerPort: number }[];
  startupProbe?: HttpProbe;
  readinessProbe?: HttpProbe;
  livenessProbe?: HttpProbe;
  envFrom?: { configMapRef?: { name: string }; secretRef?: { name: string } }[];
  lifecycle?: { preStop?: { exec?: { command: string[] } } };
  resources?: { requests?: { cpu?: string; memory?: string }; limits?: { memory?: string } };
  securityContext?: { readOnlyRootFilesystem?: boolean; allowPrivilegeEscalation?: boolean };
  volumeMounts?: { name: string; mountPath: string }[];
}
interface Deployment extends K8sObject {
  kind: 'Deployment';
  spec: {
    selector: { matchLabels: Labels };
    template: {
      metadata: { labels: Labels };
      spec: {
        terminationGracePeriodSeconds?: number;
        securityContext?: { runAsNonRoot?: boolean; runAsUser?: number };
        containers: Container[];
      };
    };
  };
}
interface KeyValues extends K8sObject {
  data?: Record<string, string>;
  stringData?: Record<string, string>;
}
interface MetricTarget {
  name: string;
  selector?: { matchLabels?: Labels };
}
interface HpaMetric {
  type: string;
  external?: { metric: MetricTarget };
  pods?: { metric: MetricTarget };
  resource?: { name: string };
}
interface Hpa extends K8sObject {
  spec: {
    scaleTargetRef: { kind: string; name: string };
    minReplicas?: number;
    maxReplicas: number;
    metrics: HpaMetric[];
  };
}
interface Pdb extends K8sObject {
  spec: { minAvailable?: number | string; selector: { matchLabels: Labels } };
}
interface AdapterValues {
  rules: {
    external: {
      seriesQuery: string;
      name?: { matches: string; as: string };
      metricsQuery: string;
    }[];
  };
}

function yamlFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((entry) => {
    const full = path.join(dir, entry);
    if (statSync(full).isDirectory()) return yamlFiles(full);
    return /\.ya?ml$/.test(entry) ? [full] : [];
  });
}

const files = new Map<string, unknown[]>(
  yamlFiles(K8S).map((file) => [
    path.relative(K8S, file),
    loadAll(readFileSync(file, 'utf8')).filter((doc) => doc !== null && doc !== undefined),
  ]),
);
const objects: K8sObject[] = [...files.values()]
  .flat()
  .filter((doc): doc is K8sObject => typeof doc === 'object' && doc !== null && 'kind' in doc)
  .filter((o) => o.kind !== 'Kustomization');
const ofKind = <T extends K8sObject>(kind: string) => objects.filter((o): o is T => o.kind === kind);
function only<T>(items: T[], what: string): T {
  if (items.length !== 1) throw new Error(`expected exactly one ${what}, found ${items.length}`);
  return items[0]!;
}

const deployments = ofKind<Deployment>('Deployment');
const configMap = only(ofKind<KeyValues>('ConfigMap'), 'ConfigMap');
const secretExample = only(ofKind<KeyValues>('Secret'), 'Secret');
const configData = configMap.data ?? {};
const secretData = secretExample.stringData ?? secretExample.data ?? {};

// ---- what the code says --------------------------------------------------------------------

/** The variable names of `envSchema` in src/config.ts (one `NAME:` per line at the top level). */
function configVariables(): Set<string> {
  const source = read('src/config.ts');
  const start = source.indexOf('const envSchema = z.object({');
  const end = source.indexOf('\n});', start);
  expect(start).toBeGreaterThan(0);
  expect(end).toBeGreaterThan(start);
  const body = source.slice(start, end);
  return new Set([...body.matchAll(/^ {2}([A-Z][A-Z0-9_]*):/gm)].map((m) => m[1]!));
}

/** `const ROLES: Role[] = ['api', …]` in src/main.ts. */
function roles(): string[] {
  const match = /const ROLES: Role\[\] = \[([^\]]+)\]/.exec(read('src/main.ts'));
  expect(match).not.toBeNull();
  return [...match![1]!.matchAll(/'([a-z-]+)'/g)].map((m) => m[1]!);
}

/** `const STATES = ['waiting', …]` in src/queue/queue-metrics.ts: the `state` label's values. */
function queueStates(): string[] {
  const match = /const STATES = \[([^\]]+)\]/.exec(read('src/queue/queue-metrics.ts'));
  expect(match).not.toBeNull();
  return [...match![1]!.matchAll(/'([a-z]+)'/g)].map((m) => m[1]!);
}

/** Every metric the app registers (registry of a real app's metrics module), with its label names. */
function registeredMetrics(): Map<string, string[]> {
  const metrics = createMetrics();
  // The gauges read Redis only when collected; registering them needs no connection.
  registerQueueMetrics(metrics.registry, {} as Queues);
  registerChannelMetrics(metrics.registry, { channels: {}, intake: {} as Intake });
  return new Map(
    metrics.registry
      .getMetricsAsArray()
      .map((m) => [m.name, [...((m as unknown as { labelNames?: readonly string[] }).labelNames ?? [])]]),
  );
}

const containerOf = (d: Deployment): Container => only(d.spec.template.spec.containers, 'one container');
const portNumber = (c: Container, port: string | number | undefined): number | undefined =>
  typeof port === 'number' ? port : c.ports?.find((p) => p.name === port)?.containerPort;
const isSubset = (sub: Labels, of: Labels) => Object.entries(sub).every(([k, v]) => of[k] === v);

describe('deploy/k8s', () => {
  it('parses, and pins no namespace', () => {
    expect(files.size).toBeGreaterThanOrEqual(10);
    for (const o of objects)
      expect({ [o.metadata.name]: o.metadata.namespace }).toEqual({ [o.metadata.name]: undefined });
    const kustomization = only(files.get('kustomization.yaml') ?? [], 'kustomization') as {
      namespace?: string;
    };
    expect(kustomization.namespace).toBeUndefined();
  });

  it('kustomization lists every manifest except the placeholder Secret, the adapter values and optional/', () => {
    const kustomization = files.get('kustomization.yaml')![0] as { resources: string[] };
    for (const resource of kustomization.resources) expect(existsSync(path.join(K8S, resource))).toBe(true);
    const expected = [...files.keys()]
      .filter((f) => !f.startsWith('optional/'))
      .filter(
        (f) => !['kustomization.yaml', 'secret.example.yaml', 'prometheus-adapter-rules.yaml'].includes(f),
      )
      .sort();
    expect([...kustomization.resources].sort()).toEqual(expected);
    expect(readFileSync(path.join(K8S, '.gitignore'), 'utf8')).toMatch(/^secret\.yaml$/m);
  });

  it('ConfigMap and Secret hold only variables src/config.ts reads, secrets only in the Secret', () => {
    const known = configVariables();
    expect(known.size).toBeGreaterThan(30);
    expect(known).toContain('ADMIN_TOKEN');
    const unknown = [...Object.keys(configData), ...Object.keys(secretData)].filter((k) => !known.has(k));
    expect(unknown).toEqual([]);
    // No key in both: which one would win depends on the order of envFrom.
    expect(Object.keys(configData).filter((k) => k in secretData)).toEqual([]);

    const secretLike = /TOKEN|SECRET|PASSWORD/;
    expect(Object.keys(configData).filter((k) => secretLike.test(k))).toEqual([]);
    for (const name of known) if (secretLike.test(name)) expect(Object.keys(secretData)).toContain(name);
    // Connection strings carry passwords.
    expect(Object.keys(secretData)).toEqual(expect.arrayContaining(['MONGODB_URI', 'REDIS_URL']));
  });

  it('the Secret example is placeholders only', () => {
    for (const [name, value] of Object.entries(secretData)) {
      expect({ [name]: /CHANGE-ME|^AC0{32}$/.test(value) }).toEqual({ [name]: true });
    }
  });

  it('ConfigMap + Secret example is a configuration Rapport starts with', () => {
    const config = loadConfig({ ...configData, ...secretData });
    expect(config.mongodbUri).toMatch(/replicaSet=rs0/);
    expect(config.slack).toBeDefined();
    // The Redis Cluster form shown (commented out) in the example is accepted too.
    const clusterLine = /^\s*#\s*REDIS_URL:\s*"([^"]+)"/m.exec(
      readFileSync(path.join(K8S, 'secret.example.yaml'), 'utf8'),
    );
    expect(clusterLine?.[1]).toContain(',');
    expect(loadConfig({ ...configData, ...secretData, REDIS_URL: clusterLine![1] }).redisUrl).toContain(',');
  });

  it('every Deployment runs a real role with probes on /readyz and /healthz at its container port', () => {
    const config = loadConfig({ ...configData, ...secretData });
    const knownRoles = roles();
    expect(deployments.map((d) => d.metadata.name).sort()).toEqual([
      'rapport-api',
      'rapport-whatsapp-web',
      'rapport-worker',
    ]);
    for (const d of deployments) {
      const c = containerOf(d);
      const role = c.args?.[0];
      expect(knownRoles).toContain(role);
      expect(d.metadata.name).toBe(`rapport-${role}`);
      expect(isSubset(d.spec.selector.matchLabels, d.spec.template.metadata.labels)).toBe(true);

      const http = c.ports?.find((p) => p.name === 'http');
      expect(http?.containerPort).toBe(config.port);
      expect(c.readinessProbe?.httpGet?.path).toBe('/readyz');
      expect(c.livenessProbe?.httpGet?.path).toBe('/healthz');
      expect(c.startupProbe?.httpGet).toBeDefined();
      for (const probe of [c.readinessProbe, c.livenessProbe, c.startupProbe]) {
        expect(portNumber(c, probe?.httpGet?.port)).toBe(config.port);
      }

      expect(c.envFrom).toEqual([
        { configMapRef: { name: configMap.metadata.name } },
        { secretRef: { name: secretExample.metadata.name } },
      ]);
      expect(c.resources?.requests?.cpu).toBeDefined();
      expect(c.resources?.limits?.memory).toBeDefined();
    }
  });

  it('terminationGracePeriodSeconds outlasts the preStop pause plus SHUTDOWN_TIMEOUT_MS', () => {
    const { shutdownTimeoutMs } = loadConfig({ ...configData, ...secretData });
    for (const d of deployments) {
      const preStop = containerOf(d).lifecycle?.preStop?.exec?.command;
      const pauseMs = preStop?.[0] === 'sleep' ? Number(preStop[1]) * 1000 : 0;
      expect(preStop === undefined || pauseMs > 0).toBe(true);
      const graceMs = (d.spec.template.spec.terminationGracePeriodSeconds ?? 30) * 1000;
      expect(graceMs).toBeGreaterThan(pauseMs + shutdownTimeoutMs);
    }
  });

  it('runs as the image user, non-root, read-only, with a writable /tmp', () => {
    // The Dockerfile's final stage switches to node:20's `node` user (uid 1000).
    expect(read('Dockerfile')).toMatch(/^USER node$/m);
    for (const d of deployments) {
      const pod = d.spec.template.spec.securityContext;
      expect(pod?.runAsNonRoot).toBe(true);
      expect(pod?.runAsUser).toBe(1000);
      const c = containerOf(d);
      expect(c.securityContext?.readOnlyRootFilesystem).toBe(true);
      expect(c.securityContext?.allowPrivilegeEscalation).toBe(false);
      // os.tmpdir(): WhatsApp Web's Chromium profile, and whatever a library writes.
      expect(c.volumeMounts?.map((m) => m.mountPath)).toContain('/tmp');
    }
  });

  it('HPAs scale real Deployments; the worker HPA uses metrics and labels the app registers', () => {
    const metrics = registeredMetrics();
    const states = queueStates();
    const queueNames: string[] = Object.values(QueueName);
    const hpas = ofKind<Hpa>('HorizontalPodAutoscaler');
    expect(hpas.map((h) => h.spec.scaleTargetRef.name).sort()).toEqual(['rapport-api', 'rapport-worker']);

    for (const hpa of hpas) {
      const target = deployments.find((d) => d.metadata.name === hpa.spec.scaleTargetRef.name);
      expect(target).toBeDefined();
      expect(hpa.spec.minReplicas).toBeGreaterThanOrEqual(2);
      for (const m of hpa.spec.metrics) {
        if (m.type === 'Resource')
          expect(containerOf(target!).resources?.requests?.[m.resource!.name as 'cpu']).toBeDefined();
        const metric = m.external?.metric ?? m.pods?.metric;
        if (!metric) continue;
        expect(metrics.has(metric.name)).toBe(true);
        const labels = metric.selector?.matchLabels ?? {};
        for (const label of Object.keys(labels)) expect(metrics.get(metric.name)).toContain(label);
        if (labels.queue) expect(queueNames).toContain(labels.queue);
        if (labels.state) expect(states).toContain(labels.state);
      }
    }
    const worker = hpas.find((h) => h.spec.scaleTargetRef.name === 'rapport-worker')!;
    expect(worker.spec.metrics.map((m) => m.external?.metric.name)).toContain(
      'rapport_queue_oldest_waiting_seconds',
    );
  });

  it('the prometheus-adapter rule serves every external metric the HPAs use, as max over pods', () => {
    const values = files.get('prometheus-adapter-rules.yaml')![0] as AdapterValues;
    const rules = values.rules.external;
    const used = ofKind<Hpa>('HorizontalPodAutoscaler').flatMap((h) =>
      h.spec.metrics.flatMap((m) => (m.external ? [m.external.metric.name] : [])),
    );
    expect(used.length).toBeGreaterThan(0);
    for (const name of new Set(used)) {
      const served = rules.some((rule) => {
        const series = /__name__=~"([^"]+)"/.exec(rule.seriesQuery)?.[1];
        if (!series || !new RegExp(series).test(name)) return false;
        const exposed = rule.name
          ? name.replace(new RegExp(rule.name.matches), rule.name.as.replace(/\$\{(\d+)\}/g, '$$$1'))
          : name;
        return exposed === name;
      });
      expect({ [name]: served }).toEqual({ [name]: true });
    }
    // Every pod reports the same (Redis-backed) queue values: summing would count them per pod.
    for (const rule of rules) expect(rule.metricsQuery).toMatch(/^max\(/);
  });

  it('PodDisruptionBudgets select the api and worker pods and keep one of each', () => {
    const pdbs = ofKind<Pdb>('PodDisruptionBudget');
    expect(pdbs.map((p) => p.metadata.name).sort()).toEqual(['rapport-api', 'rapport-worker']);
    for (const pdb of pdbs) {
      expect(pdb.spec.minAvailable).toBe(1);
      const selected = deployments.filter((d) =>
        isSubset(pdb.spec.selector.matchLabels, d.spec.template.metadata.labels),
      );
      expect(selected.map((d) => d.metadata.name)).toEqual([pdb.metadata.name]);
    }
  });

  it('the api Service targets the api pods only, on their http port', () => {
    const service = only(
      ofKind<K8sObject & { spec: { selector: Labels; ports: { targetPort: string }[] } }>('Service'),
      'Service',
    );
    const selected = deployments.filter((d) =>
      isSubset(service.spec.selector, d.spec.template.metadata.labels),
    );
    expect(selected.map((d) => d.metadata.name)).toEqual(['rapport-api']);
    expect(service.spec.ports.map((p) => p.targetPort)).toEqual(['http']);
  });
});

describe('the probed routes exist on the worker role', () => {
  it('a worker process serves /healthz, /readyz and /metrics', async () => {
    const t = await startTestApp({}, { role: 'worker' });
    try {
      const healthz = await fetch(`${t.baseUrl}/healthz`);
      expect(healthz.status).toBe(200);
      const readyz = await fetch(`${t.baseUrl}/readyz`);
      expect(readyz.status).toBe(200);
      expect(((await readyz.json()) as { status: string }).status).toBe('ready');
      const metrics = await (await fetch(`${t.baseUrl}/metrics`)).text();
      expect(metrics).toContain('rapport_queue_oldest_waiting_seconds{queue="inbound"}');
      // …and not the webhooks: only api pods sit behind the Service.
      expect((await fetch(`${t.baseUrl}/webhooks/twilio`, { method: 'POST' })).status).toBe(404);
    } finally {
      await t.stop();
    }
  });
});

describe('docker-compose.yml', () => {
  interface ComposeService {
    image?: string;
    command?: string[];
    ports?: (string | { published?: string | number; target: number })[];
    expose?: string[];
    environment?: Record<string, string>;
    volumes?: string[];
    stop_grace_period?: string;
  }
  const compose = loadAll(read('docker-compose.yml'))[0] as { services: Record<string, ComposeService> };
  const services = compose.services;

  it('api publishes no fixed host port, so --scale api=N does not collide; one load balancer does', () => {
    const published = (s: ComposeService) =>
      (s.ports ?? []).map((p) =>
        typeof p === 'string' ? p.split(':').slice(0, -1).join(':') : String(p.published ?? ''),
      );
    // A single host port ("3000:3000") breaks scaling; none, or a range, does not.
    for (const host of published(services.api!)) expect(host === '' || /\d+-\d+$/.test(host)).toBe(true);
    expect(published(services.worker!)).toEqual([]);

    const lb = services.lb!;
    expect(lb.ports).toEqual(['${RAPPORT_PORT:-3000}:3000']);
    const mount = lb.volumes?.[0]?.split(':');
    const cfg = readFileSync(path.join(ROOT, mount![0]!), 'utf8');
    expect(mount![1]).toBe('/usr/local/etc/haproxy/haproxy.cfg');
    expect(cfg).toMatch(/^\s*bind :3000$/m);
    expect(cfg).toMatch(/^\s*server-template api \d+ api:3000$/m);
    expect(cfg).toMatch(/^\s*option httpchk GET \/readyz$/m);
    expect(services.api!.environment?.PORT).toBe('3000');
  });

  it('gives api and worker time for the graceful shutdown (SHUTDOWN_TIMEOUT_MS) before SIGKILL', () => {
    const { shutdownTimeoutMs } = loadConfig({ ADMIN_TOKEN: 'x'.repeat(16) });
    for (const role of ['api', 'worker']) {
      const grace = /^(\d+)s$/.exec(services[role]!.stop_grace_period ?? '');
      expect(Number(grace?.[1]) * 1000).toBeGreaterThan(shutdownTimeoutMs);
    }
  });

  it('keeps redis:7 (AOF, noeviction) and mongo:7 as the replica set the services connect to', () => {
    expect(services.redis!.image).toBe('redis:7');
    expect(services.redis!.command).toEqual(
      expect.arrayContaining(['--appendonly', 'yes', '--maxmemory-policy', 'noeviction']),
    );
    expect(services.mongo!.image).toBe('mongo:7');
    const command = services.mongo!.command ?? [];
    const replSet = command[command.indexOf('--replSet') + 1];
    expect(replSet).toBe('rs0');
    for (const role of ['api', 'worker']) {
      const uri = services[role]!.environment!.MONGODB_URI!;
      expect(uri).toContain(`replicaSet=${replSet}`);
      expect(loadConfig({ ADMIN_TOKEN: 'x'.repeat(16), MONGODB_URI: uri }).mongodbUri).toBe(uri);
    }
  });
});

describe('docs/deployment.md', () => {
  const doc = read('docs/deployment.md');

  /** Collection name → shard key fields (`{ key: 1 }` → [['key', '1']]) or 'unsharded'. */
  const table = new Map(
    [...doc.matchAll(/^\|\s*`([a-z_]+)`\s*\|([^|]+)\|/gm)].map((m) => {
      const cell = m[2]!;
      const key = /`\{([^}]*)\}`/.exec(cell)?.[1];
      const fields = key
        ? [...key.matchAll(/(\w+)\s*:\s*(1|"hashed")/g)].map((f) => [f[1]!, f[2]!])
        : 'unsharded';
      return [m[1]!, fields] as const;
    }),
  );

  // Every model, registered on a connection that never connects.
  const connection = mongoose.createConnection();
  registerIdentityModels(connection);
  registerRouterModels(connection);
  registerPrivacyModels(connection);
  createBlobStore({ connection });
  const models = Object.values(connection.models);

  afterAll(() => connection.close());

  it('gives a shard key (or "unsharded") for every collection in src/', () => {
    const inSource = new Set(
      execGrep(/collection: '([a-z_]+)'/g).concat(models.map((m) => m.collection.collectionName)),
    );
    expect(inSource.size).toBeGreaterThanOrEqual(19);
    expect([...inSource].filter((c) => !table.has(c))).toEqual([]);
  });

  it('each shard key keeps the unique indexes enforceable and is never a field the code rewrites in bulk', () => {
    // Collections whose customerId the code moves with updateMany (merges): MongoDB refuses to
    // change a shard key that way.
    const rewritten = new Set(
      execGrep(/(\w+)\.updateMany\(\s*[^;]*?\$set:\s*\{\s*customerId\b/g).map(
        (modelName) => connection.models[modelName]?.collection.collectionName,
      ),
    );
    expect(rewritten).toEqual(new Set(['messages', 'identities', 'customer_sends']));

    for (const model of models) {
      const name = model.collection.collectionName;
      const key = table.get(name);
      if (key === undefined || key === 'unsharded') continue;
      const fields = key.map(([field]) => field);
      if (rewritten.has(name))
        expect({ [name]: fields }).not.toEqual({ [name]: expect.arrayContaining(['customerId']) });
      const unique = model.schema
        .indexes()
        .filter(([, options]) => (options as { unique?: boolean }).unique)
        .map(([spec]) => Object.keys(spec));
      for (const indexFields of unique) {
        // Enforced cluster-wide only if the shard key (ranged, not hashed) prefixes the index.
        expect({ [name]: indexFields.slice(0, fields.length) }).toEqual({ [name]: fields });
        expect(key.every(([, kind]) => kind === '1')).toBe(true);
      }
    }
    expect(table.get('messages')).toEqual([['key', '1']]);
  });
});

/** First capture group of `pattern` over every .ts file under src/. */
function execGrep(pattern: RegExp): string[] {
  const walk = (dir: string): string[] =>
    readdirSync(dir).flatMap((entry) => {
      const full = path.join(dir, entry);
      return statSync(full).isDirectory() ? walk(full) : entry.endsWith('.ts') ? [full] : [];
    });
  return walk(path.join(ROOT, 'src')).flatMap((file) =>
    [...readFileSync(file, 'utf8').matchAll(pattern)].map((m) => m[1]!),
  );
}
