// Moderation from the page, and deleting one's own messages.
//
// The page asks the chat at load who this browser is (whoami): a
// moderator (the session a key opened, kept in a cookie the page cannot
// read), and how long a poster may delete their own message. A moderator
// gets a ⋮ button on every message (delete, ban the nick or the address,
// release the nick) and the moderation log; anyone else a Delete button on
// their own messages, only while the chat allows it. A deletion leaves
// every page through the stream's delete event (docs/contract.md#actions).

import { act } from "./actions.js";
import { plain } from "./answers.js";
import { clock, fullTime, nickKey } from "./format.js";

const $ = (id) => document.getElementById(id);

// What the page gives: the log, the Moderate button, the reader's nick
// (a function), unshow(id) to take a deleted message out, and say(text)
// to say that something is done.
let page = null;

// startModeration wires the dialogs up and asks the chat who this browser
// is.
export function startModeration(p) {
  page = p;
  page.log.addEventListener("click", openActions);
  page.button.addEventListener("click", openModerate);
  loadSession();
}

const session = {
  moderator: null, // the label of the key this browser moderates with
  ownDelete: 0, // seconds after posting in which a poster may delete
  skew: 0, // the chat's clock minus this one, in milliseconds
};

// The Delete offer goes this long before the chat's window closes, so
// that a click on it is not refused for a few seconds' difference.
const ownMargin = 15000;

function setSession(d, date) {
  session.moderator = typeof d.moderator === "string" ? d.moderator : null;
  if (Number.isSafeInteger(d.ownDeleteSeconds)) {
    session.ownDelete = d.ownDeleteSeconds;
  }
  if (Number.isFinite(date)) {
    // The Date header has whole seconds: the middle of that second.
    session.skew = date + 500 - Date.now();
  }
  page.button.textContent = session.moderator === null ? "Moderate" : `Moderating as ${session.moderator}`;
  refreshActions();
}

export async function loadSession() {
  const r = await act({ action: "whoami" });
  if (r.ok) {
    setSession(r.data, r.date);
  }
}

// ownUntil returns until when (this clock) the poster of the message li
// shows may delete it.
function ownUntil(li) {
  return Date.parse(li.querySelector("time").dateTime) + session.ownDelete * 1000 - ownMargin - session.skew;
}

// actionKind says what the reader may do to the message li shows: "mod"
// (moderate it), "own" (delete it: their own, recent) or "".
function actionKind(li) {
  if (session.moderator !== null) {
    return "mod";
  }
  const nick = li.dataset.nick;
  const own = page.nick();
  if (
    session.ownDelete > 0 &&
    own !== "" &&
    (nick === own || nickKey(nick) === nickKey(own)) &&
    ownUntil(li) > Date.now()
  ) {
    return "own";
  }
  return "";
}

// setActions gives the message li the button for what the reader may do
// to it, or takes it away.
export function setActions(li) {
  const kind = actionKind(li);
  let b = li.querySelector(".msg-act");
  li.classList.toggle("acts", kind !== "");
  if (kind === "") {
    b?.remove();
    return;
  }
  if (b === null) {
    b = document.createElement("button");
    b.type = "button";
    b.className = "msg-act";
    b.setAttribute("aria-haspopup", "dialog");
    li.append(b);
  }
  if (b.dataset.kind !== kind) {
    b.dataset.kind = kind;
    if (kind === "mod") {
      b.textContent = "⋮";
      b.setAttribute("aria-label", "Moderate this message");
      b.title = "Moderate this message";
    } else {
      b.textContent = "Delete";
      b.removeAttribute("aria-label");
      b.title = "Delete your message";
    }
  }
  if (kind === "own" && ownTimer === 0) {
    // The offer goes when the chat's window closes.
    ownTimer = setInterval(expireOwn, 2000);
  }
}

let ownTimer = 0;
function expireOwn() {
  const offers = page.log.querySelectorAll('.msg-act[data-kind="own"]');
  for (const b of offers) {
    setActions(b.parentElement);
  }
  if (page.log.querySelector('.msg-act[data-kind="own"]') === null) {
    clearInterval(ownTimer);
    ownTimer = 0;
  }
}

// refreshActions gives every message the buttons the reader may use now.
export function refreshActions() {
  if (page === null) {
    return;
  }
  for (const li of page.log.querySelectorAll(".msg")) {
    setActions(li);
  }
}

