// Type declarations of api.js, for front-ends written in TypeScript: copy both files.
// `make lint` checks them with `tsc --noEmit` (tests/service/api/static/api-usage.ts uses them).

/** The JSON answers' base64 PNGs: pass them to imageUrl for an <img> src. */
export type Base64Png = string;
export type ImageFormat = "png" | "json" | "npy";
export type VisualiseMethod = "deconvnet" | "guided_backprop" | "saliency";
export type AttributeMethod = "gradcam" | "guided_gradcam" | "integrated_gradients" | "occlusion";

/** An answer other than 2xx, or no answer at all (status 0). */
export declare class ApiError extends Error {
  constructor(status: number, code: string, detail: string, retryAfter?: number | null);
  /** HTTP status; 0 when the service could not be reached. */
  status: number;
  /** Stable code, e.g. "invalid_image", "overloaded", "unauthorized", "unreachable". */
  code: string;
  /** The API's explanation, meant for people. */
  detail: string;
  /** Seconds to wait (Retry-After of a 503), or null. */
  retryAfter: number | null;
}

/** A data: URL for the base64 PNGs of the JSON answers (`image_png`). */
export declare function imageUrl(base64Png: Base64Png): string;

export interface ModelInfo {
  name: string;
  kind: "autoencoder" | "vae" | "classifier" | "network" | "unknown";
  endpoints: string[];
  available: boolean;
  reason?: string | null;
  input_shape?: number[] | null;
  latent_size?: number | null;
  layers?: string[] | null;
  labels?: string[] | null;
  /** The default `temperature` of /generate's prior samples; VAEs only. */
  temperature?: number | null;
  /** The default `pixel_temperature` of /generate's images; VAEs only. */
  pixel_temperature?: number | null;
  assumption?: string | null;
  /** /attribute's defaults and ranges; classifiers only. */
  attribution?: AttributionDefaults | null;
  metadata: Record<string, unknown>;
}

export interface AttributionDefaults {
  layer: number;
  layers: number;
  classes: number;
  steps: number;
  window: number;
  stride: number;
  min_stride: number;
}

export interface AttributeOptions {
  network?: string;
  method?: AttributeMethod | null;
  target?: number | null;
  layer?: number | null;
  steps?: number | null;
  window?: number | null;
  stride?: number | null;
  format?: ImageFormat;
}

export interface RankedClass {
  index: number;
  probability: number;
  logit: number;
}

export interface AttributeResponse {
  network: string;
  method: AttributeMethod;
  target: number;
  predicted: number;
  /** The five most probable classes, most first. */
  top: RankedClass[];
  layer?: number | null;
  layer_name?: string | null;
  steps?: number | null;
  window?: number | null;
  stride?: number | null;
  input_shape: number[];
  attribution_shape: number[];
  /** The map over the input: warm where it is positive, cool where negative. */
  image_png: Base64Png;
}

export interface VisualiseOptions {
  network?: string | null;
  layer: number;
  k?: number | null;
  channel?: number | null;
  method?: VisualiseMethod | null;
  format?: ImageFormat;
}

export interface KeptActivation {
  channel: number;
  y: number;
  x: number;
  value: number;
}

export interface VisualiseResponse {
  network: string;
  layer: number;
  layer_name: string;
  method?: VisualiseMethod;
  k: number;
  channel: number | null;
  input_shape: number[];
  activation_shape: number[];
  image_png: Base64Png;
  activations: KeptActivation[];
}

export interface ReconstructOptions {
  model?: string | null;
  format?: "png" | "json";
}

export interface ReconstructResponse {
  model: string;
  kind: string;
  assumption: string;
  images: { image_png: Base64Png; mean?: number[] | null; log_var?: number[] | null }[];
}

/** The JSON body of POST /generate; absent fields take the service's defaults. */
export interface GenerateRequest {
  model?: string;
  n?: number;
  seed?: number | null;
  mean?: number[][] | null;
  log_var?: number[][] | null;
  interpolate?: { start: number[]; end: number[]; steps?: number } | null;
  label?: number | null;
  labels?: number[] | null;
  temperature?: number | null;
  /** Below 1 sharper strokes, 1 the decoder's plain mean; binomial or binary VAEs only. */
  pixel_temperature?: number | null;
  format?: ImageFormat;
}

