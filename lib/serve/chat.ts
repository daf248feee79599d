/**
 * defines: ChatTemplate, FALLBACK_CHAT_TEMPLATE, chatTemplate, loadChatTemplate — turning
 * a list of chat messages into the prompt text a model was tuned on, with the Jinja
 * template of its `tokenizer_config.json` (rendered by npm's `@huggingface/jinja`, the
 * engine transformers.js uses).
 *
 * @module
 */
import { Template } from "@huggingface/jinja";
import { join } from "node:path";
import { causeText, DenotronError } from "../errors.ts";
import { type ChatMessage, RequestError } from "./protocol.ts";

/** A compiled chat template. */
export interface ChatTemplate {
  /** Where it came from, for messages. */
  readonly origin: string;
  /**
   * The prompt for `messages`, ending where the assistant's answer starts
   * (`add_generation_prompt` is true).
   *
   * @throws RequestError (400, param "messages") when the template refuses them
   */
  render(messages: ChatMessage[]): string;
}

/**
 * The template for a model that has none (a base model, our own checkpoints): one
 * `role: content` line per message, then `assistant:`.
 */
export const FALLBACK_CHAT_TEMPLATE: string =
  "{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}" +
  "{% if add_generation_prompt %}assistant:{% endif %}";

/**
 * Compiles a Jinja chat template.
 *
 * @param source the template text
 * @param opts special tokens the template may print (bos_token, eos_token), and origin
 * @returns the template
 * @throws DenotronError when the text does not parse
 * @example
 * ```ts
 * import { chatTemplate } from "./chat.ts";
 * const t = chatTemplate("{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}<assistant>");
 * console.log(t.render([{ role: "user", content: "hi" }])); // "<user>hi<assistant>"
 * ```
 */
export function chatTemplate(
  source: string,
  opts: { bosToken?: string; eosToken?: string; origin?: string } = {},
): ChatTemplate {
  const origin = opts.origin ?? "chat template";
  let template: Template;
  try {
    template = new Template(source);
  } catch (e) {
    throw new DenotronError(`${origin}: the chat template does not parse: ${causeText(e)}`);
  }
  return {
    origin,
    render(messages: ChatMessage[]): string {
      try {
        return template.render({
          messages,
          add_generation_prompt: true,
          bos_token: opts.bosToken ?? "",
          eos_token: opts.eosToken ?? "",
        });
      } catch (e) {
        // A template's raise_exception() ("roles must alternate") is about the messages.
        throw new RequestError(
          400,
          `messages: the chat template refused them: ${causeText(e)}`,
          "messages",
        );
      }
    },
  };
}

/** A special token of tokenizer_config.json: a string, or an object with `content`. */
function tokenText(v: unknown): string | undefined {
  if (typeof v === "string") return v;
  if (
    typeof v === "object" && v !== null && typeof (v as { content?: unknown }).content === "string"
  ) {
    return (v as { content: string }).content;
  }
  return undefined;
}

/**
 * The chat template of a model directory's `tokenizer_config.json` (`chat_template`: a
 * string, or a list of named templates, of which "default" is taken), or null when the
 * file or the field is absent.
 *
 * @param dir the directory holding tokenizer_config.json
 * @returns the template, or null
 * @throws DenotronError when the file is not JSON or the template does not parse
 */
export async function loadChatTemplate(dir: string): Promise<ChatTemplate | null> {
  const path = join(dir, "tokenizer_config.json");
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound || e instanceof Deno.errors.NotADirectory) return null;
    throw e;
  }
  let config: Record<string, unknown>;
  try {
    config = JSON.parse(text);
  } catch (e) {
    throw new DenotronError(`${path}: not valid JSON: ${causeText(e)}`);
  }
  let source = config.chat_template;
  if (Array.isArray(source)) {
    source = source.find((t) => t?.name === "default")?.template ?? source[0]?.template;
  }
  if (source === undefined || source === null) return null;
  if (typeof source !== "string") {
    throw new DenotronError(`${path}: chat_template must be a string or a list of named templates`);
  }
  return chatTemplate(source, {
    bosToken: tokenText(config.bos_token),
    eosToken: tokenText(config.eos_token),
    origin: `${path}: chat_template`,
  });
}
