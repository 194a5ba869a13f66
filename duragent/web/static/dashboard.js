// Duragent dashboard: live session transcripts over SSE, forms sent without leaving the page,
// confirmation before a revert. Pages work without this script (reload to see new replies).
"use strict";

(function () {
  const csrf = () => (document.querySelector('meta[name="csrf-token"]') || {}).content || "";
  // turns whose start the page has seen: a message sent after none started waits for its turn
  let turnsStarted = 0;

  // Control and bidirectional characters written out as escapes (`\u2067`), as the server's pages
  // and the terminal show them: isolates and overrides would reorder what a page shows, so a
  // command waiting for approval could read as a harmless one (duragent/terminal_text.py).
  const CONTROLS = /[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;
  const NAMED = { "\r": "\\r", "\x0b": "\\v", "\x0c": "\\f", "\x08": "\\b", "\x00": "\\0" };
  function printable(text) {
    return String(text).replace(/\r\n/g, "\n").replace(CONTROLS, (char) => {
      const code = char.charCodeAt(0);
      return NAMED[char] || (code < 0x100 ? "\\x" + code.toString(16).padStart(2, "0") : "\\u" + code.toString(16).padStart(4, "0"));
    });
  }

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = printable(text);
    return node;
  }

  // A transcript line of text and elements, in order.
  function line(className, ...parts) {
    const item = el("li", className);
    for (const part of parts) item.append(typeof part === "string" ? printable(part) : part);
    return item;
  }

  // JSON as the page's server writes it (Python's json.dumps: ", " and ": " between items).
  function asPythonJson(value) {
    if (Array.isArray(value)) return "[" + value.map(asPythonJson).join(", ") + "]";
    if (value && typeof value === "object") {
      return "{" + Object.entries(value).map(([k, v]) => JSON.stringify(k) + ": " + asPythonJson(v)).join(", ") + "}";
    }
    return JSON.stringify(value) ?? "null";
  }

  // An approval of a tool other than bash names it: its arguments alone do not say what is asked.
  function namesTool(d) {
    return Boolean(d.tool && d.tool !== "bash" && d.command && d.command !== d.tool);
  }

  function followTranscript(list) {
    const agent = document.querySelector(".meta strong")?.textContent || "assistant";
    const status = document.getElementById("session-status");
    const turns = document.getElementById("session-turns");
    const approvals = document.getElementById("approvals");
    let streaming = null; // the reply being streamed, until its message is stored
    const url = new URL(list.dataset.events, location.href);
    url.searchParams.set("after", list.dataset.after || "0");
    const source = new EventSource(url);

    function add(node) {
      if (streaming && streaming.parentNode) list.insertBefore(node, streaming);
      else list.appendChild(node);
      node.scrollIntoView({ block: "nearest" });
    }
    function message(role, who, text) {
      const item = el("li", "msg " + role);
      item.appendChild(el("span", "who", who));
      item.appendChild(el("div", "text", text));
      return item;
    }
    function finish(text, cutOff = false) {
      if (streaming) streaming.remove();
      streaming = null;
      if (text) add(message("assistant", cutOff ? agent + " (cut off)" : agent, text));
    }
    function on(name, handler) {
      // a lost connection fires "error" too, as a plain event without data: not a turn's error
      source.addEventListener(name, (event) => {
        if (event instanceof MessageEvent) handler(JSON.parse(event.data));
      });
    }
    followConnection(source, list);

    // the button that runs a failed or cancelled turn again: shown while the last turn is one
    // (a failure says whether the server can: its `retryable`)
    const retry = document.getElementById("retry");
    const offerRetry = (shown) => { if (retry) retry.hidden = !shown; };
    // Cancel while a turn runs (not while it waits for an approval: its buttons answer it),
    // Resume while the session is paused for another reason
    const cancel = document.getElementById("cancel");
    const resume = document.getElementById("resume");
    const turnRuns = (runs) => { if (cancel) cancel.hidden = !runs; };
    on("turn_retried", () => { offerRetry(false); turnRuns(true); add(el("li", "tool", "↻ the turn runs again")); });
    on("start", (d) => {
      turnRuns(true);
      turnsStarted += 1;
      document.querySelector("#send .queued")?.remove();
      offerRetry(false);
      add(message("user", "user", d.content || ""));
      if (turns && Number.isInteger(d.turn)) turns.textContent = d.turn + (d.turn === 1 ? " turn" : " turns");
    });
    on("token", (d) => {
      if (!streaming) {
        streaming = message("assistant streaming", agent, "");
        list.appendChild(streaming);
      }
      streaming.querySelector(".text").textContent += printable(d.content || "");
      streaming.scrollIntoView({ block: "nearest" });
    });
    on("message", (d) => finish(d.content || "", d.partial === true));
    on("done", (d) => { turnRuns(false); finish(d.content || ""); });
    // (each line as the page renders it from the stored events: a reload shows the same)
    on("tool_call", (d) => {
      add(line("tool", "→ ", el("code", "", d.tool), " ", el("code", "args", asPythonJson(d.arguments || {}))));
    });
    on("tool_result", (d) => {
      const ok = d.ok !== false;
      const content = el("pre", "", String(d.content || "").slice(0, 2000));
      add(line("tool " + (ok ? "ok" : "failed"), "← ", el("code", "", d.tool), ok ? " ok: " : " failed: ", content));
    });
    on("approval_required", (d) => {
      const named = namesTool(d) ? [el("code", "", d.tool), " "] : [];
      add(line("tool asked", "? approval asked for ", ...named, el("code", "", d.command || d.tool)));
      // a page rendered while the call was asked has its form already (the server knew the call
      // waited before its event was stored, and the stream brings the event after the page)
      const shown = [...approvals.querySelectorAll("form")].some((form) => form.elements.call_id.value === d.call_id);
      if (!shown) approvals.appendChild(approvalForm(list, d));
    });
    on("approval_decision", (d) => {
      add(el("li", "tool", "! " + d.decision));
      approvals.querySelectorAll("form").forEach((form) => {
        if (form.elements.call_id.value === d.call_id) form.remove();
      });
    });
    on("notification", (d) => add(el("li", "tool", "✉ " + (d.message || ""))));
    on("error", (d) => { turnRuns(false); finish(""); add(el("li", "error", "error " + (d.code || "") + ": " + (d.message || ""))); offerRetry(d.retryable !== false); });
    on("cancelled", () => { turnRuns(false); finish(""); add(el("li", "error", "cancelled")); offerRetry(true); });
    on("status", (d) => {
      // a turn paused on a call waiting for a person is answered by the approval's buttons, not
      // by Resume (also when it was paused for another reason after asking)
      const asking = d.to === "paused" && (d.reason === "awaiting approval" || approvals.querySelector("form.approval") !== null);
      const shown = asking ? "awaiting approval" : d.to;
      if (status && shown) { status.textContent = shown; status.className = "state state-" + shown.replace(" ", "-"); }
      if (resume) resume.hidden = !(d.to === "paused" && !asking);
      // paused, the turn stopped; going on from a pause or an unattended run for a reason
      // (resumed, an approval answered, a client attached), it runs (a turn's end says none)
      if (d.to === "paused") turnRuns(false);
      else if (d.reason && (d.from === "paused" || d.from === "running")) turnRuns(true);
    });
    on("session_end", (d) => {
      // the server ends the stream after this: nothing more will come, and that is no failure
      source.close();
      const deleted = d.reason === "deleted"; // its files are gone: nothing to fork
      if (status) { status.textContent = deleted ? "deleted" : "ended"; status.className = "state state-ended"; }
      ended(deleted);
    });
  }

  function approvalForm(list, d) {
    const form = el("form", "approval");
    form.method = "post";
    form.action = list.dataset.events.replace(/\/events$/, "/approve");
    for (const [name, value] of [["csrf", csrf()], ["call_id", d.call_id]]) {
      const input = el("input");
      input.type = "hidden"; input.name = name; input.value = value;
      form.appendChild(input);
    }
    const question = el("p", "", namesTool(d) ? "The agent wants to call " : "The agent wants to run ");
    if (namesTool(d)) {
      question.appendChild(el("code", "", d.tool));
      question.appendChild(document.createTextNode(" with "));
    }
    question.appendChild(el("code", "", d.command || d.tool));
    form.appendChild(question);
    for (const decision of ["allow_once", "allow_always", "deny"]) {
      const button = el("button", "decision-" + decision, decision.replace("_", " "));
      button.type = "submit"; button.name = "decision"; button.value = decision;
      form.appendChild(button);
    }
    sendInPlace(form);
    return form;
  }

  // Say, under the transcript, when the live view is reconnecting or has stopped: the browser
  // retries a dropped stream by itself, and gives up when the server refuses it (after a restart
  // the login is gone), which would otherwise leave a page that looks live and is not.
  function followConnection(source, list) {
    const live = el("p", "live-status hint");
    live.id = "live-status";
    live.setAttribute("role", "status");
    live.hidden = true;
    list.after(live);
    source.addEventListener("open", () => { live.hidden = true; });
    source.addEventListener("error", (event) => {
      if (event instanceof MessageEvent) return; // a turn's error, shown in the transcript
      if (document.getElementById("session-status")?.textContent === "ended") {
        // an ended session's stream answers 204 once everything was sent: not a lost connection
        source.close();
        ended();
        return;
      }
      live.hidden = false;
      if (source.readyState !== EventSource.CLOSED) {
        live.textContent = "Connection to the server lost: reconnecting…";
        return;
      }
      live.textContent = "Live updates stopped (the server restarted or your login ended): ";
      const again = el("a", "", "reload the page");
      again.href = location.href;
      live.appendChild(again);
      live.append(" to see new replies.");
    });
  }

  function ended(deleted) {
    // nothing can be sent to it any more (the server refuses): no forms, as its page opened now
    for (const id of ["send", "retry", "cancel", "resume", "end"]) {
      const form = document.getElementById(id);
      if (form) form.hidden = true;
    }
    document.querySelectorAll("#approvals form.approval").forEach((form) => form.remove());
    const live = document.getElementById("live-status");
    // (a page rendered ended says so already, in the same words)
    if (!live || (!deleted && document.getElementById("ended-note"))) return;
    live.hidden = false;
    live.textContent = deleted
      ? "This session was deleted: its transcript and files are gone from the server."
      : "This session has ended: fork it (duragent session fork " + document.getElementById("transcript").dataset.session + ") to go on from here.";
  }

  // What a refused post says, as words: the error page's message, not its HTML.
  async function refusal(response) {
    const page = new DOMParser().parseFromString(await response.text(), "text/html");
    const problem = page.querySelector(".problem");
    return (problem ? problem.textContent : "").trim() || response.status + " " + response.statusText;
  }

  // The form's line saying why it was not sent (role=alert: screen readers read it out).
  // `again` (send, save): with it, a link to log in again and what to do then.
  function report(form, text, again) {
    let line = form.querySelector(".problem");
    if (!line) {
      line = el("p", "problem");
      line.setAttribute("role", "alert");
      form.appendChild(line);
    }
    line.textContent = printable(text);
    if (again) {
      // in a new tab: this one keeps what was typed, to send once logged in
      const link = el("a", "", "log in again");
      link.href = document.body.dataset.login + "?next=" + encodeURIComponent(location.pathname + location.search);
      link.target = "_blank";
      link.rel = "noopener";
      line.append(" ", link, " (in a new tab), then " + again + " again: your text is kept here.");
    }
    return line;
  }

  // Post a form with fetch and stay on the page (the transcript shows what follows). What is
  // typed stays in the form until the server took it; while a post is on its way the form sends
  // nothing more (another Ctrl+Enter would be another turn, answered and paid for twice).
  function sendInPlace(form) {
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      if (form.dataset.sending) return;
      form.dataset.sending = "yes";
      // read before the buttons are disabled: a disabled button is left out of a form's data,
      // and the pressed one is the answer (allow once, deny)
      const fields = new FormData(form, event.submitter);
      const post = () => {
        fields.set("csrf", form.elements.csrf.value); // (renewed after logging in again)
        return fetch(form.action, { method: "POST", body: new URLSearchParams(fields), credentials: "same-origin" });
      };
      const buttons = form.querySelectorAll("button");
      buttons.forEach((button) => { button.disabled = true; });
      const startedBefore = turnsStarted;
      let response;
      try {
        const sent = form.elements.csrf.value;
        response = await post();
        // refused for the CSRF token of a login that ended (logged in again in another tab since):
        // nothing was done, so it is posted again with the new login's token
        if (response.status === 403 && (await renewCsrf(sent))) response = await post();
      } catch {
        report(form, "Not sent: the server did not answer (is it running?).");
        return;
      } finally {
        delete form.dataset.sending;
        buttons.forEach((button) => { button.disabled = false; });
      }
      if (response.status === 401) {
        report(form, "Not sent: your login has ended (the server restarted?):", "send");
        return;
      }
      if (!response.ok) {
        report(form, "Not sent: " + (await refusal(response)));
        return;
      }
      form.querySelector(".problem")?.remove();
      if (form.classList.contains("approval")) form.remove();
      // (not a Cancel whose answer came after the next turn started: that turn's Cancel stays)
      const anotherTurn = form.id === "cancel" && turnsStarted !== startedBefore;
      if (form.id === "retry" || (form.classList.contains("control") && !anotherTurn)) form.hidden = true;
      if (form.id === "send") {
        // (what was typed while it was on its way, the next message, stays: the sent text goes)
        const box = form.elements.content;
        const sentText = String(fields.get("content") || "");
        if (box.value.startsWith(sentText)) box.value = box.value.slice(sentText.length).replace(/^\s+/, "");
        box.focus();
        // queued behind a turn that runs now: the transcript shows it only when its turn starts
        if (turnsStarted === startedBefore) queued(form);
      }
    });
  }

  function queued(form) {
    if (form.querySelector(".queued")) return;
    const asking = document.querySelector("#approvals form.approval");
    const note = el("p", "queued hint", asking
      ? "Sent: it shows above when its turn starts, after the turn waiting for your answer above."
      : "Sent: it shows above when its turn starts (after the one running now).");
    note.setAttribute("role", "status");
    form.appendChild(note);
  }

  // The CSRF token of the browser's login now, read from this page loaded anew: null when the
  // login has ended, "" when the page has none (an error page).
  async function currentCsrf() {
    const answer = await fetch(location.pathname, { redirect: "manual", credentials: "same-origin" });
    if (answer.type === "opaqueredirect" || answer.status === 401) return null;
    const page = new DOMParser().parseFromString(await answer.text(), "text/html");
    return page.querySelector('meta[name="csrf-token"]')?.content || "";
  }

  function useCsrf(token) {
    document.querySelector('meta[name="csrf-token"]').content = token;
    document.querySelectorAll('input[name="csrf"]').forEach((input) => { input.value = token; });
  }

  // The page's forms given the current login's CSRF token; true when it is not `old` (a login
  // made in another tab after this page's ended).
  async function renewCsrf(old) {
    const token = await currentCsrf();
    if (!token || token === old) return false;
    useCsrf(token);
    return true;
  }

  // A form whose answer is a page (the memory editor: the file saved, or both texts after a
  // conflict) is posted by the browser. When the login has ended or the server is down, it would
  // show an error page, and going back loads the editor anew, without the text typed: first ask
  // whether the post can land, and keep the text where it is when it cannot.
  function checkBeforePosting(form, again) {
    form.addEventListener("submit", async (event) => {
      if (form.dataset.checked) return; // checked just now: the browser posts it
      event.preventDefault();
      if (form.dataset.checking) return;
      form.dataset.checking = "yes";
      let token;
      try {
        token = await currentCsrf();
      } catch {
        report(form, "Not saved: the server did not answer (is it running?).");
        return;
      } finally {
        delete form.dataset.checking;
      }
      if (token === null) {
        report(form, "Not saved: your login has ended (the server restarted?):", again);
        return;
      }
      if (token) useCsrf(token);
      form.dataset.checked = "yes";
      form.requestSubmit(event.submitter);
      delete form.dataset.checked;
    });
  }

  // Lists that change by themselves (sessions, processes, a process's state and output) are
  // marked `data-refresh`: every few seconds the page asks the server for itself again and swaps
  // in the fresh parts (no one is typing in them). Without this script, reload the page.
  const REFRESH_MS = 3000;
  function refreshParts(parts) {
    const live = el("p", "live-status hint");
    live.setAttribute("role", "status");
    live.hidden = true;
    parts[parts.length - 1].after(live);
    let timer = null;
    let waiting = false; // hidden tab: no asking until it shows again
    async function refresh() {
      timer = null;
      if (document.hidden) { waiting = true; return; }
      let answer;
      try {
        // The header: a tab refreshing by itself is not someone using the login (it still ends
        // after 12 hours without use).
        answer = await fetch(location.href, {
          redirect: "manual",
          credentials: "same-origin",
          headers: { "X-Duragent-Refresh": "1" },
        });
      } catch {
        live.hidden = false;
        live.textContent = "Connection to the server lost: trying again…";
        timer = setTimeout(refresh, REFRESH_MS);
        return;
      }
      if (answer.type === "opaqueredirect" || answer.status === 401) {
        live.hidden = false;
        live.textContent = "Live updates stopped (the server restarted or your login ended): ";
        const again = el("a", "", "reload the page");
        again.href = location.href;
        live.append(again, ".");
        return;
      }
      if (answer.ok) {
        const page = new DOMParser().parseFromString(await answer.text(), "text/html");
        for (const part of parts) {
          const fresh = page.getElementById(part.id);
          if (fresh && fresh.innerHTML !== part.innerHTML) part.innerHTML = fresh.innerHTML;
        }
        live.hidden = true;
      }
      timer = setTimeout(refresh, REFRESH_MS);
    }
    document.addEventListener("visibilitychange", () => {
      if (document.hidden || !waiting) return;
      waiting = false;
      refresh();
    });
    timer = setTimeout(refresh, REFRESH_MS);
  }

  document.addEventListener("DOMContentLoaded", () => {
    const list = document.getElementById("transcript");
    if (list && window.EventSource) {
      followTranscript(list);
      document.querySelectorAll("form.send, form.approval, form.retry, form.control").forEach(sendInPlace);
      const content = document.getElementById("content");
      content?.addEventListener("keydown", (event) => {
        if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) content.form.requestSubmit();
      });
    }
    document.querySelectorAll("form.editor").forEach((form) => checkBeforePosting(form, "save"));
    // (on the document: a refreshed part brings its forms anew)
    document.addEventListener("submit", (event) => {
      const form = event.target;
      if (form instanceof HTMLFormElement && form.dataset.confirm && !window.confirm(form.dataset.confirm)) {
        event.preventDefault();
      }
    });
    const parts = [...document.querySelectorAll("[data-refresh][id]")];
    if (parts.length) refreshParts(parts);
  });
})();
