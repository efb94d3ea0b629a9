// The messages of one room, from one stream per browser however many tabs
// show that room.
//
// Tabs of a room elect a leader with a Web Lock: the tab holding the lock
// alone opens the EventSource and passes every message and state change to
// the room's other tabs over a BroadcastChannel; a tab that opens later asks
// the leader for what it has. When the leader closes, the lock goes to
// another tab, which resumes the stream after the last id it saw.
// Deletions, the presence list and the notice that history was trimmed
// travel the same way as messages. So a browser keeps one connection per
// room (far from HTTP/1.1's six per host) and a host runs one stream
// program per browser, not per tab. Web Locks exist only in secure contexts
// (HTTPS, localhost): over plain HTTP, and in browsers without Web Locks or
// BroadcastChannel, each tab has its own.

// Timings of the stream, in milliseconds.
const readyWait = 2000; // silence before "ready" that means the host holds the stream back
const browserRetry = 3000; // about what a browser waits before reconnecting on its own
const reconnectGrace = 2500; // a stream that ended normally is back well within this
const retryMin = 1000; // retries after a failed stream: from 1 s,
const retryMax = 30000; // doubling, to at most 30 s

// Messages (and deleted ids) a tab keeps to hand to tabs that open the
// room later.
const keep = 500;

// joinRoom starts delivering room's events to the handlers of on:
//   message(message)   once per id;
//   delete(id)         the message with that id was deleted by a moderator;
//   presence(nicks)    who is reading the room now (sorted nicks);
//   trimmed(through)   messages up to that id were removed by retention
//                      before this browser received them;
//   state(state)       the connection changed: {status: "connecting" |
//                      "live" | "reconnecting" | "offline", mode: "live" |
//                      "batch", detail: string, retryAt: number}.
// nick, when not empty, is the reader's nickname, sent with the stream so
// that others see who is in the room. It returns {leave(), setNick(nick,
// tell)}; tell says whether to pass the new nick to the room's other tabs
// (not when they learnt it from localStorage themselves).
export function joinRoom(room, nick, on) {
  const feed = new Feed(room, nick, on);
  if ("locks" in navigator && typeof BroadcastChannel === "function") {
    feed.share();
  } else {
    feed.lead();
  }
  return { leave: () => feed.leave(), setNick: (n, tell) => feed.setNick(n, tell) };
}

// Feed is a tab's view of one room: the messages it has, the connection
// state, and the stream, when this tab is the leader.
class Feed {
  constructor(room, nick, on) {
    this.room = room;
    this.nick = nick;
    this.on = on;
    this.messages = new Map(); // id → message, oldest first
    this.deleted = new Set(); // ids of deleted messages, oldest first
    this.lastId = 0; // the newest event with an id: a message or a deletion
    this.presence = null; // the nicks in the room, once known
    this.trimmed = 0; // the highest "trimmed through" reported
    this.state = { status: "connecting", mode: "live", detail: "", retryAt: 0 };
    this.source = null; // the stream, while this tab leads
    this.channel = null; // to the room's other tabs, when shared
    this.stop = null; // aborts the wait for the lock
    this.release = null; // gives the lock up
    this.left = false;
  }

  // share joins the other tabs of this room in this browser: it asks a
  // leader for what it has, and waits in line to become the leader.
  share() {
    // The name holds the stream's full URL, so two chats on one host (say
    // /~ann/chat/ and /~bob/chat/) never share a stream.
    const name = "cgichat " + new URL("cgi-bin/stream?room=" + this.room, document.baseURI).href;
    this.channel = new BroadcastChannel(name);
    this.channel.onmessage = (e) => this.fromTab(e.data);
    this.stop = new AbortController();
    navigator.locks
      .request(name, { signal: this.stop.signal }, () => {
        if (this.left) {
          return undefined; // granted just as the tab left: pass it on
        }
        this.lead();
        // Hold the lock until this tab leaves the room or closes.
        return new Promise((resolve) => {
          this.release = resolve;
        });
      })
      .catch(() => {
        // Aborted: the tab left the room before it was its turn.
      });
    this.channel.postMessage({ type: "hello" });
  }

  // lead opens the stream, resuming after the last event this tab has,
  // in the mode the previous leader had found to work.
  lead() {
    this.leader = true;
    this.source = new Source(this.room, this.nick, this.lastId, this.state.mode, {
      message: (m) => {
        if (this.add(m)) {
          this.tell({ type: "message", message: m });
        }
      },
      delete: (d) => {
        if (this.remove(d.target, d.id)) {
          this.tell({ type: "delete", target: d.target, id: d.id });
        }
      },
      presence: (nicks) => {
        this.setPresence(nicks);
        this.tell({ type: "presence", nicks });
      },
      trimmed: (through) => {
        if (this.trim(through)) {
          this.tell({ type: "trimmed", through });
        }
      },
      state: (s) => {
        this.setState(s);
        this.tell({ type: "state", state: s });
      },
    });
  }

