/**
 * The source editor: CodeMirror 6 with JavaScript/TypeScript highlighting, labelled "Source".
 * A compile error (a deploy's 422, or a draft's) marks its line: a line class and a lint
 * diagnostic at its column, with the message. Tab indents; Escape then Tab leaves the editor
 * (CodeMirror's own way out for keyboard users), as the hint under it says.
 *
 * The editor lives in a shadow root. CodeMirror's styles (style-mod) go into a <style> element
 * in a document, which the console's CSP (style-src 'self', no inline style) blocks; in a shadow
 * root they go into a constructed stylesheet (adoptedStyleSheets), which the CSP allows. So its
 * look is set here (a theme), with the page's CSS variables, which inherit into the shadow root.
 *
 * Typing over a selection is done by CodeMirror, not by the browser (typeOverSelection): left to
 * contenteditable, Chromium keeps the look of the text it deletes, a highlighted token's colour,
 * by writing it into a `style` attribute on the line, which the CSP refuses (style-src-attr).
 */
import { defaultKeymap, history, historyKeymap, indentWithTab } from '@codemirror/commands';
import { javascript } from '@codemirror/lang-javascript';
import {
  bracketMatching,
  defaultHighlightStyle,
  indentOnInput,
  syntaxHighlighting,
} from '@codemirror/language';
import { lintGutter, setDiagnostics } from '@codemirror/lint';
import { Compartment, EditorState, StateEffect, StateField } from '@codemirror/state';
import type { Extension } from '@codemirror/state';
import {
  Decoration,
  EditorView,
  highlightActiveLine,
  highlightActiveLineGutter,
  keymap,
  lineNumbers,
} from '@codemirror/view';
import type { DecorationSet } from '@codemirror/view';
import { useEffect, useRef } from 'preact/hooks';

export interface MarkedError {
  line: number;
  column?: number;
  message: string;
}

const markLine = StateEffect.define<number | null>();

/** The decoration of the error's line (cleared by any edit). */
const errorLineField = StateField.define<DecorationSet>({
  create: () => Decoration.none,
  update(value, tr) {
    let next = tr.docChanged ? Decoration.none : value;
    for (const effect of tr.effects) {
      if (!effect.is(markLine)) continue;
      if (effect.value === null) {
        next = Decoration.none;
      } else {
        const line = tr.state.doc.line(Math.min(Math.max(1, effect.value), tr.state.doc.lines));
        next = Decoration.set([
          Decoration.line({
            class: 'cm-error-line',
            attributes: { 'data-error-line': String(line.number) },
          }).range(line.from),
        ]);
      }
    }
    return next;
  },
  provide: (field) => EditorView.decorations.from(field),
});

const language = (ts: boolean) => javascript({ typescript: ts });

/**
 * Text typed while something is selected replaces the selection through a transaction, as
 * CodeMirror's own commands do, instead of the browser's editing (which would carry the deleted
 * text's colour over in an inline style). Composition (IME, dead keys) is left to the browser:
 * its events cannot be cancelled, and it starts with the selection already removed.
 */
const typeOverSelection = EditorView.domEventHandlers({
  beforeinput(event, view) {
    if (event.inputType !== 'insertText' || event.isComposing || event.data === null) return false;
    if (view.composing || view.state.selection.ranges.every((range) => range.empty)) return false;
    event.preventDefault();
    view.dispatch(view.state.replaceSelection(event.data), {
      scrollIntoView: true,
      userEvent: 'input.type',
    });
    return true;
  },
});

const theme = EditorView.theme({
  '&': { color: 'var(--text)', backgroundColor: 'var(--panel)', fontSize: '13px' },
  '&.cm-focused': { outline: '3px solid var(--focus)' },
  '.cm-scroller': {
    fontFamily: "ui-monospace, 'SFMono-Regular', Menlo, Consolas, monospace",
    minHeight: '260px',
    maxHeight: '70vh',
  },
  '.cm-content': { caretColor: 'var(--text)' },
  '.cm-gutters': {
    backgroundColor: 'var(--bg)',
    color: 'var(--muted)',
    borderRight: '1px solid var(--line)',
  },
  '.cm-activeLine': { backgroundColor: 'rgba(127, 127, 127, 0.08)' },
  '.cm-activeLineGutter': { backgroundColor: 'rgba(127, 127, 127, 0.14)' },
  '.cm-error-line': {
    backgroundColor: 'rgba(179, 38, 30, 0.16)',
    boxShadow: 'inset 3px 0 0 var(--error)',
  },
});

export function Editor(props: {
  id: string;
  initial: string;
  typescript: boolean;
  error?: MarkedError;
  onChange(text: string): void;
}) {
  const host = useRef<HTMLDivElement>(null);
  const view = useRef<EditorView | undefined>(undefined);
  const lang = useRef(new Compartment());
  const onChange = useRef(props.onChange);
  onChange.current = props.onChange;

  useEffect(() => {
    const extensions: Extension[] = [
      lineNumbers(),
      highlightActiveLineGutter(),
      history(),
      indentOnInput(),
      bracketMatching(),
      highlightActiveLine(),
      syntaxHighlighting(defaultHighlightStyle, { fallback: true }),
      lang.current.of(language(props.typescript)),
      keymap.of([...defaultKeymap, ...historyKeymap, indentWithTab]),
      lintGutter(),
      errorLineField,
      typeOverSelection,
      theme,
      EditorView.contentAttributes.of({
        'aria-label': 'Source',
        id: props.id,
      }),
      EditorView.updateListener.of((update) => {
        if (update.docChanged) onChange.current(update.state.doc.toString());
      }),
    ];
    const shadow = (host.current as HTMLDivElement).attachShadow({ mode: 'open' });
    view.current = new EditorView({
      state: EditorState.create({ doc: props.initial, extensions }),
      root: shadow,
      parent: shadow,
    });
    return () => view.current?.destroy();
    // The document is set once; a new function mounts a new editor (keyed by name).
  }, []);

  useEffect(() => {
    view.current?.dispatch({ effects: lang.current.reconfigure(language(props.typescript)) });
  }, [props.typescript]);

  useEffect(() => {
    const v = view.current;
    if (!v) return;
    const error = props.error;
    if (!error) {
      v.dispatch(setDiagnostics(v.state, []), { effects: markLine.of(null) });
      return;
    }
    const line = v.state.doc.line(Math.min(Math.max(1, error.line), v.state.doc.lines));
    const from = Math.min(line.from + Math.max(0, (error.column ?? 1) - 1), line.to);
    const to = Math.max(from, line.to);
    v.dispatch(setDiagnostics(v.state, [{ from, to, severity: 'error', message: error.message }]), {
      effects: [markLine.of(line.number), EditorView.scrollIntoView(line.from, { y: 'center' })],
    });
  }, [props.error]);

  return <div class="editor" ref={host} />;
}
