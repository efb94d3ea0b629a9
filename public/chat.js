// A minimal cgichat client: history and live messages through EventSource,
// sending through fetch. All user text goes in through textContent.
"use strict";
(() => {
  const room = (location.hash.slice(1) || new URLSearchParams(location.search).get("room") || "lobby");
  const log = document.getElementById("log");
  const state = document.getElementById("state");
  const seen = new Set();
  document.getElementById("room").textContent = "#" + room;

  function show(m) {
    if (seen.has(m.id)) return;
    seen.add(m.id);
    const li = document.createElement("li");
    const time = document.createElement("time");
    time.dateTime = m.time;
    time.textContent = new Date(m.time).toLocaleTimeString();
    const nick = document.createElement("b");
    nick.textContent = " " + m.nick + ": ";
    li.append(time, nick, document.createTextNode(m.text));
    log.append(li);
    li.scrollIntoView({block: "end"});
  }

  const es = new EventSource("cgi-bin/stream?room=" + encodeURIComponent(room));
  es.addEventListener("message", (e) => show(JSON.parse(e.data)));
  es.addEventListener("ready", () => { state.textContent = "live"; });
  es.addEventListener("error", () => { state.textContent = "reconnecting…"; });

  const form = document.getElementById("send");
  const nick = document.getElementById("nick");
  const text = document.getElementById("text");
  const error = document.getElementById("error");
  nick.value = localStorage.getItem("cgichat.nick") || "";
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    localStorage.setItem("cgichat.nick", nick.value);
    const res = await fetch("cgi-bin/post", {
      method: "POST",
      headers: {"Content-Type": "application/json"},
      body: JSON.stringify({room, nick: nick.value, text: text.value}),
    });
    const body = await res.json().catch(() => ({error: "The server answered " + res.status + "."}));
    if (res.status === 201) { text.value = ""; error.textContent = ""; } else { error.textContent = body.error; }
  });
  text.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); form.requestSubmit(); }
  });
})();
