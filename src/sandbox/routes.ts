/**
 * `/sandbox`: a page where one person plays the customers and the agents, and its small JSON API
 * (`/sandbox/api/…`). Mounted only in sandbox mode (see index.ts `serve`), never on a normal app.
 *
 * The server side does what the providers and Slack would do, through Rapport's real routes:
 * a customer's message becomes a webhook signed as Twilio or Meta sign them, POSTed to
 * /webhooks/…; an agent's reply is stored in the Slack emulator (`postAsUser`) and POSTed to
 * /slack/events signed as Slack signs it; a `/rapport` command goes to /slack/commands. What
 * Rapport sends back is read from the emulators' records. Agents and customer profiles come from
 * the admin API (`/api/…`) with the admin token, so the page itself needs none: that is why this
 * router is only ever served on loopback in sandbox mode.
 *
 * Requests go to Rapport at the address and port the page's own request arrived on, so it works
 * on any port (including 0 in tests).
 */
import express, { Router, type ErrorRequestHandler, type Request } from 'express';
import { z } from 'zod';
import type { Config } from '../config';
import { PayloadError, isAppError } from '../errors';
import { normalizePhone } from '../identity/phone';
import type { Logger } from '../logger';
import { SANDBOX_CREDENTIALS, type SandboxEmulators } from './credentials';
import { recordsOf, type EmulatorJournal, type JournalRecord } from './emulators/journal';
import type { EmulatedMessage, SlackEmulator } from './emulators/slack';
import { PAGE_CSS, PAGE_HTML, PAGE_JS } from './page';
import {
  APPS,
  customerMessage,
  deliveryReport,
  blockAction,
  slackChangeEvent,
  slackMessageEvent,
  slashCommand,
  type App,
  type CustomerFile,
  type DeliveryState,
  type ProviderSecrets,
  type SignedRequest,
} from './signed-requests';
import {
  phoneView,
  receivedBy,
  slackView,
  type AgentView,
  type Person,
  type Received,
  type WrittenByCustomer,
} from './views';
import { isRecord } from '../values';

export interface SandboxRoutesOptions {
  emulators: SandboxEmulators;
  /** The app's config: the page signs with the secrets Rapport verifies with. */
  config: Readonly<Config>;
  log: Logger;
  /** Where people, what they wrote and delivery reports are kept (sandbox mode: MongoDB). */
  journal?: EmulatorJournal;
  /** What the journal kept from earlier runs, oldest first. */
  records?: readonly JournalRecord[];
}

const SEED_AGENTS = [
  { name: 'Alex', slackUserId: 'U0ALEX', inboxChannelId: 'C0INBOXALEX' },
  { name: 'Sam', slackUserId: 'U0SAM', inboxChannelId: 'C0INBOXSAM' },
];

const SEED_CUSTOMERS: { name: string; phone: string; app: App; text: string }[] = [
  {
    name: 'Dana Whitfield',
    phone: '+14155550123',
    app: 'sms',
    text: "Hi! My order #1042 hasn't arrived yet.",
  },
  {
    name: 'Lee Carter',
    phone: '+447700900123',
    app: 'whatsapp-cloud',
    text: 'Hello, do you ship to Manchester?',
  },
  {
    name: 'Maria Rossi',
    phone: '+393471234567',
    app: 'messenger',
    text: 'Can I change the delivery address on my order?',
  },
  {
    name: 'Ravi Menon',
    phone: '+919812345678',
    app: 'twilio-whatsapp',
    text: 'Is the blue jacket back in stock in size M?',
  },
];

const appSchema = z.enum(APPS);
const personBody = z.object({
  name: z.string().trim().min(1).max(60),
  phone: z.string().trim().max(32).optional(),
});
/** A file picked on the page: name, type and base64 bytes (at most ~5 MB). */
const fileBody = z.object({
  name: z.string().trim().min(1).max(200),
  type: z.string().trim().min(1).max(100),
  data: z.string().max(7_000_000),
});
const withTextOrFile = (b: { text: string; file?: unknown }) => b.text.length > 0 || b.file !== undefined;
const sendBody = z
  .object({
    person: z.string(),
    app: appSchema,
    text: z.string().trim().max(1600).default(''),
    file: fileBody.optional(),
  })
  .refine(withTextOrFile, 'text or file required');
