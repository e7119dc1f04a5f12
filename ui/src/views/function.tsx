/**
 * One function: its source in the editor (Deploy, Delete), the Invoke panel (method, sub-path,
 * query, headers, body, async; saved inputs; copy as curl; Run draft = try the editor's text
 * without deploying it), the Response region, and the KV tab. With no name: a new function.
 *
 * Edits not deployed are guarded: `unsaved` tells the app (main.tsx) whether leaving the view
 * would lose them. An error message stays until the next action that succeeds, or a tab change.
 */
import { useEffect, useRef, useState } from 'preact/hooks';
import { admin, ApiError, fnPath } from '../api';
import type { DeployAnswer, DraftRunAnswer, FunctionDetail } from '../api';
import { Editor } from '../editor';
import type { MarkedError } from '../editor';
import {
  BODYLESS,
  EMPTY_INPUT,
  SAVED_INPUTS_MAX,
  TEMPLATE,
  curlLine,
  defaultContentType,
  invokeHeaders,
  invokePath,
  parseHeaders,
  requestHeaders,
  savedInputs,
  sendsBody,
  storeInputs,
} from '../util';
import type { InvokeInput, SavedInput } from '../util';
import { Confirm, Notice, describe } from './common';
import type { NoticeState } from './common';
import { KvTab } from './kv';
import { ResponseView, fromDraft, fromFetch } from './response';
import type { Shown } from './response';

const METHODS = ['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'HEAD', 'OPTIONS'];
const NAME = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}(\/[A-Za-z0-9][A-Za-z0-9_-]{0,63}){0,7}$/;

/** Asks whether the open view has edits that leaving it would lose (set by the view). */
export interface UnsavedGuard {
  current?: () => boolean;
}

export function FunctionView(props: { name?: string; onChanged(): void; unsaved: UnsavedGuard }) {
  const isNew = props.name === undefined;
  const [detail, setDetail] = useState<FunctionDetail>();
  const [loadError, setLoadError] = useState<string>();
  const [tab, setTab] = useState<'code' | 'kv'>('code');
  // Bumped on a tab change: the panels clear their error messages.
  const [calm, setCalm] = useState(0);
  const selectTab = (next: 'code' | 'kv') => {
    if (next !== tab) setCalm((n) => n + 1);
    setTab(next);
  };

  useEffect(() => {
    setDetail(undefined);
    setLoadError(undefined);
    setTab('code');
    if (isNew) return;
    admin<FunctionDetail>(`functions/${fnPath(props.name as string)}`).then(setDetail, (err) =>
      setLoadError(describe(err)),
    );
  }, [props.name]);

  if (!isNew && loadError) {
    return (
      <main id="main" tabIndex={-1}>
        <h2>{props.name}</h2>
        <p role="alert">{loadError}</p>
        <p>
          <a href="#/functions">Back to the functions</a>
        </p>
      </main>
    );
  }
  if (!isNew && !detail) {
    return (
      <main id="main" tabIndex={-1} aria-busy="true">
        <p class="muted">Loading {props.name}…</p>
      </main>
    );
  }
  const name = props.name;
  return (
    <main id="main" tabIndex={-1} class="function-view">
      <header class="view-head">
        <h2>{isNew ? 'New function' : name}</h2>
        {detail && (
          <p class="muted">
            <StatusBadge detail={detail} /> version <code>{detail.version}</code> · {detail.file} ·{' '}
            {detail.bytes} bytes ·{' '}
            <a href={`#/invocations?fn=${encodeURIComponent(detail.name)}`}>
              Invocations of {detail.name}
            </a>
          </p>
        )}
      </header>
      {!isNew && (
        <div role="tablist" aria-label="Function views" class="tabs">
          <TabButton id="code" current={tab} onSelect={selectTab} label="Code and invoke" />
          <TabButton id="kv" current={tab} onSelect={selectTab} label="KV" />
        </div>
      )}
      <div
        role={isNew ? undefined : 'tabpanel'}
        id="panel-code"
        aria-labelledby="tab-code"
        hidden={tab !== 'code'}
      >
        <CodeAndInvoke
          key={name ?? '(new)'}
          detail={detail}
          onChanged={props.onChanged}
          onDeployed={setDetail}
          unsaved={props.unsaved}
          calm={calm}
        />
      </div>
      {!isNew && tab === 'kv' && (
        <div role="tabpanel" id="panel-kv" aria-labelledby="tab-kv">
          <KvTab name={name as string} />
        </div>
      )}
    </main>
  );
}

