// One room's stream of Server-Sent Events, read with fetch rather than
// EventSource: the page then sees what EventSource hides (the status and
// the server's sentence when a stream is refused, the server's retry:) and
// decides itself when to reconnect, so that it can back off after errors.

// Timings, in milliseconds.
const readyWait = 2000; // silence before "ready" that means the host holds the stream back
const reconnectGrace = 2500; // a live stream that ended normally is back well within this
const backoffFirst = 1000; // after a failed try: 1 s,
const backoffMax = 30000; // doubling, to at most 30 s,
const jitter = 0.2; // each ±20 %, so that pages do not come back in step
const retryAfterMax = 300000; // the longest Retry-After the page waits for
const defaultRetry = 1000; // before the server said its retry:
const rememberBuffering = 7 * 24 * 3600 * 1000; // how long "this host buffers" holds

// A live stream needs a few failures in a row before the page calls
// itself offline: a blip reconnects within a couple of seconds.
const offlineAfter = 3;

// Sentences for refusals that carry no sentence of ours: a host's or a
// proxy's own error page. The status goes with them, in the detail only.
const statusWords = {
  403: "The web server refused the stream of messages.",
  404: "The chat's stream program was not found on this server.",
  429: "The server asks this page to slow down.",
  500: "The chat's stream program failed.",
  502: "The web server got no answer from the chat's stream program.",
  503: "The server is unavailable for the moment (busy, or down for maintenance).",
  504: "The web server waited too long for the chat's stream program.",
  508: "This site's host limits how many requests the site may run at once, and that limit is reached for now.",
};

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

