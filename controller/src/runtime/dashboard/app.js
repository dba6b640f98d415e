// sitewarden dashboard. Polls the operator API every 2 s with the token from sessionStorage.
// Every value from the API reaches the page through textContent (see el() in panels.js);
// nothing is ever parsed as HTML, so site names, reasons and alert texts cannot inject markup.
// The panels beyond sites, names, DAGs and overrides are drawn by panels.js.
'use strict';

(() => {
  const P = window.sitewarden;
  const TOKEN_KEY = 'sitewarden.token';
  const POLL_MS = 2000;
  const { el, str, time, verdictWord } = P;

  const $ = (id) => document.getElementById(id);
  let token = null;
  let role = null;
  let timer = null;

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
        // The history's default view: the acting leader's records and both controllers'
        // leadership changes, newest first; no standby, edge or webhook records.
        api(P.timelineQuery).catch((e) => {
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
    // The leader's epoch; a standby that predates `leader_epoch` knows only its own (none).
    const epoch = l.leader_epoch !== null && l.leader_epoch !== undefined ? l.leader_epoch : l.epoch;
    $('leader').textContent = 'leader ' + str(l.leader) +
      (epoch !== null && epoch !== undefined ? ' · epoch ' + epoch : '') +
      ' · answered by ' + str(l.controller) + ' (' + str(l.role) + ') · ' + time(s.at);
    const overrides = s.overrides || { pins: {}, drains: {}, freezes: {} };
    const incidents = P.incidents(s);
    $('incidents').replaceChildren(...incidents);
    $('incidents').hidden = !incidents.length;
    renderSites(s.sites || [], overrides);
    renderNamespaces(s.namespaces || [], s);
    $('servers').replaceChildren(...P.servers(s.sites || [], s.at));
    $('agents').replaceChildren(...P.agents(s.agents));
    $('controllers').replaceChildren(...P.controllers(s));
    renderDags(s.dags || []);
    renderOverrides(overrides);
    $('timeline').replaceChildren(...P.timeline(hist, s.recent));
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

  // What the cards leave out at scale: names not listed, and changes not yet applied.
  function namesNote(namespaces, s) {
    const parts = [];
    const total = s.namespaces_total || 0;
    if (total > namespaces.length) {
      parts.push('showing ' + namespaces.length + ' of ' + total + ' names (' +
        (s.off_preferred_total || 0) + ' off their preferred target, listed first)');
    }
    const pending = s.pending || [];
    if (s.pending_total) {
      const waiting = pending.filter((p) => p.state === 'waiting').length;
      const oldest = pending[0];
      parts.push(s.pending_total + ' change' + (s.pending_total === 1 ? '' : 's') +
        ' not yet applied' + (waiting ? ' (' + waiting + ' of those listed waiting for a retry)' : '') +
        (oldest ? '; oldest: ' + oldest.name + ' → ' + oldest.target + ' since ' + time(oldest.since) : ''));
    }
    return parts.length ? [el('p', 'names-note', parts.join(' · '))] : [];
  }

  function renderNamespaces(namespaces, s) {
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
    $('namespaces').replaceChildren(...cards, ...namesNote(namespaces, s || {}));
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
