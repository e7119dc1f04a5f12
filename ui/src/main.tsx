/**
 * The koa-faas web console (docs/spec.md §11): sign-in with the admin token, then the views, routed by
 * the URL's hash (#/functions, #/functions/<name>, #/new, #/invocations[/<id>], #/health,
 * #/secrets), so that no route, and no token, ever reaches the server in a URL.
 *
 * Framework: Preact (3 kB, hooks, JSX compiled by esbuild), no other runtime library but
 * CodeMirror 6 for the editor; the chart is SVG drawn by hand.
 */
import { render } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import { admin, ApiError, storeToken, storedToken } from './api';
import type { ConsoleStatsAnswer, FunctionListAnswer, FunctionListing } from './api';
import './styles.css';
import { parseRoute } from './util';
import { describe } from './views/common';
import { FunctionView } from './views/function';
import type { UnsavedGuard } from './views/function';
import { FunctionsView } from './views/functions';
import { HealthView } from './views/health';
import { InvocationDetail, InvocationsView } from './views/invocations';
import { SecretsView } from './views/secrets';

type Access = 'checking' | 'disabled' | 'signed-out' | 'signed-in' | 'unreachable';

/** Asked before the console leaves a view whose editor holds edits not deployed. */
const UNSAVED_MESSAGE = 'The editor has changes that are not deployed. Leave and lose them?';

/** Whether the stored token works, and whether admin routes are enabled at all. */
async function checkAccess(token: string | null): Promise<{ access: Access; message?: string }> {
  try {
    await admin('console/stats', { token });
    return { access: 'signed-in' };
  } catch (err) {
    if (err instanceof ApiError && err.status === 403) return { access: 'disabled' };
    if (err instanceof ApiError && err.status === 401) {
      return {
        access: 'signed-out',
        message: token ? 'That token is not the admin token.' : undefined,
      };
    }
    return { access: 'unreachable', message: describe(err) };
  }
}

function SignIn(props: { message?: string; onSignedIn(): void }) {
  const [token, setToken] = useState('');
  const [message, setMessage] = useState(props.message);
  const [busy, setBusy] = useState(false);
  return (
    <main id="main" tabIndex={-1} class="sign-in">
      <h2>Sign in</h2>
      <p>Type the server's admin token (ADMIN_TOKEN). It stays in this tab only.</p>
      <form
        onSubmit={async (e) => {
          e.preventDefault();
          setBusy(true);
          const checked = await checkAccess(token.trim());
          setBusy(false);
          if (checked.access === 'signed-in') {
            storeToken(token.trim());
            props.onSignedIn();
          } else {
            setMessage(checked.message ?? 'The server refused the token.');
          }
        }}
      >
        <div class="field">
          <label for="f-admin-token">Admin token</label>
          <input
            id="f-admin-token"
            type="password"
            value={token}
            onInput={(e) => setToken(e.currentTarget.value)}
            autocomplete="current-password"
            required
            aria-describedby="sign-in-message"
          />
        </div>
        <div class="actions">
          <button type="submit" class="primary" disabled={busy}>
            Sign in
          </button>
        </div>
        <p id="sign-in-message" role="alert" class="notice notice-error">
          {message ?? ''}
        </p>
      </form>
    </main>
  );
}

function Disabled() {
  return (
    <main id="main" tabIndex={-1} class="sign-in">
      <h2>The admin API is disabled</h2>
      <p>
        This server was started without <code>ADMIN_TOKEN</code>, so its admin routes (and this
        console) answer 403. To enable them, start it with a token of at least 16 characters:
      </p>
      <pre class="mono">ADMIN_TOKEN=$(openssl rand -hex 24) npm start</pre>
      <p>
        or <code>docker run -e ADMIN_TOKEN=… koa-faas</code>, then reload this page and type the
        token into the <strong>Admin token</strong> field.
      </p>
    </main>
  );
}

