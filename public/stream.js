// One room's stream of Server-Sent Events, read with EventSource.
//
// EventSource reconnects by itself when a response ends normally: after
// each batch or poll response, and when a live stream reaches its end of
// life, it asks again after the server's retry:, resuming with
// Last-Event-ID. The page lets it. What EventSource does not do is back off
// when things go wrong, nor say why: so a response that ends, or fails,
// without its "ready" event is a failure here. The page then closes the
// EventSource (ending its own retries), waits longer after each failure in
// a row, and opens a new one that resumes with the lastEventId parameter.
// Why it failed — the chat's sentence, or the web host's own page — is
// read once per run of failures with fetch (see diagnose).
//
// In poll mode the server may name a tail file: a static copy of the
// room's latest events, which the web server answers itself, without a
// program run (docs/page.md). The page then closes the EventSource at
// the end of the poll, reads the tail every few seconds (see readTail),
// and calls the program again only after the server's retry:, to be
// counted as present and to get a stream when one frees.

import { hostAnswer, readAnswer } from "./answers.js";

// Timings, in milliseconds.
const readyWait = 2000; // silence before "ready" that means the host holds the stream back
const pollReadyWait = 10000; // the same for a page that polls: a crowded host answers polls slowly
const reconnectGrace = 2500; // a live stream that ended normally is back well within this
const backoffFirst = 1000; // after a failed try: 1 s,
const backoffMax = 30000; // doubling, to at most 30 s,
const jitter = 0.2; // each ±20 %, so that pages do not come back in step
const retryAfterMax = 300000; // the longest Retry-After the page waits for
const defaultRetry = 1000; // before the server said its retry:
const diagnoseWait = 10000; // the longest a look at a failed answer may take
const rememberBuffering = 7 * 24 * 3600 * 1000; // how long "this host buffers" holds
const tailWaitMax = 10000; // the longest a read of the tail file may take

// A live stream needs a few failures in a row before the page calls
// itself offline: a blip reconnects within a couple of seconds.
const offlineAfter = 3;

// What the page says when the stream cannot be reached at all, and, for
// the moment it takes to read why, when it was refused.
const unreachable = { text: "The server could not be reached.", help: false };
const refusedStream = { text: "The server did not send the stream of messages.", help: false };

// bufferingKey names, per chat installation (the stream program's URL),
// the localStorage entry that says since when this host holds streams back.
function bufferingKey() {
  return "cgichat.buffers " + new URL("cgi-bin/stream", document.baseURI).href;
}

// hostBuffers reports whether this host was found to hold streams back
// within the last week: the page then starts in batch mode at once rather
// than after 2 s of silence.
export function hostBuffers() {
  try {
    const since = Number(localStorage.getItem(bufferingKey()));
    return since > 0 && Date.now() - since < rememberBuffering;
  } catch {
    return false;
  }
}

function rememberHostBuffers() {
  try {
    localStorage.setItem(bufferingKey(), String(Date.now()));
  } catch {
    // Not remembered: the next load finds out again.
  }
}

// The reader id: random, one per tab, sent with every stream request
// (reader=), so that the server ends this reader's older streams when a
// new one opens — after a reconnect, a fallback to batch mode or a reload,
// a stream left behind no longer counts against the host's limits. Of the
// tabs of a room only the one holding the stream uses its id (feed.js).
//
// It lives in sessionStorage, which survives a reload, but only while the
// page is away: the page takes it out when it loads and puts it back when
// it goes. A tab duplicated meanwhile (which copies sessionStorage) thus
// gets an id of its own, and two tabs never take each other's stream.
const readerKey = "cgichat.reader";
const readerPattern = /^[0-9a-f]{32}$/;
let reader = "";