function TabButton(props: {
  id: 'code' | 'kv';
  current: string;
  label: string;
  onSelect(id: 'code' | 'kv'): void;
}) {
  const selected = props.current === props.id;
  return (
    <button
      type="button"
      role="tab"
      id={`tab-${props.id}`}
      aria-selected={selected}
      aria-controls={`panel-${props.id}`}
      tabIndex={selected ? 0 : -1}
      onClick={() => props.onSelect(props.id)}
      onKeyDown={(e) => {
        if (e.key === 'ArrowRight' || e.key === 'ArrowLeft') {
          const other = props.id === 'code' ? 'kv' : 'code';
          props.onSelect(other);
          document.getElementById(`tab-${other}`)?.focus();
        }
      }}
    >
      {props.label}
    </button>
  );
}

export function StatusBadge({ detail }: { detail: { status: string; quarantined?: boolean } }) {
  if (detail.quarantined) return <span class="badge badge-warn">quarantined</span>;
  if (detail.status === 'compile_error')
    return <span class="badge badge-error">compile error</span>;
  return <span class="badge badge-ok">ok</span>;
}

/** Clears an error message, keeps any other (a state updater). */
const withoutError = (notice: NoticeState): NoticeState =>
  notice?.kind === 'error' ? undefined : notice;