function App() {
  const [access, setAccess] = useState<Access>('checking');
  const [message, setMessage] = useState<string>();
  const [hash, setHash] = useState(location.hash);
  const [functions, setFunctions] = useState<FunctionListing[]>();
  const [stats, setStats] = useState<ConsoleStatsAnswer>();
  const [listError, setListError] = useState<string>();
  // The open view's check for edits not deployed (a function's editor sets it).
  const unsaved = useRef<(() => boolean) | undefined>(undefined);
  const guard: UnsavedGuard = unsaved;
  /** Whether the console may leave the current view: no unsaved edits, or the person says so. */
  const mayLeave = () => !unsaved.current?.() || confirm(UNSAVED_MESSAGE);

  const verify = async () => {
    const checked = await checkAccess(storedToken());
    if (checked.access !== 'signed-in') storeToken(null);
    setAccess(checked.access);
    setMessage(checked.message);
  };

  const refresh = async () => {
    try {
      const [list, figures] = await Promise.all([
        admin<FunctionListAnswer>('functions'),
        admin<ConsoleStatsAnswer>('console/stats'),
      ]);
      setFunctions(list.functions);
      setStats(figures);
      setListError(undefined);
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) {
        storeToken(null);
        setAccess('signed-out');
        setMessage('The server no longer takes the token: sign in again.');
        return;
      }
      setListError(describe(err));
    }
  };

  useEffect(() => {
    void verify();
    // The hash is the route: a new one leaves the view, unless it holds edits the person keeps
    // (then the address goes back to the view's, which stays as it is).
    let shown = location.hash;
    const onHash = () => {
      if (location.hash === shown) return;
      if (!mayLeave()) {
        history.replaceState(history.state, '', shown || location.pathname);
        return;
      }
      shown = location.hash;
      setHash(location.hash);
    };
    // Closing the tab, reloading, or leaving for another page asks the browser's own question.
    const onUnload = (e: BeforeUnloadEvent) => {
      if (!unsaved.current?.()) return;
      e.preventDefault();
      e.returnValue = '';
    };
    addEventListener('hashchange', onHash);
    addEventListener('beforeunload', onUnload);
    return () => {
      removeEventListener('hashchange', onHash);
      removeEventListener('beforeunload', onUnload);
    };
  }, []);

  const route = parseRoute(hash);
  useEffect(() => {
    if (access === 'signed-in') void refresh();
  }, [access, route.view]);
  useEffect(() => {
    // A new view: its heading region takes the focus, so keyboard and reader users start there.
    document.getElementById('main')?.focus({ preventScroll: true });
  }, [hash, access]);

  const nav = [
    ['functions', 'Functions'],
    ['invocations', 'Invocations'],
    ['health', 'Health'],
    ['secrets', 'Secrets'],
  ] as const;

  let view;
  if (access === 'checking') view = <p class="muted">Connecting…</p>;
  else if (access === 'disabled') view = <Disabled />;
  else if (access === 'unreachable')
    view = <p role="alert">The server did not answer: {message}</p>;
  else if (access === 'signed-out')
    view = <SignIn message={message} onSignedIn={() => setAccess('signed-in')} />;
  else if (route.view === 'new') view = <FunctionView onChanged={refresh} unsaved={guard} />;
  else if (route.view === 'functions' && route.rest)
    view = <FunctionView key={route.rest} name={route.rest} onChanged={refresh} unsaved={guard} />;
  else if (route.view === 'invocations' && route.rest) view = <InvocationDetail id={route.rest} />;
  else if (route.view === 'invocations')
    view = (
      <InvocationsView
        fn={route.params.get('fn') ?? ''}
        status={route.params.get('status') ?? ''}
        functions={(functions ?? []).map((f) => f.name)}
      />
    );
  else if (route.view === 'health') view = <HealthView />;
  else if (route.view === 'secrets') view = <SecretsView />;
  else
    view = (
      <FunctionsView functions={functions} stats={stats} error={listError} onRefresh={refresh} />
    );

  const current = route.view === 'new' ? 'functions' : route.view;
  return (
    <>
      <a
        class="skip"
        href="#main"
        onClick={(e) => {
          e.preventDefault();
          document.getElementById('main')?.focus();
        }}
      >
        Skip to content
      </a>
      <header class="top">
        <h1>
          <a href="#/functions">koa-faas</a>
        </h1>
        {access === 'signed-in' && (
          <nav aria-label="Console">
            <ul>
              {nav.map(([id, label]) => (
                <li key={id}>
                  <a href={`#/${id}`} aria-current={current === id ? 'page' : undefined}>
                    {label}
                  </a>
                </li>
              ))}
            </ul>
          </nav>
        )}
        {access === 'signed-in' && (
          <button
            type="button"
            class="sign-out"
            onClick={() => {
              if (!mayLeave()) return;
              unsaved.current = undefined;
              storeToken(null);
              setAccess('signed-out');
              setMessage(undefined);
            }}
          >
            Sign out
          </button>
        )}
      </header>
      {view}
    </>
  );
}

/**
 * A sign-in link (`/_/ui/#token=<token>`, printed by a server that made its own token): the token
 * is kept in this tab and taken out of the address bar and the history before anything renders.
 */
function takeTokenFromLink(): void {
  const match = /^#token=([^&]+)$/.exec(location.hash);
  if (!match) return;
  storeToken(decodeURIComponent(match[1]));
  history.replaceState(null, '', `${location.pathname}${location.search}#/functions`);
}

takeTokenFromLink();
render(<App />, document.getElementById('app') as HTMLElement);
