// The cgichat page: shows a room's history and live messages, and sends.
//
// All addresses are relative (cgi-bin/post, cgi-bin/stream), so the page
// works from any folder of any host. Every piece of user text goes into the
// page as text nodes (textContent, createTextNode), never as HTML.

import { joinRoom } from "./feed.js";
import {
  clock,
  dayKey,
  dayName,
  defaultRoom,
  messageText,
  nickColor,
  nickKey,
  roomFromAddress,
  roomPattern,
  validNick,
} from "./format.js";

const $ = (id) => document.getElementById(id);
const el = {
  roomName: $("room-name"),
  state: $("state"),
  presence: $("presence"),
  presenceLabel: $("presence-label"),
  presenceList: $("presence-list"),
  roomForm: $("room-form"),
  roomInput: $("room-input"),
  scroller: $("scroller"),
  log: $("log"),
  empty: $("empty"),
  jump: $("jump"),
  compose: $("compose"),
  nickButton: $("nick-button"),
  sendError: $("send-error"),
  renick: $("renick"),
  text: $("text"),
  send: $("send"),
  nickDialog: $("nick-dialog"),
  nickForm: $("nick-form"),
  nickInput: $("nick-input"),
  nickWhy: $("nick-why"),
  nickCancel: $("nick-cancel"),
};

const nickStorage = "cgichat.nick";

// The page's state, all in one place.
const page = {
  room: "",
  feed: null,
  nick: loadNick(),
  presence: null, // the nicks in the room, once the stream said
  shown: new Set(), // ids of the messages shown (and deleted since)
  lastDay: "", // the local day of the newest message shown
  maxId: 0, // the newest message shown
  joined: false, // the history is in; what comes now is new
  unread: 0, // new messages while the tab was hidden
  unseen: 0, // new messages below the visible part of the log
  stuck: true, // the reader was at the bottom when the log last scrolled
  sending: false,
  afterNick: null, // what to do once a nickname is chosen
  refused: new Set(), // nickKeys of nicks the server said belong to others
  refusal: { nick: "", why: "" }, // the last nick refused, and the server's sentence
};

// Nickname, kept in localStorage (which may be unavailable: private modes,
// disabled storage). Without it the nick lasts as long as the page. A
// stored nick the server would refuse is dropped: it goes on the stream's
// address too.
function loadNick() {
  try {
    return validNick(localStorage.getItem(nickStorage) || "").nick ?? "";
  } catch {
    return "";
  }
}

function saveNick(nick) {
  page.nick = nick;
  try {
    if (nick === "") {
      localStorage.removeItem(nickStorage);
    } else {
      localStorage.setItem(nickStorage, nick);
    }
  } catch {
    // Not remembered; still used for this page.
  }
  showNick();
  // The stream says who reads; it reopens under the new name.
  page.feed?.setNick(nick, true);
}

function showNick() {
  const nick = page.nick;
  el.nickButton.textContent = nick || "choose a nickname";
  for (const li of el.log.querySelectorAll(".msg")) {
    li.classList.toggle("own", li.dataset.nick === nick);
  }
  showPresence(page.presence);
}

// Another tab of this browser chose a nickname.
window.addEventListener("storage", (e) => {
  if (e.key !== nickStorage && e.key !== null) {
    return;
  }
  const nick = loadNick();
  if (nick !== page.nick) {
    page.nick = nick;
    showNick();
    // That tab tells the stream itself.
    page.feed?.setNick(nick, false);
  }
});

// Rooms: from the address, switched with the form (which sets #room).
function enterRoom(wanted) {
  // Rooms ignore case, as the programs do: #Dev is #dev.
  let room = wanted.toLowerCase();
  let notice = "";
  if (!roomPattern.test(room)) {
    notice = `“${wanted}” is not a room name (1 to 32 letters, digits, - or _), so this is #${defaultRoom}.`;
    room = defaultRoom;
  }
  if (room === page.room) {
    return;
  }
  page.feed?.leave();
  Object.assign(page, {
    room,
    presence: null,
    lastDay: "",
    maxId: 0,
    joined: false,
    unread: 0,
    unseen: 0,
  });
  page.shown.clear();
  showPresence(null);
  el.log.replaceChildren();
  if (notice !== "") {
    const li = document.createElement("li");
    li.className = "notice";
    li.textContent = notice;
    el.log.append(li);
  }
  el.empty.hidden = true;
  el.jump.hidden = true;
  el.roomName.textContent = "#" + room;
  el.roomInput.value = room;
  el.text.placeholder = "Message #" + room;
  el.log.setAttribute("aria-label", "Messages in #" + room);
  updateTitle();
  showState({ status: "connecting", mode: "live", detail: "", retryAt: 0 });
  page.feed = joinRoom(room, page.nick, {
    message: show,
    delete: unshow,
    presence: (nicks) => {
      page.presence = nicks;
      showPresence(nicks);
    },
    trimmed: showTrimmed,
    state: showState,
  });
}