// The dialog of one message's actions.
const acting = { id: 0, nick: "", kind: "" };
const actDialog = $("act-dialog");
const actProblem = $("act-problem");
const actDelete = $("act-delete");

// openActions opens the dialog of the message whose button was clicked.
function openActions(e) {
  const b = e.target.closest?.(".msg-act");
  if (b === null || b === undefined) {
    return;
  }
  const li = b.parentElement;
  Object.assign(acting, { id: Number(li.dataset.id), nick: li.dataset.nick, kind: b.dataset.kind });
  $("act-nick").textContent = acting.nick;
  const text = li.querySelector(".text").textContent;
  $("act-quote").textContent = [...text].length > 300 ? [...text].slice(0, 300).join("") + "…" : text;
  const mod = acting.kind === "mod";
  $("act-mod").hidden = !mod;
  const own = $("act-own");
  own.hidden = mod;
  if (!mod) {
    own.textContent = `You can delete your own messages for ${Math.round(session.ownDelete / 60)} minutes after sending them: this one until ${clock(new Date(ownUntil(li) + ownMargin))}.`;
  }
  actDelete.textContent = mod ? "Delete this message" : "Delete your message";
  actProblem.hidden = true;
  setActBusy(false);
  actDialog.showModal();
}

function setActBusy(busy) {
  for (const b of actDialog.querySelectorAll(".act-list button")) {
    b.disabled = busy;
  }
}

const banFor = { hour: "for an hour", day: "for a day", ever: "for ever" };

// doAct sends one of the dialog's actions for the message, and says when
// it is done; the message leaves the log by the stream's delete event (and
// here at once).
async function doAct(body) {
  setActBusy(true);
  const r = await act({ ...body, id: acting.id });
  setActBusy(false);
  if (!r.ok) {
    actProblem.textContent = plain(r.why);
    actProblem.hidden = false;
    if (r.status === 403) {
      // The session may have ended, or the window closed: ask again.
      loadSession();
    }
    return;
  }
  actDialog.close();
  const nick = acting.nick;
  switch (body.action) {
    case "delete":
      page.unshow(acting.id);
      page.say(acting.kind === "mod" ? `Deleted the message from ${nick}.` : "Deleted your message.");
      break;
    case "ban-nick":
      page.say(`Banned the nickname ${nick} ${banFor[body.for]}.`);
      break;
    case "ban-address":
      page.say(`Banned the address that sent ${nick}'s message ${banFor[body.for]}.`);
      break;
    case "release-nick":
      page.say(
        r.data.log?.detail === "was not held"
          ? `The nickname ${nick} was not held by anyone.`
          : `Released the nickname ${nick}: the next to write as ${nick} holds it.`,
      );
      break;
  }
}

actDelete.addEventListener("click", () => doAct({ action: "delete" }));
for (const b of actDialog.querySelectorAll("[data-action]")) {
  b.addEventListener("click", () =>
    doAct(b.dataset.for ? { action: b.dataset.action, for: b.dataset.for } : { action: b.dataset.action }),
  );
}
$("act-close").addEventListener("click", () => actDialog.close());

// The Moderate dialog: one field for the key (or a set-up code), sent this
// once; then the moderation log and logging out. A key made from a set-up
// file is shown this once.
const mod = {
  dialog: $("mod-dialog"),
  form: $("mod-form"),
  out: $("mod-out"),
  in: $("mod-in"),
  key: $("mod-key"),
  label: $("mod-label"),
  fresh: $("mod-new"),
  freshKey: $("mod-new-key"),
  warning: $("mod-warning"),
  problem: $("mod-problem"),
  log: $("mod-log-button"),
  logout: $("mod-logout"),
  submit: $("mod-submit"),
};

function showModState() {
  const inside = session.moderator !== null;
  mod.out.hidden = inside;
  mod.in.hidden = !inside;
  mod.label.textContent = session.moderator ?? "";
  mod.log.hidden = !inside;
  mod.logout.hidden = !inside;
  mod.submit.hidden = inside;
}

function modProblem(text) {
  mod.problem.textContent = text;
  mod.problem.hidden = text === "";
}

function openModerate() {
  showModState();
  mod.key.value = "";
  mod.fresh.hidden = true;
  modProblem("");
  mod.dialog.showModal();
}