function CodeAndInvoke(props: {
  detail?: FunctionDetail;
  onChanged(): void;
  /** The function as deployed now (after a Deploy): the view's header shows its version. */
  onDeployed(detail: FunctionDetail): void;
  unsaved: UnsavedGuard;
  /** Changes when the errors on screen are stale (another tab was chosen). */
  calm: number;
}) {
  const { detail, onChanged } = props;
  const isNew = detail === undefined;
  const [name, setName] = useState(detail?.name ?? '');
  const [typescript, setTypescript] = useState(detail ? detail.file.endsWith('.ts') : false);
  const initial = detail?.source ?? TEMPLATE;
  const source = useRef(initial);
  // The text as last deployed (or as the editor opened): edits past it are unsaved.
  const saved = useRef(initial);
  useEffect(() => {
    const guard = () => source.current !== saved.current;
    props.unsaved.current = guard;
    return () => {
      if (props.unsaved.current === guard) props.unsaved.current = undefined;
    };
  }, []);
  const [error, setError] = useState<MarkedError | undefined>(
    detail?.status === 'compile_error' && detail.line
      ? { line: detail.line, column: detail.column, message: detail.error ?? 'compile error' }
      : undefined,
  );
  const [notice, setNotice] = useState<NoticeState>(
    detail?.status === 'compile_error'
      ? { kind: 'error', text: `Compile error: ${detail.error ?? ''}` }
      : undefined,
  );
  const [deploying, setDeploying] = useState(false);
  const [confirming, setConfirming] = useState(false);
  const [deployed, setDeployed] = useState(detail);
  // Bumped when an action succeeds: the Invoke panel clears its error message too.
  const [calm, setCalm] = useState(0);
  const succeeded = () => {
    setNotice(withoutError);
    setCalm((n) => n + 1);
  };
  useEffect(() => {
    if (props.calm > 0) setNotice(withoutError);
  }, [props.calm]);

  const deploy = async () => {
    const target = name.trim();
    if (!NAME.test(target)) {
      setNotice({
        kind: 'error',
        text: 'Function name: letters, digits, "-" and "_", starting with a letter or digit; "/" between segments.',
      });
      document.getElementById('fn-name')?.focus();
      return;
    }
    setDeploying(true);
    setNotice({ kind: 'ok', text: `Deploying ${target}…` });
    try {
      const text = source.current;
      const answer = await admin<DeployAnswer>(`functions/${fnPath(target)}`, {
        method: 'PUT',
        body: { source: text, language: typescript ? 'ts' : 'js' },
      });
      saved.current = text;
      setError(undefined);
      succeeded();
      setNotice({ kind: 'ok', text: `Deployed ${answer.name}, version ${answer.version}.` });
      onChanged();
      if (isNew) {
        location.hash = `#/functions/${target}`;
      } else {
        const now = await admin<FunctionDetail>(`functions/${fnPath(target)}`);
        setDeployed(now);
        props.onDeployed(now);
      }
    } catch (err) {
      if (err instanceof ApiError && err.status === 422) {
        setError({ line: err.line ?? 1, column: err.column, message: err.message });
        setNotice({
          kind: 'error',
          text: `Not deployed: ${err.message}${err.line && !/\bline \d/.test(err.message) ? ` (line ${err.line})` : ''}`,
        });
      } else {
        setNotice({ kind: 'error', text: `Not deployed: ${describe(err)}` });
      }
    } finally {
      setDeploying(false);
    }
  };

  const remove = async () => {
    setConfirming(false);
    try {
      await admin(`functions/${fnPath(name)}`, { method: 'DELETE' });
      // Deleted on purpose, after a confirmation: its edits go with it, without a second one.
      saved.current = source.current;
      onChanged();
      location.hash = '#/functions';
    } catch (err) {
      setNotice({ kind: 'error', text: `Not deleted: ${describe(err)}` });
    }
  };

  return (
    <div class="code-invoke">
      <section class="panel source-panel" aria-labelledby="source-heading">
        <h3 id="source-heading">Source</h3>
        <div class="row">
          {isNew && (
            <div class="field">
              <label for="fn-name">Function name</label>
              <input
                id="fn-name"
                value={name}
                onInput={(e) => setName(e.currentTarget.value)}
                placeholder="hello or team/report"
                autocomplete="off"
                spellcheck={false}
                required
              />
            </div>
          )}
          <div class="field">
            <label for="f-language">Language</label>
            <select
              id="f-language"
              value={typescript ? 'ts' : 'js'}
              onChange={(e) => {
                const ts = e.currentTarget.value === 'ts';
                setTypescript(ts);
              }}
            >
              <option value="js">JavaScript</option>
              <option value="ts">TypeScript</option>
            </select>
          </div>
        </div>
        <Editor
          id="source"
          initial={initial}
          typescript={typescript}
          error={error}
          onChange={(text) => {
            source.current = text;
            if (error) setError(undefined);
          }}
        />
        <p id="editor-hint" class="hint">
          Tab indents; press Escape, then Tab, to leave the editor.
        </p>
        <div class="actions">
          <button type="button" class="primary" onClick={deploy} disabled={deploying}>
            Deploy
          </button>
          {!isNew && (
            <button type="button" class="danger" onClick={() => setConfirming(true)}>
              Delete
            </button>
          )}
        </div>
        <Notice notice={notice} />
        {confirming && (
          <Confirm
            title={`Delete ${name}?`}
            confirmLabel={`Yes, delete ${name}`}
            onConfirm={remove}
            onCancel={() => setConfirming(false)}
          >
            <p>
              Its file is removed and <code>/{name}</code> answers 404 from the next request. Its KV
              data stays (the KV tab of a function of the same name shows it).
            </p>
          </Confirm>
        )}
      </section>
      {!isNew && deployed && (
        <Invoke
          name={deployed.name}
          source={source}
          typescript={typescript}
          onDraftError={setError}
          onSucceeded={succeeded}
          calm={calm + props.calm}
        />
      )}
    </div>
  );
}