const statusBody = z.object({
  person: z.string(),
  app: appSchema,
  ref: z.string().min(1),
  state: z.enum(['delivered', 'read']),
});
const actionBody = z.object({
  user: z.string().min(1),
  channel: z.string().min(1),
  cardTs: z.string().min(1),
  actionId: z.enum(['rapport_close', 'rapport_template', 'rapport_handoff']),
  value: z.string().optional(),
  selectedUser: z.string().optional(),
});
const changeBody = z.object({
  channel: z.string().min(1),
  ts: z.string().min(1),
  text: z.string().trim().min(1).max(4000).optional(),
});
const agentBody = z.object({ name: z.string().trim().min(1).max(40) });
const replyBody = z.object({
  user: z.string().min(1),
  channel: z.string().min(1),
  threadTs: z.string().optional(),
  text: z.string().trim().min(1).max(4000),
});
const fileReplyBody = z
  .object({
    user: z.string().min(1),
    channel: z.string().min(1),
    threadTs: z.string().optional(),
    text: z.string().trim().max(4000).default(''),
    file: fileBody.optional(),
  })
  .refine(withTextOrFile, 'text or file required');

function parse<T>(schema: z.ZodType<T>, body: unknown): T {
  const result = schema.safeParse(body ?? {});
  if (result.success) return result.data;
  throw new PayloadError(
    result.error.issues.map((i) => `${i.path.join('.') || 'body'}: ${i.message}`).join('; '),
  );
}

const randomDigits = (n: number) => Array.from({ length: n }, () => Math.floor(Math.random() * 10)).join('');

/** "Added agents Alex, Sam and 4 customers (Dana, …). Already there: …" for the page. */
export function seedSummary(
  added: { agents: string[]; customers: string[] },
  existing: { agents: string[]; customers: string[] },
): string {
  const list = (what: { agents: string[]; customers: string[] }) =>
    [
      what.agents.length ? `agents ${what.agents.join(', ')}` : '',
      what.customers.length ? `customers ${what.customers.join(', ')}` : '',
    ]
      .filter(Boolean)
      .join('; ');
  const parts = [
    list(added) ? `Added ${list(added)}.` : 'Added nothing new.',
    list(existing) ? `Already there: ${list(existing)}.` : '',
  ];
  return parts.filter(Boolean).join(' ');
}

/** Rapport as reached from here: the address and port this request came in on. */
function rapportBase(req: Request): string {
  let host = req.socket.localAddress ?? '127.0.0.1';
  if (host.startsWith('::ffff:')) host = host.slice('::ffff:'.length);
  if (host === '::' || host === '0.0.0.0') host = '127.0.0.1';
  return `http://${host.includes(':') ? `[${host}]` : host}:${req.socket.localPort}`;
}

/** The secrets Rapport verifies with, so the page's requests pass as the providers' would. */
function secretsOf(config: Readonly<Config>, slack: SlackEmulator): ProviderSecrets {
  if (
    !config.twilio?.smsFrom ||
    !config.twilio.whatsappFrom ||
    !config.meta ||
    !config.whatsappCloud ||
    !config.slack
  ) {
    throw new Error(
      'sandboxRoutes needs the sandbox config (every channel on): build it from startSandbox().env',
    );
  }
  return {
    publicUrl: config.publicUrl,
    twilio: {
      accountSid: config.twilio.accountSid,
      authToken: config.twilio.authToken,
      smsFrom: config.twilio.smsFrom,
      whatsappFrom: config.twilio.whatsappFrom,
    },
    meta: {
      appSecret: config.meta.appSecret,
      pageId: SANDBOX_CREDENTIALS.meta.pageId,
      phoneNumberId: config.whatsappCloud.phoneNumberId,
      wabaId: SANDBOX_CREDENTIALS.meta.wabaId,
      displayPhoneNumber: SANDBOX_CREDENTIALS.meta.displayPhoneNumber,
    },
    slack: { signingSecret: config.slack.signingSecret, teamId: slack.teamId, apiUrl: slack.url },
  };
}

