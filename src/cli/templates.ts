/**
 * The starter functions `koa-faas new` writes (docs/writing-functions.md has the file forms): one
 * file for `js`, `ts`, `webhook` and `kv`; a folder for `package` (packageFiles).
 */

export const TEMPLATES = ['js', 'ts', 'webhook', 'kv', 'package'] as const;
export type Template = (typeof TEMPLATES)[number];
/** The templates that are one file. */
export type FileTemplate = Exclude<Template, 'package'>;

/** The file extension a one-file template's function is written with. */
export const extensionOf = (template: FileTemplate): 'js' | 'ts' =>
  template === 'ts' ? 'ts' : 'js';

/**
 * The `package` template: file name → text, for the folder `<name>/`. A folder holding a
 * `package.json` is one function; its entry is `main` (docs/writing-functions.md). `ms` is its
 * one dependency, installed by the user (`npm install` in the folder), never by the CLI.
 */
export function packageFiles(name: string): Record<string, string> {
  const manifest = {
    // npm names are lowercase, without `/` outside a scope.
    name: name.toLowerCase().replaceAll('/', '-'),
    version: '0.1.0',
    private: true,
    description: `The koa-faas function ${name}, served at /${name}.`,
    main: 'index.ts',
    dependencies: { ms: '^2.1.3' },
  };
  return {
    'package.json': `${JSON.stringify(manifest, null, 2)}\n`,
    'index.ts': `// ${name}: a function package, called at /${name}. Its dependencies come from npm: run
// \`npm install\` in this folder; they are bundled into the function when it is loaded.
import ms from 'ms';

interface Event {
  method: string;
  query: Record<string, string | string[]>;
  body?: unknown;
}

/** Reads a duration ("2 days", "90s", "1h") from the body's \`duration\` or ?duration=. */
export default async (event: Event) => {
  const body = (event.body ?? {}) as { duration?: unknown };
  const input = body.duration ?? event.query.duration ?? '1h';
  const millis = typeof input === 'string' ? ms(input) : undefined;
  if (millis === undefined) {
    return { statusCode: 400, body: { error: 'send a duration such as "2 days" or "90s"' } };
  }
  return { duration: input, ms: millis, long: ms(millis, { long: true }) };
};
`,
    'event.json': `${JSON.stringify({ duration: '2 days' })}\n`,
  };
}

export function templateSource(template: FileTemplate, name: string): string {
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
