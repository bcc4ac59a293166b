// What the panels share: error messages, loading states, stale answers, samples, small DOM help.

import { ApiError } from "./api.js";

export const $ = (selector, root = document) => root.querySelector(selector);

/** An element with attributes (or properties, for those that are not strings) and children. */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (typeof value === "string" || typeof value === "number") node.setAttribute(name, value);
    else node[name] = value;
  }
  node.append(...children.filter((child) => child !== null && child !== undefined));
  return node;
}

export function debounce(fn, ms) {
  let timer;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
}

/** At most one call per `ms` while calls keep coming, and always one after the last. */
export function throttle(fn, ms) {
  let last = 0;
  let timer;
  return (...args) => {
    clearTimeout(timer);
    const wait = last + ms - performance.now();
    if (wait <= 0) {
      last = performance.now();
      fn(...args);
    } else {
      timer = setTimeout(() => {
        last = performance.now();
        fn(...args);
      }, wait);
    }
  };
}

/** One request at a time per purpose: starting a new one aborts the previous, whose answer,
 *  were it to arrive anyway, is known to be stale by `current()`. */
export class Latest {
  #controller = null;

  start() {
    this.#controller?.abort();
    const controller = new AbortController();
    this.#controller = controller;
    return { signal: controller.signal, current: () => this.#controller === controller };
  }
}

const isAbort = (err) => err?.name === "AbortError";

/** Marks `target` busy (aria-busy, a spinner in CSS and the top bar) while `promise` runs. */
export async function busy(target, promise) {
  const bar = $("#progress");
  target.setAttribute("aria-busy", "true");
  target.dataset.pending = String(Number(target.dataset.pending || 0) + 1);
  bar.dataset.pending = String(Number(bar.dataset.pending || 0) + 1);
  try {
    return await promise;
  } finally {
    target.dataset.pending = String(Number(target.dataset.pending) - 1);
    bar.dataset.pending = String(Number(bar.dataset.pending) - 1);
    if (target.dataset.pending === "0") target.removeAttribute("aria-busy");
  }
}

/** What every request of a panel goes through, written once: a new request aborts the one
 *  before it, `target` is busy while it runs, an answer that a newer request made stale is
 *  dropped, and a failure is shown under `source` in the page's aria-live messages (with Retry
 *  where it helps); a success clears that source's old message. Without a `source` a failure
 *  is left to `failed` alone. */
export class PanelRequest {
  #latest = new Latest();

  constructor(messages, { source = null, target = null } = {}) {
    this.messages = messages;
    this.source = source;
    this.target = target;
  }

  /** Runs `send(signal)`; `shown(answer)` or `failed(err)` when it is still the newest.
   *  Resolves to false when a newer request (or `cancel`) made this one stale, else true. */
  async run(send, { shown = null, failed = null, retry = null, target = this.target } = {}) {
    const { signal, current } = this.#latest.start();
    let answer;
    try {
      answer = await busy(target, send(signal));
    } catch (err) {
      if (!current()) return false;
      failed?.(err);
      if (this.source) this.messages.error(this.source, err, retry);
      return true;
    }
    if (!current()) return false;
    if (this.source) this.messages.ok(this.source);
    shown?.(answer);
    return true;
  }