// Presence: who reads the room with a nickname, as the stream says.
function showPresence(nicks) {
  el.presence.hidden = nicks === null;
  if (nicks === null) {
    el.presenceList.replaceChildren();
    return;
  }
  el.presenceLabel.textContent = nicks.length === 0 ? "In the room:" : `In the room (${nicks.length}):`;
  if (nicks.length === 0) {
    el.presenceList.textContent = "no one with a nickname yet";
    return;
  }
  const items = [];
  for (const nick of nicks) {
    if (items.length > 0) {
      items.push(", ");
    }
    const span = document.createElement("span");
    span.className = "presence-nick";
    span.classList.toggle("self", nick === page.nick);
    span.dir = "auto";
    span.textContent = nick;
    items.push(span);
  }
  el.presenceList.replaceChildren(...items);
}

// A resumed stream said that messages this browser never received were
// removed by the chat's retention.
function showTrimmed() {
  const stick = !page.joined || atBottom();
  const li = document.createElement("li");
  li.className = "notice trimmed";
  li.textContent =
    "Some messages from while this page was away are no longer kept by this chat (it keeps only recent ones), so they are missing here.";
  el.log.append(li);
  if (stick) {
    scrollToBottom();
  }
}

function updateTitle() {
  const unread = page.unread > 0 ? `(${page.unread}) ` : "";
  document.title = `${unread}#${page.room} · cgichat`;
}

// Connection state, as EventSource and the fallback report it.
const stateWords = {
  connecting: ["Connecting…", "Opening the stream of messages."],
  live: ["Live", "New messages appear as they are sent."],
  reconnecting: [
    "Reconnecting…",
    "The stream ended or broke; the browser reconnects and asks for every message after the last one it has.",
  ],
  offline: ["Offline", "The server did not answer with a stream; the page tries again."],
};

function showState(s) {
  let [text, title] = stateWords[s.status] || stateWords.connecting;
  if (s.status === "live" && s.mode === "batch") {
    text = "Live (polling)";
    title = "This host holds streams back, so the page asks for new messages in turns (batch mode).";
  }
  if (s.status === "offline" && s.retryAt > 0) {
    text += `, retrying in ${Math.max(1, Math.round((s.retryAt - Date.now()) / 1000))} s`;
  }
  if (s.detail) {
    text += ": " + s.detail;
  }
  el.state.dataset.status = s.status;
  el.state.dataset.mode = s.mode;
  el.state.textContent = text;
  el.state.title = title;
  if (s.status === "live" && !page.joined) {
    page.joined = true;
    el.empty.hidden = el.log.querySelector(".msg") !== null;
    scrollToBottom();
  }
}

// The log. Messages are kept in id order and shown once each.
function atBottom() {
  const s = el.scroller;
  return s.scrollHeight - s.scrollTop - s.clientHeight < 40;
}

function scrollToBottom() {
  el.scroller.scrollTop = el.scroller.scrollHeight;
  page.stuck = true;
  page.unseen = 0;
  el.jump.hidden = true;
}

