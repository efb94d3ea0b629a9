// The messages of one room, from one stream per browser however many tabs
// show that room.
//
// Tabs of a room elect a leader with a Web Lock: the tab holding the lock
// alone opens the stream and passes every message and state change to
// the room's other tabs over a BroadcastChannel; a tab that opens later asks
// the leader for what it has. When the leader closes, the lock goes to
// another tab, which resumes the stream after the last id it saw.
// Deletions, the presence list and the notice that history was trimmed
// travel the same way as messages. So a browser keeps one connection per
// room (far from HTTP/1.1's six per host) and a host runs one stream
// program per browser, not per tab. Web Locks exist only in secure contexts
// (HTTPS, localhost): over plain HTTP, and in browsers without Web Locks or
// BroadcastChannel, each tab has its own.

import { Source } from "./stream.js";

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
//                      "live" | "reconnecting" | "offline", mode, every,
//                      detail, retryAt} (see Source in stream.js).
// nick, when not empty, is the reader's nickname, sent with the stream so
// that others see who is in the room. It returns {leave(), setNick(nick,
// tell), retryNow()}; tell says whether to pass the new nick to the room's
// other tabs (not when they learnt it from localStorage themselves);
// retryNow asks the tab holding the stream to try again at once.
export function joinRoom(room, nick, on) {
  const feed = new Feed(room, nick, on);
  if ("locks" in navigator && typeof BroadcastChannel === "function") {
    feed.share();
  } else {
    feed.lead();
  }
  return {
    leave: () => feed.leave(),
    setNick: (n, tell) => feed.setNick(n, tell),
    retryNow: () => feed.retryNow(),
  };
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
    this.state = { status: "connecting", mode: "live", every: 0, detail: null, retryAt: 0 };
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
      case "retry":
        this.source?.retryNow();
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

  // retryNow tries to reach the server at once: here, if this tab holds
  // the stream, else in the tab that does.
  retryNow() {
    if (this.source !== null) {
      this.source.retryNow();
    } else {
      this.tell({ type: "retry" });
    }
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