  /** Drops the answer still on its way, if any. */
  cancel() {
    this.#latest.start();
  }
}

/** Fills a model <select> from /models: unavailable ones disabled, and why in `note`; keeps
 *  the chosen model while it is usable, else the first usable one that `prefer` likes, else
 *  the first usable one. `describe(model)` is an available model's option text. */
export function fillModelSelect(select, note, models, describe, prefer = () => false) {
  const chosen = select.value;
  select.replaceChildren(
    ...models.map((m) =>
      el(
        "option",
        { value: m.name, disabled: !m.available },
        m.available ? describe(m) : `${m.name}: unavailable`,
      ),
    ),
  );
  unavailableNote(note, models);
  const usable = models.filter((m) => m.available);
  const preferred = usable.find((m) => m.name === chosen) ?? usable.find(prefer) ?? usable[0];
  if (preferred) select.value = preferred.name;
}

/** The first value of `key` found anywhere inside a JSON schema (through anyOf, items, ...). */
export function schemaValue(schema, key) {
  if (schema === null || typeof schema !== "object") return undefined;
  if (key in schema) return schema[key];
  for (const value of Object.values(schema)) {
    const found = schemaValue(value, key);
    if (found !== undefined) return found;
  }
  return undefined;
}

/** Errors for people: the API's `detail` in the aria-live region, with Retry where it helps;
 *  a 401 opens the API key form, and what failed runs again once a key is given. */
export class Messages {
  constructor(api) {
    this.api = api;
    this.region = $("#messages");
    this.waitingForKey = new Map(); // source -> retry
    this.keyForm = $("#key-form");
    this.keyForm.addEventListener("submit", (event) => this.#useKey(event));
  }

  /** Shows `err` unless it is a cancelled request; `retry` runs the failed action again. */
  error(source, err, retry = null) {
    if (isAbort(err)) return;
    if (!(err instanceof ApiError)) {
      console.warn(err); // a bug in the page: still tell the person something went wrong
      err = new ApiError(0, "page_error", `the page failed: ${err.message}`);
    }
    if (err.status === 401) return this.#askForKey(source, err, retry);
    // still loading: the page tries again by itself after the time the service asks for
    const again = retry && err.code === "not_ready" && err.retryAfter !== null;
    if (again) setTimeout(retry, err.retryAfter * 1000);
    const wait =
      err.retryAfter === null
        ? ""
        : again
          ? ` Trying again in ${err.retryAfter} s.`
          : ` Try again in ${err.retryAfter} s.`;
    const text = `${err.detail}.${wait}`.replace(/\.\./, ".");
    const message = el(
      "div",
      { class: "message", "data-source": source, "data-code": err.code },
      el("p", {}, el("strong", {}, `${labelOf(err)}: `), text),
    );
    const actions = el("div", { class: "actions" });
    if (retry && !again && RETRYABLE.has(err.status)) {
      actions.append(
        el(
          "button",
          {
            type: "button",
            onclick: () => {
              message.remove();
              retry();
            },
          },
          "Retry",
        ),
      );
    }
    actions.append(el("button", { type: "button", onclick: () => message.remove() }, "Dismiss"));
    message.append(actions);
    this.ok(source); // one message per source: the newest
    this.region.append(message);
  }

  /** The source's last request worked: its old message no longer applies. */
  ok(source) {
    for (const node of this.region.querySelectorAll(`[data-source="${source}"]`)) node.remove();
  }

  #askForKey(source, err, retry) {
    if (retry) this.waitingForKey.set(source, retry);
    $("#key-why").textContent = `This service needs an API key (it answered: ${err.detail}).`;
    if (this.keyForm.hidden) {
      this.keyForm.hidden = false;
      $("#key-input").focus();
    }
  }

  #useKey(event) {
    event.preventDefault();
    const input = $("#key-input");
    if (!input.value.trim()) return input.focus();
    this.api.apiKey = input.value.trim();
    input.value = "";
    this.keyForm.hidden = true;
    const retries = [...this.waitingForKey.values()];
    this.waitingForKey.clear();
    for (const retry of retries) retry();
  }
}

const RETRYABLE = new Set([0, 503, 504]); // the same request may work later

function labelOf(err) {
  if (err.status === 0) return "No answer";
  return `Error ${err.status} (${err.code})`;
}

/** Buttons with the bundled sample images; `pick(blob, sample)` gets the chosen one. */
export function sampleButtons(container, samples, pick) {
  for (const sample of samples) {
    const button = el(
      "button",
      { type: "button", class: "sample", "aria-label": sample.label },
      el("img", { src: sample.src, alt: "", width: 40, height: 40 }),
    );
    button.addEventListener("click", async () => {
      const response = await fetch(sample.src);
      const blob = await response.blob();
      pick(new File([blob], sample.src.split("/").pop(), { type: blob.type }), sample);
    });
    container.append(button);
  }
}

/** Which of `models` are unavailable, and why, folded into a <details> inside `node`. */
export function unavailableNote(node, models) {
  const missing = models.filter((m) => !m.available);
  node.replaceChildren();
  if (!missing.length) return;
  const names = missing.map((m) => m.name).join(", ");
  node.append(
    el(
      "details",
      {},
      el("summary", {}, `Unavailable: ${names}`),
      ...missing.map((m) => el("p", {}, `${m.name}: ${m.reason}`)),
    ),
  );
}

export const DIGIT_SAMPLES = [0, 2, 3, 4, 7, 9].map((digit) => ({
  src: `static/samples/digit-${digit}.png`,
  label: `Held-out handwritten ${digit}`,
}));
export const SCENE_SAMPLE = {
  src: "static/samples/scene.jpg",
  label: "Drawn scene: a house and a tree",
};

/** "3: MaxPool2d(kernel_size=2, ...)" -> "3: MaxPool2d"; a convolution keeps its channels. */
export function shortName(name) {
  const conv = name.match(/^(\d+: \w+)\((\d+), (\d+)/);
  return conv ? `${conv[1]} ${conv[2]}→${conv[3]}` : name.replace(/\(.*$/s, "");
}
