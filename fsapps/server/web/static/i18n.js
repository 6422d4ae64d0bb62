/* Page texts in Chinese and English: the browser's language picks one, the 中/EN button
 * switches (remembered in localStorage). Elements carry data-i18n="key" (text) or
 * data-i18n-placeholder="key". */
(function (root) {
  'use strict';
  var TEXTS = {
    zh: {
      title: '坐席工作台', wallboardTitle: '班长监控大屏', brand: 'fsapps 呼叫中心',
      jobNumber: '工号', password: '密码', domain: '域名', extension: '分机号',
      login: '登录', logout: '登出', ready: '就绪', notReady: '未就绪', loggedOut: '未登录',
      setReady: '置闲', setNotReady: '置忙', number: '号码', make: '拨号', answer: '接听',
      hold: '保持', retrieve: '取回', sTran: '单步转移', sConf: '单步会议', ask: '咨询',
      conf: '会议', tran: '转移', cancelAsk: '取消咨询', dropCon: '挂断',
      idle: '空闲', ringing: '振铃', talking: '通话中', held: '保持中', dialing: '呼出中',
      consulting: '咨询中', conference: '会议中',
      caller: '主叫', called: '被叫', callId: '呼叫ID', noCall: '当前没有通话',
      callData: '随路数据', key: '键', value: '值', save: '保存', events: '事件',
      inState: '状态时长', dialPad: '拨号盘', loginFailed: '登录失败',
      groups: '技能组', group: '技能组', waiting: '排队', longestWait: '最长等待', agents: '坐席',
      calls: '通话', state: '状态', since: '持续', listen: '监听', whisper: '耳语',
      barge: '强插', hangup: '强拆', members: '成员', readyAgents: '空闲坐席',
      serviceLevel: '服务水平(15分钟)', asa: '平均应答', abandoned15: '放弃(15分钟)',
      parties: '参与方', myDevice: '我的分机', supervisorLogin: '班长登录',
      st_ready: '空闲', st_ring: '振铃', st_talking: '通话', st_typing: '整理',
      st_busy: '置忙', st_rest: '小休', st_no_ready: '未就绪', st_no_answer: '未接',
      st_ivr: 'IVR', live: '实时', offline: '离线', total: '合计',
      ringingCalls: '振铃中通话', domainDefault: '留空：服务器默认域', dismiss: '关闭',
      boardFailed: '大屏刷新失败', linkProblem: '连接问题', logoutFailed: '登出失败',
      userDataFailed: '保存随路数据失败', talkingCalls: '通话中', connected: '事件通道已连接', disconnected: '事件通道已断开', agentLink: '坐席工作台',
      phone: '网页电话', ph_off: '未启用', ph_connecting: '连接中', ph_registered: '已注册',
      ph_unregistered: '未注册', ph_ringing: '来电振铃', ph_talking: '通话中',
      ph_takenOver: '已被其他页面接管', ph_refused: '已在其他页面使用', ph_failed: '注册失败',
      phoneHangup: '挂机', mute: '静音', unmute: '取消静音', autoAnswer: '自动接听',
      microphone: '麦克风', speaker: '扬声器', defaultDevice: '系统默认'
    },
    en: {
      title: 'Agent console', wallboardTitle: 'Supervisor wallboard', brand: 'fsapps call center',
      jobNumber: 'Job number', password: 'Password', domain: 'Domain', extension: 'Extension',
      login: 'Log in', logout: 'Log out', ready: 'Ready', notReady: 'Not ready',
      loggedOut: 'Logged out', setReady: 'Ready', setNotReady: 'Not ready', number: 'Number',
      make: 'Call', answer: 'Answer', hold: 'Hold', retrieve: 'Retrieve',
      sTran: 'Transfer', sConf: 'Conference', ask: 'Consult', conf: 'Join', tran: 'Complete transfer',
      cancelAsk: 'Cancel consult', dropCon: 'Hang up', idle: 'Idle', ringing: 'Ringing',
      talking: 'Talking', held: 'On hold', dialing: 'Dialing', consulting: 'Consulting',
      conference: 'Conference', caller: 'Caller', called: 'Called', callId: 'Call ID',
      noCall: 'No call right now', callData: 'Call data', key: 'Key', value: 'Value',
      save: 'Save', events: 'Events', inState: 'In state', dialPad: 'Dial pad',
      loginFailed: 'Login failed', groups: 'Groups', group: 'Group', waiting: 'Waiting',
      longestWait: 'Longest wait', agents: 'Agents', calls: 'Calls', state: 'State',
      since: 'For', listen: 'Listen', whisper: 'Whisper', barge: 'Barge', hangup: 'Hang up',
      members: 'Members', readyAgents: 'Free agents',
      serviceLevel: 'Service level (15 min)', asa: 'Avg. answer', abandoned15: 'Abandoned (15 min)', parties: 'Parties',
      myDevice: 'My phone', supervisorLogin: 'Supervisor login', st_ready: 'Ready',
      st_ring: 'Ringing', st_talking: 'Talking', st_typing: 'Wrap-up', st_busy: 'Busy',
      st_rest: 'Break', st_no_ready: 'Not ready', st_no_answer: 'No answer', st_ivr: 'IVR',
      live: 'Live', offline: 'Offline', total: 'Total', ringingCalls: 'Calls ringing',
      domainDefault: 'empty: the server\'s default domain', dismiss: 'Dismiss',
      boardFailed: 'Wallboard not updated', linkProblem: 'Connection problem',
      logoutFailed: 'Log out failed', userDataFailed: 'Call data not saved',
      talkingCalls: 'Calls talking', connected: 'Event stream connected',
      disconnected: 'Event stream lost', agentLink: 'Agent console',
      phone: 'Browser phone', ph_off: 'Off', ph_connecting: 'Connecting', ph_registered: 'Registered',
      ph_unregistered: 'Not registered', ph_ringing: 'Incoming call', ph_talking: 'In call',
      ph_takenOver: 'Taken over by another tab', ph_refused: 'In use in another tab',
      ph_failed: 'Registration failed', phoneHangup: 'Hang up', mute: 'Mute', unmute: 'Unmute',
      autoAnswer: 'Auto-answer', microphone: 'Microphone', speaker: 'Speaker',
      defaultDevice: 'System default'
    }
  };

  function pick() {
    var saved = root.localStorage && root.localStorage.getItem('fsapps.lang');
    if (saved && TEXTS[saved]) { return saved; }
    var langs = (root.navigator && (root.navigator.languages || [root.navigator.language])) || [];
    for (var i = 0; i < langs.length; i++) {
      var l = String(langs[i] || '').toLowerCase();
      if (l.indexOf('zh') === 0) { return 'zh'; }
      if (l.indexOf('en') === 0) { return 'en'; }
    }
    return 'en';
  }

  var i18n = {
    lang: pick(),
    t: function (key) { return (TEXTS[i18n.lang] || TEXTS.en)[key] || TEXTS.en[key] || key; },
    apply: function (scope) {
      var doc = scope || root.document;
      doc.documentElement && (doc.documentElement.lang = i18n.lang === 'zh' ? 'zh-CN' : 'en');
      Array.prototype.forEach.call(doc.querySelectorAll('[data-i18n]'), function (el) {
        el.textContent = i18n.t(el.getAttribute('data-i18n'));
      });
      Array.prototype.forEach.call(doc.querySelectorAll('[data-i18n-placeholder]'), function (el) {
        el.setAttribute('placeholder', i18n.t(el.getAttribute('data-i18n-placeholder')));
      });
      Array.prototype.forEach.call(doc.querySelectorAll('[data-i18n-title]'), function (el) {
        el.setAttribute('title', i18n.t(el.getAttribute('data-i18n-title')));
      });
    },
    set: function (lang) {
      if (!TEXTS[lang]) { return; }
      i18n.lang = lang;
      if (root.localStorage) { root.localStorage.setItem('fsapps.lang', lang); }
      i18n.apply();
      (i18n.listeners || []).forEach(function (fn) { fn(lang); });
    },
    toggle: function () { i18n.set(i18n.lang === 'zh' ? 'en' : 'zh'); },
    onChange: function (fn) { (i18n.listeners = i18n.listeners || []).push(fn); },
    texts: TEXTS
  };
  root.i18n = i18n;
})(window);