// readerId returns this tab's id (the outbox uses it too: a tab posts
// the messages it queued itself).
export function readerId() {
  if (reader === "") {
    try {
      reader = sessionStorage.getItem(readerKey) ?? "";
      sessionStorage.removeItem(readerKey);
    } catch {
      // No sessionStorage: a new id per load.
    }
    if (!readerPattern.test(reader)) {
      // Hex digits only: a web application firewall has nothing to see
      // in them (a "--" could look like SQL to one).
      const bytes = crypto.getRandomValues(new Uint8Array(16));
      reader = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
    }
  }
  return reader;
}

window.addEventListener("pagehide", () => {
  if (reader !== "") {
    try {
      sessionStorage.setItem(readerKey, reader);
    } catch {
      // Not kept: the next load makes a new one.
    }
  }
});
window.addEventListener("pageshow", (e) => {
  if (e.persisted) {
    // Back from the back-forward cache: the page goes on with its id.
    try {
      sessionStorage.removeItem(readerKey);
    } catch {
      // Nothing to take out.
    }
  }
});

// Source reads one room's stream and keeps it going. It passes each event
// to sink (message, delete, presence, trimmed: the parsed JSON data) and
// every change of state to sink.state({status, mode, every, detail,
// retryAt}):
//   status  "live", "reconnecting" or "offline";
//   mode    how messages arrive: "live" (a stream), "batch" (long polls, on
//           a host that holds streams back) or "poll" (short polls, when
//           the server has no stream to spare);
//   every   in poll mode, how often the page looks for new messages (ms):
//           the tail's rhythm while it reads one (see every), else the
//           server's retry:;
//   detail  when offline, why: {text, help}, in the chat's words when it
//           said any, else what the web host's answer means; help says that
//           the text ends in "see" and the troubleshooting guide follows;
//   retryAt when offline, when the page tries again (Date.now() time), or
//           0 while a try is under way.
export class Source {
  constructor(room, nick, lastId, mode, sink) {
    this.room = room;
    this.nick = nick;
    this.lastId = lastId; // resume after this event id
    this.ask = mode === "batch" || hostBuffers() ? "batch" : "live"; // the mode asked for
    this.mode = this.ask; // the mode the server answered with
    this.sink = sink;
    this.reader = readerId();
    this.everReady = false; // a live stream has worked here: no fallback
    this.retry = 0; // the server's retry:, from "ready"; 0 until it said one
    this.es = null; // the EventSource, while one is open
    this.ready = false; // its current response sent "ready"
    this.opened = 0; // when its current response started
    this.failures = 0; // tries in a row that failed
    this.offline = false; // the page said it is offline, and has not been live since
    this.detail = unreachable;
    this.hold = 0; // the Retry-After of this run of failures, in ms
    this.looked = ""; // the kind of failure the detail was read for: "answered", "unreachable"
    this.looking = null; // the fetch reading why, while it runs
    this.retryAt = 0;
    this.timers = {};
    this.closed = false;
    this.again = false; // asked to retry now while a try was under way
    this.tailSaid = null; // the tail the current poll named: {url, every}
    this.tail = null; // the tail being read: {url, every, stop, timer, failures}
    this.lastTail = null; // the tail the last poll named, kept across the next poll
    this.rushedFrom = -1; // the last id the page asked the program from because a tail was short
    this.online = () => this.retryNow();
    window.addEventListener("online", this.online);
    this.open();
  }

  url() {
    const q = new URLSearchParams({ room: this.room });
    if (this.nick !== "") {
      q.set("nick", this.nick);
    }
    if (this.ask === "batch") {
      q.set("mode", "batch");
    }
    q.set("reader", this.reader);
    if (this.lastId > 0) {
      // A new EventSource sends no Last-Event-ID header; its own
      // reconnects do, and the header wins over this.
      q.set("lastEventId", String(this.lastId));
    }
    return "cgi-bin/stream?" + q;
  }

