// localslack's web chat page. Plain JavaScript, no build step.
//
// Reads through /web/* (JSON views, never rate-limited), writes through localslack's own
// Slack Web API with the chosen person's token, and stays live through /web/stream
// (Server-Sent Events). Chat text is only ever put into the page as text nodes
// (textContent / createTextNode), never as HTML: nothing typed into the chat can run.
"use strict";

const EMOJI = {
  "+1": "👍", thumbsup: "👍", "-1": "👎", white_check_mark: "✅", heavy_check_mark: "✔️",
  x: "❌", lock: "🔒", unlock: "🔓", pushpin: "📌", raising_hand: "🙋", notebook: "📓",
  warning: "⚠️", octagonal_sign: "🛑", zzz: "💤", eyes: "👀", tada: "🎉", rocket: "🚀",
  hourglass: "⌛", hourglass_flowing_sand: "⏳", white_circle: "⚪", black_circle: "⚫",
  large_green_circle: "🟢", red_circle: "🔴", large_blue_circle: "🔵",
  large_yellow_circle: "🟡", arrows_counterclockwise: "🔄", stopwatch: "⏱️",
  question: "❓", information_source: "ℹ️", no_entry: "⛔", construction: "🚧",
  rewind: "⏪", fast_forward: "⏩", arrow_right: "➡️", fire: "🔥", bell: "🔔",
  clipboard: "📋", gear: "⚙️", robot_face: "🤖", checkered_flag: "🏁",
  double_vertical_bar: "⏸️", pause_button: "⏸️", wave: "👋", heavy_minus_sign: "➖",
  leftwards_arrow_with_hook: "↩️", scroll: "📜", mag: "🔍", bust_in_silhouette: "👤",
  raised_hand: "✋", point_right: "👉", exclamation: "❗", heavy_exclamation_mark: "❗",
  grey_exclamation: "❕", grey_question: "❔", no_entry_sign: "🚫", key: "🔑", memo: "📝",
  package: "📦", bar_chart: "📊", speech_balloon: "💬", arrow_forward: "▶️",
  arrows_clockwise: "🔃", large_orange_circle: "🟠", ballot_box_with_check: "☑️",
  hammer_and_wrench: "🛠️", calendar: "📅", busts_in_silhouette: "👥", sparkles: "✨",
  skull: "💀", ok_hand: "👌", thinking_face: "🤔", clock1: "🕐", timer_clock: "⏲️",
};
const QUICK_REACTIONS = ["+1", "white_check_mark", "eyes"];

const state = {
  ws: null, // /web/workspace
  names: new Map(), // user id -> display name
  channel: null, // current channel id
  thread: null, // open thread's parent ts
  messages: [], // current channel's messages (replies included), oldest first
  seen: new Set(), // ts already shown (to announce only new ones)
  loaded: false,
};

const $ = (id) => document.getElementById(id);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(typeof child === "string" ? document.createTextNode(child) : child);
  }
  return node;
}

// ---- mrkdwn -> DOM (text nodes only) -----------------------------------------------------

function decodeEntities(text) {
  // Slack escapes these three in message text; anything else stays as typed.
  return text.replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&amp;/g, "&");
}

function emoji(name) {
  return EMOJI[name] || `:${name}:`;
}

