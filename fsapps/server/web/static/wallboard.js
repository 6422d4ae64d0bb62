/* The supervisor wallboard: a snapshot from /api/csta/wallboard, refreshed whenever the domain's
 * event stream (/topic/csta/domain/<domain>) says something changed; times tick locally. */
(function () {
  'use strict';
  var $ = function (id) { return document.getElementById(id); };
  var t = function (k) { return i18n.t(k); };
  var board = null, fetchedAt = 0, pending = null, domain = '', myDevice = '';
  var boardFailed = false;  // the last snapshot failed: what is shown is stale (Offline)
  var notice = window.fsappsNotice;

  function clock(ms) {
    var s = Math.max(0, Math.floor(ms / 1000));
    var h = Math.floor(s / 3600), m = Math.floor(s / 60) % 60, sec = s % 60;
    var mm = (m < 10 ? '0' : '') + m + ':' + (sec < 10 ? '0' : '') + sec;
    return h ? h + ':' + mm : mm;
  }
  function short(d) { return String(d || '').split('@')[0]; }
  function cell(text, cls) {
    var td = document.createElement('td');
    if (cls) { td.className = cls; }
    td.textContent = text;
    return td;
  }
  function stateCell(value, label) {
    var td = document.createElement('td');
    var span = document.createElement('span');
    span.className = 'state';
    span.setAttribute('data-s', value);
    span.textContent = label;
    td.appendChild(span);
    return td;
  }
  function empty(body, cols) {
    var tr = document.createElement('tr');
    var td = cell('—', 'empty');
    td.colSpan = cols;
    tr.appendChild(td);
    body.appendChild(tr);
  }

  function refresh() {
    if (pending) { return; }
    pending = wellClient.wallboard(domain).done(function (data) {
      board = data; fetchedAt = Date.now(); boardFailed = false;
      notice.clear('board');
      render();
    }).fail(function (res) {
      boardFailed = true;
      notice.show(t('boardFailed'), res, 'board');
      tick();
    }).always(function () { pending = null; });
  }

  function render() {
    if (!board) { return; }
    var age = Date.now() - fetchedAt;
    var longest = 0;
    var gBody = $('groups').tBodies[0];
    gBody.textContent = '';
    board.groups.forEach(function (g) {
      var wait = g.waiting ? g.longestWaitMs + age : 0;
      longest = Math.max(longest, wait);
      var tr = document.createElement('tr');
      tr.setAttribute('data-group', g.group);
      tr.appendChild(cell(g.group + (g.name && g.name !== g.group ? ' · ' + g.name : '')));
      tr.appendChild(cell(String(g.waiting), g.waiting ? 'wait-hot' : ''));
      tr.appendChild(cell(g.waiting ? clock(wait) : '—', wait > 60000 ? 'wait-hot' : ''));
      tr.appendChild(cell(String(g.ready)));
      tr.appendChild(cell(String(g.members)));
      // the last 15 minutes (docs/stats.md): service level, average speed of answer, abandoned
      var sl = g.serviceLevel === null || g.serviceLevel === undefined ? '—'
        : Math.round(g.serviceLevel * 100) + ' %';
      tr.appendChild(cell(sl, g.serviceLevel !== null && g.serviceLevel < 0.8 ? 'wait-hot' : ''))
        .setAttribute('title', '< ' + g.serviceLevelSeconds + ' s');
      tr.appendChild(cell(g.asaSeconds === null || g.asaSeconds === undefined ? '—'
        : g.asaSeconds.toFixed(1) + ' s'));
      tr.appendChild(cell(String(g.abandoned || 0), g.abandoned ? 'wait-hot' : ''));
      gBody.appendChild(tr);
    });
    if (!board.groups.length) { empty(gBody, 8); }
    var aBody = $('agents').tBodies[0];
    aBody.textContent = '';
    board.agents.forEach(function (a) {
      var tr = document.createElement('tr');
      tr.setAttribute('data-agent', a.extension);
      tr.appendChild(cell(a.extension));
      tr.appendChild(cell(a.job || '—'));
      var s = a.state === 'ready' && a.seat === 'busy' ? 'busy' : a.state;
      tr.appendChild(stateCell(s, t('st_' + s)));
      tr.appendChild(cell(a.sinceMs ? clock(a.sinceMs + age) : '—'));
      tr.appendChild(cell(a.groups.join(', ') || '—'));
      aBody.appendChild(tr);
    });
    if (!board.agents.length) { empty(aBody, 5); }
    var cBody = $('calls').tBodies[0];
    cBody.textContent = '';
    board.calls.forEach(function (c) {
      var tr = document.createElement('tr');
      tr.setAttribute('data-call', c.callId);
      tr.setAttribute('data-status', c.status);
      tr.appendChild(cell(short(c.calling)));
      tr.appendChild(cell(short(c.called)));
      var parties = document.createElement('td');
      c.parties.forEach(function (p) {
        var span = document.createElement('span');
        span.className = 'state';
        span.setAttribute('data-s', p.state);
        span.textContent = short(p.device);
        parties.appendChild(span);
        parties.appendChild(document.createTextNode(' '));
      });
      tr.appendChild(parties);
      tr.appendChild(cell(c.callId.slice(0, 8), 'mono'));
      var td = document.createElement('td');
      var btns = document.createElement('div');
      btns.className = 'btns';
      [['listen', 'listen'], ['whisper', 'whisper'], ['barge', 'barge']].forEach(function (m) {
        var b = document.createElement('button');
        b.type = 'button';
        b.className = 'sup-' + m[0];
        b.textContent = t(m[1]);
        b.addEventListener('click', function () {
          wellClient.forceListen(c.callId, myDevice, m[0]).fail(notice.failed(t(m[1])));
        });
        btns.appendChild(b);
      });
      var h = document.createElement('button');
      h.type = 'button';
      h.className = 'bad sup-hangup';
      h.textContent = t('hangup');
      h.addEventListener('click', function () {
        wellClient.forceHangup(c.callId).fail(notice.failed(t('hangup')));
      });
      btns.appendChild(h);
      td.appendChild(btns);
      tr.appendChild(td);
      cBody.appendChild(tr);
    });
    if (!board.calls.length) { empty(cBody, 5); }
    // the server counts each figure once: an agent in two groups is one free agent, and
    // queued and ringing calls are not talking calls
    var sum = board.summary;
    $('statWaiting').textContent = String(sum.waiting);
    $('statLongest').textContent = clock(longest);
    $('statLongest').parentNode.classList.toggle('alert', longest > 60000);
    $('statReady').textContent = String(sum.readyAgents);
    $('statRinging').textContent = String(sum.ringing);
    $('statCalls').textContent = String(sum.talking);
  }

  function tick() {
    render();
    var ok = wellClient.getCallMemory().connected && !boardFailed;
    $('liveState').setAttribute('data-mode', ok ? 'Ready' : 'NotReady');
    $('liveText').setAttribute('data-i18n', ok ? 'live' : 'offline');
    $('liveText').textContent = t(ok ? 'live' : 'offline');
    $('clock').textContent = new Date().toLocaleTimeString();
  }

  i18n.apply();
  $('lang').addEventListener('click', function () { i18n.toggle(); render(); });
  var params = new URLSearchParams(location.search);
  // (none: empty, and /login answers the server's default domain)
  $('domain').value = params.get('domain') || localStorage.getItem('fsapps.domain') || '';
  $('user').value = params.get('user') || '';
  $('myDevice').value = params.get('device') || '';
  wellClient.setConfig({debug: false, useWsLog: false});
  wellClient.onLog = function (log) {
    // what fails in the background: the event stream refused (a domain not overseen)
    if (log.type === 'error' && /^STOMP error/.test(log.content)) {
      notice.show(t('linkProblem'), log.content);
    }
  };
  wellClient.exports = function () {
    // every change in the domain: fetch the snapshot again (coalesced)
    setTimeout(refresh, 150);
  };
  $('loginForm').addEventListener('submit', function (ev) {
    ev.preventDefault();
    $('loginError').textContent = '';
    var dev = $('myDevice').value.trim();
    wellClient.signIn($('user').value.trim(), $('password').value,
      $('domain').value.trim()).done(function (res) {
      domain = res.namespace;  // the one asked for, or the server's default
      myDevice = dev.indexOf('@') > 0 ? dev : dev + '@' + domain;
      $('loginPanel').hidden = true;
      $('board').hidden = false;
      $('who').hidden = false;
      $('supLabel').textContent = res.username + ' · ' + short(myDevice) + ' · ' + domain;
      document.body.setAttribute('data-phase', 'board');
      wellClient.watchDomain(domain);
      refresh();
      setInterval(refresh, 15000);
      setInterval(tick, 1000);
    }).fail(function (res) {
      $('loginError').textContent = t('loginFailed') + ': ' + notice.message(res);
    });
  });
})();