  open() {
    this.clear("next");
    this.stopTail();
    this.tailSaid = null;
    this.again = false;
    const es = new EventSource(this.url());
    this.es = es;
    this.ready = false;
    this.opened = Date.now();
    es.addEventListener("open", () => {
      if (es === this.es) {
        this.opened = Date.now();
      }
    });
    for (const type of ["message", "delete", "presence", "trimmed"]) {
      es.addEventListener(type, (e) => this.event(es, e));
    }
    es.addEventListener("ready", (e) => this.readyEvent(es, e.data));
    es.addEventListener("error", () => this.error(es));
    this.watch(es);
  }

  // event handles one event of the EventSource es.
  event(es, e) {
    if (es !== this.es) {
      return;
    }
    if (!this.ready) {
      // A long backlog is arriving: the host lets the stream through.
      this.watch(es);
    }
    this.take(e.type, e.lastEventId, e.data);
  }

  // take passes on one event, from the stream or from a tail file: its
  // type, its id (a string, "" for none) and its data.
  take(type, id, data) {
    if (/^\d+$/.test(id)) {
      this.lastId = Math.max(this.lastId, Number(id));
    }
    let d;
    try {
      d = JSON.parse(data);
    } catch {
      return;
    }
    if (d === null || typeof d !== "object") {
      return;
    }
    switch (type) {
      case "message":
        this.sink.message(d);
        break;
      case "delete":
        if (Number.isSafeInteger(d.target)) {
          this.sink.delete(d);
        }
        break;
      case "presence":
        if (Array.isArray(d.nicks)) {
          this.sink.presence(d.nicks.map(String));
        }
        break;
      case "trimmed":
        if (Number.isSafeInteger(d.through)) {
          this.sink.trimmed(d.through);
        }
        break;
    }
  }

  // readyEvent: the backlog is in, and the server says in which mode it
  // answers and after how long EventSource asks again ({"mode", "retry"}).
  readyEvent(es, data) {
    if (es !== this.es) {
      return;
    }
    this.ready = true;
    this.failures = 0;
    this.offline = false;
    this.detail = unreachable;
    this.hold = 0;
    this.looked = "";
    this.looking?.abort();
    this.looking = null;
    this.clear("fallback", "grace");
    let mode = this.ask;
    this.tailSaid = null;
    try {
      const said = JSON.parse(data);
      if (said.mode === "live" || said.mode === "batch" || said.mode === "poll") {
        mode = said.mode;
      }
      if (Number.isSafeInteger(said.retry) && said.retry >= 0) {
        this.retry = said.retry;
      }
      if (mode === "poll" && typeof said.tail === "string" && Number.isSafeInteger(said.every) && said.every > 0) {
        // Relative to the stream's URL, as a Location header is.
        const url = new URL(said.tail, new URL(this.url(), document.baseURI)).href;
        this.tailSaid = { url, every: said.every };
      }
    } catch {
      // An old server without a mode in "ready": what was asked for.
    }
    // A server whose default is batch mode says so: ask for it from now
    // on. Poll mode is the server's choice each time: keep asking for a
    // stream, which the server gives as soon as it has one to spare.
    if (mode === "batch") {
      this.ask = "batch";
    }
    if (mode === "live") {
      this.everReady = true;
    }
    this.mode = mode;
    this.report("live");
  }

  // error handles EventSource's error event: the response ended, or never
  // came.
  error(es) {
    if (es !== this.es) {
      return;
    }
    if (this.ready && es.readyState === EventSource.CONNECTING && this.tailSaid !== null) {
      // The end of a poll that named a tail: the page reads the tail and
      // calls the program itself after retry:. Not at "ready", which the
      // poll's presence follows.
      es.close();
      this.es = null;
      this.ready = false;
      this.later(this.retry);
      this.startTail(this.tailSaid);
      return;
    }
    if (this.ready && es.readyState === EventSource.CONNECTING) {
      // The normal end of a response: EventSource asks again by itself
      // after the server's retry:, resuming after the last event.
      this.ready = false;
      if (this.mode === "live") {
        // Say "reconnecting" only if the stream is not back soon.
        this.clear("grace");
        this.timers.grace = setTimeout(() => this.report("reconnecting"), reconnectGrace);
      }
      return;
    }
    // No stream this time. CLOSED: the server or the host answered, but
    // not with a stream (EventSource gives up on that); CONNECTING: no
    // answer, or one that broke off before "ready".
    const answered = es.readyState === EventSource.CLOSED;
    es.close();
    this.es = null;
    this.clear("fallback", "grace");
    this.failed(answered);
  }