const INLINE = /<([^<>\n]+)>|`([^`\n]+)`|(?<![\w*])\*([^*\n]+)\*(?![\w*])|(?<![\w])_([^_\n]+)_(?![\w])|(?<![\w~])~([^~\n]+)~(?![\w~])|:([a-z0-9_+-]+):/g;

function inline(text) {
  const out = [];
  let last = 0;
  for (const m of text.matchAll(INLINE)) {
    if (m.index > last) out.push(document.createTextNode(decodeEntities(text.slice(last, m.index))));
    last = m.index + m[0].length;
    if (m[1] !== undefined) out.push(slackLink(m[1]));
    else if (m[2] !== undefined) out.push(el("code", { text: decodeEntities(m[2]) }));
    else if (m[3] !== undefined) out.push(el("strong", {}, ...inline(m[3])));
    else if (m[4] !== undefined) out.push(el("em", {}, ...inline(m[4])));
    else if (m[5] !== undefined) out.push(el("s", {}, ...inline(m[5])));
    else out.push(document.createTextNode(emoji(m[6])));
  }
  if (last < text.length) out.push(document.createTextNode(decodeEntities(text.slice(last))));
  return out;
}

function slackLink(inside) {
  const [target, label] = inside.split("|", 2);
  if (target.startsWith("@")) return el("span", { class: "mention", text: "@" + (state.names.get(target.slice(1)) || label || target.slice(1)) });
  if (target.startsWith("#")) return el("span", { class: "mention", text: "#" + (label || channelName(target.slice(1))) });
  if (target.startsWith("!")) return el("span", { class: "mention", text: "@" + (label || target.slice(1).split("^")[0]) });
  if (/^(https?:|mailto:)/i.test(target)) {
    return el("a", { href: target, rel: "noopener noreferrer", target: "_blank", text: decodeEntities(label || target) });
  }
  return document.createTextNode(decodeEntities("<" + inside + ">"));
}

function mrkdwn(text) {
  // ``` blocks are preformatted (the progress grid), the rest is inline formatting.
  const box = el("div", { class: "mrkdwn" });
  const parts = String(text || "").split("```");
  const last = parts.length - 1;
  parts.forEach((part, i) => {
    if (i % 2 === 1 && i < last) {
      box.append(el("pre", { text: decodeEntities(part.replace(/^\n/, "").replace(/\n$/, "")) }));
      return;
    }
    let text = i % 2 === 1 ? "```" + part : part;
    // A block stands on its own lines: the line breaks around it are not text.
    if (i > 0 && i % 2 === 0) text = text.replace(/^\n/, "");
    if (i < last && i % 2 === 0) text = text.replace(/\n$/, "");
    box.append(...inline(text));
  });
  return box;
}

function textObject(obj) {
  if (!obj) return null;
  if (obj.type === "mrkdwn") return mrkdwn(obj.text);
  return el("div", { class: "plain", text: String(obj.text || "") });
}

// ---- Block Kit -----------------------------------------------------------------------------

function blocks(msg, list) {
  const box = el("div", { class: "blocks" });
  for (const block of list) {
    const node = blockNode(msg, block);
    if (node) box.append(node);
  }
  return box.childElementCount ? box : null;
}

function blockNode(msg, block) {
  switch (block.type) {
    case "section": {
      const node = el("div", { class: "section" }, textObject(block.text));
      if (Array.isArray(block.fields)) node.append(el("div", { class: "fields" }, ...block.fields.map(textObject)));
      if (block.accessory && block.accessory.type === "button") node.append(button(msg, block.accessory));
      return node;
    }
    case "context":
      return el("div", { class: "context" }, ...(block.elements || []).map((e) =>
        e.type === "image" ? el("span", { text: e.alt_text || "" }) : textObject(e)));
    case "divider":
      return el("hr");
    case "header":
      return el("h3", { class: "header", text: (block.text && block.text.text) || "" });
    case "actions":
      return el("div", { class: "actions", role: "group", "aria-label": "Actions" },
        ...(block.elements || []).filter((e) => e.type === "button").map((e) => button(msg, e)));
    default:
      return null;
  }
}

function button(msg, element) {
  const label = (element.text && element.text.text) || element.action_id;
  const style = element.style === "primary" || element.style === "danger" ? element.style : "default";
  return el("button", {
    type: "button",
    class: `btn ${style}`,
    "data-action-id": element.action_id,
    "data-value": element.value,
    text: label,
    onclick: (event) => click(event.currentTarget, msg, element),
  });
}

// ---- messages ----------------------------------------------------------------------------

function author(msg) {
  if (msg.bot_profile && msg.bot_profile.name) return msg.bot_profile.name;
  return state.names.get(msg.user) || msg.user;
}

function clock(ts) {
  const date = new Date(parseFloat(ts) * 1000);
  return date.toISOString().slice(11, 19) + "Z";
}

