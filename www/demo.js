// SPDX-License-Identifier: MIT
// The echo page (echo.html): an echo conversation over eddy.js (window.Eddy, from eddy.js
// beside this file). Messages typed while the connection is down wait in eddy.js's offline
// queue.
(function () {
  'use strict';
  var params = new URLSearchParams(location.search);
  var path = params.get('path') || document.body.getAttribute('data-path') || '/ws';
  if (path.charAt(0) !== '/') path = '/' + path;
  var url = params.get('ws') ||
    (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + path;
  var PING = 'ping';

  var status = document.getElementById('status');
  var queue = document.getElementById('queue');
  var list = document.getElementById('messages');
  var text = document.getElementById('text');
  document.getElementById('url').textContent = url;

  var eddy = new Eddy(url, { heartbeat: { interval: 25000, timeout: 10000, payload: PING } });
  window.eddy = eddy;

  function add(line, note) {
    var item = document.createElement('li');
    item.textContent = line;
    if (note) {
      var small = document.createElement('small');
      small.textContent = ' ' + note;
      item.appendChild(small);
    }
    list.insertBefore(item, list.firstChild);
  }

  // Repainted from eddy.js's state on a timer and on every event; the countdown is computed
  // from retryAt, so a throttled timer only makes it update less often.
  function paint() {
    var label;
    if (eddy.state === 'open') label = 'connected';
    else if (eddy.state === 'reconnecting' && eddy.retryAt !== null)
      label = 'reconnecting in ' + Math.max(0, (eddy.retryAt - Date.now()) / 1000).toFixed(1) +
              ' s (attempt ' + eddy.attempt + ')';
    else if (eddy.state === 'reconnecting') label = 'reconnecting…';
    else if (eddy.state === 'connecting') label = 'connecting…';
    else label = 'disconnected';
    status.textContent = label;
    status.setAttribute('data-state', eddy.state);
    queue.textContent = String(eddy.queueSize);
  }
  setInterval(paint, 250);

  ['open', 'close', 'reconnecting'].forEach(function (type) {
    eddy.addEventListener(type, paint);
  });
  eddy.addEventListener('close', function (e) {
    if (!e.willReconnect) add('connection closed for good', 'code ' + e.code + ' ' + e.reason);
  });
  eddy.addEventListener('drop', function (e) {
    add(e.messages.length + ' message(s) not sent', e.reason);
    paint();
  });
  eddy.addEventListener('message', function (e) {
    paint(); // the queue was flushed before the first reply could come
    if (e.data === PING) return; // the heartbeat's echo
    add(typeof e.data === 'string' ? e.data : '(binary, ' + e.data.byteLength + ' bytes)',
        'echoed');
  });

  document.getElementById('form').addEventListener('submit', function (event) {
    event.preventDefault();
    if (!text.value) return;
    if (eddy.state === 'closed') eddy.connect();
    if (!eddy.send(text.value)) add(text.value, 'refused: the offline queue is full');
    text.value = '';
    paint();
  });
  paint();
})();
