// SPDX-License-Identifier: MIT
// The demo chat (www/index.html) over socket.io-client (vendor/socket.io.min.js, installed
// from npm by `make www-assets`) against the eddy program's Socket.IO endpoint, which runs
// no application code: the page joins chat:ROOM (join), publishes to it (publish), and the
// server adds who sent each message; the join's answer carries who is online and the last
// messages, and joined/left events keep the list current.
//
// Nothing typed is lost across a reconnection: a message stays in the outbox until the
// server acknowledged it, and is sent again (after the room is joined again) when the
// connection comes back; a message id in its data lets every page show it once, whether it
// arrives live, again, or in the history of a join.
(function () {
  'use strict';
  var PREFIX = 'chat:';
  var ROOMS = ['general', 'random'];
  var ACK_TIMEOUT = 5000;
  var params = new URLSearchParams(location.search);
  var $ = function (id) { return document.getElementById(id); };
  var banner = $('banner');
  var list = $('messages');

  var socket = null;
  var room = params.get('room') || ROOMS[0];
  var joined = false; // the current room is joined on the current connection
  var members = new Map(); // socket id -> {id, user, data}
  var shown = new Map(); // message id -> its <li>
  var outbox = []; // {mid, room, text, sending}
  var counter = 0;

  function label(who) {
    return (who.data && typeof who.data.name === 'string' && who.data.name) || who.user ||
      'anonymous ' + String(who.id).slice(0, 4);
  }

  function setBanner(text, state) {
    banner.hidden = text === null;
    banner.textContent = text || '';
    banner.setAttribute('data-state', state || '');
  }

  function renderRooms() {
    var ul = $('rooms');
    ul.textContent = '';
    var names = ROOMS.indexOf(room) < 0 ? ROOMS.concat([room]) : ROOMS;
    names.forEach(function (name) {
      var li = document.createElement('li');
      var button = document.createElement('button');
      button.type = 'button';
      button.textContent = '#' + name;
      button.setAttribute('aria-current', String(name === room));
      button.addEventListener('click', function () { switchRoom(name); });
      li.appendChild(button);
      ul.appendChild(li);
    });
    $('room-title').textContent = '#' + room;
  }

  // One line per name, "name (2)" for a name with two sockets (two tabs).
  function renderOnline() {
    var counts = new Map();
    members.forEach(function (who) { counts.set(label(who), (counts.get(label(who)) || 0) + 1); });
    var ul = $('online');
    ul.textContent = '';
    Array.from(counts.keys()).sort().forEach(function (name) {
      var li = document.createElement('li');
      li.textContent = counts.get(name) > 1 ? name + ' (' + counts.get(name) + ')' : name;
      ul.appendChild(li);
    });
  }

  function line(name, text, pending) {
    var li = document.createElement('li');
    var b = document.createElement('b');
    b.textContent = name + ':';
    li.appendChild(b);
    li.appendChild(document.createTextNode(' ' + text));
    if (pending) li.className = 'pending';
    return li;
  }

  // A message of the room, live or from a join's history: {room, from, data}.
  function show(msg) {
    if (!msg || msg.room !== PREFIX + room) return;
    var data = msg.data && typeof msg.data === 'object' ? msg.data : { text: String(msg.data) };
    var text = typeof data.text === 'string' ? data.text : JSON.stringify(msg.data);
    var li = line(msg.from ? label(msg.from) : 'server', text, false);
    var old = data.mid ? shown.get(data.mid) : null;
    if (old && old.className !== 'pending') return; // seen already
    if (old) list.replaceChild(li, old); // our own, back from the server
    else list.appendChild(li);
    if (data.mid) shown.set(data.mid, li);
    li.scrollIntoView({ block: 'nearest' });
  }

  function join() {
    joined = false;
    var name = room;
    socket.timeout(ACK_TIMEOUT).emit('join', PREFIX + name, function (err, answer) {
      if (name !== room || !socket.connected) return;
      if (err || !answer || !answer.ok) {
        setBanner('could not join #' + name + ': ' + (err ? err.message : answer && answer.error),
                  'refused');
        return;
      }
      joined = true;
      members = new Map();
      ((answer.presence && answer.presence.sockets) || []).forEach(function (who) {
        members.set(who.id, who);
      });
      renderOnline();
      (answer.history || []).forEach(function (ev) {
        if (ev.event === 'message') show(ev.args[0]);
      });
      flush();
    });
  }

  function switchRoom(name) {
    if (name === room) return;
    if (socket.connected) socket.emit('leave', PREFIX + room);
    room = name;
    list.textContent = '';
    shown = new Map();
    members = new Map();
    outbox.forEach(function (m) { if (m.room !== PREFIX + room) m.dropped = true; });
    outbox = outbox.filter(function (m) { return !m.dropped; });
    renderRooms();
    renderOnline();
    if (socket.connected) join();
  }

  // Sends what the outbox holds, in order; each message leaves it once acknowledged.
  function flush() {
    if (!socket.connected || !joined) return;
    outbox.forEach(function (m) {
      if (m.sending) return;
      m.sending = true;
      socket.timeout(ACK_TIMEOUT).emit('publish', m.room, { text: m.text, mid: m.mid },
        function (err, answer) {
          m.sending = false;
          if (!err && answer && answer.ok) {
            outbox = outbox.filter(function (o) { return o !== m; });
          } else if (!err && answer && answer.error !== 'not in the room') {
            outbox = outbox.filter(function (o) { return o !== m; }); // refused for good
            var li = shown.get(m.mid);
            if (li) li.appendChild(document.createTextNode(' (not sent: ' + answer.error + ')'));
          } // else: timed out or not joined yet; sent again on the next join
        });
    });
  }

  function send(text) {
    var mid = Date.now().toString(36) + '-' + Math.random().toString(36).slice(2, 10) + '-' +
      (counter++);
    var li = line(label({ id: socket.id || '', data: { name: socket.auth.name } }), text, true);
    list.appendChild(li);
    shown.set(mid, li);
    outbox.push({ mid: mid, room: PREFIX + room, text: text, sending: false });
    flush();
  }

  function start(name) {
    $('login').hidden = true;
    $('chat').hidden = false;
    renderRooms();
    socket = io({ auth: { name: name } });
    window.chatSocket = socket;
    setBanner('connecting…', 'connecting');
    socket.on('connect', function () {
      setBanner(null);
      join();
    });
    socket.on('disconnect', function (reason) {
      joined = false;
      outbox.forEach(function (m) { m.sending = false; });
      if (socket.active) setBanner('Reconnecting… (' + reason + ')', 'reconnecting');
      else setBanner('Disconnected by the server (' + reason + ')', 'refused');
    });
    socket.io.on('reconnect_attempt', function (attempt) {
      setBanner('Reconnecting… (attempt ' + attempt + ')', 'reconnecting');
    });
    socket.on('connect_error', function (err) {
      if (socket.active) setBanner('Reconnecting… (' + err.message + ')', 'reconnecting');
      else setBanner('Refused: ' + err.message, 'refused');
    });
    socket.on('message', show);
    socket.on('joined', function (who) {
      if (who.room !== PREFIX + room) return;
      members.set(who.id, who);
      renderOnline();
    });
    socket.on('left', function (who) {
      if (who.room !== PREFIX + room) return;
      members.delete(who.id);
      renderOnline();
    });
  }

  if (typeof io !== 'function') {
    setBanner('vendor/socket.io.min.js is missing: run `make www-assets` (or `make run`)',
              'refused');
    $('login').hidden = true;
    return;
  }
  $('login').addEventListener('submit', function (event) {
    event.preventDefault();
    var name = $('name').value.trim();
    if (!name) return;
    try { localStorage.setItem('eddy-chat-name', name); } catch (e) { /* private mode */ }
    start(name);
  });
  $('new-room').addEventListener('submit', function (event) {
    event.preventDefault();
    var name = $('room-name').value.trim().replace(/\s+/g, '-');
    $('room-name').value = '';
    if (name) switchRoom(name);
  });
  $('compose').addEventListener('submit', function (event) {
    event.preventDefault();
    var text = $('text').value;
    if (!text) return;
    $('text').value = '';
    send(text);
  });
  var saved = null;
  try { saved = localStorage.getItem('eddy-chat-name'); } catch (e) { /* private mode */ }
  if (params.get('name')) start(params.get('name'));
  else if (saved) $('name').value = saved;
})();