function messageNode(msg, inThread) {
  const meta = el("div", { class: "meta" },
    el("span", { class: "author", text: author(msg) }),
    msg.bot_id ? el("span", { class: "tag", text: "APP" }) : null,
    el("time", { datetime: new Date(parseFloat(msg.ts) * 1000).toISOString(), text: clock(msg.ts) }),
    msg.edited ? el("span", { class: "muted", text: "(edited)" }) : null,
    msg.pin ? el("span", { class: "pinned", text: `📌 pinned by ${state.names.get(msg.pin.created_by) || msg.pin.created_by}` }) : null,
  );
  const body = (Array.isArray(msg.blocks) && blocks(msg, msg.blocks)) || mrkdwn(msg.text);
  const node = el("li", { class: "message" + (msg.pin ? " is-pinned" : ""), "data-ts": msg.ts }, meta, body, reactions(msg));
  if (!inThread && msg.reply_count) {
    const label = `${msg.reply_count} ${msg.reply_count === 1 ? "reply" : "replies"}`;
    node.append(el("button", { type: "button", class: "link replies", "aria-label": `${label}: open the thread`, text: label, onclick: () => openThread(msg.ts) }));
  } else if (!inThread && !msg.subtype) {
    node.append(el("button", { type: "button", class: "link reply", text: "Reply in thread", onclick: () => openThread(msg.ts) }));
  }
  return node;
}

function reactions(msg) {
  const me = $("person").value;
  const box = el("div", { class: "reactions" });
  for (const r of msg.reactions || []) {
    const mine = (r.users || []).includes(me);
    const who = (r.users || []).map((u) => state.names.get(u) || u).join(", ");
    box.append(el("button", {
      type: "button", class: "reaction" + (mine ? " mine" : ""), "aria-pressed": String(mine),
      "data-reaction": r.name, title: `${who} reacted with :${r.name}:`,
      "aria-label": `${emoji(r.name)} ${r.count}: ${who}. ${mine ? "Remove" : "Add"} yours`,
      text: `${emoji(r.name)} ${r.count}`,
      onclick: () => react(msg, r.name, mine),
    }));
  }
  for (const name of QUICK_REACTIONS) {
    if ((msg.reactions || []).some((r) => r.name === name)) continue;
    box.append(el("button", {
      type: "button", class: "reaction add", "data-add-reaction": name,
      "aria-label": `React with ${emoji(name)} (:${name}:)`, text: `+${emoji(name)}`,
      onclick: () => react(msg, name, false),
    }));
  }
  return box;
}

function renderList(list, messages, inThread) {
  // Replace only what changed, so focus and scrolling survive live updates.
  const stick = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
  const existing = new Map([...list.children].map((li) => [li.dataset.ts, li]));
  const focused = document.activeElement && list.contains(document.activeElement) ? focusKey(document.activeElement) : null;
  let previous = null;
  for (const msg of messages) {
    const key = JSON.stringify(msg) + $("person").value;
    let node = existing.get(msg.ts);
    if (!node || node.dataset.key !== key) {
      const fresh = messageNode(msg, inThread);
      fresh.dataset.key = key;
      if (node) node.replaceWith(fresh);
      node = fresh;
    }
    existing.delete(msg.ts);
    if (node.previousElementSibling !== previous || node.parentNode !== list) {
      if (previous) previous.after(node);
      else list.prepend(node);
    }
    previous = node;
  }
  for (const gone of existing.values()) gone.remove();
  if (focused) restoreFocus(list, focused);
  if (stick) list.scrollTop = list.scrollHeight;
}

function focusKey(node) {
  const li = node.closest("li.message");
  if (!li) return null;
  const attrs = ["data-action-id", "data-reaction", "data-add-reaction"].find((a) => node.hasAttribute(a));
  return { ts: li.dataset.ts, selector: attrs ? `[${attrs}="${CSS.escape(node.getAttribute(attrs))}"]` : "button" };
}

function restoreFocus(list, key) {
  const li = list.querySelector(`li.message[data-ts="${CSS.escape(key.ts)}"]`);
  const target = li && li.querySelector(key.selector);
  if (target && document.activeElement !== target) target.focus({ preventScroll: true });
}

function topLevel(messages) {
  return messages.filter((m) => !m.thread_ts || m.thread_ts === m.ts || m.subtype === "thread_broadcast");
}

