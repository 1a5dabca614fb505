/**
 * The `/sandbox` page: plain HTML, CSS and vanilla JS, no framework and nothing loaded from
 * elsewhere (served with `default-src 'self'`). It polls `/sandbox/api/state` every second and
 * re-renders only the parts whose HTML changed, so typing and scrolling are not disturbed.
 *
 * Kept as strings so they ship in dist/ with the compiled code. The script is a String.raw
 * template: it must contain no backtick and no dollar-brace (use \x60 in regexes for a backtick).
 */

export const PAGE_HTML = String.raw`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Rapport sandbox</title>
<link rel="stylesheet" href="/sandbox/app.css">
</head>
<body>
<header>
  <strong>Rapport sandbox</strong>
  <span class="warn">Twilio, Meta and Slack are emulated on this machine: nothing is sent anywhere.</span>
  <button id="seed" type="button">Seed demo data</button>
  <span id="note" role="status"></span>
</header>
<main>
  <section id="phone-side" aria-label="Customer">
    <div class="row">
      <label>Customer <select id="person"></select></label>
      <button id="new-person" type="button">New customer…</button>
    </div>
    <form id="person-form" class="row" hidden>
      <input id="person-name" placeholder="Name" required maxlength="60">
      <input id="person-phone" placeholder="+14155550199 (optional)" maxlength="32">
      <button type="submit">Create</button>
    </form>
    <div id="phone">
      <div id="apps" role="tablist"></div>
      <div id="phone-title"></div>
      <div id="phone-messages"></div>
      <form id="phone-compose">
        <input id="phone-text" placeholder="Write as the customer…" autocomplete="off">
        <input id="phone-file" type="file" title="Attach a file (photo, PDF…)">
        <button type="submit">Send</button>
      </form>
    </div>
    <div id="profile"></div>
  </section>
  <section id="slack" aria-label="Agents' Slack">
    <nav id="sidebar">
      <div class="workspace">Rapport (Slack)</div>
      <div id="channels"></div>
      <form id="agent-form">
        <input id="agent-name" placeholder="New agent name" maxlength="40">
        <button type="submit">Add agent</button>
      </form>
    </nav>
    <div id="slack-main">
      <div id="channel-title"></div>
      <div id="threads"></div>
      <div id="ephemeral" hidden></div>
      <form id="slack-compose">
        <div class="row">
          <label>Acting as <select id="agent"></select></label>
          <span id="compose-target"></span>
        </div>
        <div class="row">
          <input id="slack-text" placeholder="Reply in the thread, or /rapport help" autocomplete="off">
          <input id="slack-file" type="file" title="Attach a file to the reply">
          <button type="submit">Send</button>
        </div>
      </form>
    </div>
  </section>
</main>
<script src="/sandbox/app.js"></script>
</body>
</html>
`;

