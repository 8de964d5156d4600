// srs web page: search, review and share recordings (docs/web.md).
// Plain JavaScript, no framework, no build step, nothing loaded from
// elsewhere. Every piece of data comes from the JSON API (/api/v1), with
// the access rights of the signed-in token. The API token is sent once to
// /api/v1/login and never kept: the browser holds an HttpOnly session
// cookie, and this script only the session's CSRF token (in memory).
'use strict';
(() => {
  const S = {
    me: null, // GET /api/v1/me
    csrf: null, // sent with every change
    view: 0, // bumped on each navigation: late answers of an old view are dropped
    liveTimer: null,
  };

  // ---------- small helpers ----------
  const $ = (sel, root = document) => root.querySelector(sel);

  // el('a', {href: '/', class: 'x', text: 'Hi', onclick: fn}, child...)
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === 'text') e.textContent = v;
      else if (k === 'class') e.className = v;
      else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
      else if (k === 'dataset') Object.assign(e.dataset, v);
      else e.setAttribute(k, v === true ? '' : String(v));
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return e;
  }

  const pad = (n, w = 2) => String(n).padStart(w, '0');

  // Local date and time, e.g. 2026-11-23 10:42:59.
  function fmtTime(iso) {
    const d = new Date(iso);
    if (Number.isNaN(d.getTime())) return iso || '';
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  }

  // 1:02:03 or 2:03.
  function fmtDur(ms) {
    const s = Math.round((ms || 0) / 1000);
    const h = Math.floor(s / 3600);
    const m = Math.floor((s % 3600) / 60);
    return h > 0 ? `${h}:${pad(m)}:${pad(s % 60)}` : `${m}:${pad(s % 60)}`;
  }

  // An offset in the call, to the tenth: 0:03.2.
  function fmtAt(ms) {
    const neg = ms < 0;
    const t = Math.abs(ms) / 1000;
    const m = Math.floor(t / 60);
    const s = t - m * 60;
    return `${neg ? '-' : ''}${m}:${s < 10 ? '0' : ''}${s.toFixed(1)}`;
  }

  function fmtBytes(n) {
    if (n >= 1 << 20) return `${(n / (1 << 20)).toFixed(1)} MiB`;
    if (n >= 1 << 10) return `${(n / (1 << 10)).toFixed(0)} KiB`;
    return `${n} B`;
  }

  function who(p) {
    if (!p) return '';
    if (p.name && p.aor) return `${p.name} <${p.aor}>`;
    return p.name || p.aor || p.id || '';
  }

  // ---------- the API ----------
  // A legal hold (issue 15) is the recording's `hold` object.
  const isHeld = (rec) => !!(rec && rec.hold);

  async function api(path, opts = {}) {
    const method = opts.method || 'GET';
    const headers = { Accept: 'application/json' };
    if (opts.body !== undefined) headers['Content-Type'] = 'application/json';
    if (method !== 'GET' && method !== 'HEAD' && S.csrf) headers['X-CSRF-Token'] = S.csrf;
    let resp;
    try {
      resp = await fetch(path, {
        method,
        headers,
        credentials: 'same-origin',
        cache: 'no-store',
        body: opts.body !== undefined ? JSON.stringify(opts.body) : undefined,
      });
    } catch (e) {
      return { status: 0, data: null, error: `the server cannot be reached (${e.message})` };
    }
    let data = null;
    const text = await resp.text();
    if (text) {
      try { data = JSON.parse(text); } catch (_) { data = null; }
    }
    const error = resp.ok ? null : (data && data.error) || `${resp.status} ${resp.statusText}`;
    if (resp.status === 401 && !opts.noSignin && S.me && S.me.access_control) {
      showSignin('Your session has ended: sign in again.');
    }
    return { status: resp.status, data, error };
  }

  // A change the server does not offer (yet): no route (404 "no such
  // endpoint") or no such method (405).
  const unsupported = (r) => r.status === 405 || r.status === 501
    || (r.status === 404 && /no such endpoint/i.test(r.error || ''));

  const fileUrl = (id, name) => `/api/v1/recordings/${encodeURIComponent(id)}/files/${encodeURIComponent(name)}`;

  // ---------- start, sign-in, header ----------
  async function boot() {
    window.addEventListener('popstate', () => route());
    document.addEventListener('click', onLinkClick);
    const r = await api('/api/v1/me', { noSignin: true });
    if (r.status === 401) return showSignin();
    if (!r.data) return fatal(r.error);
    setMe(r.data);
    route();
  }

  function setMe(me) {
    S.me = me;
    S.csrf = (me && me.csrf) || null;
    renderWho();
  }

  function renderWho() {
    const box = $('#who');
    box.replaceChildren();
    const me = S.me;
    if (!me) return;
    if (!me.access_control) {
      box.append(el('span', { class: 'note', text: 'Open access: no API token exists' }));
      return;
    }
    box.append(el('span', { id: 'whoami' }, 'Signed in as ', el('strong', { text: me.actor }),
      ` (${me.role}${me.scopes && me.scopes.length ? `; ${me.scopes.join(', ')}` : ''})`));
    if (me.signed_in) {
      box.append(el('button', { type: 'button', class: 'secondary', id: 'signout', onclick: signOut }, 'Sign out'));
    }
  }

  async function signOut() {
    await api('/api/v1/logout', { method: 'POST', noSignin: true });
    showSignin('You are signed out.');
  }

  function fatal(message) {
    const main = $('#main');
    main.replaceChildren(el('h1', { text: 'The page cannot start' }), el('p', { class: 'error', role: 'alert', text: message || 'unknown error' }));
  }

  function showSignin(message) {
    S.view += 1;
    stopLive();
    S.me = null;
    S.csrf = null;
    renderWho();
    document.title = 'Sign in · srs';
    const main = $('#main');
    const msg = el('p', { class: 'message error', id: 'signin-message', role: 'alert' }, message || '');
    const input = el('input', {
      id: 'token', name: 'token', type: 'password', autocomplete: 'off', spellcheck: 'false',
      required: true, 'aria-describedby': 'token-help',
    });
    const form = el('form', { id: 'signin', 'aria-labelledby': 'signin-title' },
      el('div', {},
        el('label', { for: 'token', text: 'API token' }),
        input,
        el('p', { class: 'note', id: 'token-help', text: 'The token your administrator gave you (srs_…). It is sent once and exchanged for a session cookie; this page does not keep it.' })),
      el('div', {}, el('button', { type: 'submit', id: 'signin-submit' }, 'Sign in')),
      msg);
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const token = input.value.trim();
      input.value = '';
      if (!token) return;
      msg.textContent = 'Signing in…';
      const r = await api('/api/v1/login', { method: 'POST', body: { token }, noSignin: true });
      if (r.status === 200 && r.data) {
        setMe(r.data);
        route();
      } else {
        msg.textContent = r.status === 401 ? 'Unknown or revoked token.' : `Sign-in refused: ${r.error}`;
        input.focus();
      }
    });
    main.replaceChildren(el('section', { class: 'signin' }, el('h1', { id: 'signin-title', text: 'Sign in' }), form));
    main.dataset.view = 'signin';
    input.focus();
  }

  // ---------- navigation ----------
  // Links inside the page change the URL and the view without a reload.
  function onLinkClick(ev) {
    const a = ev.target.closest && ev.target.closest('a[href]');
    if (!a || a.target || a.hasAttribute('download') || ev.defaultPrevented) return;
    if (ev.button !== 0 || ev.metaKey || ev.ctrlKey || ev.shiftKey || ev.altKey) return;
    const url = new URL(a.href, location.href);
    if (url.origin !== location.origin || url.pathname.startsWith('/api/')) return;
    if (!S.me) return;
    ev.preventDefault();
    history.pushState(null, '', url.pathname + url.search);
    route();
  }

  function go(path) {
    history.pushState(null, '', path);
    route();
  }

  function stopLive() {
    if (S.liveTimer) clearTimeout(S.liveTimer);
    S.liveTimer = null;
  }

  function route() {
    S.view += 1;
    stopLive();
    if (!S.me) return showSignin();
    const p = location.pathname;
    const section = p === '/live' ? 'live' : (p === '/' ? 'search' : '');
    for (const a of document.querySelectorAll('[data-nav]')) {
      if (a.dataset.nav === section) a.setAttribute('aria-current', 'page');
      else a.removeAttribute('aria-current');
    }
    const main = $('#main');
    delete main.dataset.state;
    if (p === '/') return searchView(main);
    if (p === '/live') return liveView(main);
    const m = p.match(/^\/recordings\/([^/]+)$/);
    if (m) return recordingView(main, decodeURIComponent(m[1]));
    main.replaceChildren(el('h1', { text: 'No such page' }), el('p', {}, el('a', { href: '/' }, 'Search recordings')));
    return undefined;
  }

  // ---------- search ----------
  const FIELDS = [
    ['dn', 'DN (any party, any time)'],
    ['record_dn', 'Record DN'],
    ['participant', 'Participant (address or name contains)'],
    ['call_uuid', 'CallUUID'],
    ['ani', 'ANI (caller number)'],
    ['dnis', 'DNIS (dialled number)'],
    ['geo', 'Geo-location'],
    ['since', 'From (YYYY-MM-DD or RFC 3339)'],
    ['until', 'To (YYYY-MM-DD or RFC 3339)'],
  ];
  const STATUSES = ['', 'complete', 'complete-no-ack', 'complete-session-expired', 'recovered', 'truncated'];
  const LIMITS = ['25', '50', '100', '200', '500'];
  const DEFAULT_LIMIT = '100';

  function searchView(main) {
    document.title = 'Search recordings · srs';
    main.dataset.view = 'search';
    const inputs = {};
    const fields = FIELDS.map(([name, label]) => {
      inputs[name] = el('input', { id: `f-${name}`, name, type: 'text', autocomplete: 'off', spellcheck: 'false' });
      return el('div', {}, el('label', { for: `f-${name}`, text: label }), inputs[name]);
    });
    inputs.status = el('select', { id: 'f-status', name: 'status' },
      STATUSES.map((s) => el('option', { value: s, text: s || 'any' })));
    inputs.attached = el('input', {
      id: 'f-attached', name: 'attached', type: 'text', autocomplete: 'off', spellcheck: 'false',
      placeholder: 'KEY=VALUE; KEY=VALUE', 'aria-describedby': 'f-attached-help',
    });
    inputs.limit = el('select', { id: 'f-limit', name: 'limit' }, LIMITS.map((s) => el('option', { value: s, text: s })));
    const form = el('form', { id: 'search', role: 'search', 'aria-label': 'Search recordings' },
      el('fieldset', { class: 'filters' },
        el('legend', { text: 'Filters' }),
        fields,
        el('div', {}, el('label', { for: 'f-status', text: 'Status' }), inputs.status),
        el('div', {}, el('label', { for: 'f-attached', text: 'Attached data (call events)' }), inputs.attached,
          el('span', { id: 'f-attached-help', class: 'sr-only', text: 'Exact KEY=VALUE pairs, separated by semicolons' })),
        el('div', {}, el('label', { for: 'f-limit', text: 'Per page' }), inputs.limit)),
      el('div', { class: 'form-actions' },
        el('button', { type: 'submit', id: 'search-submit' }, 'Search'),
        el('button', { type: 'button', class: 'secondary', id: 'search-clear', onclick: () => go('/') }, 'Clear')));
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      const q = new URLSearchParams();
      for (const [name] of FIELDS) {
        const v = inputs[name].value.trim();
        if (v) q.set(name, v);
      }
      if (inputs.status.value) q.set('status', inputs.status.value);
      for (const pair of inputs.attached.value.split(';')) {
        const i = pair.indexOf('=');
        if (i > 0) q.append(`attached.${pair.slice(0, i).trim()}`, pair.slice(i + 1).trim());
      }
      if (inputs.limit.value !== DEFAULT_LIMIT) q.set('limit', inputs.limit.value);
      const qs = q.toString();
      go(qs ? `/?${qs}` : '/');
    });

    const flash = sessionStorage.getItem('srs.flash');
    sessionStorage.removeItem('srs.flash');
    const status = el('p', { id: 'search-status', class: 'status', role: 'status', 'aria-live': 'polite' }, flash || 'Searching…');
    const tbody = el('tbody');
    const table = el('table', { id: 'results', dataset: { state: 'loading' } },
      el('caption', { text: 'Recordings, newest first' }),
      el('thead', {}, el('tr', {},
        el('th', { scope: 'col', text: 'Started' }),
        el('th', { scope: 'col', class: 'num', text: 'Duration' }),
        el('th', { scope: 'col', text: 'Record DN' }),
        el('th', { scope: 'col', text: 'Participants' }),
        el('th', { scope: 'col', text: 'Geo' }),
        el('th', { scope: 'col', text: 'Direction' }),
        el('th', { scope: 'col', text: 'Status' }))),
      tbody);
    const prev = el('button', { type: 'button', class: 'secondary', id: 'page-prev', disabled: true }, '← Newer');
    const next = el('button', { type: 'button', class: 'secondary', id: 'page-next', disabled: true }, 'Older →');
    const where = el('span', { id: 'page-where' });
    main.replaceChildren(
      el('h1', { text: 'Recordings' }),
      form,
      status,
      el('div', { class: 'table-wrap results' }, table),
      el('nav', { class: 'pager', 'aria-label': 'Result pages' }, prev, where, next));

    // The URL is the search: fill the form from it, then ask the API the
    // same parameters.
    const params = new URLSearchParams(location.search);
    for (const [name] of FIELDS) inputs[name].value = params.get(name) || '';
    inputs.status.value = params.get('status') || '';
    inputs.limit.value = LIMITS.includes(params.get('limit')) ? params.get('limit') : DEFAULT_LIMIT;
    inputs.attached.value = [...params.entries()]
      .filter(([k]) => k.startsWith('attached.'))
      .map(([k, v]) => `${k.slice(9)}=${v}`).join('; ');
    sessionStorage.setItem('srs.search', location.search);
    runSearch({ params, status, table, tbody, prev, next, where, flash });
  }

  async function runSearch(v) {
    const gen = S.view;
    const qs = v.params.toString();
    const r = await api(`/api/v1/recordings${qs ? `?${qs}` : ''}`);
    if (gen !== S.view) return;
    if (!r.data || r.status !== 200) {
      let msg = r.error;
      if (/attached\./.test(msg || '') && r.status === 400) msg = `This server does not search attached data (${msg}).`;
      v.status.textContent = `Search failed: ${msg}`;
      v.status.classList.add('error');
      v.table.dataset.state = 'error';
      return;
    }
    const d = r.data;
    const t0 = performance.now();
    const frag = document.createDocumentFragment();
    for (const rec of d.recordings) frag.append(resultRow(rec));
    v.tbody.replaceChildren(frag);
    void v.table.offsetHeight; // layout included in the measure
    const ms = performance.now() - t0;
    v.table.dataset.renderMs = ms.toFixed(1);
    v.table.dataset.count = String(d.recordings.length);
    v.table.dataset.state = 'done';
    const n = d.recordings.length;
    const from = d.offset + 1;
    const to = d.offset + n;
    const prefix = v.flash ? `${v.flash} ` : '';
    v.status.textContent = prefix + (d.total === 0 ? 'No recording matches.'
      : `${d.total} recording${d.total === 1 ? '' : 's'} match; ${from}–${to} shown.`);
    v.where.textContent = d.total ? `${from}–${to} of ${d.total}` : '';
    const limit = d.limit;
    const nextOffset = d.next_offset !== undefined ? d.next_offset : d.offset + n;
    const page = (offset) => {
      const q = new URLSearchParams(location.search);
      if (offset > 0) q.set('offset', String(offset)); else q.delete('offset');
      const s = q.toString();
      go(s ? `/?${s}` : '/');
    };
    v.prev.disabled = d.offset === 0;
    v.prev.onclick = () => page(Math.max(0, d.offset - limit));
    v.next.disabled = nextOffset >= d.total;
    v.next.onclick = () => page(nextOffset);
  }

  function resultRow(rec) {
    const parts = rec.participants || [];
    const names = parts.slice(0, 4).map(who).join(', ') + (parts.length > 4 ? ` +${parts.length - 4}` : '');
    return el('tr', { dataset: { id: rec.recording_id } },
      el('td', {}, el('a', { href: `/recordings/${encodeURIComponent(rec.recording_id)}`, title: `${rec.started_at} (UTC); Call-ID ${rec.call_id}` }, fmtTime(rec.started_at))),
      el('td', { class: 'num', text: fmtDur(rec.duration_ms) }),
      el('td', { text: rec.record_dn || '' }),
      el('td', { text: names }),
      el('td', { text: rec.geo_location || '' }),
      el('td', { text: rec.direction || '' }),
      el('td', {}, el('span', { class: rec.status === 'complete' ? 'badge' : 'badge warn', text: rec.status }),
        isHeld(rec) ? el('span', { class: 'badge held', text: 'held' }) : null));
  }

  // ---------- recording ----------
  async function recordingView(main, id) {
    const gen = S.view;
    document.title = `Recording ${id} · srs`;
    main.dataset.view = 'recording';
    main.dataset.state = 'loading';
    main.replaceChildren(el('p', { class: 'loading', role: 'status', text: 'Loading the recording…' }));
    const r = await api(`/api/v1/recordings/${encodeURIComponent(id)}`);
    if (gen !== S.view) return;
    if (r.status === 404) {
      main.dataset.state = 'not-found';
      main.replaceChildren(
        el('h1', { text: 'No such recording' }),
        el('p', {}, 'There is no recording ', el('code', { text: id }), ', or it is not one your token may see.'),
        el('p', {}, el('a', { href: `/${sessionStorage.getItem('srs.search') || ''}` }, '← Back to the search')));
      return;
    }
    if (!r.data || r.status !== 200) {
      main.dataset.state = 'error';
      main.replaceChildren(el('h1', { text: 'Recording' }), el('p', { class: 'error', role: 'alert', text: r.error }));
      return;
    }
    renderRecording(main, r.data, gen);
    main.dataset.state = 'done';
  }

  function renderRecording(main, rec, gen) {
    const rights = (S.me && S.me.rights) || {};
    const id = rec.recording_id;
    const files = rec.files || [];
    const parts = rec.participants || [];
    const streams = rec.streams || [];
    const started = Date.parse(rec.started_at);
    const offset = (at) => Date.parse(at) - started;
    const D = Math.max(1, rec.duration_ms || 0, ...files.map((f) => f.duration_ms || 0));
    const pct = (ms) => `${(100 * Math.min(Math.max(ms, 0), D)) / D}%`;
    const byId = Object.fromEntries(parts.map((p) => [p.id, p]));
    const senderOf = (label) => {
      const s = streams.find((x) => x.label === label);
      return (s && s.participant_id && byId[s.participant_id]) || parts.find((p) => (p.labels || []).includes(label));
    };

    // Players: one per participant's file, the stereo file, and any other
    // mono WAV (a stream nobody was named for).
    const players = [];
    const used = new Set();
    for (const p of parts) {
      const f = p.file && files.find((x) => x.name === p.file);
      if (f) { players.push({ file: f, caption: who(p) }); used.add(f.name); }
    }
    for (const f of files) {
      if (used.has(f.name)) continue;
      if (f.format === 'stereo-wav') {
        const sides = (f.labels || []).map((l) => who(senderOf(l)) || `stream ${l}`);
        players.push({ file: f, caption: `Both parties (stereo${sides.length === 2 ? `: left ${sides[0]}, right ${sides[1]}` : ''})` });
        used.add(f.name);
      } else if (f.format === 'wav') {
        players.push({ file: f, caption: `Stream ${(f.labels || []).join(', ')}` });
        used.add(f.name);
      }
    }
    const audios = [];
    const status = el('p', { class: 'status', id: 'play-status', role: 'status', 'aria-live': 'polite' });
    let listen;
    if (!rights.download) {
      listen = el('p', { class: 'note', id: 'no-audio' },
        `Your role (${S.me.role || 'none'}) may look at recordings but not listen to them: no audio is loaded. A listener token is needed to play or download.`);
    } else if (!players.length) {
      listen = el('p', { class: 'note', text: 'This recording has no audio file.' });
    } else {
      listen = el('div', { class: 'players' }, players.map(({ file, caption }) => {
        const audio = el('audio', {
          controls: true, preload: 'metadata', src: fileUrl(id, file.name),
          'aria-label': `Play ${caption}`, dataset: { file: file.name },
        });
        audios.push(audio);
        return el('figure', {},
          el('figcaption', {}, el('strong', { text: caption }), ' ', el('code', { text: file.name })),
          audio,
          el('div', { class: 'dl' }, el('a', { href: fileUrl(id, file.name), download: file.name, class: 'download' }, `Download ${file.name}`)));
      }));
    }

    // Timeline items: pauses as spans (paused → resumed, per stream),
    // everything else as a point.
    const items = [];
    const open = {};
    const names = {
      'participant-joined': ['+', 'joined', 'participant'],
      'participant-left': ['−', 'left', 'participant'],
      'codec-changed': ['C', 'codec changed', ''],
      'stream-added': ['S', 'stream added', ''],
      'metadata-update': ['M', 'metadata update', ''],
      'session-refreshed': ['R', 'session refreshed', ''],
    };
    for (const ev of rec.events || []) {
      const t = offset(ev.at);
      if (ev.kind === 'paused') {
        if (open[ev.label || ''] === undefined) open[ev.label || ''] = t;
      } else if (ev.kind === 'resumed') {
        const s = open[ev.label || ''];
        if (s !== undefined) {
          items.push({ kind: 'pause', label: ev.label, start: s, end: t });
          delete open[ev.label || ''];
        }
      } else {
        const [short, what, cls] = names[ev.kind] || ['•', ev.kind, ''];
        const whom = ev.aor || (ev.participant_id && who(byId[ev.participant_id])) || ev.participant_id;
        items.push({ kind: ev.kind, cls, label: ev.label, at: t, short, text: what, detail: [whom, ev.detail].filter(Boolean).join(', ') });
      }
    }
    for (const [label, s] of Object.entries(open)) items.push({ kind: 'pause', label: label || undefined, start: s, end: D, open: true });
    for (const d of rec.dtmf || []) {
      items.push({ kind: 'dtmf', cls: 'dtmf', label: d.label, at: d.at_ms, short: d.digit, text: `DTMF ${d.digit}`, detail: `${d.duration_ms} ms` });
    }
    for (const ce of Array.isArray(rec.call_events) ? rec.call_events : []) {
      const at = offset(ce.time || ce.at);
      const detail = ['this_dn', 'other_dn', 'agent_id', 'this_queue', 'conn_id']
        .filter((k) => ce[k]).map((k) => `${k} ${ce[k]}`).join(', ');
      items.push({ kind: 'call-event', cls: 'call-event', at, short: 'E', text: ce.event || ce.kind || 'call event', detail, outside: at < -1000 || at > D + 1000 });
    }
    const when = (it) => (it.kind === 'pause' ? it.start : it.at);
    items.sort((a, b) => when(a) - when(b));
    const describe = (it) => (it.kind === 'pause'
      ? `Paused or on hold${it.label ? ` (stream ${it.label})` : ''} from ${fmtAt(it.start)} to ${it.open ? 'the end' : fmtAt(it.end)}`
      : `${it.text}${it.label ? ` (stream ${it.label})` : ''}${it.detail ? `: ${it.detail}` : ''} at ${fmtAt(it.at)}`);

    const cursor = el('div', { class: 'cursor', id: 'cursor', 'aria-hidden': 'true' });
    const moveCursor = (ms) => {
      cursor.style.display = 'block';
      cursor.style.left = pct(ms);
      cursor.dataset.ms = String(Math.round(ms));
    };
    const seekAll = (ms) => {
      const t = Math.max(0, ms) / 1000;
      for (const a of audios) {
        const set = () => { a.currentTime = Number.isFinite(a.duration) ? Math.min(t, a.duration) : t; };
        if (a.readyState >= 1) set(); else a.addEventListener('loadedmetadata', set, { once: true });
      }
      moveCursor(Math.max(0, ms));
      status.textContent = audios.length ? `Players at ${fmtAt(ms)}` : `Cursor at ${fmtAt(ms)}`;
    };
    const itemButton = (it) => {
      const label = `${describe(it)}${audios.length ? ': play from here' : ''}`;
      if (it.kind === 'pause') {
        const b = el('button', {
          type: 'button', class: 'span', title: label, 'aria-label': label,
          dataset: { startMs: Math.round(it.start), endMs: Math.round(it.end), label: it.label || '' },
          onclick: () => seekAll(it.start),
        }, 'paused');
        b.style.left = pct(it.start);
        b.style.width = `calc(${pct(it.end - it.start)} - 1px)`;
        return b;
      }
      const b = el('button', {
        type: 'button', class: `marker ${it.cls || ''}`, title: label, 'aria-label': label,
        dataset: { atMs: Math.round(it.at), kind: it.kind }, onclick: () => seekAll(it.at),
      }, it.short);
      b.style.left = pct(it.at);
      return b;
    };

    // One track per stream: its waveform (from its mono WAV, else its side
    // of the stereo file) and a lane of what happened on it.
    const tracks = [];
    const labels = streams.map((s) => s.label);
    for (const f of files) for (const l of f.labels || []) if (!labels.includes(l)) labels.push(l);
    for (const label of labels) {
      const s = streams.find((x) => x.label === label) || {};
      const p = senderOf(label);
      const mono = files.find((f) => f.format === 'wav' && (f.labels || []).includes(label));
      const stereo = files.find((f) => f.format === 'stereo-wav' && (f.labels || []).includes(label));
      const src = mono ? { file: mono, channel: 0 } : (stereo ? { file: stereo, channel: stereo.labels.indexOf(label) } : null);
      const title = `Stream ${label}${p ? ` — ${who(p)}` : ''}${s.codec ? ` (${s.codec})` : ''}`;
      const canvas = src ? el('canvas', {
        class: 'wave', role: 'img', height: 72,
        'aria-label': `Waveform of stream ${label}${p ? `, ${who(p)}` : ''}; click a point to play from there`,
        dataset: { file: src.file.name, channel: src.channel, label },
      }) : null;
      const lane = el('div', { class: 'lane', role: 'group', 'aria-label': `Events of stream ${label}`, dataset: { label } },
        items.filter((it) => it.label === label && !it.outside).map(itemButton));
      tracks.push(el('div', { class: 'track' },
        el('div', { class: 'track-label', text: title }),
        canvas || el('p', { class: 'note', text: 'No WAV file for this stream: no waveform.' }),
        lane));
      if (canvas) {
        canvas.addEventListener('click', (ev) => {
          const r = canvas.getBoundingClientRect();
          seekAll(((ev.clientX - r.left) / r.width) * D);
        });
      }
    }
    const sessionItems = items.filter((it) => !labels.includes(it.label) && !it.outside);
    tracks.push(el('div', { class: 'track' },
      el('div', { class: 'lane-title', text: 'Call: participants, metadata, call events' }),
      el('div', { class: 'lane', id: 'session-lane', role: 'group', 'aria-label': 'Events of the call' }, sessionItems.map(itemButton))));
    const ticks = [];
    const step = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600].find((s) => D / 1000 / s <= 10) || 3600;
    for (let t = 0; t * 1000 <= D; t += step) {
      const tick = el('span', { text: fmtDur(t * 1000) });
      tick.style.left = pct(t * 1000);
      ticks.push(tick);
    }
    const review = el('div', { class: 'review', id: 'review' }, tracks, el('div', { class: 'axis', 'aria-hidden': 'true' }, ticks), cursor);

    // The list of events (the same, as a table: keyboard and screen readers).
    const evRows = items.map((it) => el('tr', {},
      el('td', { class: 'num', text: fmtAt(when(it)) }),
      el('td', { text: it.kind === 'pause' ? `paused / on hold until ${it.open ? 'the end' : fmtAt(it.end)}` : it.text }),
      el('td', { text: it.label ? `stream ${it.label}` : '' }),
      el('td', { text: it.detail || '' }),
      el('td', {}, el('button', { type: 'button', class: 'secondary', onclick: () => seekAll(when(it)), 'aria-label': `${describe(it)}: ${audios.length ? 'play from here' : 'move the cursor here'}` }, audios.length ? 'Play from here' : 'Show'))));

    // Cursor follows the player being played.
    let active = null;
    let raf = 0;
    const follow = () => {
      if (gen !== S.view || !active) return;
      moveCursor(active.currentTime * 1000);
      if (!active.paused) raf = requestAnimationFrame(follow);
    };
    for (const a of audios) {
      a.addEventListener('play', () => { active = a; cancelAnimationFrame(raf); raf = requestAnimationFrame(follow); });
      a.addEventListener('seeked', () => { if (!active || active === a) moveCursor(a.currentTime * 1000); });
      a.addEventListener('timeupdate', () => { if (active === a) moveCursor(a.currentTime * 1000); });
    }

    const summary = el('dl', { class: 'summary' },
      [['Started', fmtTime(rec.started_at)], ['Ended', fmtTime(rec.ended_at)], ['Duration', fmtDur(rec.duration_ms)],
        ['Status', rec.status], ['Record DN', rec.record_dn ? `${rec.record_dn}${rec.record_dn_kind ? ` (${rec.record_dn_kind})` : ''}` : '—'],
        ['Direction', rec.direction || '—'], ['Geo-location', rec.geo_location || '—'], ['Participants', String(parts.length)]]
        .map(([k, v]) => el('div', {}, el('dt', { text: k }), el('dd', { text: v }))));

    const kv = (pairs) => el('dl', { class: 'kv' }, pairs.filter(([, v]) => v !== undefined && v !== null && v !== '')
      .flatMap(([k, v]) => [el('dt', { text: k }), el('dd', {}, el('span', { class: 'mono', text: String(v) }))]));
    const ids = kv([['Recording id', id], ['Call-ID', rec.call_id],
      ...Object.entries(rec.correlation || {}), ['Rule', rec.rule], ['Source', `${rec.source} (${rec.transport})`],
      ['Path in the drop', rec.path], ['Metadata file', rec.metadata_file], ['Metadata problem', rec.metadata_error],
      ['Error', rec.error], ['Limits reached', (rec.limits_reached || []).join(', ')]]);
    const attached = rec.attached_data && typeof rec.attached_data === 'object' && Object.keys(rec.attached_data).length
      ? [el('h3', { text: 'Attached data' }), kv(Object.entries(rec.attached_data).map(([k, v]) => [k, typeof v === 'string' ? v : JSON.stringify(v)]))]
      : null;

    const table = (caption, head, rows) => el('div', { class: 'table-wrap' }, el('table', {},
      el('caption', { text: caption }),
      el('thead', {}, el('tr', {}, head.map((h) => el('th', { scope: 'col', text: h })))),
      el('tbody', {}, rows)));
    const partRows = parts.map((p) => el('tr', {},
      el('td', { text: p.name || '' }), el('td', {}, el('span', { class: 'mono', text: p.aor || '' })),
      el('td', { text: (p.labels || []).join(', ') }), el('td', {}, p.file ? el('code', { text: p.file }) : '—')));
    const streamRows = streams.map((s) => el('tr', {},
      el('td', { text: s.label }), el('td', { text: s.codec }), el('td', { text: who(byId[s.participant_id]) || '—' }),
      el('td', { class: 'num', text: s.packets_received }), el('td', { class: 'num', text: s.packets_lost }),
      el('td', { class: 'num', text: (s.jitter_ms || 0).toFixed(1) }), el('td', { text: s.error || '' })));
    const fileRows = files.map((f) => el('tr', {},
      el('td', {}, el('code', { text: f.name })), el('td', { text: f.format }), el('td', { text: (f.labels || []).join(', ') }),
      el('td', { class: 'num', text: fmtDur(f.duration_ms) }), el('td', { class: 'num', text: fmtBytes(f.bytes || 0) }),
      el('td', {}, rights.download ? el('a', { href: fileUrl(id, f.name), download: f.name, class: 'download' }, 'Download') : '—')));

    const back = el('a', { href: `/${sessionStorage.getItem('srs.search') || ''}` }, '← Back to the search');
    main.replaceChildren(
      el('p', {}, back),
      el('h1', {}, 'Recording ', el('code', { text: id }), ' ',
        isHeld(rec) ? el('span', { class: 'badge held', id: 'held-badge', text: rec.hold && rec.hold.reason ? `on legal hold: ${rec.hold.reason}` : 'on legal hold' }) : null),
      summary,
      adminActions(rec),
      el('section', { 'aria-labelledby': 'h-listen' }, el('h2', { id: 'h-listen', text: 'Listen' }), listen, status),
      el('section', { 'aria-labelledby': 'h-review' },
        el('h2', { id: 'h-review', text: 'Waveforms and timeline' }),
        el('p', { class: 'legend' }, el('span', { class: 'sw' }), ' paused or on hold · + joined · − left · C codec change · digits: DTMF · E call event · M metadata update. Click a waveform, a span or a mark to play from there.'),
        review),
      el('section', { 'aria-labelledby': 'h-events' }, el('h2', { id: 'h-events', text: 'What happened' }),
        items.length ? table('Events in time order (time from the start of the recording)', ['Time', 'What', 'Stream', 'Detail', ''], evRows)
          : el('p', { class: 'note', text: 'Nothing happened beyond the call itself.' })),
      el('section', { 'aria-labelledby': 'h-parts' }, el('h2', { id: 'h-parts', text: 'Participants' }),
        table('Who took part, and which stream and file is whose', ['Name', 'Address', 'Streams', 'File'], partRows)),
      el('section', { 'aria-labelledby': 'h-streams' }, el('h2', { id: 'h-streams', text: 'Streams' }),
        table('Recorded streams', ['Label', 'Codec', 'Sender', 'Packets', 'Lost', 'Jitter (ms)', 'Error'], streamRows)),
      el('section', { 'aria-labelledby': 'h-files' }, el('h2', { id: 'h-files', text: 'Files' }),
        table('Audio files', ['Name', 'Format', 'Streams', 'Duration', 'Size', 'Download'], fileRows)),
      el('section', { 'aria-labelledby': 'h-meta' }, el('h2', { id: 'h-meta', text: 'Correlation ids and metadata' }), ids, attached));

    // Waveforms once laid out (their width is known).
    for (const canvas of main.querySelectorAll('canvas.wave')) drawWave(canvas, id, D, items, gen);
  }

  async function drawWave(canvas, id, D, items, gen) {
    const file = canvas.dataset.file;
    const channel = Number(canvas.dataset.channel || 0);
    const dpr = window.devicePixelRatio || 1;
    const width = Math.max(1, Math.round(canvas.clientWidth * dpr));
    const height = Math.round(canvas.clientHeight * dpr) || 72;
    canvas.width = width;
    canvas.height = height;
    const r = await api(`${fileUrl(id, file)}/peaks?points=${Math.min(4000, width)}`);
    if (gen !== S.view) return;
    const ctx = canvas.getContext('2d');
    ctx.clearRect(0, 0, width, height);
    if (r.status !== 200 || !r.data) {
      canvas.dataset.error = r.error || 'no peaks';
      canvas.setAttribute('aria-label', `No waveform: ${r.error}`);
      return;
    }
    const p = r.data;
    const peaks = p.peaks[channel] || p.peaks[0];
    const n = p.points;
    // The file spans [0, its duration] of the timeline's [0, D].
    const span = (width * Math.min(p.duration_ms || D, D)) / D;
    const x = (ms) => (width * ms) / D;
    ctx.fillStyle = 'rgba(180, 120, 0, 0.22)';
    for (const it of items) {
      if (it.kind === 'pause' && (it.label === canvas.dataset.label)) ctx.fillRect(x(it.start), 0, Math.max(1, x(it.end) - x(it.start)), height);
    }
    const mid = height / 2;
    ctx.fillStyle = getComputedStyle(document.documentElement).getPropertyValue('--wave').trim() || '#2f6f9f';
    ctx.fillRect(0, mid, span, Math.max(1, dpr / 2));
    let loudest = 0;
    for (let i = 0; i < n; i += 1) {
      const lo = peaks.min[i];
      const hi = peaks.max[i];
      loudest = Math.max(loudest, Math.abs(lo), Math.abs(hi));
      // Whole pixels: no anti-aliased seams between buckets.
      const x0 = Math.floor((i * span) / n);
      const w = Math.max(1, Math.floor(((i + 1) * span) / n) - x0);
      const y0 = mid - (hi / 32768) * mid;
      const y1 = mid - (lo / 32768) * mid;
      ctx.fillRect(x0, y0, w, Math.max(1, y1 - y0));
    }
    canvas.dataset.peaks = String(n);
    canvas.dataset.loudest = String(loudest);
    canvas.dataset.drawn = 'true';
  }

  function adminActions(rec) {
    const rights = (S.me && S.me.rights) || {};
    const box = el('div', { class: 'actions', id: 'admin-actions' });
    if (!rights.hold && !rights.delete) return box;
    const msg = el('span', { class: 'status', id: 'admin-message', role: 'status', 'aria-live': 'polite' });
    const id = encodeURIComponent(rec.recording_id);
    if (rights.hold) {
      const reason = el('input', { id: 'hold-reason', type: 'text', autocomplete: 'off', placeholder: 'reason (optional)' });
      const hold = el('button', { type: 'button', class: 'secondary', id: 'hold' }, isHeld(rec) ? 'Release legal hold' : 'Place legal hold');
      hold.addEventListener('click', async () => {
        const body = !isHeld(rec) && reason.value.trim() ? { reason: reason.value.trim() } : undefined;
        const r = await api(`/api/v1/recordings/${id}/hold`, { method: isHeld(rec) ? 'DELETE' : 'PUT', body });
        if (unsupported(r)) {
          hold.disabled = true;
          reason.disabled = true;
          msg.textContent = 'Legal holds are not available on this server.';
        } else if (r.status >= 200 && r.status < 300) {
          route();
        } else {
          msg.textContent = `Refused: ${r.error}`;
        }
      });
      box.append(isHeld(rec) ? null : el('span', {}, el('label', { for: 'hold-reason', class: 'sr-only', text: 'Reason for the hold' }), reason), hold);
    }
    if (rights.delete) {
      const del = el('button', { type: 'button', class: 'danger', id: 'delete' }, 'Delete recording');
      const confirm = el('span', { class: 'confirm', hidden: true },
        el('span', { text: 'Delete this recording and its files for good?' }),
        el('button', { type: 'button', class: 'danger', id: 'delete-confirm' }, 'Delete'),
        el('button', { type: 'button', class: 'secondary', id: 'delete-cancel' }, 'Cancel'));
      del.addEventListener('click', () => { confirm.hidden = false; del.hidden = true; $('#delete-cancel', confirm).focus(); });
      $('#delete-cancel', confirm).addEventListener('click', () => { confirm.hidden = true; del.hidden = false; del.focus(); });
      $('#delete-confirm', confirm).addEventListener('click', async () => {
        const r = await api(`/api/v1/recordings/${id}`, { method: 'DELETE' });
        confirm.hidden = true;
        del.hidden = false;
        if (unsupported(r)) {
          del.disabled = true;
          msg.textContent = 'Deleting recordings is not available on this server.';
        } else if (r.status >= 200 && r.status < 300) {
          sessionStorage.setItem('srs.flash', `Recording ${rec.recording_id} deleted.`);
          go(`/${sessionStorage.getItem('srs.search') || ''}`);
        } else {
          msg.textContent = `Refused: ${r.error}`;
        }
      });
      box.append(del, confirm);
    }
    box.append(msg);
    return box;
  }

  // ---------- live ----------
  function liveView(main) {
    document.title = 'Live sessions · srs';
    main.dataset.view = 'live';
    const status = el('p', { class: 'status', id: 'live-status', role: 'status', 'aria-live': 'polite' }, 'Loading…');
    const tbody = el('tbody');
    const table = el('table', { id: 'live', dataset: { count: '' } },
      el('caption', { text: 'Sessions being recorded now (refreshed every 3 seconds)' }),
      el('thead', {}, el('tr', {}, ['Started', 'Running', 'Record DN', 'Participants', 'Geo', 'Direction', 'Streams', 'Recorded', 'Source', 'Call-ID']
        .map((h) => el('th', { scope: 'col', text: h })))),
      tbody);
    main.replaceChildren(el('h1', { text: 'Live sessions' }), status, el('div', { class: 'table-wrap results' }, table));
    const gen = S.view;
    let last = '';
    const refresh = async () => {
      if (gen !== S.view) return;
      const r = await api('/api/v1/sessions');
      if (gen !== S.view) return;
      if (r.status === 200 && r.data) {
        const list = r.data.sessions || [];
        const now = Date.now();
        tbody.replaceChildren(...list.map((s) => el('tr', { dataset: { callId: s.call_id } },
          el('td', { text: fmtTime(s.started_at) }),
          el('td', { class: 'num', text: fmtDur(now - Date.parse(s.started_at)) }),
          el('td', { text: s.record_dn || '' }),
          el('td', { text: (s.participants || []).join(', ') }),
          el('td', { text: s.geo_location || '' }),
          el('td', { text: s.direction || '' }),
          el('td', { class: 'num', text: s.streams }),
          el('td', { text: s.recorded ? 'yes' : 'no (a rule declined it)' }),
          el('td', {}, el('span', { class: 'mono', text: `${s.source} (${s.transport})` })),
          el('td', {}, el('span', { class: 'mono', text: s.call_id })))));
        table.dataset.count = String(list.length);
        const summary = `${list.length} session${list.length === 1 ? '' : 's'} being recorded`;
        // Announced only when the count changes (not every refresh).
        if (summary !== last) status.textContent = summary;
        last = summary;
        status.title = `updated ${new Date().toLocaleTimeString()}`;
      } else {
        status.textContent = `Cannot read the live sessions: ${r.error}`;
      }
      if (gen === S.view) S.liveTimer = setTimeout(refresh, document.hidden ? 10000 : 3000);
    };
    refresh();
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', boot);
  else boot();
})();
