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
  fullTime,
  mentions,
  messageText,
  nickColor,
  nickKey,
  roomFromAddress,
  roomPattern,
  roomRule,
  textLength,
  validNick,
} from "./format.js";
import { explain, hostAnswer, plain, readAnswer } from "./answers.js";

const $ = (id) => document.getElementById(id);
const el = {
  bar: $("bar"),
  roomName: $("room-name"),
  state: $("state"),
  stateSaid: $("state-said"),
  more: $("more"),
  trouble: $("trouble"),
  troubleText: $("trouble-text"),
  retry: $("retry"),
  presence: $("presence"),
  presenceLabel: $("presence-label"),
  presenceList: $("presence-list"),
  roomForm: $("room-form"),
  roomInput: $("room-input"),
  scroller: $("scroller"),
  logRegion: $("log-region"),
  log: $("log"),
  empty: $("empty"),
  jump: $("jump"),
  compose: $("compose"),
  nickButton: $("nick-button"),
  alertsButton: $("alerts-button"),
  sendError: $("send-error"),
  renick: $("renick"),
  text: $("text"),
  send: $("send"),
  count: $("count"),
  nickDialog: $("nick-dialog"),
  nickForm: $("nick-form"),
  nickInput: $("nick-input"),
  nickWhy: $("nick-why"),
  nickCancel: $("nick-cancel"),
  alertsDialog: $("alerts-dialog"),
  alertNotify: $("alert-notify"),
  alertSound: $("alert-sound"),
  alertsProblem: $("alerts-problem"),
};

const nickStorage = "cgichat.nick";

// The most messages the log holds while the reader is at the bottom: when
// new ones would pass it, the oldest trimChunk go (in one go, so that the
// log's layout shifts once per hundred messages, not with each). Laying
// out the log takes time in proportion to its length (8 ms at 1,500
// messages on a laptop), and a phone is slower: 500 keeps that small, is
// ten times the default history (CHAT_HISTORY=50), and as many as a tab
// hands to the room's other tabs (feed.js). Scrolled up, nothing is
// dropped until the reader is back at the bottom.
const logBound = 500;
const trimChunk = 100;

// The most messages drawn in one frame; more wait for the next frames, so
// that a burst (a tab coming back to the front, a long backlog) keeps the
// page responsive.
const perFrame = 100;

// The shortest time between two draws of the log. Each draw lays out the
// log and paints it whether it adds one message or ten: in a busy room,
// drawing ten times a second rather than sixty saves most of that work,
// and a message shows at most a tenth of a second later.
const drawGap = 100;

// Longest message (in characters, as the server counts them), and the
// length from which the page shows how close a message is.
const maxText = 2000;
const countFrom = 1800;