/** The page's own memory (who the customers are, what they wrote) and its ways of reaching Rapport. */
class SandboxPage {
  readonly emulators: SandboxEmulators;
  readonly config: Readonly<Config>;
  readonly secrets: ProviderSecrets;
  readonly people: Person[];
  readonly written: WrittenByCustomer[];
  readonly reported: Map<string, DeliveryState>;
  /** Files shown on the page (the customer's own, and what Rapport sent by WhatsApp Cloud id). */
  readonly pageFiles = new Map<string, { data: Buffer; type: string }>();
  readonly log: Logger;

  constructor(private readonly o: SandboxRoutesOptions) {
    this.emulators = o.emulators;
    this.config = o.config;
    this.log = o.log;
    this.secrets = secretsOf(o.config, o.emulators.slack);
    const kept = o.records ?? [];
    this.people = recordsOf<Person>(kept, 'page.person');
    this.written = recordsOf<WrittenByCustomer>(kept, 'page.written');
    this.reported = new Map(
      recordsOf<{ ref: string; state: DeliveryState }>(kept, 'page.reported').map((r) => [r.ref, r.state]),
    );
  }

  keep(kind: string, id: string, doc: unknown) {
    return this.o.journal?.write(kind, id, doc);
  }

  /** Everything Rapport sent this person on this app, from the emulators' records. */
  received(person: Person, app: App): Received[] {
    return receivedBy(this.emulators, person, app, (url, cloudId, type) =>
      this.sentImage(url, cloudId, type),
    );
  }

  personOf(id: string): Person {
    const person = this.people.find((p) => p.id === id);
    if (!person) throw new PayloadError('person: no such customer in the sandbox');
    return person;
  }

  async addPerson(name: string, phone: string): Promise<Person> {
    const existing = this.people.find((p) => p.phone === phone);
    if (existing) return existing;
    const person: Person = { id: `p${this.people.length + 1}`, name, phone, psid: `7${randomDigits(15)}` };
    this.people.push(person);
    await this.keep('page.person', person.id, person);
    // Rapport may ask the Graph API for a Messenger user's name, as it would for a real page.
    const [first, ...rest] = name.split(/\s+/);
    this.emulators.graph.setProfile(person.psid, { first_name: first ?? name, last_name: rest.join(' ') });
    return person;
  }

  async post(req: Request, r: SignedRequest): Promise<{ status: number; text: string }> {
    const res = await fetch(`${rapportBase(req)}${r.path}`, {
      method: 'POST',
      headers: r.headers,
      body: r.body,
      signal: AbortSignal.timeout(10_000),
    });
    return { status: res.status, text: await res.text() };
  }

