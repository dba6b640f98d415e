// sitewarden dashboard panels: the incident banner, the per-server table, the agents, the
// controllers and the timeline, each drawn from one status (or history) answer. Loaded before
// app.js, which polls the API and calls these. Every value reaches the page through
// textContent (el()); nothing here decides anything: what is off its preferred target, since
// when, why and until when is the engine's (explanation.off_preferred), silence is the
// engine's (agents[].silent), freshness is the controllers' (controllers[].fresh).
'use strict';

window.sitewarden = (() => {
  const VERDICTS = ['up', 'degraded', 'down', 'unknown'];
  // The kinds the timeline shows, asked of the history's default (noise-free) view.
  const TIMELINE_KINDS = [
    'decision', 'verdict', 'dag_active_site', 'override', 'override_rejected', 'override_expired',
    'leadership', 'alert', 'apply_applied', 'apply_failed', 'apply_refused', 'intent_applied',
    'intent_superseded',
  ];

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

  /** A verdict as the engine's notes and `sitewarden explain` write it: `Down`. */
  function verdictTitle(v) {
    const w = verdictWord(v);
    return w.charAt(0).toUpperCase() + w.slice(1);
  }

  function str(v) {
    if (v === null || v === undefined) return '-';
    return typeof v === 'string' ? v : JSON.stringify(v);
  }

  /** `2026-11-24 03:00:12Z`, as the CLI writes times. */
  function time(t) {
    if (!t) return '-';
    const d = new Date(t);
    if (isNaN(d)) return '-';
    return d.toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z');
  }

  /** `03:00:12Z` on the day of `ref` (the status's time), the whole time on another day. */
  function at(t, ref) {
    if (!t) return '-';
    const d = new Date(t);
    if (isNaN(d)) return '-';
    const r = new Date(ref);
    const sameDay = !isNaN(r) && r.toISOString().slice(0, 10) === d.toISOString().slice(0, 10);
    return sameDay ? d.toISOString().slice(11, 19) + 'Z' : time(t);
  }

  /** An age in milliseconds as `1.2 s`, `45 s`, `3 min`, `2 h`. */
  function age(ms) {
    if (ms === null || ms === undefined || isNaN(ms)) return '-';
    const s = ms / 1000;
    if (s < 10) return s.toFixed(1) + ' s';
    if (s < 90) return Math.round(s) + ' s';
    if (s < 5400) return Math.round(s / 60) + ' min';
    return Math.round(s / 3600) + ' h';
  }

  function table(className, headings, rows) {
    const t = el('table', className);
    const head = el('tr');
    for (const h of headings) head.append(el('th', null, h));
    const thead = el('thead');
    thead.append(head);
    const tbody = el('tbody');
    tbody.append(...rows);
    t.append(thead, tbody);
    // A wide table scrolls inside its own box; the page never scrolls sideways.
    const box = el('div', 'scroll');
    box.append(t);
    return box;
  }

  function row(cells, data) {
    const tr = el('tr');
    for (const c of cells) tr.append(c instanceof Node ? c : el('td', null, c));
    if (data) for (const [k, v] of Object.entries(data)) tr.dataset[k] = v;
    return tr;
  }

  // ---- incident banner ---------------------------------------------------------------------

  /**
   * "mail.example.com → mail-site2.example.com since 02:48:30Z — site1 Down; failback eligible
   * at 02:58:30Z": one line per name off its preferred target, from the engine's off_preferred,
   * then the latest decision's rule and note as `sitewarden explain` prints them.
   */
  function incidentLine(ns, ref) {
    const x = ns.explanation || {};
    const off = x.off_preferred;
    let head = ns.name + ' → ' + off.target;
    if (off.since) head += ' since ' + at(off.since, ref);
    const why = [];
    for (const u of off.unroutable || []) {
      why.push(u.drained_by ? u.site + ' drained by ' + u.drained_by
        : u.site + ' ' + verdictTitle(u.verdict));
    }
    if (x.pin) why.push('pinned by ' + x.pin.hold.who);
    if (x.freeze) why.push('frozen by ' + x.freeze.who);
    const d = x.decision;
    if (off.failback_eligible_at) why.push('failback eligible at ' + at(off.failback_eligible_at, ref));
    if (!why.length && d) why.push(d.evidence.rule.replace(/_/g, ' '));
    return head + (why.length ? ' — ' + why.join('; ') : '');
  }

  function incidents(s) {
    const items = (s.namespaces || []).filter((ns) => ns.explanation && ns.explanation.off_preferred)
      .map((ns) => {
        const x = ns.explanation;
        const off = x.off_preferred;
        const box = el('div', 'incident ' + ((off.unroutable || []).length ? 'bad' : 'warn'));
        box.dataset.incident = ns.name;
        box.dataset.rule = x.decision ? x.decision.evidence.rule : '';
        box.append(el('p', 'headline', incidentLine(ns, s.at)));
        if (x.decision) {
          box.append(el('p', 'detail', 'rule ' + x.decision.evidence.rule + ': ' + x.decision.evidence.note));
        }
        return box;
      });
    return items;
  }

  // ---- servers -----------------------------------------------------------------------------

  /** For each site, a table of server × protocol × observer × check and its latest result. */
  function servers(sites, ref) {
    return sites.map((site) => {
      const ev = site.evidence || {};
      const box = el('div', 'servers');
      box.dataset.serversOf = site.site;
      const v = verdictWord(ev.verdict);
      const h = el('h3');
      h.append(el('span', null, site.site + ' '), el('span', 'verdict ' + v, v));
      box.append(h);
      const rows = [];
      for (const c of ev.components || []) {
        const observers = c.observers || [];
        const r = verdictWord(c.result);
        const server = el('td', 'server');
        server.rowSpan = Math.max(1, observers.length);
        server.append(el('span', null, c.server + ' ' + c.protocol + ' '), el('span', 'r-' + r, r));
        if (!observers.length) {
          rows.push(row([server, el('td', 'muted', 'no results yet'), '', '', '', '', '', ''],
            { server: c.server }));
          continue;
        }
        observers.forEach((o, i) => {
          const status = el('td', 's-' + o.status,
            o.status + (o.error ? ' · ' + o.error : '') + (o.fresh ? '' : ' · stale'));
          const cells = [
            o.check,
            o.agent + ' (' + o.site + ')',
            status,
            o.http_status === undefined || o.http_status === null ? '-' : String(o.http_status),
            o.latency_ms === undefined || o.latency_ms === null ? '-' : o.latency_ms + ' ms',
            at(o.since, ref),
            o.streak + '×',
          ];
          rows.push(row(i === 0 ? [server, ...cells] : cells, {
            server: c.server, check: o.check, agent: o.agent, status: o.status,
            http: o.http_status === undefined || o.http_status === null ? '' : String(o.http_status),
            latency: o.latency_ms === undefined || o.latency_ms === null ? '' : String(o.latency_ms),
          }));
        });
      }
      if (!rows.length) {
        box.append(el('p', 'muted', 'no servers probed here'));
      } else {
        box.append(table('grid-table', ['server', 'check', 'observer', 'status', 'HTTP', 'latency',
          'since', 'streak'], rows));
      }
      return box;
    });
  }

  // ---- agents ------------------------------------------------------------------------------

  /** Every agent: site, build, heartbeat age (at the engine's time), buffer, silence. */
  function agents(list) {
    if (!list) return [el('p', 'muted', 'this controller does not report its agents')];
    if (!list.length) return [el('p', 'muted', 'no agents configured')];
    const rows = list.map((a) => {
      const heard = a.last_heartbeat ? age(a.age_ms) + ' ago' : 'never';
      const lastCell = el('td', null, heard);
      if (a.last_heartbeat) lastCell.title = time(a.last_heartbeat);
      const state = a.silent ? 'silent' : (a.last_heartbeat ? 'heartbeating' : 'no heartbeat yet');
      return row([
        a.agent,
        a.site,
        str(a.version),
        lastCell,
        a.heartbeat_interval_ms ? age(a.heartbeat_interval_ms) : '-',
        String(a.buffered || 0),
        String(a.dropped_total || 0),
        el('td', a.silent ? 's-failing' : (a.last_heartbeat ? 's-passing' : 'muted'), state),
      ], {
        agent: a.agent, version: a.version || '', age: a.age_ms === null || a.age_ms === undefined ? '' : String(a.age_ms),
        silent: a.silent ? 'true' : 'false',
      });
    });
    return [table('grid-table', ['agent', 'site', 'version', 'last heartbeat', 'interval',
      'buffered', 'dropped', 'state'], rows)];
  }

  // ---- controllers -------------------------------------------------------------------------

  /** Both controllers of the pair from `status.controllers`; the answering one if absent. */
  function controllers(s) {
    const list = s.controllers;
    const l = s.leader || {};
    if (!Array.isArray(list)) {
      return [
        el('p', null, 'answered by ' + str(l.controller) + ' (' + str(l.role) +
          (l.acting ? ', acting' : '') + (l.epoch !== null && l.epoch !== undefined ? ', epoch ' + l.epoch : '') + ')'),
        el('p', 'muted', 'this controller does not report its peer; upgrade it to see both'),
      ];
    }
    if (!list.length) return [el('p', 'muted', 'no controller has reported its presence yet')];
    const rows = list.map((c) => {
      const role = el('td', 'role-' + (['leader', 'standby'].includes(c.role) ? c.role : 'unknown'),
        str(c.role) + (c.acting ? ' · acting' : ''));
      const seen = el('td', c.fresh ? null : 's-failing',
        (c.age_ms === null || c.age_ms === undefined ? '-' : age(c.age_ms) + ' ago') + (c.fresh ? '' : ' · not fresh'));
      seen.title = time(c.last_seen);
      return row([
        c.controller + (c.controller === l.controller ? ' (answering)' : ''),
        role,
        c.epoch === null || c.epoch === undefined ? '-' : String(c.epoch),
        str(c.version),
        time(c.started_at),
        seen,
      ], { controller: str(c.controller), role: str(c.role), fresh: c.fresh ? 'true' : 'false' });
    });
    return [table('grid-table', ['controller', 'role', 'epoch', 'version', 'started', 'last seen'], rows)];
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

  /** One sentence per event, in the words of `sitewarden history`. */
  function summary(e, controller) {
    switch (e.kind) {
      case 'decision': {
        const ev = e.evidence || {};
        const move = e.from === e.to ? 'stays on ' + str(e.to) : str(e.from) + ' → ' + str(e.to);
        return e.namespace + ': ' + move + ' (rule ' + str(ev.rule) + ': ' + str(ev.note) + ')';
      }
      case 'verdict': return 'site ' + e.site + ': ' + e.from + ' → ' + e.to;
      case 'dag_active_site': return 'DAG ' + e.dag + ': active site ' + str(e.from) + ' → ' + str(e.to);
      case 'override': return actionWords(e.action) + ' by ' + e.who + ': ' + e.why;
      case 'override_rejected': {
        const r = e.request || {};
        return 'refused ' + actionWords(r.action) + ' by ' + r.who + ': ' + e.reason;
      }
      case 'override_expired': return 'expired: ' + e.what;
      case 'leadership': return (controller ? controller + ' ' : '') +
        (e.is_leader ? 'became leader' : 'stopped leading') + ' (epoch ' + e.epoch + ')';
      case 'alert': {
        const a = e.alert || {};
        // As the CLI: no subject in front of a text that already names it.
        const text = str(a.text);
        return '[' + a.severity + '] ' + (text.includes(a.subject) ? '' : a.subject + ': ') + text;
      }
      case 'intent_applied':
      case 'intent_superseded':
        return e.namespace + ' → ' + e.target + ' (generation ' + e.generation + ', epoch ' +
          e.intent_epoch + "'s intent): " + e.why;
      default: {
        // apply_*: the settlement of one write.
        const said = [e.outcome, e.why].filter((w) => w);
        return str(e.namespace) + (e.target ? ' → ' + e.target : '') + ' (generation ' +
          str(e.generation) + '): ' + (said.length ? said.join('; ') : '-');
      }
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

  /**
   * The timeline, newest first: the history's records in the order it answers them (newest
   * first by stream sequence, so events of one engine step keep their causal order). Without
   * a history (the audit stream unreadable), this controller's latest events, newest first.
   */
  function timeline(hist, recent) {
    let items;
    if (hist) {
      items = (hist.records || []).filter((r) => r && r.event)
        .map((r) => ({ at: r.event.engine_at || r.at, event: r.event, controller: r.controller, seq: r.seq }));
    } else {
      items = (recent || []).filter((r) => r && r.event).reverse()
        .map((r) => ({ at: r.at, event: r.event, controller: null, seq: null }));
    }
    const lis = items.filter((x) => TIMELINE_KINDS.includes(x.event.kind)).map((x) => {
      const t = tone(x.event);
      const li = el('li', t || null);
      li.dataset.kind = x.event.kind;
      li.dataset.at = x.at;
      if (x.seq !== null && x.seq !== undefined) li.dataset.seq = String(x.seq);
      const d = new Date(x.at);
      const when = el('span', 'at', isNaN(d) ? '-' : d.toISOString().slice(11, 19));
      when.title = time(x.at);
      li.append(when, el('span', 'kind', x.event.kind.replace(/_/g, ' ')),
        el('span', 'text', summary(x.event, x.controller)));
      return li;
    });
    if (!lis.length) lis.push(el('li', 'muted', 'nothing in the last hour'));
    if (!hist) {
      lis.unshift(el('li', 'muted', 'the history is not readable; showing what this controller saw last'));
    }
    return lis;
  }

  return {
    el, str, time, verdictWord, incidents, servers, agents, controllers, timeline,
    timelineQuery: '/api/v1/history?since=1h&limit=200&kind=' + TIMELINE_KINDS.join(','),
  };
})();
