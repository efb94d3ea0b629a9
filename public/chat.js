// The cgichat page: shows a room's history and live messages, and sends.
//
// All addresses are relative (cgi-bin/post, cgi-bin/stream), so the page
// works from any folder of any host. Every piece of user text goes into the
// page as text nodes (textContent, createTextNode), never as HTML.

import { act } from "./actions.js";
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
import { setActions, startModeration } from "./moderate.js";
import { items as waiting, queue, renickHeld, retryNow as sendWaiting, setRoom as outboxRoom, startOutbox } from "./outbox.js";
import { readerId } from "./stream.js";

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
  outbox: $("outbox"),
  empty: $("empty"),
  jump: $("jump"),
  compose: $("compose"),
  nickButton: $("nick-button"),
  alertsButton: $("alerts-button"),
  modButton: $("mod-button"),
  done: $("done"),
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
  nickStatus: $("nick-status"),
  give: $("give"),
  giveNick: $("give-nick"),
  giveButton: $("give-button"),
  giveCode: $("give-code"),
  giveCodeText: $("give-code-text"),
  giveLink: $("give-link"),
  giveTime: $("give-time"),
  giveProblem: $("give-problem"),
  redeemForm: $("redeem-form"),
  redeemInput: $("redeem-input"),
  redeemStatus: $("redeem-status"),
  alertsDialog: $("alerts-dialog"),
  alertNotify: $("alert-notify"),
  alertSound: $("alert-sound"),
  alertsProblem: $("alerts-problem"),
};

const nickStorage = "cgichat.nick";

// Set once the outbox runs (after the first room is entered).
let outboxStarted = false;

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

// How many older messages the page asks for at a time when the reader
// scrolls near the top (the server gives at most 200).
const olderPage = 100;

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
  older: { state: "unknown", why: null, asked: 0 }, // earlier messages (see loadOlder)
  landing: new Map(), // message id → its "sending…" item, until the message is drawn
  confirmed: new Set(), // keys of waiting messages the stream has brought already
  errorKind: "", // what the send error is about (showSendError), or ""
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
    setActions(li);
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
    older: { state: "unknown", why: null, asked: page.older.asked },
  });
  page.shown.clear();
  page.landing.clear();
  page.confirmed.clear();
  showPresence(null);
  el.log.replaceChildren(top);
  showTop();
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
  if (outboxStarted) {
    outboxRoom(room);
    showOutbox();
  }
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
  const was = page.state?.status;
  page.state = s;
  if (s.status === "live" && was !== "live") {
    // The connection is back: what waits goes out now.
    sendWaiting();
  }
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
    // A log shorter than the screen is near its top already.
    checkTop();
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
  // Set only when it changes: a busy room calls this at every draw.
  if (!el.jump.hidden) {
    el.jump.hidden = true;
  }
}

