/* The agent console as the agent's phone (docs/webrtc.md). After the CTI login the page asks
 * POST /api/webrtc/credentials for a short-lived SIP account (never the directory password)
 * and registers over SIP-over-WebSocket with JsSIP; FreeSWITCH rings it like a desk phone,
 * media is DTLS-SRTP. The CTI controls (hold, transfer, conference, ...) stay wellClient's:
 * they act in the switch, whatever the phone. Here: answer (or auto-answer), hang up, mute,
 * DTMF from the pad, microphone and speaker choice, renewal of the password, re-registration
 * after a network drop (JsSIP reconnects; the registration follows the socket), and the
 * second-tab rule (takeover: the first tab is told at its next renewal and unregisters). */
(function () {
  'use strict';
  var $ = function (id) { return document.getElementById(id); };
  var t = function (k) { return window.i18n ? i18n.t(k) : k; };
  var phone = {state: 'off', ua: null, session: null, others: [], cred: null, device: '', muted: false,
    renewTimer: 0, registrations: 0, renewals: 0, caller: '', error: ''};

  function setState(state, detail) {
    phone.state = state;
    if (detail !== undefined) { phone.error = detail; }
    var badge = $('phoneState');
    if (!badge) { return; }
    $('phoneCard').setAttribute('data-state', state);
    badge.setAttribute('data-i18n', 'ph_' + state);
    badge.textContent = t('ph_' + state);
    badge.title = phone.error || '';
    render();
  }

  function render() {
    var s = phone.session;
    var ringing = !!s && s.direction === 'incoming' && !s.isEstablished() && !s.isEnded();
    var live = !!s && s.isEstablished() && !s.isEnded();
    $('phoneAnswer').disabled = !ringing;
    $('phoneHangup').disabled = !s || s.isEnded();
    $('phoneMute').disabled = !live;
    var key = phone.muted ? 'unmute' : 'mute';
    $('phoneMute').setAttribute('data-i18n', key);
    $('phoneMute').textContent = t(key);
    $('phoneParty').textContent = s ? phone.caller : '';
  }

  function sessionId() {
    return window.wellClient ? wellClient.getCallMemory().sessionId : '';
  }

  function api(method, body, query) {
    return fetch('/api/webrtc/credentials' + (query || ''), {
      method: method, credentials: 'same-origin',
      headers: {'Content-Type': 'application/json', sessionId: sessionId()},
      body: body ? JSON.stringify(body) : undefined
    }).then(function (res) {
      return res.text().then(function (text) {
        var data = {};
        try { data = text ? JSON.parse(text) : {}; } catch (e) { data = {error: text}; }
        if (!res.ok) { throw {status: res.status, error: data.error || res.statusText}; }
        return data;
      });
    });
  }

  // ------------------------------------------------------------ devices --------------
  function fillDevices() {
    if (!navigator.mediaDevices || !navigator.mediaDevices.enumerateDevices) { return; }
    navigator.mediaDevices.enumerateDevices().then(function (devices) {
      [['micSelect', 'audioinput', 'fsapps.mic'], ['speakerSelect', 'audiooutput', 'fsapps.speaker']]
        .forEach(function (spec) {
          var select = $(spec[0]);
          var saved = localStorage.getItem(spec[2]) || '';
          select.textContent = '';
          var none = document.createElement('option');
          none.value = ''; none.textContent = t('defaultDevice');
          select.appendChild(none);
          devices.filter(function (d) { return d.kind === spec[1] && d.deviceId &&
            d.deviceId !== 'default'; }).forEach(function (d, i) {
            var o = document.createElement('option');
            o.value = d.deviceId; o.textContent = d.label || (spec[1] + ' ' + (i + 1));
            select.appendChild(o);
          });
          select.value = saved;
          if (select.value !== saved) { select.value = ''; }
        });
      applySpeaker();
    });
  }

  function applySpeaker() {
    var audio = $('remoteAudio');
    var id = $('speakerSelect').value;
    if (audio.setSinkId) { audio.setSinkId(id || '').catch(function () {}); }
  }

  function mediaConstraints() {
    var mic = $('micSelect').value;
    return {audio: mic ? {deviceId: {exact: mic}} : true, video: false};
  }

  // ------------------------------------------------------------ calls ----------------
  // A call the agent placed from the console (makeCall, consult: the switch rings the agent's
  // own phone first with sip_auto_answer) carries Call-Info answer-after=0: a desk phone
  // answers it by itself, so does this one.
  function placedByAgent(request) {
    var info = request && request.getHeader ? request.getHeader('Call-Info') || '' : '';
    return /answer-after=0/.test(info);
  }

  function onSession(e) {
    var session = e.session;
    if (e.originator !== 'remote') { return; }
    var own = placedByAgent(e.request);
    if (phone.session && !phone.session.isEnded()) {
      // a second call only when the agent placed it (a consult while the first is held)
      if (!own) { session.terminate({status_code: 486, reason_phrase: 'Busy Here'}); return; }
      phone.others.push(phone.session);
    }
    phone.session = session;
    phone.muted = false;
    var who = session.remote_identity;
    phone.caller = (who.display_name ? who.display_name + ' ' : '') + (who.uri ? who.uri.user : '');
    session.on('peerconnection', function (ev) { attach(ev.peerconnection); });
    session.on('accepted', function () { setState('talking'); });
    session.on('confirmed', function () { setState('talking'); });
    session.on('hold', render);
    session.on('unhold', render);
    var done = function () {
      phone.others = phone.others.filter(function (s) { return s !== session && !s.isEnded(); });
      if (phone.session !== session) { render(); return; }
      phone.session = phone.others.pop() || null;
      phone.muted = false;
      if (phone.session && phone.session.connection) {  // back to the call still up
        var tracks = phone.session.connection.getReceivers().map(function (r) { return r.track; });
        $('remoteAudio').srcObject = new MediaStream(tracks);
        setState('talking');
        return;
      }
      $('remoteAudio').srcObject = null;
      setState(phone.ua && phone.ua.isRegistered() ? 'registered' : 'unregistered');
    };
    session.on('ended', done);
    session.on('failed', done);
    setState('ringing');
    if (own || $('autoAnswer').checked) { answer(); }
  }

  function attach(pc) {
    pc.addEventListener('track', function (ev) {
      var audio = $('remoteAudio');
      audio.srcObject = ev.streams && ev.streams[0] ? ev.streams[0] : new MediaStream([ev.track]);
      applySpeaker();
      var played = audio.play && audio.play();
      if (played && played.catch) { played.catch(function () {}); }
    });
  }

  function answer() {
    var s = phone.session;
    if (!s || s.isEstablished() || s.isEnded()) { return false; }
    s.answer({mediaConstraints: mediaConstraints(),
      pcConfig: {iceServers: (phone.cred && phone.cred.iceServers) || []}});
    if (s.connection) { attach(s.connection); }
    return true;
  }

  function hangup() {
    if (phone.session && !phone.session.isEnded()) { phone.session.terminate(); }
  }

  function hangupAll() {
    phone.others.concat(phone.session ? [phone.session] : []).forEach(function (s) {
      if (!s.isEnded()) { s.terminate(); }
    });
  }

  function toggleMute() {
    var s = phone.session;
    if (!s || !s.isEstablished()) { return; }
    if (phone.muted) { s.unmute({audio: true}); } else { s.mute({audio: true}); }
    phone.muted = !phone.muted;
    render();
  }

  function dtmf(tone) {
    var s = phone.session;
    if (!s || !s.isEstablished()) { return false; }
    s.sendDTMF(tone, {transportType: 'RFC2833', duration: 120, interToneGap: 80});
    return true;
  }

  // ------------------------------------------------------------ registration ---------
  function register(cred) {
    phone.cred = cred;
    var sockets = cred.wsServers.map(function (url) { return new JsSIP.WebSocketInterface(url); });
    var ua = new JsSIP.UA({sockets: sockets, uri: cred.uri, authorization_user: cred.authorizationUser,
      password: cred.password, register: true, register_expires: 120, session_timers: false,
      connection_recovery_min_interval: 1, connection_recovery_max_interval: 10,
      user_agent: 'fsapps-console JsSIP'});
    phone.ua = ua;
    ua.on('connecting', function () { if (phone.state !== 'talking') { setState('connecting'); } });
    ua.on('registered', function () {
      phone.registrations += 1;
      if (!phone.session) { setState('registered', ''); }
    });
    ua.on('unregistered', function () { if (phone.ua === ua && !phone.session) { setState('unregistered'); } });
    ua.on('disconnected', function () { if (phone.ua === ua && !phone.session) { setState('connecting'); } });
    ua.on('registrationFailed', function (e) { setState('failed', e.cause || ''); });
    ua.on('newRTCSession', onSession);
    ua.start();
    clearInterval(phone.renewTimer);
    phone.renewTimer = setInterval(renew, Math.max(1, cred.renewAfter) * 1000);
  }

  function renew() {
    api('POST', {device: phone.device, renew: true}).then(function (cred) {
      // the same password while this login holds it; a new lifetime
      if (phone.ua && cred.password !== phone.cred.password) { phone.ua.set('password', cred.password); }
      phone.cred = cred;
      phone.renewals += 1;
    }, function (err) {
      if (err.status === 409) { shutDown('takenOver', err.error); }
    });
  }

  function shutDown(state, why) {
    clearInterval(phone.renewTimer);
    hangupAll();
    if (phone.ua) { phone.ua.stop(); }  // unregisters, closes the socket
    phone.ua = null;
    setState(state, why || '');
  }

  /** After the CTI login: the SIP account of ``device`` (ext@domain), then REGISTER. */
  function start(device) {
    phone.device = device;
    if (!window.JsSIP) { setState('off', 'JsSIP not loaded (/vendor/jssip.min.js)'); return Promise.resolve(false); }
    return api('POST', {device: device}).then(function (cred) {
      $('phoneCard').hidden = false;
      register(cred);
      return true;
    }, function (err) {
      // 404: no WebRTC on this server; 409 on a desk-phone extension: the card stays hidden
      if (err.status === 409 && /in use/.test(err.error || '')) {
        $('phoneCard').hidden = false;
        setState('refused', err.error);
      } else {
        setState('off', err.error || '');
      }
      return false;
    });
  }

  /** Before the CTI logout: unregister and give the password back. */
  function stop() {
    var device = phone.device;
    shutDown('off');
    if (!device) { return Promise.resolve(); }
    return api('DELETE', null, '?device=' + encodeURIComponent(device)).catch(function () {});
  }

  /** Audio packets of the call's peer connection (the tests read it; so can a status line). */
  function stats() {
    var pc = phone.session && phone.session.connection;
    if (!pc) { return Promise.resolve({packetsReceived: 0, packetsSent: 0}); }
    return pc.getStats().then(function (report) {
      var out = {packetsReceived: 0, packetsSent: 0, codec: '', dtlsState: '', srtpCipher: '',
        localAddress: '', remoteAddress: ''};
      var pair = null;
      report.forEach(function (r) {
        if (r.type === 'inbound-rtp' && r.kind === 'audio') { out.packetsReceived += r.packetsReceived || 0; }
        if (r.type === 'outbound-rtp' && r.kind === 'audio') { out.packetsSent += r.packetsSent || 0; }
        if (r.type === 'codec' && !out.codec) { out.codec = r.mimeType; }
        if (r.type === 'transport') {
          out.dtlsState = r.dtlsState || ''; out.srtpCipher = r.srtpCipher || '';
          if (r.selectedCandidatePairId) { pair = report.get(r.selectedCandidatePairId); }
        }
      });
      if (pair) {
        var local = report.get(pair.localCandidateId), remote = report.get(pair.remoteCandidateId);
        out.localAddress = local ? (local.address || local.ip || '') : '';
        out.localType = local ? local.candidateType || '' : '';
        out.remoteAddress = remote ? (remote.address || remote.ip || '') : '';
      }
      return out;
    });
  }

  function wire() {
    $('phoneAnswer').addEventListener('click', answer);
    $('phoneHangup').addEventListener('click', hangup);
    $('phoneMute').addEventListener('click', toggleMute);
    var auto = $('autoAnswer');
    auto.checked = localStorage.getItem('fsapps.autoAnswer') === '1';
    auto.addEventListener('change', function () { localStorage.setItem('fsapps.autoAnswer', auto.checked ? '1' : '0'); });
    $('micSelect').addEventListener('change', function () { localStorage.setItem('fsapps.mic', $('micSelect').value); });
    $('speakerSelect').addEventListener('change', function () {
      localStorage.setItem('fsapps.speaker', $('speakerSelect').value); applySpeaker();
    });
    if (navigator.mediaDevices && navigator.mediaDevices.addEventListener) {
      navigator.mediaDevices.addEventListener('devicechange', fillDevices);
    }
    // back online: JsSIP retries on its own timer; try at once
    window.addEventListener('online', function () {
      if (phone.ua && !phone.ua.isConnected()) { phone.ua.start(); }
    });
    if (window.i18n && i18n.onChange) { i18n.onChange(function () { setState(phone.state); }); }
    fillDevices();
    render();
  }

  phone.start = start;
  phone.stop = stop;
  phone.answer = answer;
  phone.hangup = hangup;
  phone.dtmf = dtmf;
  phone.stats = stats;
  phone.ringing = function () {
    var s = phone.session;
    return !!s && s.direction === 'incoming' && !s.isEstablished() && !s.isEnded();
  };
  phone.inCall = function () { return !!phone.session && phone.session.isEstablished(); };
  window.fsappsPhone = phone;
  wire();
})();