function render() {
  renderList($("messages"), topLevel(state.messages), false);
  if (state.thread) {
    const thread = state.messages.filter((m) => m.ts === state.thread || m.thread_ts === state.thread);
    renderList($("thread-messages"), thread, true);
  }
  announce();
}

function announce() {
  const fresh = state.messages.filter((m) => !state.seen.has(m.ts));
  for (const m of fresh) state.seen.add(m.ts);
  if (!state.loaded) { state.loaded = true; return; }
  const last = fresh[fresh.length - 1];
  if (last) {
    const where = last.thread_ts && last.thread_ts !== last.ts ? " in a thread" : "";
    $("announcer").textContent = `${author(last)}${where}: ${String(last.text || "").slice(0, 200)}`;
  }
}

// ---- side panel: replicas and claims -------------------------------------------------------

async function refreshFleet() {
  const fleet = await getJSON("/web/fleet");
  const apps = $("apps");
  apps.replaceChildren();
  for (const app of fleet.apps) {
    const up = app.connections > 0;
    const replicas = fleet.replicas.filter((r) => r.app_id === app.app_id);
    const item = el("li", { class: "app", "data-app": app.name },
      el("span", { class: "dot " + (up ? "up" : "down"), "aria-hidden": "true" }),
      el("strong", { text: app.name }), " ",
      el("span", { class: "muted", text: up ? `connected (${app.connections} socket${app.connections === 1 ? "" : "s"})` : "not connected" }));
    if (replicas.length) {
      item.append(el("ul", { class: "replicas" }, ...replicas.map((r) =>
        el("li", { "data-replica": r.name }, el("strong", { text: r.name }), ` · version ${r.version} · ${r.state}`))));
    }
    apps.append(item);
  }
  const claims = $("claims");
  claims.replaceChildren();
  if (!fleet.claims.length) claims.append(el("li", { class: "muted", text: "Nothing is claimed." }));
  for (const c of fleet.claims) {
    const holder = c.replica
      ? el("span", {}, "📌 ", el("strong", { class: "holder", text: c.replica }), ` holds (generation ${c.generation}${c.lease_left === null ? "" : `, lease ${Math.max(0, Math.round(c.lease_left))} s left`})`)
      : el("span", {}, `📌 pinned by ${state.names.get(c.pinned_by) || c.pinned_by}, no claim record yet`);
    claims.append(el("li", { "data-ts": c.ts, "data-replica": c.replica || "" }, holder,
      el("button", { type: "button", class: "link", "aria-label": `Open the thread of: ${c.text}`, text: `“${c.text}”`, onclick: () => { switchChannel(c.channel); openThread(c.ts); } })));
  }
}

// ---- talking to localslack -----------------------------------------------------------------

async function getJSON(path) {
  const response = await fetch(path, { cache: "no-store" });
  if (!response.ok) throw new Error(`${path}: HTTP ${response.status}`);
  return response.json();
}

async function api(method, args) {
  // Slack's Web API, as the person chosen at the top of the page.
  const person = state.ws.people.find((p) => p.id === $("person").value);
  const response = await fetch(`/api/${method}`, {
    method: "POST",
    headers: { "Content-Type": "application/json; charset=utf-8", Authorization: `Bearer ${person.token}` },
    body: JSON.stringify(args),
  });
  const body = await response.json();
  if (!body.ok) {
    const wait = response.headers.get("Retry-After");
    throw new Error(`${method}: ${body.error}${wait ? ` (retry after ${wait} s)` : ""}`);
  }
  return body;
}

function showError(error) {
  $("error").textContent = error ? String(error.message || error) : "";
}

async function attempt(fn) {
  try {
    showError(null);
    await fn();
  } catch (error) {
    showError(error);
  }
}

function send(textarea, thread) {
  const text = textarea.value.trim();
  if (!text) return;
  attempt(async () => {
    const args = { channel: state.channel, text };
    if (thread) args.thread_ts = thread;
    await api("chat.postMessage", args);
    textarea.value = "";
    await refreshChannel();
  });
}

function react(msg, name, remove) {
  attempt(async () => {
    await api(remove ? "reactions.remove" : "reactions.add", { channel: state.channel, timestamp: msg.ts, name });
    await refreshChannel();
  });
}