function show(m) {
  if (m.room !== page.room || page.shown.has(m.id) || m.id <= page.floor) {
    land(m.id);
    return;
  }
  page.shown.add(m.id);
  if (el.outbox.firstChild !== null) {
    confirmWaiting(m);
  }
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
  // Live, the message's element is made now, in the task that brought it,
  // so that the frame which draws a busy room's messages only adds them.
  const p = { message: m, own, mention, li: null };
  if (page.joined) {
    p.li = messageItem(p);
  }
  page.pending.push(p);
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
  const last = page.drawn;
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
  const coming = batch.slice(0, limit).reduce((n, p) => n + (p.message ? 1 : 0), 0);
  if (stick && page.count > 0 && page.count + coming > logBound) {
    // The oldest go in a frame of their own, the new ones at the next:
    // dropping them moves the whole log, and adding to it in the same
    // frame made a busy room's longest frames.
    trimLog(coming);
    page.pending = batch;
    page.drawn = last;
    scheduleFrame();
    return;
  }
  page.pending = batch.slice(limit);
  batch = batch.slice(0, limit);
  if (page.pending.length > 0) {
    scheduleFrame();
  }
  const landed = [];
  let added = document.createDocumentFragment();
  for (const p of batch) {
    if (p.notice) {
      added.append(p.notice);
      continue;
    }
    const li = p.li ?? messageItem(p);
    if (p.li !== null) {
      setActions(li); // as they are now: a moderator may have logged in since
    }
    const m = p.message;
    page.count++;
    if (m.id > page.maxId) {
      const date = new Date(m.time);
      const day = dayKey(date);
      if (day !== page.lastDay) {
        added.append(dayItem(date));
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
    if (page.landing.has(m.id)) {
      landed.push(m.id);
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
  // Its "sending…" line goes as the message shows.
  for (const id of landed) {
    land(id);
  }
  if (page.count > 0 && !el.empty.hidden) {
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
  const text = document.createElement("span");
  text.className = "text";
  text.dir = "auto";
  text.append(messageText(document, m.text));
  // The colon after the nick is chat.css's (nick::after).
  li.append(time, " ", nick, " ", text);
  // Clips only where they are needed (chat.css): each is a layer the
  // browser updates at every draw of a busy log.
  li.classList.toggle("long-nick", !shortNick.test(m.nick));
  li.classList.toggle("marks", stackedMarks.test(m.nick + m.text));
  markMention(li, mention);
  setActions(li);
  return li;
}

// A nick of at most 8 letters, digits or punctuation of the Latin, Greek
// or Cyrillic scripts fits the nick column (8rem, bold) without an
// ellipsis; two combining marks in a row may stack above or below the line.
const shortNick = /^[\p{Script=Latin}\p{Script=Greek}\p{Script=Cyrillic}\p{Nd}\p{P}\p{Zs}]{1,8}$/u;
const stackedMarks = /\p{M}\p{M}/u;

// dayItem is the line that starts a day in the log.
function dayItem(date) {
  const li = noticeItem("day", dayName(date));
  li.dataset.day = dayKey(date);
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
  for (let li = top.nextElementSibling; li !== null && extra > 0; li = li.nextElementSibling) {
    last = li;
    if (li.classList.contains("msg")) {
      extra--;
      page.count--;
      page.floor = Math.max(page.floor, Number(li.dataset.id));
    } else if (li.classList.contains("day")) {
      day = li;
    }
  }
  if (last === null) {
    return;
  }
  const range = document.createRange();
  range.setStartAfter(top);
  range.setEndAfter(last);
  range.deleteContents();
  if (day !== null && top.nextElementSibling?.classList.contains("msg")) {
    top.after(day);
  }
  // They come back when the reader scrolls up to them (loadOlder).
  setOlder("more");
  // Ids below the floor are refused by it; the set need not keep them.
  for (const id of page.shown) {
    if (id <= page.floor) {
      page.shown.delete(id);
    }
  }
}

// Older history. The top of the log says what the page knows of the
// messages before the first one shown: nothing yet ("unknown", hidden),
// that there are some ("more": the bound dropped them, or the chat said
// so), that they are on their way ("loading"), that there are none
// ("beginning": the room starts there, or what the chat keeps of it), or
// that they could not be loaded ("failed"). When the reader scrolls near
// the top, the page asks the chat for the previous page of messages and
// puts it above, keeping what the reader looks at where it was.
const top = document.createElement("li");
top.className = "notice top";

function setOlder(state, why = null) {
  page.older.state = state;
  page.older.why = why;
  showTop();
}

function showTop() {
  const o = page.older;
  top.hidden = o.state === "unknown";
  top.className = "notice top " + o.state;
  const button = (text) => {
    const b = document.createElement("button");
    b.type = "button";
    b.className = "link-button";
    b.textContent = text;
    b.addEventListener("click", () => loadOlder());
    return b;
  };
  switch (o.state) {
    case "more":
      top.replaceChildren("Earlier messages are not shown here. ", button("Show earlier messages"));
      break;
    case "loading":
      top.replaceChildren("Loading earlier messages…");
      break;
    case "beginning":
      top.replaceChildren(`This is the beginning of #${page.room} (or of what this chat keeps of it).`);
      break;
    case "failed":
      top.replaceChildren("Earlier messages could not be loaded: ", explain(document, o.why), " ", button("Try again"));
      break;
    default:
      top.replaceChildren();
  }
}

// nearTop reports whether the reader is within a screen of the log's top.
function nearTop() {
  return el.scroller.scrollTop < Math.max(el.scroller.clientHeight, 300);
}

// checkTop loads earlier messages when the reader is near the top and
// there may be some.
function checkTop() {
  const state = page.older.state;
  if (page.joined && (state === "unknown" || state === "more") && nearTop()) {
    loadOlder();
  }
}

// keepPlace changes the log above what the reader sees with change, and
// then scrolls so that what the reader saw stays where it was (or, at the
// bottom, stays at the bottom).
function keepPlace(change) {
  const fromBottom = el.scroller.scrollHeight - el.scroller.scrollTop;
  change();
  if (page.stuck) {
    el.scroller.scrollTop = el.scroller.scrollHeight;
  } else {
    el.scroller.scrollTop = el.scroller.scrollHeight - fromBottom;
  }
}

// loadOlder asks the chat for the page of messages before the first one
// shown, and puts it above.
async function loadOlder() {
  const first = top.parentNode === el.log ? el.log.querySelector(".msg") : null;
  if (!page.joined || page.older.state === "loading" || first === null) {
    return;
  }
  const room = page.room;
  const before = Number(first.dataset.id);
  const asked = ++page.older.asked;
  keepPlace(() => setOlder("loading"));
  let got = null;
  let why = { text: "The chat could not be reached.", help: false };
  try {
    const q = new URLSearchParams({ room, before: String(before), limit: String(olderPage) });
    const res = await fetch("cgi-bin/stream?" + q, { headers: { Accept: "application/json" }, cache: "no-store" });
    if (res.ok && /^application\/json/i.test(res.headers.get("Content-Type") ?? "")) {
      const d = await res.json().catch(() => null);
      if (Array.isArray(d?.messages)) {
        got = d;
      } else {
        why = { text: "The chat's answer broke off.", help: false };
      }
    } else {
      why = hostAnswer(await readAnswer(res), "action");
    }
  } catch {
    // Not reached: why says so.
  }
  if (room !== page.room || asked !== page.older.asked) {
    return; // the page moved on meanwhile
  }
  if (got === null) {
    keepPlace(() => setOlder("failed", why));
    return;
  }
  const firstNow = el.log.querySelector(".msg");
  if (firstNow === null || Number(firstNow.dataset.id) !== before) {
    // The log changed at its top meanwhile (the bound dropped messages):
    // this page no longer joins on.
    keepPlace(() => setOlder("more"));
    checkTop();
    return;
  }
  keepPlace(() => {
    prependOlder(got.messages, before);
    setOlder(got.more === false ? "beginning" : "more");
  });
  // Still near the top (a short page, a tall screen): the next one.
  checkTop();
}

// prependOlder puts the messages before the id before above the first
// shown, oldest first, with their day lines, and not read out by screen
// readers. Whatever else the answer holds is left out: a message of
// another room, or one as new as those shown (it would stand out of
// order, and its id taken would keep the real one out of the log).
function prependOlder(messages, before) {
  const added = document.createDocumentFragment();
  let day = "";
  let n = 0;
  const older = messages.filter((m) => validMessage(m) && m.id < before && m.room === page.room);
  for (const m of older.sort((a, b) => a.id - b.id)) {
    if (page.shown.has(m.id)) {
      continue;
    }
    page.shown.add(m.id);
    const date = new Date(m.time);
    if (dayKey(date) !== day) {
      day = dayKey(date);
      added.append(dayItem(date));
    }
    const own = m.nick === page.nick;
    added.append(messageItem({ message: m, own, mention: !own && page.nick !== "" && mentions(m.text, page.nick) }));
    n++;
  }
  if (n === 0) {
    return;
  }
  page.count += n;
  // The day line of what was first goes if that day is where the new
  // messages end.
  const next = top.nextElementSibling;
  if (next?.classList.contains("day") && next.dataset.day === day) {
    next.remove();
  }
  // A log reads out what is added to it; what was there before is not news.
  el.logRegion.setAttribute("aria-live", "off");
  top.after(added);
  el.empty.hidden = true;
  clearTimeout(page.quiet);
  page.quiet = setTimeout(() => el.logRegion.removeAttribute("aria-live"), 500);
}

// validMessage reports whether m looks like a message of the chat.
function validMessage(m) {
  return (
    m !== null &&
    typeof m === "object" &&
    Number.isSafeInteger(m.id) &&
    typeof m.room === "string" &&
    typeof m.nick === "string" &&
    typeof m.text === "string" &&
    typeof m.time === "string" &&
    !Number.isNaN(Date.parse(m.time))
  );
}

function showUnseen() {
  el.jump.textContent = page.unseen === 1 ? "1 new message ↓" : `${page.unseen} new messages ↓`;
  el.jump.hidden = page.unseen === 0;
}

// unshow takes out a message a moderator deleted. Its id stays in
// page.shown, so it cannot come back.
function unshow(id) {
  page.shown.add(id);
  land(id);
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

// Sending. A message sent goes into the outbox (outbox.js) at once: it
// shows as "sending…" under the log until the chat has it, is sent again
// by itself when no answer came, and outlives a reload. The box is free
// for the next message meanwhile.
function updateSend() {
  el.send.disabled = el.text.value.trim() === "" || el.text.value === page.blocked;
}

// updateCount shows the message's length once it nears the limit.
function updateCount() {
  const n = textLength(el.text.value);
  el.count.hidden = n < countFrom;
  el.count.classList.toggle("over", n > maxText);
  const of = `${n.toLocaleString()} of ${maxText.toLocaleString()} characters`;
  el.count.textContent = n > maxText ? `${of}: ${(n - maxText).toLocaleString()} too many` : of;
  if (page.errorKind === "local" && n <= maxText) {
    showSendError("");
  }
}

// showSendError shows why a message was not sent, or is not sent yet (or
// nothing, for ""): a sentence, or a {text, help, after} (see answers.js;
// after is a sentence that follows the guide's name), with a button to
// choose another nickname when that is the cure. kind says which it is
// (page.errorKind: "refused", "nick", "waiting" or "local"). The same words
// again are not read out again.
function showSendError(why, offerNick = false, kind = "refused") {
  const d = typeof why === "string" ? { text: why, help: false } : why;
  const words = plain(d) + (d.after ? " " + d.after : "");
  page.errorKind = d.text === "" ? "" : kind;
  el.renick.hidden = !offerNick;
  el.sendError.classList.toggle("waiting", kind === "waiting");
  if (el.sendError.textContent === words && !el.sendError.hidden) {
    return;
  }
  el.sendError.replaceChildren(explain(document, d));
  if (d.after) {
    el.sendError.append(" " + d.after);
  }
  el.sendError.hidden = d.text === "";
}

function send() {
  const text = el.text.value;
  if (text.trim() === "" || text === page.blocked) {
    // Refused as it stands (the error says why): it would be again.
    return;
  }
  const length = textLength(text);
  if (length > maxText) {
    showSendError(
      `Too long to send: ${length.toLocaleString()} characters, and a message holds at most ${maxText.toLocaleString()}. Please shorten it by ${(length - maxText).toLocaleString()}.`,
      false,
      "local",
    );
    return;
  }
  if (page.nick === "") {
    askNick(send);
    return;
  }
  if (page.errorKind === "refused" || page.errorKind === "local") {
    showSendError(""); // about an earlier message
  }
  el.text.value = "";
  page.blocked = null;
  updateCount();
  updateSend();
  page.stuck = true; // one's own message: the log follows it
  queue(page.room, page.nick, text);
}

// showOutbox shows the messages of this room that wait to be sent, in
// order, after every message of the log: first those the chat has and
// that are about to show in the log (page.landing), then the rest, each
// with its time, nick, text and "sending…".
function showOutbox() {
  const lines = [...page.landing.values()];
  for (const m of waiting(page.room)) {
    if (page.confirmed.has(m.key)) {
      continue; // the stream brought it: it is in the log
    }
    const li = document.createElement("li");
    li.className = "pending";
    li.dataset.key = m.key;
    const time = document.createElement("time");
    const date = new Date(m.at);
    time.dateTime = date.toISOString();
    time.textContent = clock(date);
    const nick = document.createElement("span");
    nick.className = "nick " + nickColor(m.nick);
    nick.dir = "auto";
    nick.textContent = m.nick;
    const text = document.createElement("span");
    text.className = "text";
    text.dir = "auto";
    text.textContent = m.text;
    const state = document.createElement("span");
    state.className = "sending";
    state.textContent = m.held ? " waits for another nickname" : " sending…";
    text.append(state);
    li.append(time, " ", nick, " ", text);
    lines.push(li);
  }
  el.outbox.replaceChildren(...lines);
  if (page.stuck) {
    scrollToBottom();
  }
}

// land takes the "sending…" line of message id away: the message shows
// in the log now.
function land(id) {
  const li = page.landing.get(id);
  if (li !== undefined) {
    li.remove();
    page.landing.delete(id);
  }
}

// confirmWaiting: the stream brought m. If it is a message this browser
// tried to send and heard nothing back about (its answer was lost), the
// chat has it: its "sending…" line goes, and it is sent again at once with
// its key — the chat answers with this message (never a second one), and
// that takes it out of the outbox.
function confirmWaiting(m) {
  const key = nickKey(m.nick);
  const item = waiting(m.room).find(
    (w) => w.tried && !page.confirmed.has(w.key) && w.text === m.text && nickKey(w.nick) === key,
  );
  if (item !== undefined) {
    page.confirmed.add(item.key);
    showOutbox();
    sendWaiting();
  }
}

// The outbox's news.
const outboxEvents = {
  change: showOutbox,

  // The chat has it: the message shows in the log (its "sending…" line
  // until then), and a nick asked for on the way is the reader's now.
  sent(item, message) {
    page.confirmed.delete(item.key);
    // A message stored under a nick may have made it this browser's: what
    // a check said of it before (free) no longer holds.
    nickChecks.clear();
    if (page.nick === item.nick && loadNick() !== item.nick) {
      saveNick(item.nick);
    }
    const li = [...el.outbox.children].find((x) => x.dataset.key === item.key);
    if (li !== undefined && message.room === page.room) {
      page.landing.set(message.id, li);
    }
    show(message);
  },

  // Refused for good: the text comes back into the box, with why.
  refused(item, answer) {
    page.confirmed.delete(item.key);
    const why = hostAnswer(answer, "post", page.state?.status === "live");
    if (answer.error !== "" && answer.status === 429 && answer.wait > 0) {
      why.text += ` You can send again in ${formatWait(answer.wait)}.`;
    }
    if (item.room !== page.room) {
      why.text = why.text.replace(/^Not sent:/, `Not sent to #${item.room}:`);
    }
    const typed = el.text.value;
    el.text.value = typed.trim() === "" ? item.text : item.text + "\n\n" + typed;
    page.blocked = why.resend ? null : el.text.value;
    updateCount();
    updateSend();
    showSendError(why);
  },

  // 409: the nick belongs to someone else. The nick's messages wait, and
  // the page asks for another one; they go out under it.
  nick(item, answer) {
    page.refused.add(nickKey(item.nick));
    page.refusal = { nick: item.nick, why: answer.error };
    showSendError(hostAnswer(answer, "post"), true, "nick");
    if (page.nick === item.nick) {
      saveNick("");
    }
    if (!el.nickDialog.open) {
      askNick(() => {}, item.nick);
    }
  },

  // Not sent yet: no answer, or the chat is away for now. The messages
  // wait and go out by themselves; the line under the box says why.
  waiting(answer, at) {
    if (answer === null && at === 0) {
      if (page.errorKind === "waiting") {
        showSendError("");
      }
      return;
    }
    const why =
      answer === null
        ? { text: "Not sent yet: the chat could not be reached.", help: false }
        : hostAnswer(answer, "queued");
    why.after =
      answer?.status === 429 && answer.wait > 0
        ? `Your messages go out by themselves in ${formatWait(Math.ceil((at - Date.now()) / 1000))}.`
        : "Your messages wait here and go out by themselves as soon as it answers.";
    showSendError(why, false, "waiting");
  },
};

// formatWait says a wait in seconds in words: "20 s", "3 min", "2 h".
function formatWait(s) {
  if (s < 120) {
    return `${Math.max(1, s)} s`;
  }
  return s < 7200 ? `${Math.round(s / 60)} min` : `${Math.round(s / 3600)} h`;
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
    false,
    "local",
  );
}

el.text.addEventListener("paste", (e) => refuseLongInsert(e, e.clipboardData?.getData("text/plain") ?? ""));
el.text.addEventListener("drop", (e) => refuseLongInsert(e, e.dataTransfer?.getData("text/plain") ?? ""));

// The nickname dialog: asked on first send, from the nick button, and
// after the server said a nick belongs to someone else (refused is that
// nick, which the dialog then starts from, with the server's sentence).
// It checks the nick with the chat as it is typed (free, yours, taken,
// banned), refuses a taken or banned one at once, and offers to carry the
// reader's nick to another device, or to take one from another device.
function askNick(then, refused = "") {
  page.afterNick = then ?? null;
  el.nickInput.value = refused || page.nick;
  el.nickInput.setCustomValidity("");
  el.nickWhy.textContent = refused === "" ? "" : page.refusal.why;
  el.nickWhy.hidden = refused === "";
  el.nickDialog.returnValue = "";
  showNickStatus(null);
  el.redeemInput.value = "";
  el.redeemStatus.textContent = "";
  showGive(null);
  el.nickDialog.showModal();
  if (refused !== "") {
    el.nickInput.select();
  } else if (el.nickInput.value !== "") {
    checkNickSoon(0);
  }
  if (page.nick !== "" && refused === "") {
    // The holder of a nick may take it to another device.
    checkNick(page.nick).then((c) => {
      if (el.nickDialog.open && c.status === "yours") {
        showGive(c.nick);
      }
    });
  }
}

// What the chat said of the nicks checked lately: nick → {status, nick,
// why}, for a few seconds (typing back and forth asks once).
const nickChecks = new Map();
const nickCheckLife = 5000;
const nickCheckWait = 5000;

// checkNick asks the chat how nick stands for this browser. It returns
// {status, nick, why}: status "free", "yours", "taken", "banned" (nick as
// the chat would store it), "invalid" (why: the page's or the chat's
// sentence) or "unknown" (the chat could not be asked: the first post
// tells).
async function checkNick(value) {
  const v = validNick(value);
  if (v.error) {
    return { status: "invalid", nick: value, why: v.error };
  }
  const known = nickChecks.get(v.nick);
  if (known !== undefined && Date.now() - known.at < nickCheckLife) {
    return known.result;
  }
  // A chat that does not answer soon leaves the nick to the first post.
  const r = await act({ action: "check-nick", nick: v.nick }, nickCheckWait);
  let result = { status: "unknown", nick: v.nick, why: "" };
  if (r.ok && ["free", "yours", "taken", "banned"].includes(r.data.status) && typeof r.data.nick === "string") {
    result = { status: r.data.status, nick: r.data.nick, why: "" };
  } else if (!r.ok && r.chat && r.status === 400) {
    result = { status: "invalid", nick: v.nick, why: r.why.text.replace(/ \(HTTP 400\)$/, "") };
  } else {
    return result; // not remembered: ask again next time
  }
  nickChecks.set(v.nick, { at: Date.now(), result });
  return result;
}

// nickSentence says what a check means for the reader, and whether the
// nick can be taken.
function nickSentence(c) {
  switch (c.status) {
    case "free":
      return { ok: true, text: `Free: “${c.nick}” becomes yours with your first message.` };
    case "yours":
      return { ok: true, text: `Yours: this browser writes as “${c.nick}”.` };
    case "taken":
      return { ok: false, text: `“${c.nick}” is in use by someone else. Please choose another nickname.` };
    case "banned":
      return { ok: false, text: `“${c.nick}” is banned from this chat. Please choose another nickname.` };
    case "invalid":
      return { ok: false, text: c.why };
  }
  return { ok: true, text: "" };
}

function showNickStatus(c) {
  const said = c === null ? { ok: true, text: "" } : nickSentence(c);
  el.nickStatus.textContent = said.text;
  el.nickStatus.classList.toggle("bad", !said.ok);
}

// checkNickSoon checks what is typed once typing pauses.
let nickTimer = 0;
function checkNickSoon(wait = 300) {
  clearTimeout(nickTimer);
  nickTimer = setTimeout(async () => {
    const value = el.nickInput.value;
    if (value.trim() === "") {
      showNickStatus(null);
      return;
    }
    const c = await checkNick(value);
    if (el.nickInput.value === value && el.nickDialog.open) {
      showNickStatus(c.status === "unknown" ? null : c);
    }
  }, wait);
}

el.nickForm.addEventListener("submit", async (e) => {
  e.preventDefault();
  const value = el.nickInput.value;
  const v = validNick(value);
  if (!v.error && page.refused.has(nickKey(v.nick))) {
    v.error = `“${v.nick}” is in use by someone else. Please choose another nickname.`;
  }
  if (v.error) {
    el.nickInput.setCustomValidity(v.error);
    el.nickInput.reportValidity();
    return;
  }
  const c = await checkNick(value);
  if (el.nickInput.value !== value || !el.nickDialog.open) {
    return; // changed meanwhile
  }
  showNickStatus(c.status === "unknown" ? null : c);
  const said = nickSentence(c);
  if (!said.ok) {
    el.nickInput.setCustomValidity(said.text);
    el.nickInput.reportValidity();
    return;
  }
  // As the chat stores it (" Ａda " is "Ada").
  const nick = c.status === "unknown" ? v.nick : c.nick;
  if (page.afterNick === null || c.status === "yours") {
    saveNick(nick);
  } else {
    // Asked for a message: the nick is remembered, and told to the
    // stream, once the server took the message (it may be taken first).
    page.nick = nick;
    showNick();
  }
  el.nickDialog.close("ok");
});
el.nickInput.addEventListener("input", () => {
  el.nickInput.setCustomValidity("");
  showNickStatus(null); // until the chat says how the new one stands
  checkNickSoon();
});
el.nickCancel.addEventListener("click", () => el.nickDialog.close("cancel"));
el.nickDialog.addEventListener("close", () => {
  const then = page.afterNick;
  page.afterNick = null;
  clearTimeout(nickTimer);
  stopGive();
  el.text.focus();
  if (el.nickDialog.returnValue === "ok") {
    // Messages that waited for another nick go out under this one.
    if (page.nick !== "") {
      renickHeld(page.nick);
      if (page.errorKind === "nick") {
        showSendError("");
      }
    }
    then?.();
  }
});
el.nickButton.addEventListener("click", () => askNick(null));
el.renick.addEventListener("click", () => askNick(() => {}, page.refusal.nick));

// One nick on two devices. The holder asks the chat for a transfer code
// (single use, a few minutes), shown as a code and as a link to this page
// with the code after the # (which no server sees); the other device
// opens the link, or types the code into this dialog, and holds the nick
// as well.
const give = { timer: 0, until: 0 };

// showGive shows the offer to carry nick to another device (null: none).
function showGive(nick) {
  stopGive();
  el.give.hidden = nick === null;
  el.giveCode.hidden = true;
  el.giveProblem.hidden = true;
  el.giveButton.hidden = false;
  el.giveNick.textContent = nick ?? "";
}

function stopGive() {
  clearInterval(give.timer);
  give.timer = 0;
  el.giveLink.value = "";
  el.giveCodeText.textContent = "";
}

el.giveButton.addEventListener("click", async () => {
  el.giveProblem.hidden = true;
  el.giveButton.disabled = true;
  const r = await act({ action: "transfer", nick: page.nick });
  el.giveButton.disabled = false;
  if (!r.ok || typeof r.data.code !== "string" || !Number.isSafeInteger(r.data.seconds)) {
    el.giveProblem.textContent = r.ok ? "The chat's answer broke off." : plain(r.why);
    el.giveProblem.hidden = false;
    return;
  }
  const link = new URL(location.href);
  link.hash = "transfer=" + r.data.code + (page.room === defaultRoom ? "" : "&room=" + page.room);
  el.giveCodeText.textContent = r.data.code;
  el.giveLink.value = link.href;
  el.giveCode.hidden = false;
  el.giveButton.hidden = true;
  give.until = Date.now() + r.data.seconds * 1000;
  clearInterval(give.timer);
  giveTick();
  give.timer = setInterval(giveTick, 1000);
  el.giveLink.focus();
  el.giveLink.select();
});

// giveTick says how long the code still works, and when it no longer does.
function giveTick() {
  const left = Math.ceil((give.until - Date.now()) / 1000);
  if (left <= 0) {
    stopGive();
    el.giveCode.hidden = true;
    el.giveButton.hidden = false;
    el.giveProblem.textContent = "That code has expired. Get a new one if you still need it.";
    el.giveProblem.hidden = false;
    return;
  }
  const until = clock(new Date(give.until));
  el.giveTime.textContent = `Works once, for ${Math.floor(left / 60)}:${String(left % 60).padStart(2, "0")} more (until ${until}). Anyone with it can write as ${el.giveNick.textContent}: keep it to yourself.`;
}

// redeem takes the nick a code carries; it returns the chat's answer.
async function redeem(code) {
  const r = await act({ action: "redeem", code });
  if (r.ok && typeof r.data.nick === "string") {
    nickChecks.clear();
    saveNick(r.data.nick);
  }
  return r;
}

el.redeemForm.addEventListener("submit", async (e) => {
  e.preventDefault();
  const code = el.redeemInput.value.trim();
  if (code === "") {
    el.redeemStatus.textContent = "Type the code your other device shows.";
    return;
  }
  el.redeemStatus.textContent = "Checking the code…";
  const r = await redeem(code);
  if (!r.ok) {
    el.redeemStatus.textContent = plain(r.why);
    return;
  }
  el.redeemStatus.textContent = "";
  el.nickInput.value = r.data.nick;
  el.nickDialog.close("ok");
  sayDone(`You write as ${r.data.nick} on this device now, as on the other.`);
});

// A link from another device: #transfer=CODE (and &room=ROOM). The code
// leaves the address at once; the nick is this browser's once the chat
// took the code. A reader who writes under a nick already is asked first:
// anyone can send a link with a code of theirs, and opening it must not
// make the reader write under someone else's nick unawares.
function transferFromAddress() {
  const m = /^#transfer=([^&]*)(?:&room=([A-Za-z0-9_-]{1,32}))?$/.exec(location.hash);
  if (m === null) {
    return false;
  }
  history.replaceState(null, "", location.pathname + location.search + (m[2] ? "#" + m[2] : ""));
  let code = "";
  try {
    code = decodeURIComponent(m[1]);
  } catch {
    // A malformed escape: no code the chat could know.
  }
  if (page.nick !== "") {
    askNick(null);
    el.redeemInput.value = code;
    el.redeemStatus.textContent = `The link you opened carries a nickname from another device. You write as ${page.nick} here; to write under the link's nickname instead, choose Use the code.`;
    return true;
  }
  redeem(code).then((r) => {
    if (r.ok) {
      sayDone(`You write as ${r.data.nick} on this device now, as on the other.`);
      return;
    }
    askNick(null);
    el.redeemInput.value = code;
    el.redeemStatus.textContent = plain(r.why);
  });
  return true;
}

// sayDone says that something the reader asked for is done, for a while.
let doneTimer = 0;
function sayDone(text) {
  el.done.textContent = text;
  el.done.hidden = false;
  clearTimeout(doneTimer);
  doneTimer = setTimeout(() => {
    el.done.hidden = true;
    el.done.textContent = "";
  }, 10000);
}

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
window.addEventListener("hashchange", () => {
  transferFromAddress();
  enterRoom(roomFromAddress(location));
});

// On phones the header is one line; "Room" opens the switcher and who is
// in the room.
el.more.addEventListener("click", () => {
  const open = el.bar.classList.toggle("open");
  el.more.setAttribute("aria-expanded", String(open));
});

el.retry.addEventListener("click", () => {
  page.feed?.retryNow();
  sendWaiting();
});

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
  checkTop();
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

// framedByOthers reports whether the page is shown inside a page from
// another origin. The browser sends the chat's cookies (SameSite=Strict)
// to a frame whose top page is of the same site — another subdomain of a
// shared host's domain, say —, and the programs' frame-ancestors header
// covers their answers only, not this page, which the web host serves. Such
// a page could lay the chat out unseen under its own and have a moderator
// click Ban, or anyone type into the message box.
function framedByOthers() {
  if (window.top === window.self) {
    return false;
  }
  const ancestors = location.ancestorOrigins;
  if (ancestors !== undefined) {
    return [...ancestors].some((o) => o !== location.origin);
  }
  try {
    return window.top.location.origin !== location.origin;
  } catch {
    return true; // another origin's: its address is not ours to read
  }
}

// showFramed puts, in place of the chat, a link that opens it in a tab
// of its own.
function showFramed() {
  const note = document.createElement("p");
  note.className = "notice";
  note.append("This chat works only in a tab of its own, not inside another site's page. ");
  const a = document.createElement("a");
  a.href = location.href;
  a.target = "_blank";
  a.rel = "noopener noreferrer";
  a.textContent = "Open the chat";
  note.append(a, ".");
  const main = document.createElement("main");
  main.append(note);
  document.body.replaceChildren(main);
  document.title = "cgichat";
}

// The page starts in three short tasks rather than one long one: the
// modules' own code; the first time formatted, which loads the browser's
// locale data (tens of milliseconds on a phone or a busy machine), with the
// page's first layout; then the room.
const nextTask = () => new Promise((resolve) => setTimeout(resolve, 0));
if (framedByOthers()) {
  showFramed();
} else {
  await nextTask();
  fitTimeColumn();
  await nextTask();
  showNick();
  showAlerts();
  updateSend();
  transferFromAddress();
  enterRoom(roomFromAddress(location));
  startOutbox(readerId(), page.room, outboxEvents);
  outboxStarted = true;
  showOutbox();
  startModeration({ log: el.log, button: el.modButton, nick: () => page.nick, unshow, say: sayDone });
}
