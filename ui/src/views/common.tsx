/** Pieces shared by the views: a confirmation dialog, messages, errors. */
import type { ComponentChildren } from 'preact';
import { useEffect, useRef } from 'preact/hooks';
import { ApiError } from '../api';

/**
 * A modal confirmation (the native <dialog>: focus moves into it, Escape cancels, the page
 * behind is inert). Mounted only while open.
 */
export function Confirm(props: {
  title: string;
  children: ComponentChildren;
  confirmLabel: string;
  onConfirm(): void;
  onCancel(): void;
}) {
  const ref = useRef<HTMLDialogElement>(null);
  useEffect(() => {
    const dialog = ref.current;
    if (dialog && !dialog.open) dialog.showModal();
    return () => dialog?.close();
  }, []);
  return (
    <dialog
      ref={ref}
      class="confirm"
      aria-labelledby="confirm-title"
      onCancel={(e) => {
        e.preventDefault();
        props.onCancel();
      }}
    >
      <h2 id="confirm-title">{props.title}</h2>
      <div>{props.children}</div>
      <div class="actions">
        <button type="button" onClick={props.onCancel} autofocus>
          Cancel
        </button>
        <button type="button" class="danger" onClick={props.onConfirm}>
          {props.confirmLabel}
        </button>
      </div>
    </dialog>
  );
}

/** An error as one line a person can act on. */
export function describe(err: unknown): string {
  if (err instanceof ApiError) {
    const where =
      err.line !== undefined
        ? ` (line ${err.line}${err.column ? `, column ${err.column}` : ''})`
        : '';
    return `${err.status ? `${err.status} ` : ''}${err.code}: ${err.message}${where}`;
  }
  return err instanceof Error ? err.message : String(err);
}

/** Live messages: an error is an alert, anything else a polite status (both always present). */
export function Notice({ notice }: { notice?: NoticeState }) {
  return (
    <div class="notices">
      <p class="notice notice-ok" role="status">
        {notice?.kind === 'ok' ? notice.text : ''}
      </p>
      <p class="notice notice-error" role="alert">
        {notice?.kind === 'error' ? notice.text : ''}
      </p>
    </div>
  );
}

export type NoticeState = { kind: 'error' | 'ok'; text: string } | undefined;
