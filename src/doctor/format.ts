/** The human-readable view of a DoctorReport: ✓ ok, ! warning, ✗ failure, each failure with a FIX line. */
import type { CheckSection, CheckStatus, DoctorReport } from './types';

export const MARKS: Record<CheckStatus, string> = { ok: '✓', warn: '!', fail: '✗' };

const SECTIONS: { section: CheckSection; heading: string }[] = [
  { section: 'config', heading: 'Configuration' },
  { section: 'services', heading: 'Redis and MongoDB' },
  { section: 'public-url', heading: 'Public URL' },
  { section: 'providers', heading: 'Provider credentials' },
];

export function formatReport(report: DoctorReport): string[] {
  const lines: string[] = ['Rapport doctor', ''];
  const width = Math.max(
    12,
    ...report.checks.map((c) => c.title.length),
    ...report.channels.map((c) => c.channel.length),
  );

  for (const { section, heading } of SECTIONS) {
    const checks = report.checks.filter((c) => c.section === section);
    if (checks.length === 0 && !(section === 'config' && report.channels.length > 0)) continue;
    lines.push(heading);
    for (const c of checks) {
      lines.push(`  ${MARKS[c.status]} ${c.title.padEnd(width)}  ${c.detail}`);
      if (c.fix && c.status !== 'ok') lines.push(`    ${' '.repeat(width + 2)}FIX: ${c.fix}`);
    }
    if (section === 'config') {
      for (const ch of report.channels) {
        lines.push(
          `  ${ch.enabled ? '✓' : '-'} ${ch.channel.padEnd(width)}  ${ch.enabled ? 'enabled' : `disabled: ${ch.reason ?? ''}`}`,
        );
      }
    }
    lines.push('');
  }

  if (report.webhooks.length > 0) {
    lines.push('Webhook URLs to paste');
    for (const p of report.webhooks) {
      lines.push(`  ${p.title} — ${p.where}`);
      const labelWidth = Math.max(...p.urls.map((u) => u.label.length));
      for (const u of p.urls) lines.push(`    ${u.label.padEnd(labelWidth)}  ${u.value}`);
      for (const n of p.notes) lines.push(`    • ${n}`);
    }
    lines.push('');
  }

  const { ok, warn, fail } = report.summary;
  lines.push(
    `${ok} ok, ${warn} warning${warn === 1 ? '' : 's'}, ${fail} failed` +
      (fail > 0
        ? ' — fix the ✗ lines above, then run `rapport doctor` again.'
        : warn > 0
          ? ' — Rapport can run; see the ! lines.'
          : ' — all good.'),
  );
  return lines;
}
