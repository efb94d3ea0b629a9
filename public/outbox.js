// The outbox: messages on their way to the chat, kept until the chat has
// them.
//
// A message sent goes into the outbox (in localStorage, so it outlives a
// reload) with a random Idempotency-Key of its own, and is posted from
// there, in order. When no answer comes, or one that says the chat is away
// for now (a host's 502, 503, 504 or 508, the chat's 500 or 503, a 429),
// it stays and is posted again — with the same key, so that the chat
// stores it once even when the first try was stored and only its answer
// got lost — when the connection is back, or after a wait that doubles up
// to 30 s. It leaves the outbox with the chat's 201, or when the chat (or
// the host) refuses it for good: then the page gives the text back.
//
// Each tab posts the messages it queued itself (a reload keeps the tab's
// id, see readerId in stream.js); a tab takes over the messages of its
// room that a closed tab left behind. So one message is never posted by
// two tabs at once, and a refusal goes back to the tab it came from.

import { readAnswer } from "./answers.js";

// Waits between tries after a failure, in milliseconds.
const backoffFirst = 1000;
const backoffMax = 30000;
const jitter = 0.2;

// The longest Retry-After of a 429 the outbox waits for by itself; a
// longer one (the cap on new rooms, hours away) refuses the message.
const waitMax = 60000;

// How long a tab's hold on its messages lasts in other tabs' eyes, where
// Web Locks cannot say whether it is open (plain HTTP).
const orphanAfter = 5 * 60 * 1000;

// The outbox's state in this tab.
const box = {
  tab: "", // this tab's id
  room: "", // the room this tab shows: it takes over that room's orphans
  on: null, // the page's handlers (startOutbox)
  running: false, // a post is on its way
  again: false, // asked to go on at once while one was on its way
  failures: 0, // tries in a row that got no answer, or a passing one
  notBefore: 0, // no post before this time (Date.now())
  timer: 0,
  held: new Set(), // nicks the chat said belong to others: their messages wait
  locks: "locks" in navigator,
};

// storageKey names the outbox of this chat installation in localStorage.
function storageKey() {
  return "cgichat.outbox " + new URL("cgi-bin/post", document.baseURI).href;
}

// memory holds the outbox where localStorage cannot: when it is disabled,
// and from the moment a change could not be written to it (it is full)
// until one can again. Read from storage then, the outbox would lose the
// change: a message just queued would vanish, one just sent go again.
let memory = [];
let inMemory = false;

function load() {
  if (inMemory) {
    return memory;
  }
  try {
    const list = JSON.parse(localStorage.getItem(storageKey()) ?? "[]");
    return Array.isArray(list) ? list.filter(valid) : [];
  } catch {
    return memory;
  }
}

function valid(m) {
  return (
    m !== null &&
    typeof m === "object" &&
    typeof m.key === "string" &&
    typeof m.room === "string" &&
    typeof m.nick === "string" &&
    typeof m.text === "string" &&
    typeof m.tab === "string"
  );
}

function save(list) {
  memory = list;
  try {
    if (list.length === 0) {
      localStorage.removeItem(storageKey());
    } else {
      localStorage.setItem(storageKey(), JSON.stringify(list));
    }
    inMemory = false;
  } catch {
    // Kept for as long as the page is open (and in storage as it was).
    inMemory = true;
  }
}

// update changes the outbox with fn (which gets the list as stored now
// and returns the new one), and tells the page.
function update(fn) {
  save(fn(load()));
  box.on.change();
}

// newKey makes an Idempotency-Key: 128 random bits in hex, which any
// firewall lets through.
function newKey() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

// startOutbox starts posting this tab's messages. on holds the page's
// handlers:
//   change()               the outbox changed (here or in another tab);
//   sent(item, message)    the chat stored item: message is its 201;
//   refused(item, answer)  the chat or the host refused item for good
//                          (readAnswer's {status, error, html, wait});
//   nick(item, answer)     the chat said item's nick belongs to someone
//                          else (409): the nick's messages wait (renickHeld);
//   waiting(answer, at)    the last try got no answer (answer null) or a
//                          passing one; the next is at (Date.now() time).
//                          waiting(null, 0): nothing waits any more.
export function startOutbox(tab, room, on) {
  box.tab = tab;
  box.room = room;
  box.on = on;
  if (box.locks) {
    // Held while this tab is open: other tabs see that its messages are
    // not orphans.
    navigator.locks.request("cgichat.tab " + tab, () => new Promise(() => {})).catch(() => {});
  }
  window.addEventListener("storage", (e) => {
    if (e.key === storageKey() || e.key === null) {
      box.on.change();
    }
  });
  window.addEventListener("online", () => retryNow());
  adopt();
}

// setRoom says which room the tab shows now: it takes over that room's
// messages that a closed tab left.
export function setRoom(room) {
  box.room = room;
  adopt();
}

// adopt makes this tab's the messages of its room whose tab is gone.
async function adopt() {
  let open = null; // the tabs known to be open
  if (box.locks) {
    try {
      const { held } = await navigator.locks.query();
      open = new Set(held.map((l) => l.name));
    } catch {
      // Unknown: go by age.
    }
  }
  const room = box.room;
  const orphan = (m) =>
    m.room === room &&
    m.tab !== box.tab &&
    (open !== null ? !open.has("cgichat.tab " + m.tab) : Date.now() - (m.touched ?? m.at ?? 0) > orphanAfter);
  if (load().some(orphan)) {
    update((list) => list.map((m) => (orphan(m) ? { ...m, tab: box.tab } : m)));
  }
  pump();
}