mod.form.addEventListener("submit", async (e) => {
  e.preventDefault();
  const key = mod.key.value.trim();
  if (key === "") {
    modProblem("Enter your moderator key.");
    return;
  }
  mod.submit.disabled = true;
  const r = await act({ action: "login", key });
  mod.submit.disabled = false;
  // The key leaves the page: the chat keeps the session in a cookie.
  mod.key.value = "";
  if (!r.ok) {
    modProblem(plain(r.why));
    return;
  }
  modProblem("");
  setSession(r.data, r.date);
  showModState();
  if (typeof r.data.key === "string") {
    // Made just now from the set-up file: shown this once.
    mod.freshKey.value = r.data.key;
    mod.fresh.hidden = false;
    mod.warning.textContent = r.data.warning ?? "";
    mod.warning.hidden = !r.data.warning;
    mod.freshKey.focus();
    mod.freshKey.select();
    return;
  }
  mod.dialog.close();
  page.say(`You moderate as ${session.moderator}: each message has a ⋮ button.`);
});

mod.logout.addEventListener("click", async () => {
  const r = await act({ action: "logout" });
  if (!r.ok) {
    modProblem(plain(r.why));
    return;
  }
  setSession(r.data, r.date);
  mod.dialog.close();
  page.say("You no longer moderate in this browser.");
});
$("mod-close").addEventListener("click", () => mod.dialog.close());
mod.dialog.addEventListener("close", () => {
  mod.key.value = "";
  mod.freshKey.value = "";
});
mod.log.addEventListener("click", () => {
  mod.dialog.close();
  openModlog();
});

// The moderation log, newest first, a page at a time.
const modlog = { dialog: $("modlog-dialog"), list: $("modlog"), more: $("modlog-more"), problem: $("modlog-problem"), before: 0 };

function openModlog() {
  modlog.list.replaceChildren();
  modlog.before = 0;
  modlog.more.hidden = true;
  modlog.problem.hidden = true;
  modlog.dialog.showModal();
  moreModlog();
}

async function moreModlog() {
  modlog.more.disabled = true;
  const r = await act(modlog.before > 0 ? { action: "log", before: modlog.before } : { action: "log" });
  modlog.more.disabled = false;
  if (!r.ok || !Array.isArray(r.data.entries)) {
    modlog.problem.textContent = r.ok ? "The chat's answer broke off." : plain(r.why);
    modlog.problem.hidden = false;
    return;
  }
  for (const e of r.data.entries) {
    const li = document.createElement("li");
    const time = document.createElement("time");
    time.dateTime = e.time;
    time.textContent = fullTime(new Date(e.time));
    li.append(time, " ", logSentence(e));
    modlog.list.append(li);
    modlog.before = e.id;
  }
  if (modlog.list.childElementCount === 0) {
    const li = document.createElement("li");
    li.textContent = "Nothing yet.";
    modlog.list.append(li);
  }
  modlog.more.hidden = r.data.more !== true;
}

// logSentence says a line of the moderation log in words, times in the
// reader's.
function logSentence(e) {
  const who = e.moderator ?? "Its poster";
  const msg = e.message ? `message ${e.message}` : "";
  const of = e.nick ? ` (${e.nick})` : "";
  // Times in the reader's; "released" says nothing the sentence does not.
  const detail = String(e.action === "release-nick" && e.detail === "released" ? "" : (e.detail ?? "")).replace(
    /\d{4}-\d\d-\d\dT[\d:.]+Z/g,
    (t) => fullTime(new Date(t)),
  );
  const said = {
    delete: `${who} deleted ${msg}${of}`,
    "ban-nick": `${who} banned the nickname ${e.nick ?? ""}${e.message ? ` (of message ${e.message})` : ""}`,
    "ban-address": `${who} banned the address that sent ${msg}${of}`,
    "unban-nick": `${who} lifted the bans on the nickname ${e.nick ?? ""}`,
    "unban-address": `${who} lifted the ban on the address that sent ${msg}`,
    "release-nick": `${who} released the nickname ${e.nick ?? ""}`,
    "key-created": `A moderator key was made for ${who}`,
  }[e.action] ?? `${who}: ${e.action} ${msg}${of}`;
  return detail === "" ? said + "." : `${said}: ${detail}.`;
}

modlog.more.addEventListener("click", moreModlog);
$("modlog-close").addEventListener("click", () => modlog.dialog.close());
