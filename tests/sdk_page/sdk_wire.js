/* The published wellClient SDK's wire behaviour, for tests (issue 16): the SDK's own files
 * (well-client.js with jQuery, SockJS and stomp.js) are not available offline, so this page
 * speaks to the CTI server as they do, from another origin:
 * - XHR with credentials (jQuery xhrFields / SockJS's XHR), the token of /login in the header
 *   sessionId on every REST call, JSON bodies (so every call is preflighted);
 * - SockJS: GET <prefix>/info, then the WebSocket <prefix>/<server>/<session>/websocket
 *   (on sockjs.html the real sockjs-client 1.1.5 and stomp.js 2.3.3 do it, as in the SDK);
 *   STOMP CONNECT with no header but accept-version and heart-beat (stomp.js's
 *   ws.connect({}, ...)), SUBSCRIBE /topic/csta/agent/<loginId>;
 * - SetState and Logout bodies without loginId; Logout again when the page is closed;
 * - the call memory indexed by callId and device, whose established / held / retrieved /
 *   connectionCleared handlers set a property on the device's entry: an event naming a device
 *   the call's delivered did not introduce throws (the "Cannot set properties of
 *   undefined (setting 'connectionState')"), caught into sdk.errors.
 * With ?sdk=4.2.2 the page does what the last published release (well-client.js 4.2.2) does
 * instead: XHRs WITHOUT credentials (jQuery's default: the cross-origin /login can not set a
 * cookie), the sessionId of /login kept by the page in its own cookie
 * wellclient-cookie-session-id (js-cookie, path /), a heart-beat to
 * /api/csta/agent/heartbeat/<loginId> (every ?beat= ms; the SDK's is 60000), then a native
 * WebSocket to <prefix>/websocket with STOMP straight on it (no SockJS framing), CONNECT
 * without headers, SUBSCRIBE /topic/event.agent.*.<loginId, dots as _>, then Login; SetState
 * and Logout name agentId (no loginId); closing the page only closes the WebSocket. */
