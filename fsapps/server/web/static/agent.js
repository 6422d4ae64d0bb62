/* The agent page: drives wellClient and shows what its events say. */
(function () {
  'use strict';
  var $ = function (id) { return document.getElementById(id); };
  var t = function (k) { return i18n.t(k); };
  var state = {mainCall: '', consultCall: '', callStart: 0, consultStart: 0, held: false,
    phase: 'idle', peer: '', modeSince: 0, mode: 'Logout'};

  function short(device) { return String(device || '').split('@')[0]; }
  function clock(ms) {
    var s = Math.max(0, Math.floor(ms / 1000));
    var h = Math.floor(s / 3600), m = Math.floor(s / 60) % 60, sec = s % 60;
    var mm = (m < 10 ? '0' : '') + m + ':' + (sec < 10 ? '0' : '') + sec;
    return h ? h + ':' + mm : mm;
  }
  function me() { return wellClient.getCallMemory().deviceId; }

  function logEvent(e) {
    var li = document.createElement('li');
    var time = document.createElement('span');
    time.className = 'time';
    time.textContent = (e.eventTime || '').split(' ')[1] || '';
    var name = document.createElement('span');
    name.className = 'name';
    name.textContent = e.eventName;
    var detail = document.createElement('span');
    detail.className = 'detail';
    detail.textContent = [short(e.deviceId), e.localState || e.agentMode || ''].join(' ');
    li.appendChild(time); li.appendChild(name); li.appendChild(detail);
    var log = $('eventLog');
    log.insertBefore(li, log.firstChild);
    while (log.children.length > 60) { log.removeChild(log.lastChild); }
  }

  // ------------------------------------------------------------ render ---------------
  function setPhase(phase) {
    state.phase = phase;
    $('callCard').setAttribute('data-state', phase);
    $('callState').setAttribute('data-i18n', phase);
    $('callState').textContent = t(phase);
    render();
  }

  function render() {
    var p = state.phase;
    var inCall = !!state.mainCall;
    var consulting = !!state.consultCall;
    $('answer').disabled = p !== 'ringing';
    $('hold').disabled = !(p === 'talking' || p === 'held') || consulting;
    $('hold').textContent = state.held ? t('retrieve') : t('hold');
    $('hold').setAttribute('data-i18n', state.held ? 'retrieve' : 'hold');
    ['sTran', 'sConf', 'ask'].forEach(function (id) {
      $(id).disabled = !(p === 'talking' || p === 'held' || p === 'conference') || consulting;
    });
    ['tran', 'conf', 'cancelAsk'].forEach(function (id) {
      $(id).hidden = !consulting;
      $(id).disabled = !consulting;
    });
    $('dropCon').disabled = !inCall && !consulting;
    $('make').disabled = inCall;
    var call = inCall ? wellClient.getCallMemory().calls[state.mainCall] : null;
    $('callId').textContent = state.mainCall || '—';
    $('callCaller').textContent = call ? short(call.callingDevice) || '—' : '—';
    $('callCalled').textContent = call ? short(call.calledDevice) || '—' : '—';
    $('callParty').textContent = inCall ? (state.peer || short(call && call.callingDevice)) : t('noCall');
    $('consultBox').hidden = !consulting;
    renderUserData(call);
  }

  function renderUserData(call) {
    var body = $('userData').tBodies[0];
    body.textContent = '';
    var data = (call && call.userData) || {};
    Object.keys(data).forEach(function (k) {
      var tr = document.createElement('tr');
      var a = document.createElement('th'); a.textContent = k;
      var b = document.createElement('td'); b.textContent = data[k];
      tr.appendChild(a); tr.appendChild(b); body.appendChild(tr);
    });
  }

  function renderMode(mode, keepSince) {
    if (!keepSince || !state.modeSince) { state.modeSince = Date.now(); }
    state.mode = mode;
    var pill = $('agentState');
    pill.setAttribute('data-mode', mode);
    var key = mode === 'Ready' ? 'ready' : mode === 'Logout' ? 'loggedOut' : 'notReady';
    $('agentStateText').setAttribute('data-i18n', key);
    $('agentStateText').textContent = t(key);
    var next = mode === 'Ready' ? 'NotReady' : 'Ready';
    $('setMode').setAttribute('data-next', next);
    $('setMode').setAttribute('data-i18n', next === 'Ready' ? 'setReady' : 'setNotReady');
    $('setMode').textContent = t(next === 'Ready' ? 'setReady' : 'setNotReady');
  }

  function tick() {
    if (state.mainCall && state.callStart) { $('callTimer').textContent = clock(Date.now() - state.callStart); }
    else if (!state.mainCall) { $('callTimer').textContent = '00:00'; }
    if (state.consultCall && state.consultStart) { $('consultTimer').textContent = clock(Date.now() - state.consultStart); }
    if (state.modeSince) { $('agentSince').textContent = clock(Date.now() - state.modeSince); }
    var ok = wellClient.getCallMemory().connected;
    $('linkState').setAttribute('data-ok', ok ? '1' : '0');
    $('linkState').setAttribute('data-i18n-title', ok ? 'connected' : 'disconnected');
    $('linkState').title = t(ok ? 'connected' : 'disconnected');
  }

  // ------------------------------------------------------------ events ---------------
  function onEvent(e) {
    logEvent(e);
    var mine = e.deviceId === me();
    switch (e.eventName) {
      case 'agentLoggedOn': case 'agentReady': case 'agentNotReady':
        renderMode(e.agentMode, e.agentMode === state.mode); break;
      case 'agentLoggedOff':
        renderMode('Logout'); break;
      case 'serviceInitiated':
        if (!state.mainCall) { state.mainCall = e.callId; state.callStart = Date.now(); setPhase('dialing'); }
        else if (e.callId !== state.mainCall) { state.consultCall = e.callId; state.consultStart = Date.now(); render(); }
        break;
      case 'originated':
        if (e.callId === state.consultCall) { $('consultParty').textContent = short(e.calledDevice); }
        else { state.peer = short(e.calledDevice); render(); }
        break;
      case 'delivered':
        if (mine && !state.mainCall) {
          state.mainCall = e.callId; state.callStart = Date.now();
          state.peer = short(e.callingDevice); setPhase('ringing');
        } else if (!mine && e.callId === state.mainCall && state.phase === 'dialing') {
          state.peer = short(e.alertingDevice); render();
        }
        break;
      case 'established':
        if (e.callId === state.mainCall) {
          if (mine) { state.callStart = Date.now(); }
          if (!mine) { state.peer = short(e.answeringDevice); }
          if (mine || state.phase === 'dialing') { setPhase(state.held ? 'held' : 'talking'); }
        } else if (e.callId === state.consultCall && !mine) {
          state.consultStart = Date.now();
          $('consultParty').textContent = short(e.answeringDevice);
        }
        break;
      case 'held':
        if (e.callId === state.mainCall && mine) { state.held = true; setPhase('held'); }
        break;
      case 'retrieved':
        if (e.callId === state.mainCall && mine) { state.held = false; setPhase('talking'); }
        break;
      case 'conferenced':
        if (e.callId === state.mainCall) { state.consultCall = ''; state.held = false; setPhase('conference'); }
        break;
      case 'transferred':
        if (e.transferringDevice === me()) { clearCall(); }
        break;
      case 'connectionCleared':
        if (mine && e.callId === state.consultCall) { state.consultCall = ''; render(); }
        else if (mine && e.callId === state.mainCall) {
          if (state.consultCall) { state.mainCall = state.consultCall; state.consultCall = ''; setPhase('talking'); }
          else { clearCall(); }
        } else if (e.callId === state.consultCall && !mine) { /* consulted party left */ render(); }
        break;
    }
  }

  function clearCall() {
    state.mainCall = ''; state.consultCall = ''; state.held = false; state.peer = '';
    state.callStart = 0; setPhase('idle');
  }

  // every failed request: on the error line (with the server's message) and in the log
  function failed(what) {
    return function (res) {
      window.fsappsNotice.show(t(what), res);
      logEvent({eventName: '⚠ ' + window.fsappsNotice.message(res), eventTime: ''});
    };
  }

  function wire() {
    i18n.apply();
    $('lang').addEventListener('click', function () { i18n.toggle(); render(); renderMode(state.mode, true); });
    var params = new URLSearchParams(location.search);
    // (none: empty, and /login answers the server's default domain)
    $('domain').value = params.get('domain') || localStorage.getItem('fsapps.domain') || '';
    $('job').value = params.get('job') || localStorage.getItem('fsapps.job') || '';
    $('ext').value = params.get('ext') || localStorage.getItem('fsapps.ext') || '';
    wellClient.setConfig({debug: false, useWsLog: false});
    wellClient.exports = onEvent;
    wellClient.onLog = function (log) {
      // what fails in the background: heart-beats, the event stream refused
      if (log.type === 'error' && /heartbeat|^STOMP error/.test(log.content)) {
        window.fsappsNotice.show(t('linkProblem'), log.content);
      }
    };

    $('loginForm').addEventListener('submit', function (ev) {
      ev.preventDefault();
      $('loginError').textContent = '';
      $('login').disabled = true;
      var job = $('job').value.trim(), dom = $('domain').value.trim(), ext = $('ext').value.trim();
      wellClient.login(job, $('password').value, dom, ext).done(function () {
        dom = wellClient.getCallMemory().domain;  // the one asked for, or the server's default
        $('domain').value = dom;
        localStorage.setItem('fsapps.domain', dom);
        localStorage.setItem('fsapps.job', job);
        localStorage.setItem('fsapps.ext', ext);
        document.body.setAttribute('data-phase', 'work');
        $('loginPanel').hidden = true;
        $('workspace').hidden = false;
        $('who').hidden = false;
        $('agentLabel').textContent = job + ' · ' + ext + ' · ' + dom;
        $('password').value = '';
        renderMode('NotReady');
        setPhase('idle');
        // the browser phone, when the server has one for this extension (phone.js)
        if (window.fsappsPhone) { window.fsappsPhone.start(ext + '@' + dom); }
      }).fail(function (res) {
        $('loginError').textContent = t('loginFailed') + ': ' + window.fsappsNotice.message(res);
      }).always(function () { $('login').disabled = false; });
    });

    $('setMode').addEventListener('click', function () {
      var next = $('setMode').getAttribute('data-next');
      wellClient.setAgentMode(next).fail(failed(next === 'Ready' ? 'setReady' : 'setNotReady'));
    });
    $('logout').addEventListener('click', function () {
      // the browser phone first: its password is given back while the token still works
      var phoneDone = window.fsappsPhone ? window.fsappsPhone.stop() : Promise.resolve();
      phoneDone.then(function () {
        wellClient.logout().done(function () { location.reload(); }).fail(failed('logoutFailed'));
      });
    });
    $('make').addEventListener('click', function () {
      var n = $('number').value.trim();
      if (n) { wellClient.makeCall(n).fail(failed('make')); }
    });
    $('number').addEventListener('keydown', function (ev) { if (ev.key === 'Enter') { $('make').click(); } });
    $('answer').addEventListener('click', function () {
      // a browser phone answers here; a desk phone is told to by the switch
      if (window.fsappsPhone && window.fsappsPhone.ringing()) { window.fsappsPhone.answer(); return; }
      wellClient.answerCall(state.mainCall).fail(failed('answer'));
    });
    $('hold').addEventListener('click', function () {
      var what = state.held ? 'retrieve' : 'hold';
      (state.held ? wellClient.retrieveCall(state.mainCall) : wellClient.holdCall(state.mainCall)).fail(failed(what));
    });
    $('sTran').addEventListener('click', function () {
      var n = $('number').value.trim();
      if (n) { wellClient.singleStepTransfer(state.mainCall, n).fail(failed('sTran')); }
    });
    $('sConf').addEventListener('click', function () {
      var n = $('number').value.trim();
      if (n) { wellClient.singleStepConference(state.mainCall, n, 'Active').fail(failed('sConf')); }
    });
    $('ask').addEventListener('click', function () {
      var n = $('number').value.trim();
      if (!n) { return; }
      wellClient.consult(state.mainCall, n).done(function (res) {
        state.consultCall = res.callId; state.consultStart = Date.now();
        $('consultParty').textContent = n; render();
      }).fail(failed('ask'));
    });
    $('tran').addEventListener('click', function () {
      wellClient.transferCall(state.mainCall, state.consultCall).fail(failed('tran'));
    });
    $('conf').addEventListener('click', function () {
      wellClient.conference(state.mainCall, state.consultCall).fail(failed('conf'));
    });
    $('cancelAsk').addEventListener('click', function () {
      wellClient.cancelConsult(state.mainCall, state.consultCall).done(function () {
        state.consultCall = ''; render();
      }).fail(failed('cancelAsk'));
    });
    $('dropCon').addEventListener('click', function () {
      wellClient.dropConnection(state.consultCall || state.mainCall).fail(failed('dropCon'));
    });
    Array.prototype.forEach.call($('pad').querySelectorAll('button'), function (b) {
      b.addEventListener('click', function () {
        // in a browser-phone call the pad sends DTMF (RFC 2833), else it dials
        if (window.fsappsPhone && window.fsappsPhone.dtmf(b.textContent)) { return; }
        $('number').value += b.textContent;
      });
    });
    $('padClear').addEventListener('click', function () { $('number').value = $('number').value.slice(0, -1); });
    $('userDataForm').addEventListener('submit', function (ev) {
      ev.preventDefault();
      var k = $('udKey').value.trim();
      if (!k || !state.mainCall) { return; }
      var entry = {key: k, value: $('udValue').value};
      wellClient.setCallData(state.mainCall, [entry]).done(function () {
        var call = wellClient.getCallMemory().calls[state.mainCall];
        if (call) { call.userData[entry.key] = entry.value; }
        $('udKey').value = ''; $('udValue').value = ''; render();
      }).fail(failed('userDataFailed'));
    });
    setInterval(tick, 500);
    render();
  }

  window.fsappsAgent = {state: state};
  wire();
})();
