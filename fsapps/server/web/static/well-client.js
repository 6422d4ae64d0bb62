/*
 * well-client.js — fsapps' wellClient SDK (seed 004 API), no dependencies.
 *
 * Same method names, arguments and events as the wellClient SDK: setConfig, login, logout,
 * setAgentMode, makeCall, answerCall, dropConnection, holdCall, retrieveCall,
 * singleStepTransfer, singleStepConference, consult, conference, cancelConsult, transferCall,
 * setCallData, on, exports, onLog, force*, getCallMemory, log, error, setDebug, isPhoneNumber.
 * Every call returns a Promise that also has .done(fn) and .fail(fn) (jQuery style), so both
 * `wellClient.login(...).done(...).fail(...)` and `await wellClient.login(...)` work.
 *
 * Events arrive over SockJS (WebSocket transport, with xhr-polling as fallback) carrying
 * STOMP 1.1: the client subscribes to /topic/csta/agent/<job>@<domain>.
 */
(function (root) {
  'use strict';

  var EVENTS = ['agentLoggedOn', 'agentLoggedOff', 'agentReady', 'agentNotReady',
    'serviceInitiated', 'originated', 'delivered', 'established', 'connectionCleared',
    'transferred', 'conferenced', 'retrieved', 'held'];

  var config = {
    debug: true,
    SDK: root.location ? root.location.host : '',
    TPI: root.location ? root.location.host + '/login' : '/login',
    protocol: root.location && root.location.protocol === 'https:' ? 'https' : 'http',
    useWsLog: true,
    clickCallClass: 'well-canBeCalled',
    hideButton: [],
    enableAlert: false,
    heartbeatSeconds: 30,
    reconnectSeconds: 3
  };

  var handlers = {};
  var memory = emptyMemory();
  var stomp = null;
  var heartbeatTimer = null;

  function emptyMemory() {
    return {
      sessionId: '', user: null, agentId: '', jobNumber: '', domain: '', deviceId: '',
      agentMode: 'Logout', agentModeSince: 0, calls: Object.create(null), eventLog: [],
      connected: false
    };
  }

  // ------------------------------------------------------------------ logging ---------
  function emitLog(type, args) {
    var content = Array.prototype.map.call(args, function (a) {
      return typeof a === 'string' ? a : JSON.stringify(a);
    }).join(' ');
    if (typeof wellClient.onLog === 'function') {
      try { wellClient.onLog({type: type, content: content}); } catch (e) { /* user code */ }
    }
    if (config.debug && root.console) {
      (type === 'error' ? root.console.error : root.console.log).call(root.console,
        '[wellClient] ' + content);
    }
    if (type === 'alert' && config.enableAlert && root.alert) { root.alert(content); }
  }

  // ------------------------------------------------------------------ promises --------
  function deferred(promise) {
    promise.done = function (fn) { promise.then(fn, function () {}); return promise; };
    promise.fail = function (fn) { promise.then(null, fn); return promise; };
    promise.always = function (fn) { promise.then(fn, fn); return promise; };
    var then = promise.then;
    promise.then = function (a, b) { return deferred(then.call(promise, a, b)); };
    promise['catch'] = function (b) { return promise.then(null, b); };
    return promise;
  }

  function rejected(message) {
    emitLog('error', [message]);
    return deferred(Promise.reject({status: 0, error: message, responseJSON: {error: message}}));
  }

  function baseUrl() {
    var host = config.SDK || (root.location ? root.location.host : '');
    return host ? config.protocol + '://' + host : '';
  }

  function request(method, path, body, form) {
    var headers = {};
    var payload;
    if (memory.sessionId) { headers.sessionId = memory.sessionId; }
    if (form) {
      headers['Content-Type'] = 'application/x-www-form-urlencoded';
      payload = Object.keys(form).map(function (k) {
        return encodeURIComponent(k) + '=' + encodeURIComponent(form[k]);
      }).join('&');
    } else if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      payload = JSON.stringify(body);
    }
    var url = path.indexOf('://') > 0 ? path : baseUrl() + path;
    return deferred(fetch(url, {method: method, headers: headers, body: payload,
      credentials: 'same-origin'}).then(function (response) {
      return response.text().then(function (text) {
        var data = null;
        if (text) { try { data = JSON.parse(text); } catch (e) { data = {text: text}; } }
        if (!response.ok) {
          var failure = {status: response.status, error: (data && data.error) || response.statusText,
            responseJSON: data};
          emitLog('error', [method + ' ' + path + ' -> ' + response.status + ' ' + failure.error]);
          throw failure;
        }
        return data || {};
      });
    }));
  }

  function csta(method, path, body) { return request(method, '/api/csta' + path, body); }

  function enc(text) { return encodeURIComponent(text); }

  function connection(callId, deviceId) {
    return '/callControl/calls/' + enc(callId) + '/connections/' + enc((deviceId || memory.deviceId) + '|' + callId);
  }

  function withDomain(number) {
    number = String(number || '').trim();
    return number.indexOf('@') > 0 ? number : number + '@' + memory.domain;
  }

  // ------------------------------------------------------------------ call memory -----
  function track(event) {
    memory.eventLog.push({eventName: event.eventName, callId: event.callId, serial: event.serial,
      eventTime: event.eventTime});
    if (memory.eventLog.length > 200) { memory.eventLog.shift(); }
    var name = event.eventName;
    if (name === 'agentLoggedOn' || name === 'agentReady' || name === 'agentNotReady' ||
        name === 'agentLoggedOff') {
      memory.agentMode = event.agentMode || memory.agentMode;
      memory.agentModeSince = Date.now();
      return;
    }
    if (!event.callId) { return; }
    var call = memory.calls[event.callId];
    if (!call) {
      // maps keyed by what the server sends have no prototype: a key such as __proto__ is
      // just a key, never a way to change every object of the page
      call = memory.calls[event.callId] = {callId: event.callId, devices: Object.create(null),
        userData: Object.create(null),
        createTime: Date.now(), callingDevice: '', calledDevice: '', establishedTime: 0};
    }
    if (event.callingDevice) { call.callingDevice = event.callingDevice; }
    if (event.calledDevice) { call.calledDevice = event.calledDevice; }
    if (event.userData) { Object.assign(call.userData, event.userData); }
    if (event.deviceId) {
      if (name === 'connectionCleared') { delete call.devices[event.deviceId]; }
      else { call.devices[event.deviceId] = event.localState || ''; }
    }
    if (name === 'established' && event.deviceId === memory.deviceId) { call.establishedTime = Date.now(); }
    if (name === 'transferred' && event.transferringDevice === memory.deviceId) {
      delete memory.calls[event.primaryOldCall];
      delete memory.calls[event.secondaryOldCall];
      return;
    }
    if (name === 'connectionCleared' && (event.deviceId === memory.deviceId ||
        Object.keys(call.devices).length === 0)) {
      delete memory.calls[event.callId];
    }
  }

  function dispatch(event) {
    track(event);
    var list = handlers[event.eventName] || [];
    list.slice().forEach(function (fn) {
      try { fn(event); } catch (e) { emitLog('error', ['handler of ' + event.eventName + ': ' + e]); }
    });
    if (typeof wellClient.exports === 'function') {
      try { wellClient.exports(event); } catch (e) { emitLog('error', ['exports: ' + e]); }
    }
    if (event.eventType === 'wallboard' && handlers['*']) { return; }
    (handlers['*'] || []).forEach(function (fn) { try { fn(event); } catch (e) { /* */ } });
  }

  // ------------------------------------------------------------------ STOMP / SockJS --
  function randomId(n) {
    var s = '';
    var chars = 'abcdefghijklmnopqrstuvwxyz0123456789';
    for (var i = 0; i < n; i++) { s += chars.charAt(Math.floor(Math.random() * chars.length)); }
    return s;
  }

  function encodeFrame(command, headers, body) {
    var lines = [command];
    Object.keys(headers || {}).forEach(function (k) {
      var v = String(headers[k]);
      if (command !== 'CONNECT') { v = v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/:/g, '\\c'); }
      lines.push(k + ':' + v);
    });
    return lines.join('\n') + '\n\n' + (body || '') + '\u0000';
  }

  function unescapeHeader(v) {
    return v.replace(/\\(.)/g, function (m, c) {
      return c === 'n' ? '\n' : c === 'c' ? ':' : c === 'r' ? '\r' : c;
    });
  }

  function StompOverSockJs(destination, onEvent) {
    this.destination = destination;
    this.onEvent = onEvent;
    this.buffer = '';
    this.closedByUser = false;
    this.transport = null;
  }

  StompOverSockJs.prototype.open = function () {
    var self = this;
    var server = String(Math.floor(Math.random() * 1000));
    var session = randomId(8);
    var base = baseUrl() + '/mvc/stomp/' + server + '/' + session;
    self.buffer = '';
    var useWs = typeof WebSocket !== 'undefined' && !self.noWebSocket;
    if (useWs) {
      var wsUrl = base.replace(/^http/, 'ws') + '/websocket';
      var ws = new WebSocket(wsUrl);
      var opened = false;
      self.transport = {
        send: function (text) { ws.send(JSON.stringify([text])); },
        close: function () { ws.close(); }
      };
      ws.onmessage = function (m) { opened = true; self.onFrame(m.data); };
      ws.onclose = function () {
        if (!opened) { self.noWebSocket = true; }  // blocked: fall back to polling
        self.lost();
      };
      ws.onerror = function () { /* onclose follows */ };
    } else {
      var alive = true;
      self.transport = {
        send: function (text) {
          fetch(base + '/xhr_send', {method: 'POST', body: JSON.stringify([text]),
            headers: {'Content-Type': 'text/plain'}});
        },
        close: function () { alive = false; }
      };
      var poll = function () {
        if (!alive) { return; }
        fetch(base + '/xhr', {method: 'POST'}).then(function (r) { return r.text(); })
          .then(function (text) {
            text.split('\n').forEach(function (line) { if (line) { self.onFrame(line); } });
            if (alive && self.transport) { poll(); }
          }, function () { alive = false; self.lost(); });
      };
      poll();
    }
  };

  StompOverSockJs.prototype.lost = function () {
    var self = this;
    memory.connected = false;
    self.transport = null;
    if (self.closedByUser) { return; }
    if (config.useWsLog) { emitLog('log', ['event stream lost; reconnecting']); }
    setTimeout(function () { if (!self.closedByUser) { self.open(); } },
      config.reconnectSeconds * 1000);
  };

  StompOverSockJs.prototype.onFrame = function (frame) {
    var type = frame.charAt(0);
    if (type === 'o') {
      this.sendFrame('CONNECT', {'accept-version': '1.1,1.0', 'heart-beat': '10000,10000',
        host: memory.domain, sessionId: memory.sessionId});
    } else if (type === 'a') {
      var self = this;
      JSON.parse(frame.slice(1)).forEach(function (m) { self.onStomp(m); });
    } else if (type === 'c') {
      if (this.transport) { this.transport.close(); }
    }
  };

  StompOverSockJs.prototype.onStomp = function (text) {
    this.buffer += text;
    var end;
    while ((end = this.buffer.indexOf('\u0000')) >= 0) {
      var raw = this.buffer.slice(0, end).replace(/^[\r\n]+/, '');
      this.buffer = this.buffer.slice(end + 1);
      var split = raw.indexOf('\n\n');
      var head = (split >= 0 ? raw.slice(0, split) : raw).split('\n');
      var body = split >= 0 ? raw.slice(split + 2) : '';
      var command = head.shift();
      var headers = {};
      head.forEach(function (line) {
        var i = line.indexOf(':');
        if (i > 0) { headers[unescapeHeader(line.slice(0, i))] = unescapeHeader(line.slice(i + 1)); }
      });
      this.onCommand(command, headers, body);
    }
    this.buffer = this.buffer.replace(/^[\r\n]+/, '');
  };

  StompOverSockJs.prototype.onCommand = function (command, headers, body) {
    if (command === 'CONNECTED') {
      memory.connected = true;
      if (config.useWsLog) { emitLog('log', ['STOMP connected, heart-beat ' + headers['heart-beat']]); }
      this.sendFrame('SUBSCRIBE', {id: 'sub-0', destination: this.destination, ack: 'auto'});
      if (this.extra) { this.sendFrame('SUBSCRIBE', {id: 'sub-1', destination: this.extra, ack: 'auto'}); }
    } else if (command === 'MESSAGE') {
      var event;
      try { event = JSON.parse(body); } catch (e) { emitLog('error', ['bad event ' + body]); return; }
      if (config.useWsLog) { emitLog('log', ['event ' + event.eventName]); }
      this.onEvent(event);
    } else if (command === 'ERROR') {
      emitLog('error', ['STOMP error: ' + headers.message + ' ' + body]);
      if (headers.message === 'Not Authorized') { this.closedByUser = true; }
    }
  };

  StompOverSockJs.prototype.sendFrame = function (command, headers, body) {
    if (this.transport) { this.transport.send(encodeFrame(command, headers, body)); }
  };

  StompOverSockJs.prototype.close = function () {
    this.closedByUser = true;
    if (this.transport) {
      try { this.sendFrame('DISCONNECT', {receipt: 'bye'}); } catch (e) { /* gone */ }
      this.transport.close();
    }
    memory.connected = false;
  };

  function openStream(destination, extra) {
    if (stomp) { stomp.close(); }
    stomp = new StompOverSockJs(destination, dispatch);
    stomp.extra = extra || '';
    stomp.open();
  }

  // ------------------------------------------------------------------ the API ---------
  var wellClient = {
    version: 'fsapps-1',
    exports: null,
    onLog: null,

    setConfig: function (c) {
      Object.keys(c || {}).forEach(function (k) { config[k] = c[k]; });
      if (c && c.host) { config.SDK = c.host; config.TPI = c.host + '/login'; }
      applyHideButton();
    },
    getConfig: function () { return Object.assign({}, config); },
    setDebug: function (isDebug) { config.debug = !!isDebug; },
    log: function () { emitLog('log', arguments); },
    error: function () { emitLog('error', arguments); },
    isPhoneNumber: function (phone) { return /^[0-9]+$/.test(String(phone || '')); },

    on: function (eventName, callback) {
      if (EVENTS.indexOf(eventName) < 0 && eventName !== '*' &&
          ['queueChanged', 'agentChanged'].indexOf(eventName) < 0) {
        emitLog('error', ['unknown event name ' + eventName]);
        return false;
      }
      (handlers[eventName] = handlers[eventName] || []).push(callback);
      return true;
    },

    /** Session only (no agent login): POST /login; for supervisors and the wallboard. */
    signIn: function (username, password, domain) {
      memory.domain = domain || memory.domain;
      var tpi = config.TPI.indexOf('/') === 0 ? config.TPI : config.protocol + '://' + config.TPI;
      return request('POST', tpi, undefined, {username: username, password: password,
        namespace: domain || ''}).then(function (res) {
        memory.sessionId = res.sessionId;
        memory.user = res;
        // no domain given: the server's default one (its answer's namespace)
        memory.domain = memory.domain || res.namespace || '';
        return res;
      });
    },

    login: function (jobNumber, password, domain, ext, loginMode) {
      // (no domain: the server's default domain, which /login answers)
      if (!jobNumber || !password || !ext) {
        return rejected('login needs jobNumber, password and ext');
      }
      memory.jobNumber = String(jobNumber);
      memory.domain = domain || '';
      // loginMode (seed): when the agent is still logged in elsewhere, 'ask' asks, 'force'
      // takes over, 'stop' gives up; any other failure fails at once.
      loginMode = loginMode || 'ask';
      var state = null;
      return wellClient.signIn(jobNumber, password, domain).then(function () {
        memory.agentId = jobNumber + '@' + memory.domain;
        memory.deviceId = ext + '@' + memory.domain;
        state = {func: 'Login', loginId: memory.agentId, device: memory.deviceId,
          agentMode: 'NotReady'};
        return csta('POST', '/agent/state', state).then(null, function (res) {
          var elsewhere = res && res.status === 409 && res.responseJSON &&
            res.responseJSON.field === 'device';
          var again = elsewhere && (loginMode === 'force' || (loginMode === 'ask' &&
            root.confirm && root.confirm(res.error)));
          if (!again) { throw res; }
          state.force = true;
          return csta('POST', '/agent/state', state);
        });
      }).then(function (res) {
        openStream('/topic/csta/agent/' + memory.agentId);
        clearInterval(heartbeatTimer);
        heartbeatTimer = setInterval(function () {
          // a failure is logged (onLog: the pages show it), not thrown at nobody
          csta('POST', '/agent/heartbeat/' + enc(memory.agentId)).then(null, function () {});
        }, config.heartbeatSeconds * 1000);
        return res;
      });
    },

    /** The supervisor's event stream of a whole domain (the wallboard). */
    watchDomain: function (domain) {
      memory.domain = domain || memory.domain;
      openStream('/topic/csta/domain/' + memory.domain);
      return deferred(Promise.resolve({}));
    },

    logout: function () {
      var done = memory.agentId ? csta('POST', '/agent/state', {func: 'Logout',
        loginId: memory.agentId, device: memory.deviceId}) : deferred(Promise.resolve({}));
      return done.then(function (res) {
        clearInterval(heartbeatTimer);
        if (stomp) { stomp.close(); stomp = null; }
        memory = emptyMemory();
        return res;
      });
    },

    setAgentMode: function (mode, reason) {
      if (['Ready', 'NotReady'].indexOf(mode) < 0) { return rejected('mode must be Ready or NotReady'); }
      return csta('POST', '/agent/state', {func: 'SetState', loginId: memory.agentId,
        device: memory.deviceId, agentMode: mode, reason: reason || ''});
    },

    makeCall: function (phoneNumber) {
      phoneNumber = String(phoneNumber || '').replace(/[^0-9+*#]/g, '');
      if (!phoneNumber) { return rejected('makeCall needs a number'); }
      return csta('POST', '/callControl/calls', {from: memory.deviceId, to: phoneNumber});
    },
    answerCall: function (callId) { return csta('POST', connection(callId) + '/answer', {}); },
    dropConnection: function (callId) { return csta('DELETE', connection(callId)); },
    holdCall: function (callId) { return csta('POST', connection(callId) + '/hold', {}); },
    retrieveCall: function (callId) { return csta('POST', connection(callId) + '/retrieve', {}); },
    singleStepTransfer: function (callId, phoneNumber) {
      return csta('POST', connection(callId) + '/singleStepTransfer', {transferTo: withDomain(phoneNumber)});
    },
    singleStepConference: function (callId, phoneNumber, type) {
      return csta('POST', connection(callId) + '/singleStepConference',
        {conferenceParticipant: withDomain(phoneNumber), participationType: type || 'Active'});
    },
    consult: function (holdCallId, phoneNumber) {
      return csta('POST', connection(holdCallId) + '/consult',
        {consultationParticipant: withDomain(phoneNumber)});
    },
    conference: function (holdCallId, consultCallId) {
      return csta('POST', connection(holdCallId) + '/conference', {consultCallId: consultCallId});
    },
    cancelConsult: function (holdCallId, consultCallId) {
      return csta('POST', connection(holdCallId) + '/cancelConsult', {consultCallId: consultCallId});
    },
    transferCall: function (holdCallId, consultCallId) {
      return csta('POST', connection(holdCallId) + '/transfer', {consultCallId: consultCallId});
    },
    setCallData: function (callId, data) {
      if (!Array.isArray(data)) { return rejected('data must be [{key, value}, ...]'); }
      return csta('POST', '/callControl/calls/' + enc(callId) + '/user-data?domain=' + enc(memory.domain),
        {entries: data});
    },

    // supervisor operations (the server checks the role)
    forceDrop: function (deviceId, callId) { return csta('DELETE', connection(callId, deviceId)); },
    forceJoin: function (deviceId, callId, phoneNumber) {
      return csta('POST', connection(callId, deviceId) + '/singleStepConference',
        {conferenceParticipant: withDomain(phoneNumber), participationType: 'Active'});
    },
    forceTake: function (deviceId, callId, phoneNumber) {
      return csta('POST', connection(callId, deviceId) + '/singleStepTransfer',
        {transferTo: withDomain(phoneNumber)});
    },
    forceListen: function (callId, deviceId, mode, target) {
      var q = '?deviceId=' + enc(deviceId) + '&mode=' + enc(mode || 'listen') +
        (target ? '&target=' + enc(target) : '');
      return csta('POST', '/callControl/calls/' + enc(callId) + '/spy' + q, {});
    },
    forceReady: function (agentId, deviceId) {
      return csta('POST', '/agent/state', {func: 'SetState', loginId: agentId, device: deviceId, agentMode: 'Ready'});
    },
    forceNotReady: function (agentId, deviceId) {
      return csta('POST', '/agent/state', {func: 'SetState', loginId: agentId, device: deviceId, agentMode: 'NotReady'});
    },
    forceLogout: function (agentId, deviceId) {
      return csta('POST', '/agent/state', {func: 'Logout', loginId: agentId, device: deviceId});
    },
    forceHangup: function (callId) {
      return csta('POST', '/supervise/drop', {callId: callId, domain: memory.domain});
    },
    wallboard: function (domain) {
      return csta('GET', '/wallboard?domain=' + enc(domain || memory.domain));
    },

    getCallMemory: function () { return memory; },
    events: EVENTS.slice()
  };

  // hideButton: toolbar controls (by the seed's ids) the page should not show
  function applyHideButton() {
    if (!root.document) { return; }
    (config.hideButton || []).forEach(function (id) {
      var el = root.document.getElementById(id);
      if (el) { el.hidden = true; }
    });
  }

  // clickCallClass: clicking an element of that class dials the digits of its text
  if (root.document) {
    root.document.addEventListener('click', function (ev) {
      var el = ev.target && ev.target.closest ? ev.target.closest('.' + config.clickCallClass) : null;
      if (!el || !memory.deviceId) { return; }
      var digits = (el.textContent || '').replace(/[^0-9]/g, '');
      if (digits) { wellClient.makeCall(digits); }
    });
  }

  root.wellClient = wellClient;
  if (typeof module !== 'undefined' && module.exports) { module.exports = wellClient; }
})(typeof window !== 'undefined' ? window : this);
