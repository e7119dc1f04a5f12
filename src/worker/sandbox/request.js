/**
 * The sandbox's side of the runner's transport to the server's services (docs/spec.md §8). It
 * evaluates to a function that takes the host's `hostRequest` (../host-requests.ts) and returns
 * `request(op, args, onReply)`, a sandbox function that the globals script gets as its
 * `hostRequest`: when the host refuses a call it answers why as a string, and `request` throws the
 * sandbox's own Error with that message, so no host error object crosses.
 */
(function (hostRequest) {
  'use strict';
  const ErrorCtor = Error;
  return function request(op, args, onReply) {
    const refused = hostRequest(op, args, onReply);
    if (refused !== '') throw new ErrorCtor(refused);
  };
});
