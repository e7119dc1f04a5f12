// A URL shortener on context.kv.
//   curl -X POST -H 'content-type: application/json' -d '{"url":"https://example.com/a/long/path"}' localhost:3000/shorten
//   → 201 {"code":"1a2b3c4d","short":"/shorten/1a2b3c4d"}
//   curl -i localhost:3000/shorten/1a2b3c4d   → 302 Location: https://example.com/a/long/path
export const config = { methods: ['GET', 'POST'] };

export default async (event, context) => {
  if (event.method === 'POST') {
    let url;
    try {
      url = new URL(event.body?.url);
    } catch {
      return { statusCode: 400, body: { error: 'send {"url": "https://…"}' } };
    }
    if (url.protocol !== 'https:' && url.protocol !== 'http:') {
      return { statusCode: 400, body: { error: 'only http and https URLs' } };
    }
    // A fresh code, written only if no one has it (ifAbsent): a collision just tries again.
    for (let attempt = 0; attempt < 5; attempt++) {
      const code = crypto.randomUUID().slice(0, 8);
      if (await context.kv.put(`code:${code}`, url.href, { ifAbsent: true })) {
        return { statusCode: 201, body: { code, short: `/shorten/${code}` } };
      }
    }
    return { statusCode: 503, body: { error: 'no free code, try again' } };
  }
  const code = event.subpath.slice(1);
  if (code === '') return { statusCode: 400, body: { error: 'GET /shorten/<code>' } };
  const target = await context.kv.get(`code:${code}`);
  if (target === null) return { statusCode: 404, body: { error: `no link '${code}'` } };
  return { statusCode: 302, headers: { Location: target } };
};