// queue puts a message in the outbox and starts posting it.
export function queue(room, nick, text) {
  const item = { key: newKey(), room, nick, text, tab: box.tab, at: Date.now(), tried: false };
  update((list) => [...list, item]);
  if (box.failures === 0) {
    retryNow();
  }
  // Else it goes after the ones before it, at the next try: when the
  // connection is back, or when the wait is over.
  return item;
}

// items returns the messages waiting for room, oldest first, each with
// held set while its nick waits to be changed.
export function items(room) {
  return load()
    .filter((m) => m.room === room)
    .map((m) => ({ ...m, held: m.tab === box.tab && box.held.has(m.nick) }));
}

// renickHeld gives every message of this tab that waits for another nick
// the nick the reader chose, and sends them.
export function renickHeld(instead) {
  const held = box.held;
  if (held.size === 0) {
    return;
  }
  box.held = new Set();
  update((list) => list.map((m) => (m.tab === box.tab && held.has(m.nick) ? { ...m, nick: instead } : m)));
  retryNow();
}

// retryNow posts at once what waits: the connection seems to be back.
export function retryNow() {
  box.notBefore = 0;
  clearTimeout(box.timer);
  box.timer = 0;
  if (box.running) {
    box.again = true;
  } else {
    pump();
  }
}

// next returns the first message this tab posts next, or undefined.
function next() {
  return load().find((m) => m.tab === box.tab && !box.held.has(m.nick));
}

// pump posts this tab's messages one after the other, in order, until
// none is left or one must wait.
async function pump() {
  if (box.running || box.on === null) {
    return;
  }
  box.running = true;
  try {
    for (;;) {
      box.again = false;
      const item = next();
      if (item === undefined) {
        if (box.failures > 0 || box.notBefore > 0) {
          box.failures = 0;
          box.notBefore = 0;
        }
        box.on.waiting(null, 0);
        return;
      }
      if (Date.now() < box.notBefore) {
        later(box.notBefore - Date.now());
        return;
      }
      const r = await post(item);
      if (r.wait !== undefined && !box.again) {
        box.notBefore = Date.now() + r.wait;
        box.on.waiting(r.answer, box.notBefore);
        later(r.wait);
        return;
      }
    }
  } finally {
    box.running = false;
  }
}

function later(wait) {
  clearTimeout(box.timer);
  box.timer = setTimeout(() => {
    box.timer = 0;
    pump();
  }, wait);
}

// backoff is the wait after the failures so far, spread by a fifth either
// way so that pages do not come back together.
function backoff() {
  const base = Math.min(backoffMax, backoffFirst * 2 ** (box.failures - 1));
  return Math.round(base * (1 - jitter + 2 * jitter * Math.random()));
}

// post sends item once and handles the answer. It returns {wait, answer}
// when the item stays and the next try must wait, else {}.
async function post(item) {
  // Tried: from now on the chat may have it, even if no answer comes.
  update((list) => list.map((m) => (m.key === item.key ? { ...m, tried: true, touched: Date.now() } : m)));
  let res;
  try {
    res = await fetch("cgi-bin/post", {
      method: "POST",
      headers: {
        "Content-Type": "application/json",
        Accept: "application/json",
        "Idempotency-Key": `"${item.key}"`,
      },
      body: JSON.stringify({ room: item.room, nick: item.nick, text: item.text }),
    });
  } catch {
    box.failures++;
    return { wait: backoff(), answer: null };
  }
  if (res.status === 201) {
    const sent = await res.json().catch(() => null);
    if (sent !== null && Number.isSafeInteger(sent.id)) {
      box.failures = 0;
      // Told first, so that the page can keep its "sending…" line
      // until the message is drawn.
      box.on.sent(item, sent);
      remove(item);
      return {};
    }
    // Stored, but the answer broke off: the same key brings it again.
    box.failures++;
    return { wait: backoff(), answer: null };
  }
  const answer = await readAnswer(res);
  if (passing(answer)) {
    box.failures++;
    const wait = Math.max(backoff(), Math.min(answer.wait * 1000, waitMax));
    return { wait, answer };
  }
  if (answer.error !== "" && answer.status === 409) {
    box.held.add(item.nick);
    box.on.change();
    box.on.nick(item, answer);
    return {};
  }
  remove(item);
  box.on.refused(item, answer);
  return {};
}

// passing reports whether an answer says that the chat is away for now,
// so that the message waits and goes again by itself.
function passing(a) {
  if (a.status === 429) {
    return a.wait * 1000 <= waitMax;
  }
  if (a.error !== "") {
    // The chat's own: a problem on its side (a database busy or being
    // replaced), or its programs being updated.
    return a.status === 500 || a.status === 503;
  }
  // The host's: the chat's programs not answering (502, 503, 504), or
  // the account's limit of processes reached (CloudLinux's 508).
  return [502, 503, 504, 508].includes(a.status);
}

function remove(item) {
  update((list) => list.filter((m) => m.key !== item.key));
}
