// A small client for the unconv HTTP API, for any web page: copy this file as it is.
// It uses only fetch and FormData. Every failure becomes an ApiError carrying the API's
// stable `error` code and its `detail` (what was wrong and how to fix it). The API key, when
// the service needs one, is kept in sessionStorage and sent as the X-API-Key header.
//
//   import { UnconvApi, ApiError, imageUrl } from "./api.js";
//   const api = new UnconvApi("http://127.0.0.1:8000");   // "" or omitted: the page's own service
//   const answer = await api.visualise(fileInput.files[0], { network: "cnn", layer: 4, k: 9 });
//   img.src = imageUrl(answer.image_png);

const KEY_STORAGE = "unconv.apiKey";

/** An answer other than 2xx, or no answer at all (status 0). */
export class ApiError extends Error {
  constructor(status, code, detail, retryAfter = null) {
    super(detail);
    this.name = "ApiError";
    this.status = status; // HTTP status; 0 when the service could not be reached
    this.code = code; // stable code, e.g. "invalid_image", "overloaded", "unauthorized"
    this.detail = detail; // the API's explanation, meant for people
    this.retryAfter = retryAfter; // seconds to wait (Retry-After of a 503), or null
  }
}

/** A data: URL for the base64 PNGs of the JSON answers (`image_png`). */
export function imageUrl(base64Png) {
  return `data:image/png;base64,${base64Png}`;
}

export class UnconvApi {
  /**
   * @param {string} baseUrl  where the service answers; "" means the page's own location
   * @param {Storage} storage where the API key is kept (sessionStorage: forgotten with the tab)
   */
  constructor(baseUrl = "", storage = globalThis.sessionStorage) {
    // "" resolves to the page's own folder, so that the page also works behind a path prefix
    this.base = new URL(baseUrl ? baseUrl.replace(/\/?$/, "/") : "./", document.baseURI);
    this.storage = storage;
  }

  get apiKey() {
    return this.storage?.getItem(KEY_STORAGE) || null;
  }

  set apiKey(key) {
    if (key) this.storage?.setItem(KEY_STORAGE, key);
    else this.storage?.removeItem(KEY_STORAGE);
  }

  /** Every model and network, with `available` and, when not, the `reason`. */
  async models(signal) {
    return (await this.request("models", { signal })).models;
  }

  /**
   * Projection of a layer's top-k activations of one image (a File or Blob) to pixel space, by
   * `method` ("deconvnet", "guided_backprop" or "saliency"). `network`, `k` and `method` left
   * out (or null) take the service's defaults (GET /openapi.json lists them).
   * With format "json" (the default here): { image_png, activations: [{channel, y, x, value}],
   * layer_name, method, input_shape, activation_shape, ... }; with "png": a Blob.
   */
  visualise(
    image,
    { network = null, layer, k = null, channel = null, method = null, format = "json" },
    signal,
  ) {
    const form = imageForm([image], { network, layer, k, channel, method, format });
    return this.request("visualise", { body: form, signal, format });
  }

  /**
   * Which pixels of one image made a classifier's logit for `target` (omitted: the predicted
   * class), by `method`: "gradcam", "guided_gradcam", "integrated_gradients" or "occlusion"
   * (omitted: the service's default). JSON (the default here): { image_png (the map over the
   * image), target, predicted, top: [{ index, probability, logit }], attribution_shape, ... };
   * "png" or "npy": a Blob.
   */
  attribute(
    image,
    {
      network,
      method = null,
      target = null,
      layer = null,
      steps = null,
      window = null,
      stride = null,
      format = "json",
    } = {},
    signal,
  ) {
    const fields = { network, method, target, layer, steps, window, stride, format };
    return this.request("attribute", { body: imageForm([image], fields), signal, format });
  }

  /**
   * Reconstructions of one or more images; JSON: { images: [{ image_png, mean, log_var }] }.
   * `model` left out (or null) is the service's default.
   */
  reconstruct(images, { model = null, format = "json" } = {}, signal) {
    const form = imageForm([].concat(images), { model, format });
    return this.request("reconstruct", { body: form, signal, format });
  }

  /**
   * New images from a VAE. `body` is the JSON body of POST /generate, e.g.
   * { model: "vae", n: 16, seed: 7 } or { interpolate: { start, end, steps } };
   * JSON answer: { seed, images: [{ image_png, z }] }.
   */
  generate(body, signal) {
    const format = body.format ?? "json";
    return this.request("generate", { body: { ...body, format }, signal, format });
  }

  /** The feature atlases: network, dataset, layers; a stale one with why it is not served. */
  async atlases(signal) {
    return (await this.request("atlas", { signal })).atlases;
  }

  /**
   * One feature map's strongest activations across an atlas's dataset (Zeiler & Fergus's
   * Figure 2). JSON: { entries: [{ index, y, x, value, box, projection_png, patch_png,
   * image_png }], dataset, weights_sha256, layer_name, ... }; with "png": a Blob.
   */
  atlas(network, layer, channel, { format = "json", top = null } = {}, signal) {
    const query = `?format=${format}${top ? `&top=${top}` : ""}`;
    const path = `atlas/${encodeURIComponent(network)}/${layer}/${channel}${query}`;
    return this.request(path, { signal, format });
  }

  /** One call: a JSON answer parsed, an image answer as a Blob, anything else an ApiError. */
  async request(path, { body = null, signal, format = "json" } = {}) {
    const headers = {};
    if (this.apiKey) headers["X-API-Key"] = this.apiKey;
    if (body !== null && !(body instanceof FormData)) {
      headers["Content-Type"] = "application/json";
      body = JSON.stringify(body);
    }
    const method = body === null ? "GET" : "POST";
    let response;
    try {
      response = await fetch(new URL(path, this.base), { method, headers, body, signal });
    } catch (err) {
      if (err.name === "AbortError") throw err; // the caller cancelled: not an error to show
      throw new ApiError(0, "unreachable", `the service at ${this.base} did not answer`);
    }
    if (!response.ok) throw await errorOf(response);
    return format === "json" ? response.json() : response.blob();
  }
}

function imageForm(images, fields) {
  const form = new FormData();
  for (const image of images) form.append("file", image, image.name || "image.png");
  for (const [name, value] of Object.entries(fields)) {
    if (value !== null && value !== undefined && value !== "") form.append(name, String(value));
  }
  return form;
}

async function errorOf(response) {
  let code = `http_${response.status}`;
  let detail = `${response.status} ${response.statusText}`.trim();
  try {
    const body = await response.json(); // the service always answers {"error", "detail"}
    code = body.error ?? code;
    detail = body.detail ?? detail;
  } catch {
    // not JSON: a proxy in between answered; keep the status line
  }
  const retryAfter = Number.parseFloat(response.headers.get("Retry-After"));
  return new ApiError(
    response.status,
    code,
    detail,
    Number.isFinite(retryAfter) ? retryAfter : null,
  );
}