// The page's state, all in one place.
const page = {
  room: "",
  feed: null,
  nick: loadNick(),
  presence: null, // the nicks in the room, once the stream said
  state: null, // the connection state, as the stream reported it last
  said: "", // the state last read out (role=status)
  ticker: 0, // counts down to the next try, while offline
  shown: new Set(), // ids of the messages shown (and deleted since)
  floor: 0, // the newest message dropped from the top of the log
  pending: [], // what arrived since the last frame: {message} or {notice}
  frame: 0, // the frame (or, in a hidden tab, the timer) that draws it
  drawn: 0, // when the log was last drawn (performance.now())
  count: 0, // messages in the log
  lastDay: "", // the local day of the newest message shown
  maxId: 0, // the newest message shown
  joined: false, // the history is in; what comes now is new
  unread: 0, // new messages while the tab was hidden, mentions aside
  mentions: 0, // new messages naming the reader while the tab was hidden
  unseen: 0, // new messages below the visible part of the log
  stuck: true, // the reader was at the bottom when the log last scrolled
  sending: false,
  localError: false, // the send error is the page's own (length), not the server's
  blocked: null, // a text the host refused for what it says: not sent again as it is
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
    const own = li.dataset.nick === nick;
    li.classList.toggle("own", own);
    markMention(li, !own && nick !== "" && mentions(li.querySelector(".text").textContent, nick));
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
  cancelFrame();
  Object.assign(page, {
    room,
    presence: null,
    floor: 0,
    pending: [],
    count: 0,
    lastDay: "",
    maxId: 0,
    joined: false,
    unread: 0,
    mentions: 0,
    unseen: 0,
    stuck: true,
  });
  page.shown.clear();
  showPresence(null);
  el.log.replaceChildren();
  if (notice !== "") {
    el.log.append(noticeItem("notice", notice));
  }
  el.empty.hidden = true;
  el.jump.hidden = true;
  el.roomName.textContent = "#" + room;
  el.roomInput.value = room;
  el.text.placeholder = "Message #" + room;
  el.logRegion.setAttribute("aria-label", "Messages in #" + room);
  updateTitle();
  showState({ status: "connecting", mode: "live", every: 0, detail: null, retryAt: 0 });
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
// removed by the chat's retention. The notice goes where the gap is: after
// what came before it, before what comes after.
function showTrimmed() {
  page.pending.push({
    notice: noticeItem(
      "notice trimmed",
      "Some messages from while this page was away are no longer kept by this chat (it keeps only recent ones), so they are missing here.",
    ),
  });
  scheduleFrame();
}

function noticeItem(className, text) {
  const li = document.createElement("li");
  li.className = className;
  li.textContent = text;
  return li;
}

// The title counts, while the tab is hidden, the new messages that name
// the reader (@2) apart from the others ((5)): "@2 (5) #lobby · cgichat".
function updateTitle() {
  const counts = [];
  if (page.mentions > 0) {
    counts.push(`@${page.mentions}`);
  }
  if (page.unread > 0) {
    counts.push(`(${page.unread})`);
  }
  counts.push(`#${page.room} · cgichat`);
  document.title = counts.join(" ");
}

// Connection state, in words a person reads: the header says how messages
// arrive; when offline, a line under it says why (the server's sentence)
// with a button to try at once.
const stateTitles = {
  connecting: "Opening the stream of messages.",
  live: "New messages appear as they are sent.",
  batch: "This host holds streams back, so the page asks for new messages in turns; they arrive within a second or so.",
  poll: "The server has no stream to spare just now, so the page asks for new messages every few seconds.",
  reconnecting: "The connection ended or broke; the page reconnects and asks for every message after the last one it has.",
  offline: "The page cannot reach the chat just now; it tries again by itself, less often the longer it fails.",
};

function stateText(s) {
  switch (s.status) {
    case "live":
      return s.mode === "poll" ? `Live, checking every ${Math.max(1, Math.round(s.every / 1000))} s` : "Live";
    case "reconnecting":
      return "Reconnecting…";
    case "offline":
      return s.retryAt > 0
        ? `Offline — trying again in ${Math.max(1, Math.ceil((s.retryAt - Date.now()) / 1000))} s`
        : "Offline — trying again now…";
    default:
      return "Connecting…";
  }
}

function showState(s) {
  page.state = s;
  el.state.dataset.status = s.status;
  el.state.dataset.mode = s.mode;
  el.state.title = stateTitles[s.status === "live" && s.mode !== "live" ? s.mode : s.status] ?? "";
  tick();
  clearInterval(page.ticker);
  if (s.status === "offline" && s.retryAt > 0) {
    page.ticker = setInterval(tick, 250);
  }
  el.trouble.hidden = s.status !== "offline";
  const detail = s.status === "offline" && s.detail ? s.detail : { text: "", help: false };
  el.troubleText.replaceChildren(explain(document, detail));
  // Read out a change of state once, not each second of a countdown nor
  // each try of an outage.
  const said = s.status === "offline" ? `Offline. ${plain(detail)}` : stateText(s);
  if (s.status !== "connecting" && said !== page.said) {
    page.said = said;
    el.stateSaid.textContent = s.status === "offline" ? `${stateText(s)}. ${plain(detail)}` : said;
  }
  if (s.status === "live" && !page.joined) {
    // The history is in: it shows with the word "Live", not a frame later.
    cancelFrame();
    drawPending();
    page.joined = true;
    el.empty.hidden = page.count > 0 || page.pending.some((p) => p.message);
    scrollToBottom();
  }
}

// tick shows the state's words, counting down to the next try.
function tick() {
  const text = stateText(page.state);
  if (el.state.textContent !== text) {
    el.state.textContent = text;
  }
}

// The log. Messages are kept in id order and shown once each. What arrives
// is drawn once per frame (for a hidden tab, which draws no frames, at
// most about once a second), in one change of the page, and the layout is
// read once then: to follow the newest message.
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
  if (m.room !== page.room || page.shown.has(m.id) || m.id <= page.floor) {
    return;
  }
  page.shown.add(m.id);
  const own = m.nick === page.nick;
  const mention = !own && page.nick !== "" && mentions(m.text, page.nick);
  if (page.joined && !own) {
    if (document.hidden) {
      if (mention) {
        page.mentions++;
      } else {
        page.unread++;
      }
      updateTitle();
    }
    if (mention) {
      alertMention(m);
    }
  }
  page.pending.push({ message: m, own, mention });
  scheduleFrame();
}

