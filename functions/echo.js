// Returns the event it was called with: method, path, query, headers and body.
(event) => event;
