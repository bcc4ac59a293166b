// Uses of api.d.ts that must type-check (`make lint`: tsc --noEmit), and misuses that must not.
import { ApiError, UnconvApi, imageUrl } from "../../../../service/api/static/api.js";

export async function uses(file: File, canvas: Blob): Promise<string[]> {
  const api = new UnconvApi("http://127.0.0.1:8000");
  api.apiKey = "secret";
  const models = await api.models();
  const projection = await api.visualise(file, { network: "cnn", layer: 4, method: "saliency" });
  const top: number = projection.activations[0].value;
  const png: Blob = await api.visualise(file, { layer: 2, format: "png" });
  const why = await api.attribute(file, { network: "cnn", method: "occlusion", window: 4 });
  const likeliest: number = why.top[0].probability + why.target + why.predicted;
  const cam: Blob = await api.attribute(file, { method: "gradcam", format: "npy" });
  const { images } = await api.reconstruct([file, canvas], { model: "vae" });
  const samples = await api.generate({ n: 16, seed: 7, label: 3 });
  const grid: Blob = await api.generate({ n: 4, format: "png" });
  const atlases = await api.atlases();
  const { entries } = await api.atlas(atlases[0].network, 4, 12);
  const figure: Blob = await api.atlas("cnn", 1, 0, { format: "png" });
  try {
    // @ts-expect-error: layer is required
    await api.visualise(file, { network: "cnn" });
    // @ts-expect-error: not a method of the service
    await api.visualise(file, { layer: 1, method: "gradcam" });
    // @ts-expect-error: a /visualise method, not an attribution method
    await api.attribute(file, { method: "deconvnet" });
    // @ts-expect-error: /generate has no field `count`
    await api.generate({ count: 3 });
    // @ts-expect-error: the atlas answers PNG or JSON, no .npy
    await api.atlas("cnn", 1, 0, { format: "npy" });
  } catch (err) {
    if (err instanceof ApiError) return [err.code, err.detail, String(err.retryAfter)];
  }
  return [
    models[0].name,
    String(top),
    String(png.size + grid.size + figure.size + cam.size + likeliest),
    imageUrl(entries[0].projection_png),
    imageUrl(images[0].image_png),
    String(samples.seed),
  ];
}