function scheduleFrame() {
  if (page.frame !== 0) {
    return;
  }
  const wait = page.drawn + drawGap - performance.now();
  if (document.hidden || wait > 0) {
    // A hidden tab draws no frames: a timer draws (at most about once a
    // second there).
    page.frame = -setTimeout(() => {
      page.frame = 0;
      if (document.hidden) {
        drawPending();
      } else {
        page.frame = requestAnimationFrame(drawPending);
      }
    }, Math.max(wait, 0));
  } else {
    page.frame = requestAnimationFrame(drawPending);
  }
}

function cancelFrame() {
  if (page.frame > 0) {
    cancelAnimationFrame(page.frame);
  } else if (page.frame < 0) {
    clearTimeout(-page.frame);
  }
  page.frame = 0;
}

// A hidden tab's timer may wait a while: once visible, draw at the next
// frame.
document.addEventListener("visibilitychange", () => {
  if (!document.hidden && page.frame < 0) {
    cancelFrame();
    scheduleFrame();
  }
});

// drawPending adds what arrived since the last frame to the log, up to
// perFrame messages (all of the history, when the room is joined).
function drawPending() {
  page.frame = 0;
  page.drawn = performance.now();
  let batch = page.pending;
  const stick = !page.joined || page.stuck || batch.some((p) => p.own);
  // At the bottom, what the bound would drop at once is not drawn at all.
  if (stick) {
    let messages = 0;
    for (let i = batch.length - 1; i >= 0; i--) {
      if (batch[i].message && ++messages > logBound) {
        for (const p of batch.slice(0, i + 1)) {
          if (p.message) {
            page.floor = Math.max(page.floor, p.message.id);
          }
        }
        batch = batch.slice(i + 1);
        break;
      }
    }
  }
  const limit = page.joined ? perFrame : batch.length;
  page.pending = batch.slice(limit);
  batch = batch.slice(0, limit);
  if (page.pending.length > 0) {
    scheduleFrame();
  }
  if (stick) {
    trimLog(batch.reduce((n, p) => n + (p.message ? 1 : 0), 0));
  }
  let added = document.createDocumentFragment();
  for (const p of batch) {
    if (p.notice) {
      added.append(p.notice);
      continue;
    }
    const li = messageItem(p);
    const m = p.message;
    page.count++;
    if (m.id > page.maxId) {
      const date = new Date(m.time);
      const day = dayKey(date);
      if (day !== page.lastDay) {
        added.append(noticeItem("day", dayName(date)));
        page.lastDay = day;
      }
      added.append(li);
      page.maxId = m.id;
    } else {
      // Older than what is shown (rare: a tab handing over its stream):
      // in its place, once what came before it is in.
      el.log.append(added);
      added = document.createDocumentFragment();
      const later = [...el.log.querySelectorAll(".msg")].find((x) => Number(x.dataset.id) > m.id);
      el.log.insertBefore(li, later ?? null);
    }
    if (!stick && !p.own) {
      if (page.unseen === 0) {
        el.log.querySelector(".first-unseen")?.classList.remove("first-unseen");
        li.classList.add("first-unseen");
      }
      page.unseen++;
    }
  }
  el.log.append(added);
  if (page.count > 0) {
    el.empty.hidden = true;
  }
  if (stick) {
    scrollToBottom();
  } else {
    showUnseen();
  }
}

function messageItem({ message: m, own, mention }) {
  const date = new Date(m.time);
  const li = document.createElement("li");
  li.className = "msg";
  li.classList.toggle("own", own);
  li.dataset.id = String(m.id);
  li.dataset.nick = m.nick;
  const time = document.createElement("time");
  time.dateTime = m.time;
  time.textContent = clock(date);
  time.title = fullTime(date);
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
  markMention(li, mention);
  return li;
}

// markMention highlights a message that names the reader, and says so to
// screen readers too.
function markMention(li, mention) {
  if (li.classList.contains("mention") === mention) {
    return;
  }
  li.classList.toggle("mention", mention);
  if (mention) {
    const said = document.createElement("span");
    said.className = "visually-hidden said-mention";
    said.textContent = " (mentions you)";
    li.append(said);
  } else {
    li.querySelector(".said-mention")?.remove();
  }
}