export const PAGE_CSS = String.raw`
* { box-sizing: border-box; }
[hidden] { display: none !important; }
body { margin: 0; font: 14px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1d1c1d; background: #f4f4f6; }
header { display: flex; gap: 12px; align-items: center; padding: 8px 16px; background: #fff8e1; border-bottom: 1px solid #e6d8a8; }
header .warn { color: #7a5b00; }
#note { color: #555; margin-left: auto; }
#note.error { color: #b00020; }
main { display: grid; grid-template-columns: 420px 1fr; gap: 16px; padding: 16px; height: calc(100vh - 45px); }
button { cursor: pointer; }
.row { display: flex; gap: 8px; align-items: center; margin-bottom: 8px; }
input { padding: 6px 8px; border: 1px solid #bbb; border-radius: 6px; font: inherit; min-width: 0; }
.row input { flex: 1; }
.row select { max-width: 240px; }
#phone-side { overflow-y: auto; overflow-x: hidden; }
#phone { border: 10px solid #222; border-radius: 28px; background: #fff; height: 520px; display: flex; flex-direction: column; overflow: hidden; }
#apps { display: flex; background: #222; }
#apps button { flex: 1; border: 0; padding: 6px 2px; background: #333; color: #ddd; font-size: 12px; }
#apps button.on { background: #fff; color: #000; font-weight: 600; }
#phone-title { padding: 6px 10px; border-bottom: 1px solid #eee; font-weight: 600; font-size: 13px; }
#phone-messages { flex: 1; overflow-y: auto; padding: 10px; display: flex; flex-direction: column; gap: 6px; background: #f7f7f7; }
.bubble { max-width: 85%; padding: 6px 10px; border-radius: 14px; white-space: pre-wrap; word-wrap: break-word; }
.bubble.mine { align-self: flex-end; background: #d9fdd3; }
.bubble.theirs { align-self: flex-start; background: #fff; border: 1px solid #e3e3e3; }
.bubble .meta { display: block; font-size: 11px; color: #777; margin-top: 2px; }
.bubble .acts button { font-size: 11px; margin-right: 4px; padding: 0 6px; border: 1px solid #ccc; border-radius: 8px; background: #fafafa; }
#phone-compose { display: flex; gap: 6px; padding: 8px; border-top: 1px solid #eee; }
#phone-compose input, #slack-compose input { flex: 1; }
.empty { color: #888; font-style: italic; padding: 8px; }
#profile { margin-top: 12px; }
.customer { background: #fff; border: 1px solid #ddd; border-radius: 8px; padding: 10px; margin-bottom: 8px; }
.customer h3 { margin: 0 0 4px; font-size: 15px; }
.customer ul { margin: 4px 0; padding-left: 18px; }
.customer .recent { font-size: 12px; color: #444; }
.banner { background: #eef6ff; border: 1px solid #c6dcf5; border-radius: 8px; padding: 8px; margin-bottom: 8px; }
#slack { display: grid; grid-template-columns: 220px 1fr; border: 1px solid #ccc; border-radius: 8px; overflow: hidden; background: #fff; min-height: 0; }
.card-actions { margin-top: 6px; } .card-actions button, .card-actions select { font-size: 12px; }
.undo { margin-top: 4px; } .undo button { font-size: 12px; padding: 1px 6px; }
/* Narrow windows (from 800 px): the phone and the Slack sidebar give up width to the threads. */
@media (max-width: 1100px) {
  main { grid-template-columns: minmax(280px, 36%) 1fr; gap: 10px; padding: 10px; }
  #slack { grid-template-columns: 140px 1fr; }
}
#sidebar { background: #3f0e40; color: #cfc3cf; display: flex; flex-direction: column; }
.workspace { color: #fff; font-weight: 700; padding: 12px; border-bottom: 1px solid #5d2c5d; }
#channels { flex: 1; overflow-y: auto; padding: 8px 0; }
.chan { display: block; width: 100%; text-align: left; border: 0; background: none; color: inherit; padding: 4px 14px; font: inherit; }
.chan.on { background: #1164a3; color: #fff; }
.chan .n { float: right; opacity: .7; }
#agent-form { padding: 8px; display: flex; flex-direction: column; gap: 4px; }
#slack-main { display: flex; flex-direction: column; min-height: 0; }
#channel-title { padding: 10px 16px; border-bottom: 1px solid #ddd; font-weight: 700; }
#threads { flex: 1; overflow-y: auto; padding: 8px 16px; }
.thread { border: 1px solid #e5e5e5; border-radius: 8px; margin-bottom: 10px; padding: 8px; cursor: pointer; }
.thread.on { border-color: #1164a3; box-shadow: 0 0 0 2px #1164a333; }
.replies { margin-left: 18px; border-left: 3px solid #eee; padding-left: 10px; }
.msg { padding: 4px 0; }
.msg .author { font-weight: 700; }
.msg .app { font-size: 10px; background: #ddd; border-radius: 3px; padding: 0 3px; font-weight: 400; }
.msg.human .author { color: #1164a3; }
.msg .text { white-space: normal; word-wrap: break-word; }
img.inline { display: block; max-width: 220px; max-height: 220px; margin-top: 4px; border-radius: 6px; }
.msg.card .text { background: #fafafa; border-left: 4px solid #611f69; padding: 6px 8px; }
.quote { display: block; border-left: 3px solid #ccc; padding-left: 6px; color: #555; }
.reactions .reaction { display: inline-block; border: 1px solid #d0d7e2; border-radius: 10px; padding: 0 6px; margin-right: 4px; background: #f2f7fd; }
.mention { background: #e8f5fa; color: #1264a3; }
code { background: #f3f3f3; border: 1px solid #e1e1e1; border-radius: 3px; padding: 0 3px; font-size: 12px; }
code.cid { cursor: pointer; text-decoration: underline dotted; }
.hint { font-size: 11px; color: #999; }
#ephemeral { margin: 0 16px 8px; padding: 8px; background: #f8f8f8; border: 1px dashed #aaa; border-radius: 6px; }
#slack-compose { border-top: 1px solid #ddd; padding: 8px 16px; }
#compose-target { color: #666; font-size: 12px; }
`;

