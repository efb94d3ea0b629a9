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
  roomFromAddress,
  roomPattern,
  validNick,
} from "./format.js";

const $ = (id) => document.getElementById(id);
const el = {
  roomName: $("room-name"),
  state: $("state"),
  roomForm: $("room-form"),
  roomInput: $("room-input"),
  scroller: $("scroller"),
  log: $("log"),
  empty: $("empty"),
  jump: $("jump"),
  compose: $("compose"),
  nickButton: $("nick-button"),
  sendError: $("send-error"),
  text: $("text"),
  send: $("send"),
  nickDialog: $("nick-dialog"),
  nickForm: $("nick-form"),
  nickInput: $("nick-input"),
  nickCancel: $("nick-cancel"),
};

const nickKey = "cgichat.nick";

// The page's state, all in one place.
const page = {
  room: "",
  feed: null,
  nick: loadNick(),
  shown: new Set(), // ids of the messages in the log
  lastDay: "", // the local day of the newest message shown
  maxId: 0, // the newest message shown
  joined: false, // the history is in; what comes now is new
  unread: 0, // new messages while the tab was hidden
  unseen: 0, // new messages below the visible part of the log
  sending: false,
  afterNick: null, // what to do once a nickname is chosen
};

// Nickname, kept in localStorage (which may be unavailable: private modes,
// disabled storage). Without it the nick lasts as long as the page.
function loadNick() {
  try {
    return localStorage.getItem(nickKey) || "";
  } catch {
    return "";
  }
}

function saveNick(nick) {
  page.nick = nick;
  try {
    localStorage.setItem(nickKey, nick);
  } catch {
    // Not remembered; still used for this page.
  }
  showNick();
}

function showNick() {
  const nick = page.nick;
  el.nickButton.textContent = nick || "choose a nickname";
  for (const li of el.log.querySelectorAll(".msg")) {
    li.classList.toggle("own", li.dataset.nick === nick);
  }
}

// Rooms: from the address, switched with the form (which sets #room).
function enterRoom(wanted) {
  let room = wanted;
  let notice = "";
  if (!roomPattern.test(room)) {
    notice = `“${wanted}” is not a room name (1 to 32 letters, digits, - or _), so this is #${defaultRoom}.`;
    room = defaultRoom;
  }
  if (room === page.room) {
    return;
  }
  page.feed?.leave();
  Object.assign(page, { room, lastDay: "", maxId: 0, joined: false, unread: 0, unseen: 0 });
  page.shown.clear();
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
  page.feed = joinRoom(room, { onMessage: (m) => show(m), onState: showState });
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
    el.empty.hidden = page.shown.size > 0;
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
  const nick = document.createElement("span");
  nick.className = "nick " + nickColor(m.nick);
  nick.textContent = m.nick;
  nick.title = m.nick;
  const colon = document.createElement("span");
  colon.className = "visually-hidden";
  colon.textContent = ":";
  const text = document.createElement("span");
  text.className = "text";
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
    el.jump.textContent = page.unseen === 1 ? "1 new message ↓" : `${page.unseen} new messages ↓`;
    el.jump.hidden = false;
  }
}

// Sending.
function updateSend() {
  el.send.disabled = page.sending || el.text.value.trim() === "";
}

function showSendError(message) {
  el.sendError.textContent = message;
  el.sendError.hidden = message === "";
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
  const room = page.room;
  try {
    const res = await fetch("cgi-bin/post", {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify({ room, nick: page.nick, text }),
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
      // The stream brings it too; ids make sure it shows once.
      show(body);
      scrollToBottom();
    } else {
      const why = body?.error || res.statusText || "The server refused the message.";
      showSendError(`Not sent: ${why} (HTTP ${res.status})`);
    }
  } catch {
    showSendError("Not sent: the server could not be reached. Your message is still here; try again.");
  } finally {
    page.sending = false;
    el.text.readOnly = false;
    updateSend();
  }
}

// The nickname dialog: asked on first send, and from the nick button.
function askNick(then) {
  page.afterNick = then ?? null;
  el.nickInput.value = page.nick;
  el.nickInput.setCustomValidity("");
  el.nickDialog.returnValue = "";
  el.nickDialog.showModal();
}

el.nickForm.addEventListener("submit", (e) => {
  e.preventDefault();
  const v = validNick(el.nickInput.value);
  if (v.error) {
    el.nickInput.setCustomValidity(v.error);
    el.nickInput.reportValidity();
    return;
  }
  saveNick(v.nick);
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
  if (atBottom()) {
    page.unseen = 0;
    el.jump.hidden = true;
  }
});
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