  // watch arms the fallback: a live stream that stays silent for 2 s before
  // its first "ready" is held back by the host (mod_fcgid's output buffer,
  // fcgiwrap, a buffering proxy), so the page asks in batch mode instead,
  // and remembers that this host buffers. The reader id lets the server
  // end the stream left behind. A page whose last try was answered with a
  // poll waits 10 s: its next answer is most likely a poll again, which a
  // host that buffers sends whole at once, and which a crowded host (the
  // kind that has pollers) may take seconds to give; taking that for
  // buffering dropped the page into batch mode and out of its tail file.
  // After a failed try the last answer says nothing: 2 s again.
  watch(es) {
    this.clear("fallback");
    if (this.ask === "live" && !this.everReady && !this.ready) {
      const wait = this.mode === "poll" && this.failures === 0 ? pollReadyWait : readyWait;
      this.timers.fallback = setTimeout(() => {
        if (es !== this.es) {
          return;
        }
        es.close();
        this.es = null;
        this.ask = "batch";
        this.mode = "batch";
        rememberHostBuffers();
        this.open();
      }, wait);
    }
  }

  // failed decides, after a try that got no stream, when to try again,
  // and what to say meanwhile.
  failed(answered) {
    this.failures++;
    const base = Math.min(backoffMax, backoffFirst * 2 ** (this.failures - 1));
    let wait = Math.min(backoffMax, base * (1 - jitter + 2 * jitter * Math.random()));
    // Never sooner than the server's retry: nor its Retry-After.
    wait = Math.round(Math.max(wait, this.retry, this.hold));
    if (this.again) {
      // "Retry now" came while this try was under way: one more, now.
      this.again = false;
      wait = 0;
    }
    const failedAt = Date.now();
    this.later(wait);
    this.retryAt = failedAt + wait;
    if (answered || this.failures >= offlineAfter || this.offline) {
      this.offline = true;
    }
    if (!answered) {
      this.looked = "unreachable";
      this.detail = unreachable;
    } else if (this.looked !== "answered") {
      // What the server or the host said: read once per run of failures
      // (and again only after the failures changed kind), then said.
      this.looked = "answered";
      this.detail = refusedStream;
      this.diagnose(failedAt);
      return;
    }
    this.report(this.offline ? "offline" : "reconnecting", this.retryAt);
  }

  // diagnose asks the stream's URL again with fetch, which shows what
  // EventSource hides: the status, the chat's sentence or the host's own
  // page, and Retry-After. A stream after all (the trouble passed) is
  // dropped at once. It then says the page is offline, and why.
  async diagnose(failedAt) {
    const stop = new AbortController();
    this.looking = stop;
    const timer = setTimeout(() => stop.abort(), diagnoseWait);
    let detail = unreachable;
    let wait = 0;
    try {
      const res = await fetch(this.url(), {
        // Not EventSource's "text/event-stream" alone: the answer may be
        // the chat's JSON or a host's page, and this fetch says so.
        headers: { Accept: "text/event-stream, application/json;q=0.9, */*;q=0.8" },
        cache: "no-store",
        signal: stop.signal,
      });
      const type = res.headers.get("Content-Type") || "";
      if (res.ok && /^text\/event-stream/i.test(type)) {
        stop.abort();
        detail = { text: "The connection to the chat broke off; it answers again.", help: false };
      } else {
        const answer = await readAnswer(res);
        detail = hostAnswer(answer, "stream");
        wait = answer.wait;
      }
    } catch {
      // No answer this time either.
    } finally {
      clearTimeout(timer);
    }
    if (this.looking !== stop || this.closed) {
      return; // the page went on meanwhile
    }
    this.looking = null;
    this.detail = detail;
    if (wait > 0) {
      // The server said when to come back: from now on, in this run of
      // failures, not sooner.
      this.hold = Math.min(retryAfterMax, wait * 1000);
      const at = failedAt + this.hold;
      if (this.timers.next !== undefined && at > this.retryAt) {
        this.retryAt = at;
        this.later(at - Date.now());
      }
    }
    if (this.timers.next !== undefined) {
      this.report("offline", this.retryAt);
    }
  }