(function () {
  'use strict';
  var params = new URLSearchParams(location.search);
  var base = params.get('cti');           // http://127.0.0.1:<port>
  var sdk = {events: [], errors: [], frames: [], connected: false,
             memory: {sessionId: '', agentId: '', deviceId: '', namespace: '', calls: {}}};
  var mem = sdk.memory;
  var socket = null;
  var published = params.get('sdk') === '4.2.2';
  var SESSION_COOKIE = 'wellclient-cookie-session-id';

  function request(method, path, body, form) {
    return new Promise(function (resolve) {
      var x = new XMLHttpRequest();
      x.open(method, base + path, true);
      x.withCredentials = !published;
      if (mem.sessionId) { x.setRequestHeader('sessionId', mem.sessionId); }
      var data = null;
      if (form) {
        x.setRequestHeader('Content-Type', 'application/x-www-form-urlencoded');
        data = new URLSearchParams(body).toString();
      } else if (body) {
        x.setRequestHeader('Content-Type', 'application/json');
        data = JSON.stringify(body);
      }
      x.onload = function () { resolve({status: x.status, text: x.responseText}); };
      x.onerror = function () { resolve({status: 0, text: 'network error (CORS?)'}); };
      x.send(data);
    });
  }

  function entry(e, device) {
    return mem.calls[e.callId][device];   // throws when the SDK never saw the call
  }

  var handlers = {
    serviceInitiated: function (e) {
      mem.calls[e.callId] = mem.calls[e.callId] || {};
      mem.calls[e.callId][e.initiatedDevice] = {connectionState: 'Initiate'};
    },
    originated: function (e) { handlers.delivered(e); },
    delivered: function (e) {
      var call = mem.calls[e.callId] = mem.calls[e.callId] || {};
      [e.callingDevice, e.calledDevice].forEach(function (d) {
        if (d && !call[d]) { call[d] = {connectionState: ''}; }
      });
    },
    established: function (e) { entry(e, e.answeringDevice).connectionState = 'Connect'; },
    held: function (e) { entry(e, e.holdingDevice).connectionState = 'Hold'; },
    retrieved: function (e) { entry(e, e.retrievingDevice).connectionState = 'Connect'; },
    connectionCleared: function (e) {
      if (!mem.calls[e.callId]) { return; }
      entry(e, e.releasingDevice).connectionState = 'None';
      if (e.releasingDevice === mem.deviceId) { delete mem.calls[e.callId]; }
    },
    transferred: function (e) {
      if (e.transferringDevice === mem.deviceId) {
        delete mem.calls[e.primaryOldCall]; delete mem.calls[e.secondaryOldCall];
      }
    },
    conferenced: function (e) {
      var call = mem.calls[e.newCall] = mem.calls[e.newCall] || {};
      call[e.addedParty] = call[e.addedParty] || {connectionState: 'Connect'};
    }
  };

  function onEvent(e) {
    sdk.events.push(e);
    var handle = handlers[e.eventName];
    if (!handle) { return; }
    try { handle(e); } catch (err) { sdk.errors.push(e.eventName + ': ' + err.message); }
  }

  function stompFrame(command, headers) {
    var lines = [command];
    Object.keys(headers).forEach(function (k) { lines.push(k + ':' + headers[k]); });
    return lines.join('\n') + '\n\n\u0000';
  }

  function onStomp(text) {
    text.split('\u0000').forEach(function (raw) {
      raw = raw.replace(/^[\r\n]+/, '');
      if (!raw) { return; }
      var cut = raw.indexOf('\n\n');
      var command = raw.slice(0, raw.indexOf('\n'));
      sdk.frames.push(command);
      if (command === 'CONNECTED') {
        sdk.connected = true;
        socket.send(JSON.stringify([stompFrame('SUBSCRIBE', {
          id: 'sub-0', destination: '/topic/csta/agent/' + mem.agentId})]));
      } else if (command === 'MESSAGE') {
        onEvent(JSON.parse(raw.slice(cut + 2)));
      } else if (command === 'ERROR') {
        sdk.errors.push('STOMP ERROR: ' + raw);
      }
    });
  }

  function connectWithLibraries() {
    // the SDK's own way when SockJS and stomp.js are on the page (sockjs.html): new
    // SockJS(url), Stomp.over(socket), connect({}, ...) with no header, subscribe to the agent
    var client = Stomp.over(new SockJS(base + '/mvc/stomp'));
    client.debug = null;
    client.connect({}, function () {
      sdk.connected = true;
      sdk.frames.push('CONNECTED');
      client.subscribe('/topic/csta/agent/' + mem.agentId, function (message) {
        onEvent(JSON.parse(message.body));
      });
    }, function (error) {
      sdk.errors.push('STOMP: ' + (error && error.headers ? error.headers.message : error));
    });
    return Promise.resolve();
  }

  function connect() {
    if (window.SockJS && window.Stomp) { return connectWithLibraries(); }
    return request('GET', '/mvc/stomp/info').then(function (info) {
      if (info.status !== 200) { throw new Error('SockJS info: ' + info.status); }
      var server = String(Math.floor(Math.random() * 1000));
      var session = Math.random().toString(36).slice(2, 10);
      socket = new WebSocket(base.replace(/^http/, 'ws') + '/mvc/stomp/' + server + '/' +
                             session + '/websocket');
      socket.onmessage = function (m) {
        var data = m.data;
        if (data === 'o') {
          socket.send(JSON.stringify([stompFrame('CONNECT', {
            'accept-version': '1.1,1.0', 'heart-beat': '10000,10000'})]));
        } else if (data.charAt(0) === 'a') {
          JSON.parse(data.slice(1)).forEach(onStomp);
        } else if (data.charAt(0) === 'c') {
          sdk.frames.push('CLOSE ' + data);
        }
      };
    });
  }

  // ---- the published release's way (4.2.2) ----
  function connectRaw() {
    return new Promise(function (resolve) {
      socket = new WebSocket(base.replace(/^http/, 'ws') + '/mvc/stomp/websocket');
      socket.onopen = function () {
        socket.send(stompFrame('CONNECT', {'accept-version': '1.1,1.0',
                                           'heart-beat': '10000,10000'}));
      };
      socket.onmessage = function (m) {
        String(m.data).split('\u0000').forEach(function (raw) {
          raw = raw.replace(/^[\r\n]+/, '');
          if (!raw) { return; }
          var command = raw.slice(0, raw.indexOf('\n'));
          sdk.frames.push(command);
          if (command === 'CONNECTED') {
            sdk.connected = true;
            socket.send(stompFrame('SUBSCRIBE', {
              id: 'sub-0', destination: '/topic/event.agent.*.' +
                mem.agentId.replace(/\./g, '_')}));
            resolve();
          } else if (command === 'MESSAGE') {
            onEvent(JSON.parse(raw.slice(raw.indexOf('\n\n') + 2)));
          } else if (command === 'ERROR') {
            sdk.errors.push('STOMP ERROR: ' + raw);
            resolve();
          }
        });
      };
      socket.onclose = function () {
        sdk.connected = false; sdk.frames.push('CLOSED'); resolve();
      };
    });
  }

  function loginPublished(job, password, namespace, ext) {
    return request('POST', '/login', {username: job, password: password,
                                      namespace: namespace}, true).then(function (r) {
      if (r.status !== 200) { return r; }
      mem.sessionId = JSON.parse(r.text).sessionId;
      document.cookie = SESSION_COOKIE + '=' + encodeURIComponent(mem.sessionId) + '; path=/';
      return sdk.heartbeat().then(connectRaw).then(function () {
        return csta('POST', '/agent/state', {loginId: mem.agentId, device: mem.deviceId,
                                             password: password, agentMode: 'NotReady',
                                             func: 'Login'});
      }).then(function (state) {
        sdk.beat = setInterval(sdk.heartbeat, Number(params.get('beat') || 60000));
        return state;
      });
    });
  }
  sdk.heartbeat = function () {
    return csta('POST', '/agent/heartbeat/' + mem.agentId);
  };

  function csta(method, path, body) { return request(method, '/api/csta' + path, body); }
  function conn(callId) {
    return '/callControl/calls/' + callId + '/connections/' +
      encodeURIComponent(mem.deviceId + '|' + callId);
  }

  sdk.login = function (job, password, namespace, ext) {
    mem.agentId = job + '@' + namespace; mem.deviceId = ext + '@' + namespace;
    mem.namespace = namespace;
    if (published) { return loginPublished(job, password, namespace, ext); }
    return request('POST', '/login', {username: job, password: password,
                                      namespace: namespace}, true).then(function (r) {
      if (r.status !== 200) { return r; }
      mem.sessionId = JSON.parse(r.text).sessionId;
      return csta('POST', '/agent/state', {func: 'Login', loginId: mem.agentId,
                                           device: mem.deviceId, agentMode: 'NotReady'})
        .then(function (state) { return connect().then(function () { return state; }); });
    });
  };
  sdk.setAgentMode = function (mode) {
    if (published) {
      return csta('POST', '/agent/state', {func: 'SetState', device: mem.deviceId,
                                           agentMode: mode, namespace: mem.namespace,
                                           reason: '', agentId: mem.agentId});
    }
    return csta('POST', '/agent/state', {func: 'SetState', device: mem.deviceId,
                                         agentMode: mode, namespace: mem.namespace});
  };
  sdk.logout = function () {
    if (published) {
      return csta('POST', '/agent/state', {func: 'Logout', agentId: mem.agentId});
    }
    return csta('POST', '/agent/state', {func: 'Logout', device: mem.deviceId,
                                         namespace: mem.namespace});
  };
  sdk.answerCall = function (callId) { return csta('POST', conn(callId) + '/answer', {}); };
  sdk.holdCall = function (callId) { return csta('POST', conn(callId) + '/hold', {}); };
  sdk.retrieveCall = function (callId) { return csta('POST', conn(callId) + '/retrieve', {}); };
  sdk.singleStepTransfer = function (callId, to) {
    return csta('POST', conn(callId) + '/singleStepTransfer', {transferTo: to});
  };
  sdk.dropConnection = function (callId) { return csta('DELETE', conn(callId)); };

  // closing the page logs the agent off: the same Logout, sent as a beacon (a page being
  // closed may not wait for an answer; the beacon carries the session cookie)
  window.addEventListener('unload', function () {
    if (published) {  // window.onunload = function () { util.closeWebSocket() }
      if (socket) { socket.close(); }
      return;
    }
    if (mem.deviceId) {
      navigator.sendBeacon(base + '/api/csta/agent/state', JSON.stringify({
        func: 'Logout', device: mem.deviceId, namespace: mem.namespace}));
    }
  });

  window.sdk = sdk;
}());
