/**
 * The pure parts of src/media: what each channel can carry (the README "Media" table), the signed
 * media URLs, how unnamed files are named and sizes are written, and WhatsApp Web's files (a
 * size-refused file explained, agents' files read from the store).
 */
import { checkMedia } from '../../src/media/limits';
import { signMediaUrl, verifyMediaUrl } from '../../src/media/outbound';
import { defaultFilename, formatBytes } from '../../src/media/inbound';
import { mediaId } from '../../src/media/store';
import { fetchMedia } from '../../src/media/fetch';
import { outboundMediaLoader } from '../../src/channels/whatsapp-web/media';

const MB = 1_000_000;

describe('what each channel can carry', () => {
  it.each([
    ['whatsapp', 'whatsapp-cloud', 'image/jpeg', 4 * MB, true],
    ['whatsapp', 'whatsapp-cloud', 'image/jpeg', 6 * MB, false],
    ['whatsapp', 'whatsapp-cloud', 'application/pdf', 90 * MB, true],
    ['whatsapp', 'twilio', 'application/pdf', 20 * MB, false],
    ['whatsapp', 'whatsapp-cloud', 'image/webp', 400_000, true],
    ['whatsapp', 'whatsapp-cloud', 'audio/ogg', 10 * MB, true],
    ['messenger', 'messenger', 'application/zip', 20 * MB, true],
    ['messenger', 'messenger', 'video/mp4', 30 * MB, false],
    ['sms', 'twilio', 'image/png', 4 * MB, true],
    ['sms', 'twilio', 'application/pdf', 10_000, false],
    ['sms', 'twilio', 'image/png', 6 * MB, false],
  ] as const)('%s via %s: %s of %d bytes → %s', (channel, provider, contentType, bytes, ok) => {
    expect(checkMedia(channel, provider, { contentType, bytes }).ok).toBe(ok);
  });

  it('explains a refusal with the type or the size', () => {
    const pdf = checkMedia('sms', 'twilio', { contentType: 'application/pdf', bytes: 1 });
    expect(pdf).toEqual({
      ok: false,
      why: 'it cannot carry application/pdf files (only image/jpeg, image/png, image/gif)',
    });
    const big = checkMedia('whatsapp', 'whatsapp-cloud', { contentType: 'video/mp4', bytes: 20 * MB });
    expect(big).toEqual({ ok: false, why: 'videos there can be at most 16.0 MB and this one is 20.0 MB' });
  });
});

describe('signed media URLs', () => {
  const o = { publicUrl: 'https://rapport.example', urlSecret: 'k', urlTtlMs: 600_000 };
  const parts = (url: string) => {
    const u = new URL(url);
    return [
      decodeURIComponent(u.pathname.split('/').pop()!),
      u.searchParams.get('exp') ?? undefined,
      u.searchParams.get('sig') ?? undefined,
    ] as const;
  };

  it('verify for their own id until they expire', () => {
    const now = 1_700_000_000_000;
    const [id, exp, sig] = parts(signMediaUrl(o, 'out-abc', now));
    expect(id).toBe('out-abc');
    expect(verifyMediaUrl('k', id, exp, sig, now)).toBe('ok');
    expect(verifyMediaUrl('k', id, exp, sig, now + 601_000)).toBe('expired');
    expect(verifyMediaUrl('k', 'out-abd', exp, sig, now)).toBe('invalid');
    expect(verifyMediaUrl('other', id, exp, sig, now)).toBe('invalid');
    expect(verifyMediaUrl('k', id, String(Number(exp) + 3600), sig, now)).toBe('invalid');
    expect(verifyMediaUrl('k', id, exp, undefined, now)).toBe('invalid');
    expect(verifyMediaUrl('k', id, 'soon', sig, now)).toBe('invalid');
  });
});

describe('naming and sizes', () => {
  it('names unnamed files by kind and type', () => {
    expect(defaultFilename('image/jpeg', 0)).toBe('image-1.jpg');
    expect(defaultFilename('audio/ogg; codecs=opus', 1)).toBe('audio-2.ogg');
    expect(defaultFilename('application/x-unknown', 2)).toBe('file-3');
    expect(defaultFilename(undefined, 0)).toBe('file-1');
  });
  it('writes sizes in decimal units', () => {
    expect(formatBytes(512)).toBe('512 bytes');
    expect(formatBytes(250_000)).toBe('250 KB');
    expect(formatBytes(5_200_000)).toBe('5.2 MB');
  });
  it('derives stable, URL-safe ids per message and position', () => {
    expect(mediaId('in', 'twilio:MM1', 0)).toBe(mediaId('in', 'twilio:MM1', 0));
    expect(mediaId('in', 'twilio:MM1', 0)).not.toBe(mediaId('in', 'twilio:MM1', 1));
    expect(mediaId('out', 'slack:C1:1.2', 0)).toMatch(/^out-[A-Za-z0-9_-]{32}$/);
  });
});

describe('WhatsApp Web files', () => {
  it('a file the session did not download for its size is refused with that reason, else unavailable', async () => {
    const none = { whatsappWeb: async () => undefined };
    const big = fetchMedia(
      'whatsapp-web',
      { kind: 'media', contentType: 'video/mp4', bytes: 20_000_000 },
      none,
    );
    await expect(big).rejects.toMatchObject({ reason: 'refused' });
    await expect(big).rejects.toThrow('does not download files this large');
    const lost = fetchMedia('whatsapp-web', { kind: 'media', contentType: 'application/pdf' }, none);
    await expect(lost).rejects.toMatchObject({ reason: 'unavailable' });
  });

  it('an agent’s file is read from the media store; anything else is fetched from its URL', async () => {
    const urls: string[] = [];
    const load = outboundMediaLoader(
      async (id) =>
        id === 'out-k-0' ? { data: Buffer.from('PDFBYTES'), contentType: 'application/pdf' } : undefined,
      async (url) => {
        urls.push(url);
        return { mimetype: 'image/png', data: 'AAAA' };
      },
    );
    expect(
      await load({
        url: 'https://rapport.example.test/media/out-k-0',
        storedId: 'out-k-0',
        filename: 'a.pdf',
      }),
    ).toEqual({
      mimetype: 'application/pdf',
      data: Buffer.from('PDFBYTES').toString('base64'),
      filename: 'a.pdf',
      filesize: 8,
    });
    expect(urls).toEqual([]);
    await expect(load({ url: 'https://x.test/y', storedId: 'out-gone-0' })).rejects.toThrow('not found');
    await load({ url: 'http://127.0.0.1:1/label.png' });
    expect(urls).toEqual(['http://127.0.0.1:1/label.png']);
  });
});
