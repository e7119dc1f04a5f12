/**
 * A function's KV entries (docs/spec.md §8 admin routes): list by prefix, a page at a time; view, edit,
 * add and delete a key. Values are JSON.
 */
import { useEffect, useState } from 'preact/hooks';
import { admin, kvPath } from '../api';
import type { KvListAnswer } from '../api';
import { when } from '../util';
import { Confirm, Notice, describe } from './common';
import type { NoticeState } from './common';

const PAGE_SIZE = 50;

export function KvTab({ name }: { name: string }) {
  const [prefix, setPrefix] = useState('');
  const [page, setPage] = useState<KvListAnswer>();
  // The cursors of the pages before this one, to go back.
  const [trail, setTrail] = useState<(string | undefined)[]>([]);
  const [cursor, setCursor] = useState<string>();
  const [notice, setNotice] = useState<NoticeState>();
  const [key, setKey] = useState('');
  const [value, setValue] = useState('');
  const [ttl, setTtl] = useState('');
  const [selected, setSelected] = useState<string>();
  const [deleting, setDeleting] = useState<string>();

  const load = async (at: string | undefined) => {
    const query = new URLSearchParams({ limit: String(PAGE_SIZE) });
    if (prefix) query.set('prefix', prefix);
    if (at) query.set('cursor', at);
    try {
      setPage(await admin<KvListAnswer>(`${kvPath(name)}?${query.toString()}`));
      setCursor(at);
    } catch (err) {
      setNotice({ kind: 'error', text: `Could not list the keys: ${describe(err)}` });
    }
  };

  useEffect(() => {
    void load(undefined);
  }, [name]);

  const view = async (k: string) => {
    try {
      const v = await admin<unknown>(kvPath(name, k));
      setSelected(k);
      setKey(k);
      setValue(JSON.stringify(v, null, 2));
      setNotice(undefined);
    } catch (err) {
      setNotice({ kind: 'error', text: `Could not read "${k}": ${describe(err)}` });
    }
  };

  const save = async () => {
    if (key === '') {
      setNotice({ kind: 'error', text: 'Key: type a key first.' });
      return;
    }
    try {
      JSON.parse(value);
    } catch (err) {
      setNotice({ kind: 'error', text: `Value is not JSON: ${(err as Error).message}` });
      return;
    }
    const query = ttl.trim() ? `&ttl=${encodeURIComponent(ttl.trim())}` : '';
    try {
      await admin(`${kvPath(name, key)}${query}`, {
        method: 'PUT',
        body: value,
        type: 'application/json',
      });
      setNotice({ kind: 'ok', text: `Saved "${key}".` });
      setSelected(key);
      await load(cursor);
    } catch (err) {
      setNotice({ kind: 'error', text: `Not saved: ${describe(err)}` });
    }
  };

  const remove = async (k: string) => {
    setDeleting(undefined);
    try {
      await admin(kvPath(name, k), { method: 'DELETE' });
      setNotice({ kind: 'ok', text: `Deleted "${k}".` });
      if (selected === k) {
        setSelected(undefined);
        setValue('');
      }
      await load(cursor);
    } catch (err) {
      setNotice({ kind: 'error', text: `Not deleted: ${describe(err)}` });
    }
  };

  return (
    <section class="panel kv" aria-labelledby="kv-heading">
      <h3 id="kv-heading">KV entries of {name}</h3>
      <form
        class="row"
        onSubmit={(e) => {
          e.preventDefault();
          setTrail([]);
          void load(undefined);
        }}
      >
        <div class="field">
          <label for="f-key-prefix">Key prefix</label>
          <input
            id="f-key-prefix"
            value={prefix}
            onInput={(e) => setPrefix(e.currentTarget.value)}
            spellcheck={false}
          />
        </div>
        <div class="actions">
          <button type="submit">List keys</button>
        </div>
      </form>
      {page && (
        <div class="table-wrap">
          <table aria-label={`Keys of ${name}`}>
            <thead>
              <tr>
                <th scope="col">Key</th>
                <th scope="col">Expires</th>
                <th scope="col">
                  <span class="visually-hidden">Actions</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {page.keys.length === 0 && (
                <tr>
                  <td colSpan={3} class="muted">
                    No keys{prefix ? ` starting with "${prefix}"` : ''}.
                  </td>
                </tr>
              )}
              {page.keys.map((entry) => (
                <tr key={entry.key} class={entry.key === selected ? 'selected' : ''}>
                  <td>
                    <code>{entry.key}</code>
                  </td>
                  <td>
                    {entry.expiresAt ? when(new Date(entry.expiresAt).toISOString()) : 'never'}
                  </td>
                  <td class="actions">
                    <button
                      type="button"
                      onClick={() => view(entry.key)}
                      aria-label={`View ${entry.key}`}
                    >
                      View
                    </button>
                    <button
                      type="button"
                      class="danger"
                      onClick={() => setDeleting(entry.key)}
                      aria-label={`Delete key ${entry.key}`}
                    >
                      Delete key
                    </button>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      <div class="actions">
        <button
          type="button"
          disabled={trail.length === 0}
          onClick={() => {
            const previous = trail[trail.length - 1];
            setTrail(trail.slice(0, -1));
            void load(previous);
          }}
        >
          Previous page
        </button>
        <button
          type="button"
          disabled={!page?.cursor}
          onClick={() => {
            setTrail([...trail, cursor]);
            void load(page?.cursor);
          }}
        >
          Next page
        </button>
      </div>
      <fieldset>
        <legend>{selected ? `Edit "${selected}"` : 'Add a key'}</legend>
        <div class="row">
          <div class="field">
            <label for="f-key">Key</label>
            <input
              id="f-key"
              value={key}
              onInput={(e) => setKey(e.currentTarget.value)}
              spellcheck={false}
            />
          </div>
          <div class="field narrow">
            <label for="f-ttl-seconds">TTL (seconds)</label>
            <input
              id="f-ttl-seconds"
              value={ttl}
              inputMode="numeric"
              onInput={(e) => setTtl(e.currentTarget.value)}
            />
          </div>
        </div>
        <div class="field">
          <label for="f-value-json">Value (JSON)</label>
          <textarea
            id="f-value-json"
            rows={6}
            class="mono"
            value={value}
            spellcheck={false}
            onInput={(e) => setValue(e.currentTarget.value)}
          />
        </div>
        <div class="actions">
          <button type="button" class="primary" onClick={save}>
            Save key
          </button>
          <button
            type="button"
            onClick={() => {
              setSelected(undefined);
              setKey('');
              setValue('');
              setTtl('');
            }}
          >
            New key
          </button>
        </div>
      </fieldset>
      <Notice notice={notice} />
      {deleting !== undefined && (
        <Confirm
          title={`Delete the key "${deleting}"?`}
          confirmLabel="Yes, delete the key"
          onConfirm={() => remove(deleting)}
          onCancel={() => setDeleting(undefined)}
        >
          <p>Its value is gone for good; {name} reads null for it from now on.</p>
        </Confirm>
      )}
    </section>
  );
}
