// Small pure helpers for showing messages. Nothing here parses HTML: user
// text reaches the page only as text nodes, and a link only as an <a>
// element whose href is an http: or https: URL.

// Room names as the server accepts them (1–32 letters, digits, - or _).
export const roomPattern = /^[A-Za-z0-9_-]{1,32}$/;

// What roomPattern allows, in a sentence for the reader.
export const roomRule =
  "Room names are 1 to 32 letters (A to Z, without accents), digits, hyphens (-) or underscores (_), with no spaces.";

// The room used when the address names none.
export const defaultRoom = "lobby";

// roomFromAddress reads the room from "#room", else from "?room=", else
// gives the default. It returns the name as written, valid or not, so the
// caller can say what was wrong with it.
export function roomFromAddress(loc) {
  let hash = loc.hash.replace(/^#/, "");
  try {
    hash = decodeURIComponent(hash);
  } catch {
    // A malformed escape stays as written; it is then no valid room.
  }
  if (hash !== "") {
    return hash;
  }
  return new URLSearchParams(loc.search).get("room") || defaultRoom;
}

// Candidates for links: a scheme, then everything up to white space, a
// character that rarely ends a URL in running text, or a format character
// (a direction override inside a link would show its text reordered:
// "https://evil.example/\u202Egro.elpmaxe" as if it ended in example.org).
const linkCandidate = /\bhttps?:\/\/[^\s<>"\p{Cf}]+/giu;

// Characters that end a sentence rather than a URL.
const trailingPunctuation = /[.,;:!?'*]+$/;

// trimURL drops punctuation that follows a URL in prose, and a closing
// bracket with no opening one inside the URL ("(see https://x.org/a)").
function trimURL(s) {
  for (;;) {
    const before = s;
    s = s.replace(trailingPunctuation, "");
    for (const [open, close] of [["(", ")"], ["[", "]"], ["{", "}"]]) {
      if (s.endsWith(close) && count(s, open) < count(s, close)) {
        s = s.slice(0, -1);
      }
    }
    if (s === before) {
      return s;
    }
  }
}

function count(s, ch) {
  return s.split(ch).length - 1;
}

// safeURL returns the absolute http(s) URL s stands for, or null. A URL
// with a user name or password is no link: "https://bank.example@evil.example/"
// reads as the bank's and leads elsewhere (it stays as text).
function safeURL(s) {
  try {
    const u = new URL(s);
    if (u.username !== "" || u.password !== "") {
      return null;
    }
    return u.protocol === "http:" || u.protocol === "https:" ? u.href : null;
  } catch {
    return null;
  }
}

// messageText turns a message's text into nodes: text nodes, and links for
// http(s) URLs that open in a new tab without access to this one.
export function messageText(doc, text) {
  const out = doc.createDocumentFragment();
  let last = 0;
  for (const m of text.matchAll(linkCandidate)) {
    const raw = trimURL(m[0]);
    const href = safeURL(raw);
    if (href === null) {
      continue;
    }
    if (m.index > last) {
      out.append(doc.createTextNode(text.slice(last, m.index)));
    }
    const a = doc.createElement("a");
    a.href = href;
    a.textContent = raw;
    a.rel = "noopener noreferrer";
    a.target = "_blank";
    out.append(a);
    last = m.index + raw.length;
  }
  if (last < text.length) {
    out.append(doc.createTextNode(text.slice(last)));
  }
  return out;
}

// nickColor gives a nick one of eight colours (CSS classes nick-0 … nick-7,
// each readable on both themes), the same one every time.
export function nickColor(nick) {
  let h = 0;
  for (const ch of nick) {
    h = (h * 31 + ch.codePointAt(0)) >>> 0;
  }
  return "nick-" + (h % 8);
}

// Formats in the reader's language, made once: making one for each message
// (as toLocaleTimeString does) was most of the cost of showing a message.
// Each is made when first used, not when the page loads: making the three
// together took the longest task of the page's start.
const formats = new Map();
function format(name, options) {
  let f = formats.get(name);
  if (f === undefined) {
    f = new Intl.DateTimeFormat([], options);
    formats.set(name, f);
  }
  return f;
}

// clock shows a time as the reader's local hours and minutes.
export function clock(date) {
  return format("clock", { hour: "2-digit", minute: "2-digit" }).format(date);
}

// fullTime shows a date and time in full, for a message's tooltip.
export function fullTime(date) {
  return format("full", {
    year: "numeric",
    month: "numeric",
    day: "numeric",
    hour: "numeric",
    minute: "numeric",
    second: "numeric",
  }).format(date);
}

// dayName names a date in the reader's language, for the line that starts
// each day in the log.
export function dayName(date) {
  return format("day", { weekday: "long", year: "numeric", month: "long", day: "numeric" }).format(date);
}

// dayKey tells whether two times fall on the same local day.
export function dayKey(date) {
  return date.getFullYear() + "-" + date.getMonth() + "-" + date.getDate();
}

// Characters that show nothing by themselves, as the server counts them:
// format characters (zero-width space, joiners, direction marks) and the
// blank letters that pass for text.
const invisible = /[\p{Cf}\u034F\u115F\u1160\u2800\u3164\uFFA0]/gu;

// validNick returns nick trimmed, or an error sentence if the server would
// refuse it: 1–32 characters, something visible, no control characters.
// The page also sends the nick with its stream (for presence), where a
// refused one would stop the messages, so the rule must be the server's.
export function validNick(nick) {
  const n = nick.trim();
  const length = [...n].length;
  if (n.replace(invisible, "").trim() === "") {
    return { error: "Please choose a nickname." };
  }
  if (length > 32) {
    return { error: "The nickname is too long: at most 32 characters." };
  }
  if (/\p{Cc}/u.test(n)) {
    return { error: "The nickname may not contain control characters." };
  }
  return { nick: n };
}

// nickKey gives the form under which the page compares nicks: two nicks
// with the same key are the same nick (case and look-alikes such as
// full-width letters do not count). It is NFKC, then case folded, as the
// server compares them today; upper then lower case stands for the
// server's full case folding (ß and ss, ς and σ are one). Where the server
// goes further (confusable letters from other scripts), a hint from the
// page may miss.
export function nickKey(nick) {
  return nick.normalize("NFKC").toUpperCase().toLowerCase();
}

// Letters, digits, marks and the underscore: what a nick must not run into
// to be named in a text ("ada" is not named in "adam").
const wordChar = /[\p{L}\p{N}\p{M}\p{Pc}]/u;

// mentions reports whether text names nick: the nick's key occurs in the
// text's key, on word boundaries where the nick starts or ends with a
// letter or digit ("@ada!", "ADA:", "ａｄａ" name ada).
export function mentions(text, nick) {
  const key = nickKey(nick.trim());
  if (key === "") {
    return false;
  }
  const t = nickKey(text);
  const starts = wordChar.test(String.fromCodePoint(key.codePointAt(0)));
  const ends = wordChar.test([...key].at(-1));
  for (let i = t.indexOf(key); i >= 0; i = t.indexOf(key, i + 1)) {
    const before = [...t.slice(Math.max(0, i - 2), i)].at(-1) ?? "";
    const after = i + key.length < t.length ? String.fromCodePoint(t.codePointAt(i + key.length)) : "";
    if ((!starts || !wordChar.test(before)) && (!ends || !wordChar.test(after))) {
      return true;
    }
  }
  return false;
}

// textLength counts characters as the server does (code points), not as
// JavaScript's length does (UTF-16 units: an emoji is two).
export function textLength(text) {
  let n = 0;
  for (const _ of text) {
    n++;
  }
  return n;
}