export interface GenerateResponse {
  model: string;
  seed: number;
  images: { image_png: Base64Png; z: number[] }[];
}

export interface AtlasLayer {
  layer: number;
  name: string;
  feature_maps: number;
  shape: number[];
}

export interface AtlasDataset {
  name: string;
  split?: string | null;
  count: number;
}

/** One atlas beside the checkpoints; only a served one answers its feature maps. */
export interface AtlasInfo {
  network: string;
  served: boolean;
  reason?: string | null;
  dataset?: AtlasDataset | null;
  weights_sha256?: string | null;
  top?: number | null;
  layers: AtlasLayer[];
  created?: string | null;
}

/** One of a feature map's strongest activations across the dataset. */
export interface AtlasEntry {
  index: number;
  name?: string | null;
  y: number;
  x: number;
  value: number;
  /** The receptive field: top, left, bottom, right (exclusive), in input pixels. */
  box: number[];
  projection_png: Base64Png;
  patch_png: Base64Png;
  image_png: Base64Png;
}

export interface AtlasMapResponse {
  network: string;
  layer: number;
  layer_name: string;
  channel: number;
  dataset: AtlasDataset;
  weights_sha256: string;
  /** Strongest first. */
  entries: AtlasEntry[];
}

type Answer<F, Json> = F extends "json" ? Json : Blob;

export declare class UnconvApi {
  /**
   * @param baseUrl where the service answers; "" means the page's own location
   * @param storage where the API key is kept (sessionStorage: forgotten with the tab)
   */
  constructor(baseUrl?: string, storage?: Storage);
  base: URL;
  storage: Storage | undefined;
  /** The X-API-Key sent with every request; null when none is kept. */
  get apiKey(): string | null;
  set apiKey(key: string | null);
  /** Every model and network, with `available` and, when not, the `reason`. */
  models(signal?: AbortSignal): Promise<ModelInfo[]>;
  /** JSON unless `format` says "png" or "npy" (then a Blob). */
  visualise<O extends VisualiseOptions>(
    image: Blob,
    options: O,
    signal?: AbortSignal,
  ): Promise<Answer<O["format"] extends ImageFormat ? O["format"] : "json", VisualiseResponse>>;
  /** JSON unless `format` says "png" or "npy" (then a Blob). */
  attribute<O extends AttributeOptions>(
    image: Blob,
    options?: O,
    signal?: AbortSignal,
  ): Promise<Answer<O["format"] extends ImageFormat ? O["format"] : "json", AttributeResponse>>;
  reconstruct<O extends ReconstructOptions>(
    images: Blob | Blob[],
    options?: O,
    signal?: AbortSignal,
  ): Promise<Answer<O["format"] extends ImageFormat ? O["format"] : "json", ReconstructResponse>>;
  generate<B extends GenerateRequest>(
    body: B,
    signal?: AbortSignal,
  ): Promise<Answer<B["format"] extends ImageFormat ? B["format"] : "json", GenerateResponse>>;
  /** The feature atlases, with `served` and, when not, the `reason`. */
  atlases(signal?: AbortSignal): Promise<AtlasInfo[]>;
  /** One feature map's Figure 2: JSON unless `format` says "png" (then a Blob). */
  atlas<O extends { format?: "png" | "json"; top?: number | null }>(
    network: string,
    layer: number,
    channel: number,
    options?: O,
    signal?: AbortSignal,
  ): Promise<Answer<O["format"] extends "png" | "json" ? O["format"] : "json", AtlasMapResponse>>;
  /** One call: a JSON answer parsed, an image answer as a Blob, anything else an ApiError. */
  request(
    path: string,
    options?: { body?: FormData | object | null; signal?: AbortSignal; format?: ImageFormat },
  ): Promise<unknown>;
}
