// Actions: what the page asks of cgi-bin/post besides sending messages —
// who this browser is, moderating, checking a nick, carrying a nick to
// another device ({"action": …}, docs/contract.md#actions).

import { hostAnswer, readAnswer } from "./answers.js";

// act sends the action body to the chat. It returns {ok: true, data, date}
// for the chat's 200 (date: the server's clock from the Date header, in
// milliseconds, or NaN), else {ok: false, status, why}: why is what to
// say ({text, help}: the chat's sentence, or what the host's answer
// means), status the HTTP status (0 when nothing answered), and chat
// whether the chat itself refused (not the host, nor the network). With
// a timeout (ms), an answer that takes longer counts as none.
export async function act(body, timeout = 0) {
  const stop = new AbortController();
  const timer = timeout > 0 ? setTimeout(() => stop.abort(), timeout) : 0;
  let res;
  try {
    res = await fetch("cgi-bin/post", {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify(body),
      cache: "no-store",
      signal: stop.signal,
    });
  } catch {
    return { ok: false, status: 0, chat: false, why: { text: "The chat could not be reached.", help: false } };
  } finally {
    clearTimeout(timer);
  }
  if (res.status === 200 && /^application\/json/i.test(res.headers.get("Content-Type") ?? "")) {
    const data = await res.json().catch(() => null);
    if (data !== null && typeof data === "object") {
      return { ok: true, data, date: Date.parse(res.headers.get("Date") ?? "") };
    }
    return { ok: false, status: res.status, chat: false, why: { text: "The chat's answer broke off.", help: false } };
  }
  const answer = await readAnswer(res);
  return { ok: false, status: res.status, chat: answer.error !== "", why: hostAnswer(answer, "action") };
}