// trimLog makes room in the log for coming more messages within the
// bound: it drops the oldest messages (trimChunk more than it must), with
// the day lines and notices among them, keeps the day line of the first
// one left, and says at the top that earlier messages are not shown.
function trimLog(coming) {
  if (page.count + coming <= logBound) {
    return;
  }
  let extra = Math.min(page.count, page.count + coming - logBound + trimChunk);
  let last = null; // the last element to drop
  let day = null; // the last day line dropped
  for (let li = el.log.firstElementChild; li !== null && extra > 0; li = li.nextElementSibling) {
    last = li;
    if (li.classList.contains("msg")) {
      extra--;
      page.count--;
      page.floor = Math.max(page.floor, Number(li.dataset.id));
    } else if (li.classList.contains("day")) {
      day = li;
    }
  }
  const range = document.createRange();
  range.setStartBefore(el.log.firstChild);
  range.setEndAfter(last);
  range.deleteContents();
  if (day !== null && el.log.firstElementChild?.classList.contains("msg")) {
    el.log.prepend(day);
  }
  el.log.prepend(
    noticeItem("notice earlier", "Earlier messages are not shown here, to keep this page quick."),
  );
  // Ids below the floor are refused by it; the set need not keep them.
  for (const id of page.shown) {
    if (id <= page.floor) {
      page.shown.delete(id);
    }
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
  const waiting = page.pending.findIndex((p) => p.message?.id === id);
  if (waiting >= 0) {
    page.pending.splice(waiting, 1);
    return;
  }
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
  page.count--;
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

// The time column: as wide as this reader's clock is ("07:04 AM" in the
// United States, "19:04" in Britain), measured once.
function fitTimeColumn() {
  const li = document.createElement("li");
  li.className = "msg";
  li.style.position = "absolute";
  li.style.visibility = "hidden";
  li.style.display = "block"; // the times inline, as wide as their text
  const times = [new Date(2000, 0, 1, 10, 58), new Date(2000, 0, 1, 22, 58)].map((d) => {
    const t = document.createElement("time");
    t.textContent = clock(d);
    li.append(t);
    return t;
  });
  el.log.append(li);
  const width = Math.max(...times.map((t) => t.getBoundingClientRect().width));
  li.remove();
  if (width > 0) {
    document.documentElement.style.setProperty("--time-width", `${Math.ceil(width) + 2}px`);
  }
}

// Alerts for mentions: a browser notification and a short sound, each
// only once the reader asked for it (remembered in this browser), and
// only while the tab is in the background.
const alertStorage = { notify: "cgichat.alert.notify", sound: "cgichat.alert.sound" };
const alerts = { notify: loadAlert("notify"), sound: loadAlert("sound"), audio: null };

function loadAlert(name) {
  try {
    return localStorage.getItem(alertStorage[name]) === "on";
  } catch {
    return false;
  }
}

function saveAlert(name, on) {
  alerts[name] = on;
  try {
    if (on) {
      localStorage.setItem(alertStorage[name], "on");
    } else {
      localStorage.removeItem(alertStorage[name]);
    }
  } catch {
    // Not remembered; still used for this page.
  }
  showAlerts();
}

function canNotify() {
  return "Notification" in window && Notification.permission === "granted";
}

function showAlerts() {
  const notify = alerts.notify && canNotify();
  const on = [notify && "notification", alerts.sound && "sound"].filter(Boolean);
  el.alertsButton.textContent = on.length === 0 ? "Alerts: off" : "Alerts: " + on.join(" and ");
  el.alertNotify.checked = notify;
  el.alertSound.checked = alerts.sound;
}

// alertMention tells a reader whose tab is in the background that a new
// message names them. Of the tabs of this browser showing the room, the
// first to get the message alerts.
function alertMention(m) {
  if ((!alerts.notify && !alerts.sound) || (!document.hidden && document.hasFocus()) || !firstToAlert(m)) {
    return;
  }
  if (alerts.notify && canNotify()) {
    try {
      const n = new Notification(`${m.nick} mentioned you in #${m.room}`, {
        body: m.text.length > 200 ? m.text.slice(0, 200) + "…" : m.text,
        tag: `cgichat #${m.room} ${m.id}`,
      });
      n.addEventListener("click", () => {
        window.focus();
        n.close();
      });
    } catch {
      // Notifications exist but cannot be made here (some phones).
    }
  }
  if (alerts.sound) {
    chime();
  }
}

function firstToAlert(m) {
  const key = "cgichat.alerted " + new URL("cgi-bin/stream?room=" + m.room, document.baseURI).href;
  try {
    if (Number(localStorage.getItem(key)) >= m.id) {
      return false;
    }
    localStorage.setItem(key, String(m.id));
  } catch {
    // Without storage each tab alerts; the notification's tag keeps one.
  }
  return true;
}

// chime plays two short tones, made on the spot (no sound file). Browsers
// let a page make sound only once the reader has clicked or typed in it:
// the audio is set up then.
function chime() {
  const ctx = alerts.audio;
  if (ctx === null) {
    return;
  }
  const t = ctx.currentTime;
  const osc = ctx.createOscillator();
  const gain = ctx.createGain();
  osc.type = "sine";
  osc.frequency.setValueAtTime(880, t);
  osc.frequency.setValueAtTime(1320, t + 0.12);
  gain.gain.setValueAtTime(0.0001, t);
  gain.gain.exponentialRampToValueAtTime(0.25, t + 0.02);
  gain.gain.exponentialRampToValueAtTime(0.0001, t + 0.35);
  osc.connect(gain).connect(ctx.destination);
  osc.start(t);
  osc.stop(t + 0.4);
}

function unlockAudio() {
  if (!alerts.sound || alerts.audio !== null) {
    return;
  }
  const AudioContext = window.AudioContext ?? window.webkitAudioContext;
  if (AudioContext !== undefined) {
    alerts.audio = new AudioContext();
  }
}

for (const type of ["pointerdown", "keydown"]) {
  window.addEventListener(type, unlockAudio, { capture: true });
}

function showAlertsProblem(text) {
  el.alertsProblem.textContent = text;
  el.alertsProblem.hidden = text === "";
}

el.alertsButton.addEventListener("click", () => {
  showAlertsProblem("");
  showAlerts();
  el.alertsDialog.showModal();
});
el.alertNotify.addEventListener("change", async () => {
  showAlertsProblem("");
  if (!el.alertNotify.checked) {
    saveAlert("notify", false);
    return;
  }
  // Asked here only: after the reader ticked the box.
  let permission = "denied";
  if ("Notification" in window) {
    permission = Notification.permission;
    if (permission === "default") {
      permission = await Notification.requestPermission();
    }
  }
  if (permission !== "granted") {
    showAlertsProblem(
      !("Notification" in window)
        ? "This browser cannot show notifications from this page."
        : permission === "denied"
          ? "The browser blocks notifications from this site (or from any site without HTTPS). You can allow them in its settings for this site."
          : "Notifications were not allowed.",
    );
  }
  saveAlert("notify", permission === "granted");
});
el.alertSound.addEventListener("change", () => {
  saveAlert("sound", el.alertSound.checked);
  if (alerts.sound) {
    unlockAudio();
    chime(); // how it sounds
  }
});

// Sending.
function updateSend() {
  el.send.disabled = page.sending || el.text.value.trim() === "" || el.text.value === page.blocked;
}

// updateCount shows the message's length once it nears the limit.
function updateCount() {
  const n = textLength(el.text.value);
  el.count.hidden = n < countFrom;
  el.count.classList.toggle("over", n > maxText);
  const of = `${n.toLocaleString()} of ${maxText.toLocaleString()} characters`;
  el.count.textContent = n > maxText ? `${of}: ${(n - maxText).toLocaleString()} too many` : of;
  if (page.localError && n <= maxText) {
    showSendError("");
  }
}

// showSendError shows why the last message was not sent (or nothing, for
// ""): a sentence, or a {text, help} (see answers.js); with a button to
// choose another nickname when that is the cure.
function showSendError(why, offerNick = false) {
  const d = typeof why === "string" ? { text: why, help: false } : why;
  el.sendError.replaceChildren(explain(document, d));
  el.sendError.hidden = d.text === "";
  el.renick.hidden = !offerNick;
  page.localError = false;
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
  if (page.sending || text.trim() === "" || text === page.blocked) {
    // Refused as it stands (the error says why): it would be again.
    return;
  }
  const length = textLength(text);
  if (length > maxText) {
    showSendError(
      `Too long to send: ${length.toLocaleString()} characters, and a message holds at most ${maxText.toLocaleString()}. Please shorten it by ${(length - maxText).toLocaleString()}.`,
    );
    page.localError = true;
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
    const sent = res.status === 201 ? await res.json().catch(() => null) : null;
    if (sent !== null && Number.isSafeInteger(sent.id)) {
      el.text.value = "";
      page.blocked = null;
      updateCount();
      showSendError("");
      if (page.nick === nick) {
        saveNick(nick); // it is this browser's now
      }
      // The stream brings it too; ids make sure it shows once.
      show(sent);
    } else {
      refused(text, nick, res.bodyUsed ? { status: res.status, error: "", html: false, wait: 0 } : await readAnswer(res));
    }
  } catch {
    showSendError("Not sent: the server could not be reached. Your message is still here; try again.");
  } finally {
    page.sending = false;
    el.text.readOnly = false;
    updateSend();
  }
}

// refused says why the message text was not sent: the chat's sentence, or
// what the web host's answer means (answers.js). The text stays in the box;
// if sending it again would be refused the same way (a firewall that
// objects to what it says, a size the host does not take), Send stays off
// until it is changed.
function refused(text, nick, answer) {
  const why = hostAnswer(answer, "post", page.state?.status === "live");
  const chat = answer.error !== "";
  if (chat && answer.status === 429 && answer.wait > 0) {
    why.text += ` You can send again in ${answer.wait} s.`;
  }
  showSendError(why, chat && answer.status === 409);
  if (!why.resend) {
    page.blocked = text;
  }
  if (chat && answer.status === 409) {
    refuseNick(nick, answer.error);
  }
}

// A paste or a drop that would make the message longer than the server
// takes is refused before it lands, with the reason.
function refuseLongInsert(e, inserted) {
  const v = el.text.value;
  const kept = textLength(v.slice(0, el.text.selectionStart)) + textLength(v.slice(el.text.selectionEnd));
  const n = kept + textLength(inserted.replace(/\r\n?/g, "\n"));
  if (n <= maxText) {
    return;
  }
  e.preventDefault();
  showSendError(
    `Not pasted: with it the message would be ${n.toLocaleString()} characters long, and at most ${maxText.toLocaleString()} can be sent. Please paste a shorter part.`,
  );
  page.localError = true;
}

el.text.addEventListener("paste", (e) => refuseLongInsert(e, e.clipboardData?.getData("text/plain") ?? ""));
el.text.addEventListener("drop", (e) => refuseLongInsert(e, e.dataTransfer?.getData("text/plain") ?? ""));

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
el.text.addEventListener("input", () => {
  updateSend();
  updateCount();
});
el.text.addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
    e.preventDefault();
    send();
  }
});

