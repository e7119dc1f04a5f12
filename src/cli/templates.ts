/** The starter functions `koa-faas new` writes (docs/writing-functions.md has the file forms). */

export const TEMPLATES = ['js', 'ts', 'webhook', 'kv'] as const;
export type Template = (typeof TEMPLATES)[number];

/** The file extension a template's function is written with. */
export const extensionOf = (template: Template): 'js' | 'ts' => (template === 'ts' ? 'ts' : 'js');

export function templateSource(template: Template, name: string): string {
  switch (template) {
    case 'js':
      return `// ${name}: called at /${name}. Returns JSON; see docs/writing-functions.md.
module.exports = async (event, context) => {
  return { message: \`hello from ${name}\`, method: event.method, requestId: context.requestId };
};
`;
    case 'ts':
      return `// ${name}: called at /${name}. TypeScript; types are erased, not checked, on load.
interface Event {
  method: string;
  query: Record<string, string | string[]>;
  body?: unknown;
}

export default async (event: Event) => {
  const who = typeof event.query.name === 'string' ? event.query.name : 'world';
  return { message: \`hello, \${who}\`, method: event.method };
};
`;
    case 'webhook':
      return `// ${name}: a webhook receiver. POST JSON to /${name}; anything else is refused.
export const config = { methods: ['POST'] };

export default async (event, context) => {
  if (typeof event.body !== 'object' || event.body === null) {
    return { statusCode: 400, body: { error: 'send a JSON object' } };
  }
  console.log(\`received \${Object.keys(event.body).length} fields\`);
  return { statusCode: 202, body: { received: true, requestId: context.requestId } };
};
`;
    case 'kv':
      return `// ${name}: a counter in the function's KV namespace (context.kv, docs/services.md).
module.exports = async (event, context) => {
  const count = await context.kv.incr('count');
  return { count };
};
`;
  }
}