  // fromTab handles what another tab of this room says.
  fromTab(d) {
    switch (d.type) {
      case "hello":
        if (this.leader) {
          this.tell({
            type: "sync",
            messages: [...this.messages.values()],
            deleted: [...this.deleted],
            lastId: this.lastId,
            presence: this.presence,
            state: this.state,
          });
        }
        break;
      case "sync":
        for (const id of d.deleted) {
          this.remove(id, 0);
        }
        for (const m of d.messages) {
          this.add(m);
        }
        this.lastId = Math.max(this.lastId, d.lastId);
        if (!this.leader) {
          if (d.presence !== null) {
            this.setPresence(d.presence);
          }
          this.setState(d.state);
        }
        break;
      case "message":
        this.add(d.message);
        break;
      case "delete":
        this.remove(d.target, d.id);
        break;
      case "presence":
        if (!this.leader) {
          this.setPresence(d.nicks);
        }
        break;
      case "trimmed":
        this.trim(d.through);
        break;
      case "nick":
        this.setNick(d.nick, false);
        break;
      case "state":
        if (!this.leader) {
          this.setState(d.state);
        }
        break;
    }
  }

  // setNick changes the nickname the stream is opened with; the leader
  // reopens it at once (resuming after the last event), so presence
  // follows. With tell, the other tabs (one of which may lead) hear it too.
  setNick(nick, tell) {
    if (nick === this.nick) {
      return;
    }
    this.nick = nick;
    if (tell) {
      this.tell({ type: "nick", nick });
    }
    this.source?.setNick(nick);
  }

  tell(d) {
    if (this.channel !== null) {
      this.channel.postMessage(d);
    }
  }

  // add passes on a message not seen (nor deleted) before, and reports
  // whether it was new.
  add(m) {
    if (this.messages.has(m.id) || this.deleted.has(m.id)) {
      return false;
    }
    this.messages.set(m.id, m);
    trimTo(this.messages, keep);
    this.lastId = Math.max(this.lastId, m.id);
    this.on.message(m);
    return true;
  }

  // remove forgets the message target, deleted by the event with id (0 when
  // a tab's sync names it), and reports whether this was news. A deleted id
  // is remembered, so that the message never comes back from another tab.
  remove(target, id) {
    this.lastId = Math.max(this.lastId, id);
    if (this.deleted.has(target)) {
      return false;
    }
    this.deleted.add(target);
    trimTo(this.deleted, keep);
    this.messages.delete(target);
    this.on.delete(target);
    return true;
  }

  setPresence(nicks) {
    this.presence = nicks;
    this.on.presence(nicks);
  }

  // trim passes on a retention notice once per point of trimming: a host
  // in batch mode may repeat it with every response until a newer message
  // moves the stream past it.
  trim(through) {
    if (through <= this.trimmed) {
      return false;
    }
    this.trimmed = through;
    this.on.trimmed(through);
    return true;
  }

  setState(s) {
    this.state = s;
    this.on.state(s);
  }

  leave() {
    this.left = true;
    this.stop?.abort();
    this.release?.();
    this.source?.close();
    this.channel?.close();
    this.channel = null;
  }
}

// trimTo drops the oldest entries of a Map or Set beyond n.
function trimTo(c, n) {
  while (c.size > n) {
    c.delete(c.keys().next().value);
  }
}

// Source is one EventSource on the room's stream, with what the browser
// does not do by itself: falling back to batch mode on hosts that hold the
// stream back, and retrying after errors that make EventSource give up.
class Source {
  constructor(room, nick, lastId, mode, sink) {
    this.room = room;
    this.nick = nick;
    this.lastId = lastId;
    this.mode = mode;
    this.sink = sink;
    this.es = null;
    this.everReady = false; // a live stream has worked here: no fallback
    this.ready = false; // the current response has sent "ready"
    this.failures = 0;
    this.timers = {};
    this.open();
  }

  url() {
    const q = new URLSearchParams({ room: this.room });
    if (this.nick !== "") {
      q.set("nick", this.nick);
    }
    if (this.mode === "batch") {
      q.set("mode", "batch");
    }
    if (this.lastId > 0) {
      // EventSource sends Last-Event-ID only on its own reconnects; the
      // first request of a new one says it here.
      q.set("lastEventId", String(this.lastId));
    }
    return "cgi-bin/stream?" + q;
  }