  later(wait) {
    this.clear("next");
    this.timers.next = setTimeout(() => this.tryAgain(), Math.max(0, wait));
  }

  tryAgain() {
    this.clear("next");
    if (this.offline) {
      this.report("offline", 0); // trying again now
    }
    this.open();
  }

  // retryNow tries at once when the page waits to try again (the Retry
  // now button, the browser coming back online).
  retryNow() {
    if (this.closed) {
      return;
    }
    if (this.es !== null) {
      this.again = !this.ready;
      return;
    }
    if (this.timers.next !== undefined) {
      this.tryAgain();
    }
  }

  // setNick reopens the stream under another nickname, resuming after the
  // last event; while it waits to ask again, the next request takes it.
  // Batch and poll requests keep to the server's retry: even so.
  setNick(nick) {
    this.nick = nick;
    if (this.es === null) {
      return;
    }
    this.es.close();
    this.es = null;
    this.clear("fallback", "grace");
    const wait = this.mode === "live" ? 0 : this.opened + this.retry - Date.now();
    if (wait > 0) {
      this.later(wait);
      if (this.mode === "poll" && this.lastTail !== null) {
        // The poll under way was closed: the tail its predecessor named
        // is read until the next one.
        this.startTail(this.lastTail);
        this.report("live");
      }
    } else {
      this.open();
    }
  }

  // startTail reads the tail t names every t.every ms (each wait ±20 %)
  // until stopTail: the only loop of its kind, begun when a poll ends.
  startTail(t) {
    this.stopTail();
    this.tailSaid = t;
    this.lastTail = t;
    this.tail = { url: t.url, every: t.every, stop: new AbortController(), timer: 0, failures: 0 };
    this.nextTail(this.tail);
  }

  // nextTail waits the tail's rhythm before the next read; after reads
  // that failed in a row, twice as long each time, up to the program's
  // retry: (which comes meanwhile anyway).
  nextTail(tail) {
    const base = Math.min(tail.every * 2 ** tail.failures, Math.max(tail.every, this.retry));
    const wait = base * (1 - jitter + 2 * jitter * Math.random());
    tail.timer = setTimeout(() => this.readTail(tail), Math.round(wait));
  }

  // stopTail ends the tail loop, if one runs, and a read under way. When
  // the loop stopped by itself (a missing or broken file), the header
  // says the program's rhythm again.
  stopTail(say = false) {
    const tail = this.tail;
    if (tail === null) {
      return;
    }
    this.tail = null;
    this.tailSaid = null;
    clearTimeout(tail.timer);
    tail.stop.abort();
    if (say && !this.closed) {
      this.report("live");
    }
  }

