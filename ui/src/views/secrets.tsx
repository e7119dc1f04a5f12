/** Secrets (docs/spec.md §8): names and update times only; set (create or replace) and delete. */
import { useEffect, useState } from 'preact/hooks';
import { admin } from '../api';
import type { SecretListAnswer, SecretPutAnswer } from '../api';
import { when } from '../util';
import { Confirm, Notice, describe } from './common';
import type { NoticeState } from './common';

const SECRET_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,127}$/;

export function SecretsView() {
  const [secrets, setSecrets] = useState<SecretListAnswer['secrets']>();
  const [name, setName] = useState('');
  const [value, setValue] = useState('');
  const [notice, setNotice] = useState<NoticeState>();
  const [deleting, setDeleting] = useState<string>();

  const load = async () => {
    try {
      setSecrets((await admin<SecretListAnswer>('secrets')).secrets);
    } catch (err) {
      setNotice({ kind: 'error', text: `Could not list the secrets: ${describe(err)}` });
    }
  };
  useEffect(() => void load(), []);

  const set = async () => {
    if (!SECRET_NAME.test(name)) {
      setNotice({
        kind: 'error',
        text: 'Secret name: letters, digits and "_", not starting with a digit.',
      });
      return;
    }
    if (value === '') {
      setNotice({ kind: 'error', text: 'Secret value: type the value.' });
      return;
    }
    try {
      const answer = await admin<SecretPutAnswer>(`secrets/${name}`, {
        method: 'PUT',
        body: value,
        type: 'text/plain; charset=utf-8',
      });
      setNotice({
        kind: 'ok',
        text: `${answer.created ? 'Created' : 'Replaced'} the secret ${name}.`,
      });
      setValue('');
      await load();
    } catch (err) {
      setNotice({ kind: 'error', text: `Not set: ${describe(err)}` });
    }
  };

  const remove = async (secret: string) => {
    setDeleting(undefined);
    try {
      await admin(`secrets/${secret}`, { method: 'DELETE' });
      setNotice({ kind: 'ok', text: `Deleted the secret ${secret}.` });
      await load();
    } catch (err) {
      setNotice({ kind: 'error', text: `Not deleted: ${describe(err)}` });
    }
  };

  return (
    <main id="main" tabIndex={-1}>
      <h2>Secrets</h2>
      <p class="muted">
        A function reads the secrets its <code>config.secrets</code> names, as{' '}
        <code>context.secrets</code>. Values are never shown again once set, here or anywhere.
      </p>
      <div class="table-wrap">
        <table aria-label="Secrets">
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">Updated</th>
              <th scope="col">
                <span class="visually-hidden">Actions</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {secrets?.length === 0 && (
              <tr>
                <td colSpan={3} class="muted">
                  No secrets yet.
                </td>
              </tr>
            )}
            {secrets?.map((s) => (
              <tr key={s.name}>
                <td>
                  <code>{s.name}</code>
                </td>
                <td>{when(s.updatedAt)}</td>
                <td>
                  <button
                    type="button"
                    class="danger"
                    onClick={() => setDeleting(s.name)}
                    aria-label={`Delete secret ${s.name}`}
                  >
                    Delete secret
                  </button>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      <form
        onSubmit={(e) => {
          e.preventDefault();
          void set();
        }}
      >
        <fieldset>
          <legend>Set a secret</legend>
          <div class="row">
            <div class="field">
              <label for="f-secret-name">Secret name</label>
              <input
                id="f-secret-name"
                value={name}
                onInput={(e) => setName(e.currentTarget.value)}
                autocomplete="off"
                spellcheck={false}
              />
            </div>
            <div class="field">
              <label for="f-secret-value">Secret value</label>
              <input
                id="f-secret-value"
                type="password"
                value={value}
                onInput={(e) => setValue(e.currentTarget.value)}
                autocomplete="new-password"
              />
            </div>
          </div>
          <div class="actions">
            <button type="submit" class="primary">
              Set secret
            </button>
          </div>
        </fieldset>
      </form>
      <Notice notice={notice} />
      {deleting && (
        <Confirm
          title={`Delete the secret ${deleting}?`}
          confirmLabel={`Yes, delete ${deleting}`}
          onConfirm={() => remove(deleting)}
          onCancel={() => setDeleting(undefined)}
        >
          <p>Functions that name it no longer get it in context.secrets.</p>
        </Confirm>
      )}
    </main>
  );
}
