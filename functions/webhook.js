// A webhook receiver that checks an HMAC-SHA256 signature over the exact body bytes.
//   curl -X PUT -H "Authorization: Bearer $ADMIN_TOKEN" --data-binary 'whsec_…' localhost:3000/_/secrets/WEBHOOK_SECRET
//   body='{"event":"paid","amount":10.50}'
//   sig=$(printf %s "$body" | openssl dgst -sha256 -hmac 'whsec_…' -hex | cut -d' ' -f2)
//   curl -X POST -H 'content-type: application/json' -H "X-Signature-256: sha256=$sig" -d "$body" localhost:3000/webhook
export const config = { methods: ['POST'], rawBody: true, secrets: ['WEBHOOK_SECRET'] };

const fromHex = (text) => Uint8Array.from(text.match(/../g) ?? [], (pair) => parseInt(pair, 16));

export default async (event, context) => {
  const secret = context.secrets.WEBHOOK_SECRET;
  if (!secret)
    throw new Error('set the WEBHOOK_SECRET secret first (PUT /_/secrets/WEBHOOK_SECRET)');
  const signature = /^sha256=([0-9a-f]{64})$/.exec(event.headers['x-signature-256'] ?? '');
  if (!signature)
    return { statusCode: 401, body: { error: 'missing X-Signature-256: sha256=<hex>' } };
  const bytes = Uint8Array.from(atob(event.rawBody ?? ''), (c) => c.charCodeAt(0));
  const key = await crypto.subtle.importKey(
    'raw',
    new TextEncoder().encode(secret),
    { name: 'HMAC', hash: 'SHA-256' },
    false,
    ['verify'],
  );
  // verify compares in constant time.
  if (!(await crypto.subtle.verify('HMAC', key, fromHex(signature[1]), bytes))) {
    return { statusCode: 401, body: { error: 'bad signature' } };
  }
  return { received: event.body?.event ?? null };
};