  // readTail reads the tail file once. "no-cache" lets the browser
  // revalidate its copy (the web server answers 304 while the file is
  // unchanged) rather than fetch it whole each time, or not at all.
  async readTail(tail) {
    const timer = setTimeout(() => tail.stop.abort(), tailWaitMax);
    let text = null;
    let status = 0; // 0: no answer (a network error, too slow)
    try {
      const res = await fetch(tail.url, { cache: "no-cache", signal: tail.stop.signal });
      status = res.status;
      if (res.ok) {
        text = await res.text();
      }
    } catch {
      // A network error, too slow, or stopped.
    } finally {
      clearTimeout(timer);
    }
    if (this.tail !== tail) {
      return; // stopped meanwhile
    }
    if (text === null && (status === 0 || status >= 500)) {
      // A blip (the network, a busy host): read again later, less often
      // while it lasts, and say so after a few.
      tail.failures++;
      if (tail.failures === offlineAfter) {
        this.report("reconnecting");
      }
      this.nextTail(tail);
      return;
    }
    if (tail.failures >= offlineAfter) {
      this.report("live");
    }
    tail.failures = 0;
    const events = text === null ? [] : parseEvents(text);
    const head = tailHead(events[0], this.room);
    if (head === null) {
      // No tail (gone, or never made on this host), or not one: the
      // program says at its next retry: whether there is one now.
      this.stopTail(true);
      return;
    }
    const from = this.lastId;
    if (from < head.after) {
      // The tail does not reach back to the last event the page has:
      // the program sends what is missing, now. Once only: if its answer
      // left the page where it was, the tail waits for the next retry:.
      if (this.rushedFrom === from) {
        this.stopTail(true);
        return;
      }
      // At a moment of its own within the tail's rhythm: a burst of
      // posts larger than the file sends every poller to the program.
      this.rushedFrom = from;
      this.stopTail();
      this.later(Math.round(Math.random() * tail.every));
      return;
    }
    for (const e of events.slice(1)) {
      if (/^\d+$/.test(e.id) && Number(e.id) > from) {
        this.take(e.type, e.id, e.data);
      }
    }
    this.nextTail(tail);
  }

  // every returns how often the page looks for new messages: the tail's
  // rhythm while it reads one, unless the program's retry: is shorter
  // (few pollers: the program asks again before the tail is read).
  every() {
    const retry = this.retry || defaultRetry;
    return this.tailSaid === null ? retry : Math.min(this.tailSaid.every, retry);
  }

  report(status, retryAt = 0) {
    this.clear("grace");
    this.sink.state({
      status,
      mode: this.mode,
      every: this.every(),
      detail: status === "offline" ? this.detail : null,
      retryAt,
    });
  }

  clear(...names) {
    for (const n of names) {
      clearTimeout(this.timers[n]);
      delete this.timers[n];
    }
  }

  close() {
    this.closed = true;
    window.removeEventListener("online", this.online);
    this.clear(...Object.keys(this.timers));
    this.looking?.abort();
    this.looking = null;
    this.stopTail();
    this.es?.close();
    this.es = null;
  }
}

// tailHead returns the data of a tail file's first event, {after}, when e
// is a tail event of room, else null.
function tailHead(e, room) {
  if (e === undefined || e.type !== "tail") {
    return null;
  }
  try {
    const d = JSON.parse(e.data);
    if (d !== null && d.room === room && Number.isSafeInteger(d.after) && d.after >= 0) {
      return { after: d.after };
    }
  } catch {
    // Not JSON: not a tail.
  }
  return null;
}

// parseEvents reads Server-Sent Events text as EventSource would, into
// [{id, type, data}] (id "" when the event has none): events end at a
// blank line, data lines are joined with "\n", lines end in CRLF, LF or
// CR, and a last event without its blank line is left out (the file was
// cut short).
export function parseEvents(text) {
  const out = [];
  let e = { id: "", type: "", data: [] };
  let fields = 0;
  const lines = text.replace(/^\uFEFF/, "").split(/\r\n|\r|\n/);
  // The text after the last line end is not a whole line.
  lines.pop();
  for (const line of lines) {
    if (line === "") {
      if (fields > 0) {
        out.push({ id: e.id, type: e.type || "message", data: e.data.join("\n") });
      }
      e = { id: "", type: "", data: [] };
      fields = 0;
      continue;
    }
    if (line.startsWith(":")) {
      continue; // a comment
    }
    const colon = line.indexOf(":");
    const name = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) {
      value = value.slice(1);
    }
    switch (name) {
      case "id":
        e.id = value;
        break;
      case "event":
        e.type = value;
        break;
      case "data":
        e.data.push(value);
        break;
      default:
        continue; // retry: and unknown fields say nothing about an event
    }
    fields++;
  }
  return out;
}
