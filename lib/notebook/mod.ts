/**
 * Notebook support: rich display, a live training plot, and views inside a model.
 *
 * @module
 */

export {
  configBundle,
  type Displayable,
  escapeHtml,
  inJupyter,
  JUPYTER_DISPLAY,
  LiveDisplay,
  metricsBundle,
  type MimeBundle,
  moduleBundle,
  type ModuleLike,
  plot,
  rich,
  tensorBundle,
  type TensorLike,
} from "./display.ts";
export { LiveTraining, type LiveTrainingOptions } from "./live_training.ts";
export {
  activationStats,
  attentionMaps,
  gradNormsByLayer,
  heatmap,
  type LayerStats,
} from "./inspect.ts";