  async admin(
    req: Request,
    method: string,
    path: string,
    body?: unknown,
  ): Promise<{ status: number; body: unknown }> {
    const res = await fetch(`${rapportBase(req)}/api${path}`, {
      method,
      headers: { authorization: `Bearer ${this.config.adminToken}`, 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(10_000),
    });
    const text = await res.text();
    let parsed: unknown = text;
    try {
      parsed = text ? JSON.parse(text) : undefined;
    } catch {
      // keep the text
    }
    return { status: res.status, body: parsed };
  }

  async agents(req: Request): Promise<AgentView[]> {
    const res = await this.admin(req, 'GET', '/agents');
    if (res.status !== 200 || !isRecord(res.body) || !Array.isArray(res.body.agents)) return [];
    return res.body.agents as AgentView[];
  }

  async createAgent(req: Request, agent: { name: string; slackUserId: string; inboxChannelId: string }) {
    this.emulators.slack.addUser({
      id: agent.slackUserId,
      name: agent.name.toLowerCase(),
      realName: agent.name,
    });
    const res = await this.admin(req, 'POST', '/agents', agent);
    if (res.status !== 201 && res.status !== 409) throw new Error(`creating agent failed: ${res.status}`);
    return res;
  }

  keepFile(data: Buffer, type: string, id = `f${this.pageFiles.size + 1}`): string {
    this.pageFiles.set(id, { data, type });
    return `/sandbox/api/file/${encodeURIComponent(id)}`;
  }

  /** Registers the customer's file where their provider serves it, as the provider would. */
  customerFile(app: App, file: z.output<typeof fileBody>): CustomerFile {
    const data = Buffer.from(file.data, 'base64');
    const base = { contentType: file.type, filename: file.name };
    if (app === 'whatsapp-cloud')
      return { ...base, mediaId: this.emulators.graph.addWhatsAppMedia(data, file.type) };
    if (app === 'messenger')
      return { ...base, url: this.emulators.graph.addMessengerAttachment(data, file.type) };
    return { ...base, url: this.emulators.twilio.addMedia(data, file.type) };
  }

  async writeAsCustomer(
    req: Request,
    person: Person,
    app: App,
    text: string,
    file?: z.output<typeof fileBody>,
  ) {
    const attached = file ? this.customerFile(app, file) : undefined;
    const { request, ref } = customerMessage(this.secrets, app, person, text, attached);
    const res = await this.post(req, request);
    const image =
      file && file.type.startsWith('image/')
        ? this.keepFile(Buffer.from(file.data, 'base64'), file.type)
        : undefined;
    const entry: WrittenByCustomer = {
      personId: person.id,
      app,
      text: text || `[${file?.name ?? 'file'}]`,
      at: Date.now(),
      ref,
      status: res.status,
      ...(image ? { image } : {}),
    };
    this.written.push(entry);
    await this.keep('page.written', ref, entry);
    return { status: res.status, ref };
  }

  /** The page's URL of an image Rapport sent: its own /media URL, or the Cloud upload kept here. */
  sentImage(url: string | undefined, cloudId: string | undefined, type?: string): string | undefined {
    if (cloudId) {
      const up = this.emulators.graph.uploadedMedia(cloudId);
      return up && up.mimeType.startsWith('image/')
        ? this.keepFile(up.data, up.mimeType, `cloud-${cloudId}`)
        : undefined;
    }
    if (!url || (type && type !== 'image')) return undefined;
    const parsed = new URL(url, this.config.publicUrl);
    return parsed.pathname.startsWith('/media/') ? `${parsed.pathname}${parsed.search}` : undefined;
  }

  /** The customer(s) Rapport knows for this person (phone and Messenger may still be two), with history. */
  async customersOf(req: Request, person: Person | undefined, customerId: string | undefined) {
    const ids = new Map<string, string[]>();
    if (customerId) ids.set(customerId, ['selected']);
    else if (person) {
      const lookups = [
        ['phone', `phone=${encodeURIComponent(person.phone)}`],
        ['Messenger', `psid=${encodeURIComponent(`${this.secrets.meta.pageId}:${person.psid}`)}`],
      ] as const;
      for (const [via, query] of lookups) {
        const res = await this.admin(req, 'GET', `/customers?${query}`);
        const found = isRecord(res.body) && Array.isArray(res.body.customers) ? res.body.customers : [];
        for (const c of found)
          if (isRecord(c) && typeof c.id === 'string') ids.set(c.id, [...(ids.get(c.id) ?? []), via]);
      }
    }
    const details = await Promise.all(
      [...ids].map(async ([id, via]) => {
        const res = await this.admin(req, 'GET', `/customers/${encodeURIComponent(id)}`);
        return res.status === 200 && isRecord(res.body) ? { ...res.body, via } : undefined;
      }),
    );
    return details.filter((d) => d !== undefined);
  }
}

/** The page's files, Slack's files and the whole state the page polls. */
function mountPageRoutes(api: Router, page: SandboxPage): void {
  api.get('/file/:id', (req, res) => {
    const file = page.pageFiles.get(req.params.id);
    if (!file) throw new PayloadError('no such file');
    res.set('content-type', file.type).send(file.data);
  });

  api.get('/slack-file/:id', (req, res) => {
    const data = page.emulators.slack.fileContent(req.params.id);
    const file = page.emulators.slack
      .messages(String(req.query.channel ?? ''))
      .flatMap((m) => m.files ?? [])
      .find((f) => f.id === req.params.id);
    if (!data) throw new PayloadError('no such file');
    res.set('content-type', file?.mimetype ?? 'application/octet-stream').send(data);
  });

  api.get('/state', async (req, res) => {
    const q = (name: string) =>
      typeof req.query[name] === 'string' ? (req.query[name] as string) : undefined;
    const person = page.people.find((p) => p.id === q('person'));
    const app = appSchema.safeParse(q('app')).data ?? 'sms';
    const customerId = q('customer');
    const [list, customers] = await Promise.all([
      page.agents(req),
      person || customerId ? page.customersOf(req, person, customerId) : Promise.resolve([]),
    ]);
    res.json({
      people: page.people,
      agents: list,
      phone: person ? phoneView(person, app, page, (a) => page.received(person, a)) : null,
      slack: { channels: slackView(page.emulators.slack, list, page.config.slack?.escalationChannel) },
      customers,
    });
  });
}

/** What a customer does: be created, write (with a file), report delivery; and the demo seed. */
function mountCustomerRoutes(api: Router, page: SandboxPage): void {
  api.post('/people', async (req, res) => {
    const body = parse(personBody, req.body);
    const phone = body.phone
      ? normalizePhone(body.phone, page.config.defaultRegion)
      : `+1415555${randomDigits(4)}`;
    if (!phone) throw new PayloadError('phone: not a valid phone number');
    res.status(201).json(await page.addPerson(body.name, phone));
  });

  api.post('/customer/send', async (req, res) => {
    const body = parse(sendBody, req.body);
    res.json(await page.writeAsCustomer(req, page.personOf(body.person), body.app, body.text, body.file));
  });

  api.post('/customer/status', async (req, res) => {
    const body = parse(statusBody, req.body);
    const answer = await page.post(
      req,
      deliveryReport(page.secrets, body.app, page.personOf(body.person), body.ref, body.state),
    );
    if (answer.status < 300) {
      page.reported.set(body.ref, body.state);
      await page.keep('page.reported', body.ref, { ref: body.ref, state: body.state });
    }
    res.json({ status: answer.status });
  });

  api.post('/seed', async (req, res) => {
    const added = { agents: [] as string[], customers: [] as string[] };
    const existing = { agents: [] as string[], customers: [] as string[] };
    for (const agent of SEED_AGENTS) {
      const result = await page.createAgent(req, agent);
      (result.status === 201 ? added : existing).agents.push(agent.name);
    }
    for (const c of SEED_CUSTOMERS) {
      if (page.people.some((p) => p.phone === c.phone)) {
        existing.customers.push(c.name);
        continue;
      }
      await page.writeAsCustomer(req, await page.addPerson(c.name, c.phone), c.app, c.text);
      added.customers.push(c.name);
    }
    page.log.info({ agents: added.agents.length, customers: added.customers.length }, 'sandbox seeded');
    res.json({ added, existing, message: seedSummary(added, existing), people: page.people });
  });
}

/** What an agent does in Slack: be created, reply, press a card's button, edit or delete, run `/rapport`. */
function mountAgentRoutes(api: Router, page: SandboxPage): void {
  api.post('/agents', async (req, res) => {
    const { name } = parse(agentBody, req.body);
    const slug =
      name
        .toUpperCase()
        .replace(/[^A-Z0-9]/g, '')
        .slice(0, 12) || randomDigits(4);
    const result = await page.createAgent(req, {
      name,
      slackUserId: `U0${slug}`,
      inboxChannelId: `C0INBOX${slug}`,
    });
    res.status(result.status).json(result.body);
  });

  api.post('/agent/reply', async (req, res) => {
    const body = parse(fileReplyBody, req.body);
    const who = { user: body.user, text: body.text, ...(body.threadTs ? { threadTs: body.threadTs } : {}) };
    const stored = body.file
      ? page.emulators.slack.uploadAsUser(body.channel, {
          ...who,
          file: {
            name: body.file.name,
            mimetype: body.file.type,
            data: Buffer.from(body.file.data, 'base64'),
          },
        })
      : page.emulators.slack.postAsUser(body.channel, who);
    await page.emulators.slack.persisted();
    const answer = await page.post(
      req,
      slackMessageEvent(page.secrets, {
        channel: body.channel,
        user: body.user,
        text: body.text,
        ts: stored.ts,
        threadTs: body.threadTs,
        ...(stored.files ? { files: stored.files } : {}),
      }),
    );
    res.json({ status: answer.status, ts: stored.ts });
  });

  /** What Rapport answered to a card button through `response_url`, by request id. */
  const answers = new Map<string, (text: string) => void>();
  api.post('/slack-response/:id', (req, res) => {
    const text = isRecord(req.body) && typeof req.body.text === 'string' ? req.body.text : '';
    answers.get(req.params.id)?.(text);
    res.json({ ok: true });
  });

  /** A card's button (Close, Send template) or its "Hand off to…" picker, pressed as the agent. */
  api.post('/agent/action', async (req, res) => {
    const body = parse(actionBody, req.body);
    const id = randomDigits(12);
    const answered = new Promise<string>((resolve) => {
      answers.set(id, resolve);
      setTimeout(() => resolve(''), 5_000).unref();
    });
    const answer = await page.post(
      req,
      blockAction(page.secrets, {
        ...body,
        responseUrl: `${rapportBase(req)}/sandbox/api/slack-response/${id}`,
      }),
    );
    const text = answer.status < 300 ? await answered : '';
    answers.delete(id);
    res.json({ status: answer.status, text });
  });

  /** The agent edits (text given) or deletes their reply, as in Slack: Rapport gets the event. */
  api.post('/agent/change', async (req, res) => {
    const body = parse(changeBody, req.body);
    const wire = (m: EmulatedMessage) => ({
      user: m.user,
      text: m.text,
      ts: m.ts,
      ...(m.thread_ts ? { thread_ts: m.thread_ts } : {}),
    });
    const before = body.text
      ? page.emulators.slack.editAsUser(body.channel, body.ts, body.text)
      : page.emulators.slack.deleteAsUser(body.channel, body.ts);
    if (!before) throw new PayloadError('ts: no agent message with this ts in this channel');
    await page.emulators.slack.persisted();
    const after = body.text ? { ...wire(before), text: body.text } : undefined;
    const answer = await page.post(
      req,
      slackChangeEvent(page.secrets, { channel: body.channel, before: wire(before), after }),
    );
    res.json({ status: answer.status });
  });

  api.post('/agent/command', async (req, res) => {
    const body = parse(replyBody, req.body);
    const list = await page.agents(req);
    const userName = (list.find((a) => a.slackUserId === body.user)?.name ?? body.user).toLowerCase();
    const text = body.text.replace(/^\/rapport\b\s*/, '');
    const answer = await page.post(
      req,
      slashCommand(page.secrets, {
        channel: body.channel,
        user: body.user,
        userName,
        text,
        threadTs: body.threadTs,
      }),
    );
    let reply = answer.text;
    try {
      const json: unknown = JSON.parse(answer.text);
      if (isRecord(json) && typeof json.text === 'string') reply = json.text;
      else if (isRecord(json) && isRecord(json.error)) reply = String(json.error.message);
    } catch {
      // not JSON: show it as it is
    }
    res.json({ status: answer.status, text: reply });
  });
}

function errorHandler(log: Logger): ErrorRequestHandler {
  return (err: unknown, _req, res, _next) => {
    if (isAppError(err)) {
      res.status(err.status).json({ error: { code: err.code, message: err.message } });
      return;
    }
    if (isRecord(err) && typeof err.status === 'number' && err.status >= 400 && err.status < 500) {
      res
        .status(err.status)
        .json({ error: { code: 'invalid_payload', message: String(err.type ?? 'bad request') } });
      return;
    }
    log.warn({ err }, 'sandbox request failed');
    res
      .status(502)
      .json({ error: { code: 'sandbox', message: err instanceof Error ? err.message : String(err) } });
  };
}

export function sandboxRoutes(o: SandboxRoutesOptions): Router {
  const page = new SandboxPage(o);
  const router = Router();
  const asset = (type: string, body: string) => (_req: Request, res: express.Response) => {
    res.set('content-type', type);
    // The page loads nothing from anywhere else.
    res.set('content-security-policy', "default-src 'self'; img-src 'self' data:");
    res.set('cache-control', 'no-store');
    res.send(body);
  };
  router.get('/sandbox', asset('text/html; charset=utf-8', PAGE_HTML));
  router.get('/sandbox/app.js', asset('text/javascript; charset=utf-8', PAGE_JS));
  router.get('/sandbox/app.css', asset('text/css; charset=utf-8', PAGE_CSS));

  const api = Router();
  // Attached files travel as base64 in these two; everything else stays small.
  api.use(['/customer/send', '/agent/reply'], express.json({ limit: '8mb' }));
  api.use(express.json({ limit: '64kb' }));

  mountPageRoutes(api, page);
  mountCustomerRoutes(api, page);
  mountAgentRoutes(api, page);
  api.use(errorHandler(o.log));
  router.use('/sandbox/api', api);
  return router;
}