function show(m) {
  if (m.room !== page.room || page.shown.has(m.id)) {
    return;
  }
  page.shown.add(m.id);
  const own = m.nick === page.nick;
  const stick = !page.joined || own || atBottom();

  const date = new Date(m.time);
  const li = document.createElement("li");
  li.className = "msg";
  li.classList.toggle("own", own);
  li.dataset.id = String(m.id);
  li.dataset.nick = m.nick;
  const time = document.createElement("time");
  time.dateTime = m.time;
  time.textContent = clock(date);
  time.title = date.toLocaleString();
  // dir=auto isolates each nick and text: a right-to-left override in one
  // cannot reorder what follows it.
  const nick = document.createElement("span");
  nick.className = "nick " + nickColor(m.nick);
  nick.dir = "auto";
  nick.textContent = m.nick;
  nick.title = m.nick;
  const colon = document.createElement("span");
  colon.className = "visually-hidden";
  colon.textContent = ":";
  const text = document.createElement("span");
  text.className = "text";
  text.dir = "auto";
  text.append(messageText(document, m.text));
  li.append(time, " ", nick, colon, " ", text);

  if (m.id > page.maxId) {
    const day = dayKey(date);
    if (day !== page.lastDay) {
      const sep = document.createElement("li");
      sep.className = "day";
      sep.textContent = dayName(date);
      el.log.append(sep);
      page.lastDay = day;
    }
    el.log.append(li);
    page.maxId = m.id;
  } else {
    // Older than what is shown (rare: a tab handing over its stream).
    const later = [...el.log.querySelectorAll(".msg")].find((x) => Number(x.dataset.id) > m.id);
    el.log.insertBefore(li, later ?? null);
  }
  el.empty.hidden = true;

  if (page.joined && !own && document.hidden) {
    page.unread++;
    updateTitle();
  }
  if (stick) {
    scrollToBottom();
  } else {
    if (page.unseen === 0) {
      el.log.querySelector(".first-unseen")?.classList.remove("first-unseen");
      li.classList.add("first-unseen");
    }
    page.unseen++;
    showUnseen();
  }
}

function showUnseen() {
  el.jump.textContent = page.unseen === 1 ? "1 new message ↓" : `${page.unseen} new messages ↓`;
  el.jump.hidden = page.unseen === 0;
}

// unshow takes out a message a moderator deleted. Its id stays in
// page.shown, so it cannot come back.
function unshow(id) {
  page.shown.add(id);
  const li = el.log.querySelector(`.msg[data-id="${id}"]`);
  if (li === null) {
    return;
  }
  // Below the new-messages line, it was counted as unseen.
  const marker = el.log.querySelector(".first-unseen");
  const unseen =
    !el.jump.hidden &&
    marker !== null &&
    (li === marker || marker.compareDocumentPosition(li) & Node.DOCUMENT_POSITION_FOLLOWING);
  if (unseen) {
    page.unseen--;
    if (li === marker) {
      nextMessage(li)?.classList.add("first-unseen");
    }
    showUnseen();
  }
  const before = li.previousElementSibling;
  const after = li.nextElementSibling;
  li.remove();
  // A day with nothing left loses its line.
  if (before?.classList.contains("day") && (after === null || after.classList.contains("day"))) {
    before.remove();
  }
  const last = [...el.log.querySelectorAll(".msg")].at(-1);
  page.lastDay = last ? dayKey(new Date(last.querySelector("time").dateTime)) : "";
  if (last === undefined && page.joined) {
    el.empty.hidden = false;
  }
}

function nextMessage(li) {
  let next = li.nextElementSibling;
  while (next !== null && !next.classList.contains("msg")) {
    next = next.nextElementSibling;
  }
  return next;
}

// Sending.
function updateSend() {
  el.send.disabled = page.sending || el.text.value.trim() === "";
}

// showSendError shows why the last message was not sent (or nothing, for
// ""), with a button to choose another nickname when that is the cure.
function showSendError(message, offerNick = false) {
  el.sendError.textContent = message;
  el.sendError.hidden = message === "";
  el.renick.hidden = !offerNick;
}

// retryAfter reads a Retry-After header (seconds or an HTTP date) as
// whole seconds from now, or 0.
function retryAfter(value) {
  if (value === null) {
    return 0;
  }
  const s = /^\d+$/.test(value.trim()) ? Number(value) : (Date.parse(value) - Date.now()) / 1000;
  return Number.isFinite(s) && s > 0 ? Math.ceil(s) : 0;
}

// refuseNick handles a 409: the nick belongs to someone else (who posted
// with it first, from another browser). The page stops using it (and
// forgets it, if it was remembered) and asks for another one; the typed
// message waits, and goes out once a nick is chosen.
function refuseNick(nick, why) {
  page.refused.add(nickKey(nick));
  page.refusal = { nick, why };
  if (page.nick === nick) {
    saveNick("");
  }
  if (!el.nickDialog.open) {
    askNick(send, nick);
  }
}