// The room form says in a sentence which names are allowed (the browser's
// own words for a pattern say only that the format is wrong).
el.roomForm.addEventListener("submit", (e) => {
  e.preventDefault();
  const room = el.roomInput.value.trim();
  if (!roomPattern.test(room)) {
    el.roomInput.setCustomValidity(roomRule);
    el.roomInput.reportValidity();
    return;
  }
  el.bar.classList.remove("open");
  el.more.setAttribute("aria-expanded", "false");
  location.hash = room;
});
el.roomInput.addEventListener("input", () => el.roomInput.setCustomValidity(""));
window.addEventListener("hashchange", () => enterRoom(roomFromAddress(location)));

// On phones the header is one line; "Room" opens the switcher and who is
// in the room.
el.more.addEventListener("click", () => {
  const open = el.bar.classList.toggle("open");
  el.more.setAttribute("aria-expanded", String(open));
});

el.retry.addEventListener("click", () => page.feed?.retryNow());

el.scroller.addEventListener("scroll", () => {
  page.stuck = atBottom();
  if (page.stuck) {
    page.unseen = 0;
    el.jump.hidden = true;
    // Back at the bottom: the log may have grown past its bound meanwhile.
    if (page.count > logBound) {
      trimLog(0);
      scrollToBottom();
    }
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
// Tapping the button shows the newest messages; it leaves the message box
// alone (focusing it would open a phone's keyboard over them).
el.jump.addEventListener("click", () => {
  scrollToBottom();
  el.scroller.focus({ preventScroll: true });
});

document.addEventListener("visibilitychange", () => {
  if (!document.hidden) {
    page.unread = 0;
    page.mentions = 0;
    updateTitle();
  }
});

fitTimeColumn();
showNick();
showAlerts();
updateSend();
enterRoom(roomFromAddress(location));