function Invoke(props: {
  name: string;
  source: { current: string };
  typescript: boolean;
  onDraftError(error: MarkedError | undefined): void;
  /** An action here succeeded: the source panel clears its error message. */
  onSucceeded(): void;
  /** Changes when the errors on screen are stale (an action elsewhere succeeded, a tab change). */
  calm: number;
}) {
  const { name } = props;
  const [input, setInput] = useState<InvokeInput>(() => savedInputs(name)[0] ?? EMPTY_INPUT);
  const [saved, setSaved] = useState<SavedInput[]>(() => savedInputs(name));
  const [label, setLabel] = useState('');
  const [shown, setShown] = useState<Shown>();
  const [busy, setBusy] = useState(false);
  const [notice, setNotice] = useState<NoticeState>();
  const [curl, setCurl] = useState<string>();
  useEffect(() => {
    if (props.calm > 0) setNotice(withoutError);
  }, [props.calm]);

  const set = (patch: Partial<InvokeInput>) => setInput((old) => ({ ...old, ...patch }));
  const show = (next: Shown) => {
    setShown(next);
    props.onSucceeded();
  };
  const contentType = defaultContentType(input);

  const checkHeaders = () => {
    const { error } = parseHeaders(input.headers);
    if (error) setNotice({ kind: 'error', text: error });
    return !error;
  };

  const invoke = async () => {
    if (!checkHeaders()) return;
    setBusy(true);
    setNotice(undefined);
    const started = performance.now();
    try {
      // The admin token is never sent to a function: only the headers typed here.
      const res = await fetch(invokePath(name, input), {
        method: input.method,
        headers: requestHeaders(input),
        body: sendsBody(input) ? input.body : undefined,
        cache: 'no-store',
        credentials: 'omit',
        redirect: 'manual',
      });
      show(await fromFetch(res, performance.now() - started));
    } catch (err) {
      setNotice({ kind: 'error', text: `The request failed: ${describe(err)}` });
    } finally {
      setBusy(false);
    }
  };

  const runDraft = async () => {
    if (!checkHeaders()) return;
    setBusy(true);
    setNotice(undefined);
    const started = performance.now();
    try {
      const answer = await admin<DraftRunAnswer>(`drafts/${fnPath(name)}`, {
        method: 'POST',
        body: {
          source: props.source.current,
          language: props.typescript ? 'ts' : 'js',
          request: {
            method: input.method,
            subpath:
              input.subpath.trim() === '' || input.subpath.startsWith('/')
                ? input.subpath.trim()
                : `/${input.subpath.trim()}`,
            query: input.query,
            headers: invokeHeaders(input),
            body: sendsBody(input) ? input.body : undefined,
          },
        },
      });
      props.onDraftError(undefined);
      show(fromDraft(answer, performance.now() - started));
      setNotice({
        kind: 'ok',
        text: `Draft ran (version ${answer.version}); the live version is unchanged.`,
      });
    } catch (err) {
      if (err instanceof ApiError && err.status === 422) {
        props.onDraftError({ line: err.line ?? 1, column: err.column, message: err.message });
      }
      setNotice({ kind: 'error', text: `Draft not run: ${describe(err)}` });
    } finally {
      setBusy(false);
    }
  };

  const saveInput = () => {
    const text = label.trim() || `${input.method} ${invokePath(name, input)}`;
    const next = [{ ...input, label: text }, ...saved.filter((s) => s.label !== text)].slice(
      0,
      SAVED_INPUTS_MAX,
    );
    storeInputs(name, next);
    setSaved(next);
    setLabel('');
    props.onSucceeded();
    setNotice({
      kind: 'ok',
      text: `Saved test input "${text}" (${next.length} of ${SAVED_INPUTS_MAX}).`,
    });
  };

  const copyCurl = async () => {
    if (!checkHeaders()) return;
    const line = curlLine(location.origin, name, input);
    setCurl(line);
    props.onSucceeded();
    try {
      await navigator.clipboard.writeText(line);
      setNotice({ kind: 'ok', text: 'Copied the curl command.' });
    } catch {
      setNotice({ kind: 'ok', text: 'The curl command is below: select and copy it.' });
    }
  };

  return (
    <>
      <section class="panel invoke-panel" aria-labelledby="invoke-heading">
        <h3 id="invoke-heading">Invoke</h3>
        <p class="muted">
          URL: <code data-testid="invoke-url">{location.origin + invokePath(name, input)}</code>
        </p>
        <form
          onSubmit={(e) => {
            e.preventDefault();
            void invoke();
          }}
        >
          <div class="row">
            <div class="field narrow">
              <label for="f-method">Method</label>
              <select
                id="f-method"
                value={input.method}
                onChange={(e) => set({ method: e.currentTarget.value })}
              >
                {METHODS.map((m) => (
                  <option key={m} value={m}>
                    {m}
                  </option>
                ))}
              </select>
            </div>
            <div class="field">
              <label for="f-sub-path">Sub-path</label>
              <input
                id="f-sub-path"
                value={input.subpath}
                placeholder="/users/42"
                spellcheck={false}
                onInput={(e) => set({ subpath: e.currentTarget.value })}
              />
            </div>
            <div class="field">
              <label for="f-query">Query</label>
              <input
                id="f-query"
                value={input.query}
                placeholder="name=Ada&amp;lang=en"
                spellcheck={false}
                onInput={(e) => set({ query: e.currentTarget.value })}
              />
            </div>
          </div>
          <div class="field">
            <label for="f-headers">
              Headers <span class="muted">(one "Name: value" a line)</span>
            </label>
            <textarea
              id="f-headers"
              rows={3}
              value={input.headers}
              spellcheck={false}
              aria-describedby="headers-hint"
              onInput={(e) => set({ headers: e.currentTarget.value })}
            />
            <p id="headers-hint" class="hint" data-testid="content-type-hint">
              {contentType
                ? `Sends Content-Type: ${contentType} (${contentType === 'application/json' ? 'the body starts with { or [' : 'the body is not JSON'}); a Content-Type line here sends another.`
                : sendsBody(input)
                  ? 'Sends the Content-Type typed here.'
                  : 'A body goes as application/json when it starts with { or [, else as text/plain, unless a Content-Type line says otherwise.'}
            </p>
          </div>
          <div class="field">
            <label for="f-request-body">Request body</label>
            <textarea
              id="f-request-body"
              rows={5}
              value={input.body}
              spellcheck={false}
              disabled={BODYLESS.has(input.method)}
              placeholder={
                BODYLESS.has(input.method) ? `${input.method} sends no body` : '{"name": "Ada"}'
              }
              onInput={(e) => set({ body: e.currentTarget.value })}
            />
          </div>
          <label class="check">
            <input
              type="checkbox"
              checked={input.async}
              onChange={(e) => set({ async: e.currentTarget.checked })}
            />
            Async (<code>Prefer: respond-async</code>: answered 202, runs later; see its record)
          </label>
          <div class="actions">
            <button type="submit" class="primary" disabled={busy}>
              Invoke
            </button>
            <button type="button" disabled={busy} onClick={runDraft} aria-describedby="draft-hint">
              Run draft
            </button>
            <button type="button" onClick={copyCurl}>
              Copy as curl
            </button>
          </div>
          <p id="draft-hint" class="hint">
            Run draft runs the editor's text with this request without deploying it: the live
            version, its records and its KV data are untouched (a draft gets an empty KV of its
            own).
          </p>
        </form>
        {curl !== undefined && (
          <div class="field">
            <label for="f-curl-command">curl command</label>
            <textarea
              id="f-curl-command"
              readOnly
              rows={3}
              value={curl}
              class="mono"
              onFocus={(e) => e.currentTarget.select()}
            />
          </div>
        )}
        <fieldset class="saved">
          <legend>Saved test inputs</legend>
          <div class="row">
            <div class="field">
              <label for="f-saved-input">Saved input</label>
              <select
                id="f-saved-input"
                value=""
                onChange={(e) => {
                  const chosen = saved[Number(e.currentTarget.value)];
                  if (chosen) {
                    const { label: chosenLabel, ...rest } = chosen;
                    setInput(rest);
                    setNotice({ kind: 'ok', text: `Loaded "${chosenLabel}".` });
                  }
                }}
              >
                <option value="">
                  {saved.length ? `Choose one of ${saved.length}…` : 'none saved yet'}
                </option>
                {saved.map((s, i) => (
                  <option key={s.label} value={String(i)}>
                    {s.label}
                  </option>
                ))}
              </select>
            </div>
            <div class="field">
              <label for="f-input-name">Input name</label>
              <input
                id="f-input-name"
                value={label}
                placeholder="e.g. happy path"
                onInput={(e) => setLabel(e.currentTarget.value)}
              />
            </div>
          </div>
          <div class="actions">
            <button type="button" onClick={saveInput}>
              Save input
            </button>
            <button
              type="button"
              disabled={saved.length === 0}
              onClick={() => {
                storeInputs(name, []);
                setSaved([]);
                setNotice({ kind: 'ok', text: 'Cleared the saved inputs.' });
              }}
            >
              Clear saved inputs
            </button>
          </div>
          <p class="hint">
            Kept in this browser (localStorage), at most {SAVED_INPUTS_MAX} per function.
          </p>
        </fieldset>
        <Notice notice={notice} />
      </section>
      <ResponseView shown={shown} busy={busy} />
    </>
  );
}