async function send() {
  const text = el.text.value;
  if (page.sending || text.trim() === "") {
    return;
  }
  if (page.nick === "") {
    askNick(send);
    return;
  }
  page.sending = true;
  el.text.readOnly = true;
  updateSend();
  const { room, nick } = page;
  try {
    const res = await fetch("cgi-bin/post", {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify({ room, nick, text }),
    });
    let body = null;
    try {
      body = await res.json();
    } catch {
      // Not JSON: a host's own error page. The status must do.
    }
    if (res.status === 201 && body !== null) {
      el.text.value = "";
      showSendError("");
      if (page.nick === nick) {
        saveNick(nick); // it is this browser's now
      }
      // The stream brings it too; ids make sure it shows once.
      show(body);
      scrollToBottom();
    } else {
      const why = body?.error || res.statusText || "The server refused the message.";
      let message = `Not sent: ${why} (HTTP ${res.status})`;
      const wait = res.status === 429 ? retryAfter(res.headers.get("Retry-After")) : 0;
      if (wait > 0) {
        message += ` You can send again in ${wait} s.`;
      }
      showSendError(message, res.status === 409);
      if (res.status === 409) {
        refuseNick(nick, why);
      }
    }
  } catch {
    showSendError("Not sent: the server could not be reached. Your message is still here; try again.");
  } finally {
    page.sending = false;
    el.text.readOnly = false;
    updateSend();
  }
}

// The nickname dialog: asked on first send, from the nick button, and
// after the server said a nick belongs to someone else (refused is that
// nick, which the dialog then starts from, with the server's sentence).
function askNick(then, refused = "") {
  page.afterNick = then ?? null;
  el.nickInput.value = refused || page.nick;
  el.nickInput.setCustomValidity("");
  el.nickWhy.textContent = refused === "" ? "" : page.refusal.why;
  el.nickWhy.hidden = refused === "";
  el.nickDialog.returnValue = "";
  el.nickDialog.showModal();
  if (refused !== "") {
    el.nickInput.select();
  }
}

el.nickForm.addEventListener("submit", (e) => {
  e.preventDefault();
  const v = validNick(el.nickInput.value);
  if (!v.error && page.refused.has(nickKey(v.nick))) {
    v.error = `“${v.nick}” is in use by someone else. Please choose another nickname.`;
  }
  if (v.error) {
    el.nickInput.setCustomValidity(v.error);
    el.nickInput.reportValidity();
    return;
  }
  if (page.afterNick === null) {
    saveNick(v.nick);
  } else {
    // Asked for a message: the nick is remembered, and told to the
    // stream, once the server took the message (it may belong to
    // someone else).
    page.nick = v.nick;
    showNick();
  }
  el.nickDialog.close("ok");
});
el.nickInput.addEventListener("input", () => el.nickInput.setCustomValidity(""));
el.nickCancel.addEventListener("click", () => el.nickDialog.close("cancel"));
el.nickDialog.addEventListener("close", () => {
  const then = page.afterNick;
  page.afterNick = null;
  el.text.focus();
  if (el.nickDialog.returnValue === "ok" && then !== null) {
    then();
  }
});
el.nickButton.addEventListener("click", () => askNick(null));
el.renick.addEventListener("click", () => askNick(send, page.refusal.nick));

el.compose.addEventListener("submit", (e) => {
  e.preventDefault();
  send();
});
el.text.addEventListener("input", updateSend);
el.text.addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
    e.preventDefault();
    send();
  }
});

el.roomForm.addEventListener("submit", (e) => {
  e.preventDefault();
  const room = el.roomInput.value.trim();
  if (!roomPattern.test(room)) {
    el.roomInput.reportValidity();
    return;
  }
  location.hash = room;
});
window.addEventListener("hashchange", () => enterRoom(roomFromAddress(location)));

el.scroller.addEventListener("scroll", () => {
  page.stuck = atBottom();
  if (page.stuck) {
    page.unseen = 0;
    el.jump.hidden = true;
  }
});
// The log's box shrinks when the header or the writing area grow (the
// presence line arrives, an error shows, the phone's keyboard opens): a
// reader who was at the bottom stays there.
new ResizeObserver(() => {
  if (page.stuck) {
    el.scroller.scrollTop = el.scroller.scrollHeight;
  }
}).observe(el.scroller);
el.jump.addEventListener("click", () => {
  scrollToBottom();
  el.text.focus();
});

document.addEventListener("visibilitychange", () => {
  if (!document.hidden) {
    page.unread = 0;
    updateTitle();
  }
});

showNick();
updateSend();
enterRoom(roomFromAddress(location));
