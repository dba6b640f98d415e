// sitewarden dashboard. Polls the operator API every 2 s with the token from sessionStorage.
// Every value from the API reaches the page through textContent (see el()); nothing is ever
// parsed as HTML, so site names, reasons and alert texts cannot inject markup.
'use strict';

(() => {
  const TOKEN_KEY = 'sitewarden.token';
  const POLL_MS = 2000;
  const TIMELINE_KEPT = 150;
  const VERDICTS = ['up', 'degraded', 'down', 'unknown'];
  const TIMELINE_KINDS = new Set([
    'decision', 'verdict', 'dag_active_site', 'override', 'override_rejected',
    'override_expired', 'leadership', 'alert', 'apply_applied', 'apply_failed', 'apply_refused',
  ]);

  const $ = (id) => document.getElementById(id);
  let token = null;
  let role = null;
  let timer = null;
  let timeline = [];

  /** An element with a class and text content (never HTML). */
  function el(tag, className, text) {
    const e = document.createElement(tag);
    if (className) e.className = className;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  function verdictWord(v) {
    return VERDICTS.includes(v) ? v : 'unknown';
  }

  function str(v) {
    if (v === null || v === undefined) return '-';
    return typeof v === 'string' ? v : JSON.stringify(v);
  }

  function time(t) {
    if (!t) return '-';
    const d = new Date(t);
    if (isNaN(d)) return '-';
    return d.toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z');
  }

  function clock(t) {
    const d = new Date(t);
    return isNaN(d) ? '-' : d.toISOString().slice(11, 19);
  }

  function ago(t) {
    const d = new Date(t);
    if (!t || isNaN(d)) return '';
    const s = Math.max(0, Math.round((Date.now() - d.getTime()) / 1000));
    if (s < 90) return s + 's ago';
    if (s < 5400) return Math.round(s / 60) + 'm ago';
    return Math.round(s / 3600) + 'h ago';
  }

  // ---- token -------------------------------------------------------------------------------

  function takeTokenFromFragment() {
    const params = new URLSearchParams(location.hash.replace(/^#/, ''));
    const t = params.get('token');
    if (t) {
      sessionStorage.setItem(TOKEN_KEY, t);
      // Drop it from the address bar and the history.
      history.replaceState(null, '', location.pathname + location.search);
    }
  }

  function showLogin(message) {
    $('main').hidden = true;
    $('login').hidden = false;
    $('forget').hidden = true;
    $('who').textContent = '';
    banner(message || null);
  }

  function forget(message) {
    sessionStorage.removeItem(TOKEN_KEY);
    token = null;
    role = null;
    if (timer) clearTimeout(timer);
    timer = null;
    showLogin(message);
  }

  function banner(message) {
    const b = $('banner');
    b.hidden = !message;
    b.textContent = message || '';
  }

  // ---- API ---------------------------------------------------------------------------------

  async function api(path, method, body) {
    const headers = { Accept: 'application/json' };
    if (token) headers.Authorization = 'Bearer ' + token;
    const init = { method: method || 'GET', headers, cache: 'no-store', credentials: 'omit' };
    if (body) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    const r = await fetch(path, init);
    let data = null;
    try {
      data = await r.json();
    } catch (_) {
      data = null;
    }
    if (!r.ok) {
      const e = new Error((data && data.error) || 'HTTP ' + r.status);
      e.status = r.status;
      throw e;
    }
    return data;
  }

  async function connect() {
    token = sessionStorage.getItem(TOKEN_KEY);
    try {
      // Without a token this succeeds only when the controller allows anonymous reads.
      const who = await api('/api/v1/whoami');
      role = who.role;
      $('who').textContent = (who.name || 'anonymous') + ' (' + (who.role || 'read') + ')';
    } catch (e) {
      if (e.status === 401) {
        forget(token ? 'The controller refused this token: ' + e.message : null);
        return;
      }
      if (!token) {
        showLogin(e.status ? null : 'Cannot reach the controller: ' + e.message);
        return;
      }
      role = null;
    }
    $('login').hidden = true;
    $('main').hidden = false;
    $('forget').hidden = false;
    await poll();
  }

  async function poll() {
    if (timer) clearTimeout(timer);
    timer = null;
    try {
      const [status, hist] = await Promise.all([
        api('/api/v1/status'),
        api('/api/v1/history?since=1h&limit=200').catch((e) => {
          if (e.status === 401) throw e;
          return null;
        }),
      ]);
      banner(null);
      render(status, hist);
    } catch (e) {
      if (e.status === 401) {
        forget('The controller refused this token: ' + e.message);
        return;
      }
      banner(e.status ? 'The controller answered: ' + e.message
        : 'Cannot reach the controller (' + e.message + '); retrying every 2 s.');
    }
    if (timer) clearTimeout(timer);
    if (!$('main').hidden) timer = setTimeout(poll, POLL_MS);
  }

  // ---- rendering ---------------------------------------------------------------------------

  const admin = () => role === 'admin';

  function button(label, onClick, quiet) {
    const b = el('button', quiet ? 'quiet' : null, label);
    b.type = 'button';
    b.addEventListener('click', onClick);
    return b;
  }

  function kv(pairs) {
    const dl = el('dl', 'kv');
    for (const [k, v, cls, data] of pairs) {
      dl.append(el('dt', null, k));
      const dd = el('dd', cls || null, v);
      if (data) for (const [dk, dv] of Object.entries(data)) dd.dataset[dk] = dv;
      dl.append(dd);
    }
    return dl;
  }

  function render(s, hist) {
    const l = s.leader || {};
    $('leader').textContent = 'leader ' + str(l.leader) +
      (l.epoch !== null && l.epoch !== undefined ? ' · epoch ' + l.epoch : '') +
      ' · answered by ' + str(l.controller) + ' (' + str(l.role) + ') · ' + time(s.at);
    const overrides = s.overrides || { pins: {}, drains: {}, freezes: {} };
    renderSites(s.sites || [], overrides);
    renderNamespaces(s.namespaces || []);
    renderDags(s.dags || []);
    renderOverrides(overrides);
    addToTimeline(s.recent || [], hist ? hist.records || [] : []);
  }

  function renderSites(sites, overrides) {
    const cards = sites.map((site) => {
      const ev = site.evidence || {};
      const v = verdictWord(ev.verdict);
      const card = el('article', 'card site v-' + v);
      card.dataset.site = site.site;
      card.dataset.verdict = v;
      card.append(el('h3', null, site.site));
      const line = el('p');
      line.append(el('span', 'verdict ' + v, v));
      if (ev.drained) line.append(el('span', 'badge', 'drained'));
      if (ev.falling) line.append(el('span', 'badge', 'falling'));
      card.append(line);
      card.append(el('p', 'since', ev.since ? 'since ' + time(ev.since) + ' (' + ago(ev.since) + ')' : 'no verdict yet'));
      const list = el('ul', 'evidence');
      const comps = ev.components || [];
      if (!comps.length) list.append(el('li', 'muted', 'no servers probed here'));
      for (const c of comps) {
        const r = verdictWord(c.result);
        const li = el('li');
        li.dataset.component = c.server + '/' + c.protocol;
        li.append(el('span', null, c.server + ' ' + c.protocol + ': '));
        li.append(el('span', 'r-' + r, r));
        for (const o of c.observers || []) {
          if (o.status === 'passing') continue;
          const who = el('div', 'muted', o.agent + ' (' + o.site + ') ' + o.check + ' ' + o.status +
            (o.error ? ' · ' + o.error : '') + (o.fresh ? '' : ' · stale') + ' · ' + o.streak + ' in a row');
          li.append(who);
        }
        list.append(li);
      }
      card.append(list);
      if (admin()) {
        const actions = el('div', 'actions');
        if (overrides.drains && overrides.drains[site.site]) {
          actions.append(button('release drain', () => openAction({
            title: 'Release the drain of ' + site.site, endpoint: 'release',
            body: { kind: 'drain', subject: site.site },
          }), true));
        } else {
          actions.append(button('drain', () => openAction({
            title: 'Drain ' + site.site, what: 'Treat ' + site.site + ' as down for routing.',
            endpoint: 'create', hold: true, body: { action: 'drain', site: site.site },
          }), true));
        }
        card.append(actions);
      }
      return card;
    });
    $('sites').replaceChildren(...cards);
  }

  function renderNamespaces(namespaces) {
    const cards = namespaces.map((ns) => {
      const x = ns.explanation || {};
      const d = x.decision || null;
      const ev = d ? d.evidence || {} : {};
      const card = el('article', 'card namespace');
      card.dataset.namespace = ns.name;
      card.append(el('h3', null, ns.name));
      const atPreferred = ns.current && ns.current === ns.preferred;
      const pairs = [
        ['current', str(ns.current), 'current ' + (atPreferred ? 'preferred' : 'moved'),
          { target: ns.current || '' }],
        ['preferred', str(ns.preferred)],
      ];
      if (ns.desired && ns.desired !== ns.current) pairs.push(['moving to', str(ns.desired)]);
      pairs.push(['rule', str(ev.rule), 'rule']);
      pairs.push(['why', str(ev.note), 'note']);
      if (x.pending) pairs.push(['pending', x.pending.target + ' (generation ' + x.pending.generation + ')']);
      if (x.pin) pairs.push(['pinned', x.pin.target + ' by ' + x.pin.hold.who + ': ' + x.pin.hold.why]);
      if (x.freeze) pairs.push(['frozen', 'by ' + x.freeze.who + ': ' + x.freeze.why]);
      if (x.last_change) {
        pairs.push(['last change', time(x.last_change.evidence.at) + ' ' + str(x.last_change.from) +
          ' → ' + str(x.last_change.to)]);
      }
      card.append(kv(pairs));
      if (admin()) {
        const actions = el('div', 'actions');
        if (x.pin) {
          actions.append(button('release pin', () => openAction({
            title: 'Release the pin on ' + ns.name, endpoint: 'release',
            body: { kind: 'pin', subject: ns.name },
          }), true));
        } else {
          actions.append(button('pin', () => openAction({
            title: 'Pin ' + ns.name, what: 'Hold ' + ns.name + ' on one target, whatever the verdicts say.',
            endpoint: 'create', hold: true, targets: ns.targets || [],
            body: { action: 'pin', namespace: ns.name },
          }), true));
        }
        if (x.freeze) {
          actions.append(button('release freeze', () => openAction({
            title: 'Release the freeze of ' + ns.name, endpoint: 'release',
            body: { kind: 'freeze', subject: ns.name },
          }), true));
        } else {
          actions.append(button('freeze', () => openAction({
            title: 'Freeze ' + ns.name, what: 'No automatic changes of ' + ns.name + '.',
            endpoint: 'create', hold: true, body: { action: 'freeze', namespace: ns.name },
          }), true));
        }
        if (!atPreferred) {
          actions.append(button('fail back', () => openAction({
            title: 'Fail ' + ns.name + ' back', what: 'Move ' + ns.name + ' to its most preferred healthy target now.',
            endpoint: 'create', body: { action: 'failback', namespace: ns.name },
          }), true));
        }
        card.append(actions);
      }
      return card;
    });
    $('namespaces').replaceChildren(...cards);
  }

  function renderDags(dags) {
    if (!dags.length) {
      $('dags').replaceChildren(el('p', 'muted', 'no DAGs configured'));
      return;
    }
    $('dags').replaceChildren(...dags.map((d) => {
      const card = el('article', 'card dag');
      card.dataset.dag = d.dag;
      card.append(el('h3', null, d.dag));
      card.append(kv([['active site', str(d.active_site), 'active-site']]));
      return card;
    }));
  }

  function renderOverrides(o) {
    const rows = [];
    const until = (h) => (h.expires ? time(h.expires) : 'until released');
    for (const [name, pin] of Object.entries(o.pins || {})) {
      rows.push(['pin', name + ' → ' + pin.target, pin.hold, { kind: 'pin', subject: name }]);
    }
    for (const [site, hold] of Object.entries(o.drains || {})) {
      rows.push(['drain', site, hold, { kind: 'drain', subject: site }]);
    }
    for (const [scope, hold] of Object.entries(o.freezes || {})) {
      rows.push(['freeze', scope === '*' ? 'every namespace' : scope, hold,
        { kind: 'freeze', subject: scope === '*' ? null : scope }]);
    }
    const box = $('overrides');
    if (!rows.length) {
      box.replaceChildren(el('p', 'muted', 'No overrides: every name follows the rules.'));
    } else {
      const table = el('table', 'overrides');
      const head = el('tr');
      for (const h of ['override', 'subject', 'who', 'until', 'why', '']) head.append(el('th', null, h));
      const thead = el('thead');
      thead.append(head);
      const tbody = el('tbody');
      for (const [kind, subject, hold, release] of rows) {
        const tr = el('tr');
        tr.dataset.override = kind;
        for (const v of [kind, subject, hold.who, until(hold), hold.why]) tr.append(el('td', null, v));
        const td = el('td');
        if (admin()) {
          td.append(button('release', () => openAction({
            title: 'Release ' + kind + ' of ' + subject, endpoint: 'release', body: release,
          }), true));
        }
        tr.append(td);
        tbody.append(tr);
      }
      table.append(thead, tbody);
      box.replaceChildren(table);
    }
    const global = $('global-actions');
    global.hidden = !admin();
    if (admin()) {
      global.replaceChildren(o.freezes && o.freezes['*']
        ? button('release the freeze of everything', () => openAction({
          title: 'Release the freeze of every namespace', endpoint: 'release',
          body: { kind: 'freeze', subject: null },
        }), true)
        : button('freeze everything', () => openAction({
          title: 'Freeze every namespace', what: 'No automatic DNS changes at all until released.',
          endpoint: 'create', hold: true, body: { action: 'freeze' },
        }), true));
    }
  }

  // ---- timeline ----------------------------------------------------------------------------

  function actionWords(a) {
    if (!a) return '-';
    const until = a.expires ? ' until ' + time(a.expires) : '';
    const scope = (s) => (s && typeof s === 'object' && s.namespace ? s.namespace : 'every namespace');
    switch (a.action) {
      case 'pin': return 'pin ' + a.namespace + ' to ' + a.target + until;
      case 'drain': return 'drain ' + a.site + until;
      case 'freeze': return 'freeze ' + scope(a.scope) + until;
      case 'failback': return 'fail back ' + a.namespace;
      case 'release': {
        const w = a.what || {};
        if (w.kind === 'pin') return 'release the pin on ' + w.namespace;
        if (w.kind === 'drain') return 'release the drain of ' + w.site;
        return 'release the freeze of ' + scope(w.scope);
      }
      default: return str(a);
    }
  }

  function summary(e) {
    switch (e.kind) {
      case 'decision': {
        const ev = e.evidence || {};
        return e.namespace + ': ' + str(e.from) + ' → ' + str(e.to) + ' (' + str(ev.rule) + ': ' + str(ev.note) + ')';
      }
      case 'verdict': return 'site ' + e.site + ': ' + e.from + ' → ' + e.to;
      case 'dag_active_site': return 'DAG ' + e.dag + ': active site ' + str(e.from) + ' → ' + str(e.to);
      case 'override': return actionWords(e.action) + ' by ' + e.who + ': ' + e.why;
      case 'override_rejected': {
        const r = e.request || {};
        return 'refused ' + actionWords(r.action) + ' by ' + r.who + ': ' + e.reason;
      }
      case 'override_expired': return 'expired: ' + e.what;
      case 'leadership': return (e.is_leader ? 'became leader' : 'stopped leading') + ' (epoch ' + e.epoch + ')';
      case 'alert': {
        const a = e.alert || {};
        return '[' + a.severity + '] ' + a.subject + ': ' + a.text;
      }
      default: return (e.namespace ? e.namespace + ' ' : '') + (e.target ? '→ ' + e.target + ' ' : '') +
        (e.why ? '(' + e.why + ')' : '');
    }
  }

  function tone(e) {
    if (e.kind === 'verdict') {
      return { up: 't-good', degraded: 't-warn', down: 't-bad' }[e.to] || '';
    }
    if (e.kind === 'alert') {
      const s = (e.alert || {}).severity;
      return s === 'critical' ? 't-bad' : s === 'warning' ? 't-warn' : '';
    }
    if (e.kind === 'override_rejected' || e.kind === 'apply_failed') return 't-bad';
    if (e.kind === 'override' || e.kind === 'override_expired') return 't-warn';
    if (e.kind === 'apply_applied') return 't-good';
    return '';
  }

  function addToTimeline(recent, records) {
    const incoming = [];
    // Events of one engine step share a time: their order within it is the order they were
    // made in (the history's seq, the status's list order), newest first on the page.
    recent.forEach((r, i) => {
      if (r && r.event) incoming.push({ at: r.at, event: r.event, o: i });
    });
    for (const r of records) {
      // Both controllers record what their engines decide; the leader's copy is the one.
      if (!r || !r.event || r.role !== 'leader') continue;
      incoming.push({ at: r.event.engine_at || r.at, event: r.event, o: r.seq || 0 });
    }
    for (const item of incoming) {
      const e = item.event;
      if (!TIMELINE_KINDS.has(e.kind)) continue;
      const text = summary(e);
      const t = new Date(item.at).getTime();
      if (isNaN(t)) continue;
      const dup = timeline.some((x) => x.kind === e.kind && x.text === text && Math.abs(x.t - t) < 5000);
      if (!dup) timeline.push({ t, o: item.o, kind: e.kind, text, tone: tone(e) });
    }
    timeline.sort((a, b) => (b.t - a.t) || (b.o - a.o));
    timeline = timeline.slice(0, TIMELINE_KEPT);
    const items = timeline.map((x) => {
      const li = el('li', x.tone || null);
      li.dataset.kind = x.kind;
      const at = el('span', 'at', clock(x.t));
      at.title = time(x.t);
      li.append(at, el('span', 'kind', x.kind.replace(/_/g, ' ')), el('span', 'text', x.text));
      return li;
    });
    if (!items.length) items.push(el('li', 'muted', 'nothing in the last hour'));
    $('timeline').replaceChildren(...items);
  }

  // ---- override dialog ---------------------------------------------------------------------

  let pending = null;

  function openAction(spec) {
    pending = spec;
    $('action-title').textContent = spec.title;
    $('action-what').textContent = spec.what || '';
    $('action-error').textContent = '';
    $('action-reason').value = '';
    $('action-for').value = '';
    $('for-row').hidden = !spec.hold;
    const sel = $('action-target');
    $('target-row').hidden = !spec.targets;
    sel.replaceChildren(...(spec.targets || []).map((t) => {
      const o = el('option', null, t);
      o.value = t;
      return o;
    }));
    $('action-submit').disabled = false;
    $('action').showModal();
    $('action-reason').focus();
  }

  async function submitAction(ev) {
    ev.preventDefault();
    if (!pending) return;
    const reason = $('action-reason').value.trim();
    if (!reason) {
      $('action-error').textContent = 'Say why: the reason goes into the audit trail.';
      return;
    }
    const body = Object.assign({}, pending.body, { reason });
    if (pending.targets) body.target = $('action-target').value;
    const dur = $('action-for').value.trim();
    if (pending.hold && dur) body.for = dur;
    const path = pending.endpoint === 'release' ? '/api/v1/overrides/release' : '/api/v1/overrides';
    $('action-submit').disabled = true;
    try {
      await api(path, 'POST', body);
      $('action').close();
      pending = null;
      await poll();
    } catch (e) {
      $('action-error').textContent = e.message;
      $('action-submit').disabled = false;
    }
  }

  // ---- start -------------------------------------------------------------------------------

  document.addEventListener('DOMContentLoaded', () => {
    takeTokenFromFragment();
    $('login').addEventListener('submit', (ev) => {
      ev.preventDefault();
      const t = $('token-input').value.trim();
      if (!t) return;
      sessionStorage.setItem(TOKEN_KEY, t);
      $('token-input').value = '';
      connect();
    });
    $('forget').addEventListener('click', () => forget(null));
    $('action-form').addEventListener('submit', submitAction);
    $('action-cancel').addEventListener('click', () => {
      pending = null;
      $('action').close();
    });
    window.addEventListener('hashchange', () => {
      takeTokenFromFragment();
      connect();
    });
    connect();
  });
})();
