/* The pages' error line: every request that fails is shown to the user with the server's own
 * message (its JSON {"error": ...}), until dismissed (×); the last few failures stay, newest
 * first (one failure often follows from another: a refused domain fails the snapshot and the
 * event stream). Never swallowed: a board that silently stays empty, or a listen button that
 * does nothing, leaves a supervisor guessing. The page holds the element: #errorBar with
 * .text and .close. */
(function (root) {
  'use strict';
  var KEEP = 3;
  var shown = [];  // [{text, source}], newest first
  function bar() { return root.document.getElementById('errorBar'); }

  /** The text of a failure: a wellClient rejection {status, error}, an Error, or text. */
  function message(res) {
    if (!res) { return '?'; }
    if (typeof res === 'string') { return res; }
    var text = res.error || (res.responseJSON && res.responseJSON.error) || res.message ||
      String(res);
    return res.status ? text + ' (HTTP ' + res.status + ')' : text;
  }

  function draw() {
    var el = bar();
    if (!el) { return; }
    var box = el.querySelector('.text');
    box.textContent = '';
    shown.forEach(function (item) {
      var line = root.document.createElement('div');
      line.textContent = item.text;
      box.appendChild(line);
    });
    el.hidden = !shown.length;
  }

  var notice = {
    message: message,
    /** Show "<what>: <message of res>"; ``source`` names it for a later clear(source). */
    show: function (what, res, source) {
      var text = (what ? what + ': ' : '') + message(res);
      shown = shown.filter(function (item) { return item.text !== text; });
      shown.unshift({text: text, source: source || ''});
      shown.length = Math.min(shown.length, KEEP);
      draw();
    },
    /** Forget the failures of ``source`` (all of them without one). */
    clear: function (source) {
      shown = source ? shown.filter(function (item) { return item.source !== source; }) : [];
      draw();
    },
    /** A .fail() handler showing "<what>: <message>". */
    failed: function (what) { return function (res) { notice.show(what, res); }; }
  };

  root.document.addEventListener('DOMContentLoaded', function () {
    var el = bar();
    if (el) { el.querySelector('.close').addEventListener('click', function () { notice.clear(); }); }
  });
  root.fsappsNotice = notice;
})(window);