  open() {
    const es = new EventSource(this.url());
    this.es = es;
    this.ready = false;
    es.addEventListener("message", (e) => this.event(e, (m) => this.sink.message(m)));
    es.addEventListener("delete", (e) =>
      this.event(e, (d) => Number.isSafeInteger(d.target) && this.sink.delete(d)),
    );
    es.addEventListener("presence", (e) =>
      this.event(e, (p) => Array.isArray(p.nicks) && this.sink.presence(p.nicks.map(String))),
    );
    es.addEventListener("trimmed", (e) =>
      this.event(e, (t) => Number.isSafeInteger(t.through) && this.sink.trimmed(t.through)),
    );
    es.addEventListener("ready", (e) => this.readyEvent(e));
    es.addEventListener("error", () => this.error(es));
    this.watch(readyWait);
  }

  // watch arms the fallback: a live stream that stays silent for ms before
  // its first "ready" is held back by the host (mod_fcgid's output buffer,
  // fcgiwrap, a buffering proxy), so the page asks in batch mode instead.
  watch(ms) {
    this.clear("fallback");
    if (this.mode === "live" && !this.everReady) {
      this.timers.fallback = setTimeout(() => this.fallBack(), ms);
    }
  }

  fallBack() {
    this.es.close();
    this.mode = "batch";
    this.open();
  }

  // setNick reopens the stream under another nickname, resuming after the
  // last event; while it waits to retry, the next try takes the new one.
  setNick(nick) {
    this.nick = nick;
    if (this.es !== null) {
      this.es.close();
      this.clear("fallback", "grace");
      this.open();
    }
  }

  // event hands the JSON data of an event to pass. Events with an id
  // (messages, deletions: their data says it too) move lastId, where a new
  // EventSource resumes; presence and trimmed have none.
  event(e, pass) {
    let d;
    try {
      d = JSON.parse(e.data);
    } catch {
      return;
    }
    if (d === null || typeof d !== "object") {
      return;
    }
    if (!this.ready) {
      this.watch(readyWait);
    }
    if (Number.isSafeInteger(d.id)) {
      this.lastId = Math.max(this.lastId, d.id);
    }
    pass(d);
  }

  readyEvent(e) {
    this.clear("fallback", "grace", "retry");
    this.ready = true;
    this.failures = 0;
    try {
      this.mode = JSON.parse(e.data).mode === "batch" ? "batch" : this.mode;
    } catch {
      // An old server without a mode in "ready": keep ours.
    }
    if (this.mode === "live") {
      this.everReady = true;
    }
    this.report("live", "");
  }

  error(es) {
    if (es !== this.es) {
      return;
    }
    const wasReady = this.ready;
    this.ready = false;
    if (es.readyState === EventSource.CLOSED) {
      // The server answered with an error status or no event stream, and
      // EventSource gives up: try again later, and say what the server said.
      this.es = null;
      this.clear("fallback", "grace");
      this.retryLater(es.url);
      return;
    }
    // EventSource reconnects by itself, sending Last-Event-ID.
    this.watch(readyWait + browserRetry);
    if (!wasReady) {
      this.report("reconnecting", "");
    } else if (this.mode === "live") {
      // A stream that reached the end of its life is back within a second;
      // say "reconnecting" only if it is not.
      this.clear("grace");
      this.timers.grace = setTimeout(() => this.report("reconnecting", ""), reconnectGrace);
    }
    // In batch mode every response ends after what it carried: that is the
    // normal rhythm, not a reconnection.
  }

  async retryLater(url) {
    this.failures++;
    const wait = Math.min(retryMax, retryMin * 2 ** (this.failures - 1));
    this.report("offline", "", Date.now() + wait);
    this.clear("retry");
    this.timers.retry = setTimeout(() => this.open(), wait);
    const why = await explain(url);
    if (this.es === null && why !== "") {
      this.report("offline", why, Date.now() + wait);
    }
  }

  report(status, detail, retryAt = 0) {
    this.clear("grace");
    this.sink.state({ status, mode: this.mode, detail, retryAt });
  }

  clear(...names) {
    for (const n of names) {
      clearTimeout(this.timers[n]);
      delete this.timers[n];
    }
  }

  close() {
    this.clear(...Object.keys(this.timers));
    this.es?.close();
    this.es = null;
  }
}

// explain asks the stream URL once more with fetch, which, unlike
// EventSource, shows the status and the server's {"error": …} sentence.
async function explain(url) {
  const stop = new AbortController();
  const timer = setTimeout(() => stop.abort(), 5000);
  try {
    const res = await fetch(url, { signal: stop.signal, cache: "no-store" });
    if (res.ok) {
      return "";
    }
    let why = res.statusText;
    try {
      why = (await res.json()).error || why;
    } catch {
      // Not our JSON: a proxy's error page. The status says enough.
    }
    return why + " (HTTP " + res.status + ")";
  } catch {
    return "The server could not be reached.";
  } finally {
    clearTimeout(timer);
    stop.abort();
  }
}
