// Who answered, when the page did not get what it asked for.
//
// The chat's programs refuse with JSON, {"error": "a sentence"}: the page
// shows that sentence. Anything else comes from the web host or from
// something between the reader and it — a firewall's page, the host's own
// error page, a proxy's, a Wi-Fi login page — and says nothing a reader
// can use: the page says in its own words who refused and what helps.

// readAnswer reads a response that is not what the page asked for:
// {status, error (the chat's sentence, or "" when the host answered),
// html, wait (Retry-After, in seconds, or 0)}.
export async function readAnswer(res) {
  const type = res.headers.get("Content-Type") || "";
  let body = "";
  try {
    body = await res.text();
  } catch {
    // The body broke off: what the head says must do.
  }
  let error = "";
  if (/^application\/json/i.test(type)) {
    try {
      const said = JSON.parse(body);
      if (typeof said?.error === "string") {
        error = said.error.trim();
      }
    } catch {
      // Not the chat's JSON after all.
    }
  }
  return {
    status: res.status,
    error,
    html: /html/i.test(type) || /^\s*</.test(body),
    wait: retryAfter(res.headers.get("Retry-After")),
  };
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

// What helps when the host refused: a sentence whose help is true ends in
// "see", and the page adds the troubleshooting guide's name (a link, when
// index.html names its address in <link rel="help">).
const ownerFixes = "The site owner can fix this — see";

// hostAnswer says what an answer means, for a stream request (what =
// "stream") or a message sent (what = "post"; live says whether the stream
// works meanwhile, so that the chat's programs run). It returns {text, help,
// resend}: resend is false when sending the same text again would be
// refused the same way.
export function hostAnswer(a, what, live = false) {
  const post = what === "post";
  const said = (text, help = false, resend = true) => ({
    text: post ? "Not sent: " + text : text,
    help,
    resend,
  });
  if (a.error !== "") {
    return said(`${a.error} (HTTP ${a.status})`);
  }
  switch (a.status) {
    case 403:
      if (post && live) {
        // The stream works, so the programs may run: this message was
        // refused for what it says, by a web application firewall
        // (ModSecurity and its rule sets refuse text that looks like
        // HTML, SQL or a shell command).
        return said(
          "The web host's firewall refused this message (it looks like code or a command to it). Try rewording it; the site owner can exempt the chat — see",
          true,
          false,
        );
      }
      return said(`The web host refused to run the chat's program (its firewall or its settings). ${ownerFixes}`, true);
    case 404:
      return said(
        `The chat's programs are not on this web server (its cgi-bin folder may not be uploaded). ${ownerFixes}`,
        true,
      );
    case 413:
      return said(
        "The web host takes only shorter messages than this one. Please shorten it or send it in parts.",
        false,
        false,
      );
    case 429:
      return said("The web host asks this page to slow down. Try again in a moment.");
    case 500:
      return said(
        `The web host did not run the chat's program (it may not allow programs in this folder). ${ownerFixes}`,
        true,
      );
    case 502:
    case 503:
    case 504:
      return said(
        `The chat's programs are not answering on this web server (they may be stopped). ${ownerFixes}`,
        true,
      );
    case 508:
      // CloudLinux's "Resource Limit Is Reached": the account runs as many
      // requests at once as its plan allows.
      return said(
        "This site is busy: its web host limits how many requests the site may run at once, and that limit is reached for now." +
          (post ? " Try again in a moment." : ""),
      );
  }
  if (a.status < 300 && a.html) {
    // A page where the chat's answer should be: something between the
    // reader and the site answered, most often a Wi-Fi network asking to
    // log in first.
    return said(
      "The network answered with a page of its own instead of the chat, perhaps a Wi-Fi login page. Log in there (open any web page), then " +
        (post ? "send again." : "choose Retry now."),
    );
  }
  return said(`The web host answered (HTTP ${a.status}) instead of the chat.`);
}

// helpAddress returns the troubleshooting guide's address, when the page
// names one (<link rel="help" href="…"> in index.html), or "".
export function helpAddress() {
  return document.querySelector('link[rel="help"]')?.href ?? "";
}

// helpName is what the page calls the troubleshooting guide: cgichat's
// docs/troubleshooting.md, which the site owner has in the copy of cgichat
// they installed it from.
export const helpName = "cgichat's troubleshooting guide (docs/troubleshooting.md)";

// explain puts a {text, help} into nodes: the text, and the guide's name
// (a link when the page knows its address) when help is set.
export function explain(doc, d) {
  const out = doc.createDocumentFragment();
  out.append(d.text);
  if (d.help) {
    out.append(" ");
    const address = helpAddress();
    if (address === "") {
      out.append(helpName);
    } else {
      const a = doc.createElement("a");
      a.href = address;
      a.target = "_blank";
      a.rel = "noopener noreferrer";
      a.textContent = helpName;
      out.append(a);
    }
    out.append(".");
  }
  return out;
}

// plain is a {text, help} as one line of text.
export function plain(d) {
  return d.help ? `${d.text} ${helpName}.` : d.text;
}