function click(node, msg, element) {
  node.disabled = true;
  attempt(async () => {
    try {
      const args = { channel: state.channel, ts: msg.ts, action_id: element.action_id };
      if (element.value !== undefined) args.value = element.value;
      await api("localslack.click", args);
    } finally {
      node.disabled = false;
    }
  });
}

async function refreshChannel() {
  if (!state.channel) return;
  const view = await getJSON(`/web/channel?channel=${encodeURIComponent(state.channel)}`);
  if (view.channel !== state.channel) return;
  state.messages = view.messages;
  $("older").textContent = view.older ? `${view.older} older messages are not shown.` : "";
  render();
}

function debounce(fn, ms) {
  let timer = null;
  return () => {
    if (timer) return;
    timer = setTimeout(() => { timer = null; fn().catch(showError); }, ms);
  };
}
const soonChannel = debounce(refreshChannel, 30);
const soonFleet = debounce(refreshFleet, 200);

function listen() {
  const source = new EventSource("/web/stream");
  source.onopen = () => {
    $("live").textContent = "live";
    soonChannel();
    soonFleet();
  };
  source.onerror = () => {
    $("live").textContent = "reconnecting…";
  };
  source.onmessage = (event) => {
    const change = JSON.parse(event.data);
    if (change.type === "resync" || change.channel === state.channel) soonChannel();
    soonFleet();
  };
}

// ---- navigation ----------------------------------------------------------------------------

function channelName(id) {
  const channel = state.ws && state.ws.channels.find((c) => c.id === id);
  return channel ? channel.name : id;
}

function switchChannel(id) {
  if (state.channel === id) return;
  state.channel = id;
  state.messages = [];
  state.seen = new Set();
  state.loaded = false;
  closeThread();
  const channel = state.ws.channels.find((c) => c.id === id);
  $("channel-title").textContent = `#${channel.name}`;
  $("channel-topic").textContent = channel.topic || channel.purpose || "";
  $("composer-label").textContent = `Message #${channel.name}`;
  $("messages").setAttribute("aria-label", `Messages in #${channel.name}`);
  $("messages").replaceChildren();
  for (const b of document.querySelectorAll("#channels button")) b.setAttribute("aria-current", String(b.dataset.channel === id));
  history.replaceState(null, "", `#${channel.name}`);
  soonChannel();
}

function openThread(ts) {
  state.thread = ts;
  $("thread").hidden = false;
  $("thread-messages").replaceChildren();
  render();
  $("reply-text").focus();
}

function closeThread() {
  state.thread = null;
  $("thread").hidden = true;
}

function composer(form, textarea, thread) {
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    send(textarea, thread());
  });
  textarea.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      send(textarea, thread());
    }
  });
}

async function start() {
  state.ws = await getJSON("/web/workspace");
  document.title = `${state.ws.team.name} · localslack`;
  $("team").textContent = state.ws.team.name;
  for (const p of state.ws.people) state.names.set(p.id, p.real_name || p.name);
  for (const b of state.ws.bots) state.names.set(b.id, b.name);
  const person = $("person");
  for (const p of state.ws.people) person.append(el("option", { value: p.id, text: `${p.real_name || p.name} (@${p.name})` }));
  person.addEventListener("change", () => render());
  const channels = $("channels");
  for (const c of state.ws.channels) {
    channels.append(el("li", {}, el("button", { type: "button", class: "link", "data-channel": c.id, text: `#${c.name}`, onclick: () => switchChannel(c.id) })));
  }
  composer($("composer"), $("composer-text"), () => null);
  composer($("reply-composer"), $("reply-text"), () => state.thread);
  $("thread-close").addEventListener("click", closeThread);
  document.addEventListener("keydown", (event) => { if (event.key === "Escape" && state.thread) closeThread(); });
  $("roll-call").addEventListener("click", () => attempt(() => api("chat.postMessage", { channel: state.channel, text: "troupe roll call" })));
  const wanted = state.ws.channels.find((c) => `#${c.name}` === location.hash) || state.ws.channels[0];
  if (wanted) switchChannel(wanted.id);
  listen();
  setInterval(() => soonFleet(), 2000); // socket connections change without a chat event
}

start().catch(showError);