export const PAGE_JS = String.raw`(function () {
  'use strict';
  var APPS = [['sms', 'SMS'], ['twilio-whatsapp', 'WhatsApp · Twilio'], ['whatsapp-cloud', 'WhatsApp · Cloud'], ['messenger', 'Messenger']];
  var EMOJI = {
    bust_in_silhouette: '👤', alarm_clock: '⏰', x: '❌', white_check_mark: '✅', eyes: '👀', outbox_tray: '📤',
    memo: '📝', link: '🔗', twisted_rightwards_arrows: '🔀', warning: '⚠️', wave: '👋', hourglass: '⌛',
    hourglass_flowing_sand: '⏳', rotating_light: '🚨', speech_balloon: '💬', heavy_check_mark: '✔️',
    no_entry: '⛔', zzz: '💤', inbox_tray: '📥', lock: '🔒', information_source: 'ℹ️', iphone: '📱',
    arrows_counterclockwise: '🔄', leftwards_arrow_with_hook: '↩️', handshake: '🤝', door: '🚪'
  };
  var ui = { person: '', app: 'sms', channel: '', thread: '', agent: '', customer: '' };
  // What was picked survives a reload (and a Rapport restart): kept in this tab's sessionStorage.
  var UI_KEY = 'rapport-sandbox-ui';
  try { Object.assign(ui, JSON.parse(sessionStorage.getItem(UI_KEY) || '{}')); } catch (e) { /* start fresh */ }
  function keepUi() { try { sessionStorage.setItem(UI_KEY, JSON.stringify(ui)); } catch (e) { /* private mode */ } }
  var state = null;
  var shown = {};

  function $(id) { return document.getElementById(id); }
  function esc(s) {
    return String(s == null ? '' : s).replace(/[&<>"']/g, function (c) {
      return { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c];
    });
  }
  /** The picked file of input \`id\` as { name, type, data (base64) }, or null; clears the input. */
  function pickedFile(id) {
    var input = $(id);
    var f = input.files && input.files[0];
    if (!f) return Promise.resolve(null);
    return new Promise(function (resolve, reject) {
      var reader = new FileReader();
      reader.onload = function () {
        input.value = '';
        resolve({ name: f.name, type: f.type || 'application/octet-stream', data: String(reader.result).split(',')[1] || '' });
      };
      reader.onerror = function () { reject(new Error('could not read the file')); };
      reader.readAsDataURL(f);
    });
  }
  function inlineImage(src) { return src ? '<img class="inline" alt="" src="' + esc(src) + '">' : ''; }
  function note(text, isError) { var n = $('note'); n.textContent = text || ''; n.className = isError ? 'error' : ''; }
  function time(at) { return new Date(at).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' }); }
  /** Sets innerHTML only when it changed; returns whether it did. */
  function put(id, html) {
    if (shown[id] === html) return false;
    shown[id] = html;
    $(id).innerHTML = html;
    return true;
  }
  function api(method, path, body) {
    return fetch('/sandbox/api' + path, {
      method: method,
      headers: body ? { 'content-type': 'application/json' } : {},
      body: body ? JSON.stringify(body) : undefined
    }).then(function (res) {
      return res.json().then(function (json) {
        if (!res.ok) throw new Error((json && json.error && json.error.message) || ('HTTP ' + res.status));
        return json;
      });
    });
  }

  function agentName(slackUserId) {
    var agents = state ? state.agents : [];
    for (var i = 0; i < agents.length; i++) if (agents[i].slackUserId === slackUserId) return agents[i].name;
    return slackUserId;
  }
  function agentById(id) {
    var agents = state ? state.agents : [];
    for (var i = 0; i < agents.length; i++) if (agents[i].id === id) return agents[i];
    return null;
  }
  /** Slack mrkdwn, the parts Rapport writes: *bold*, _italic_, code, quotes, mentions, :emoji:. */
  function md(text) {
    var s = esc(text);
    s = s.replace(/&lt;@([UW][A-Z0-9]+)(?:\|[^&]*)?&gt;/g, function (_, id) { return '<span class="mention">@' + esc(agentName(id)) + '</span>'; });
    s = s.replace(/&lt;(?:https?:[^|&]+)\|([^&]+)&gt;/g, '$1');
    s = s.replace(/\x60([^\x60\n]+)\x60/g, function (_, c) {
      return /^[0-9a-f]{24}$/.test(c) ? '<code class="cid" data-id="' + c + '" title="Show this customer">' + c + '</code>' : '<code>' + c + '</code>';
    });
    s = s.replace(/(^|[\s(>])\*([^*\n]+)\*/g, '$1<b>$2</b>');
    s = s.replace(/(^|[\s(>])_([^_\n]+)_/g, '$1<i>$2</i>');
    s = s.replace(/:([a-z0-9_+-]+):/g, function (m, name) { return EMOJI[name] || m; });
    var lines = s.split('\n');
    return lines.map(function (line, i) {
      if (line.indexOf('&gt; ') === 0) return '<span class="quote">' + line.slice(5) + '</span>';
      return line + (i < lines.length - 1 ? '<br>' : '');
    }).join('');
  }

  function channelOf(id) {
    var channels = state ? state.slack.channels : [];
    for (var i = 0; i < channels.length; i++) if (channels[i].id === id) return channels[i];
    return null;
  }
  function threadOf(channel, ts) {
    if (!channel) return null;
    for (var i = 0; i < channel.threads.length; i++) if (channel.threads[i].ts === ts) return channel.threads[i];
    return null;
  }
  function cardName(thread) {
    var m = /\*([^*]+)\*/.exec(thread.text);
    return m ? m[1] : 'a customer';
  }
  /** Opens the Slack thread whose card is this customer's; false if the page has none yet. */
  function openThreadOf(customerId) {
    var channels = state ? state.slack.channels : [];
    for (var i = 0; i < channels.length; i++) {
      for (var j = 0; j < channels[i].threads.length; j++) {
        var t = channels[i].threads[j];
        if (t.kind === 'rapport_card' && (t.customerId === customerId || t.text.indexOf(customerId) >= 0)) {
          selectThread(channels[i].id, t.ts);
          return true;
        }
      }
    }
    return false;
  }
  /** The card can reach Slack after the page's last poll: look again (fresh state) before giving up. */
  function showThreadOf(customerId, triesLeft) {
    if (openThreadOf(customerId)) return;
    if (triesLeft <= 0) { note('No Slack thread for this customer yet.'); return; }
    setTimeout(function () {
      refresh().then(function () { showThreadOf(customerId, triesLeft - 1); });
    }, 300);
  }
  function selectThread(channelId, ts) {
    ui.channel = channelId;
    ui.thread = ts;
    var channel = channelOf(channelId);
    if (channel && channel.agent) ui.agent = channel.agent;
    render();
    var el = document.querySelector('.thread.on');
    if (el) el.scrollIntoView({ block: 'nearest' });
  }

  function renderPeople() {
    var people = state.people;
    var known = people.some(function (p) { return p.id === ui.person; });
    if ((!ui.person || !known) && people.length > 0) ui.person = people[0].id;
    put('person', people.length === 0 ? '<option value="">(none yet)</option>' : people.map(function (p) {
      return '<option value="' + esc(p.id) + '">' + esc(p.name) + ' · ' + esc(p.phone) + '</option>';
    }).join(''));
    $('person').value = ui.person;
  }

  function renderPhone() {
    var phone = state.phone;
    put('apps', APPS.map(function (a) {
      var n = phone && phone.counts[a[0]] ? ' (' + phone.counts[a[0]] + ')' : '';
      return '<button type="button" role="tab" data-app="' + a[0] + '" class="' + (a[0] === ui.app ? 'on' : '') + '">' + esc(a[1] + n) + '</button>';
    }).join(''));
    if (!phone || phone.app !== ui.app || phone.person.id !== ui.person) {
      put('phone-title', '');
      put('phone-messages', '<div class="empty">' + (state.people.length ? 'Loading…' : 'Create a customer, or seed demo data.') + '</div>');
      return;
    }
    var p = phone.person;
    put('phone-title', esc(p.name) + ' · ' + (ui.app === 'messenger' ? 'Messenger user ' + esc(p.psid) : esc(p.phone)));
    var html = phone.messages.length === 0 ? '<div class="empty">No messages on this app yet. Write below as ' + esc(p.name) + '.</div>'
      : phone.messages.map(function (m) {
        if (m.from === 'customer') {
          return '<div class="bubble mine">' + esc(m.text) + inlineImage(m.image) + '<span class="meta">' + time(m.at) +
            (m.status < 300 ? ' ✓ received by Rapport' : ' ⚠ Rapport answered ' + m.status) + '</span></div>';
        }
        var acts = '<button type="button" data-status="delivered">mark delivered</button>' +
          (ui.app === 'sms' ? '' : '<button type="button" data-status="read">mark read</button>');
        return '<div class="bubble theirs" data-ref="' + esc(m.ref) + '">' + esc(m.text) + inlineImage(m.image) + '<span class="meta">' + time(m.at) +
          (m.state ? ' · reported ' + esc(m.state) : '') + '</span><span class="acts">' + acts + '</span></div>';
      }).join('');
    if (put('phone-messages', html)) $('phone-messages').scrollTop = 1e9;
  }

  /** An identity key as a newcomer reads it: "Phone +1…", "Messenger (Dana)", "Email a@b.c". */
  function handleOf(key) {
    var colon = key.indexOf(':');
    var kind = key.slice(0, colon), rest = key.slice(colon + 1);
    if (kind === 'phone') return 'Phone ' + rest;
    if (kind === 'email') return 'Email ' + rest;
    if (kind === 'psid') {
      var psid = rest.slice(rest.indexOf(':') + 1);
      var people = state ? state.people : [];
      for (var i = 0; i < people.length; i++) if (people[i].psid === psid) return 'Messenger (' + people[i].name + ')';
      return 'Messenger user';
    }
    return key;
  }
  function customerName(c) { return c.displayName || 'an unnamed customer'; }
  function renderCustomer(c) {
    var owner = agentById(c.ownerAgentId);
    var ids = (c.identities || []).map(function (i) {
      return '<li>' + esc(handleOf(i.key)) + ' · ' + (i.verified ? 'verified' : 'unverified') + (i.source ? ' · ' + esc(i.source) : '') + '</li>';
    }).join('');
    var recent = (c.recent || []).slice(0, 8).map(function (m) {
      return '<div>' + (m.direction === 'in' ? '←' : '→') + ' <i>' + esc(m.channel) + '</i> ' + esc((m.text || '[attachment]').slice(0, 80)) +
        (m.status ? ' <b>' + esc(m.status) + '</b>' : '') + '</div>';
    }).join('');
    return '<div class="customer" data-customer="' + esc(c.id) + '"><h3>' + esc(c.displayName || 'Unnamed customer') + '</h3>' +
      (c.via ? '<div>Found by ' + esc(c.via.join(' and ')) + '</div>' : '') +
      '<div>Owner: <b>' + esc(owner ? owner.name : 'unassigned') + '</b> · last channel ' + esc(c.lastChannel || '–') + '</div>' +
      (c.mergedFrom ? '<div>Merged: the customer you picked now lives here</div>' : '') +
      (c.mergedInto ? '<div>Merged into another customer</div>' : '') +
      '<ul>' + ids + '</ul><div class="recent">' + recent + '</div>' +
      '<button type="button" data-thread="' + esc(c.id) + '">Show thread in Slack</button></div>';
  }
  function renderProfile() {
    var customers = state.customers || [];
    var head = '';
    if (ui.customer) head = '<div class="banner">Showing ' + esc(customers.length ? customerName(customers[0]) : 'the customer from the card') + ' <button type="button" data-back>back to the phone’s customer</button></div>';
    else if (customers.length === 2) head = '<div class="banner">Rapport sees <b>two customers</b>: this phone number and this Messenger user are not linked. On Messenger, write “my number is ' + esc(state.phone ? state.phone.person.phone : '') + '” and send back the code that arrives by SMS to merge them.</div>';
    else if (customers.length === 1 && customers[0].via.length === 2) head = '<div class="banner">Phone number and Messenger user are <b>one customer</b> (linked).</div>';
    if (customers.length === 0) {
      put('profile', head + '<div class="empty">' + (ui.person || ui.customer ? 'Rapport does not know this customer yet: write something.' : '') + '</div>');
      return;
    }
    put('profile', head + customers.map(renderCustomer).join(''));
  }

  function renderSlack() {
    var channels = state.slack.channels;
    if (!channelOf(ui.channel)) {
      var busy = channels.filter(function (c) { return c.threads.length > 0; })[0];
      ui.channel = (busy || channels[0] || { id: '' }).id;
    }
    put('channels', channels.map(function (c) {
      return '<button type="button" class="chan' + (c.id === ui.channel ? ' on' : '') + '" data-channel="' + esc(c.id) + '"># ' + esc(c.name) +
        '<span class="n">' + c.threads.length + '</span></button>';
    }).join('') || '<div class="empty">No agents yet</div>');
    var channel = channelOf(ui.channel);
    put('channel-title', channel ? '# ' + esc(channel.name) + (channel.agent ? ' <small>(' + esc(agentName(channel.agent)) + '’s inbox)</small>' : '') : '');
    function msg(m, card) {
      return '<div class="msg ' + (m.bot ? 'bot' : 'human') + (card && m.kind === 'rapport_card' ? ' card' : '') + '">' +
        '<div class="author">' + esc(m.author) + (m.bot ? ' <span class="app">APP</span>' : '') + '</div>' +
        '<div class="text">' + md(m.text) + '</div>' +
        (m.files || []).map(function (f) {
          return f.image ? inlineImage(f.src) : '<div>📎 <a href="' + esc(f.src) + '" target="_blank" rel="noopener">' + esc(f.name) + '</a></div>';
        }).join('') +
        (m.reactions.length ? '<div class="reactions">' + m.reactions.map(function (r) {
          return '<span class="reaction" title=":' + esc(r) + ':">' + esc(EMOJI[r] || '') + ' <small>' + esc(r.replace(/_/g, ' ')) + '</small></span>';
        }).join('') + '</div>' : '') + undoButtons(m) + (card ? cardButtons(m) : '') + '</div>';
    }
    /** The card's actions, as Slack shows them: hand off to an agent, send a template, close. */
    function cardButtons(m) {
      if (m.kind !== 'rapport_card' || !m.customerId) return '';
      var others = state.agents.map(function (a) {
        return '<option value="' + esc(a.slackUserId) + '">' + esc(a.name) + '</option>';
      }).join('');
      return '<div class="card-actions" data-card="' + esc(m.ts) + '" data-customer="' + esc(m.customerId) + '">' +
        '<select data-action="rapport_handoff"><option value="">Hand off to…</option>' + others + '</select> ' +
        '<button type="button" data-action="rapport_template">Send template</button> ' +
        '<button type="button" data-action="rapport_close">Close</button></div>';
    }
    /** Edit and delete, as in Slack, while the reply waits out the undo window (⏳). */
    function undoButtons(m) {
      if (m.bot || m.reactions.indexOf('hourglass_flowing_sand') < 0) return '';
      return '<div class="undo"><button type="button" data-edit="' + esc(m.ts) + '">Edit</button> ' +
        '<button type="button" data-delete="' + esc(m.ts) + '">Delete</button> <small>before it is sent</small></div>';
    }
    put('threads', !channel || channel.threads.length === 0 ? '<div class="empty">No threads in this channel yet.</div>'
      : channel.threads.map(function (t) {
        return '<div class="thread' + (t.ts === ui.thread ? ' on' : '') + '" data-ts="' + esc(t.ts) + '">' + msg(t, true) +
          '<div class="replies">' + t.replies.map(function (r) { return msg(r, false); }).join('') + '</div>' +
          '<div class="hint">' + t.replies.length + (t.replies.length === 1 ? ' reply' : ' replies') + (t.ts === ui.thread ? ' · selected: your reply goes here' : ' · click to reply here') + '</div></div>';
      }).join(''));
    var agents = state.agents;
    if (!ui.agent && agents.length > 0) ui.agent = agents[0].slackUserId;
    put('agent', agents.length === 0 ? '<option value="">(add an agent)</option>' : agents.map(function (a) {
      return '<option value="' + esc(a.slackUserId) + '">' + esc(a.name) + (a.status !== 'available' ? ' (' + esc(a.status) + ')' : '') + '</option>';
    }).join(''));
    $('agent').value = ui.agent;
    var thread = threadOf(channel, ui.thread);
    put('compose-target', thread ? 'replying in the thread of ' + esc(cardName(thread)) : 'no thread selected: click one to reply, or run /rapport commands');
  }

  function render() {
    keepUi();
    if (!state) return;
    renderPeople();
    renderPhone();
    renderProfile();
    renderSlack();
  }

  var polling = false;
  var again = false;
  /** Called once the next poll to start has answered (or failed). */
  var waiting = [];
  /** Polls the state now (or right after the poll under way); resolves once the page has it. */
  function refresh() {
    return new Promise(function (resolve) {
      waiting.push(resolve);
      if (polling) { again = true; return; }
      poll();
    });
  }
  function poll() {
    polling = true;
    var done = waiting.splice(0);
    var q = '?person=' + encodeURIComponent(ui.person) + '&app=' + encodeURIComponent(ui.app) +
      (ui.customer ? '&customer=' + encodeURIComponent(ui.customer) : '');
    api('GET', '/state' + q).then(function (s) {
      state = s;
      var hadPerson = ui.person;
      render();
      if (!hadPerson && ui.person) again = true;
      if ($('note').className === 'error' && /Rapport/.test($('note').textContent)) note('');
    }, function (err) {
      note('Cannot reach Rapport: ' + err.message, true);
    }).then(function () {
      polling = false;
      done.forEach(function (resolve) { resolve(); });
      if (again || waiting.length) { again = false; poll(); }
    });
  }

  $('seed').addEventListener('click', function () {
    $('seed').disabled = true;
    note('Seeding agents and customers…');
    api('POST', '/seed').then(function (r) {
      note(r.message);
    }, function (err) { note('Seeding failed: ' + err.message, true); }).then(function () {
      $('seed').disabled = false;
      refresh();
    });
  });
  $('person').addEventListener('change', function () { ui.person = this.value; ui.customer = ''; refresh(); });
  $('new-person').addEventListener('click', function () { $('person-form').hidden = !$('person-form').hidden; $('person-name').focus(); });
  $('person-form').addEventListener('submit', function (e) {
    e.preventDefault();
    api('POST', '/people', { name: $('person-name').value, phone: $('person-phone').value || undefined }).then(function (p) {
      ui.person = p.id;
      ui.customer = '';
      $('person-form').hidden = true;
      $('person-name').value = '';
      $('person-phone').value = '';
      note('Customer ' + p.name + ' (' + p.phone + ') is ready: pick an app and write.');
      refresh();
    }, function (err) { note(err.message, true); });
  });
  $('apps').addEventListener('click', function (e) {
    var b = e.target.closest('button[data-app]');
    if (!b) return;
    ui.app = b.getAttribute('data-app');
    render();
    refresh();
  });
  $('phone-compose').addEventListener('submit', function (e) {
    e.preventDefault();
    var input = $('phone-text');
    var text = input.value.trim();
    if (!text && !($('phone-file').files || []).length) return;
    if (!ui.person) { note('Create or pick a customer first.', true); return; }
    input.value = '';
    pickedFile('phone-file').then(function (file) {
      return api('POST', '/customer/send', file ? { person: ui.person, app: ui.app, text: text, file: file } : { person: ui.person, app: ui.app, text: text });
    }).then(function (r) {
      if (r.status >= 300) note('Rapport answered the webhook with ' + r.status, true);
      refresh();
    }, function (err) { note(err.message, true); });
  });
  $('phone-messages').addEventListener('click', function (e) {
    var b = e.target.closest('button[data-status]');
    if (!b) return;
    var ref = b.closest('[data-ref]').getAttribute('data-ref');
    api('POST', '/customer/status', { person: ui.person, app: ui.app, ref: ref, state: b.getAttribute('data-status') }).then(function (r) {
      note(r.status < 300 ? 'Status callback sent.' : 'Rapport answered the status callback with ' + r.status, r.status >= 300);
      refresh();
    }, function (err) { note(err.message, true); });
  });
  $('profile').addEventListener('click', function (e) {
    var t = e.target.closest('button[data-thread]');
    if (t) showThreadOf(t.getAttribute('data-thread'), 5);
    if (e.target.closest('button[data-back]')) { ui.customer = ''; refresh(); }
  });
  $('channels').addEventListener('click', function (e) {
    var b = e.target.closest('button[data-channel]');
    if (!b) return;
    ui.channel = b.getAttribute('data-channel');
    ui.thread = '';
    var channel = channelOf(ui.channel);
    if (channel && channel.agent) ui.agent = channel.agent;
    render();
  });
  function cardAction(el, selectedUser) {
    var box = el.closest('.card-actions');
    if (!ui.agent) { note('Pick who you are first (the agent menu).', true); return; }
    var body = { user: ui.agent, channel: ui.channel, cardTs: box.getAttribute('data-card'),
      actionId: el.getAttribute('data-action'), value: box.getAttribute('data-customer'), selectedUser: selectedUser };
    api('POST', '/agent/action', body).then(function (r) {
      var out = $('ephemeral');
      out.hidden = false;
      out.innerHTML = '<b>Only visible to you</b> · <i>' + esc(el.textContent || 'Hand off') + '</i><br>' +
        md(r.text || (r.status < 300 ? 'Done.' : 'Rapport answered ' + r.status)) + ' <button type="button" id="dismiss">dismiss</button>';
      refresh();
    }, function (err) { note(err.message, true); });
  }
  $('threads').addEventListener('change', function (e) {
    var pick = e.target.closest('select[data-action]');
    if (pick && pick.value) cardAction(pick, pick.value);
  });
  $('threads').addEventListener('click', function (e) {
    var action = e.target.closest('button[data-action]');
    if (action) { cardAction(action); return; }
    if (e.target.closest('select[data-action]')) return;
    var edit = e.target.closest('button[data-edit]');
    var del = e.target.closest('button[data-delete]');
    if (edit || del) {
      var ts = (edit || del).getAttribute(edit ? 'data-edit' : 'data-delete');
      var text = edit ? window.prompt('Edit your reply (it is sent after the undo delay):') : undefined;
      if (edit && !text) return;
      api('POST', '/agent/change', { channel: ui.channel, ts: ts, text: text || undefined }).then(function () {
        note(edit ? 'Edited: the customer gets the new text.' : 'Deleted: it will not be sent.');
        refresh();
      }, function (err) { note(err.message, true); });
      return;
    }
    var cid = e.target.closest('code.cid');
    if (cid) { ui.customer = cid.getAttribute('data-id'); refresh(); return; }
    var t = e.target.closest('.thread');
    if (t) selectThread(ui.channel, t.getAttribute('data-ts'));
  });
  $('agent').addEventListener('change', function () { ui.agent = this.value; });
  $('slack-compose').addEventListener('submit', function (e) {
    e.preventDefault();
    var input = $('slack-text');
    var text = input.value.trim();
    var hasFile = ($('slack-file').files || []).length > 0;
    if (!text && !hasFile) return;
    if (!ui.agent) { note('Add an agent first (or seed demo data).', true); return; }
    if (!ui.channel) { note('Pick a channel first.', true); return; }
    var body = { user: ui.agent, channel: ui.channel, threadTs: ui.thread || undefined, text: text };
    if (text.charAt(0) === '/' && !hasFile) {
      input.value = '';
      api('POST', '/agent/command', body).then(function (r) {
        var box = $('ephemeral');
        box.hidden = false;
        box.innerHTML = '<b>Only visible to you</b> · <i>' + esc(text) + '</i><br>' + md(r.text) + ' <button type="button" id="dismiss">dismiss</button>';
        refresh();
      }, function (err) { note(err.message, true); });
      return;
    }
    if (!ui.thread) { note('Click a customer thread to reply in it.', true); return; }
    input.value = '';
    pickedFile('slack-file').then(function (file) {
      if (file) body.file = file;
      return api('POST', '/agent/reply', body);
    }).then(function (r) {
      if (r.status >= 300) note('Rapport answered the Slack event with ' + r.status, true);
      refresh();
    }, function (err) { note(err.message, true); });
  });
  $('ephemeral').addEventListener('click', function (e) {
    if (e.target.id === 'dismiss') { $('ephemeral').hidden = true; }
  });
  $('agent-form').addEventListener('submit', function (e) {
    e.preventDefault();
    var name = $('agent-name').value.trim();
    if (!name) return;
    api('POST', '/agents', { name: name }).then(function () {
      $('agent-name').value = '';
      note('Agent ' + name + ' added.');
      refresh();
    }, function (err) { note(err.message, true); });
  });

  refresh();
  setInterval(refresh, 1000);
})();
`;