// Source reads one room's stream and keeps it going. It passes each event
// to sink (message, delete, presence, trimmed: the parsed JSON data) and
// every change of state to sink.state({status, mode, every, detail,
// retryAt}):
//   status  "live", "reconnecting" or "offline";
//   mode    how messages arrive: "live" (a stream), "batch" (long polls, on
//           a host that holds streams back) or "poll" (short polls, when
//           the server has no stream to spare);
//   every   in poll mode, how often the page asks (ms, the server's retry:);
//   detail  when offline, why, in the server's words when it said any;
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
    this.everReady = false; // a live stream has worked here: no fallback
    this.retry = 0; // the server's retry:, 0 until it said one
    this.failures = 0; // tries in a row that failed
    this.offline = false; // the page said it is offline, and has not been live since
    this.detail = "";
    this.request = null; // the response being read: {stop, ready}
    this.opened = 0; // when the last request started
    this.timers = {};
    this.closed = false;
    this.again = false; // asked to retry now while a try was under way
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
    if (this.lastId > 0) {
      // For servers or proxies that drop the Last-Event-ID header.
      q.set("lastEventId", String(this.lastId));
    }
    return "cgi-bin/stream?" + q;
  }

  open() {
    this.clear("next");
    this.again = false;
    const req = { stop: new AbortController(), ready: false };
    this.request = req;
    this.opened = Date.now();
    this.watch(req);
    this.read(req).then((end) => this.ended(req, end));
  }

  // read fetches the stream and passes its events on until it ends. It
  // resolves to {ok: true} for a stream that ended after its "ready" (the
  // normal end of every response), or to what went wrong.
  async read(req) {
    const headers = { Accept: "text/event-stream" };
    if (this.lastId > 0) {
      headers["Last-Event-ID"] = String(this.lastId);
    }
    let res;
    try {
      res = await fetch(this.url(), { headers, cache: "no-store", signal: req.stop.signal });
    } catch {
      return { ok: false, answered: false };
    }
    const type = res.headers.get("Content-Type") || "";
    if (!res.ok || !/^text\/event-stream/i.test(type)) {
      return {
        ok: false,
        answered: true,
        detail: await refusal(res, type),
        wait: retryAfter(res.headers.get("Retry-After")),
      };
    }
    const parser = new EventParser(
      (e) => this.event(req, e),
      (ms) => {
        this.retry = ms;
      },
    );
    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) {
          break;
        }
        parser.push(decoder.decode(value, { stream: true }));
      }
    } catch {
      // The connection broke (or this page closed it). After "ready"
      // that is a stream ending like any other.
    }
    return req.ready ? { ok: true } : { ok: false, answered: false };
  }

  // event handles one event of the response req.
  event(req, e) {
    if (req !== this.request) {
      return;
    }
    if (/^\d+$/.test(e.id)) {
      this.lastId = Number(e.id);
    }
    if (e.type === "ready") {
      this.readyEvent(req, e.data);
      return;
    }
    if (!req.ready) {
      // A long backlog is arriving: the host lets the stream through.
      this.watch(req);
    }
    let d;
    try {
      d = JSON.parse(e.data);
    } catch {
      return;
    }
    if (d === null || typeof d !== "object") {
      return;
    }
    switch (e.type) {
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

  readyEvent(req, data) {
    req.ready = true;
    this.failures = 0;
    this.offline = false;
    this.detail = "";
    this.clear("fallback", "grace");
    let mode = this.ask;
    try {
      const said = JSON.parse(data).mode;
      if (said === "live" || said === "batch" || said === "poll") {
        mode = said;
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

  // watch arms the fallback: a live stream that stays silent for 2 s before
  // its first "ready" is held back by the host (mod_fcgid's output buffer,
  // fcgiwrap, a buffering proxy), so the page asks in batch mode instead,
  // and remembers that this host buffers.
  watch(req) {
    this.clear("fallback");
    if (this.ask === "live" && !this.everReady && !req.ready) {
      this.timers.fallback = setTimeout(() => {
        if (req !== this.request) {
          return;
        }
        this.request = null;
        req.stop.abort();
        this.ask = "batch";
        this.mode = "batch";
        rememberHostBuffers();
        this.open();
      }, readyWait);
    }
  }

  // ended decides, when the response req is over, when to ask again.
  ended(req, end) {
    if (req !== this.request) {
      return; // closed on purpose: replaced, or the page left
    }
    this.request = null;
    this.clear("fallback");
    if (this.closed) {
      return;
    }
    if (end.ok) {
      // The normal end of a response: again after the server's retry:.
      if (this.mode === "live") {
        // Say "reconnecting" only if the stream is not back soon.
        this.clear("grace");
        this.timers.grace = setTimeout(() => this.report("reconnecting"), reconnectGrace);
      }
      this.later(this.retry || defaultRetry);
      return;
    }
    this.failures++;
    const base = Math.min(backoffMax, backoffFirst * 2 ** (this.failures - 1));
    let wait = Math.min(backoffMax, base * (1 - jitter + 2 * jitter * Math.random()));
    // Never sooner than the server's retry: nor its Retry-After.
    wait = Math.max(wait, this.retry, Math.min(retryAfterMax, (end.wait || 0) * 1000));
    wait = Math.round(wait);
    if (this.again) {
      // "Retry now" came while this try was under way: one more, now.
      this.again = false;
      wait = 0;
    }
    this.later(wait);
    this.detail = end.answered ? end.detail : "The server could not be reached.";
    if (end.answered || this.failures >= offlineAfter || this.offline) {
      this.offline = true;
      this.report("offline", Date.now() + wait);
    } else {
      this.report("reconnecting");
    }
  }

  later(wait) {
    this.clear("next");
    this.timers.next = setTimeout(() => this.tryAgain(), wait);
  }

  tryAgain() {
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
    if (this.request !== null) {
      this.again = !this.request.ready;
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
    if (this.request === null) {
      return;
    }
    const req = this.request;
    this.request = null;
    req.stop.abort();
    this.clear("fallback", "grace");
    const wait = this.mode === "live" ? 0 : this.opened + this.retry - Date.now();
    if (wait > 0) {
      this.later(wait);
    } else {
      this.open();
    }
  }

  report(status, retryAt = 0) {
    this.clear("grace");
    this.sink.state({
      status,
      mode: this.mode,
      every: this.retry || defaultRetry,
      detail: status === "offline" ? this.detail : "",
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
    this.request?.stop.abort();
    this.request = null;
  }
}

// refusal puts into words why the server did not send a stream: its own
// sentence ({"error": …}) when it sent one, else one for the status; a
// host's HTML error page is not shown.
async function refusal(res, type) {
  let why = "";
  if (/json/i.test(type)) {
    try {
      why = String((await res.json()).error ?? "");
    } catch {
      // Not JSON after all.
    }
  } else {
    res.body?.cancel().catch(() => {});
  }
  if (why === "") {
    why = res.ok
      ? "The server answered, but not with a stream of messages."
      : (statusWords[res.status] ?? "The server could not send the stream of messages just now.");
  }
  return `${why} (HTTP ${res.status})`;
}

// retryAfter reads a Retry-After header (seconds or an HTTP date) as
// whole seconds from now, or 0.
export function retryAfter(value) {
  if (value === null) {
    return 0;
  }
  const s = /^\d+$/.test(value.trim()) ? Number(value) : (Date.parse(value) - Date.now()) / 1000;
  return Number.isFinite(s) && s > 0 ? Math.ceil(s) : 0;
}

// EventParser reads the text/event-stream format, chunk by chunk, as the
// HTML standard describes it: lines end in CRLF, LF or CR; a blank line
// ends an event; "event", "data", "id" and "retry" are the fields; a line
// starting with ":" is a comment. It calls dispatch({type, data, id}) for
// each event with data, and retry(ms) for each valid retry field.
export class EventParser {
  constructor(dispatch, retry) {
    this.dispatch = dispatch;
    this.retry = retry;
    this.rest = ""; // an unfinished line
    this.type = "";
    this.data = [];
    this.id = ""; // the last event id, which stays until another is set
  }

  push(chunk) {
    const text = this.rest + chunk;
    const eol = /\r\n|\r|\n/g;
    let start = 0;
    for (let m = eol.exec(text); m !== null; m = eol.exec(text)) {
      if (m[0] === "\r" && m.index === text.length - 1) {
        break; // perhaps the first half of a CRLF
      }
      this.line(text.slice(start, m.index));
      start = eol.lastIndex;
    }
    this.rest = text.slice(start);
  }

  line(l) {
    if (l === "") {
      if (this.data.length > 0) {
        this.dispatch({ type: this.type || "message", data: this.data.join("\n"), id: this.id });
      }
      this.type = "";
      this.data = [];
      return;
    }
    if (l[0] === ":") {
      return;
    }
    const colon = l.indexOf(":");
    const field = colon < 0 ? l : l.slice(0, colon);
    let value = colon < 0 ? "" : l.slice(colon + 1);
    if (value[0] === " ") {
      value = value.slice(1);
    }
    switch (field) {
      case "event":
        this.type = value;
        break;
      case "data":
        this.data.push(value);
        break;
      case "id":
        if (!value.includes("\0")) {
          this.id = value;
        }
        break;
      case "retry":
        if (/^\d+$/.test(value)) {
          this.retry(Number(value));
        }
        break;
    }
  }
}
