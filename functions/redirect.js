// Full control of the response: status, headers and body.
(event) => {
  const to = typeof event.query.to === 'string' ? event.query.to : '/hello';
  return {
    statusCode: 302,
    headers: { location: to, 'cache-control': 'no-store' },
    body: `redirecting to ${to}`,
  };
};
